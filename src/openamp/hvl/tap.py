"""The network device's other end: a TAP interface (in a namespace of its own) or a socket pair.

A :class:`NetBackend` moves whole Ethernet frames: :meth:`~NetBackend.send` one frame
out, :meth:`~NetBackend.recv` one frame in (None when nothing is waiting), and
:meth:`~NetBackend.fileno` for the monitor's poll loop.

* :class:`TapBackend` opens ``/dev/net/tun`` as a TAP interface without packet
  information (``IFF_TAP | IFF_NO_PI``): the Linux side's real IP stack sees the remote
  as a host on an Ethernet link.  Needs ``CAP_NET_ADMIN`` (root).
* :class:`SocketPairBackend` is a ``socketpair(AF_UNIX, SOCK_SEQPACKET)``: frame
  boundaries are kept, and :attr:`SocketPairBackend.peer` is the wire's far end, for a
  test or a Python responder.  Needs nothing.

:class:`NetNamespace` creates a network namespace (``ip netns add``), moves a TAP
interface into it with an address, runs commands inside it (``ip netns exec``) and
deletes it again, so a demo or a test touches nothing of the host's networking and
leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import subprocess
from types import TracebackType
from typing import Protocol

from ..errors import OpenAMPError, UsageError

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
_IFREQ = struct.Struct("16sH22x")
"""``struct ifreq`` with the flags member, as ``TUNSETIFF`` takes it (40 bytes)."""
IFNAMSIZ = 16
MAX_FRAME = 65535


class NetBackendError(OpenAMPError):
    """The network backend could not be set up (no TAP support, no permission, no ``ip``)."""


class NetBackend(Protocol):
    """Whole Ethernet frames in and out, for the monitor's network device."""

    def send(self, frame: bytes) -> None:
        """Put one frame on the wire; a full wire drops it (as a NIC would)."""
        ...

    def recv(self) -> bytes | None:
        """The next frame from the wire, or None if none is waiting.  Never blocks."""
        ...

    def fileno(self) -> int:
        """Readable while a frame is waiting."""
        ...

    def close(self) -> None:
        """Release the backend."""
        ...


class TapBackend:
    """A TAP interface named ``name`` (at most 15 characters), frames without extra header.

    The interface exists while this object is open (it is not persistent) and is
    created in the caller's network namespace; :meth:`NetNamespace.add_tap` moves it.
    """

    def __init__(self, name: str) -> None:
        if not name or len(name.encode()) >= IFNAMSIZ or "/" in name or " " in name:
            raise UsageError(f"bad interface name {name!r} (1..15 characters)")
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise NetBackendError(f"cannot open /dev/net/tun: {exc.strerror}") from None
        try:
            fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), IFF_TAP | IFF_NO_PI))
        except OSError as exc:
            os.close(fd)
            raise NetBackendError(
                f"cannot create TAP interface {name}: {exc.strerror} (needs CAP_NET_ADMIN)"
            ) from None
        self.name = name
        self._fd: int | None = fd
        self.dropped = 0

    def _require(self) -> int:
        if self._fd is None:
            raise UsageError(f"TAP {self.name} is closed")
        return self._fd

    def send(self, frame: bytes) -> None:
        """Write one frame to the interface (dropped if the kernel cannot take it now)."""
        try:
            os.write(self._require(), frame)
        except (BlockingIOError, OSError):
            self.dropped += 1

    def recv(self) -> bytes | None:
        """One frame the Linux side sent, or None."""
        try:
            return os.read(self._require(), MAX_FRAME)
        except BlockingIOError:
            return None

    def fileno(self) -> int:
        """The TAP descriptor."""
        return self._require()

    def close(self) -> None:
        """Close the descriptor; the interface disappears with it.  Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __repr__(self) -> str:
        return f"TapBackend({self.name!r})"


class SocketPairBackend:
    """Frames over a ``SOCK_SEQPACKET`` socket pair; :attr:`peer` is the far end of the wire."""

    def __init__(self) -> None:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        a.setblocking(False)
        self._sock = a
        self.peer = b
        """The other end: ``peer.send(frame)`` reaches the remote, ``peer.recv()`` reads
        what it sent (blocking unless made otherwise)."""
        self.dropped = 0

    def send(self, frame: bytes) -> None:
        """Send one frame to :attr:`peer` (dropped if its queue is full)."""
        try:
            self._sock.send(frame)
        except (BlockingIOError, OSError):
            self.dropped += 1

    def recv(self) -> bytes | None:
        """One frame :attr:`peer` sent, or None."""
        try:
            return self._sock.recv(MAX_FRAME)
        except BlockingIOError:
            return None

    def fileno(self) -> int:
        """Our end's descriptor."""
        return self._sock.fileno()

    def close(self) -> None:
        """Close both ends.  Idempotent."""
        self._sock.close()
        self.peer.close()


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NetBackendError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.returncode}")


class NetNamespace:
    """A network namespace of our own (``ip netns add NAME``), deleted by :meth:`close`.

    Needs root and iproute2 (installed through :func:`openamp.tools.sysdeps.ensure_tool`
    by the callers that may install things).  Interfaces moved in are destroyed with
    the namespace or when their TAP descriptor closes.
    """

    def __init__(self, name: str, *, ip: str = "ip") -> None:
        if not name or "/" in name or len(name) > 200:
            raise UsageError(f"bad namespace name {name!r}")
        self.name = name
        self.ip = ip
        _run([ip, "netns", "add", name])
        self._open = True
        try:
            _run([ip, "-n", name, "link", "set", "lo", "up"])
        except BaseException:
            self.close()
            raise

    def add_tap(self, tap: TapBackend, address: str) -> None:
        """Move ``tap`` into the namespace, give it ``address`` (CIDR) and bring it up."""
        _run([self.ip, "link", "set", tap.name, "netns", self.name])
        _run([self.ip, "-n", self.name, "addr", "add", address, "dev", tap.name])
        _run([self.ip, "-n", self.name, "link", "set", tap.name, "up"])

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside the namespace (an argument list for :mod:`subprocess`)."""
        return [self.ip, "netns", "exec", self.name, *argv]

    def close(self) -> None:
        """Delete the namespace.  Idempotent."""
        if self._open:
            self._open = False
            with contextlib.suppress(NetBackendError):
                _run([self.ip, "netns", "del", self.name])

    def __enter__(self) -> NetNamespace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NetNamespace({self.name!r})"


def namespaces() -> list[str]:
    """Names of the network namespaces ``ip netns`` knows (for checks that nothing is left)."""
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []

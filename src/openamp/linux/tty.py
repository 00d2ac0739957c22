"""The rpmsg tty (``/dev/ttyRPMSGn``) as a raw, binary-safe byte stream.

The kernel's ``rpmsg_tty`` driver binds channels named ``rpmsg-tty``: each message from the
remote is pushed into the tty, each ``write`` goes out as messages of at most the MTU
(docs/on-a-board.md).  A tty is a stream, not a message channel: boundaries
are lost, and the line discipline would rewrite bytes (``\\r`` -> ``\\n``, echo, ``^C``
-> SIGINT) unless the terminal is put in raw mode — which :class:`TtyStream` always does,
so every byte arrives as sent.

What it must not do: block without a timeout, or leave the terminal cooked.
"""

from __future__ import annotations

import errno as E
import os
import re
import select
import termios
import time
from pathlib import Path

from ..errors import EndpointClosedError, OpenAMPTimeoutError, UsageError
from ..metal.aio import readable
from ..metal.deadline import Deadline
from .remoteproc import (
    DeviceNotFoundError,
    KernelSendTimeoutError,
    PathLike,
    kernel_error,
)
from .rpmsg import TtyDevice, list_ttys

READ_CHUNK = 4096


def make_raw(fd: int) -> None:
    """Put the terminal ``fd`` in raw mode (as ``cfmakeraw``, plus no software flow
    control): 8-bit bytes in and out unchanged, no echo, no signals, ``read`` returns
    as soon as one byte is there."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(fd)
    iflag &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
        | termios.IXOFF
        | termios.INPCK
    )
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag &= ~(termios.CSIZE | termios.PARENB)
    cflag |= termios.CS8 | termios.CREAD | termios.CLOCAL
    cc = list(cc)
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])


def is_raw(fd: int) -> bool:
    """Whether ``fd`` is in the raw mode :func:`make_raw` sets."""
    iflag, oflag, _cflag, lflag, *_ = termios.tcgetattr(fd)
    return not (
        iflag & (termios.ICRNL | termios.IXON | termios.ISTRIP)
        or oflag & termios.OPOST
        or lflag & (termios.ECHO | termios.ICANON | termios.ISIG)
    )


class TtyStream:
    """A raw byte stream over a terminal: ``read``/``readline``/``write`` with timeouts.

    ``path``: the tty node.  The descriptor is non-blocking and raw (unless ``raw`` is
    false); every timeout is in seconds, None = wait forever, 0 = don't wait.
    """

    def __init__(self, path: PathLike, *, raw: bool = True) -> None:
        self.path = Path(path)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise kernel_error(
                exc.errno or 0, "tty:open", f"opening {self.path}", path=self.path
            ) from exc
        self._setup(fd, raw)

    @classmethod
    def from_fd(cls, fd: int, *, name: str = "fd", raw: bool = True) -> TtyStream:
        """Wrap an open terminal descriptor (e.g. one end of ``os.openpty()``)."""
        self = cls.__new__(cls)
        self.path = Path(name)
        self._setup(fd, raw)
        return self

    def _setup(self, fd: int, raw: bool) -> None:
        self._fd = fd
        self._pending = bytearray()
        os.set_blocking(fd, False)
        if raw:
            try:
                make_raw(fd)
            except termios.error as exc:
                os.close(fd)
                self._fd = -1
                raise UsageError(f"{self.path} is not a terminal ({exc})") from exc

    def __repr__(self) -> str:
        return f"TtyStream({str(self.path)!r})"

    def fileno(self) -> int:
        """The descriptor (readable when bytes are waiting)."""
        self._check_open()
        return self._fd

    def _check_open(self) -> None:
        if self._fd < 0:
            raise EndpointClosedError(f"{self.path} is closed")

    @property
    def closed(self) -> bool:
        """Whether the stream was closed."""
        return self._fd < 0

    # -- reading --------------------------------------------------------------------------

    def _read_now(self, size: int) -> bytes | None:
        try:
            data = os.read(self._fd, size)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno == E.EIO:
                # the other side of the tty is gone (pty master closed, channel removed)
                return b""
            raise kernel_error(
                exc.errno or 0, "tty:read", f"reading {self.path}", path=self.path
            ) from exc
        return data

    def _wait_readable(self, deadline: Deadline) -> bool:
        remaining = deadline.remaining()
        if remaining == 0.0:
            return False
        r, _, _ = select.select([self._fd], [], [], remaining)
        return bool(r)

    def read(self, size: int = READ_CHUNK, timeout: float | None = None) -> bytes:
        """Up to ``size`` bytes, as soon as at least one is there.

        Returns ``b""`` at end of file (the device went away).  Raises
        :class:`OpenAMPTimeoutError` when nothing arrives within ``timeout``.
        """
        self._check_open()
        if size <= 0:
            raise UsageError("read size must be positive")
        if self._pending:
            out = bytes(self._pending[:size])
            del self._pending[:size]
            return out
        deadline = Deadline(timeout)
        while True:
            data = self._read_now(size)
            if data is not None:
                return data
            if not self._wait_readable(deadline):
                raise OpenAMPTimeoutError(f"nothing to read from {self.path} within {timeout} s")

    def read_exactly(self, size: int, timeout: float | None = None) -> bytes:
        """Exactly ``size`` bytes; ``timeout`` covers the whole call.  Bytes read before a
        timeout stay buffered for the next read."""
        self._check_open()
        deadline = Deadline(timeout)
        while len(self._pending) < size:
            if not self._fill(deadline, timeout):
                raise EOFError(f"{self.path} closed after {len(self._pending)} of {size} bytes")
        out = bytes(self._pending[:size])
        del self._pending[:size]
        return out

    def readline(
        self, timeout: float | None = None, *, newline: bytes = b"\n", max_size: int = 65536
    ) -> bytes:
        """Bytes up to and including ``newline`` (or what is left at end of file).

        ``timeout`` covers the whole line; a partial line stays buffered after a timeout.
        A line longer than ``max_size`` raises :class:`UsageError`.
        """
        self._check_open()
        deadline = Deadline(timeout)
        start = 0
        while True:
            i = self._pending.find(newline, start)
            if i >= 0:
                end = i + len(newline)
                out = bytes(self._pending[:end])
                del self._pending[:end]
                return out
            if len(self._pending) > max_size:
                raise UsageError(f"no newline within {max_size} bytes from {self.path}")
            start = max(0, len(self._pending) - len(newline) + 1)
            if not self._fill(deadline, timeout):
                out = bytes(self._pending)
                self._pending.clear()
                return out

    def _fill(self, deadline: Deadline, timeout: float | None) -> bool:
        """Append what can be read to the buffer; False at end of file."""
        while True:
            data = self._read_now(READ_CHUNK)
            if data is not None:
                self._pending += data
                return bool(data)
            if not self._wait_readable(deadline):
                raise OpenAMPTimeoutError(
                    f"timed out after {timeout} s reading {self.path} "
                    f"({len(self._pending)} bytes buffered)"
                )

    async def aread(self, size: int = READ_CHUNK) -> bytes:
        """:meth:`read` for asyncio (``loop.add_reader``); use ``asyncio.wait_for`` for a
        timeout."""
        self._check_open()
        if self._pending:
            return self.read(size)
        while True:
            data = self._read_now(size)
            if data is not None:
                return data
            await readable(self._fd, None)

    # -- writing --------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview, timeout: float | None = 15.0) -> int:
        """Write all of ``data``; return its length.

        The rpmsg tty sends what it can without blocking (``ENOMEM`` when the remote holds
        every buffer), so the rest is retried until ``timeout`` (seconds, None = forever).
        """
        self._check_open()
        view = memoryview(bytes(data))
        deadline = Deadline(timeout)
        done = 0
        delay = 0.0002
        while done < len(view):
            try:
                done += os.write(self._fd, view[done:])
                delay = 0.0002
                continue
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                if exc.errno != E.ENOMEM:
                    raise kernel_error(
                        exc.errno or 0, "tty:write", f"writing to {self.path}", path=self.path
                    ) from exc
            if deadline.expired():
                raise KernelSendTimeoutError(
                    f"{self.path} took only {done} of {len(view)} bytes within {timeout} s "
                    "(the remote does not consume them)",
                    errno=E.EAGAIN,
                    path=str(self.path),
                    action="tty:write",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.005)
        return done

    def drain(self) -> None:
        """Wait until everything written has been handed to the driver (``tcdrain``)."""
        self._check_open()
        termios.tcdrain(self._fd)

    def close(self) -> None:
        """Close the tty."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> TtyStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_tty(
    target: int | PathLike | None = None,
    *,
    channel: str | None = None,
    sysfs: PathLike = "/sys",
    dev: PathLike = "/dev",
    raw: bool = True,
) -> TtyStream:
    """Open an rpmsg tty as a :class:`TtyStream`.

    ``target``: an index (``0``), a name (``ttyRPMSG0``) or a path; None with
    ``channel``: the tty serving the channel of that name (or bus device name); neither:
    the only rpmsg tty there is.  Raises :class:`DeviceNotFoundError` listing the ttys.
    """
    if target is not None and channel is None:
        text = str(target)
        if isinstance(target, int) or text.isdigit():
            return TtyStream(Path(dev) / f"ttyRPMSG{int(text)}", raw=raw)
        if "/" in text:
            return TtyStream(text, raw=raw)
        return TtyStream(Path(dev) / text, raw=raw)
    ttys = list_ttys(sysfs=sysfs, dev=dev)
    chosen: list[TtyDevice] = ttys
    if channel is not None:
        chosen = [t for t in ttys if channel in (t.name, t.channel)]
    if len(chosen) == 1:
        return TtyStream(chosen[0].node, raw=raw)
    have = ", ".join(f"{t.node} ({t.name or '?'})" for t in ttys) or "none"
    what = f"for channel {channel!r}" if channel else "to choose"
    hint = (
        ""
        if ttys
        else (
            " (a tty appears when the remote announces an 'rpmsg-tty' channel and the rpmsg_tty "
            "module is loaded)"
        )
    )
    raise DeviceNotFoundError(
        f"no single rpmsg tty {what}: ttys: {have}{hint}",
        errno=E.ENODEV,
        path=str(Path(sysfs) / "class/tty"),
    )


def tty_index(name: str) -> int | None:
    """``3`` for ``ttyRPMSG3`` or ``/dev/ttyRPMSG3``."""
    m = re.search(r"ttyRPMSG(\d+)$", name)
    return int(m.group(1)) if m else None

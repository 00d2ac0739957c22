"""The Linux side of the hypervisorless network demo: a TAP in a namespace, or a stand-in.

:func:`linux_side` gives the network device's outside end the way the machine allows:

* as root, a TAP interface moved into a network namespace of its own with the seed's
  ``192.168.200.254/24`` (iproute2 and iputils-ping installed on demand through
  :func:`~openamp.tools.sysdeps.ensure_tool`): the real kernel answers ARP and ICMP, and
  the real ``ping`` pings the remote;
* otherwise a socket pair whose far end is a small Python host at the same address
  (:class:`PythonHost`, the same :class:`~openamp.hvl.netstack.NetStack` the remote
  runs), and :attr:`LinuxSide.skipped` says why the TAP was not used.

Either way :meth:`LinuxSide.ping_remote` pings the remote and :meth:`LinuxSide.close`
removes everything (namespace, interface, thread).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field

from ..hvl.netstack import NetStack
from ..hvl.tap import NetBackend, NetBackendError, NetNamespace, SocketPairBackend, TapBackend
from ..metal.shm import unique_name
from .sysdeps import SystemDependencyError, ensure_tool

LINUX_IP = "192.168.200.254"
"""The Linux side's address (``tap0`` in the seed)."""
REMOTE_IP = "192.168.200.2"
"""The remote's address (Zephyr's in the seed)."""
LINUX_MAC = b"\x02\x00\x00\x00\x00\xfe"
"""The stand-in host's MAC (locally administered)."""


class PythonHost:
    """A host at ``ip`` on the far end of a socket pair, answering and pinging from a thread."""

    def __init__(self, peer: socket.socket, ip: str = f"{LINUX_IP}/24") -> None:
        self.peer = peer
        self._lock = threading.Lock()
        self.stack = NetStack(LINUX_MAC, ip, self._send)
        self._stop = False
        peer.settimeout(0.05)
        self._thread = threading.Thread(
            target=self._run, name="openamp-hvl-linux-side", daemon=True
        )
        self._thread.start()

    def _send(self, frame: bytes) -> None:
        with contextlib.suppress(OSError):
            self.peer.send(frame)

    def _run(self) -> None:
        while not self._stop:
            try:
                frame = self.peer.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if not frame:
                return
            with self._lock:
                self.stack.handle(frame)

    def ping(self, target: str, count: int, timeout: float = 1.0) -> list[float]:
        """Ping ``target`` ``count`` times (ARP first); the round trips that came back, in s."""
        deadline = time.monotonic() + 3 * timeout
        while True:
            with self._lock:
                if self.stack.resolved(target):
                    break
                self.stack.arp_request(target)
            if time.monotonic() > deadline:
                return []
            time.sleep(0.01)
        rtts = []
        for seq in range(count):
            with self._lock:
                t0 = time.perf_counter()
                self.stack.echo_request(target, seq, b"pyopenamp-hvl-ping")
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                with self._lock:
                    reply = self.stack.take_reply(seq)
                if reply is not None:
                    rtts.append(reply.received_at - t0)
                    break
                time.sleep(0.0005)
        return rtts

    def close(self) -> None:
        """Stop the thread."""
        self._stop = True
        self._thread.join(2.0)


@dataclass
class LinuxSide:
    """The network device's outside end and how to ping the remote from there."""

    backend: NetBackend
    namespace: NetNamespace | None = None
    tap: TapBackend | None = None
    ping_path: str | None = None
    host: PythonHost | None = None
    skipped: str | None = None
    """Why there is no TAP (None when there is one)."""
    notes: list[str] = field(default_factory=list)

    @property
    def real(self) -> bool:
        """Whether the Linux kernel is on the other end (a TAP in a namespace)."""
        return self.namespace is not None

    def describe(self) -> str:
        """One line for people."""
        if self.namespace is not None and self.tap is not None:
            return f"TAP {self.tap.name} ({LINUX_IP}/24) in network namespace {self.namespace.name}"
        return f"a socket pair to a Python stand-in host at {LINUX_IP} ({self.skipped})"

    def ping_remote(self, count: int = 3, timeout: float = 10.0) -> tuple[bool, str, list[float]]:
        """Ping the remote: the real ``ping -c COUNT`` in the namespace, or the stand-in.

        Returns ``(all answered, the transcript, round trips in s)``.
        """
        if self.namespace is not None and self.ping_path is not None:
            cmd = self.namespace.command(
                self.ping_path, "-c", str(count), "-i", "0.2", "-W", "2", REMOTE_IP
            )
            try:
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=timeout, check=False
                )
            except subprocess.TimeoutExpired:
                return False, f"$ ping -c {count} {REMOTE_IP}\n(no end within {timeout} s)", []
            text = f"$ ping -c {count} {REMOTE_IP}\n{proc.stdout}{proc.stderr}".rstrip()
            rtts = [float(m) / 1000 for m in re.findall(r"time=([0-9.]+) ms", proc.stdout)]
            return proc.returncode == 0 and len(rtts) == count, text, rtts
        assert self.host is not None
        rtts = self.host.ping(REMOTE_IP, count)
        lines = [f"PING {REMOTE_IP} from the stand-in host {LINUX_IP}"]
        lines += [f"reply from {REMOTE_IP}: time={rtt * 1000:.3f} ms" for rtt in rtts]
        lines.append(f"{count} packets transmitted, {len(rtts)} received")
        return len(rtts) == count, "\n".join(lines), rtts

    def close(self) -> None:
        """Remove the namespace and the interface, stop the stand-in.  Idempotent."""
        if self.host is not None:
            self.host.close()
            self.host = None
        self.backend.close()
        if self.namespace is not None:
            self.namespace.close()
            self.namespace = None


def linux_side(*, prefer_tap: bool = True) -> LinuxSide:
    """A TAP in a fresh namespace when root allows it, else the socket-pair stand-in."""
    reason: str | None = None
    if not prefer_tap:
        reason = "a socket pair was asked for"
    elif os.geteuid() != 0:
        reason = "not root: a TAP interface in a network namespace needs CAP_NET_ADMIN"
    else:
        namespace = tap = None
        try:
            ip = ensure_tool("ip", "iproute2")
            ping = ensure_tool("ping", "iputils-ping")
            namespace = NetNamespace(unique_name("openamp-hvl"), ip=ip)
            tap = TapBackend(f"hvl{secrets.token_hex(4)}")
            namespace.add_tap(tap, f"{LINUX_IP}/24")
            return LinuxSide(backend=tap, namespace=namespace, tap=tap, ping_path=ping)
        except (SystemDependencyError, NetBackendError) as exc:
            reason = f"no TAP interface: {exc}"
            if tap is not None:
                tap.close()
            if namespace is not None:
                namespace.close()
    pair = SocketPairBackend()
    return LinuxSide(backend=pair, host=PythonHost(pair.peer), skipped=reason)

"""A whole hypervisorless system on one PC: the monitor here, the remote in a child process.

:class:`HvlSystem` creates the shared memory (a POSIX segment with a unique name,
mapped at the seed's physical address ``0x37000000``), writes the device windows,
listens on a UNIX socket for the IPI line, starts the remote
(``python -m openamp.hvl remote ...``) and serves its devices in a background thread.
The remote's console reaches :attr:`HvlSystem.output` (and an optional callback); what
:meth:`HvlSystem.send` writes goes to the remote's console through a pipe, as a
terminal would.  On close everything is stopped, reaped and removed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from types import TracebackType

from ..errors import OpenAMPTimeoutError, PeerGoneError
from ..metal.deadline import Deadline
from ..metal.doorbell import UnixSocketDoorbell, UnixSocketServer
from ..metal.shm import SharedMemory, unique_name
from .layout import HvlLayout
from .monitor import ConsoleBackend, Monitor
from .tap import NetBackend


class HvlSystem:
    """Monitor (this process) and remote (a child process) on one shared memory.

    ``remote_args`` are extra arguments of ``python -m openamp.hvl remote``;
    ``on_output`` is called (in the monitor's thread) with every chunk the remote
    writes on its console; ``net`` is the network device's outside end.
    """

    def __init__(
        self,
        *,
        layout: HvlLayout | None = None,
        net: NetBackend | None = None,
        remote_args: Sequence[str] = (),
        on_output: Callable[[bytes], None] | None = None,
        echo_console: bool = False,
        timeout: float = 10.0,
        spin_us: float = 0.0,
    ) -> None:
        self.layout = layout or HvlLayout()
        self.net = net
        self.remote_args = list(remote_args)
        self.on_output = on_output
        self.echo_console = echo_console
        """Loop the remote's console output back as its input (for round-trip benchmarks)."""
        self.timeout = timeout
        self.spin_us = spin_us
        """The monitor's spin before it blocks (see :class:`Monitor`)."""
        self.name = unique_name("openamp-hvl")
        self.socket_path = f"/tmp/{self.name}.sock"
        self.output = bytearray()
        self._cond = threading.Condition()
        self.shm: SharedMemory | None = None
        self.monitor: Monitor | None = None
        self.remote: subprocess.Popen[str] | None = None
        self.doorbell: UnixSocketDoorbell | None = None
        self._server: UnixSocketServer | None = None
        self._console_r = self._console_w = -1
        self.remote_result: tuple[int, str, str] | None = None
        """``(status, stdout, stderr)`` of the remote once it exited."""
        self.monitor_error: Exception | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> HvlSystem:
        """Create everything and start the remote; returns once the remote has connected."""
        layout = self.layout
        try:
            self.shm = SharedMemory.open(self.name, layout.shm_size, unlink_on_close=True)
            region = self.shm.region(phys_base=layout.phys_base)
            self._console_r, self._console_w = os.pipe2(os.O_CLOEXEC)
            self.monitor = Monitor(
                region,
                layout,
                console=ConsoleBackend(self._output, self._console_r),
                net=self.net,
                spin_us=self.spin_us,
            )
            self._server = UnixSocketServer(self.socket_path)
            cmd = [
                sys.executable,
                "-m",
                "openamp.hvl",
                "remote",
                "--shm",
                self.name,
                "--socket",
                self.socket_path,
                "--phys-base",
                hex(layout.phys_base),
                *self.remote_args,
            ]
            self.remote = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            deadline = Deadline(self.timeout)
            while self.doorbell is None:
                try:
                    self.doorbell = self._server.accept(
                        timeout=min(0.1, deadline.remaining() or 0.1)
                    )
                except OpenAMPTimeoutError:
                    if self.remote.poll() is not None:
                        _out, err = self.remote.communicate()
                        raise PeerGoneError(
                            f"the remote exited with status {self.remote.returncode} before "
                            f"connecting:\n{err.strip()}"
                        ) from None
                    if deadline.expired():
                        raise
            self.monitor.start(self.doorbell)
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> HvlSystem:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the console --------------------------------------------------------------------------

    def _output(self, data: bytes) -> None:
        with self._cond:
            self.output += data
            # before a waiter wakes, so what it prints next comes after this
            if self.on_output is not None:
                self.on_output(data)
            self._cond.notify_all()
        if self.echo_console and self._console_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._console_w, data)

    def send(self, text: str) -> None:
        """Type ``text`` on the remote's console."""
        os.write(self._console_w, text.encode())

    def wait_output(self, text: str, timeout: float | None = None, *, start: int = 0) -> int:
        """Wait until ``text`` appears in the console output after byte ``start``; return the
        offset just past it.  :class:`OpenAMPTimeoutError` after ``timeout`` seconds (default
        the system's), :class:`PeerGoneError` if the remote exits first."""
        needle = text.encode()
        deadline = Deadline(self.timeout if timeout is None else timeout)
        with self._cond:
            while True:
                at = self.output.find(needle, start)
                if at >= 0:
                    return at + len(needle)
                if self.remote is not None and self.remote.poll() is not None:
                    status = self.remote.returncode
                    raise PeerGoneError(f"the remote exited (status {status}) before {text!r}")
                left = deadline.remaining()
                if left == 0:
                    raise OpenAMPTimeoutError(
                        f"the remote did not print {text!r} within {timeout} s"
                    )
                self._cond.wait(min(0.1, left) if left is not None else 0.1)

    def wait_remote(self, timeout: float | None = None) -> tuple[int, str, str]:
        """Wait for the remote to exit; return ``(status, stdout, stderr)``."""
        assert self.remote is not None
        if self.remote_result is None:
            try:
                out, err = self.remote.communicate(
                    timeout=self.timeout if timeout is None else timeout
                )
            except subprocess.TimeoutExpired:
                raise OpenAMPTimeoutError(f"the remote did not exit within {timeout} s") from None
            self.remote_result = (self.remote.returncode, out, err)
        return self.remote_result

    def close(self) -> None:
        """Stop the monitor, end the remote, remove the memory and the socket.  Idempotent.

        An exception that stopped the monitor's thread is kept in :attr:`monitor_error`.
        """
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            try:
                monitor.stop()
            except Exception as exc:
                self.monitor_error = exc
        if self.doorbell is not None:
            self.doorbell.shutdown()
            self.doorbell = None
        remote = self.remote
        if remote is not None and self.remote_result is None:
            try:
                out, err = remote.communicate(timeout=2.0)
            except subprocess.TimeoutExpired:
                remote.kill()
                out, err = remote.communicate()
            self.remote_result = (remote.returncode, out, err)
        if self._server is not None:
            self._server.close()
            self._server = None
        if monitor is not None:
            monitor.close()
        for fd in (self._console_r, self._console_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._console_r = self._console_w = -1
        if self.shm is not None:
            self.shm.close()
            self.shm = None

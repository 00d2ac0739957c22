"""What the monitor needs on a real board: the UIO shared memory and the user-mbox IPI.

On the seed's ZynqMP the reference monitor maps the shared memory through a userspace
I/O device (``/dev/uio0``, size in ``/sys/class/uio/uio0/maps/map0/size``) and talks to
the remote core through ``user-mbox.ko``'s character device ``/dev/umb``: writing a
byte raises the IPI to the R5, and the device becomes readable when the R5 raised one.
:func:`open_uio` and :class:`UserMboxDoorbell` give the same two things to
:class:`~openamp.hvl.monitor.Monitor`, so it can replace ``lkvm`` there.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
from pathlib import Path

from ..errors import InvalidStateError, UsageError
from ..metal.shm import SharedMemory


def uio_map_size(device: str | os.PathLike[str], index: int = 0) -> int:
    """The size of map ``index`` of a UIO device, from sysfs."""
    name = Path(device).name
    text = Path(f"/sys/class/uio/{name}/maps/map{index}/size").read_text().strip()
    return int(text, 0)


def open_uio(device: str | os.PathLike[str] = "/dev/uio0", size: int | None = None) -> SharedMemory:
    """Map map 0 of a UIO device ``MAP_SHARED`` (``size`` bytes; None: what sysfs says)."""
    path = os.fspath(device)
    length = uio_map_size(path) if size is None else size
    if length <= 0:
        raise UsageError(f"{path}: map size {length}")
    fd = os.open(path, os.O_RDWR | os.O_SYNC | os.O_CLOEXEC)
    try:
        mapping = mmap.mmap(
            fd, length, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE
        )
    finally:
        os.close(fd)
    return SharedMemory(path, mapping, name=path)


class UserMboxDoorbell:
    """A doorbell over a mailbox character device (``/dev/umb`` of ``user-mbox.ko``).

    :meth:`kick` writes ``"\\n"`` (what ``lkvm``'s ``notify_mbox`` writes), :meth:`drain`
    reads whatever is pending.  Use :meth:`open` for the device, or :meth:`from_fd` for
    any descriptor that behaves the same (a test uses one end of a socket pair).
    """

    def __init__(self, fd: int, path: str = "") -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self.path = path
        self.kicks_sent = 0
        self.kicks_received = 0
        self._closed = False

    @classmethod
    def open(cls, path: str = "/dev/umb") -> UserMboxDoorbell:
        """Open the mailbox device read-write, non-blocking."""
        return cls(os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC), path)

    @classmethod
    def from_fd(cls, fd: int, path: str = "") -> UserMboxDoorbell:
        """Take over ``fd`` (made non-blocking)."""
        return cls(fd, path)

    def _check(self) -> int:
        if self._closed:
            raise InvalidStateError(f"mailbox {self.path or self._fd} is closed")
        return self._fd

    def kick(self) -> None:
        """Raise the IPI: write one ``"\\n"``."""
        with contextlib.suppress(BlockingIOError):
            os.write(self._check(), b"\n")
            self.kicks_sent += 1

    def drain(self) -> int:
        """Consume pending notifications; return how many bytes were read."""
        fd, n = self._check(), 0
        while True:
            try:
                data = os.read(fd, 64)
            except BlockingIOError:
                break
            if not data:
                break
            n += len(data)
        self.kicks_received += n
        return n

    def wait_readable(self, timeout: float | None) -> bool:
        """Block until an IPI is pending (``timeout`` seconds, None = forever)."""
        poller = select.poll()
        poller.register(self._check(), select.POLLIN)
        return bool(poller.poll(None if timeout is None else max(0.0, timeout) * 1000))

    def fileno(self) -> int:
        """The device's descriptor."""
        return self._check()

    def close(self) -> None:
        """Close the descriptor.  Idempotent."""
        if not self._closed:
            self._closed = True
            os.close(self._fd)

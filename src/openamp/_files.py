"""Reading a file a user named: a regular file of sane size, never a device or a FIFO.

Commands read paths straight from the command line (``openamp rsc show FILE``); such a
path may be ``/dev/zero``, a FIFO nobody writes, or a 3 GiB sparse file.  Reading it
whole would hang or exhaust memory, so :func:`read_regular_file` opens without blocking,
refuses what is not a regular file and what is larger than the caller's limit, and says
so in a :class:`~openamp.errors.UsageError`.
"""

from __future__ import annotations

import os
import stat

from .errors import UsageError

__all__ = ["DEFAULT_LIMIT", "describe_mode", "read_regular_file"]

DEFAULT_LIMIT = 64 * 1024 * 1024
"""The largest file read by default: 64 MiB (firmware images are far smaller)."""

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
    stat.S_IFREG: "a regular file",
    stat.S_IFLNK: "a symbolic link",
}


def describe_mode(mode: int) -> str:
    """What kind of file ``st_mode`` says it is, for a message ("a directory")."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def read_regular_file(
    path: str | os.PathLike[str], *, limit: int = DEFAULT_LIMIT, what: str = "file"
) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    Raises :class:`UsageError` naming the path when it cannot be opened, is not a
    regular file (a FIFO, a device, a directory...), or is larger than ``limit`` bytes.
    """
    name = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not hang
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise UsageError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = describe_mode(st.st_mode)
            raise UsageError(f"{name}: cannot read it as a {what}: it is {kind}")
        if st.st_size > limit:
            raise UsageError(
                f"{name}: {st.st_size} bytes is more than the {limit}-byte limit for a {what}"
            )
        chunks = []
        left = limit + 1  # a file that grows while we read must not grow us without end
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise UsageError(f"{name}: grew past the {limit}-byte limit for a {what} while read")
        return data
    except OSError as exc:
        raise UsageError(f"{name}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)

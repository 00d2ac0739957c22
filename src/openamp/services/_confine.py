"""Opening a remote's file names under a host directory it cannot leave.

Shared by the services that give a remote the host's files (the retarget proxy, the RPC
file server).  The rule: no empty names, no NUL, no absolute paths, no ``..``
component; symbolic links may be used only if they stay inside the root; and the open
itself walks down from the root with ``O_NOFOLLOW`` at every step, so a link swapped in
after the check makes the open fail instead of escaping.  Only regular files open.
Hard links out of the root cannot be told apart from files and are not caught.

File modes, one policy for every service: a file a remote creates gets the mode it asks
for masked with :data:`REMOTE_MODE_MASK` (read and write bits only: a remote never
creates an executable, set-uid, set-gid or sticky file), then the host process's umask.
"""

from __future__ import annotations

import errno
import os
import stat

_O_PATH = getattr(os, "O_PATH", 0)

REMOTE_MODE_MASK = 0o666
"""The permission bits a remote may give a file it creates (see the module doc)."""


class Refused(Exception):
    """A name or file the remote may not open: ``errno`` and a reason to log."""

    def __init__(self, err: int, reason: str) -> None:
        super().__init__(reason)
        self.errno = err
        self.reason = reason


def resolve_beneath(root: str, name: str) -> str:
    """The path of ``name`` relative to ``root`` (a real path); raises :class:`Refused`."""
    if not name:
        raise Refused(errno.ENOENT, "open: empty file name")
    if "\0" in name:
        raise Refused(errno.EINVAL, f"open {name!r}: NUL in the file name")
    if name.startswith("/"):
        raise Refused(errno.EACCES, f"open {name!r}: absolute paths are refused")
    if ".." in name.split("/"):
        raise Refused(errno.EACCES, f"open {name!r}: '..' components are refused")
    full = os.path.realpath(os.path.join(root, name))
    if full == root:
        raise Refused(errno.EISDIR, f"open {name!r}: that is the root directory")
    if not full.startswith(root.rstrip("/") + "/"):
        raise Refused(errno.EACCES, f"open {name!r}: a symbolic link leads outside the root")
    return os.path.relpath(full, root)


def open_beneath(root: str, rel: str, flags: int, mode: int) -> int:
    """Open ``rel`` (from :func:`resolve_beneath`) under ``root`` following no link.

    A created file gets ``mode & REMOTE_MODE_MASK`` (then the umask).

    Returns a blocking descriptor of a regular file.  Raises :class:`Refused` for
    anything else and ``OSError`` for what the file system refuses.
    """
    parts = rel.split("/")
    dirfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | _O_PATH)
    try:
        for part in parts[:-1]:
            nxt = os.open(
                part,
                os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | _O_PATH,
                dir_fd=dirfd,
            )
            os.close(dirfd)
            dirfd = nxt
        # O_NONBLOCK: opening a FIFO must not block the server; it is refused below.
        fd = os.open(
            parts[-1],
            flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK,
            mode & REMOTE_MODE_MASK,
            dir_fd=dirfd,
        )
    finally:
        os.close(dirfd)
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        err = errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EACCES
        raise Refused(err, f"open {rel!r}: {what}")
    os.set_blocking(fd, True)
    return fd

"""Shared memory: POSIX shm segments and plain files mapped ``MAP_SHARED``.

This is libmetal's ``metal_shmem_open`` for Linux user space.  A segment named ``NAME``
is the file ``/dev/shm/NAME`` (what glibc's ``shm_open`` opens), created exactly as
libmetal creates it: ``open(O_RDWR | O_CREAT | O_CLOEXEC, 0600)``, grown with
``ftruncate`` when it is smaller than the requested size (under ``flock``, so two
openers cannot shrink each other's segment), never shrunk, and mapped ``MAP_SHARED``.
A C program built for the Linux "generic" machine that opens ``openamp.shm`` therefore
sees the very bytes a :class:`SharedMemory` opened with the same name maps.

Differences from libmetal, all harmless for the wire: the file is grown to exactly
``size`` bytes (libmetal rounds up to its page size, which changes nothing for the
page-multiple sizes the machines use), the mapping is not ``mlock``-ed (the default
``RLIMIT_MEMLOCK`` is often too small), and the physical address of a byte is its
offset (libmetal reads ``/proc/self/pagemap`` but falls back to exactly this).

What this module must not do: unlink a segment nobody asked it to unlink.  That is why
it does not use :mod:`multiprocessing.shared_memory`, whose resource tracker unlinks
segments when the process that created them exits, behind the peer's back.  Segments
are removed only by :meth:`SharedMemory.unlink`, by ``unlink_on_close=True``, and —
for segments opened with ``hold=True`` — by the last holder or by :func:`reap_stale`.
It also knows nothing about what lives in the memory (resource table, rings, buffers).

Leaving nothing behind
----------------------
A process killed with SIGKILL runs no cleanup, so a segment whose name embeds its pid
(:func:`unique_name`) would stay in ``/dev/shm`` forever.  With ``hold=True`` a
:class:`SharedMemory` keeps an *open file description lock* (``F_OFD_SETLK``, a read
lock on the whole file) for as long as it is open; the kernel drops it when the process
dies, however it dies.  Whoever finds no holder left may remove the segment: the last
holder does so when it closes with ``unlink_when_last=True`` (the survivor of a killed
peer), and :func:`reap_stale` removes such segments of dead processes when a machine
starts.  These locks do not interact with the ``flock`` libmetal takes while it sizes a
segment, so C programs are unaffected — and C programs hold no such lock, which is why
the fixed C names are never reaped.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import gc
import logging
import mmap
import os
import re
import secrets
import stat
import struct
import time
import warnings
from types import TracebackType

from ..errors import InvalidStateError, UsageError
from . import sigbus
from .io import IoRegion

__all__ = [
    "SHM_DIR",
    "SharedMemory",
    "is_held",
    "map_readonly",
    "reap_stale",
    "unique_name",
    "unlink_when_unheld",
]

log = logging.getLogger("openamp.metal.shm")

# struct flock for F_OFD_SETLK on Linux x86-64 and aarch64: type, whence, start, len,
# pid (0 for OFD locks); offsets derived by the compiler's layout, padded to 32 bytes.
_FLOCK = struct.Struct("hhxxxxqqixxxx")
STALE_AGE_S = 10.0
"""A segment younger than this is never reaped: its creator may not hold its lock yet."""

#: Where glibc's ``shm_open`` keeps POSIX shared-memory segments on Linux.
SHM_DIR = "/dev/shm"

_NAME_MAX = 255


def unique_name(prefix: str = "openamp") -> str:
    """A name that no other process or call will produce: ``'<prefix>-<pid>-<8 hex>'``.

    For virtual machines and tests that must not collide with each other or with the
    fixed ``openamp.shm`` / ``/tmp/openamp.event.0`` names of the C Linux machine.  The
    result is a valid shm name if ``prefix`` is one.
    """
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}"


def _check_shm_name(name: str) -> None:
    if not isinstance(name, str):
        raise UsageError(f"shared memory name must be a str, not {type(name).__name__}")
    if not name:
        raise UsageError("shared memory name must not be empty")
    if "/" in name:
        raise UsageError(
            f"shared memory name {name!r} must not contain '/': give the bare name "
            f"(e.g. 'openamp.shm', which maps {SHM_DIR}/openamp.shm); "
            "use SharedMemory.open_file() for a path"
        )
    if name in (".", ".."):
        raise UsageError(f"shared memory name {name!r} is not allowed")
    if "\0" in name:
        raise UsageError(f"shared memory name {name!r} contains a NUL character")
    if len(name.encode()) > _NAME_MAX:
        raise UsageError(f"shared memory name is longer than {_NAME_MAX} bytes")


def _check_size(size: int | None) -> None:
    if size is None:
        return
    if isinstance(size, bool) or not isinstance(size, int):
        raise UsageError(f"size must be an int number of bytes, not {type(size).__name__}")
    if size <= 0:
        raise UsageError(f"size must be positive, got {size}")


class SharedMemory:
    """A ``MAP_SHARED`` mapping of a POSIX shm segment or a file, usable as a context manager.

    Open one with :meth:`open` (a shm name) or :meth:`open_file` (a path).  Attributes:

    * ``name`` — the shm name, or the path for a file;
    * ``path`` — the file that backs the mapping (``/dev/shm/NAME`` for shm);
    * ``size`` — bytes mapped;
    * ``mmap`` — the :class:`mmap.mmap` (raises :class:`InvalidStateError` once closed);
    * ``unlink_on_close`` — whether :meth:`close` also removes the file (for the side
      that created a segment and owns its life time; libmetal never unlinks).

    :meth:`region` hands out :class:`IoRegion` s over the mapping.  :meth:`close` releases
    them first so that the mapping can be unmapped (CPython refuses to close an ``mmap``
    while a ``memoryview`` of it exists).
    """

    def __init__(
        self,
        path: str,
        mapping: mmap.mmap,
        *,
        name: str | None = None,
        unlink_on_close: bool = False,
        hold_fd: int | None = None,
        unlink_when_last: bool = False,
    ) -> None:
        """Wrap an existing mapping; prefer :meth:`open` and :meth:`open_file`."""
        self.path = path
        self.name = name if name is not None else path
        self.size = len(mapping)
        self.unlink_on_close = unlink_on_close
        self.unlink_when_last = unlink_when_last
        """Remove the file on :meth:`close` if no other holder is left (``hold=True``)."""
        self._mmap: mmap.mmap | None = mapping
        self._regions: list[IoRegion] = []
        self._unlinked = False
        self._hold_fd = hold_fd

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        name: str,
        size: int | None = None,
        *,
        create: bool = True,
        unlink_on_close: bool = False,
        hold: bool = True,
        unlink_when_last: bool = False,
    ) -> SharedMemory:
        """Open (and by default create) the POSIX shm segment ``name`` (``/dev/shm/NAME``).

        ``size`` is the number of bytes to map.  A segment smaller than ``size`` is grown
        to it; a larger one is left as it is (never shrunk) and only its first ``size``
        bytes are mapped.  ``size=None`` opens an existing segment and maps all of it
        (``create`` is then irrelevant: nothing is created without a size).

        ``create=False`` refuses to create a missing segment.  A missing segment that is
        not created raises :class:`FileNotFoundError` (the built-in, with a message that
        names the segment), so ``except FileNotFoundError`` works as with ``open()``.

        ``name`` is a bare name: non-empty, no ``'/'``, not ``'.'`` or ``'..'``; anything
        else raises :class:`~openamp.errors.UsageError`, as does a size that is not a
        positive int, or ``size=None`` on an empty segment.

        ``hold`` (the default) holds the segment while it is open (see "Leaving nothing
        behind" in the module doc); ``unlink_when_last=True`` removes it on
        :meth:`close` when no other holder is left.
        """
        _check_shm_name(name)
        _check_size(size)
        path = os.path.join(SHM_DIR, name)
        # glibc's shm_open adds O_NOFOLLOW; a symlink planted in /dev/shm is refused.
        mapping, fd = _map(
            path, size, create=create, extra_flags=os.O_NOFOLLOW, what="shared memory", hold=hold
        )
        return cls(
            path,
            mapping,
            name=name,
            unlink_on_close=unlink_on_close,
            hold_fd=fd,
            unlink_when_last=unlink_when_last and hold,
        )

    @classmethod
    def open_file(
        cls,
        path: str | os.PathLike[str],
        size: int | None = None,
        *,
        create: bool = True,
        unlink_on_close: bool = False,
        hold: bool = True,
        unlink_when_last: bool = False,
    ) -> SharedMemory:
        """Map the regular file ``path``, with the same rules as :meth:`open`.

        For machines whose shared memory is an ordinary file (a tmpfs or hugetlbfs path,
        a file another tool created).  ``name`` is the path.
        """
        _check_size(size)
        p = os.fspath(path)
        if not p:
            raise UsageError("shared memory file path must not be empty")
        mapping, fd = _map(
            p, size, create=create, extra_flags=0, what="shared memory file", hold=hold
        )
        return cls(
            p,
            mapping,
            name=p,
            unlink_on_close=unlink_on_close,
            hold_fd=fd,
            unlink_when_last=unlink_when_last and hold,
        )

    # -- use ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._mmap is None

    @property
    def mmap(self) -> mmap.mmap:
        """The mapping.  Raises :class:`InvalidStateError` after :meth:`close`."""
        if self._mmap is None:
            raise InvalidStateError(f"shared memory {self.name!r} is closed")
        return self._mmap

    def region(self, phys_base: int = 0, name: str | None = None) -> IoRegion:
        """An :class:`IoRegion` over the whole mapping.

        ``phys_base`` is the physical (device) address of the first byte: 0 for the C
        Linux machine, where a byte's physical address is its offset in the file.
        ``name`` defaults to the segment's name.  The region is released by
        :meth:`close`; using it afterwards raises ``ValueError``.
        """
        r = IoRegion(self.mmap, phys_base=phys_base, name=self.name if name is None else name)
        self._regions.append(r)
        return r

    def close(self) -> None:
        """Unmap, and unlink the file if ``unlink_on_close``.  Idempotent.

        Regions from :meth:`region` are released first.  If other views of the mapping
        are still alive (a :meth:`IoRegion.subregion`, an :meth:`IoRegion.view`, a
        ``memoryview`` taken by the caller), the mapping cannot be unmapped now: a
        :class:`ResourceWarning` is issued and the memory is unmapped when the last view
        is garbage-collected.  The object counts as closed either way.
        """
        mapping = self._mmap
        if mapping is not None:
            self._mmap = None
            regions, self._regions = self._regions, []
            for r in regions:
                # a caller may have exported the region's view further; handled below
                with contextlib.suppress(BufferError):
                    r.release()
            try:
                mapping.close()
            except BufferError:
                # views may only be kept alive by reference cycles
                gc.collect()
                try:
                    mapping.close()
                except BufferError:
                    warnings.warn(
                        f"shared memory {self.name!r} closed while views of it are still "
                        "alive; it stays mapped until they are released",
                        ResourceWarning,
                        stacklevel=2,
                    )
            if mapping.closed:  # unmapped now (else the guard goes with the last view)
                sigbus.unguard(id(mapping))
        fd, self._hold_fd = self._hold_fd, None
        if fd is not None:
            last = self.unlink_when_last and not self._unlinked and _no_other_holder(fd)
            os.close(fd)  # drops our lock
            if last:
                self.unlink()
        if self.unlink_on_close:
            self.unlink()

    def unlink(self) -> None:
        """Remove the backing file (``shm_unlink`` for a segment).  Idempotent.

        A file that is already gone is not an error.  The mapping stays usable until
        :meth:`close`; a peer that has it open keeps its mapping too.
        """
        if self._unlinked:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._unlinked = True

    def __enter__(self) -> SharedMemory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"SharedMemory({self.name!r}, path={self.path!r}, size={self.size:#x}, {state})"


def _lock(fd: int, kind: int, *, wait: bool = False) -> bool:
    """Take (or change to) an OFD lock of ``kind`` on the whole file; False if busy."""
    try:
        fcntl.fcntl(
            fd, fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK, _FLOCK.pack(kind, 0, 0, 0, 0)
        )
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _no_other_holder(fd: int) -> bool:
    """Whether nobody but us holds the file: our read lock upgrades to a write lock."""
    return _lock(fd, fcntl.F_WRLCK)


_PID_IN_NAME = re.compile(r"-(\d+)-[0-9a-f]{8}(?:\.[a-z0-9]+)?$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_held(path: str) -> bool:
    """Whether some process holds the segment at ``path`` open (``hold=True``)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        return not _lock(fd, fcntl.F_WRLCK)
    except OSError:
        return True  # cannot tell: treat it as held, never remove it
    finally:
        os.close(fd)


def unlink_when_unheld(path: str, *, wait: float = 1.0) -> bool:
    """Remove ``path`` as soon as nobody holds it, waiting up to ``wait`` seconds.

    For a survivor whose peer just died: the kernel drops a dead process's hold a
    moment after the peer's other descriptors (its socket) are closed.  Returns whether
    the file was removed.
    """
    end = time.monotonic() + wait
    while is_held(path):
        if time.monotonic() >= end:
            return False
        time.sleep(0.005)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True


def reap_stale(
    directory: str = SHM_DIR, pattern: str = "openamp-*", *, min_age: float | None = None
) -> list[str]:
    """Remove the segments in ``directory`` matching ``pattern`` whose holders are gone.

    A segment qualifies when its name embeds the pid of its creator
    (:func:`unique_name`) and that process is gone, nobody holds it (see "Leaving
    nothing behind"), and it is older than ``min_age`` seconds (so a creator that has
    not taken its lock yet is safe).  The fixed C names never qualify.  Returns the
    paths removed.  Machines call this when they start.  ``min_age`` None means
    :data:`STALE_AGE_S`.
    """
    removed: list[str] = []
    now = time.time()
    if min_age is None:
        min_age = STALE_AGE_S
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        found = _PID_IN_NAME.search(name)
        if found is None or _alive(int(found.group(1))):
            continue
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or now - st.st_ctime < min_age or is_held(path):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
            log.info("removed %s, left behind by a process that is gone", path)
    return removed


def map_readonly(path: str | os.PathLike[str]) -> mmap.mmap:
    """Map the whole file at ``path`` read-only: ``open(O_RDONLY)``, ``mmap(PROT_READ)``.

    For observers that must never change what they look at (the passive tap,
    ``openamp inspect``): a write through the mapping is impossible, not just avoided.
    It takes no hold (see "Leaving nothing behind"): an observer keeps nothing alive.
    Raises :class:`FileNotFoundError` for a missing file and :class:`UsageError` for an
    empty one or one that is not a regular file.
    """
    p = os.fspath(path)
    # O_NONBLOCK: opening a FIFO must not hang (it is refused just below)
    fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{p} is not a regular file")
        if st.st_size == 0:
            raise UsageError(f"{p} is empty")
        mapping = mmap.mmap(fd, st.st_size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        sigbus.guard(id(mapping), mapping)  # the owner may shrink the file under us
        return mapping
    finally:
        os.close(fd)


def _map(
    path: str, size: int | None, *, create: bool, extra_flags: int, what: str, hold: bool = False
) -> tuple[mmap.mmap, int | None]:
    flags = os.O_RDWR | os.O_CLOEXEC | extra_flags
    if size is not None and create:
        flags |= os.O_CREAT
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        if size is None:
            how = "size=None opens an existing one; give a size to create it"
        else:
            how = "create=False; pass create=True to create it"
        raise FileNotFoundError(
            errno.ENOENT, f"{what} {path} does not exist ({how})", path
        ) from None
    try:
        # libmetal takes the same lock around its size check and ftruncate.
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UsageError(f"{what} {path} is not a regular file")
            if size is None:
                if st.st_size == 0:
                    raise UsageError(f"{what} {path} is empty; give a size to map it")
                size = st.st_size
            elif st.st_size < size:
                os.ftruncate(fd, size)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        mapping = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        # a peer that shrinks the file must not kill us with SIGBUS (see metal/sigbus.py)
        sigbus.guard(id(mapping), mapping)
        if hold:
            # a read lock on our own open file description: it lives as long as this fd,
            # and the kernel drops it when the process dies, however it dies
            _lock(fd, fcntl.F_RDLCK, wait=True)
            held, fd = fd, -1
            return mapping, held
        return mapping, None
    finally:
        # mmap keeps its own duplicate of the descriptor
        if fd >= 0:
            os.close(fd)

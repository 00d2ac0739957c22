"""Survive a peer truncating the file behind a shared mapping (SIGBUS), and notice it.

A process that maps a file ``MAP_SHARED`` dies of SIGBUS when it touches a page past
the file's end, and the file's owner may shrink it at any time: a vhost-user frontend
owns the guest-memory file our backend maps.  Checking the size before each access
leaves a window between the check and the access, and Python cannot recover from a
fault inside a memory copy by itself.

:func:`guard` closes the window for the mappings it is given: it installs a SIGBUS
handler that, for a fault inside a guarded mapping, maps an anonymous zero page over
the faulting page (``mmap(MAP_FIXED)``) and counts the fault; the access then completes
on that page (reading zeros, or writing where the peer will never see it) and the
owner of the mapping learns of it from :func:`faults` at its next check and ends the
session with a typed error.  A fault anywhere else is handed back to the handler that
was installed before (Python's ``faulthandler``, or the default: the process dies as it
would have).

The handler is a ctypes callback: it runs on the faulting thread, which holds the GIL
(guest memory is only touched from Python code), so it calls ``mmap`` and appends to a
list, nothing more.  Linux on x86-64 and AArch64 (``siginfo_t.si_addr`` at offset 16);
elsewhere :func:`guard` does nothing and returns False.
"""

from __future__ import annotations

import mmap
import os
import signal
import sys
import threading
import weakref
from typing import Any

__all__ = ["absorbed", "faults", "guard", "unguard"]

_SA_SIGINFO = 0x4
_SA_NODEFER = 0x40000000
_SA_ONSTACK = 0x08000000
_MAP_FIXED = 0x10
_SUPPORTED = sys.platform == "linux" and os.uname().machine in ("x86_64", "aarch64")

_lock = threading.RLock()
"""Re-entrant: a garbage collection inside :func:`guard` may run a finalizer that
calls :func:`unguard` on the same thread."""
_ranges: dict[int, tuple[int, int]] = {}
"""Guarded mappings: key -> [start, end) addresses."""
_faults: list[tuple[int, int]] = []
"""(key, page address) of every fault taken."""
_absorbed = [0]
"""Faults absorbed since the process started (a list: the handler only adds to it)."""
_installed = False
_failed = False
# set by _install(): ctypes is imported only when the first mapping is guarded (it
# costs a few milliseconds, and most commands map nothing)
_ctypes: Any = None
_libc: Any = None
_previous: Any = None
_callback: Any = None
_map_failed: int | None = -1
_PyBuffer: Any = None


def _on_sigbus(signum: int, info: int | None, context: int | None) -> None:
    ctypes = _ctypes
    addr = ctypes.c_void_p.from_address(info + 16).value if info else None
    libc = _libc
    if addr is not None and libc is not None:
        for key, (start, end) in list(_ranges.items()):
            if start <= addr < end:
                page = addr & ~(mmap.PAGESIZE - 1)
                got = libc.mmap(
                    ctypes.c_void_p(page),
                    ctypes.c_size_t(mmap.PAGESIZE),
                    mmap.PROT_READ | mmap.PROT_WRITE,
                    mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_FIXED,
                    -1,
                    ctypes.c_long(0),
                )
                if got != _map_failed:
                    _faults.append((key, page))
                    _absorbed[0] += 1
                    return
    # Not ours (or the page could not be replaced): give the signal back to whoever had
    # it; returning re-executes the access, which faults again into that handler.
    if libc is not None and _previous is not None:
        libc.sigaction(signal.SIGBUS, ctypes.byref(_previous), None)


def _install() -> bool:
    global _installed, _failed, _ctypes, _libc, _previous, _callback, _map_failed, _PyBuffer
    if _installed or _failed:
        return _installed
    try:
        import ctypes

        class Sigaction(ctypes.Structure):
            # glibc's struct sigaction on Linux (x86-64, AArch64): the handler, a 1024-bit
            # mask, the flags, the restorer (glibc fills it in)
            _fields_ = [
                ("sa_sigaction", ctypes.c_void_p),
                ("sa_mask", ctypes.c_ulong * 16),
                ("sa_flags", ctypes.c_int),
                ("sa_restorer", ctypes.c_void_p),
            ]

        class PyBuffer(ctypes.Structure):
            # CPython's Py_buffer, for the address of a read-only mapping (see _address)
            _fields_ = [
                ("buf", ctypes.c_void_p),
                ("obj", ctypes.c_void_p),
                ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t),
                ("readonly", ctypes.c_int),
                ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p),
                ("shape", ctypes.c_void_p),
                ("strides", ctypes.c_void_p),
                ("suboffsets", ctypes.c_void_p),
                ("internal", ctypes.c_void_p),
            ]

        _PyBuffer = PyBuffer
        api = ctypes.pythonapi
        api.PyObject_GetBuffer.argtypes = [ctypes.py_object, ctypes.c_void_p, ctypes.c_int]
        api.PyBuffer_Release.argtypes = [ctypes.c_void_p]
        libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols: libc's
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        ]
        libc.sigaction.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        handler = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
        callback = handler(_on_sigbus)
        action = Sigaction()
        action.sa_sigaction = ctypes.cast(callback, ctypes.c_void_p).value
        action.sa_flags = _SA_SIGINFO | _SA_NODEFER | _SA_ONSTACK
        previous = Sigaction()
        _ctypes, _libc, _callback, _previous = ctypes, libc, callback, previous
        _map_failed = ctypes.c_void_p(-1).value
        if libc.sigaction(signal.SIGBUS, ctypes.byref(action), ctypes.byref(previous)) != 0:
            raise OSError(ctypes.get_errno(), "sigaction(SIGBUS) failed")
    except (ImportError, OSError, AttributeError):
        _failed = True  # no ctypes, no libc symbols: mappings stay unguarded
        return False
    _installed = True
    return True


def guard(key: int, mapping: mmap.mmap) -> bool:
    """Guard ``mapping`` under ``key`` (any int unique to its owner, e.g. ``id(obj)``).

    Returns False where guarding is not supported (the mapping is then unguarded:
    a truncation kills the process).  Installs the process's SIGBUS handler the first
    time (see the module docstring); re-installing ``faulthandler`` afterwards replaces
    it.
    """
    if not _SUPPORTED or len(mapping) == 0:
        return False
    with _lock:
        if not _install():
            return False
        start = _address(mapping)
        _ranges[key] = (start, start + len(mapping))
    # however the mapping goes (close() and garbage collection both unmap), the guard
    # goes with it: a stale range could take another mapping's fault for ours
    weakref.finalize(mapping, unguard, key)
    return True


def _address(mapping: mmap.mmap) -> int:
    """The address of a mapping's first byte, read-only mappings included (through the
    buffer protocol: ``PyObject_GetBuffer``/``PyBuffer_Release``, the stable C API)."""
    import ctypes  # loaded already by _install()

    api = ctypes.pythonapi
    view = _PyBuffer()
    if api.PyObject_GetBuffer(mapping, ctypes.byref(view), 0) != 0:  # PyBUF_SIMPLE
        raise OSError("the mapping has no buffer")
    try:
        return int(view.buf or 0)
    finally:
        api.PyBuffer_Release(ctypes.byref(view))


def unguard(key: int) -> None:
    """Stop guarding ``key``'s mapping (before it is unmapped) and forget its faults."""
    with _lock:
        _ranges.pop(key, None)
        _faults[:] = [f for f in _faults if f[0] != key]


def faults(key: int) -> list[int]:
    """The page addresses of ``key``'s mapping that faulted (the peer truncated its file
    under them), oldest first; empty while none did.  Cheap: a scan of a list that is
    empty unless something went wrong."""
    if not _faults:
        return []
    return [page for k, page in _faults if k == key]


def absorbed() -> int:
    """How many faults the guard has absorbed in this process (every mapping, ever)."""
    return _absorbed[0]

"""The SIGBUS guard: a truncated file under a guarded mapping costs a zero page, not the
process; a fault anywhere else still ends the process as before."""

from __future__ import annotations

import mmap
import os
import signal
import subprocess
import sys

from openamp.metal import sigbus

PAGE = mmap.PAGESIZE


def test_a_guarded_mapping_survives_its_file_shrinking_and_the_fault_is_counted() -> None:
    fd = os.memfd_create("guarded")
    os.ftruncate(fd, 3 * PAGE)
    m = mmap.mmap(fd, 3 * PAGE)
    try:
        assert sigbus.guard(id(m), m)
        before = sigbus.absorbed()
        m[0:4] = b"keep"
        m[2 * PAGE : 2 * PAGE + 4] = b"gone"
        os.ftruncate(fd, PAGE)
        assert sigbus.faults(id(m)) == []
        assert bytes(m[2 * PAGE : 2 * PAGE + 4]) == bytes(4)  # a zero page now
        m[PAGE : PAGE + 4] = b"lost"  # a write completes too (on the zero page)
        assert len(sigbus.faults(id(m))) == 2
        assert sigbus.absorbed() == before + 2
        assert bytes(m[0:4]) == b"keep"  # what is still in the file is still shared
        os.ftruncate(fd, 3 * PAGE)
        assert os.pread(fd, 4, PAGE) == bytes(4)  # the peer never sees our writes there
    finally:
        sigbus.unguard(id(m))
        m.close()
        os.close(fd)
    assert sigbus.faults(id(m)) == []


def test_a_fault_outside_every_guarded_mapping_still_kills_the_process() -> None:
    code = (
        "import mmap, os\n"
        "from openamp.metal import sigbus\n"
        "fd = os.memfd_create('g'); os.ftruncate(fd, 4096); g = mmap.mmap(fd, 4096)\n"
        "assert sigbus.guard(id(g), g)\n"
        "fd2 = os.memfd_create('u'); os.ftruncate(fd2, 4096); u = mmap.mmap(fd2, 4096)\n"
        "os.ftruncate(fd2, 0)\n"
        "print(u[0])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert r.returncode == -signal.SIGBUS, r


def test_a_finalizer_that_unguards_inside_guard_does_not_deadlock() -> None:
    """A garbage collection inside guard() can run the finalizer of a mapping dropped
    without close(), which unguards it on the same thread, inside guard's lock (a plain
    lock hung the fuzzer here).  The lock is re-entrant; the finalizer runs as it would."""
    code = (
        "import gc, mmap\n"
        "from openamp.metal import sigbus\n"
        "old = mmap.mmap(-1, 4096)\n"
        "assert sigbus.guard(id(old), old)\n"
        "with sigbus._lock:  # where guard() holds it\n"
        "    del old  # its finalizer unguards it, here\n"
        "    gc.collect()\n"
        "print(len(sigbus._ranges))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0"

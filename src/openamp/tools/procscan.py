"""Who uses a link: the processes that map a shared-memory file, the UNIX sockets on a path.

Read from ``/proc`` only (``/proc/PID/maps``, ``/proc/net/unix``), so that looking
never disturbs the link: the doctor must not connect to a doorbell socket (its server
accepts exactly one peer) nor open the memory for writing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["UnixSocket", "process_name", "processes_mapping", "unix_sockets"]


def processes_mapping(path: str, *, proc: str = "/proc") -> list[int]:
    """The pids (other than ours) that have ``path`` mapped, in order."""
    me = os.getpid()
    pids = []
    target = os.path.realpath(path)
    for entry in os.scandir(proc):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(os.path.join(entry.path, "maps"), encoding="utf-8", errors="replace") as f:
                for line in f:
                    name = line.rstrip("\n").split(None, 5)[-1] if line.count(" ") >= 5 else ""
                    if name in (path, target):
                        pids.append(int(entry.name))
                        break
        except OSError:
            continue
    return sorted(pids)


def process_name(pid: int, *, proc: str = "/proc") -> str:
    """The command line of ``pid`` (shortened), or ``"?"`` if it is gone."""
    try:
        raw = Path(proc, str(pid), "cmdline").read_bytes()
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    text = " ".join(words)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class UnixSocket:
    """One line of ``/proc/net/unix`` with a path."""

    inode: int
    state: int
    """1: unconnected (a listener), 3: connected."""
    listening: bool
    path: str


def unix_sockets(path: str, *, proc: str = "/proc") -> list[UnixSocket]:
    """The UNIX sockets bound to ``path`` (a listener, and the server's accepted ones)."""
    out = []
    try:
        text = Path(proc, "net", "unix").read_text()
    except OSError:
        return []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 8 or parts[7] != path:
            continue
        flags = int(parts[3], 16)
        out.append(UnixSocket(int(parts[6]), int(parts[5], 16), bool(flags & 0x10000), parts[7]))
    return out

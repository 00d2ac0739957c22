"""The rpmsg-utils of openamp-system-reference, as the seed's STM32MP1 demos call them.

``python -m openamp.linux.rpmsg_utils TOOL ARGS...`` runs one of

* ``rpmsg_export_dev <ctrl> [-d] <name> [<src> <dst>]`` -- ``RPMSG_CREATE_DEV_IOCTL``
  (``-d``: ``RPMSG_RELEASE_DEV_IOCTL``): a channel Linux announces to the remote;
* ``rpmsg_export_ept <ctrl> <name> [<src> <dst>]`` -- ``RPMSG_CREATE_EPT_IOCTL``: a new
  ``/dev/rpmsgN`` that talks to a fixed remote address;
* ``rpmsg_destroy_ept <dev>`` -- ``RPMSG_DESTROY_EPT_IOCTL``;
* ``rpmsg_ping <dev>`` -- writes ``ping <dev>``, reads one answer (at most 256 bytes)
  and prints it up to its first NUL, as ``message for <dev>: "..."`` (the seed's
  version; ``--current`` prints today's ``message received: "..."``),

with the C tools' argument rules (addresses are ``strtoul(..., 10)``, so ``-1`` is
``RPMSG_ADDR_ANY``), messages and exit statuses, so that the seed's commands run as
written: ``./rpmsg_export_dev /dev/rpmsg_ctrl0 rpmsg-tty 257 -1``.  The ``openamp rpmsg``
command does the same with friendlier output.  Board layer: nothing of the simulation
is imported.
"""

from __future__ import annotations

import errno as E
import fcntl
import os
import select
import sys
from collections.abc import Callable, Sequence

from .rpmsg import (
    ENDPOINT_INFO,
    RPMSG_ADDR_ANY,
    RPMSG_CREATE_DEV_IOCTL,
    RPMSG_CREATE_EPT_IOCTL,
    RPMSG_DESTROY_EPT_IOCTL,
    RPMSG_RELEASE_DEV_IOCTL,
)

PING_READ = 256
PING_TIMEOUT_MS = 10_000


def _strtoul(text: str) -> int | None:
    """``strtoul(text, &end, 10)`` with the tools' ``*endptr`` check: None if not all
    digits; a leading ``-`` wraps as C does (``-1`` is 0xFFFFFFFF)."""
    try:
        value = int(text, 10)
    except ValueError:
        return None
    return value & 0xFFFFFFFF


def _fail(prog: str, message: str, code: int = 1) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return code


def export_dev(argv: Sequence[str]) -> int:
    """``rpmsg_export_dev <ctrl> [-d] <name> [<src> <dst>]``."""
    prog = "rpmsg_export_dev"
    usage = f"{prog} <ctrl> [-d] <name> [<src> <dst>]\n"
    if len(argv) < 2:
        sys.stderr.write(usage)
        return 1
    release = 1 if argv[1].startswith("-") else 0
    if release and argv[1] != "-d":
        print("Invalid option.")
        sys.stderr.write(usage)
        return 1
    rest = list(argv[1 + release :])
    if len(rest) not in (1, 3):
        sys.stderr.write(usage)
        return 1
    src = dst = RPMSG_ADDR_ANY
    if len(rest) == 3:
        s, d = _strtoul(rest[1]), _strtoul(rest[2])
        if s is None or d is None:
            sys.stderr.write(usage)
            return 1
        src, dst = s, d
    return _ctrl_ioctl(
        prog,
        argv[0],
        RPMSG_RELEASE_DEV_IOCTL if release else RPMSG_CREATE_DEV_IOCTL,
        rest[0],
        src,
        dst,
        lambda: f"failed to {'release' if release else 'create'} rpmsg device",
    )


def export_ept(argv: Sequence[str]) -> int:
    """``rpmsg_export_ept <ctrl> <name> [<src> <dst>]``."""
    prog = "rpmsg_export_ept"
    if len(argv) not in (2, 4):
        sys.stderr.write(f"{prog} <ctrl> <name> [<src> <dst>]\n")
        return 1
    src = dst = RPMSG_ADDR_ANY
    if len(argv) == 4:
        s, d = _strtoul(argv[2]), _strtoul(argv[3])
        if s is None or d is None:
            sys.stderr.write(f"{prog} <ctrl> <name> [<src> <dst>]\n")
            return 1
        src, dst = s, d
    return _ctrl_ioctl(
        prog,
        argv[0],
        RPMSG_CREATE_EPT_IOCTL,
        argv[1],
        src,
        dst,
        lambda: "failed to create endpoint",
    )


def _ctrl_ioctl(
    prog: str, ctrl: str, request: int, name: str, src: int, dst: int, what: Callable[[], str]
) -> int:
    try:
        fd = os.open(ctrl, os.O_RDWR)
    except OSError as exc:
        return _fail(prog, f"failed to open {ctrl}\n: {os.strerror(exc.errno or 0)}")
    try:
        raw = name.encode()[:32]
        fcntl.ioctl(fd, request, ENDPOINT_INFO.pack(raw, src, dst))
    except OSError as exc:
        print(f"{what()}: {os.strerror(exc.errno or 0)}", file=sys.stderr)
        return 1
    finally:
        os.close(fd)
    return 0


def destroy_ept(argv: Sequence[str]) -> int:
    """``rpmsg_destroy_ept <dev>``."""
    prog = "rpmsg_destroy_ept"
    if len(argv) != 1:
        sys.stderr.write(f"{prog} <dev>\n")
        return 1
    try:
        fd = os.open(argv[0], os.O_RDWR)
    except OSError as exc:
        return _fail(prog, f"failed to open {argv[0]}\n: {os.strerror(exc.errno or 0)}")
    try:
        fcntl.ioctl(fd, RPMSG_DESTROY_EPT_IOCTL)
    except OSError as exc:
        return _fail(prog, f"failed to destroy endpoint: {os.strerror(exc.errno or 0)}")
    finally:
        os.close(fd)
    return 0


def ping(argv: Sequence[str], *, current: bool = False, timeout_ms: int = PING_TIMEOUT_MS) -> int:
    """``rpmsg_ping <dev>``: one ``ping <dev>``, one answer.

    The C tool blocks in ``read`` forever; we give up after ``timeout_ms`` (status 1).
    """
    prog = "rpmsg_ping"
    if len(argv) != 1:
        sys.stderr.write(f"{prog} <dev>\n")
        return 1
    dev = argv[0]
    try:
        fd = os.open(dev, os.O_RDWR | os.O_NONBLOCK)
    except OSError as exc:
        return _fail(prog, f"failed to open {dev}\n: {os.strerror(exc.errno or 0)}")
    try:
        try:
            os.write(fd, f"ping {dev}".encode())
        except OSError:
            sys.stderr.write(f"failed to write endpoint  {dev}")
            return 1
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(timeout_ms):
            sys.stderr.write(f"failed to read endpoint {dev}: no answer\n")
            return 1
        try:
            answer = os.read(fd, PING_READ)
        except OSError as exc:
            if exc.errno == E.EAGAIN:
                sys.stderr.write(f"failed to read endpoint {dev}")
                return 1
            raise
    finally:
        os.close(fd)
    text = answer.split(b"\0", 1)[0].decode(errors="replace")
    head = "message received" if current else f"message for {dev}"
    sys.stderr.write(f'{head}: "{text}"\n')
    sys.stderr.flush()
    return 0


TOOLS: dict[str, Callable[[Sequence[str]], int]] = {
    "rpmsg_export_dev": export_dev,
    "rpmsg_export_ept": export_ept,
    "rpmsg_destroy_ept": destroy_ept,
    "rpmsg_ping": ping,
}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m openamp.linux.rpmsg_utils TOOL ARGS...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in TOOLS:
        print(
            f"usage: python -m openamp.linux.rpmsg_utils {{{','.join(TOOLS)}}} ARGS...",
            file=sys.stderr,
        )
        return 2
    tool, rest = args[0], args[1:]
    if tool == "rpmsg_ping" and rest[:1] == ["--current"]:
        return ping(rest[1:], current=True)
    return TOOLS[tool](rest)


if __name__ == "__main__":
    sys.exit(main())

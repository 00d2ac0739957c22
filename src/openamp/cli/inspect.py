"""``openamp inspect``: what a link's memory (or a board's kernel) says right now.

``openamp inspect --machine virtual --name NAME`` reads a live machine's shared memory
read-only; ``openamp inspect FILE`` a dump of it (``--save FILE`` writes one);
``openamp inspect --board`` a board's remote processors and rpmsg devices through
sysfs and debugfs.  The decoding lives in :mod:`openamp.tools.linkmem` and
:mod:`openamp.tools.board`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..errors import UsageError
from .commands import help_for

if TYPE_CHECKING:
    from ..tools.board import BoardRoots

EPILOG = """\
examples:
  openamp rproc run echo --name vm1 --for 5 &           # a link to look at
  openamp inspect --machine virtual --name vm1          # a running link, read-only
  openamp inspect --machine virtual --name vm1 --save vm1.bin
  openamp inspect vm1.bin --descriptors all             # the dump, every descriptor

  openamp inspect tests/conformance/e_final.bin.gz      # gzip-ed dumps too

  openamp echo &                                        # the C names: or the C rpmsg-echo
  openamp ping --count 100000 --shutdown &              # or the C ping
  openamp inspect --json --machine linux-generic        # the C demos' /dev/shm/openamp.shm

  openamp inspect --board                               # remoteproc + rpmsg through sysfs
"""


DUMP_LIMIT = 256 * 1024 * 1024
"""The largest memory dump ``inspect FILE`` reads (256 MiB, gzip-ed or not)."""


def read_dump(path: str) -> bytes:
    """A memory dump's bytes, gunzipped if it is gzip-ed; a regular file of at most
    :data:`DUMP_LIMIT` bytes, decompressed too (a small gzip bomb is refused, not read)."""
    from .._files import read_regular_file

    mem = read_regular_file(path, limit=DUMP_LIMIT, what="memory dump")
    if not mem:
        raise UsageError(f"{path}: the file is empty, not a memory dump")
    if mem[:2] != b"\x1f\x8b":
        return mem
    import gzip
    import io

    try:
        with gzip.GzipFile(fileobj=io.BytesIO(mem)) as g:
            out = g.read(DUMP_LIMIT + 1)
    except (OSError, EOFError, ValueError) as exc:
        raise UsageError(f"{path}: a broken gzip file: {exc}") from None
    if len(out) > DUMP_LIMIT:
        raise UsageError(f"{path}: unpacks to more than the {DUMP_LIMIT}-byte limit")
    return out


def add_board_roots(p: argparse.ArgumentParser) -> None:
    """``--board`` and the roots of the kernel's trees (as ``openamp rproc`` takes them)."""
    g = p.add_argument_group("board")
    g.add_argument(
        "--board",
        action="store_true",
        help="look at this board's kernel (remoteproc, rpmsg) instead of a shared-memory link",
    )
    g.add_argument("--sysfs", default="/sys", metavar="DIR", help="sysfs root (%(default)s)")
    g.add_argument(
        "--debugfs", default="/sys/kernel/debug", metavar="DIR", help="debugfs root (%(default)s)"
    )
    g.add_argument("--dev", default="/dev", metavar="DIR", help="/dev root (%(default)s)")
    g.add_argument(
        "--firmware-path",
        action="append",
        metavar="DIR",
        help="firmware directories (default: the kernel's search path)",
    )


def board_roots(args: argparse.Namespace) -> BoardRoots:
    """The kernel trees :func:`add_board_roots` asked for."""
    from ..tools.board import BoardRoots

    return BoardRoots(
        args.sysfs,
        args.debugfs,
        args.dev,
        tuple(args.firmware_path) if args.firmware_path else None,
    )


def add_link_options(p: argparse.ArgumentParser) -> None:
    """Which shared-memory link: ``--machine``/``--name``, or ``--shm PATH``."""
    g = p.add_argument_group("link")
    g.add_argument(
        "--machine",
        choices=["linux-generic", "virtual"],
        default="linux-generic",
        help="linux-generic: /dev/shm/openamp.shm; virtual: /dev/shm/NAME.shm (default: "
        "%(default)s)",
    )
    g.add_argument("--name", help="name of the virtual machine")
    g.add_argument("--shm", metavar="PATH", help="any shared-memory file laid out the same way")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp inspect``."""
    p = sub.add_parser(
        "inspect",
        help=help_for("inspect"),
        description="Show the resource table, each vdev's status and features, each "
        "vring's indices, flags and event fields, the descriptors with the state of their "
        "buffers (posted, in flight, done, free), the rpmsg header in each buffer and the "
        "name-service records found there. Reads the memory read-only.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", nargs="?", metavar="FILE", help="a dump of a machine's memory")
    add_link_options(p)
    p.add_argument(
        "--rsc-offset",
        type=lambda s: int(s, 0),
        metavar="OFFSET",
        help="where the resource table is (default: 0, else the first page holding one)",
    )
    p.add_argument(
        "--descriptors",
        choices=["used", "all", "none"],
        default="used",
        help="which descriptors to list: those ever used (default), all, or none",
    )
    p.add_argument("--save", metavar="FILE", help="also write the memory to FILE (a dump)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_board_roots(p)
    p.set_defaults(func=cmd_inspect)


def link_paths(args: argparse.Namespace) -> tuple[str, str]:
    """``(shm path, doorbell path)`` of the link the options name."""
    import os

    from ..metal.shm import SHM_DIR

    if args.shm:
        return args.shm, ""
    if args.machine == "virtual":
        if not args.name:
            raise UsageError("--machine virtual needs --name NAME")
        from ..platform.virtual import virtual_paths

        shm_name, event = virtual_paths(args.name)
        return os.path.join(SHM_DIR, shm_name), event
    if args.name:
        raise UsageError("--name only applies to --machine virtual")
    return os.path.join(SHM_DIR, "openamp.shm"), "/tmp/openamp.event.0"


def cmd_inspect(args: argparse.Namespace) -> int:
    """``openamp inspect``."""
    from ..tools.output import json_text

    if args.board:
        from ..tools.board import inspect_board, render_board

        report = inspect_board(board_roots(args))
        print(
            json_text(report) if args.json else render_board(report), end="\n" if args.json else ""
        )
        return 0
    from ..tools.linkmem import read_link_memory, render_link_memory, snapshot

    if args.file:
        mem = read_dump(args.file)
        source = args.file
    else:
        source, _event = link_paths(args)
        try:
            mem = snapshot(source)
        except FileNotFoundError:
            raise UsageError(
                f"{source} does not exist: is the link running? (`openamp doctor` says more)"
            ) from None
    if args.save:
        with open(args.save, "wb") as f:
            f.write(mem)
    lm = read_link_memory(mem, source=source, rsc_offset=args.rsc_offset)
    if args.json:
        print(json_text(lm.to_json()))
    else:
        print(render_link_memory(lm, descriptors=args.descriptors), end="")
    return 0 if lm.table is not None else 1

"""``openamp rsc``: show, check and build resource tables.

A thin program on :mod:`openamp.tools.rsc`; all decoding, checking and encoding happens
there (and below it, in :mod:`openamp.remoteproc.rsc_table`).  Errors are raised as
:class:`~openamp.errors.OpenAMPError` and printed by ``openamp``'s ``main()``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import UsageError
from ..tools.rsc import (
    c_source,
    check_table,
    format_table,
    load_spec,
    load_table,
    table_json,
)
from .commands import help_for

EXIT_SOUND = 0
EXIT_FATAL = 1
EXIT_WARNINGS = 3

EPILOG_RSC = """\
FILE is an ELF firmware image (its .resource_table section is read) or a raw table
(any other file: a .bin from `openamp rsc build`, a dump of the shared memory).

examples:
  openamp rsc show firmware.elf                  # decoded, with a readelf -x style hex dump
  openamp rsc show firmware.elf --json
  openamp rsc check firmware.elf
  openamp rsc build table.yaml -o table.bin --c rsc_table.c
"""

EPILOG_SHOW = """\
examples:
  openamp rsc show firmware.elf                  # compare with: readelf -x .resource_table
  openamp rsc show table.bin
  openamp rsc show firmware.elf --json

The live table of the linux-generic machine: openamp rsc show /dev/shm/openamp.shm

exit status: 0 when the table was shown, 1 when the file cannot be read or holds no
valid table.
"""

EPILOG_CHECK = """\
examples:
  openamp rsc check firmware.elf
  openamp rsc check table.bin --json

exit status:
  0  the table parses and there are no findings
  1  the table cannot be used: it does not parse (bad version, truncated entry, non-zero
     reserved field, ...), the file is not readable, or an ELF file has no table
  3  the table parses but there are warnings (vring num not a power of two, overlapping
     memory, duplicate notify ids, ...)
"""

EPILOG_BUILD = """\
spec (YAML; numbers may be written 0x4000 or "0x4000"; addresses and notify ids may be
"any" for 0xffffffff; see docs/resource-tables.md):
  version: 1                                     # optional
  entries:
    - carveout: {name: text, da: 0x10000000, pa: 0x10000000, len: 0x100000}
    - trace: {name: trace0, da: 0x20000000, len: 0x1000}
    - rpmsg:                                     # a vdev with id 7, dfeatures 1
        vrings:
          - {da: 0x4000, align: 0x1000, num: 256, notifyid: 1}
          - {da: 0x8000, align: 0x1000, num: 256, notifyid: 2}
    - vendor: {type: 128, data: "0011aabb"}

examples:
  openamp rsc build table.yaml -o table.bin
  openamp rsc build table.yaml -o table.bin --c rsc_table.c --symbol resource_table --json

exit status: 0 when the files were written (warnings from `rsc check` are printed),
1 when the spec is invalid (the message names the entry and the key).
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp rsc show|check|build`` on the ``openamp`` subparsers."""
    p = sub.add_parser(
        "rsc",
        help=help_for("rsc"),
        description="Resource tables: decode one from a firmware ELF or a raw file, "
        "validate it, or build one (binary and C source) from a YAML description.",
        epilog=EPILOG_RSC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="rsc_action", metavar="ACTION", required=True)

    show = actions.add_parser(
        "show",
        help="decode a table field by field, with a hex dump",
        description="Print where the table is (ELF section address and file offset, or "
        "raw file), its header, every entry with every field decoded (type names, "
        "addresses and lengths in hex, vdev features and status bits named, vrings) and "
        "a hex dump laid out as `readelf -x .resource_table` prints it.",
        epilog=EPILOG_SHOW,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("file", metavar="FILE", help="ELF firmware image or raw table")
    show.add_argument("--json", action="store_true", help="print JSON (entries, source, findings)")
    show.set_defaults(func=cmd_show)

    check = actions.add_parser(
        "check",
        help="validate a table; the exit status says if it is sound",
        description="Parse the table strictly and list what is wrong with it, then what "
        "is legal but suspicious.",
        epilog=EPILOG_CHECK,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("file", metavar="FILE", help="ELF firmware image or raw table")
    check.add_argument(
        "--json", action="store_true", help="print the verdict and the findings as JSON"
    )
    check.set_defaults(func=cmd_check)

    build = actions.add_parser(
        "build",
        help="build a table from a YAML spec (binary and C source)",
        description="Build a resource table from a YAML description: the binary table "
        "and, with --c, a self-contained C file a firmware compiles into the same bytes "
        "in its .resource_table section.",
        epilog=EPILOG_BUILD,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("spec", metavar="SPEC.yaml", help="the table's description")
    build.add_argument(
        "-o", "--output", metavar="OUT.bin", required=True, help="write the binary table here"
    )
    build.add_argument("--c", dest="c_output", metavar="OUT.c", help="also write C source here")
    build.add_argument(
        "--symbol",
        default="resource_table",
        metavar="NAME",
        help="name of the table's variable in the C source (default: %(default)s)",
    )
    build.add_argument(
        "--json", action="store_true", help="print what was written, and the warnings, as JSON"
    )
    build.set_defaults(func=cmd_build)


def cmd_show(args: argparse.Namespace) -> int:
    """``openamp rsc show FILE [--json]``."""
    loaded = load_table(args.file)
    if args.json:
        print(json.dumps(table_json(loaded), indent=2))
    else:
        sys.stdout.write(format_table(loaded))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """``openamp rsc check FILE``: findings on stdout, the verdict in the exit status."""
    loaded = load_table(args.file)
    findings = check_table(loaded)
    if args.json:
        verdict = "fatal" if loaded.table is None else "warnings" if findings else "sound"
        print(
            json.dumps(
                {
                    "file": str(loaded.path),
                    "verdict": verdict,
                    "entries": None if loaded.table is None else len(loaded.table.entries),
                    "findings": [str(f) for f in findings],
                },
                indent=2,
            )
        )
        return {"fatal": EXIT_FATAL, "warnings": EXIT_WARNINGS}.get(verdict, EXIT_SOUND)
    if loaded.table is None:
        for finding in findings:
            print(f"error: {finding}")
        return EXIT_FATAL
    entries = _count(len(loaded.table.entries), "entry", "entries")
    if not findings:
        print(f"{loaded.path}: sound: {entries}, no findings")
        return EXIT_SOUND
    for finding in findings:
        print(f"warning: {finding}")
    print(f"{loaded.path}: {entries}, {_count(len(findings), 'warning', 'warnings')}")
    return EXIT_WARNINGS


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _write(path: str, data: bytes) -> None:
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror or exc}") from None


def cmd_build(args: argparse.Namespace) -> int:
    """``openamp rsc build SPEC.yaml -o OUT.bin [--c OUT.c] [--symbol NAME]``."""
    table = load_spec(args.spec)
    source = c_source(table, args.symbol) if args.c_output else None
    data = table.to_bytes()
    _write(args.output, data)
    if source is not None:
        _write(args.c_output, source.encode())
    if args.json:
        summary = {
            "output": args.output,
            "bytes": len(data),
            "entries": len(table.entries),
            "c_output": args.c_output,
            "symbol": args.symbol if source is not None else None,
            "warnings": [str(f) for f in table.check()],
        }
        print(json.dumps(summary, indent=2))
        return 0
    entries = _count(len(table.entries), "entry", "entries")
    print(f"wrote {args.output}: {len(data)} bytes, {entries}")
    if source is not None:
        print(f"wrote {args.c_output}: {args.symbol} in section .resource_table")
    for finding in table.check():
        print(f"warning: {finding}", file=sys.stderr)
    return 0

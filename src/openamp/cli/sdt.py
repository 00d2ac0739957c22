"""``openamp sdt``: one system description for both sides.

``generate`` turns a domain YAML and a system device tree into every file the two sides
need; ``check`` reads any mix of those files (and firmware ELFs, DTBs, a live
``/proc/device-tree``) and reports every disagreement.  The work is done in
:mod:`openamp.sdt`; this module parses options, writes files and prints.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .commands import help_for

EXIT_AGREE = 0
EXIT_DISAGREE = 1
EXIT_UNREADABLE = 2

EPILOG_SDT = """\
examples:
  openamp sdt generate openamp-overlay-zynqmp.yaml openamp_zu.dts -o out
  openamp sdt check out/linux-boot.dts firmware.elf
  openamp demo sdt out/machine_r5_0.json        # echo traffic on the described memory map
"""

EPILOG_GENERATE = """\
writes into DIR:
  linux-boot.dts               the system tree plus /reserved-memory carveouts, the R5
                               remoteproc cluster and the IPI mailbox (checked with dtc)
  openamp-channel-info.txt     the seed's key=value format, every rpmsg channel
  amd_platform_info_r5_N.h     the firmware's platform header, one per remote core
  rsc_table_r5_N.bin / .c      the firmware's resource table (C as `openamp rsc build`)
  machine_r5_N.json            a pyopenamp machine with the same physical addresses

examples:
  openamp sdt generate openamp-overlay-zynqmp.yaml openamp_zu.dts -o out
  openamp sdt generate seed-era/openamp-overlay-zynqmp.yaml seed-era/system-dt/system-top.dts -o out

exit status: 0 when the files were written, 2 when an input cannot be read or is
wrong (the message names the file, the line or node, and what was expected).
"""

EPILOG_CHECK = """\
FILE may be a domain YAML, a system or Linux device tree (.dts, .dtb, or a directory
such as /proc/device-tree), a firmware ELF, a raw resource table (.bin), an
amd_platform_info header, openamp-channel-info.txt or a machine .json; the kind is told
by the content.  Each disagreement names both values and the file to change.

examples:
  openamp sdt check out/linux-boot.dts firmware.elf
  openamp sdt check domain.yaml system.dts out/*
  openamp sdt check /proc/device-tree /lib/firmware/rproc-echo.elf      # on the board

exit status:
  0  every value stated by more than one file agrees, and nothing is wrong
  1  at least one disagreement or defect (each printed with the file to change)
  2  a file cannot be read or understood (the message says which and why)
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp sdt generate|check``."""
    p = sub.add_parser(
        "sdt",
        help=help_for("sdt"),
        description="One system description for both sides: generate the Linux device "
        "tree, the firmware's header and resource table, the channel info and a "
        "simulated machine from a Lopper domain YAML, and check that such files agree.",
        epilog=EPILOG_SDT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="sdt_action", metavar="ACTION", required=True)
    gen = actions.add_parser(
        "generate",
        help="write every file the description implies",
        description="Read DOMAIN.yaml (Lopper's OpenAMP domain description, 2022 or "
        "2025 layout) and SYSTEM.dts (the system device tree, through dtc) and write the "
        "outputs into DIR.",
        epilog=EPILOG_GENERATE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gen.add_argument("domain", metavar="DOMAIN.yaml")
    gen.add_argument("system", metavar="SYSTEM.dts", help="system device tree (.dts or .dtb)")
    gen.add_argument("-o", "--output", metavar="DIR", required=True, help="folder to write into")
    gen.add_argument(
        "--binding",
        choices=["auto", "xlnx-2022", "upstream"],
        default="auto",
        help="Linux remoteproc binding of the output: the seed's xlnx,zynqmp-r5-remoteproc "
        "or Linux's xlnx,zynqmp-r5fss (default: by the YAML's layout)",
    )
    gen.add_argument("--json", action="store_true", help="print the files written as JSON")
    gen.set_defaults(func=cmd_generate)
    chk = actions.add_parser(
        "check",
        help="report every disagreement between the files of one system",
        description="Read every FILE and compare what each says about each remote core.",
        epilog=EPILOG_CHECK,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chk.add_argument("files", nargs="+", metavar="FILE")
    chk.add_argument(
        "--json", action="store_true", help="print the files, findings and verdict as JSON"
    )
    chk.set_defaults(func=cmd_check)


def _dtc() -> str:
    from ..tools.sysdeps import ensure_tool

    return ensure_tool("dtc", "device-tree-compiler")


def cmd_generate(args: argparse.Namespace) -> int:
    """``openamp sdt generate DOMAIN.yaml SYSTEM.dts -o DIR``."""
    import sys

    from ..errors import OpenAMPError
    from ..platform.layout import save_layout
    from ..sdt.domain import load_domain
    from ..sdt.fdt import load_tree, validate_dts
    from ..sdt.generate import generate
    from ..sdt.system import resolve
    from ..tools.output import table
    from ..tools.rsc import c_source

    try:
        dtc = _dtc()
        domain = load_domain(args.domain)
        tree = load_tree(args.system, dtc=dtc)
        system = resolve(domain, tree, binding=None if args.binding == "auto" else args.binding)
        out = generate(system)
        dts = out.files["linux-boot.dts"]
        assert isinstance(dts, str)
        warnings = validate_dts(dts, dtc=dtc, name="linux-boot.dts")
    except OpenAMPError as exc:
        print(f"openamp sdt generate: error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    os.makedirs(args.output, exist_ok=True)
    files = dict(out.files)
    for core, rsc in out.tables.items():
        files[f"rsc_table_r5_{core}.c"] = c_source(rsc)
    rows = [("file", "bytes", "what")]
    for name, content in files.items():
        path = Path(args.output, name)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        rows.append((str(path), str(path.stat().st_size), _what(name)))
    for core, layout in out.layouts.items():
        ch = next(c for c in system.channels if c.core == core)
        path = Path(args.output, f"machine_r5_{core}.json")
        save_layout(
            path,
            layout,
            name=ch.spec.remote,
            core=core,
            generated_from=[args.domain, args.system],
        )
        rows.append((str(path), str(path.stat().st_size), _what(path.name)))
    ours = _our_warnings(warnings)
    if args.json:
        from ..tools.output import json_text

        summary = {
            "layout": domain.layout,
            "binding": system.binding,
            "rpmsg_channels": len(system.rpmsg_channels),
            "files": [{"path": f, "bytes": int(n), "what": w} for f, n, w in rows[1:]],
            "dtc_warnings": ours,
            "notes": list(out.notes),
        }
        print(json_text(summary))
        return EXIT_AGREE
    print(
        f"openamp sdt generate: {domain.layout} layout, binding {system.binding}, "
        f"{len(system.rpmsg_channels)} rpmsg channel(s)"
    )
    print(table(rows))
    for line in ours:
        print(f"dtc: {line}")
    for note in out.notes:
        print(f"note: {note}")
    return EXIT_AGREE


def _our_warnings(warnings: list[str]) -> list[str]:
    """dtc's warnings about the nodes we wrote (the system tree's own are not ours)."""
    mine = ("/reserved-memory", "/rf5ss", "/remoteproc@", "/zynqmp_ipi")
    return [w for w in warnings if any(m in w for m in mine)]


def _what(name: str) -> str:
    if name.endswith(".dts"):
        return "Linux device tree"
    if name.endswith(".txt"):
        return "channel info (seed format)"
    if name.endswith(".h"):
        return "firmware platform header"
    if name.endswith(".bin"):
        return "resource table"
    if name.endswith(".c"):
        return "resource table, C source"
    return "pyopenamp machine"


def cmd_check(args: argparse.Namespace) -> int:
    """``openamp sdt check FILE...``."""
    import sys

    from ..errors import OpenAMPError
    from ..sdt.check import check_files
    from ..tools.output import table

    try:
        report = check_files(args.files, dtc=_dtc() if _needs_dtc(args.files) else None)
    except OpenAMPError as exc:
        print(f"openamp sdt check: error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if args.json:
        from ..tools.output import json_text

        summary = {
            "files": [{"path": f, "read_as": how} for f, how in report.files],
            "cores": report.cores,
            "compared": report.compared,
            "findings": [
                {"message": f.message, "change": f.change, "text": str(f)} for f in report.findings
            ],
            "ok": report.ok,
        }
        print(json_text(summary))
        return EXIT_AGREE if report.ok else EXIT_DISAGREE
    print(table([("file", "read as"), *report.files]))
    cores = ", ".join(str(c) for c in report.cores) or "none"
    for finding in report.findings:
        print(f"\nDISAGREE: {finding}")
    verdict = "agree" if report.ok else f"{len(report.findings)} problem(s)"
    print(
        f"\nresult: {verdict} (R5 cores {cores}; {report.compared} values stated by more "
        "than one file)"
    )
    return EXIT_AGREE if report.ok else EXIT_DISAGREE


def _needs_dtc(files: list[str]) -> bool:
    for f in files:
        p = Path(f)
        if p.suffix in (".dts", ".dtsi"):
            return True
        try:
            head = p.read_bytes()[:4096] if p.is_file() else b""
        except OSError:
            continue
        if b"/dts-v1/" in head:
            return True
    return False

"""``openamp demo``: every demo on a simulated machine, each remote booted through RemoteProc.

Besides the RPMsg demos (``openamp demo [NAME...]``) a demo *family* runs a system of
its own: ``openamp demo FAMILY [ARGS...]``.  Each family is one row in :data:`FAMILIES`
and one module in this package with ``add_arguments(group)`` (its options, in an
argument group of ``openamp demo``) and ``run(args, names) -> int`` (``names`` are the
words after the family's name).
"""

from __future__ import annotations

import argparse
import importlib

from ..errors import UsageError
from .commands import help_for
from .common import add_capture_option, add_json_option, capture_from_args, print_json
from .values import count, seconds

DEMO_NAMES = ("echo", "matrix", "proxy", "rpc", "sample")
"""The demos of ``openamp.tools.demos.DEMOS``, named here so that the parser loads no
machine (a test keeps the two equal)."""


FAMILIES: dict[str, tuple[str, str]] = {
    "sdt": ("demo_sdt", "echo traffic on machine files from `openamp sdt generate`"),
    "hvl": ("demo_hvl", "hypervisorless virtio, the seed's demo4 (entropy, console, ping)"),
    "board": (
        "demo_board",
        "the seed's board demos (echo, matrix, proxy, split, multi-services) inside a real "
        "Linux kernel whose remoteproc core boots our remote processors",
    ),
}
"""Demo family name -> (module in ``openamp.cli``, one-line description)."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp demo``."""
    p = sub.add_parser(
        "demo",
        help=help_for("demo"),
        description="Run every demo (or the NAMEs given) on fresh virtual machines: the "
        "remote side is a Python firmware booted through RemoteProc as a separate process, "
        "the host side runs here. Ends with a table of results.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    families = "".join(f"; or a family: {f} ..." for f in FAMILIES)
    p.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"demos to run ({', '.join(DEMO_NAMES)}){families}",
    )
    p.add_argument(
        "--count",
        type=count,
        default=None,
        metavar="N",
        help="messages (or rounds) each demo's host sends (default: as in C)",
    )
    p.add_argument(
        "--timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for each step (%(default)s)",
    )
    add_json_option(p)
    add_capture_option(p)
    for family, (module, description) in FAMILIES.items():
        group = p.add_argument_group(f"openamp demo {family}: {description}")
        importlib.import_module(f".{module}", __package__).add_arguments(group)
    p.set_defaults(func=cmd_demo, _validate=check_demo)


EPILOG = """\
examples:
  openamp demo
  openamp demo echo sample --count 20
  openamp demo matrix --json

exit status: 0 when every demo passed, 1 otherwise, 2 for a usage error (an unknown
demo name, a bad --count).
"""


def check_demo(args: argparse.Namespace) -> None:
    """Every NAME is a demo (or the first one a family), before any machine starts."""
    if args.names and args.names[0] in FAMILIES:
        return
    unknown = [n for n in args.names if n not in DEMO_NAMES]
    if unknown:
        raise UsageError(f"no demo {', '.join(unknown)} (demos: {', '.join(DEMO_NAMES)})")


def cmd_demo(args: argparse.Namespace) -> int:
    """``openamp demo [NAME...]``: run the demos, each remote booted through RemoteProc."""
    if args.names and args.names[0] in FAMILIES:
        module = importlib.import_module(f".{FAMILIES[args.names[0]][0]}", __package__)
        return int(module.run(args, args.names[1:]))
    from ..tools.demos import DEMOS, DemoOptions, results_table

    names = args.names or list(DEMOS)
    if args.json:
        with capture_from_args(args, None) as cap:
            options = DemoOptions(timeout=args.timeout, count=args.count, capture=cap)
            results = [DEMOS[name](options) for name in names]
        print_json(
            {
                "demos": [
                    {
                        "name": r.name,
                        "ok": r.ok,
                        "summary": r.summary,
                        "elapsed_s": round(r.elapsed, 3),
                        "states": r.states,
                        "trace": r.trace,
                        "details": r.details,
                    }
                    for r in results
                ],
                "passed": sum(r.ok for r in results),
                "ok": all(r.ok for r in results),
            }
        )
        return 0 if all(r.ok for r in results) else 1
    print(
        "pyopenamp demo: OpenAMP demos on a simulated machine; each remote is a Python "
        "firmware booted through RemoteProc as a separate process"
    )
    results = []
    with capture_from_args(args, None) as cap:
        options = DemoOptions(timeout=args.timeout, count=args.count, capture=cap)
        for name in names:
            r = DEMOS[name](options)
            results.append(r)
            print(f"\n{name}: {'PASS' if r.ok else 'FAIL'} — {r.summary}")
            print(f"  remoteproc  {r.states}")
            for line in r.trace:
                print(f"  trace       {line}")
            for line in r.details:
                print(f"  note        {line}")
    print("\nresults")
    print(results_table(results))
    passed = sum(r.ok for r in results)
    ok = passed == len(results)
    print(f"result: {'PASS' if ok else 'FAIL'} ({passed} of {len(results)} demos passed)")
    return 0 if ok else 1

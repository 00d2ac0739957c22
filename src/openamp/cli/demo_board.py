"""``openamp demo board NAME...``: the seed's board demos on this PC, with a real kernel.

A demo family of ``openamp demo`` (:data:`openamp.cli.demo.FAMILIES`).  Each NAME
(:data:`openamp.tools.board_demos.DEMOS`) boots a User-mode Linux kernel whose
remoteproc core drives our remote processors (``uml_rproc.device=``), runs the demo's
shell session inside it -- ``echo start > /sys/class/remoteproc/remoteproc0/state``,
``echo_test``, ``cat /dev/ttyRPMSG0 &``... -- and prints what a user on the board sees.
The first run builds the kernel (minutes, once).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import UsageError

NAMES = ("echo", "matrix", "proxy", "split", "multi-services")
"""The demos, named here so that the parser loads nothing (a test keeps the lists equal)."""


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """The options of ``openamp demo board``."""
    group.add_argument(
        "--kernel", metavar="PATH", help="board: the UML kernel (default: build or reuse one)"
    )
    group.add_argument(
        "--fast", action="store_true", help="board: the scripts' sleeps last a tenth as long"
    )
    group.add_argument(
        "--keep", metavar="DIR", help="board: keep the firmware files, scripts and logs in DIR"
    )


def run(args: argparse.Namespace, names: list[str]) -> int:
    """Run the board demos ``names`` (see the module docstring)."""
    from ..tools.board_demos import ALIASES, DEMOS, display, run_board_demo

    if not names:
        listing = "\n".join(f"  {n:15} {d.title}" for n, d in DEMOS.items())
        raise UsageError(
            f"name a board demo (or 'all'):\n{listing}\n"
            "e.g. openamp demo board echo; openamp demo board multi-services"
        )
    if names == ["all"]:
        names = list(DEMOS)
    chosen = [ALIASES.get(n, n) for n in names]
    unknown = [n for n in chosen if n not in DEMOS]
    if unknown:
        raise UsageError(f"no board demo {', '.join(unknown)} (demos: {', '.join(DEMOS)})")

    def out(text: str) -> None:
        sys.stdout.write(display(text))
        sys.stdout.flush()

    failed = []
    for name in chosen:
        demo = DEMOS[name]
        print(f"=== openamp demo board {name}: {demo.title}")
        print(
            f"=== a Linux kernel (User-mode Linux) with {len(demo.processors)} remote "
            f"processor(s) of pyopenamp; the session below runs inside it\n",
            flush=True,
        )
        result = run_board_demo(
            demo,
            kernel=args.kernel,
            output=out,
            keep=args.keep,
            sleep_scale=0.1 if args.fast else 1.0,
        )
        if result.ok:
            print(f"\n=== {name}: PASS\n")
            continue
        failed.append(name)
        why = ", ".join(repr(m) for m in result.missing) or "the guest did not finish"
        print(f"\n=== {name}: FAIL ({why})")
        if not result.uml.completed:
            print(result.uml.failure())
    print(
        f"result: {'PASS' if not failed else 'FAIL'} "
        f"({len(chosen) - len(failed)} of {len(chosen)} board demos passed)"
    )
    return 1 if failed else 0

"""``openamp mat_mul_demo``: the Linux host program of the matrix demo (``mat_mul_demo``).

Runs :func:`openamp.linux.programs.mat_mul_demo` with the C program's options and prints
exactly what it prints.
"""

from __future__ import annotations

import argparse

from ._host_program import add_c_options
from .commands import help_for

EPILOG = """\
examples (on a board, after `echo start > /sys/class/remoteproc/remoteproc0/state`):
  openamp mat_mul_demo
  openamp mat_mul_demo -n 5 --seed 42     # what the C program sends after srand(42)
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp mat_mul_demo``."""
    p = sub.add_parser(
        "mat_mul_demo",
        help=help_for("mat_mul_demo"),
        description="Send two random 6x6 matrices per round to the remote's "
        "rpmsg-openamp-demo-channel and print their product, then send the shutdown "
        "message: the OpenAMP mat_mul_demo, byte for byte, with the same output.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_c_options(p, "number of times this demo is repeated (%(default)s)")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="srand() seed (default: the time in seconds, as C); the matrices are glibc's "
        "rand() sequence for it",
    )
    p.set_defaults(func=cmd_mat_mul_demo)


def cmd_mat_mul_demo(args: argparse.Namespace) -> int:
    """``openamp mat_mul_demo``."""
    from ..linux.programs import mat_mul_demo

    result = mat_mul_demo(
        device=args.device,
        ctrl=args.ctrl,
        rounds=args.rounds,
        src=args.src,
        dst=args.dst,
        seed=args.seed,
        sysfs=args.sysfs,
        dev=args.dev,
        timeout=args.timeout,
    )
    return result.status

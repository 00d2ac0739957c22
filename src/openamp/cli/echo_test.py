"""``openamp echo_test``: the Linux host program of the echo demo (``echo_test``).

Runs :func:`openamp.linux.programs.echo_test` with the C program's options and prints
exactly what it prints; the exit status is the C program's (0 even with errors, as C).
"""

from __future__ import annotations

import argparse

from ._host_program import add_c_options
from .commands import help_for

EPILOG = """\
examples (on a board, after `echo start > /sys/class/remoteproc/remoteproc0/state`):
  openamp echo_test
  openamp echo_test -n 3
  openamp echo_test --signed-char        # count errors as the x86 build of echo_test does
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp echo_test``."""
    p = sub.add_parser(
        "echo_test",
        help=help_for("echo_test"),
        description="Send 472 payloads of 1..472 bytes of 0xA5 per round to the remote's "
        "rpmsg-openamp-demo-channel and check every echo, then send the shutdown message: "
        "the OpenAMP echo_test, byte for byte, with the same output.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_c_options(p, "number of rounds (%(default)s)")
    p.add_argument(
        "--signed-char",
        action="store_true",
        help="compare as echo_test built for x86 does (a signed char is never 0xA5: every "
        "message counts as an error); the default is the ARM build's unsigned compare",
    )
    p.set_defaults(func=cmd_echo_test)


def cmd_echo_test(args: argparse.Namespace) -> int:
    """``openamp echo_test``."""
    from ..linux.programs import echo_test

    result = echo_test(
        device=args.device,
        ctrl=args.ctrl,
        rounds=args.rounds,
        src=args.src,
        dst=args.dst,
        signed_char=args.signed_char,
        sysfs=args.sysfs,
        dev=args.dev,
        timeout=args.timeout,
    )
    return result.status

"""``openamp proxy_app``: the Linux host program of the proxy demo (``proxy_app``).

Runs :func:`openamp.linux.programs.proxy_app`: the remote's file and console I/O
served from this process, printing what the C program prints.
"""

from __future__ import annotations

import argparse

from ._host_program import add_roots
from .commands import help_for

EPILOG = """\
examples (on a board, after `echo start > /sys/class/remoteproc/remoteproc0/state`):
  openamp proxy_app
  echo Alice | openamp proxy_app --no-delay
The remote's files are opened relative to the working directory, as the C program does.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp proxy_app``."""
    p = sub.add_parser(
        "proxy_app",
        help=help_for("proxy_app"),
        description="Serve the remote's open, close, read, write and terminate requests on "
        "rpmsg-openamp-demo-channel (the remote's console is this terminal): the OpenAMP "
        "proxy_app, byte for byte, with the same output.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_roots(p)
    p.set_defaults(timeout=None)
    p.add_argument(
        "--no-delay",
        action="store_true",
        help="skip the C program's 1 s sleeps before it starts and after it ends",
    )
    p.set_defaults(func=cmd_proxy_app)


def cmd_proxy_app(args: argparse.Namespace) -> int:
    """``openamp proxy_app``."""
    from ..linux.programs import proxy_app

    result = proxy_app(
        sysfs=args.sysfs,
        dev=args.dev,
        start_delay=0.0 if args.no_delay else 1.0,
        timeout=args.timeout,
    )
    return result.status

"""The ``openamp`` command.

Subcommands are thin programs on the public API (as python-can's tools are), one module
each in this package, listed in :data:`.commands.COMMANDS`:

* ``openamp echo``  — the C ``rpmsg-echo`` remote (virtio device, socket server)
* ``openamp ping``  — the C ``msg-test-rpmsg-ping`` host (virtio driver, socket client)
* ``openamp demo``  — the demos, each remote booted through RemoteProc
* ``openamp bench`` — round-trip latency and throughput of a link
* ``openamp matrix`` — matrix multiply (C ``matrix_multiply``/``matrix_multiplyd``)
* ``openamp proxy`` — the retarget proxy: a remote uses the host's files and console
* ``openamp rpc`` — RPC on ``rpmsg-rpc`` (C ``linux_rpc_demod``/``linux_rpc_demo``)
* ``openamp sample`` — the Linux rpmsg-client-sample (C ``rpmsg-sample-ping``/``-echo``)
* ``openamp rsc`` — show, check and build resource tables
* ``openamp rproc`` — boot firmware on a virtual machine (``run``), or manage a board's
  remote processors through sysfs (``ls``, ``status``, ``start``, ``stop``...)
* ``openamp rpmsg`` — a board's rpmsg channels and endpoints (the C rpmsg-utils)

Start-up is part of the interface: only the chosen command's module is imported, and it
imports the layers it needs inside its ``cmd_*`` functions, so ``openamp rpmsg ls`` on a
board loads neither the simulation nor pyelftools (``tests/test_layers.py`` checks it).
What belongs here and what in :mod:`openamp.tools`: argparse and printing live in
``cli/``; ``tools/`` holds the pure functions and data the commands compute and render.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from types import FrameType

from .. import __version__
from ..errors import OpenAMPError
from .commands import COMMANDS


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``openamp`` command.

    ``commands``: the commands to build in full (their modules are imported); the
    others are listed with their one-line help only.  None builds every command.
    """
    full = set(COMMANDS) if commands is None else set(commands)
    parser = argparse.ArgumentParser(
        prog="openamp",
        description="OpenAMP for Python: remoteproc, virtio and RPMsg, wire-compatible "
        "with the C library and Linux.",
    )
    parser.add_argument("--version", action="version", version=f"pyopenamp {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if name in full:
            importlib.import_module(f".{module}", __name__).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (e.g. a remoteproc stop) ends a command like Ctrl-C: cleanup runs, files go.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``openamp`` command; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(args_list)
    parser = build_parser([] if command is None else [command])
    args = parser.parse_args(args_list)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(name)s: %(levelname)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``openamp ... | head``): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (OpenAMPError, OSError) as exc:  # OSError: a missing or unreadable file
        print(f"openamp {args.command}: error: {exc}", file=sys.stderr)
        return 1

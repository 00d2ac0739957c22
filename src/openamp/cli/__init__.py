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

One contract for every command: a usage error (a bad value, a missing option, an
unknown name) exits 2, found while parsing or by the command's validator (set as the
``_validate`` default of its parser) before anything connects; a failure the command
reports, or an error while it runs, exits 1; ``-v``/``-q`` may stand
anywhere on the command line; every command that reports has ``--json``.

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
from ..errors import OpenAMPError, UsageError
from .commands import COMMANDS

EXIT_USAGE = 2
"""Exit status of a usage error (argparse's own)."""


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
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if name in full:
            importlib.import_module(f".{module}", __name__).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text)
    for child in _subparsers(parser):
        _global_options(child)
    return parser


def _global_options(p: argparse.ArgumentParser) -> None:
    # Listed in every --help; main() takes them out of the command line before parsing
    # (see global_flags), so they never reach argparse and may stand anywhere.
    g = p.add_argument_group("anywhere on the command line")
    g.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="more logging (-vv: debug)",
    )
    g.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=argparse.SUPPRESS,
        help="only results and errors: no status lines, warnings of the library hidden",
    )


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                out.append(child)
                out += _subparsers(child)
    return out


def global_flags(argv: Sequence[str]) -> tuple[int, list[str]]:
    """``(verbosity, the other words)``: ``-v``/``-vv``/``--verbose`` add one per v,
    ``-q``/``--quiet`` subtract one, wherever they stand before a ``--``."""
    verbosity = 0
    rest: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            rest.append(word)
            rest.extend(words)
            break
        if word == "--verbose":
            verbosity += 1
        elif word == "--quiet":
            verbosity -= 1
        elif len(word) > 1 and word[0] == "-" and word[1:] and set(word[1:]) <= {"v", "q"}:
            verbosity += word.count("v") - word.count("q")
        else:
            rest.append(word)
    return verbosity, rest


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
    verbosity, args_list = global_flags(sys.argv[1:] if argv is None else argv)
    command = _command_in(args_list)
    parser = build_parser([] if command is None else [command])
    args = parser.parse_args(args_list)
    args.verbosity = verbosity
    args.quiet = verbosity < 0
    levels = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}
    logging.basicConfig(
        level=levels.get(max(-1, verbosity), logging.DEBUG),
        format="%(name)s: %(levelname)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    # the command's own checks of its options together, before anything connects
    validate = getattr(args, "_validate", None)
    if validate is not None:
        try:
            validate(args)
        except UsageError as exc:
            print(f"openamp {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
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

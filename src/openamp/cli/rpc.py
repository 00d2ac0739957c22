"""``openamp rpc``: the RPC file service of the C ``linux_rpc_demo`` pair.

``--role driver`` (the default) is the server, what ``linux_rpc_demod`` does: it serves
the files under ``--root`` and this terminal's stdin/stdout on ``rpmsg-rpc`` until the
client sends TERM or goes away.  ``--role device`` is the client, what ``linux_rpc_demo``
does.  As in the C demos the server is the doorbell socket server (start it first) and
the client the socket client, unless ``--socket`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import UsageError
from ..services.rpc import RPC_SERVICE, RpcFileServer, run_file_demo
from .commands import help_for
from .common import (
    add_json_option,
    add_machine_options,
    check_machine,
    connected,
    print_json,
    status_printer,
)

EPILOG = """\
examples:
  openamp rpc --machine virtual --name lab1 --root . &
  openamp rpc --machine virtual --name lab1 --role device

  openamp rpc --machine virtual --name lab2 --root . --json &
  openamp rpc --machine virtual --name lab2 --role device --json

Without --machine the server (--root DIR) pairs with the C linux_rpc_demo 1 and the
client (--role device) with the C linux_rpc_demod.  The server answers INPUT requests
with lines of its stdin (one line each), so pipe them in when it runs unattended:
printf 'Ada\\n36\\n3.14\\n' | openamp rpc --machine virtual --name lab1 --root . &

Against the C linux_rpc_demod the client cannot learn its file descriptors (that server
cuts the last 4 bytes off every answer): it reports this and skips the file steps.
--c-truncation makes our server answer exactly like it.
exit status: 0 when the server stopped on TERM or the client's departure, or when every
client step worked; 1 otherwise; 2 for a usage error (--root must be a directory).
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp rpc``."""
    p = sub.add_parser(
        "rpc",
        help=help_for("rpc"),
        description="The RPC file service on 'rpmsg-rpc'.\n"
        "  server (--role driver): serves the files under --root, stdin and stdout, until\n"
        "    the client sends TERM or leaves (what the C linux_rpc_demod does);\n"
        "  client (--role device): creates remote.file, writes it, reads it back, asks\n"
        "    for three lines of input and sends TERM (what the C linux_rpc_demo does).\n"
        "Default socket role: the server listens (start it first), the client connects.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_machine_options(p, role="driver")
    p.add_argument(
        "--root",
        default=".",
        metavar="DIR",
        help="server: the directory the client's file names are relative to; nothing "
        "outside it is reachable (default: the current directory)",
    )
    p.add_argument(
        "--c-truncation",
        action="store_true",
        help="server: send every answer 4 bytes short, byte for byte as linux_rpc_demod",
    )
    add_json_option(p)
    p.set_defaults(func=cmd_rpc, _validate=check_rpc)


def check_rpc(args: argparse.Namespace) -> None:
    """``--root`` must be a directory (checked before anything connects)."""
    check_machine(args)
    if args.role == "driver" and not os.path.isdir(args.root):
        raise UsageError(f"--root {args.root}: no such directory")


def _prompt(limit: int) -> None:
    if sys.stdin.isatty():
        print(f"rpc: the remote asks for input (up to {limit} bytes): ", end="", flush=True)


def cmd_rpc(args: argparse.Namespace) -> int:
    """``openamp rpc``."""
    if args.socket is None:
        args.socket = "server" if args.role == "driver" else "client"
    say = status_printer(args)
    with connected(args, "rpc") as rpmsg:
        if args.role == "driver":
            server = RpcFileServer(
                rpmsg,
                args.root,
                stdin=sys.stdin.buffer,
                stdout=sys.stdout.buffer,
                stderr=sys.stderr.buffer,
                prompt=_prompt,
                c_truncation=args.c_truncation,
            )
            say(
                f"rpc: serving {RPC_SERVICE!r} at {server.endpoint.addr:#x}, files under "
                f"{os.path.abspath(args.root)}"
            )
            stats = server.run()
            if args.json:
                # stdout carries the client's console; the summary goes to stderr
                from ..tools.output import json_text

                summary = {
                    "requests": stats.requests,
                    "answers": stats.answers,
                    "errors": stats.errors,
                    "dropped": stats.dropped,
                    "stop_reason": stats.stop_reason,
                }
                print(json_text(summary), file=sys.stderr, flush=True)
                return 0
            print(
                f"rpc: {stats.requests} requests, {stats.answers} answers "
                f"({stats.errors} errors), {stats.dropped} dropped; stopped: "
                f"{stats.stop_reason}",
                flush=True,
            )
            return 0
        lines: list[str] = []
        report = lines.append if args.json else (lambda line: print(line, flush=True))
        result = run_file_demo(rpmsg, timeout=args.timeout, report=report)
    if args.json:
        print_json(
            {
                "steps": lines,
                "written": result.written,
                "terminated": result.terminated,
                "problems": result.problems,
                "ok": result.ok,
            }
        )
        return 0 if result.ok else 1
    for problem in result.problems:
        print(f"rpc: problem: {problem}")
    print(f"rpc: {'PASS' if result.ok else 'FAIL'}")
    return 0 if result.ok else 1

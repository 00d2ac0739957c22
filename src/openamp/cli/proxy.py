"""``openamp proxy``: the retarget proxy host (C ``rpc_demod``) or its demo remote (``rpc_demo``).

With ``--role driver`` (the default) this is the host: it serves the remote's file
requests in ``--root`` and passes its console through (the remote's output on stdout,
this terminal's input to the remote); our own status lines go to stderr so that stdout
is the remote's console only.  With ``--role device`` it is the demo remote.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import UsageError
from ..services.proxy import PROXY_SERVICE, ProxyServer, run_proxy_demo
from .commands import help_for
from .common import add_json_option, add_machine_options, check_machine, connected, print_json

EPILOG = """\
examples:
  openamp proxy --role device --machine virtual --name lab1 &
  openamp proxy --machine virtual --name lab1 --root .

  openamp proxy --role device --machine virtual --name lab2 -q &
  openamp proxy --machine virtual --name lab2 --root . --json

Without --machine the host (--root DIR) serves the C rpc_demo, and the demo remote
(--role device) talks to the C rpc_demod.

The host serves open/read/write/close for files under --root (the remote cannot leave
it: absolute paths, '..' and symbolic links out of it are refused), passes fd 1 and 2 to
its stdout and stderr and its stdin to fd 0, and stops when the remote sends the
terminate request or destroys its endpoint.  With --json the summary goes to stderr as
JSON (stdout is the remote's console).  Exit status: host 0 when the remote ended the
session, 1 otherwise; remote 0 when every demo step succeeded; 2 for a usage error
(--root must be an existing directory).
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp proxy``."""
    p = sub.add_parser(
        "proxy",
        help=help_for("proxy"),
        description="The retarget proxy on rpmsg-openamp-demo-channel. Driver role: the "
        "host that serves file and console requests (C rpc_demod). Device role: the demo "
        "remote (C rpc_demo) that writes, reads back and closes remote.file, talks on the "
        "host's console, checks that escapes are refused and terminates.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_machine_options(p, role="driver")
    p.add_argument(
        "--root",
        default=".",
        metavar="DIR",
        help="host: the directory the remote's file names are relative to "
        "(default: the current directory)",
    )
    add_json_option(p)
    p.set_defaults(func=cmd_proxy, _validate=check_proxy)


def check_proxy(args: argparse.Namespace) -> None:
    """``--root`` must be a directory (checked before anything connects)."""
    check_machine(args)
    if args.role == "driver" and not os.path.isdir(args.root):
        raise UsageError(f"--root {args.root}: no such directory")


def cmd_proxy(args: argparse.Namespace) -> int:
    """``openamp proxy``."""
    if args.role == "device":
        return _remote(args)
    return _host(args)


def _status(args: argparse.Namespace, line: str) -> None:
    if not getattr(args, "quiet", False):
        print(line, file=sys.stderr, flush=True)


def _summary(value: dict[str, object]) -> None:
    # the host's stdout is the remote's console, so its JSON summary goes to stderr
    from ..tools.output import json_text

    print(json_text(value), file=sys.stderr, flush=True)


def _host(args: argparse.Namespace) -> int:
    root = os.path.abspath(args.root)
    with connected(args, "proxy", lambda line: _status(args, line)) as rpmsg:
        server = ProxyServer(rpmsg, root)
        _status(args, f"proxy: serving {PROXY_SERVICE!r} at {server.endpoint.addr:#x}, root {root}")
        stats = server.run()
    ended_by_remote = stats.stop_reason in (
        "the remote sent the terminate request",
        "the remote destroyed its endpoint",
    )
    if args.json:
        _summary(
            {
                "calls": dict(sorted(stats.calls.items())),
                "bytes_written": stats.bytes_written,
                "bytes_read": stats.bytes_read,
                "refused": stats.errors,
                "dropped": stats.dropped,
                "problems": stats.problems,
                "stop_reason": stats.stop_reason,
                "ok": ended_by_remote,
            }
        )
        return 0 if ended_by_remote else 1
    for line in stats.problems:
        _status(args, f"proxy: problem: {line}")
    calls = ", ".join(f"{n} {k}" for k, n in sorted(stats.calls.items())) or "no requests"
    _status(
        args,
        f"proxy: {calls}; {stats.bytes_written} bytes written, {stats.bytes_read} read, "
        f"{stats.errors} refused, {stats.dropped} dropped; stopped: {stats.stop_reason}",
    )
    return 0 if ended_by_remote else 1


def _remote(args: argparse.Namespace) -> int:
    with connected(args, "proxy", lambda line: _status(args, line)) as rpmsg:
        lines: list[str] = []
        report = lines.append if args.json else (lambda line: print(line, flush=True))
        result = run_proxy_demo(rpmsg, report=report, timeout=args.timeout)
    if args.json:
        print_json({"steps": lines, "ok": result.ok})
    else:
        print(f"proxy demo: {'PASS' if result.ok else 'FAIL'}", flush=True)
    return 0 if result.ok else 1

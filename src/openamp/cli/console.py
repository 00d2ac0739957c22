"""``openamp console``: follow the console and trace of a running simulated firmware."""

from __future__ import annotations

import argparse
import json

from .commands import help_for
from .talk import EPILOG, add_machine_name
from .values import positive_seconds


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp console``."""
    p = sub.add_parser(
        "console",
        help=help_for("console"),
        description="Print the console lines (what the firmware prints) and trace lines "
        "of the firmware that `openamp rproc run --name NAME` runs, as they come, until "
        "it stops, --for SECONDS, or Ctrl-C.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_machine_name(p)
    p.add_argument("--for", dest="duration", type=positive_seconds, metavar="SECONDS")
    p.add_argument("--json", action="store_true", help="print each line as a JSON event")
    p.set_defaults(func=cmd_console)


def cmd_console(args: argparse.Namespace) -> int:
    """``openamp console``."""
    from ..errors import OpenAMPTimeoutError, PeerGoneError
    from ..metal.deadline import Deadline
    from ..tools.relay import RelayClient

    deadline = Deadline(args.duration)
    with RelayClient(args.name, timeout=args.timeout) as relay:
        relay.request(op="console")
        while True:
            remaining = deadline.remaining()
            if remaining == 0.0:
                break
            try:
                event = relay.next_event(remaining)
            except (OpenAMPTimeoutError, PeerGoneError):
                break
            kind = event.get("event")
            if args.json:
                print(json.dumps(event), flush=True)
            elif kind in ("console", "trace"):
                print(
                    f"{'firmware' if kind == 'console' else 'trace'}: {event['line']}", flush=True
                )
            elif kind == "state":
                print(f"rproc: {event['state']}", flush=True)
            if kind == "gone":
                break
    return 0

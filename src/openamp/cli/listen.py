"""``openamp listen``: print what a running simulated firmware sends on a service."""

from __future__ import annotations

import argparse
import json
import time

from .commands import help_for
from .talk import EPILOG, add_machine_name
from .values import limit, positive_seconds


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp listen``."""
    p = sub.add_parser(
        "listen",
        help=help_for("listen"),
        description="Print every message the firmware that `openamp rproc run --name NAME` "
        "runs sends on SERVICE, until --count messages, --for SECONDS, the firmware "
        "stops, or Ctrl-C.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_machine_name(p)
    p.add_argument("service", metavar="SERVICE")
    p.add_argument(
        "--count", type=limit, default=0, metavar="N", help="stop after N messages (0: no limit)"
    )
    p.add_argument("--for", dest="duration", type=positive_seconds, metavar="SECONDS")
    p.add_argument("--hex", action="store_true", help="always print hex")
    p.add_argument("--json", action="store_true", help="print each message as a JSON line")
    p.set_defaults(func=cmd_listen)


def cmd_listen(args: argparse.Namespace) -> int:
    """``openamp listen``."""
    from ..errors import OpenAMPTimeoutError, PeerGoneError
    from ..metal.deadline import Deadline
    from ..tools.output import payload_text
    from ..tools.relay import RelayClient

    count = 0
    start = time.monotonic()
    deadline = Deadline(args.duration)
    with RelayClient(args.name, timeout=args.timeout) as relay:
        relay.request(op="listen", service=args.service)
        if not args.json and not getattr(args, "quiet", False):
            print(f"listening on {args.service!r} of {args.name}", flush=True)
        while not args.count or count < args.count:
            remaining = deadline.remaining()
            if remaining == 0.0:
                break
            try:
                event = relay.next_event(remaining)
            except (OpenAMPTimeoutError, PeerGoneError):
                break
            if event.get("event") == "gone":
                break
            if event.get("event") != "message":
                continue
            count += 1
            data = bytes.fromhex(event["data"])
            t = time.monotonic() - start
            if args.json:
                line = {"seq": count, "t": round(t, 6), "len": len(data), "hex": event["data"]}
                print(json.dumps(line), flush=True)
            else:
                print(
                    f"[{t:9.3f}] {len(data):4d} bytes: {payload_text(data, args.hex)}", flush=True
                )
    if not args.json and not getattr(args, "quiet", False):
        print(f"{count} message(s)")
    return 0

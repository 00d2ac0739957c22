"""``openamp send``: send messages to a service of a running simulated firmware."""

from __future__ import annotations

import argparse
import sys

from ..errors import UsageError
from .commands import help_for
from .common import add_json_option, print_json
from .talk import EPILOG, add_machine_name


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp send``."""
    p = sub.add_parser(
        "send",
        help=help_for("send"),
        description="Send each DATA as one message to SERVICE of the firmware that "
        "`openamp rproc run --name NAME` runs ('-' reads one message from stdin).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_machine_name(p)
    p.add_argument("service", metavar="SERVICE")
    p.add_argument("data", metavar="DATA", nargs="+")
    p.add_argument("--hex", action="store_true", help="DATA is hex (e.g. 'de ad be ef')")
    p.add_argument(
        "--reply", action="store_true", help="wait for the answer to each message and print it"
    )
    add_json_option(p)
    p.set_defaults(func=cmd_send, _validate=check_send)


def check_send(args: argparse.Namespace) -> None:
    """Hex DATA must be hex (before anything connects)."""
    if args.hex:
        payloads([d for d in args.data if d != "-"], hex_data=True)


def payloads(data: list[str], *, hex_data: bool) -> list[bytes]:
    """The messages the DATA arguments describe ('-': one message from stdin)."""
    out = []
    for d in data:
        if d == "-":
            out.append(sys.stdin.buffer.read())
        elif hex_data:
            try:
                out.append(bytes.fromhex(d))
            except ValueError:
                raise UsageError(f"not hex: {d!r}") from None
        else:
            out.append(d.encode())
    return out


def cmd_send(args: argparse.Namespace) -> int:
    """``openamp send``."""
    from ..tools.output import payload_text
    from ..tools.relay import RelayClient

    messages = payloads(args.data, hex_data=args.hex)
    replies: list[str | None] = []
    with RelayClient(args.name, timeout=args.timeout) as relay:
        for data in messages:
            relay.request(op="send", service=args.service, data=data.hex(), reply=args.reply)
            if args.reply:
                while True:
                    event = relay.next_event(args.timeout)
                    if event.get("event") == "message" and event.get("service") == args.service:
                        replies.append(event["data"])
                        break
    if args.json:
        print_json(
            {"service": args.service, "sent": [len(m) for m in messages], "replies": replies}
        )
        return 0
    total = sum(map(len, messages))
    print(f"{args.service}: sent {len(messages)} message(s), {total} bytes")
    for reply in replies:
        assert reply is not None
        print(f"reply: {payload_text(bytes.fromhex(reply), args.hex)}")
    return 0

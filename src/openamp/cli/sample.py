"""``openamp sample``: the rpmsg client sample, host (default) or remote (``--role device``).

The host plays the C ``rpmsg-sample-ping`` (or, with ``--style linux``, Linux's
``rpmsg_client_sample`` driver); the remote plays the C ``rpmsg-sample-echo``.
"""

from __future__ import annotations

import argparse

from ..rpmsg.wire import RPMSG_ADDR_ANY
from ..services.sample import SAMPLE_COUNT, SAMPLE_SERVICE, SampleEcho, run_sample
from .commands import help_for
from .common import add_json_option, add_machine_options, connected, print_json, status_printer
from .values import count

EPILOG = """\
examples:
  openamp sample --role device --machine virtual --name lab1 &
  openamp sample --machine virtual --name lab1 --style linux

  openamp sample --role device --machine virtual --name lab2 --count 10 &
  openamp sample --machine virtual --name lab2 --count 10 --src any --json

Without --machine: the host pairs with the C rpmsg-sample-echo, the remote (--role
device) with the C rpmsg-sample-ping.  --src any puts the host at a dynamic address.
exit status: host: 0 when every echo was right and the remote destroyed its endpoint,
1 otherwise; remote: 0; 2 for a usage error.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp sample``."""
    p = sub.add_parser(
        "sample",
        help=help_for("sample"),
        description="Host (--role driver, the default): send 'hello world!' (12 bytes, "
        "no NUL) COUNT-1 times and 'goodbye!' once to rpmsg-client-sample, check every "
        "echo, then expect the remote to destroy its endpoint (NS destroy). With --style "
        "linux, behave like Linux's rpmsg_client_sample driver: COUNT times 'hello "
        "world!' and no announcement of our own. Remote (--role device): echo COUNT "
        "messages, then destroy the endpoint.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_machine_options(p, role="driver")
    p.add_argument(
        "--count",
        type=count,
        default=SAMPLE_COUNT,
        metavar="N",
        help="messages per run; set both sides alike (%(default)s, as in C and Linux)",
    )
    p.add_argument(
        "--style",
        choices=["openamp", "linux"],
        default="openamp",
        help="host: the C rpmsg-sample-ping or Linux's rpmsg_client_sample (%(default)s)",
    )
    p.add_argument(
        "--src",
        type=_address,
        default=None,
        metavar="ADDR",
        help="host, openamp style: our endpoint's address (default 0, as the C ping, which "
        "then never announces its destroy; 'any' for a dynamic one)",
    )
    add_json_option(p)
    p.set_defaults(func=cmd_sample)


def _address(text: str) -> int:
    if text.lower() == "any":
        return RPMSG_ADDR_ANY
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address: {text!r}") from None
    if not 0 <= value < RPMSG_ADDR_ANY:
        raise argparse.ArgumentTypeError(f"address out of range: {text!r}")
    return value


def cmd_sample(args: argparse.Namespace) -> int:
    """``openamp sample``: the remote with ``--role device``, else the host."""
    return serve_sample(args) if args.role == "device" else host_sample(args)


def serve_sample(args: argparse.Namespace) -> int:
    """The remote: echo ``--count`` messages, then destroy the endpoint."""
    say = status_printer(args)
    with connected(args, "sample") as rpmsg:
        service = SampleEcho(rpmsg, limit=args.count)
        say(f"sample: serving {SAMPLE_SERVICE!r} at {service.endpoint.addr:#x}")
        stats = service.run()
    if args.json:
        print_json({"messages": stats.messages, "stop_reason": stats.stop_reason})
        return 0
    print(f"sample: {stats.messages} messages echoed; stopped: {stats.stop_reason}", flush=True)
    return 0


def host_sample(args: argparse.Namespace) -> int:
    """The host: send, check, expect the NS destroy; 1 on any error."""
    with connected(args, "sample") as rpmsg:
        src = args.src
        if src is None:  # the C ping's address; Linux's driver always takes a dynamic one
            src = 0 if args.style == "openamp" else RPMSG_ADDR_ANY
        result = run_sample(
            rpmsg, count=args.count, style=args.style, timeout=args.timeout, src=src
        )
    if args.json:
        print_json(
            {
                "style": result.style,
                "local_addr": result.local_addr,
                "remote_addr": result.remote_addr,
                "sent": result.sent,
                "received": result.received,
                "errors": result.errors,
                "remote_destroyed": result.remote_destroyed,
                "elapsed_s": round(result.elapsed, 6),
                "problems": result.problems,
                "ok": result.ok,
            }
        )
        return 0 if result.ok else 1
    print(f"sample: endpoint {result.local_addr:#x} -> remote {result.remote_addr:#x}")
    for line in result.problems:
        print(f"sample: {line}")
    end = "the remote destroyed its endpoint" if result.remote_destroyed else "no NS destroy"
    print(
        f"sample: {result.sent} sent, {result.received} echoed, {result.errors} errors "
        f"({result.style} style, {result.elapsed:.3f} s); {end}"
    )
    print(f"sample: Test Results: Error count = {result.errors}")
    return 0 if result.ok else 1

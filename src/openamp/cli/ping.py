"""``openamp ping``: the C ``msg-test-rpmsg-ping`` host (virtio driver, socket client)."""

from __future__ import annotations

import argparse
import statistics

from .commands import help_for
from .common import add_machine_options, connected

PING_COUNT = 480
"""Payloads the C ping sends (``openamp.services.echo.PING_COUNT``, kept here so that
the parser loads no service)."""

EPILOG_PING = """\
examples:
  openamp ping                                   # against the C rpmsg-echo (start it first)
  openamp ping --count 1000 --size 496           # fixed 496-byte payloads
exit status: 0 when every echo came back intact, 1 otherwise.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp ping``."""
    p = sub.add_parser(
        "ping",
        help=help_for("ping"),
        description="Send payloads {u64 num, u64 size, size bytes of 0xA5} to the echo "
        "service and check every echo; by default 480 payloads of 1..480 data bytes.",
        epilog=EPILOG_PING,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_machine_options(p, role="driver")
    p.add_argument("--count", type=int, default=PING_COUNT, help="payloads to send (%(default)s)")
    p.add_argument(
        "--size",
        type=int,
        default=None,
        metavar="BYTES",
        help="data bytes per payload (default: growing 1, 2, 3, ... as in C)",
    )
    p.add_argument("--shutdown", action="store_true", help="send the shutdown message at the end")
    p.set_defaults(func=cmd_ping)


def cmd_ping(args: argparse.Namespace) -> int:
    """``openamp ping``."""
    from ..services.echo import run_ping

    with connected(args, "ping") as rpmsg:
        result = run_ping(
            rpmsg, count=args.count, size=args.size, timeout=args.timeout, shutdown=args.shutdown
        )
    for line in result.problems:
        print(f"ping: {line}")
    rtt = statistics.median(result.rtts) * 1e6 if result.rtts else 0.0
    print(
        f"ping: {result.sent} sent, {result.received} received, {result.errors} errors "
        f"({result.bytes} bytes in {result.elapsed:.3f} s, median round trip {rtt:.1f} µs)"
    )
    print(f"ping: Test Results: Error count = {result.errors}")
    return 0 if result.ok else 1

"""``openamp ping``: the C ``msg-test-rpmsg-ping`` host (virtio driver, socket client)."""

from __future__ import annotations

import argparse
import statistics

from ..errors import UsageError
from .commands import help_for
from .common import (
    add_json_option,
    add_machine_options,
    check_machine,
    connected,
    print_json,
)
from .values import count, limit

PING_COUNT = 480
"""Payloads the C ping sends (``openamp.services.echo.PING_COUNT``, kept here so that
the parser loads no service)."""
PING_HEADER = 16
"""Bytes of the ``{u64 num, u64 size}`` header at the start of every ping payload."""

EPILOG_PING = """\
examples:
  openamp echo --machine virtual --name vm1 &    # an echo remote to ping
  openamp ping --machine virtual --name vm1 --count 1000 --size 496

  openamp echo --machine virtual --name vm2 &
  openamp ping --machine virtual --name vm2 --count 10 --shutdown --json

Without --machine it uses the C names and pings the C rpmsg-echo (start it first).
--size is the payload of each message in bytes (17..496 with 512-byte buffers), as for
every openamp command; the C ping's own payloads grow from 17 to 496 bytes.
exit status: 0 when every echo came back intact, 1 otherwise, 2 for a usage error.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp ping``."""
    p = sub.add_parser(
        "ping",
        help=help_for("ping"),
        description="Send payloads {u64 num, u64 size, size-16 bytes of 0xA5} to the echo "
        "service and check every echo; by default 480 payloads of 17..496 bytes.",
        epilog=EPILOG_PING,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_machine_options(p, role="driver")
    p.add_argument(
        "--count",
        type=count,
        default=PING_COUNT,
        metavar="N",
        help="messages to send (%(default)s)",
    )
    p.add_argument(
        "--size",
        type=limit,
        default=None,
        metavar="BYTES",
        help=f"payload of every message, {PING_HEADER + 1} or more bytes (default: growing "
        "17, 18, 19, ... as in C)",
    )
    p.add_argument("--shutdown", action="store_true", help="send the shutdown message at the end")
    add_json_option(p)
    p.set_defaults(func=cmd_ping, _validate=check_ping)


def check_ping(args: argparse.Namespace) -> None:
    """``--size`` against the header and the buffers."""
    check_machine(args)
    if args.size is None:
        return
    largest = args.buffer_size - 16
    if not PING_HEADER < args.size <= largest:
        raise UsageError(
            f"--size {args.size}: a ping payload is {PING_HEADER + 1}..{largest} bytes "
            f"({PING_HEADER} of header, then data; {args.buffer_size}-byte buffers)"
        )


def cmd_ping(args: argparse.Namespace) -> int:
    """``openamp ping``."""
    from ..services.echo import run_ping

    data_size = None if args.size is None else args.size - PING_HEADER
    with connected(args, "ping") as rpmsg:
        result = run_ping(
            rpmsg, count=args.count, size=data_size, timeout=args.timeout, shutdown=args.shutdown
        )
    rtt = statistics.median(result.rtts) * 1e6 if result.rtts else 0.0
    if args.json:
        print_json(
            {
                "sent": result.sent,
                "received": result.received,
                "errors": result.errors,
                "bytes": result.bytes,
                "elapsed_s": round(result.elapsed, 6),
                "rtt_median_us": round(rtt, 1),
                "problems": result.problems,
                "ok": result.ok,
            }
        )
        return 0 if result.ok else 1
    for line in result.problems:
        print(f"ping: {line}")
    print(
        f"ping: {result.sent} sent, {result.received} received, {result.errors} errors "
        f"({result.bytes} bytes in {result.elapsed:.3f} s, median round trip {rtt:.1f} µs)"
    )
    print(f"ping: Test Results: Error count = {result.errors}")
    return 0 if result.ok else 1

"""``openamp matrix``: the matrix-multiply demo, host (default) or remote (``--role device``).

The host plays the C ``matrix_multiply`` (random 6x6 pairs, every product checked); the
remote plays ``matrix_multiplyd``.  Both pair with each other and with the C programs.
"""

from __future__ import annotations

import argparse
import statistics

from ..services.matrix import MATRIX_ROUNDS, MATRIX_SERVICE, MatrixService, run_matrix
from .commands import help_for
from .common import add_json_option, add_machine_options, connected, print_json, status_printer
from .values import count, integer

EPILOG = """\
examples:
  openamp matrix --role device --machine virtual --name lab1 &
  openamp matrix --machine virtual --name lab1 --count 1000 --seed 42

  openamp matrix --role device --machine virtual --name lab2 --json &
  openamp matrix --machine virtual --name lab2 --count 5 --show

Without --machine: the host pairs with the C matrix_multiplyd, the remote (--role
device) with the C matrix_multiply.  --count is the number of requests (rounds).
exit status: host: 0 when every product was right, 1 otherwise; remote: 0; 2 for a
usage error.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp matrix``."""
    p = sub.add_parser(
        "matrix",
        help=help_for("matrix"),
        description="Host (--role driver, the default): send pairs of random 6x6 "
        "matrices (296 bytes) to rpmsg-openamp-demo-channel and check every 148-byte "
        "product, then destroy the endpoint, which stops the remote. Remote (--role "
        "device): announce the service and answer every request with the product; "
        "requests that are not 296 bytes or have a size over 6 are reported and not "
        "answered. The remote stops on the shutdown message (0xEF56A55A), on the host's "
        "NS destroy, or when the host disconnects.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_machine_options(p, role="driver")
    p.add_argument(
        "--count",
        "--rounds",
        dest="count",
        type=count,
        default=MATRIX_ROUNDS,
        metavar="N",
        help="host: requests to send, one round each (%(default)s, as in C)",
    )
    p.add_argument(
        "--seed",
        type=integer,
        default=None,
        help="host: seed of the random matrices (default: new)",
    )
    p.add_argument(
        "--shutdown",
        action="store_true",
        help="host: send the shutdown message at the end, as Linux's mat_mul_demo does",
    )
    p.add_argument("--show", action="store_true", help="host: print the last round's matrices")
    add_json_option(p)
    p.set_defaults(func=cmd_matrix)


def cmd_matrix(args: argparse.Namespace) -> int:
    """``openamp matrix``: the remote with ``--role device``, else the host."""
    return serve_matrix(args) if args.role == "device" else host_matrix(args)


def serve_matrix(args: argparse.Namespace) -> int:
    """The remote: answer requests until stopped."""
    say = status_printer(args)
    with connected(args, "matrix") as rpmsg:
        service = MatrixService(rpmsg)
        say(f"matrix: serving {MATRIX_SERVICE!r} at {service.endpoint.addr:#x}")
        stats = service.run()
    if args.json:
        print_json(
            {
                "requests": stats.requests,
                "rejected": stats.rejected,
                "stop_reason": stats.stop_reason,
            }
        )
        return 0
    rejected = f", {stats.rejected} malformed not answered" if stats.rejected else ""
    print(
        f"matrix: {stats.requests} requests answered{rejected}; stopped: {stats.stop_reason}",
        flush=True,
    )
    return 0


def host_matrix(args: argparse.Namespace) -> int:
    """The host: run the rounds, report, 1 on any error."""
    with connected(args, "matrix") as rpmsg:
        result = run_matrix(
            rpmsg, rounds=args.count, seed=args.seed, timeout=args.timeout, shutdown=args.shutdown
        )
    rtt = statistics.median(result.rtts) * 1e6 if result.rtts else 0.0
    if args.json:
        print_json(
            {
                "sent": result.sent,
                "received": result.received,
                "errors": result.errors,
                "seed": result.seed,
                "elapsed_s": round(result.elapsed, 6),
                "rtt_median_us": round(rtt, 1),
                "problems": result.problems,
                "ok": result.ok,
            }
        )
        return 0 if result.ok else 1
    if args.show and result.last is not None:
        for title, m in zip(("a", "b", "a x b (received)"), result.last):
            print(f"matrix: {title}")
            for line in str(m).splitlines():
                print(f"  {line}")
    for line in result.problems:
        print(f"matrix: {line}")
    print(
        f"matrix: {result.sent} sent, {result.received} answered, {result.errors} errors "
        f"(seed {result.seed}, {result.elapsed:.3f} s, median round trip {rtt:.1f} µs)"
    )
    print(f"matrix: Test Results: Error count = {result.errors}")
    return 0 if result.ok else 1

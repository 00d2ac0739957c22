"""The ``openamp`` command.

Subcommands are thin programs on the public API (as python-can's tools are):

* ``openamp echo``  — the C ``rpmsg-echo`` remote (virtio device, socket server)
* ``openamp ping``  — the C ``msg-test-rpmsg-ping`` host (virtio driver, socket client)
* ``openamp demo``  — the echo firmware booted through RemoteProc, and the ping against it
* ``openamp rproc run`` — boot a firmware on a virtual machine and stream its trace
* ``openamp bench`` — round-trip latency and throughput of a link
* ``openamp matrix`` — matrix multiply (C ``matrix_multiply``/``matrix_multiplyd``)
* ``openamp proxy`` — the retarget proxy: a remote uses the host's files and console
* ``openamp rpc`` — RPC on ``rpmsg-rpc`` (C ``linux_rpc_demod``/``linux_rpc_demo``)
* ``openamp sample`` — the Linux rpmsg-client-sample (C ``rpmsg-sample-ping``/``-echo``)
* ``openamp rsc`` — show, check and build resource tables
* ``openamp rproc`` — boot firmware on a virtual machine (``run``), or manage a board's
  remote processors through sysfs (``ls``, ``status``, ``start``, ``stop``...)
* ``openamp rpmsg`` — a board's rpmsg channels and endpoints (the C rpmsg-utils)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import sys
from collections.abc import Sequence
from types import FrameType

from .. import __version__
from ..errors import OpenAMPError, UsageError
from ..services.echo import ECHO_SERVICE, PING_COUNT, EchoService, SinkService, run_ping
from ..tools.bench import BenchResult, bench_bulk, bench_idle, bench_rtt, bench_throughput
from ..tools.demos import DEMOS, DemoOptions, results_table
from .common import (
    add_machine_options,
    connected,
    print_status,
    spawn_remote,
)
from .matrix import add_matrix_parser
from .proxy import add_proxy_parser
from .rpc import add_rpc_parser
from .rpmsg import add_rpmsg_parser
from .rproc import add_rproc_parser
from .rsc import add_rsc_parser
from .sample import add_sample_parser

EPILOG_ECHO = """\
examples:
  openamp echo                                   # pairs with the C msg-test-rpmsg-ping
  openamp echo --machine virtual --name vm1      # and in another shell:
  openamp ping --machine virtual --name vm1
"""

EPILOG_PING = """\
examples:
  openamp ping                                   # against the C rpmsg-echo (start it first)
  openamp ping --count 1000 --size 496           # fixed 496-byte payloads
exit status: 0 when every echo came back intact, 1 otherwise.
"""

EPILOG_BENCH = """\
examples:
  openamp bench rtt --size 17
  openamp bench throughput --size 496 --count 200000 --json
  openamp bench rtt --peer "./rpmsg-echo 0"      # the C remote on the linux-generic machine
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``openamp`` command."""
    parser = argparse.ArgumentParser(
        prog="openamp",
        description="OpenAMP for Python: remoteproc, virtio and RPMsg, wire-compatible "
        "with the C library and Linux.",
    )
    parser.add_argument("--version", action="version", version=f"pyopenamp {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "echo",
        help="run the echo remote (C rpmsg-echo)",
        description="Announce rpmsg-openamp-demo-channel and send every message back. "
        "Stops on the shutdown message (0xEF56A55A), on the host's NS destroy, when the "
        "host disconnects, or after --count messages.",
        epilog=EPILOG_ECHO,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_machine_options(p, role="device")
    p.add_argument("--count", type=int, default=0, help="stop after N echoes (0: no limit)")
    p.add_argument(
        "--size",
        type=int,
        default=0,
        metavar="BYTES",
        help="largest payload to echo; longer ones are reported and not echoed (0: any)",
    )
    p.add_argument("--quiet", action="store_true", help="print only the final line")
    p.add_argument(
        "--sink",
        action="store_true",
        help="count messages instead of echoing them (the remote of `openamp bench bulk`)",
    )
    p.set_defaults(func=cmd_echo)

    p = sub.add_parser(
        "ping",
        help="run the ping host against an echo remote (C msg-test-rpmsg-ping)",
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

    p = sub.add_parser(
        "demo",
        help="run the demos on a simulated machine",
        description="Run every demo (or the NAMEs given) on fresh virtual machines: the "
        "remote side is a Python firmware booted through RemoteProc as a separate process, "
        "the host side runs here. Ends with a table of results.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help=f"demos to run ({', '.join(DEMOS)})")
    p.add_argument("--count", type=int, default=None, help="messages/rounds (default: as in C)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "bench",
        help="measure round-trip latency or throughput",
        description="Benchmarks against an echo remote: a Python one in a child process "
        "on a virtual machine, or any --peer command on the linux-generic machine.",
        epilog=EPILOG_BENCH,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "scenario",
        choices=["rtt", "throughput", "bulk", "idle"],
        help="rtt: one message at a time; throughput: echoed flood; bulk: one way to a "
        "sink, large buffers; idle: CPU while idle and the wake-up cost",
    )
    p.add_argument("--size", type=int, default=17, metavar="BYTES", help="payload (%(default)s)")
    p.add_argument("--count", type=int, default=None, help="messages per run")
    p.add_argument("--runs", type=int, default=3, help="runs (%(default)s); median and spread")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--peer",
        metavar="COMMAND",
        help="remote to start instead of the Python echo (it must serve the echo service "
        "as socket server on the linux-generic machine, like the C rpmsg-echo)",
    )
    p.add_argument(
        "--wait", choices=["spin-then-block", "block", "spin", "poll"], default="spin-then-block"
    )
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
    p.add_argument(
        "--buffer-size",
        type=int,
        default=None,
        metavar="BYTES",
        help="rpmsg buffer size per direction (default 512; bulk: 65536)",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=64,
        metavar="N",
        help="throughput, bulk: messages per send_many() call, one kick each (%(default)s)",
    )
    p.add_argument("--idle-seconds", type=float, default=2.0, help="idle: window (%(default)s)")
    p.set_defaults(func=cmd_bench)

    add_matrix_parser(sub)
    add_proxy_parser(sub)
    add_rpc_parser(sub)
    add_sample_parser(sub)
    add_rsc_parser(sub)
    add_rproc_parser(sub)
    add_rpmsg_parser(sub)
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (e.g. a remoteproc stop) ends a command like Ctrl-C: cleanup runs, files go.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``openamp`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(name)s: %(levelname)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
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


# -- echo ---------------------------------------------------------------------------------


def cmd_echo(args: argparse.Namespace) -> int:
    """``openamp echo``."""
    quiet = args.quiet
    say = (lambda _line: None) if quiet else print_status
    with connected(args, "echo", say) as rpmsg:
        service: EchoService | SinkService
        if args.sink:
            service = SinkService(rpmsg)
        else:
            service = EchoService(rpmsg, count=args.count, max_size=args.size)
        say(f"echo: serving {ECHO_SERVICE!r} at {service.endpoint.addr:#x}")
        stats = service.run()
    rejected = f", {stats.rejected} too long" if stats.rejected else ""
    print(
        f"echo: {stats.messages} messages ({stats.bytes} bytes) echoed{rejected}; stopped: "
        f"{stats.stop_reason}",
        flush=True,
    )
    return 0


# -- ping ---------------------------------------------------------------------------------


def cmd_ping(args: argparse.Namespace) -> int:
    """``openamp ping``."""
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


# -- demo ---------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """``openamp demo [NAME...]``: run the demos, each remote booted through RemoteProc."""
    names = args.names or list(DEMOS)
    unknown = [n for n in names if n not in DEMOS]
    if unknown:
        raise UsageError(f"no demo {', '.join(unknown)} (demos: {', '.join(DEMOS)})")
    options = DemoOptions(timeout=args.timeout, count=args.count)
    print(
        "pyopenamp demo: OpenAMP demos on a simulated machine; each remote is a Python "
        "firmware booted through RemoteProc as a separate process"
    )
    results = []
    for name in names:
        r = DEMOS[name](options)
        results.append(r)
        print(f"\n{name}: {'PASS' if r.ok else 'FAIL'} — {r.summary}")
        print(f"  remoteproc  {r.states}")
        for line in r.trace:
            print(f"  trace       {line}")
        for line in r.details:
            print(f"  note        {line}")
    print("\nresults")
    print(results_table(results))
    passed = sum(r.ok for r in results)
    ok = passed == len(results)
    print(f"result: {'PASS' if ok else 'FAIL'} ({passed} of {len(results)} demos passed)")
    return 0 if ok else 1


# -- bench --------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    """``openamp bench rtt|throughput|bulk|idle``."""
    if args.runs < 1:
        raise UsageError("--runs must be at least 1")
    if args.batch < 1:
        raise UsageError("--batch must be at least 1")
    scenario = args.scenario
    bulk = scenario == "bulk"
    buffer_size = args.buffer_size or (65536 if bulk and not args.peer else 512)
    size = buffer_size - 16 if bulk and args.size == 17 else args.size
    defaults = {"rtt": 5_000, "throughput": 100_000, "bulk": 20_000, "idle": 100}
    count = args.count or defaults[scenario]
    result = BenchResult(scenario, size, count, peer=args.peer or "python echo")
    for _ in range(args.runs):
        with spawn_remote(
            peer=args.peer,
            timeout=args.timeout,
            wait=args.wait,
            buffer_size=buffer_size,
            sink=bulk and not args.peer,
        ) as (remote, host):
            rpmsg = host.start(timeout=args.timeout)
            dst = rpmsg.wait_service(ECHO_SERVICE, args.timeout)
            if scenario == "rtt":
                ept = rpmsg.create_endpoint(ECHO_SERVICE)
                ept.wait_bound(args.timeout)
                figures = bench_rtt(ept, size=size, count=count)
            elif scenario == "throughput":
                figures = bench_throughput(
                    rpmsg, dst=dst, size=size, count=count, timeout=args.timeout, batch=args.batch
                )
            elif scenario == "bulk":
                figures = bench_bulk(
                    rpmsg, dst=dst, size=size, count=count, timeout=args.timeout, batch=args.batch
                )
            else:
                ept = rpmsg.create_endpoint(ECHO_SERVICE)
                ept.wait_bound(args.timeout)
                figures = bench_idle(
                    ept, remote_pid=remote.proc.pid, seconds=args.idle_seconds, samples=count
                )
            result.runs.append(figures)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.to_text())
    return 0

"""``openamp bench``: round-trip latency, throughput, bulk and idle figures of a link."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..tools.output import json_text
from .commands import help_for
from .common import add_capture_option, add_wait_option, capture_from_args, spawn_remote
from .values import buffer_size, count, limit, positive_seconds, seconds

if TYPE_CHECKING:
    from ..rpmsg.events import EventHook
    from ..tools.bench import RunFigures

EPILOG_BENCH = """\
examples:
  openamp bench rtt --size 17
  openamp bench throughput --size 496 --count 200000 --json
  openamp bench idle --idle-seconds 0.5 --runs 1
  openamp bench hvl --count 2000                 # hypervisorless virtio: rng, console, ping

--peer COMMAND runs another remote on the linux-generic machine, e.g. the C rpmsg-echo:
openamp bench rtt --peer "./rpmsg-echo 0"
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp bench``."""
    p = sub.add_parser(
        "bench",
        help=help_for("bench"),
        description="Benchmarks against an echo remote: a Python one in a child process "
        "on a virtual machine, or any --peer command on the linux-generic machine.",
        epilog=EPILOG_BENCH,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "scenario",
        choices=["rtt", "throughput", "bulk", "idle", "hvl"],
        help="rtt: one message at a time; throughput: echoed flood; bulk: one way to a "
        "sink, large buffers; idle: CPU while idle and the wake-up cost; hvl: "
        "hypervisorless virtio (rng MB/s with --size-byte requests, console and ping "
        "round trips)",
    )
    p.add_argument("--size", type=limit, default=17, metavar="BYTES", help="payload (%(default)s)")
    p.add_argument("--count", type=count, default=None, metavar="N", help="messages per run")
    p.add_argument(
        "--runs", type=count, default=3, metavar="N", help="runs (%(default)s); median and spread"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--peer",
        metavar="COMMAND",
        help="remote to start instead of the Python echo (it must serve the echo service "
        "as socket server on the linux-generic machine, like the C rpmsg-echo)",
    )
    add_wait_option(p)
    p.add_argument("--timeout", type=seconds, default=10.0, metavar="SECONDS")
    p.add_argument(
        "--buffer-size",
        type=buffer_size,
        default=None,
        metavar="BYTES",
        help="rpmsg buffer size per direction (default 512; bulk: 65536)",
    )
    p.add_argument(
        "--batch",
        type=count,
        default=64,
        metavar="N",
        help="throughput, bulk: messages per send_many() call, one kick each (%(default)s)",
    )
    p.add_argument(
        "--idle-seconds",
        type=positive_seconds,
        default=2.0,
        metavar="SECONDS",
        help="idle: window (%(default)s)",
    )
    add_capture_option(p)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    """``openamp bench rtt|throughput|bulk|idle|hvl``."""
    from ..tools.bench import BenchResult

    if args.scenario == "hvl":
        return _bench_hvl(args)
    scenario = args.scenario
    bulk = scenario == "bulk"
    buffer_size = args.buffer_size or (65536 if bulk and not args.peer else 512)
    size = buffer_size - 16 if bulk and args.size == 17 else args.size
    defaults = {"rtt": 5_000, "throughput": 100_000, "bulk": 20_000, "idle": 100}
    count = args.count or defaults[scenario]
    result = BenchResult(scenario, size, count, peer=args.peer or "python echo")
    with capture_from_args(args, "echo", lambda line: print(line, file=sys.stderr)) as cap:
        for run in range(args.runs):
            hook = None if cap is None else cap.link(f"{scenario} run {run + 1}")
            result.runs.append(_one_run(args, scenario, size, count, buffer_size, bulk, hook))
    if args.json:
        print(json_text(result.to_json()))
    else:
        print(result.to_text())
    return 0


def _one_run(
    args: argparse.Namespace,
    scenario: str,
    size: int,
    count: int,
    buffer_size: int,
    bulk: bool,
    hook: EventHook | None,
) -> RunFigures:
    """One run of a benchmark against a fresh remote; its figures."""
    from ..services.echo import ECHO_SERVICE
    from ..tools.bench import bench_bulk, bench_idle, bench_rtt, bench_throughput

    with spawn_remote(
        peer=args.peer,
        timeout=args.timeout,
        wait=args.wait,
        buffer_size=buffer_size,
        sink=bulk and not args.peer,
        capture=hook,
    ) as (remote, host):
        rpmsg = host.start(timeout=args.timeout)
        dst = rpmsg.wait_service(ECHO_SERVICE, args.timeout)
        if scenario == "rtt":
            ept = rpmsg.create_endpoint(ECHO_SERVICE)
            ept.wait_bound(args.timeout)
            return bench_rtt(ept, size=size, count=count)
        if scenario == "throughput":
            return bench_throughput(
                rpmsg, dst=dst, size=size, count=count, timeout=args.timeout, batch=args.batch
            )
        if scenario == "bulk":
            return bench_bulk(
                rpmsg, dst=dst, size=size, count=count, timeout=args.timeout, batch=args.batch
            )
        ept = rpmsg.create_endpoint(ECHO_SERVICE)
        ept.wait_bound(args.timeout)
        return bench_idle(ept, remote_pid=remote.proc.pid, seconds=args.idle_seconds, samples=count)


def _bench_hvl(args: argparse.Namespace) -> int:
    """``openamp bench hvl``: the remote measures rng, console and ping."""
    from ..tools.bench import bench_hvl

    if args.peer:
        raise UsageError("bench hvl runs its own remote; --peer does not apply")
    size = 4096 if args.size == 17 else args.size
    if size < 1:
        raise UsageError("--size must be at least 1")
    result = bench_hvl(
        count=args.count or 1000,
        request_bytes=size,
        runs=args.runs,
        timeout=max(args.timeout, 30.0),
    )
    print(json_text(result.to_json()) if args.json else result.to_text())
    return 0

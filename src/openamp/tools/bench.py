"""Benchmarks of an rpmsg link: round-trip latency and echoed throughput.

Both run on an endpoint bound to an echo service (ours or the C ``rpmsg-echo``):

* :func:`bench_rtt` sends one message, waits for its echo, repeats; it reports the
  median, 99th percentile, minimum and mean round trip.
* :func:`bench_throughput` floods: it sends in batches (one notification each) and
  counts the echoes, until ``count`` messages came back.  It reports messages per
  second each way and MB/s.
* :func:`bench_bulk` sends one way to a counting sink, typically with large buffers.
* :func:`bench_idle` measures the CPU both sides use while idle, and the round trip
  when both sides have gone to sleep (the cost of waking up).

Timing uses ``time.perf_counter``; nothing here asserts a speed.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import OpenAMPTimeoutError, UsageError
from ..rpmsg.core import Endpoint, RpmsgDevice
from .output import table


@dataclass
class RunFigures:
    """Figures of one benchmark run."""

    elapsed_s: float
    messages: int
    rtt_median_us: float | None = None
    rtt_p99_us: float | None = None
    rtt_min_us: float | None = None
    rtt_mean_us: float | None = None
    msgs_per_s: float | None = None
    mb_per_s: float | None = None
    host_cpu_percent: float | None = None
    remote_cpu_percent: float | None = None


@dataclass
class BenchResult:
    """A scenario run ``len(runs)`` times; :meth:`summary` gives median and spread."""

    scenario: str
    size: int
    count: int
    runs: list[RunFigures] = field(default_factory=list)
    peer: str = "python echo"

    def summary(self) -> dict[str, Any]:
        """Per metric: median over runs, and min/max as the spread."""
        out: dict[str, Any] = {}
        for key in (
            "rtt_median_us",
            "rtt_p99_us",
            "rtt_min_us",
            "msgs_per_s",
            "mb_per_s",
            "host_cpu_percent",
            "remote_cpu_percent",
        ):
            values = [getattr(r, key) for r in self.runs if getattr(r, key) is not None]
            if values:
                out[key] = {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                }
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the scenario, every run and the summary."""
        return {
            "scenario": self.scenario,
            "payload_bytes": self.size,
            "count": self.count,
            "peer": self.peer,
            "runs": [asdict(r) for r in self.runs],
            "summary": self.summary(),
        }

    def to_text(self) -> str:
        """A small table for people."""
        s = self.summary()
        rows = [["metric", "median", "min", "max"]]
        names = {
            "rtt_median_us": "round trip median, µs",
            "rtt_p99_us": "round trip p99, µs",
            "rtt_min_us": "round trip min, µs",
            "msgs_per_s": "messages/s" if self.scenario == "bulk" else "messages/s each way",
            "mb_per_s": "MB/s" if self.scenario == "bulk" else "MB/s each way",
            "host_cpu_percent": "host CPU while idle, %",
            "remote_cpu_percent": "remote CPU while idle, %",
        }
        for key, label in names.items():
            if key in s:
                v = s[key]
                fmt = "{:,.0f}" if key == "msgs_per_s" else "{:,.1f}"
                rows.append([label, *(fmt.format(v[k]) for k in ("median", "min", "max"))])
        head = (
            f"{self.scenario}: {self.size}-byte payloads, {self.count} messages x "
            f"{len(self.runs)} runs, peer: {self.peer}"
        )
        return head + "\n" + table(rows, indent="  ", align="<>>>")


def _payload(size: int) -> bytes:
    # Never starts with the shutdown magic, whatever the size.
    return bytes((i * 7 + 1) & 0xFF for i in range(size))


def bench_rtt(
    ept: Endpoint, *, size: int = 17, count: int = 10_000, timeout: float = 5.0
) -> RunFigures:
    """One-at-a-time round trips of ``size``-byte payloads on a bound endpoint."""
    if not 0 < size <= ept.tx_capacity:
        raise UsageError(f"size must be 1..{ept.tx_capacity} bytes, got {size}")
    payload = _payload(size)
    send, recv, clock = ept.send, ept.recv, time.perf_counter
    for _ in range(min(200, count)):
        send(payload, timeout)
        recv(timeout)
    samples = [0.0] * count
    start = clock()
    for i in range(count):
        t0 = clock()
        send(payload, timeout)
        if recv(timeout) is None:  # pragma: no cover - recv raises instead
            raise OpenAMPTimeoutError("no echo")
        samples[i] = clock() - t0
    elapsed = clock() - start
    samples.sort()
    us = 1e6
    return RunFigures(
        elapsed_s=elapsed,
        messages=count,
        rtt_median_us=samples[count // 2] * us,
        rtt_p99_us=samples[min(count - 1, int(count * 0.99))] * us,
        rtt_min_us=samples[0] * us,
        rtt_mean_us=elapsed / count * us,
        msgs_per_s=count / elapsed,
        mb_per_s=count * size / elapsed / 1e6,
    )


def bench_throughput(
    device: RpmsgDevice,
    *,
    dst: int,
    size: int = 17,
    count: int = 100_000,
    timeout: float = 10.0,
    batch: int = 64,
) -> RunFigures:
    """Flood ``count`` messages to the echo service at ``dst`` and count the echoes.

    Messages go out ``batch`` at a time with one notification each
    (:meth:`~openamp.rpmsg.Endpoint.send_many`); echoes are counted by a callback while
    we wait for buffers or for the rest to come back.
    """
    received = 0

    def on_echo(_ept: Endpoint, _data: memoryview, _src: int) -> None:
        nonlocal received
        received += 1

    ept = device.create_endpoint("", dst=dst, callback=on_echo)
    try:
        if not 0 < size <= ept.tx_capacity:
            raise UsageError(f"size must be 1..{ept.tx_capacity} bytes, got {size}")
        payload = _payload(size)
        chunk = [payload] * batch
        send_many = ept.send_many
        sent = 0
        start = time.perf_counter()
        while sent < count:
            n = min(batch, count - sent)
            send_many(chunk if n == batch else chunk[:n], timeout)
            sent += n
            device.poll()
        if not device.wait_until(lambda: received >= count, timeout):
            raise OpenAMPTimeoutError(
                f"throughput: only {received} of {count} echoes came back within {timeout} s"
            )
        elapsed = time.perf_counter() - start
    finally:
        ept.destroy()
    return RunFigures(
        elapsed_s=elapsed,
        messages=count,
        msgs_per_s=count / elapsed,
        mb_per_s=count * size / elapsed / 1e6,
    )


def bench_bulk(
    device: RpmsgDevice,
    *,
    dst: int,
    size: int,
    count: int,
    timeout: float = 10.0,
    batch: int = 64,
) -> RunFigures:
    """Send ``count`` ``size``-byte messages one way to a sink and time it.

    The sink (``openamp echo --sink``) counts and reports at the end; the figure is
    payload bytes per second from the first send to the report.
    """
    from ..services.echo import SINK_END, decode_sink_report

    ept = device.create_endpoint("", dst=dst)
    try:
        if not 0 < size <= ept.tx_capacity:
            raise UsageError(f"size must be 1..{ept.tx_capacity} bytes, got {size}")
        chunk = [_payload(size)] * batch
        sent = 0
        start = time.perf_counter()
        while sent < count:
            n = min(batch, count - sent)
            ept.send_many(chunk if n == batch else chunk[:n], timeout)
            sent += n
        ept.send(SINK_END, timeout)
        messages, nbytes = decode_sink_report(ept.recv(timeout))
        elapsed = time.perf_counter() - start
    finally:
        ept.destroy()
    if messages != count or nbytes != count * size:
        raise OpenAMPTimeoutError(f"bulk: the sink counted {messages} messages, {nbytes} bytes")
    return RunFigures(
        elapsed_s=elapsed,
        messages=count,
        msgs_per_s=count / elapsed,
        mb_per_s=nbytes / elapsed / 1e6,
    )


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds used so far by process ``pid`` (None: this process)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def bench_idle(
    ept: Endpoint, *, remote_pid: int | None, seconds: float = 2.0, samples: int = 100
) -> RunFigures:
    """CPU both sides use while the link is idle, and the cost of waking a sleeper.

    First nobody sends for ``seconds`` while this side waits in ``recv`` (and the remote
    waits for messages): the CPU each process used in that time is reported as a
    percentage of one core.  Then ``samples`` round trips are made with a 20 ms pause
    before each, so that both sides have gone past their spin window and sleep: their
    median is the round trip including two wake-ups.
    """
    host0 = cpu_seconds()
    remote0 = cpu_seconds(remote_pid) if remote_pid else 0.0
    t0 = time.perf_counter()
    with contextlib.suppress(OpenAMPTimeoutError):
        ept.recv(timeout=seconds)
    window = time.perf_counter() - t0
    host_cpu = (cpu_seconds() - host0) / window * 100
    remote_cpu = (cpu_seconds(remote_pid) - remote0) / window * 100 if remote_pid else None
    payload = _payload(17)
    rtts = []
    for _ in range(samples):
        time.sleep(0.02)
        t = time.perf_counter()
        ept.send(payload)
        ept.recv(timeout=5.0)
        rtts.append(time.perf_counter() - t)
    rtts.sort()
    return RunFigures(
        elapsed_s=window,
        messages=samples,
        rtt_median_us=rtts[len(rtts) // 2] * 1e6,
        rtt_p99_us=rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))] * 1e6,
        rtt_min_us=rtts[0] * 1e6,
        host_cpu_percent=host_cpu,
        remote_cpu_percent=remote_cpu,
    )


# -- hypervisorless virtio ----------------------------------------------------------------


@dataclass
class HvlBenchResult:
    """``openamp bench hvl``: figures measured by the remote, per run."""

    count: int
    request_bytes: int
    linux_side: str
    runs: list[dict[str, dict[str, Any]]] = field(default_factory=list)
    """Per run: scenario ('rng', 'console', 'ping') -> its figures."""

    def summary(self) -> dict[str, Any]:
        """Per scenario and figure: median over runs, and min/max as the spread."""
        out: dict[str, Any] = {}
        for run in self.runs:
            for scenario, figures in run.items():
                for key, value in figures.items():
                    if key in ("mb_per_s", "rtt_median_us", "rtt_p99_us", "rtt_min_us"):
                        out.setdefault(scenario, {}).setdefault(key, []).append(value)
        for figures in out.values():
            for key, values in figures.items():
                figures[key] = {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                }
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the runs and the summary."""
        return {
            "scenario": "hvl",
            "count": self.count,
            "request_bytes": self.request_bytes,
            "linux_side": self.linux_side,
            "runs": self.runs,
            "summary": self.summary(),
        }

    def to_text(self) -> str:
        """A small table for people."""
        s = self.summary()
        rows = [["metric", "median", "min", "max"]]
        names = [
            ("rng", "mb_per_s", f"rng MB/s ({self.request_bytes}-byte requests)"),
            ("console", "rtt_median_us", "console round trip median, µs"),
            ("console", "rtt_p99_us", "console round trip p99, µs"),
            ("ping", "rtt_median_us", "ping round trip median, µs"),
            ("ping", "rtt_p99_us", "ping round trip p99, µs"),
        ]
        for scenario, key, label in names:
            if key in s.get(scenario, {}):
                v = s[scenario][key]
                rows.append([label, *(f"{v[k]:,.1f}" for k in ("median", "min", "max"))])
        head = (
            f"hvl: {self.count} samples x {len(self.runs)} runs, measured by the remote; "
            f"Linux side: {self.linux_side}"
        )
        return head + "\n" + table(rows, indent="  ", align="<>>>")


def bench_hvl(
    *,
    count: int = 1000,
    request_bytes: int = 4096,
    runs: int = 3,
    timeout: float = 30.0,
    scenarios: tuple[str, ...] = ("rng", "console", "ping"),
    prefer_tap: bool = True,
) -> HvlBenchResult:
    """Run the monitor here and the remote in a child, and let the remote measure.

    rng: ``count`` requests of ``request_bytes`` each; console: ``count`` lines the
    monitor echoes back; ping: ``count`` ICMP echoes to 192.168.200.254 (the kernel
    behind a TAP in a namespace as root, else the Python stand-in host).
    """
    import json

    from ..hvl.firmware import bench_line
    from ..hvl.system import HvlSystem
    from .hvl import linux_side

    prefix = bench_line({}).split(" ", 1)[0] + " "
    side = linux_side(prefer_tap=prefer_tap)
    try:
        result = HvlBenchResult(count, request_bytes, side.describe())
        for _ in range(runs):
            args = ["--bench", ",".join(scenarios), "--count", str(count)]
            args += ["--bytes", str(request_bytes)]
            with HvlSystem(
                net=side.backend, remote_args=args, echo_console=True, timeout=timeout
            ) as system:
                status, out, err = system.wait_remote(timeout)
            if status != 0:
                raise OpenAMPTimeoutError(f"the benchmarking remote failed ({status}): {err}")
            run = {}
            for line in out.splitlines():
                if line.startswith(prefix):
                    figures = json.loads(line[len(prefix) :])
                    run[figures["scenario"]] = figures
            result.runs.append(run)
    finally:
        side.close()
    return result

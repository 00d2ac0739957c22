"""Benchmarks of an rpmsg link: round-trip latency and echoed throughput.

Both run on an endpoint bound to an echo service (ours or the C ``rpmsg-echo``):

* :func:`bench_rtt` sends one message, waits for its echo, repeats; it reports the
  median, 99th percentile, minimum and mean round trip.
* :func:`bench_throughput` floods: it sends with ``trysend`` until no buffer is free,
  then processes echoes, and repeats until ``count`` messages came back (the C
  ``rpmsg-flood-ping`` pattern).  It reports messages per second each way and MB/s.

Timing uses ``time.perf_counter``; nothing here asserts a speed.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import NoBufferError, OpenAMPTimeoutError, UsageError
from ..rpmsg.core import Endpoint, RpmsgDevice


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
        for key in ("rtt_median_us", "rtt_p99_us", "rtt_min_us", "msgs_per_s", "mb_per_s"):
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
        lines = [
            f"{self.scenario}: {self.size}-byte payloads, {self.count} messages x "
            f"{len(self.runs)} runs, peer: {self.peer}",
            f"  {'metric':<22}{'median':>14}{'min':>14}{'max':>14}",
        ]
        names = {
            "rtt_median_us": "round trip median, µs",
            "rtt_p99_us": "round trip p99, µs",
            "rtt_min_us": "round trip min, µs",
            "msgs_per_s": "messages/s each way",
            "mb_per_s": "MB/s each way",
        }
        for key, label in names.items():
            if key in s:
                v = s[key]
                fmt = "{:>14,.1f}" if key.startswith("rtt") or key == "mb_per_s" else "{:>14,.0f}"
                lines.append(
                    f"  {label:<22}"
                    + fmt.format(v["median"])
                    + fmt.format(v["min"])
                    + fmt.format(v["max"])
                )
        return "\n".join(lines)


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
    device: RpmsgDevice, *, dst: int, size: int = 17, count: int = 100_000, timeout: float = 10.0
) -> RunFigures:
    """Flood ``count`` messages to the echo service at ``dst`` and count the echoes."""
    received = 0

    def on_echo(_ept: Endpoint, _data: memoryview, _src: int) -> None:
        nonlocal received
        received += 1

    ept = device.create_endpoint("", dst=dst, callback=on_echo)
    try:
        if not 0 < size <= ept.tx_capacity:
            raise UsageError(f"size must be 1..{ept.tx_capacity} bytes, got {size}")
        payload = _payload(size)
        trysend = ept.trysend
        poll = device.poll
        waiter = device.waiter
        pending = device.has_rx_pending
        sent = 0
        start = time.perf_counter()
        last_progress = start
        while received < count:
            try:
                while sent < count:
                    trysend(payload)
                    sent += 1
            except NoBufferError:
                pass
            if poll():
                last_progress = time.perf_counter()
                continue
            if waiter is not None:
                waiter.wait(pending, 0.1)
            if time.perf_counter() - last_progress > timeout:
                raise OpenAMPTimeoutError(
                    f"throughput: no echo for {timeout} s ({received}/{count} received)"
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

"""The live view of a link (``openamp monitor``): endpoints, counters, ring fill levels.

:class:`LinkMonitor` is a passive tap's hook (:mod:`openamp.tools.tap`): it counts the
messages and bytes of every (source, destination) pair, names the endpoints from the
name-service records it sees, and on every tick reads the rings' indices for their
fill levels.  :meth:`LinkMonitor.render` draws one screen as text (plain text and ANSI
cursor moves, no TUI library, so the core install pays nothing); :meth:`snapshot` is
the same as data for ``--json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..rpmsg.events import Event, MessageEvent, MissedEvent
from ..rpmsg.wire import RPMSG_NS_EPT_ADDR
from .decode import format_addr
from .output import table

__all__ = ["LinkMonitor"]


@dataclass
class _Flow:
    messages: int = 0
    bytes: int = 0
    last: float = 0.0


@dataclass
class LinkMonitor:
    """Counts what a tap sees (call it with events) and renders it."""

    title: str = ""
    flows: dict[tuple[str, int, int], _Flow] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    """Address -> service name, from the name-service records."""
    missed: int = 0
    levels: list[tuple[int, int, int, int]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _prev: tuple[float, int, int] = (0.0, 0, 0)
    _rate: tuple[float, float] = (0.0, 0.0)

    def __call__(self, event: Event) -> None:
        """Count one event (the tap's hook)."""
        if isinstance(event, MessageEvent):
            key = ("h2r" if event.direction == "tx" else "r2h", event.src, event.dst)
            flow = self.flows.get(key)
            if flow is None:
                flow = self.flows[key] = _Flow()
            flow.messages += 1
            flow.bytes += event.length
            flow.last = time.monotonic()
            if event.dst == RPMSG_NS_EPT_ADDR:
                ns = event.ns()
                if ns is not None and not ns.destroy:
                    self.names[ns.addr] = ns.name
        elif isinstance(event, MissedEvent):
            self.missed += event.missed

    @property
    def messages(self) -> int:
        """Messages counted so far."""
        return sum(f.messages for f in self.flows.values())

    @property
    def bytes(self) -> int:
        """Payload bytes counted so far."""
        return sum(f.bytes for f in self.flows.values())

    def update_rates(self) -> None:
        """Messages and bytes per second since the last call."""
        now = time.monotonic()
        t, m, b = self._prev
        if t:
            dt = max(now - t, 1e-9)
            self._rate = ((self.messages - m) / dt, (self.bytes - b) / dt)
        self._prev = (now, self.messages, self.bytes)

    def snapshot(self) -> dict[str, Any]:
        """Everything on the screen, as data."""
        return {
            "title": self.title,
            "seconds": round(time.monotonic() - self.started, 3),
            "messages": self.messages,
            "bytes": self.bytes,
            "messages_per_s": round(self._rate[0], 1),
            "bytes_per_s": round(self._rate[1], 1),
            "missed": self.missed,
            "flows": [
                {
                    "direction": d,
                    "src": s,
                    "dst": t,
                    "service": "name service"
                    if t == RPMSG_NS_EPT_ADDR
                    else self.names.get(t) or self.names.get(s) or "",
                    "messages": f.messages,
                    "bytes": f.bytes,
                }
                for (d, s, t), f in sorted(self.flows.items())
            ],
            "rings": [
                {
                    "vring": v,
                    "avail_idx": a,
                    "used_idx": u,
                    "num": n,
                    "outstanding": (a - u) & 0xFFFF,
                }
                for v, a, u, n in self.levels
            ],
        }

    def render(self) -> str:
        """One screen of text."""
        snap = self.snapshot()
        lines = [
            f"{self.title}   {snap['seconds']:.1f} s   {snap['messages']} messages, "
            f"{snap['bytes']} bytes   {snap['messages_per_s']:.0f} msg/s   "
            f"missed {snap['missed']}",
            "",
        ]
        rows = [["direction", "src", "dst", "service", "messages", "bytes"]]
        for f in snap["flows"]:
            rows.append(
                [
                    "host->remote" if f["direction"] == "h2r" else "remote->host",
                    format_addr(f["src"]),
                    format_addr(f["dst"]),
                    f["service"],
                    str(f["messages"]),
                    str(f["bytes"]),
                ]
            )
        lines.append(table(rows, align="<<<<>>"))
        lines.append("")
        ring_rows = [["vring", "avail.idx", "used.idx", "outstanding", "fill"]]
        for r in snap["rings"]:
            what = "rx buffers posted" if r["vring"] == 0 else "messages in flight"
            bar = "#" * round(20 * r["outstanding"] / max(r["num"], 1))
            ring_rows.append(
                [
                    f"vring{r['vring']}",
                    str(r["avail_idx"]),
                    str(r["used_idx"]),
                    f"{r['outstanding']}/{r['num']} {what}",
                    f"[{bar:<20}]",
                ]
            )
        lines.append(table(ring_rows, align="<>>><"))
        return "\n".join(lines) + "\n"

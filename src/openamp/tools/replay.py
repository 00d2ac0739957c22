"""Replay: a recorded capture drives one side of a link; the recorded peer answers as it did.

Theory of operation
-------------------
A capture of a link (``openamp.tools.capture``) holds every message of both sides in
the order the recording side saw them.  :class:`ReplayPeer` plays one side -- ``"remote"``
or ``"host"`` -- on a live rpmsg device: its recorded messages become *sends*, the other
side's become *expectations*, in recorded order.  It is reactive, so it works wherever
the device is polled (an in-process pair, a process, a waiting host): at :meth:`start`
it sends everything recorded before the first expectation; each message the live peer
sends is matched against the next expectation (source, destination, payload) and the
sends recorded after it go out.  A message that does not match is kept in
:attr:`mismatches` (the replay goes on: the recorded peer answers as it did, right or
wrong for the new run), which is what a regression test looks at.

The played side receives through endpoints it creates at the recorded addresses (no
announcements: its own name-service records are replayed as recorded), and sees the
live peer's name-service records through its name-service endpoint.

Rules: no thread, no sleep -- progress comes from the device's ``poll()``, as
everywhere; the replay never changes what it sends to fit what it receives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError
from ..rpmsg.core import Endpoint, EndpointCallback, RpmsgDevice
from ..rpmsg.events import MessageEvent
from ..rpmsg.wire import RPMSG_NS_EPT_ADDR
from .capture import CaptureData, read_capture

__all__ = ["ReplayPeer", "ReplayStep"]


@dataclass(frozen=True)
class ReplayStep:
    """One recorded message: ``send`` (ours) or ``expect`` (the live peer's)."""

    action: str
    src: int
    dst: int
    payload: bytes


@dataclass
class ReplayPeer:
    """Play one recorded side of a link on ``device`` (see the module docstring)."""

    device: RpmsgDevice
    steps: list[ReplayStep]
    position: int = 0
    """Steps done so far."""
    mismatches: list[str] = field(default_factory=list)
    """What the live peer sent that the recording did not (and where)."""
    unexpected: int = 0
    """Messages that arrived after the script ended."""
    _endpoints: list[Endpoint] = field(default_factory=list)

    @classmethod
    def from_capture(
        cls,
        device: RpmsgDevice,
        capture: CaptureData | str,
        *,
        side: str = "remote",
        link: int = 0,
    ) -> ReplayPeer:
        """A replay of ``side`` (``"remote"`` or ``"host"``) from link ``link`` of a
        capture (a :class:`CaptureData` or a file name).  The capture must know which
        side sent what: it needs the recording side's link event (every pyopenamp
        capture has one)."""
        if side not in ("remote", "host"):
            raise UsageError(f"side must be 'remote' or 'host', not {side!r}")
        data = read_capture(capture) if isinstance(capture, str) else capture
        steps = []
        for ce in data.messages(link):
            ev = ce.event
            assert isinstance(ev, MessageEvent)
            if ce.h2r is None:
                raise UsageError(
                    f"{data.path}: link {link} does not say which side sent what "
                    "(no link event was recorded)"
                )
            ours = ce.h2r == (side == "host")
            steps.append(ReplayStep("send" if ours else "expect", ev.src, ev.dst, ev.payload))
        return cls(device, steps)

    @property
    def done(self) -> bool:
        """Whether every step was played."""
        return self.position >= len(self.steps)

    def start(self) -> None:
        """Create the receiving endpoints and send what comes before the first expectation."""
        dev = self.device
        addrs = sorted({s.dst for s in self.steps if s.action == "expect"})
        for addr in addrs:
            if addr == RPMSG_NS_EPT_ADDR:
                ns = dev.get_endpoint(addr)
                if ns is not None and ns.callback is not None:
                    inner = ns.callback

                    def observed(
                        ept: Endpoint, data: memoryview, src: int, _cb: EndpointCallback = inner
                    ) -> None:
                        _cb(ept, data, src)
                        self._received(ept.addr, data, src)

                    ns.callback = observed
                    continue
            if dev.get_endpoint(addr) is None:
                self._endpoints.append(dev.create_endpoint("", src=addr, callback=self._on_message))
        self._send_until_expect()

    def run(self, timeout: float | None = 10.0) -> bool:
        """:meth:`start` if needed, then process messages until done or ``timeout`` s;
        whether every step was played."""
        if self.position == 0 and not self._endpoints:
            self.start()
        return self.device.wait_until(lambda: self.done, timeout)

    def _on_message(self, ept: Endpoint, data: memoryview, src: int) -> None:
        self._received(ept.addr, data, src)

    def _received(self, dst: int, data: memoryview, src: int) -> None:
        if self.done:
            self.unexpected += 1
            return
        step = self.steps[self.position]
        payload = bytes(data)
        if step.action != "expect":
            self.unexpected += 1
            return
        if (step.src, step.dst, step.payload) != (src, dst, payload):
            self.mismatches.append(
                f"step {self.position}: expected {step.src:#x} -> {step.dst:#x} "
                f"{step.payload[:24].hex()} ({len(step.payload)} bytes), got {src:#x} -> "
                f"{dst:#x} {payload[:24].hex()} ({len(payload)} bytes)"
            )
        self.position += 1
        self._send_until_expect()

    def _send_until_expect(self) -> None:
        steps = self.steps
        while self.position < len(steps) and steps[self.position].action == "send":
            s = steps[self.position]
            self.position += 1
            self.device.send_offchannel(s.src, s.dst, s.payload, 10.0)

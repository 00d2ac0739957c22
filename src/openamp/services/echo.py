"""The echo service and its ping client: both sides of the C ``rpmsg-echo`` demo.

* :class:`EchoService` plays the C ``rpmsg-echo`` remote: it announces
  ``rpmsg-openamp-demo-channel``, sends every message back unchanged, and stops on the
  shutdown message (first u32 ``0xEF56A55A``, not echoed), on the peer's NS destroy, or
  when the peer disconnects.
* :func:`run_ping` plays the C ``msg-test-rpmsg-ping`` host: it announces the same
  service, waits to be bound, sends ``count`` payloads ``{u64 num, u64 size, size bytes
  of 0xA5}`` (sizes growing 1, 2, 3, ... by default, as in C), checks every echo, and
  finally destroys its endpoint, which tells the remote to stop.
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass, field

from ..errors import MessageError, OpenAMPTimeoutError, UsageError
from ..rpmsg.core import Endpoint, RpmsgDevice
from ..rpmsg.wire import SHUTDOWN_MSG
from .base import Service

log = logging.getLogger("openamp.services.echo")

ECHO_SERVICE = "rpmsg-openamp-demo-channel"
PING_COUNT = 480
_PAYLOAD_HDR = struct.Struct("<QQ")
"""The demos' ``struct _payload`` head on LP64: unsigned long num, unsigned long size."""
PING_HEAD = _PAYLOAD_HDR
"""The ping payload's head, for decoders (``openamp.tools.decode``)."""
_U32 = struct.Struct("<I")


def ping_payload(num: int, size: int) -> bytes:
    """A ping message: ``num``, ``size`` and ``size`` bytes of 0xA5 (16 + size bytes)."""
    return _PAYLOAD_HDR.pack(num, size) + b"\xa5" * size


def is_shutdown(payload: bytes | memoryview) -> bool:
    """Whether a message is the demos' shutdown request (first u32 0xEF56A55A)."""
    return len(payload) >= 4 and _U32.unpack_from(payload)[0] == SHUTDOWN_MSG


@dataclass
class EchoStats:
    """What an echo service did."""

    messages: int = 0
    bytes: int = 0
    rejected: int = 0
    """Messages over ``max_size`` that were not echoed."""
    stop_reason: str = ""


class EchoService(Service):
    """Echo every message on ``name`` back to its sender (see the module docstring)."""

    SERVICE_NAME = ECHO_SERVICE

    def __init__(
        self, rpmsg: RpmsgDevice, name: str = ECHO_SERVICE, *, count: int = 0, max_size: int = 0
    ) -> None:
        """``count``: stop after that many echoes (0: no limit); ``max_size``: do not echo
        payloads longer than that many bytes, count them as ``rejected`` (0: any)."""
        self.count = count
        self.max_size = max_size
        self.stats = EchoStats()
        super().__init__(rpmsg, name)

    def on_message(self, ept: Endpoint, data: memoryview, src: int) -> None:
        """Send ``data`` back to ``src``, unless it is the shutdown message."""
        if len(data) >= 4 and data[0] == 0x5A and is_shutdown(data):  # 0xEF56A55A, LE
            self.stop("shutdown message")
            return
        if self.max_size and len(data) > self.max_size:
            self.stats.rejected += 1
            log.warning("not echoing a %d-byte message (limit %d)", len(data), self.max_size)
            return
        ept.sendto(data, src)
        self.stats.messages += 1
        self.stats.bytes += len(data)
        if self.count and self.stats.messages >= self.count:
            self.stop(f"{self.count} messages echoed")

    def run(self, timeout: float | None = None) -> EchoStats:
        """Serve until a stop condition or ``timeout`` seconds (None = no limit)."""
        self.stats.stop_reason = self.serve(timeout)
        return self.stats


SINK_END = b"SINK-END"
"""The message that asks a :class:`SinkService` for its counts."""
_SINK_REPORT = struct.Struct("<QQ")


class SinkService(Service):
    """Count messages instead of echoing them (for one-way benchmarks).

    On :data:`SINK_END` it answers ``<QQ`` (messages, bytes) received since the last
    report.  Stops like the echo service.
    """

    SERVICE_NAME = ECHO_SERVICE

    def __init__(self, rpmsg: RpmsgDevice, name: str = ECHO_SERVICE) -> None:
        self.messages = 0
        self.bytes = 0
        self.stats = EchoStats()
        super().__init__(rpmsg, name)

    def on_message(self, ept: Endpoint, data: memoryview, src: int) -> None:
        """Count, or report on :data:`SINK_END`."""
        if is_shutdown(data):
            self.stop("shutdown message")
        elif data == SINK_END:
            ept.sendto(_SINK_REPORT.pack(self.messages, self.bytes), src)
            self.stats.messages += self.messages
            self.stats.bytes += self.bytes
            self.messages = self.bytes = 0
        else:
            self.messages += 1
            self.bytes += len(data)

    def run(self, timeout: float | None = None) -> EchoStats:
        """Serve until a stop condition or ``timeout`` seconds (None = no limit)."""
        self.stats.stop_reason = self.serve(timeout)
        return self.stats


def decode_sink_report(data: bytes) -> tuple[int, int]:
    """``(messages, bytes)`` from a :class:`SinkService` report."""
    if len(data) != _SINK_REPORT.size:
        raise MessageError(f"a sink report is {_SINK_REPORT.size} bytes, got {len(data)}")
    messages, nbytes = _SINK_REPORT.unpack(data)
    return int(messages), int(nbytes)


@dataclass
class PingResult:
    """The outcome of :func:`run_ping`."""

    sent: int = 0
    received: int = 0
    errors: int = 0
    bytes: int = 0
    elapsed: float = 0.0
    rtts: list[float] = field(default_factory=list)
    """Round-trip time of each message, seconds."""
    local_addr: int = 0
    remote_addr: int = 0
    problems: list[str] = field(default_factory=list)
    """What went wrong, one line per error (at most 20 kept)."""

    @property
    def ok(self) -> bool:
        """True when every message came back intact."""
        return self.errors == 0 and self.received == self.sent


def run_ping(
    rpmsg: RpmsgDevice,
    *,
    count: int = PING_COUNT,
    size: int | None = None,
    timeout: float = 5.0,
    name: str = ECHO_SERVICE,
    shutdown: bool = False,
) -> PingResult:
    """Ping the echo service ``count`` times and check every echo.

    ``size``: data bytes per payload, or None for 1, 2, 3, ... (as the C ping does,
    wrapping at the largest that fits).  ``timeout``: seconds to wait for binding and for
    each echo.  ``shutdown``: also send the shutdown message at the end.  The endpoint
    is destroyed at the end, which stops a C or Python echo remote.
    """
    if count < 0:
        raise UsageError(f"count must be >= 0, got {count}")
    result = PingResult()
    ept = rpmsg.create_endpoint(name)
    result.local_addr = ept.addr
    try:
        ept.wait_bound(timeout)
        result.remote_addr = ept.dest_addr
        max_size = ept.tx_capacity - _PAYLOAD_HDR.size
        if max_size <= 0:
            raise MessageError(
                f"the peer's buffers carry {ept.tx_capacity} payload bytes; a ping needs "
                f"at least {_PAYLOAD_HDR.size + 1}"
            )
        if size is not None and not 0 < size <= max_size:
            raise UsageError(f"size must be 1..{max_size} data bytes, got {size}")
        start = time.perf_counter()
        for i in range(count):
            n = size if size is not None else i % max_size + 1
            msg = ping_payload(i, n)
            t0 = time.perf_counter()
            ept.send(msg, timeout=timeout)
            result.sent += 1
            try:
                echo = ept.recv(timeout=timeout)
            except OpenAMPTimeoutError:
                result.errors += 1
                _note(result, f"ping {i}: no echo within {timeout} s")
                break
            result.rtts.append(time.perf_counter() - t0)
            result.received += 1
            result.bytes += len(echo)
            if echo != msg:
                result.errors += 1
                _note(result, f"ping {i}: echo differs ({_describe(echo, i, n)})")
        result.elapsed = time.perf_counter() - start
        if shutdown:
            ept.send(_U32.pack(SHUTDOWN_MSG), timeout=timeout)
    finally:
        ept.destroy()  # announces the destroy; never raises for a vanished peer
    return result


def _note(result: PingResult, line: str) -> None:
    if len(result.problems) < 20:
        result.problems.append(line)


def _describe(echo: bytes, num: int, size: int) -> str:
    if len(echo) < _PAYLOAD_HDR.size:
        return f"only {len(echo)} bytes"
    got_num, got_size = _PAYLOAD_HDR.unpack_from(echo)
    bad = sum(1 for b in echo[_PAYLOAD_HDR.size :] if b != 0xA5)
    return f"num {got_num} (want {num}), size {got_size} (want {size}), {bad} data bytes not 0xA5"

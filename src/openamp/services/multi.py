"""The STM32MP1 "rpmsg multi services" remote: the Zephyr sample the seed's demos 1-5 use.

:class:`MultiServices` plays ``examples/zephyr/rpmsg_multi_services/src/main_remote.c``
of openamp-system-reference on one rpmsg device, with the behaviour Linux users see:

* **client sample** (``rpmsg-client-sample``, created first: 0x400): each payload is
  copied into a 20-byte buffer and sent back to the endpoint's peer (learned from
  Linux's first message); after the 100th answer the endpoint is destroyed (NS destroy)
  and ``OpenAMP Linux sample client responder ended`` is reported;
* **tty** (``rpmsg-tty``, 0x401): a message is answered with ``"TTY <n>: "`` (7 bytes,
  ``n`` the tty endpoint's index) + the payload + one more byte (``len + 8`` bytes in
  all).  When Linux announces ``rpmsg-tty`` (``RPMSG_CREATE_DEV_IOCTL``, as
  ``rpmsg_export_dev`` does) a second tty endpoint is created for it, bound to the
  announcer, and sends ``"bound"`` with its NUL (6 bytes).  When that channel is
  destroyed the endpoint is destroyed silently (its name is blanked first, as the C
  unbind callback does, so no NS destroy goes out);
* **raw** (``rpmsg-raw``, 0x402) and an unannounced endpoint at **0x1** (source and
  destination 0x1, so any Linux endpoint made with ``rpmsg_export_ept ... dst 1`` reaches
  it): a message is answered with ``"from ept 0x%04x: "`` (17 bytes, the *local*
  address) + the payload + one more byte (``len + 18``), sent to the message's source.

The trailing byte is what the C code leaves in its buffer after the payload: the byte
at that position of an earlier, longer message, or uninitialised stack.  ``trailing``
chooses what we send there: ``"zero"`` (the default, a 0x00) or ``"stale"`` (the byte
an earlier message left in the responder's 512-byte buffer, 0x00 before any; what the
Zephyr firmware sends when its stack starts out zeroed).

Addresses: the three announced endpoints get 0x400, 0x401 and 0x402.  The endpoint made
for a Linux-announced tty gets the lowest free address (``address_policy="lowest-free"``,
what the seed's OpenAMP did: 0x400 again once the client sample endpoint is gone) or the
next one round-robin (``"round-robin"``, OpenAMP from v2024.05: 0x403).

Where we differ from the C sample, all for messages it mishandles: a client-sample
payload longer than 20 bytes overflows the C buffer (into the endpoint that follows
it); we answer with its first 20 bytes and log a warning.  An answer longer than a
transmit buffer (C ``rpmsg_send`` refuses it and the message is lost) is cut to the
buffer and logged.  Two messages that arrive before the C responder thread runs
overwrite each other's slot; we answer each one.

What this module must not do: wait on its own or start threads.  Every answer is sent
from the receive callback; blocking happens in the rpmsg device's waiter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ..errors import OpenAMPError, PeerGoneError, UsageError
from ..rpmsg.core import Endpoint, NsCallback, RpmsgDevice
from ..rpmsg.wire import RPMSG_ADDR_ANY, RPMSG_ADDR_BMP_SIZE, RPMSG_RESERVED_ADDRESSES
from .base import serve_until

log = logging.getLogger("openamp.services.multi")

SAMPLE_SERVICE = "rpmsg-client-sample"
TTY_SERVICE = "rpmsg-tty"
RAW_SERVICE = "rpmsg-raw"
FIXED_RAW_ADDR = 0x1
"""The raw endpoint with a fixed address (source and destination 0x1)."""
SAMPLE_LIMIT = 100
"""Answers the client-sample responder sends before it destroys its endpoint."""
SAMPLE_BUFFER = 20
"""``rx_cs_msg[20]``: the client-sample responder's copy buffer."""
TTY_PREFIX_LEN = 7
"""``snprintf(tx_buff, 8, "TTY %d: ", i)``: 7 characters (the 8th, its NUL, is overwritten)."""
RAW_PREFIX_LEN = 17
"""``snprintf(buff, 18, "from ept 0x%04x: ", addr)``: 17 characters."""
BOUND = b"bound\0"
"""What a Linux-announced tty endpoint sends first: ``sizeof("bound")`` = 6 bytes."""
RESPONDER_BUFFER = 512
"""The C responders' ``tx_buff[512]`` / ``buff[512]``."""

BANNER = "OpenAMP[remote]  linux responder demo started"
"""The first line of the sample (two spaces, as in the C source)."""
LINES = {
    "sample": "OpenAMP[remote] Linux sample client responder started",
    "tty": "OpenAMP[remote] Linux tty responder started",
    "raw": "OpenAMP[remote] Linux raw data responder started",
    "fixed": "OpenAMP[remote] create a endpoint with address and dest_address set to 0x1",
    "sample_end": "OpenAMP Linux sample client responder ended",
}
"""What the Zephyr sample prints (the seed shows them in ``trace0``), by event."""

Trailing = Literal["zero", "stale"]
AddressPolicy = Literal["lowest-free", "round-robin"]


@dataclass
class MultiStats:
    """What the remote did."""

    sample_answers: int = 0
    sample_ended: bool = False
    tty_answers: list[int] = field(default_factory=lambda: [0, 0])
    """Answers per tty endpoint index (0: the announced one, 1: made for Linux's)."""
    tty_bound: list[int] = field(default_factory=list)
    """Addresses of the tty endpoints made for Linux announcements, in order."""
    tty_unbound: int = 0
    raw_answers: dict[int, int] = field(default_factory=dict)
    """Answers per local raw endpoint address (0x402, 0x1)."""
    clipped: int = 0
    """Answers cut short (an over-long client-sample payload or a reply over the MTU)."""
    stop_reason: str = ""


class _Responder:
    """A C responder's persistent 512-byte buffer: prefix + payload + one trailing byte."""

    def __init__(self, trailing: Trailing) -> None:
        self.trailing = trailing
        self.buffer = bytearray(RESPONDER_BUFFER)

    def answer(self, prefix: bytes, payload: bytes) -> bytes:
        n = len(prefix)
        end = min(n + len(payload), RESPONDER_BUFFER - 1)
        self.buffer[:n] = prefix
        self.buffer[n] = 0  # snprintf's NUL, overwritten by the payload if there is one
        self.buffer[n:end] = payload[: end - n]
        if self.trailing == "zero":
            self.buffer[end] = 0
        return bytes(self.buffer[: end + 1])


class MultiServices:
    """The multi-services remote on ``rpmsg`` (see the module docstring).

    ``report(line)`` receives what the Zephyr sample prints (default: the module's
    logger at INFO).  ``trailing``: ``"zero"`` or ``"stale"``.  ``address_policy``:
    ``"lowest-free"`` or ``"round-robin"``.  ``sample_limit``: answers before the client
    sample endpoint goes (100).  The endpoints are created at once, in the C order.
    """

    def __init__(
        self,
        rpmsg: RpmsgDevice,
        *,
        report: Callable[[str], None] | None = None,
        trailing: Trailing = "zero",
        address_policy: AddressPolicy = "lowest-free",
        sample_limit: int = SAMPLE_LIMIT,
    ) -> None:
        if trailing not in ("zero", "stale"):
            raise UsageError(f"trailing must be 'zero' or 'stale', got {trailing!r}")
        if address_policy not in ("lowest-free", "round-robin"):
            raise UsageError(
                f"address_policy must be 'lowest-free' or 'round-robin', got {address_policy!r}"
            )
        if sample_limit < 1:
            raise UsageError(f"sample_limit must be >= 1, got {sample_limit}")
        self.rpmsg = rpmsg
        self.address_policy = address_policy
        self.sample_limit = sample_limit
        self.stats = MultiStats()
        self.stop_reason = ""
        self._report = report or (lambda line: log.info("%s", line))
        self._tty_buffer = _Responder(trailing)
        self._raw_buffer = _Responder(trailing)
        self._previous_bind_cb: NsCallback | None = rpmsg.ns_bind_cb
        rpmsg.ns_bind_cb = self._new_service

        self._report(BANNER)
        self._report(LINES["sample"])
        self.sample: Endpoint | None = self._create(SAMPLE_SERVICE, self._on_sample)
        self._report(LINES["tty"])
        self.ttys: list[Endpoint | None] = [self._create(TTY_SERVICE, self._on_tty), None]
        self._report(LINES["raw"])
        self.raw = self._create(RAW_SERVICE, self._on_raw)
        self._report(LINES["fixed"])
        self.fixed_raw = rpmsg.create_endpoint(
            RAW_SERVICE, src=FIXED_RAW_ADDR, dst=FIXED_RAW_ADDR, callback=self._on_raw
        )

    # -- endpoints --------------------------------------------------------------------------

    def _next_address(self) -> int:
        """The address the next dynamic endpoint gets under our policy."""
        if self.address_policy == "round-robin":
            return RPMSG_ADDR_ANY
        for addr in range(RPMSG_RESERVED_ADDRESSES, RPMSG_RESERVED_ADDRESSES + RPMSG_ADDR_BMP_SIZE):
            if self.rpmsg.get_endpoint(addr) is None:
                return addr
        return RPMSG_ADDR_ANY  # all taken: let the core say so

    def _create(
        self,
        name: str,
        callback: Callable[[Endpoint, memoryview, int], None],
        dst: int = RPMSG_ADDR_ANY,
        on_unbind: Callable[[Endpoint], None] | None = None,
    ) -> Endpoint:
        return self.rpmsg.create_endpoint(
            name, src=self._next_address(), dst=dst, callback=callback, on_unbind=on_unbind
        )

    def _send(self, ept: Endpoint, data: bytes, dst: int | None = None) -> None:
        capacity = ept.tx_capacity
        if len(data) > capacity:
            log.warning(
                "%d-byte answer from %#x cut to the %d-byte buffer (C rpmsg_send drops it)",
                len(data),
                ept.addr,
                capacity,
            )
            self.stats.clipped += 1
            data = data[:capacity]
        if dst is None:
            ept.send(data)
        else:
            ept.sendto(data, dst)

    # -- the client sample ------------------------------------------------------------------

    def _on_sample(self, ept: Endpoint, data: memoryview, src: int) -> None:
        payload = bytes(data)
        if len(payload) > SAMPLE_BUFFER:
            log.warning(
                "a %d-byte client-sample message overflows the C sample's %d-byte buffer; "
                "answering with its first %d bytes",
                len(payload),
                SAMPLE_BUFFER,
                SAMPLE_BUFFER,
            )
            self.stats.clipped += 1
            payload = payload[:SAMPLE_BUFFER]
        self._send(ept, payload)  # rpmsg_send: to the peer learned from the first message
        self.stats.sample_answers += 1
        if self.stats.sample_answers >= self.sample_limit:
            ept.destroy()  # NS destroy: Linux removes the rpmsg_client_sample device
            self.sample = None
            self.stats.sample_ended = True
            self._report(LINES["sample_end"])

    # -- tty --------------------------------------------------------------------------------

    def _on_tty(self, ept: Endpoint, data: memoryview, src: int) -> None:
        index = 0 if ept is self.ttys[0] else 1
        prefix = (f"TTY {index}: ").encode()[:TTY_PREFIX_LEN]
        self._send(ept, self._tty_buffer.answer(prefix, bytes(data)))
        self.stats.tty_answers[index] += 1

    def _new_service(self, rpmsg: RpmsgDevice, name: str, addr: int) -> None:
        """Linux announced ``name`` at ``addr`` and no endpoint of ours took it."""
        if name == TTY_SERVICE and self.ttys[1] is None:
            ept = self._create(TTY_SERVICE, self._on_tty, dst=addr, on_unbind=self._tty_unbind)
            self.ttys[1] = ept
            self.stats.tty_bound.append(ept.addr)
            log.info("request to bind new service %s", name)
            self._send(ept, BOUND)
            return
        if self._previous_bind_cb is not None:
            self._previous_bind_cb(rpmsg, name, addr)
            return
        log.error("unexpected ns service receive for name %s", name)

    def _tty_unbind(self, ept: Endpoint) -> None:
        """The channel was destroyed: blank the name (no NS destroy goes out), destroy."""
        log.info("destroy end point name %s", ept.name)
        ept.name = ""
        ept.destroy()
        if self.ttys[1] is ept:
            self.ttys[1] = None
        self.stats.tty_unbound += 1

    # -- raw --------------------------------------------------------------------------------

    def _on_raw(self, ept: Endpoint, data: memoryview, src: int) -> None:
        prefix = f"from ept 0x{ept.addr:04x}: ".encode()[:RAW_PREFIX_LEN]
        self._send(ept, self._raw_buffer.answer(prefix, bytes(data)), dst=src)
        self.stats.raw_answers[ept.addr] = self.stats.raw_answers.get(ept.addr, 0) + 1

    # -- serving ----------------------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        """Ask :meth:`run` to return; the first reason is kept."""
        if not self.stop_reason:
            self.stop_reason = reason

    def run(self, timeout: float | None = None) -> MultiStats:
        """Serve until stopped, the host goes away or ``timeout`` s (None = no limit).

        The endpoints stay (as in the C sample, whose responders never end); call
        :meth:`close` to destroy them.
        """
        self.stats.stop_reason = serve_until(
            self.rpmsg, lambda: self.stop_reason, timeout, gone="the host disconnected"
        )
        return self.stats

    def close(self) -> None:
        """Destroy the endpoints (announcing it while the host listens)."""
        self.rpmsg.ns_bind_cb = self._previous_bind_cb
        for ept in (self.sample, self.ttys[0], self.ttys[1], self.raw, self.fixed_raw):
            if ept is not None:
                try:
                    ept.destroy()
                except PeerGoneError:
                    pass
                except OpenAMPError as exc:
                    log.warning("destroying %r: %s", ept, exc)


__all__ = [
    "BANNER",
    "BOUND",
    "FIXED_RAW_ADDR",
    "LINES",
    "RAW_SERVICE",
    "SAMPLE_BUFFER",
    "SAMPLE_LIMIT",
    "SAMPLE_SERVICE",
    "TTY_SERVICE",
    "AddressPolicy",
    "MultiServices",
    "MultiStats",
    "Trailing",
]

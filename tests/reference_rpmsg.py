"""The readable twin of the per-message path in ``openamp/rpmsg/virtio.py``.

``RpmsgVirtioDevice.send_offchannel`` and ``_drain_rx`` are inlined for speed
(docs/performance.md: splitting them into helpers costs about 4 % of a round trip).
Here is the same logic written the slow, obvious way: one named step per helper, no
tuple tricks.  ``tests/test_reference_rpmsg.py`` runs the same traffic through both and
checks that they leave the same bytes in shared memory and send the same kicks, as
CPython keeps ``_pydecimal`` beside ``_decimal``.

Change the fast path, and this file tells you whether you changed what it does.
"""

from __future__ import annotations

from dataclasses import dataclass

from openamp.errors import (
    EndpointNotBoundError,
    InvalidStateError,
    PayloadTooLargeError,
)
from openamp.rpmsg.virtio import STAGE_TX, RpmsgVirtioDevice
from openamp.rpmsg.wire import RPMSG_ADDR_ANY, RPMSG_HDR, RPMSG_HDR_SIZE


@dataclass
class TxBuf:
    """A transmit buffer: where it is, how big, and its descriptor head (device) or -1."""

    offset: int
    size: int
    head: int

    @property
    def capacity(self) -> int:
        return self.size - RPMSG_HDR_SIZE

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.offset, self.size, self.head)


@dataclass
class RxBuf:
    """A received buffer and its place in the batch."""

    position: int
    offset: int
    size: int
    index: int


class ReferenceRpmsgDevice(RpmsgVirtioDevice):
    """An rpmsg device whose per-message path is written plainly (see the module doc)."""

    # -- sending ------------------------------------------------------------------------

    def send_offchannel(self, src, dst, data, timeout):  # type: ignore[no-untyped-def]
        self._check_can_send(dst)
        length = len(data)
        self._check_fits_any_buffer(length)
        buf = self._take_free_buffer(timeout)
        self._check_fits(buf, length)
        self._write_message(buf, src, dst, data)
        self._trace_sent(buf, src, dst, length)
        self._hand_over(buf)
        return length

    def _check_can_send(self, dst: int) -> None:
        if dst == RPMSG_ADDR_ANY:
            raise EndpointNotBoundError("destination address ANY: the peer is not known yet")
        if self.closed:
            raise InvalidStateError("the rpmsg device is closed")

    def _check_fits_any_buffer(self, length: int) -> None:
        # the driver knows its transmit size before it takes a buffer; the device does not
        if self.role.name == "DRIVER" and length > self._tx_size - RPMSG_HDR_SIZE:
            raise PayloadTooLargeError(length, self._tx_size - RPMSG_HDR_SIZE)

    def _take_free_buffer(self, timeout: float | None) -> TxBuf:
        # buffers given back unsent first, then the role's source of free buffers
        raw = self._reclaimer.pop() if self._reclaimer else self._get_tx_buffer(False)
        if raw is None:
            raw = self._wait_tx_buffer(timeout)
        return TxBuf(*raw)

    def _check_fits(self, buf: TxBuf, length: int) -> None:
        if length > buf.capacity:
            self._reclaimer.append(buf.as_tuple())  # given back unsent, used first
            raise PayloadTooLargeError(length, buf.capacity)

    def _write_message(self, buf: TxBuf, src: int, dst: int, data: bytes) -> None:
        payload_at = buf.offset + RPMSG_HDR_SIZE
        self._mem[payload_at : payload_at + len(data)] = data
        RPMSG_HDR.pack_into(self._mem, buf.offset, src, dst, 0, len(data), 0)

    def _trace_sent(self, buf: TxBuf, src: int, dst: int, length: int) -> None:
        if self.capture is not None:
            self._trace_tx(buf.offset, buf.size, buf.head, src, dst, length)

    def _hand_over(self, buf: TxBuf) -> None:
        if not self._dispatching:
            # outside a callback: publish now (after anything staged) and kick
            self._commit_tx(buf.offset, buf.size, buf.head)
            self._tvq.kick()
            return
        # inside a callback: stage it; a full stage is published; kick at the poll's end
        self._staged.append(buf.as_tuple())
        if len(self._staged) >= STAGE_TX:
            self._publish(self._staged)
        self._tx_kick_pending = True

    # -- receiving ----------------------------------------------------------------------

    def _drain_rx(self) -> int:
        batch = self._take_received()
        if not batch:
            return 0
        held_positions: list[int] = []
        first_error: BaseException | None = None
        for rx in batch:
            try:
                if self._deliver_one(rx) == "held":
                    held_positions.append(rx.position)
            except BaseException as exc:
                if first_error is None:
                    first_error = exc
                if self._take_held() is not None:
                    held_positions.append(rx.position)
        try:
            self._publish_answers_first()
        finally:
            self._give_batch_back(batch, held_positions)
        if first_error is not None:
            raise first_error
        return len(batch)

    def _take_received(self) -> list[RxBuf]:
        raw = self._take_rx()
        return [RxBuf(i, off, size, idx) for i, (off, size, idx) in enumerate(raw)]

    def _deliver_one(self, rx: RxBuf) -> str:
        # the driver's buffers are its own size; the device's are what the ring says
        size = self._rx_size if self._rx_size else rx.size
        returned_now = self._deliver(rx.offset, size, rx.index)
        return "back" if returned_now else "held"

    def _publish_answers_first(self) -> None:
        if self._staged:
            self._flush_staged()

    def _give_batch_back(self, batch: list[RxBuf], held_positions: list[int]) -> None:
        raw = [(rx.offset, rx.size, rx.index) for rx in batch]
        self._return_rx(raw, held_positions)

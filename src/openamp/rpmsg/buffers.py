"""Handles for zero-copy buffers: a reserved transmit buffer and a held receive buffer.

The handles know their owner only through :class:`BufferOwner`, the four calls they
make, so any transport can hand them out (the virtio one does today) and this module
imports nothing of the transports: the rpmsg package's graph is
``wire <- buffers <- core <- virtio``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..errors import InvalidStateError
from .wire import RPMSG_HDR_SIZE

if TYPE_CHECKING:
    from .core import Endpoint


class BufferOwner(Protocol):
    """What a transport gives the buffer handles it hands out."""

    generation: int
    """Bumped when the link is reset; a handle from before belongs to no ring any more."""

    def buffer_view(self, offset: int, length: int) -> memoryview:
        """A writable view of ``length`` bytes of shared memory at ``offset``."""
        ...

    def send_nocopy(self, buf: TxBuffer, src: int, dst: int, length: int) -> None:
        """Send the first ``length`` payload bytes of the reserved buffer ``buf``."""
        ...

    def release_tx_buffer(self, buf: TxBuffer) -> None:
        """Take back a reserved buffer unsent."""
        ...

    def release_rx_buffer(self, buf: RxBuffer) -> None:
        """Give a held receive buffer back to the peer."""
        ...


class TxBuffer:
    """A transmit buffer reserved for in-place filling (C ``rpmsg_get_tx_payload_buffer``).

    Write the payload into ``data`` (a view of the shared buffer, ``capacity`` bytes),
    then :meth:`send` the first ``length`` bytes, or :meth:`release` it unsent.  After
    either, ``data`` must not be used again.
    """

    __slots__ = (
        "_device",
        "_state",
        "capacity",
        "data",
        "endpoint",
        "generation",
        "head",
        "offset",
        "size",
    )

    def __init__(
        self, device: BufferOwner, endpoint: Endpoint, offset: int, size: int, head: int
    ) -> None:
        self._device = device
        self.generation = device.generation
        self.endpoint = endpoint
        self.offset = offset
        self.size = size
        self.head = head
        self.capacity = size - RPMSG_HDR_SIZE
        self.data = device.buffer_view(offset + RPMSG_HDR_SIZE, self.capacity)
        self._state = "reserved"

    def send(self, length: int, dst: int | None = None, src: int | None = None) -> int:
        """Send the first ``length`` bytes of ``data`` (``dst``/``src``: default the endpoint's)."""
        self._check()
        ept = self.endpoint
        self._device.send_nocopy(
            self,
            ept.addr if src is None else src,
            ept.dest_addr if dst is None else dst,
            length,
        )
        self._state = "sent"
        self.data.release()
        return length

    def release(self) -> None:
        """Give the buffer back unsent (C ``rpmsg_release_tx_buffer``).  Idempotent."""
        if self._state == "reserved":
            self._state = "released"
            self.data.release()
            self._device.release_tx_buffer(self)

    def _check(self) -> None:
        if self._state != "reserved":
            raise InvalidStateError(f"tx buffer at {self.offset:#x} was already {self._state}")

    def __enter__(self) -> TxBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RxBuffer:
    """A received message kept past its callback (C ``rpmsg_hold_rx_buffer``).

    ``data`` is a zero-copy view of the payload in shared memory, valid until
    :meth:`release` hands the buffer back to the peer.
    """

    __slots__ = (
        "_device",
        "_released",
        "data",
        "dst",
        "generation",
        "index",
        "offset",
        "size",
        "src",
    )

    def __init__(
        self,
        device: BufferOwner,
        offset: int,
        size: int,
        index: int,
        data: memoryview,
        src: int,
        dst: int,
    ) -> None:
        self._device = device
        self.generation = device.generation
        self.offset = offset
        self.size = size
        self.index = index
        self.data = data
        self.src = src
        self.dst = dst
        self._released = False

    def release(self) -> None:
        """Return the buffer to the ring and notify the peer if it wants it.  Idempotent."""
        if not self._released:
            self._released = True
            self.data.release()
            self._device.release_rx_buffer(self)

    def __enter__(self) -> RxBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

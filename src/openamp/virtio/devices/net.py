"""virtio-net (device id 1): Ethernet frames on a receive and a transmit queue.

Every buffer starts with ``struct virtio_net_hdr``: flags, gso_type, hdr_len,
gso_size, csum_start, csum_offset and — when ``VIRTIO_NET_F_MRG_RXBUF`` is negotiated —
``num_buffers``, 12 bytes (10 without it; open-amp's driver accepts only
``VIRTIO_NET_F_MAC`` and uses 10).  With merged receive buffers a frame larger than one
buffer spreads over several consecutive ones and the first header says how many.  The
configuration is ``struct virtio_net_config``: the MAC, the link status, the number of
queue pairs.  No checksum or segmentation offloads are offered: every header the device
writes is zero but for ``num_buffers``, and the device ignores what the driver puts in
its headers (it offered no offload the driver could ask for).

:class:`NetDevice` is the device half (kvmtool ``virtio/net.c``; the monitor connects
``transmit`` and :meth:`NetDevice.receive` to a TAP interface or a socket pair),
:class:`NetDriver` the driver half (open-amp ``virtio_net_drv.c``: preallocated
buffers in the shared pool, so nothing is bounced).  Sans-IO.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from typing import Final

from ...errors import OpenAMPTimeoutError, PayloadTooLargeError, UsageError
from ..mmio import ACK_TIMEOUT_S, MmioDriver
from ..ring import VIRTIO_CONFIG_STATUS_DRIVER
from ..virtqueue import Virtqueue

VIRTIO_ID_NET: Final = 1
NET_QUEUE_NUM_MAX: Final = 256
"""kvmtool's ``VIRTIO_NET_QUEUE_SIZE``."""
RECEIVEQ: Final = 0
TRANSMITQ: Final = 1

VIRTIO_NET_F_MAC: Final = 1 << 5
VIRTIO_NET_F_MRG_RXBUF: Final = 1 << 15
VIRTIO_NET_F_STATUS: Final = 1 << 16
VIRTIO_NET_S_LINK_UP: Final = 1

NET_HDR = struct.Struct("<BBHHHHH")
"""``struct virtio_net_hdr_mrg_rxbuf``: flags, gso_type, hdr_len, gso_size, csum_start,
csum_offset, num_buffers (12 bytes)."""
NET_HDR_SIZE: Final = NET_HDR.size
NET_HDR_SIZE_NO_MRG: Final = NET_HDR_SIZE - 2
"""``struct virtio_net_hdr`` without ``num_buffers``: the header when MRG_RXBUF is off."""
NUM_BUFFERS_OFFSET: Final = NET_HDR_SIZE_NO_MRG
NET_CONFIG = struct.Struct("<6sHH")
"""``struct virtio_net_config``: mac, status, max_virtqueue_pairs."""

ETH_MAX_FRAME: Final = 1514
"""The largest frame without the FCS at an MTU of 1500 (open-amp's ``NET_ETH_MAX_FRAME_SIZE``)."""


def header_size(features: int) -> int:
    """The per-buffer header size for the negotiated ``features``."""
    return NET_HDR_SIZE if features & VIRTIO_NET_F_MRG_RXBUF else NET_HDR_SIZE_NO_MRG


class NetDevice:
    """The network device: driver frames go to ``transmit``, :meth:`receive` frames to the driver.

    ``mac`` is what the configuration space reports; ``backlog`` bounds the frames held
    while the driver has no receive buffer (the oldest is dropped, as a NIC drops).
    """

    device_id = VIRTIO_ID_NET
    num_queues = 2
    queue_num_max = NET_QUEUE_NUM_MAX

    def __init__(
        self,
        transmit: Callable[[bytes], None],
        *,
        mac: bytes = b"\x02\x15\x15\x15\x15\x15",
        backlog: int = 256,
        mrg_rxbuf: bool = True,
    ) -> None:
        if len(mac) != 6:
            raise UsageError(f"a MAC address has 6 bytes, got {len(mac)}")
        self.transmit = transmit
        self.mac = bytes(mac)
        self.features = VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS
        if mrg_rxbuf:
            self.features |= VIRTIO_NET_F_MRG_RXBUF
        self._pending: deque[bytes] = deque(maxlen=backlog)
        self._queues: list[Virtqueue | None] = [None, None]
        self._hdr = NET_HDR_SIZE_NO_MRG
        self._merge = False
        # a frame being spread over receive buffers: (frame, bytes placed, buffers taken)
        self._partial: tuple[bytes, int, list[tuple[int, int, int]]] | None = None
        self.tx_frames = 0
        self.rx_frames = 0
        self.rx_dropped = 0
        self.tx_malformed = 0

    def device_features(self) -> int:
        """MAC and link status, and merged receive buffers unless turned off."""
        return self.features

    def config_space(self) -> bytes:
        """``virtio_net_config``: the MAC, link up, one queue pair."""
        return NET_CONFIG.pack(self.mac, VIRTIO_NET_S_LINK_UP, 1)

    def set_driver_features(self, features: int) -> None:
        """The header size follows ``VIRTIO_NET_F_MRG_RXBUF``."""
        accepted = features & self.features
        self._hdr = header_size(accepted)
        self._merge = bool(accepted & VIRTIO_NET_F_MRG_RXBUF)

    def attach_queue(self, index: int, vq: Virtqueue) -> None:
        """Queue 0 receives, queue 1 transmits."""
        self._queues[index] = vq

    def reset(self) -> None:
        """Forget the queues, the negotiated header and a frame half delivered."""
        self._queues = [None, None]
        self._partial = None
        self._hdr = NET_HDR_SIZE_NO_MRG
        self._merge = False

    @property
    def pending_frames(self) -> int:
        """Frames received from the outside and not yet delivered to the driver."""
        return len(self._pending) + (self._partial is not None)

    def receive(self, frame: bytes) -> None:
        """Hold ``frame`` (from the network) for the driver; a full backlog drops the oldest."""
        if not frame:
            return
        if len(self._pending) == self._pending.maxlen:
            self.rx_dropped += 1
        self._pending.append(bytes(frame))

    def service(self) -> None:
        """Transmit the driver's frames, and deliver held frames into posted buffers."""
        tx = self._queues[TRANSMITQ]
        if tx is not None:
            bufs = tx.take_avail()
            if bufs:
                region, hdr = tx.buf_io, self._hdr
                for offset, length, _head in bufs:
                    if length < hdr:
                        self.tx_malformed += 1
                        continue
                    self.tx_frames += 1
                    self.transmit(region.read_block(offset + hdr, length - hdr))
                tx.put_used(bufs)
                tx.kick()
        rx = self._queues[RECEIVEQ]
        if rx is not None and (self._pending or self._partial is not None):
            self._deliver(rx)

    def _deliver(self, rx: Virtqueue) -> None:
        region, hdr = rx.buf_io, self._hdr
        delivered = False
        while self._partial is not None or self._pending:
            if self._partial is None:
                frame = self._pending[0]
                if not self._merge:
                    size = rx.peek_avail_len()
                    if size == 0:
                        break
                    if size < hdr + len(frame):
                        # one buffer per frame and this one is too small: drop the frame
                        self._pending.popleft()
                        self.rx_dropped += 1
                        continue
                self._pending.popleft()
                self._partial = (frame, 0, [])
            frame, placed, taken = self._partial
            while placed < len(frame) or not taken:
                got = rx.get_avail()
                if got is None:
                    break
                head, offset, length = got
                room = length - (hdr if not taken else 0)
                if room <= 0:
                    # a buffer too small for the header: return it empty
                    rx.add_used(head, 0)
                    delivered = True
                    continue
                n = min(room, len(frame) - placed)
                at = offset
                if not taken:
                    region.write_block(offset, NET_HDR.pack(0, 0, 0, 0, 0, 0, 0)[:hdr])
                    at += hdr
                region.write_block(at, frame[placed : placed + n])
                taken.append((offset, n + (hdr if not taken else 0), head))
                placed += n
                if not self._merge:
                    break
            if placed < len(frame) and self._merge:
                self._partial = (frame, placed, taken)
                break  # more buffers later
            if self._merge:
                region.write16(taken[0][0] + NUM_BUFFERS_OFFSET, len(taken))
            rx.put_used(taken)
            self._partial = None
            self.rx_frames += 1
            delivered = True
        if delivered:
            rx.kick()


class NetDriver:
    """The network driver on an :class:`~openamp.virtio.mmio.MmioDriver` (after its ``init``).

    ``rx_buffers`` buffers of header + ``buffer_size`` bytes stay posted for reception,
    ``tx_buffers`` are preallocated for transmission (open-amp's ``rxbuf``/``txbuf``).
    Features wanted: MAC and merged receive buffers (a 12-byte header).
    """

    def __init__(
        self,
        transport: MmioDriver,
        *,
        num: int = 64,
        rx_buffers: int = 32,
        tx_buffers: int = 32,
        buffer_size: int = ETH_MAX_FRAME,
        features: int = VIRTIO_NET_F_MAC | VIRTIO_NET_F_MRG_RXBUF,
    ) -> None:
        if not 0 < rx_buffers <= num or not 0 < tx_buffers <= num:
            raise UsageError(f"buffer counts must be 1..{num}")
        self.transport = transport
        self.num = num
        self.rx_count = rx_buffers
        self.tx_count = tx_buffers
        self.buffer_size = buffer_size
        self.wanted = features
        self.features = 0
        self.hdr_size = NET_HDR_SIZE_NO_MRG
        self.mac = b"\0" * 6
        self.rx: Virtqueue | None = None
        self.tx: Virtqueue | None = None
        self._frames: deque[bytes] = deque()
        self._tx_free: list[int] = []
        self._partial: list[bytes] = []
        self._partial_left = 0
        self.rx_malformed = 0

    def start(self, timeout: float | None = ACK_TIMEOUT_S) -> None:
        """C ``virtio_net_init``: DRIVER, features, the two queues, DRIVER_OK, buffers, the MAC."""
        t = self.transport
        if t.device_id != VIRTIO_ID_NET:
            raise UsageError(f"{t.name} is device {t.device_id}, not a network device")
        t.set_status(VIRTIO_CONFIG_STATUS_DRIVER)
        self.features = t.negotiate(self.wanted)
        self.hdr_size = header_size(self.features)
        self.rx = t.setup_queue(RECEIVEQ, self.num, timeout=timeout)
        self.tx = t.setup_queue(TRANSMITQ, self.num, timeout=timeout)
        t.callbacks[RECEIVEQ] = self.poll
        t.callbacks[TRANSMITQ] = self.poll
        t.driver_ok()
        pool = t.pool
        assert pool is not None
        size = self.hdr_size + self.buffer_size
        for _ in range(self.rx_count):
            self.rx.add_buffer(pool.alloc(size), size, writable=True)
        self._tx_free = [pool.alloc(size) for _ in range(self.tx_count)]
        self.rx.kick()
        self.tx.kick()
        if self.features & VIRTIO_NET_F_MAC:
            self.mac = t.read_config(0, 6)

    def _queues(self) -> tuple[Virtqueue, Virtqueue]:
        if self.rx is None or self.tx is None:
            raise UsageError("call start() first")
        return self.rx, self.tx

    def poll(self) -> int:
        """Take received frames and finished transmit buffers off the rings; return how
        many frames are waiting in :meth:`receive`."""
        rx, tx = self._queues()
        while (used := tx.get_used()) is not None:
            self._tx_free.append(used[0])
        got = rx.take_used()
        if got:
            shm, hdr, size = self.transport.shm, self.hdr_size, self.hdr_size + self.buffer_size
            for offset, used_len, _slot in got:
                length = min(used_len, size)  # the device's length is untrusted
                if self._partial_left:
                    self._partial.append(shm.read_block(offset, length))
                    self._partial_left -= 1
                else:
                    if length < hdr:
                        self.rx_malformed += 1
                        continue
                    count = 1
                    if self.features & VIRTIO_NET_F_MRG_RXBUF:
                        count = max(1, shm.read16(offset + NUM_BUFFERS_OFFSET))
                        if count > self.rx_count:
                            self.rx_malformed += 1
                            continue
                    self._partial = [shm.read_block(offset + hdr, length - hdr)]
                    self._partial_left = count - 1
                if not self._partial_left:
                    self._frames.append(b"".join(self._partial))
                    self._partial = []
            rx.post(got, size, writable=True)
            rx.kick()
        return len(self._frames)

    def send(self, frame: bytes, timeout: float | None = 5.0) -> None:
        """Transmit one Ethernet frame (without FCS); waits only for a free buffer."""
        _rx, tx = self._queues()
        if len(frame) > self.buffer_size:
            raise PayloadTooLargeError(len(frame), self.buffer_size)
        if not frame:
            raise UsageError("an empty frame")

        def free() -> bool:
            self.poll()
            return bool(self._tx_free)

        if not self._tx_free and not free() and not self.transport.wait(free, timeout):
            raise OpenAMPTimeoutError(f"{self.transport.name}: no transmit buffer in {timeout} s")
        offset = self._tx_free.pop()
        shm, hdr = self.transport.shm, self.hdr_size
        shm.fill(offset, hdr)
        shm.write_block(offset + hdr, frame)
        tx.add_buffer(offset, hdr + len(frame), writable=False)
        tx.kick()

    def receive(self, timeout: float | None = 0.0) -> bytes | None:
        """The next received frame; waits up to ``timeout`` seconds (0: do not wait)."""
        self._queues()

        def arrived() -> bool:
            return self.poll() > 0

        if not self._frames and not arrived() and timeout != 0:
            self.transport.wait(arrived, timeout)
        return self._frames.popleft() if self._frames else None

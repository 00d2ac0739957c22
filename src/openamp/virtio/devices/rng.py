"""virtio-rng (entropy, device id 4): one queue of buffers the device fills with random bytes.

:class:`RngDevice` is the device half (kvmtool ``virtio/rng.c``): every buffer the
driver posts comes back full, from the ``entropy`` callable it was given (the monitor
passes :func:`os.urandom`).  :class:`RngDriver` is the driver half (open-amp
``virtio_rng_drv.c``): the same initialisation, and :meth:`RngDriver.get_entropy`,
which bounces the request through the shared pool as the C driver does for a buffer
outside shared memory.  Sans-IO, like the rest of :mod:`openamp.virtio`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ...errors import NoBufferError, OpenAMPTimeoutError, UsageError
from ...metal.deadline import Deadline
from ..mmio import ACK_TIMEOUT_S, MmioDriver
from ..ring import VIRTIO_CONFIG_STATUS_DRIVER
from ..virtqueue import Virtqueue

VIRTIO_ID_ENTROPY: Final = 4
RNG_QUEUE_NUM_MAX: Final = 128
"""kvmtool's ``VIRTIO_RNG_QUEUE_SIZE``."""


class RngDevice:
    """The entropy device: fills each posted buffer with ``entropy(length)`` bytes."""

    device_id = VIRTIO_ID_ENTROPY
    num_queues = 1
    queue_num_max = RNG_QUEUE_NUM_MAX

    def __init__(self, entropy: Callable[[int], bytes]) -> None:
        self.entropy = entropy
        self._vq: Virtqueue | None = None
        self.bytes_served = 0
        self.requests = 0

    def device_features(self) -> int:
        """No features."""
        return 0

    def config_space(self) -> bytes:
        """No configuration."""
        return b""

    def set_driver_features(self, features: int) -> None:
        """Nothing to accept."""

    def attach_queue(self, index: int, vq: Virtqueue) -> None:
        """The request queue."""
        self._vq = vq

    def reset(self) -> None:
        """Forget the queue."""
        self._vq = None

    def service(self) -> None:
        """Fill every posted buffer and return it."""
        vq = self._vq
        if vq is None:
            return
        bufs = vq.take_avail()
        if not bufs:
            return
        blob = self.entropy(sum(length for _, length, _ in bufs))
        region, at, done = vq.buf_io, 0, []
        for offset, length, head in bufs:
            chunk = blob[at : at + length]
            at += length
            region.write_block(offset, chunk)
            done.append((offset, len(chunk), head))
        vq.put_used(done)
        vq.kick()
        self.requests += len(bufs)
        self.bytes_served += at


class RngDriver:
    """The entropy driver on an :class:`~openamp.virtio.mmio.MmioDriver` (after its ``init``).

    ``num`` is the queue size (at most the device's ``QueueNumMax``); ``chunk`` the
    largest single request :meth:`get_entropy` posts (larger reads are split and posted
    together).
    """

    def __init__(self, transport: MmioDriver, *, num: int = 16, chunk: int = 4096) -> None:
        if chunk <= 0:
            raise UsageError(f"chunk must be positive, got {chunk}")
        self.transport = transport
        self.num = num
        self.chunk = chunk
        self.vq: Virtqueue | None = None
        self._in_flight: dict[int, int] = {}

    def start(self, timeout: float | None = ACK_TIMEOUT_S) -> None:
        """C ``virtio_rng_init``: DRIVER, no features, the queue, DRIVER_OK, a kick."""
        t = self.transport
        if t.device_id != VIRTIO_ID_ENTROPY:
            raise UsageError(f"{t.name} is device {t.device_id}, not an entropy device")
        t.set_status(VIRTIO_CONFIG_STATUS_DRIVER)
        t.negotiate(0)
        self.vq = t.setup_queue(0, self.num, timeout=timeout)
        t.driver_ok()
        self.vq.kick()

    def get_entropy(self, length: int, timeout: float | None = 5.0) -> bytes:
        """``length`` random bytes from the device (C ``virtio_rng_get_entropy``).

        Requests of up to ``chunk`` bytes are bounced through the pool, posted together
        and kicked once; the call returns when all came back.  ``timeout`` is in seconds
        for the whole call (None: forever).
        """
        vq = self.vq
        if vq is None:
            raise UsageError("call start() first")
        if length < 0:
            raise UsageError(f"length must not be negative, got {length}")
        t, deadline = self.transport, Deadline(timeout)
        pool = t.pool
        assert pool is not None
        in_flight = self._in_flight  # offset -> size; outlives a call that timed out
        parts: list[bytes] = []
        got = 0
        while got < length:
            wanted = length - got - sum(in_flight.values())
            while wanted > 0 and vq.free_count:
                size = min(wanted, self.chunk)
                try:
                    offset = pool.alloc(size)
                except NoBufferError:
                    if in_flight:
                        break
                    raise
                vq.add_buffer(offset, size, writable=True)
                in_flight[offset] = size
                wanted -= size
            vq.kick()
            if not t.wait(vq.has_pending, deadline.remaining()):
                raise OpenAMPTimeoutError(
                    f"{t.name}: {got} of {length} random bytes within {timeout} s"
                )
            while (used := vq.get_used()) is not None:
                offset, used_len, _slot = used
                size = in_flight.pop(offset)
                # the device's length is untrusted: never more than we posted
                parts.append(t.bounce_out(offset, min(used_len, size)))
                got += len(parts[-1])
        return b"".join(parts)[:length]

"""virtio-console (device id 3): a byte stream each way on two queues.

Queue 0 (*receiveq*) carries input to the driver: the driver posts empty buffers and
the device fills them with what the outside typed.  Queue 1 (*transmitq*) carries the
driver's output: the device hands every buffer's bytes to its ``output`` callable.
The configuration is ``struct virtio_console_config`` (cols, rows, max_nr_ports,
emerg_wr), 80 x 24 and one port as kvmtool sets it.

:class:`ConsoleDevice` is the device half (kvmtool ``virtio/console.c``; the monitor
connects it to a terminal or a pipe), :class:`ConsoleDriver` the driver half (open-amp
``virtio_serial_drv.c``, which polls one byte at a time; ours keeps several receive
buffers posted and writes whole chunks).  Sans-IO.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from ...errors import OpenAMPTimeoutError, UsageError
from ...metal.deadline import Deadline
from ..mmio import ACK_TIMEOUT_S, MmioDriver
from ..ring import VIRTIO_CONFIG_STATUS_DRIVER
from ..virtqueue import Virtqueue

VIRTIO_ID_CONSOLE: Final = 3
CONSOLE_QUEUE_NUM_MAX: Final = 128
"""kvmtool's ``VIRTIO_CONSOLE_QUEUE_SIZE``."""
RECEIVEQ: Final = 0
TRANSMITQ: Final = 1

CONSOLE_CONFIG = struct.Struct("<HHII")
"""``struct virtio_console_config``: cols, rows, max_nr_ports, emerg_wr (12 bytes)."""


class ConsoleDevice:
    """The console device: driver output goes to ``output``, :meth:`feed` input to the driver.

    ``backlog`` bounds the input held while the driver has no receive buffer posted;
    :meth:`feed` takes only what fits and says how much.
    """

    device_id = VIRTIO_ID_CONSOLE
    num_queues = 2
    queue_num_max = CONSOLE_QUEUE_NUM_MAX

    def __init__(
        self,
        output: Callable[[bytes], None],
        *,
        cols: int = 80,
        rows: int = 24,
        backlog: int = 65536,
    ) -> None:
        self.output = output
        self.cols = cols
        self.rows = rows
        self.backlog = backlog
        self._pending = bytearray()
        self._queues: list[Virtqueue | None] = [None, None]
        self.bytes_out = 0
        self.bytes_in = 0

    def device_features(self) -> int:
        """No features (kvmtool offers none either)."""
        return 0

    def config_space(self) -> bytes:
        """``virtio_console_config``: cols, rows, one port."""
        return CONSOLE_CONFIG.pack(self.cols, self.rows, 1, 0)

    def set_driver_features(self, features: int) -> None:
        """Nothing to accept."""

    def attach_queue(self, index: int, vq: Virtqueue) -> None:
        """Queue 0 receives, queue 1 transmits."""
        self._queues[index] = vq

    def reset(self) -> None:
        """Forget the queues; held input stays for the next session."""
        self._queues = [None, None]

    @property
    def pending_input(self) -> int:
        """Bytes fed but not yet delivered to the driver."""
        return len(self._pending)

    def feed(self, data: bytes) -> int:
        """Hold ``data`` for the driver; return how many bytes fit into the backlog."""
        room = max(0, self.backlog - len(self._pending))
        taken = data[:room]
        self._pending += taken
        return len(taken)

    def service(self) -> None:
        """Hand the driver's output on, and deliver held input into posted buffers."""
        tx = self._queues[TRANSMITQ]
        if tx is not None:
            bufs = tx.take_avail()
            if bufs:
                region = tx.buf_io
                data = b"".join(region.read_block(offset, length) for offset, length, _ in bufs)
                self.bytes_out += len(data)
                self.output(data)
                tx.put_used(bufs)
                tx.kick()
        rx = self._queues[RECEIVEQ]
        if rx is not None and self._pending:
            delivered = False
            pending = self._pending
            while pending:
                got = rx.get_avail()
                if got is None:
                    break
                head, offset, length = got
                n = min(length, len(pending))
                rx.buf_io.write_block(offset, pending[:n])
                del pending[:n]
                rx.add_used(head, n)
                self.bytes_in += n
                delivered = True
            if delivered:
                rx.kick()


class ConsoleDriver:
    """The console driver on an :class:`~openamp.virtio.mmio.MmioDriver` (after its ``init``).

    ``rx_buffers`` receive buffers of ``rx_size`` bytes stay posted; :meth:`write`
    bounces output through the pool in pieces of up to ``tx_chunk`` bytes.
    """

    def __init__(
        self,
        transport: MmioDriver,
        *,
        num: int = 32,
        rx_buffers: int = 8,
        rx_size: int = 256,
        tx_chunk: int = 1024,
    ) -> None:
        if not 0 < rx_buffers <= num:
            raise UsageError(f"rx_buffers must be 1..{num}, got {rx_buffers}")
        self.transport = transport
        self.num = num
        self.rx_buffers = rx_buffers
        self.rx_size = rx_size
        self.tx_chunk = tx_chunk
        self.rx: Virtqueue | None = None
        self.tx: Virtqueue | None = None
        self._input = bytearray()
        self._rx_offsets: list[int] = []
        self._tx_in_flight: set[int] = set()

    def start(self, timeout: float | None = ACK_TIMEOUT_S) -> None:
        """C ``virtio_serial_init``, then the receive buffers posted and kicked."""
        t = self.transport
        if t.device_id != VIRTIO_ID_CONSOLE:
            raise UsageError(f"{t.name} is device {t.device_id}, not a console")
        t.set_status(VIRTIO_CONFIG_STATUS_DRIVER)
        t.negotiate(0)
        self.rx = t.setup_queue(RECEIVEQ, self.num, timeout=timeout)
        self.tx = t.setup_queue(TRANSMITQ, self.num, timeout=timeout)
        t.callbacks[RECEIVEQ] = self.poll
        t.callbacks[TRANSMITQ] = self.poll
        t.driver_ok()
        pool = t.pool
        assert pool is not None
        for _ in range(self.rx_buffers):
            offset = pool.alloc(self.rx_size)
            self._rx_offsets.append(offset)
            self.rx.add_buffer(offset, self.rx_size, writable=True)
        self.rx.kick()
        self.tx.kick()

    def _queues(self) -> tuple[Virtqueue, Virtqueue]:
        if self.rx is None or self.tx is None:
            raise UsageError("call start() first")
        return self.rx, self.tx

    def poll(self) -> None:
        """Take received input and finished output buffers off the rings."""
        rx, tx = self._queues()
        t = self.transport
        while (used := tx.get_used()) is not None:
            offset = used[0]
            self._tx_in_flight.discard(offset)
            assert t.pool is not None
            t.pool.free(offset)
        got = rx.take_used()
        if got:
            for offset, length, _slot in got:
                self._input += t.shm.read_block(offset, min(length, self.rx_size))
            rx.post(got, self.rx_size, writable=True)
            rx.kick()

    def write(self, data: bytes, timeout: float | None = 5.0) -> None:
        """Send ``data`` (bounced through the pool, ``tx_chunk`` bytes a buffer).

        Returns once every piece is posted; waits for the device only when the ring or
        the pool is full.  ``timeout`` in seconds (None: forever).
        """
        _rx, tx = self._queues()
        t, deadline = self.transport, Deadline(timeout)
        pool = t.pool
        assert pool is not None
        view = memoryview(data)
        while view:
            self.poll()
            piece = view[: self.tx_chunk]

            def room(size: int = len(piece)) -> bool:
                self.poll()
                return tx.free_count > 0 and pool.free_bytes >= size + 64

            if not room() and not t.wait(room, deadline.remaining()):
                raise OpenAMPTimeoutError(f"{t.name}: console output stuck for {timeout} s")
            offset = t.bounce_in(piece)
            tx.add_buffer(offset, len(piece), writable=False)
            self._tx_in_flight.add(offset)
            view = view[len(piece) :]
            tx.kick()

    def flush(self, timeout: float | None = 5.0) -> None:
        """Wait until the device has taken every byte written."""
        self._queues()

        def done() -> bool:
            self.poll()
            return not self._tx_in_flight

        if not self.transport.wait(done, timeout):
            raise OpenAMPTimeoutError(
                f"{self.transport.name}: console output not taken in {timeout} s"
            )

    def read(self, timeout: float | None = 0.0) -> bytes:
        """Input received so far; with nothing there, wait up to ``timeout`` seconds for some.

        Returns ``b""`` at the timeout (0, the default, does not wait).
        """
        self._queues()

        def arrived() -> bool:
            self.poll()
            return bool(self._input)

        if not arrived() and timeout != 0:
            self.transport.wait(arrived, timeout)
        data = bytes(self._input)
        self._input.clear()
        return data

    def readline(self, timeout: float | None = None) -> bytes | None:
        """One line (with its ``\\n``), or None if no whole line came within ``timeout``."""
        self._queues()

        def whole_line() -> bool:
            self.poll()
            return b"\n" in self._input

        if not whole_line() and (timeout == 0 or not self.transport.wait(whole_line, timeout)):
            return None
        end = self._input.index(b"\n") + 1
        line = bytes(self._input[:end])
        del self._input[:end]
        return line

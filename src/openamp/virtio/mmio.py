"""virtio-mmio over shared memory (legacy, version 1): the register window, both roles.

Hypervisorless virtio (open-amp's ``virtio-exp`` HVL mode, kvmtool's ``--rsld --pmm``)
runs ordinary virtio drivers on a remote core against devices a *monitor* emulates on
the Linux core.  There is no hypervisor to trap the MMIO accesses, so the virtio-mmio
register window of each device is plain shared memory, and every access the other side
must see is followed by an inter-processor interrupt ("IPI", here: the injected
``notify`` callable).

Theory of operation
-------------------
The window is :data:`REGS`, one ``struct`` with every register at its legacy offset
(:data:`OFFSET` is derived from it).  The two roles write different registers:

* the **driver** (:class:`MmioDriver`, open-amp's ``virtio_mmio_drv.c`` in HVL mode)
  writes status, features, the queue registers, ``QueueNotify`` and
  ``InterruptACK``, and notifies after each step; it sets a queue up by writing its
  page frame number (``QueuePFN``), notifying, and waiting until the monitor writes
  :data:`HVL_CFG_ACK` there, then writes the PFN again;
* the **device** (:class:`MmioDevice`, kvmtool's ``virtio_mmio_notification_out``)
  runs a *diff pass* on every notification: it compares the window with a private
  shadow of what it saw last and acts on what changed, in the reference's order — a
  status that dropped re-initialises the device, an interrupt acknowledgement clears the
  interrupt state, new features are applied, a new status is acted on, and before
  ``DRIVER_OK`` the queue registers are followed (a changed ``QueueSel`` re-arms the
  size with the sentinel :data:`SHADOW_SENTINEL`; a changed ``QueuePFN`` sets up the
  *next* queue, in order, and is acknowledged); after ``DRIVER_OK`` every queue is
  serviced.  Interrupts to the driver set bit 0 (vring) or 1 (config) of
  ``InterruptStatus`` and notify.

Vrings are legacy: the descriptor table at ``PFN * page size``, avail right after it,
used aligned up to ``QueueAlign``; they are :class:`~openamp.virtio.virtqueue.Virtqueue`
objects on the whole shared memory, as everywhere else in pyopenamp.

Rules of this module: everything the peer wrote into the window is untrusted — a bad
magic, version, queue size, page size, alignment or ring address raises
:class:`~openamp.errors.MmioWindowError` (the device stops serving until the driver
resets it), never an ``IndexError`` or a hang; it never opens, sleeps or spawns (waiting
is a ``Waiter`` handed in); and it does not know what a device does — that is the
:class:`DeviceModel` of :mod:`openamp.virtio.devices`.

Where we differ from the reference monitor (see docs/hvl.md): a notification that
carries an interrupt acknowledgement is not cut short (the reference returns and
defers a kick that came with it to the next IPI), a reset drops the queues and the
shadow of the queue registers (the reference keeps counting queues, so a second
initialisation sets up queue 2, 3...), and there is no 1 ms sleep per notification.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from typing import Final, NamedTuple, Protocol

from ..errors import (
    MmioAckTimeoutError,
    MmioWindowError,
    NoBufferError,
    RegionBoundsError,
    RingError,
    UsageError,
)
from ..metal.io import IoRegion
from .ring import (
    VIRTIO_CONFIG_STATUS_ACK,
    VIRTIO_CONFIG_STATUS_DRIVER_OK,
    VIRTIO_CONFIG_STATUS_NEEDS_RESET,
    VringLayout,
    align_up,
    vring_size,
)
from .virtqueue import Role, Virtqueue

# -- the register window: one definition ----------------------------------------------


class MmioRegs(NamedTuple):
    """Every register of the legacy window, in order (what :meth:`MmioWindow.snapshot` gives)."""

    magic: int
    version: int
    device_id: int
    vendor_id: int
    device_features: int
    device_features_sel: int
    driver_features: int
    driver_features_sel: int
    guest_page_size: int
    queue_sel: int
    queue_num_max: int
    queue_num: int
    queue_align: int
    queue_pfn: int
    queue_notify: int
    interrupt_status: int
    interrupt_ack: int
    status: int
    shm_sel: int
    shm_len_low: int
    shm_len_high: int
    shm_base_low: int
    shm_base_high: int


_GAP_AFTER = {
    "device_features_sel": 8,
    "guest_page_size": 4,
    "queue_pfn": 12,
    "queue_notify": 12,
    "interrupt_ack": 8,
    "status": 56,
}
"""Reserved bytes after a register (version-2 registers the legacy window leaves unused)."""

REGS = struct.Struct(
    "<" + "".join("I" + (f"{_GAP_AFTER[n]}x" if n in _GAP_AFTER else "") for n in MmioRegs._fields)
)
"""The legacy register block, ``0xc0`` bytes (kvmtool ``struct virtio_mmio_hdr`` with RSLD)."""


def _offsets() -> dict[str, int]:
    out, at = {}, 0
    for name in MmioRegs._fields:
        out[name] = at
        at += 4 + _GAP_AFTER.get(name, 0)
    assert at == REGS.size
    return out


OFFSET: Final = _offsets()
"""Register name -> byte offset in the window, derived from :data:`REGS`."""

MAGIC_VALUE: Final = OFFSET["magic"]
VERSION: Final = OFFSET["version"]
DEVICE_ID: Final = OFFSET["device_id"]
VENDOR_ID: Final = OFFSET["vendor_id"]
DEVICE_FEATURES: Final = OFFSET["device_features"]
DEVICE_FEATURES_SEL: Final = OFFSET["device_features_sel"]
DRIVER_FEATURES: Final = OFFSET["driver_features"]
DRIVER_FEATURES_SEL: Final = OFFSET["driver_features_sel"]
GUEST_PAGE_SIZE: Final = OFFSET["guest_page_size"]
QUEUE_SEL: Final = OFFSET["queue_sel"]
QUEUE_NUM_MAX: Final = OFFSET["queue_num_max"]
QUEUE_NUM: Final = OFFSET["queue_num"]
QUEUE_ALIGN: Final = OFFSET["queue_align"]
QUEUE_PFN: Final = OFFSET["queue_pfn"]
QUEUE_NOTIFY: Final = OFFSET["queue_notify"]
INTERRUPT_STATUS: Final = OFFSET["interrupt_status"]
INTERRUPT_ACK: Final = OFFSET["interrupt_ack"]
STATUS: Final = OFFSET["status"]
SHM_SEL: Final = OFFSET["shm_sel"]
SHM_LEN_LOW: Final = OFFSET["shm_len_low"]
SHM_LEN_HIGH: Final = OFFSET["shm_len_high"]
SHM_BASE_LOW: Final = OFFSET["shm_base_low"]
SHM_BASE_HIGH: Final = OFFSET["shm_base_high"]
CONFIG: Final = 0x100
"""Offset of the device-specific configuration space."""

WINDOW_SIZE: Final = 0x200
"""Bytes per device window; device *i* of a monitor is at ``i * WINDOW_SIZE``."""
CONFIG_SIZE: Final = WINDOW_SIZE - CONFIG

MMIO_MAGIC: Final = 0x74726976
"""``'virt'`` read as a little-endian u32."""
MMIO_VERSION_LEGACY: Final = 1
VENDOR_LKVM: Final = 0x4D564B4C
"""kvmtool's vendor id, ``'LKVM'``."""
HVL_CFG_ACK: Final = 0xAABBAABB
"""What the monitor writes into ``QueuePFN`` once it has set a queue up."""
WINDOW_SENTINEL: Final = 0x00FF00FF
"""Initial ``QueueSel`` and ``QueueNum`` in the window (no queue selected yet)."""
SHADOW_SENTINEL: Final = 0xFF00FF00
"""The monitor's private "not seen yet" value of the queue registers (``~WINDOW_SENTINEL``)."""
PAGE_SIZE: Final = 4096
"""The guest page size and ring alignment the HVL driver writes."""

INT_VRING: Final = 1
"""``InterruptStatus`` bit: a used ring moved."""
INT_CONFIG: Final = 2
"""``InterruptStatus`` bit: the configuration space changed."""

ACK_TIMEOUT_S: Final = 4.0
"""How long the C driver waits for the queue acknowledgement (``4000000`` µs)."""


# -- the window ---------------------------------------------------------------------------


class MmioWindow:
    """One device's register window: typed access to a :data:`WINDOW_SIZE`-byte region.

    Each register is read and written with one 32-bit access (the peer reads and writes
    them concurrently); :meth:`snapshot` reads them all with one copy.
    """

    __slots__ = ("io", "phys")

    def __init__(self, io: IoRegion) -> None:
        if io.size < WINDOW_SIZE:
            raise UsageError(f"a virtio-mmio window needs {WINDOW_SIZE:#x} bytes, got {io.size:#x}")
        self.io = io
        self.phys = io.phys_base
        """Physical address of the window (what ``virtio-mmio.devices=`` names)."""

    def read(self, reg: int) -> int:
        """The u32 register at offset ``reg``."""
        return self.io.read32(reg)

    def write(self, reg: int, value: int) -> None:
        """Store ``value`` into the u32 register at offset ``reg``."""
        self.io.write32(reg, value)

    def snapshot(self) -> MmioRegs:
        """Every register at once."""
        return MmioRegs._make(REGS.unpack_from(self.io.mem, 0))

    def read_config(self, offset: int = 0, length: int = CONFIG_SIZE) -> bytes:
        """``length`` bytes of the configuration space from ``offset``."""
        if offset < 0 or length < 0 or offset + length > CONFIG_SIZE:
            raise UsageError(f"config [{offset:#x}, +{length:#x}) outside {CONFIG_SIZE:#x} bytes")
        return self.io.read_block(CONFIG + offset, length)

    def write_config(self, data: bytes, offset: int = 0) -> None:
        """Write ``data`` into the configuration space at ``offset``."""
        if offset < 0 or offset + len(data) > CONFIG_SIZE:
            raise UsageError(f"config of {len(data)} bytes at {offset:#x} does not fit")
        self.io.write_block(CONFIG + offset, data)

    def shm(self) -> tuple[int, int]:
        """The shared-memory region the window advertises: ``(physical base, length)``."""
        r = self.snapshot()
        return (r.shm_base_high << 32) | r.shm_base_low, (r.shm_len_high << 32) | r.shm_len_low

    def __repr__(self) -> str:
        return f"MmioWindow(phys={self.phys:#x})"


# -- a buffer pool in shared memory -----------------------------------------------------


class ShmAllocator:
    """First-fit allocator over ``[base, base+size)`` of ``region`` (offsets in ``region``).

    The driver's pool: rings, bounce buffers and preallocated device buffers come from
    it (open-amp's ``hvl_shm_pool_alloc``/``hvl_shm_pool_free``).  Alignment is on the
    *physical* address, which is what a PFN or a DMA engine sees.  Freed blocks merge
    with their neighbours.
    """

    def __init__(self, region: IoRegion, base: int, size: int) -> None:
        region.check(base, size)
        if size <= 0:
            raise UsageError(f"an empty pool at {base:#x}")
        self.region = region
        self.base = base
        self.size = size
        self._free: list[tuple[int, int]] = [(base, size)]
        self._used: dict[int, int] = {}

    @property
    def free_bytes(self) -> int:
        """Bytes not handed out (possibly fragmented)."""
        return sum(n for _, n in self._free)

    def alloc(self, size: int, align: int = 16) -> int:
        """Offset in ``region`` of a new ``size``-byte block; :class:`NoBufferError` if none."""
        if size <= 0 or align <= 0 or align & (align - 1):
            raise UsageError(f"bad allocation of {size} bytes aligned to {align}")
        phys = self.region.phys_base
        for i, (start, length) in enumerate(self._free):
            at = align_up(phys + start, align) - phys
            end = at + size
            if end > start + length:
                continue
            pieces = []
            if at > start:
                pieces.append((start, at - start))
            if end < start + length:
                pieces.append((end, start + length - end))
            self._free[i : i + 1] = pieces
            self._used[at] = size
            return at
        raise NoBufferError(
            f"shared-memory pool [{self.base:#x}, +{self.size:#x}) has no {size} free bytes "
            f"aligned to {align} ({self.free_bytes} bytes free)"
        )

    def free(self, offset: int) -> None:
        """Give the block at ``offset`` back."""
        size = self._used.pop(offset, None)
        if size is None:
            raise UsageError(f"{offset:#x} is not an allocated block of this pool")
        free = self._free
        i = 0
        while i < len(free) and free[i][0] < offset:
            i += 1
        free.insert(i, (offset, size))
        # merge with the next and the previous block
        if i + 1 < len(free) and offset + size == free[i + 1][0]:
            free[i] = (offset, size + free[i + 1][1])
            del free[i + 1]
        if i > 0 and free[i - 1][0] + free[i - 1][1] == offset:
            free[i - 1] = (free[i - 1][0], free[i - 1][1] + free[i][1])
            del free[i]


# -- the driver's side -------------------------------------------------------------------


class Waiter(Protocol):
    """How a driver blocks (``openamp.metal.wait.DoorbellWaiter`` or an in-process pump)."""

    def wait(
        self,
        ready: Callable[[], bool],
        timeout: float | None,
        arm: Callable[[], bool] | None = None,
    ) -> bool:
        """True once ``ready()`` holds, False after ``timeout`` seconds (None = forever)."""
        ...


class MmioDriver:
    """The driver (remote) side of one device window, as open-amp's HVL mode does it.

    ``window`` is the device's register window, ``shm`` the whole shared memory (with
    its physical base: descriptor addresses and PFNs are physical), ``notify`` the IPI
    to the monitor, ``waiter`` how to block (None: never block; a wait that is not
    satisfied at once times out).  ``pool`` is the part of ``shm`` to allocate rings and
    buffers from, as ``(offset, size)``; None takes the region the window advertises
    (``SHMBase``/``SHMLen``).

    Call :meth:`init` first (probe and ``ACKNOWLEDGE``), then a device driver from
    :mod:`openamp.virtio.devices` does the rest.
    """

    def __init__(
        self,
        window: IoRegion,
        shm: IoRegion,
        *,
        notify: Callable[[], None],
        waiter: Waiter | None = None,
        pool: tuple[int, int] | None = None,
        name: str = "",
    ) -> None:
        if sys.byteorder != "little":
            raise UsageError("virtio-mmio over shared memory needs a little-endian host")
        self.window = MmioWindow(window)
        self.shm = shm
        self.notify = notify
        self.waiter = waiter
        self.name = name or f"virtio@{window.phys_base:#x}"
        self._pool_arg = pool
        self.pool: ShmAllocator | None = None
        self.device_id = 0
        self.vendor_id = 0
        self.version = 0
        self.features = 0
        """The features the driver accepted (what it wrote into ``DriverFeatures``)."""
        self.queues: list[Virtqueue] = []
        self.callbacks: list[Callable[[], object] | None] = []
        """Per queue: what :meth:`handle_interrupt` runs on a vring interrupt (C callback)."""
        self.on_wake: Callable[[], object] = self.handle_interrupt
        """Run before every check of a wait (a remote runtime points it at every device's
        interrupt handler: one IPI line serves all of them)."""
        self.interrupts = 0
        self.acks = 0

    # -- probing and the control plane ----------------------------------------------------

    def probe(self) -> None:
        """Read the identification registers; :class:`MmioWindowError` if no HVL device is there."""
        w = self.window
        magic = w.read(MAGIC_VALUE)
        if magic != MMIO_MAGIC:
            raise MmioWindowError(f"{self.name}: bad magic value {magic:#010x} (want 'virt')")
        self.version = w.read(VERSION)
        if self.version != MMIO_VERSION_LEGACY:
            raise MmioWindowError(
                f"{self.name}: virtio-mmio version {self.version}; the hypervisorless "
                "transport is the legacy version 1"
            )
        self.device_id = w.read(DEVICE_ID)
        if self.device_id == 0:
            raise MmioWindowError(f"{self.name}: device id 0 (a placeholder, no device)")
        self.vendor_id = w.read(VENDOR_ID)
        base, length = w.shm()
        if self._pool_arg is not None:
            offset, size = self._pool_arg
        else:
            if base == 0 or length == 0:
                raise MmioWindowError(
                    f"{self.name}: SHMBase/SHMLen are 0, so this is not a hypervisorless device"
                )
            try:
                offset, size = self.shm.phys_to_offset(base, length), length
            except RegionBoundsError as exc:
                raise MmioWindowError(
                    f"{self.name}: advertised shared memory [{base:#x}, +{length:#x}) is "
                    f"outside the mapped memory: {exc}"
                ) from None
        self.pool = ShmAllocator(self.shm, offset, size)

    def init(self) -> None:
        """Probe, then ``ACKNOWLEDGE`` and the guest page size (C ``virtio_mmio_device_init``)."""
        self.probe()
        self.set_status(VIRTIO_CONFIG_STATUS_ACK)
        self.window.write(GUEST_PAGE_SIZE, PAGE_SIZE)

    def get_status(self) -> int:
        """The status register's low byte."""
        return self.window.read(STATUS) & 0xFF

    def set_status(self, bits: int) -> None:
        """OR ``bits`` into the status and notify (0 resets: writes 0)."""
        status = bits if bits == 0 else bits | self.get_status()
        self.window.write(STATUS, status)
        self.notify()

    def reset(self, timeout: float | None = ACK_TIMEOUT_S) -> None:
        """Write status 0, notify, and wait until the monitor has seen it.

        The monitor answers a reset by writing the sentinel into ``QueueSel`` (the
        reference does too); until then the old queue registers are in the window, and a
        driver that set queues up again at once could have a new PFN taken for a stale
        one.  The queues are dropped and their rings go back to the pool; buffers a
        device driver allocated are its own to free.  :class:`MmioAckTimeoutError` if
        the monitor does not answer within ``timeout`` seconds.
        """
        self.set_status(0)
        w = self.window
        if not self.wait(lambda: w.read(QUEUE_SEL) == WINDOW_SENTINEL, timeout):
            raise MmioAckTimeoutError(
                f"{self.name}: the monitor did not see the reset in {timeout} s"
            )
        pool = self._require_pool()
        for vq in self.queues:
            vq.release()
            pool.free(vq.layout.base)
        self.queues.clear()
        self.callbacks.clear()

    def device_features(self) -> int:
        """Feature word 0 the device offers."""
        self.window.write(DEVICE_FEATURES_SEL, 0)
        return self.window.read(DEVICE_FEATURES)

    def negotiate(self, wanted: int) -> int:
        """Accept ``wanted & offered``, write it and notify; return what was accepted."""
        features = wanted & self.device_features()
        self.window.write(DRIVER_FEATURES, features)
        self.features = features
        self.notify()
        return features

    def read_config(self, offset: int, length: int) -> bytes:
        """Bytes of the device's configuration space."""
        return self.window.read_config(offset, length)

    # -- queues -----------------------------------------------------------------------------

    def setup_queue(
        self, index: int, num: int, *, timeout: float | None = ACK_TIMEOUT_S
    ) -> Virtqueue:
        """Allocate vring ``index`` of ``num`` entries in the pool and hand it to the monitor.

        The HVL handshake: select, check ``QueueNumMax``, write the size, the alignment
        and the PFN, notify, wait until the monitor writes :data:`HVL_CFG_ACK` into
        ``QueuePFN`` (``timeout`` seconds; :class:`MmioAckTimeoutError` otherwise), then
        write the PFN again.  Queues must be set up in order, 0 first: the monitor takes
        them in the order their PFNs arrive.
        """
        if index != len(self.queues):
            raise UsageError(f"{self.name}: set queues up in order; next is {len(self.queues)}")
        pool = self._require_pool()
        w = self.window
        w.write(QUEUE_SEL, index)
        num_max = w.read(QUEUE_NUM_MAX)
        if num_max == 0:
            raise MmioWindowError(f"{self.name}: QueueNumMax of queue {index} is 0")
        if num > num_max:
            raise UsageError(f"{self.name}: queue {index} holds at most {num_max}, asked {num}")
        offset = pool.alloc(vring_size(num, PAGE_SIZE), PAGE_SIZE)
        pa = self.shm.offset_to_phys(offset)
        vq = Virtqueue(
            self.shm,
            VringLayout(num=num, align=PAGE_SIZE, base=offset, pa=pa),
            role=Role.DRIVER,
            buf_io=self.shm,
            notify=lambda: self.notify_queue(index),
            index=index,
            name=f"{self.name} vq{index}",
        )
        vq.init_driver_ring()
        w.write(QUEUE_SEL, index)
        w.write(QUEUE_NUM, num)
        w.write(QUEUE_ALIGN, PAGE_SIZE)
        pfn = pa // PAGE_SIZE
        w.write(QUEUE_PFN, pfn)
        self.notify()
        if not self.wait(lambda: w.read(QUEUE_PFN) == HVL_CFG_ACK, timeout):
            vq.release()
            pool.free(offset)
            raise MmioAckTimeoutError(
                f"{self.name}: the monitor did not acknowledge queue {index} "
                f"(PFN {pfn:#x}) within {timeout} s"
            )
        w.write(QUEUE_PFN, pfn)
        self.queues.append(vq)
        self.callbacks.append(None)
        return vq

    def driver_ok(self) -> None:
        """Set ``DRIVER_OK`` (and notify)."""
        self.set_status(VIRTIO_CONFIG_STATUS_DRIVER_OK)

    def notify_queue(self, index: int) -> None:
        """Kick: write ``QueueNotify`` and notify (C ``virtio_mmio_drv_notify``)."""
        self.window.write(QUEUE_NOTIFY, index)
        self.notify()

    def handle_interrupt(self) -> int:
        """The ISR: read ``InterruptStatus``, run the queue callbacks on a vring interrupt,
        acknowledge and notify; return the status read (0: nothing was pending)."""
        w = self.window
        if w.read(INTERRUPT_ACK):
            # Our last acknowledgement is still pending: the monitor clears it with the
            # status.  (A waiter checks more often than IPIs arrive; the C ISR runs once
            # per IPI.)  Anything raised meanwhile is raised again after the clear.
            return 0
        isr = w.read(INTERRUPT_STATUS)
        if not isr:
            return 0
        self.interrupts += 1
        if isr & INT_VRING:
            for callback in self.callbacks:
                if callback is not None:
                    callback()
        w.write(INTERRUPT_ACK, isr)
        self.acks += 1
        self.notify()
        return isr

    def wait(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Block until ``ready()`` (True) or ``timeout`` seconds pass (False).

        :attr:`on_wake` runs before each check, so interrupts are acknowledged while we
        wait, as the C ISR would.
        """
        on_wake = self.on_wake

        def check() -> bool:
            on_wake()
            return ready()

        if self.waiter is None:
            return check()
        return self.waiter.wait(check, timeout)

    # -- bounce buffers ---------------------------------------------------------------------

    def bounce_in(self, data: bytes | bytearray | memoryview) -> int:
        """Copy ``data`` into a new pool block (C ``virtio_mmio_hvl_add_bounce_buf``)."""
        offset = self._require_pool().alloc(max(1, len(data)))
        self.shm.write_block(offset, data)
        return offset

    def bounce_out(self, offset: int, length: int) -> bytes:
        """Copy ``length`` bytes out of the block at ``offset`` and free it."""
        data = self.shm.read_block(offset, length)
        self._require_pool().free(offset)
        return data

    def _require_pool(self) -> ShmAllocator:
        if self.pool is None:
            raise UsageError(f"{self.name}: call init() (or probe()) first")
        return self.pool

    def __repr__(self) -> str:
        return f"MmioDriver({self.name!r}, device_id={self.device_id})"


# -- the device's side -------------------------------------------------------------------


class DeviceModel(Protocol):
    """What a device type does, whatever carries it (the device half of a
    :mod:`openamp.virtio.devices` module).

    The transport calls :meth:`attach_queue` as the driver sets each queue up,
    :meth:`service` on every notification after ``DRIVER_OK`` (and when the platform
    has new input for the device), :meth:`reset` when the driver resets it.  To
    interrupt the driver, a model returns buffers and calls the queue's ``kick()``: the
    transport turns that into an interrupt.
    """

    device_id: int
    num_queues: int
    queue_num_max: int

    def device_features(self) -> int:
        """Feature word 0 the device offers."""
        ...

    def config_space(self) -> bytes:
        """The device-specific configuration (at most 0x100 bytes)."""
        ...

    def set_driver_features(self, features: int) -> None:
        """The driver accepted ``features``."""
        ...

    def attach_queue(self, index: int, vq: Virtqueue) -> None:
        """Queue ``index`` is set up (device role)."""
        ...

    def service(self) -> None:
        """Process every queue (buffers the driver posted, input the device holds)."""
        ...

    def reset(self) -> None:
        """Forget the queues and any state tied to the driver's session."""
        ...


class MmioDevice:
    """The device (monitor) side of one window: the reference PMM's diff state machine.

    ``window`` is the device's register window, ``shm`` the whole shared memory (rings
    and buffers must lie in it), ``model`` the device type, ``pool`` the ``(physical
    base, length)`` the window advertises as the device's shared memory (non-zero: that
    is what tells the driver it runs hypervisorless), ``notify`` the IPI to the driver.

    :meth:`init_window` writes the initial registers; :meth:`notification` is the diff
    pass to run on every IPI from the driver; :meth:`poll` services the queues when the
    platform gave the model new input.  A window error or a broken ring stops the
    device (:attr:`broken`, ``DEVICE_NEEDS_RESET`` in the status, a config interrupt)
    until the driver resets it.
    """

    def __init__(
        self,
        window: IoRegion,
        shm: IoRegion,
        model: DeviceModel,
        *,
        pool: tuple[int, int],
        notify: Callable[[], None],
        name: str = "",
    ) -> None:
        if sys.byteorder != "little":
            raise UsageError("virtio-mmio over shared memory needs a little-endian host")
        self.window = MmioWindow(window)
        self.shm = shm
        self.model = model
        self.pool = pool
        self.notify = notify
        self.name = name or f"virtio@{window.phys_base:#x}"
        self.queues: list[Virtqueue] = []
        self.broken: MmioWindowError | RingError | None = None
        # the shadow: what the monitor saw last (kvmtool's ``vmmio->hdr``)
        self._status = 0
        self._driver_features = 0
        self._queue_sel = SHADOW_SENTINEL
        self._queue_num = SHADOW_SENTINEL
        self._queue_pfn = SHADOW_SENTINEL
        self._interrupt_state = 0
        self._vring_wanted = False
        self._raised_since_ack = 0
        self.passes = 0
        """Diff passes run (one per notification)."""
        self.interrupts = 0
        """Interrupts raised towards the driver."""
        self.resets = 0

    @property
    def status(self) -> int:
        """The driver status the device acts on (the shadow)."""
        return self._status

    @property
    def ready(self) -> bool:
        """Whether the driver set ``DRIVER_OK`` and the device is not broken."""
        return bool(self._status & VIRTIO_CONFIG_STATUS_DRIVER_OK) and self.broken is None

    def init_window(self) -> None:
        """Write the window as the reference monitor leaves it at start-up."""
        m = self.model
        base, length = self.pool
        self.window.io.fill(0, WINDOW_SIZE)
        regs = MmioRegs(
            magic=MMIO_MAGIC,
            version=MMIO_VERSION_LEGACY,
            device_id=m.device_id,
            vendor_id=VENDOR_LKVM,
            device_features=m.device_features() & 0xFFFFFFFF,
            device_features_sel=0,
            driver_features=0,
            driver_features_sel=0,
            guest_page_size=PAGE_SIZE,
            queue_sel=WINDOW_SENTINEL,
            queue_num_max=m.queue_num_max,
            queue_num=WINDOW_SENTINEL,
            queue_align=PAGE_SIZE,
            queue_pfn=0,
            queue_notify=0,
            interrupt_status=0,
            interrupt_ack=0,
            status=0,
            shm_sel=0,
            shm_len_low=length & 0xFFFFFFFF,
            shm_len_high=length >> 32,
            shm_base_low=base & 0xFFFFFFFF,
            shm_base_high=base >> 32,
        )
        REGS.pack_into(self.window.io.mem, 0, *regs)
        config = m.config_space()
        if config:
            self.window.write_config(config)
        self._reset_shadow()

    def _reset_shadow(self) -> None:
        self._status = 0
        self._driver_features = 0
        self._queue_sel = SHADOW_SENTINEL
        self._queue_num = SHADOW_SENTINEL
        self._queue_pfn = SHADOW_SENTINEL
        self._interrupt_state = 0
        self._raised_since_ack = 0

    # -- the diff pass ----------------------------------------------------------------------

    def notification(self) -> None:
        """One diff pass: act on whatever the driver changed in the window since the last.

        Never raises for anything the driver wrote: a bad value marks the device broken.
        """
        self.passes += 1
        w = self.window
        r = w.snapshot()
        status = r.status & 0xFF
        # 1. the status dropped (a reset, or a re-initialisation): start over
        reinit = status < self._status
        if reinit:
            self._reinit(status)
        # 2. an interrupt acknowledgement (after DRIVER_OK): clear the interrupt state
        if self._status & VIRTIO_CONFIG_STATUS_DRIVER_OK and r.interrupt_ack:
            self._interrupt_state = 0
            w.write(INTERRUPT_STATUS, 0)
            w.write(INTERRUPT_ACK, 0)
            raised, self._raised_since_ack = self._raised_since_ack, 0
            if raised > 1:
                # We raised again after the interrupt being acknowledged: the driver
                # may have read the status before that, so tell it again.
                self._raise(INT_VRING)
        # 3. new features
        if r.driver_features != self._driver_features:
            self._driver_features = r.driver_features
            self.model.set_driver_features(r.driver_features)
        # 4. a new status
        if status != self._status:
            w.write(DEVICE_FEATURES, self.model.device_features() & 0xFFFFFFFF)
            self._status = status
        # 5. before DRIVER_OK: follow the queue registers (not the stale ones of a reset)
        if not self._status & VIRTIO_CONFIG_STATUS_DRIVER_OK and self.broken is None and not reinit:
            self._follow_queue_registers(r)
        # the driver never writes InterruptStatus; if the window disagrees with us, the
        # reference keeps the bits set on both sides only
        shown = w.read(INTERRUPT_STATUS)
        if shown != self._interrupt_state:
            self._interrupt_state &= ~shown & 0xFFFFFFFF
            w.write(INTERRUPT_STATUS, self._interrupt_state)
        # 6. after DRIVER_OK: service every queue
        if self._status & VIRTIO_CONFIG_STATUS_DRIVER_OK:
            self.poll()

    def _follow_queue_registers(self, r: MmioRegs) -> None:
        if r.queue_sel == WINDOW_SENTINEL:
            return  # nothing selected since the (re)start: the other registers are stale
        if r.queue_sel != self._queue_sel:
            self._queue_sel = r.queue_sel
            self._queue_num = SHADOW_SENTINEL
        if r.queue_num not in (self._queue_num, HVL_CFG_ACK) and r.queue_num:
            self._queue_num = r.queue_num
        if r.queue_pfn in (self._queue_pfn, HVL_CFG_ACK):
            return
        self._queue_pfn = r.queue_pfn
        if not r.queue_pfn:
            return  # the reference tears the queue down; the driver never does this
        try:
            self._setup_queue(r)
        except MmioWindowError as exc:
            self._fail(exc)
            return
        self.window.write(QUEUE_PFN, HVL_CFG_ACK)
        self.notify()

    def _setup_queue(self, r: MmioRegs) -> None:
        index = len(self.queues)
        m = self.model
        where = f"{self.name}: queue {index}"
        if index >= m.num_queues:
            raise MmioWindowError(f"{where}: the device has only {m.num_queues} queues")
        num = self._queue_num
        if num == SHADOW_SENTINEL:
            raise MmioWindowError(f"{where}: PFN written before QueueNum")
        if num > m.queue_num_max or num & (num - 1):
            raise MmioWindowError(
                f"{where}: size {num} is not a power of two up to {m.queue_num_max}"
            )
        page, align = r.guest_page_size, r.queue_align
        for what, value in (("guest page size", page), ("queue align", align)):
            if value == 0 or value & (value - 1) or value > 1 << 20:
                raise MmioWindowError(f"{where}: {what} {value:#x} is not a power of two")
        pa = r.queue_pfn * page
        try:
            offset = self.shm.phys_to_offset(pa, vring_size(num, align))
            layout = VringLayout(num=num, align=align, base=offset, pa=pa)
            vq = Virtqueue(
                self.shm,
                layout,
                role=Role.DEVICE,
                buf_io=self.shm,
                notify=self._want_vring_interrupt,
                index=index,
                name=f"{self.name} vq{index}",
            )
        except (RegionBoundsError, UsageError) as exc:
            raise MmioWindowError(
                f"{where}: ring at PFN {r.queue_pfn:#x} ({num} entries) is unusable: {exc}"
            ) from None
        vq.attach_device(0)
        self.queues.append(vq)
        m.attach_queue(index, vq)

    def _reinit(self, status: int) -> None:
        self.model.reset()
        for vq in self.queues:
            vq.release()
        self.queues.clear()
        self.broken = None
        self.resets += 1
        self._reset_shadow()
        self._status = status
        # As the reference: the stale PFN is replaced by the acknowledgement and the
        # selector by the sentinel (which is what tells a driver the reset was seen).
        self.window.write(QUEUE_PFN, HVL_CFG_ACK)
        self.window.write(QUEUE_SEL, WINDOW_SENTINEL)
        self.notify()

    # -- serving ----------------------------------------------------------------------------

    def poll(self) -> None:
        """Service every queue (after ``DRIVER_OK``) and interrupt the driver if it wants."""
        if not self.ready:
            return
        self._vring_wanted = False
        try:
            self.model.service()
        except (RingError, MmioWindowError) as exc:
            self._fail(exc)
            return
        except RegionBoundsError as exc:  # a model's access at a peer-given place
            self._fail(MmioWindowError(f"{self.name}: {exc}"))
            return
        if self._vring_wanted:
            self._raise(INT_VRING)

    def _want_vring_interrupt(self) -> None:
        self._vring_wanted = True

    def signal_config(self) -> None:
        """Tell the driver the configuration space changed."""
        config = self.model.config_space()
        if config:
            self.window.write_config(config)
        self._raise(INT_CONFIG)

    def _raise(self, bit: int) -> None:
        self._interrupt_state |= bit
        self.window.write(INTERRUPT_STATUS, self._interrupt_state)
        self._raised_since_ack += 1
        self.interrupts += 1
        self.notify()

    def _fail(self, exc: MmioWindowError | RingError) -> None:
        self.broken = exc
        self._status |= VIRTIO_CONFIG_STATUS_NEEDS_RESET
        self.window.write(STATUS, self._status)
        self._raise(INT_CONFIG)

    def __repr__(self) -> str:
        return f"MmioDevice({self.name!r}, status={self._status:#x}, queues={len(self.queues)})"

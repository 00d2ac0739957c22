"""The remote core's side: open-amp's HVL driver runtime, over real shared memory.

Theory of operation
-------------------
:class:`HvlRemote` is what a remote firmware links in.  It finds the devices the
monitor put into shared memory (a window every ``0x200`` bytes, as long as the magic is
``'virt'``), runs each device's ``virtio_mmio_device_init`` (probe, ``ACKNOWLEDGE``,
page size), and starts the driver of every device type it knows — entropy, console,
network — as open-amp's ``virtio_*_drv.c`` do.  Rings and buffers come from each
device's pool, the ``SHMBase``/``SHMLen`` its window advertises (minus the windows, if
a monitor laid its pools on top of them as the reference does).

There is one IPI line for all devices (``doorbell``): every write the monitor must see
is followed by a kick, and every wake-up runs the interrupt handler of every device
(C ``virtio_mmio_hvl_cb_run``), which acknowledges with a kick of its own.  Blocking
calls wait with a :class:`~openamp.metal.wait.DoorbellWaiter` (spin, then block).

What it must not do: touch a device's window or rings except through
:class:`~openamp.virtio.mmio.MmioDriver` and the device drivers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import MmioWindowError, OpenAMPTimeoutError, RegionBoundsError
from ..metal.deadline import Deadline
from ..metal.doorbell import Doorbell
from ..metal.io import IoRegion
from ..metal.wait import DoorbellWaiter, SpinThenBlockWait, WaitStrategy
from ..virtio.devices.console import VIRTIO_ID_CONSOLE, ConsoleDriver
from ..virtio.devices.net import VIRTIO_ID_NET, NetDriver
from ..virtio.devices.rng import VIRTIO_ID_ENTROPY, RngDriver
from ..virtio.mmio import (
    ACK_TIMEOUT_S,
    MAGIC_VALUE,
    MMIO_MAGIC,
    PAGE_SIZE,
    WINDOW_SIZE,
    MmioDriver,
    MmioWindow,
)
from ..virtio.ring import align_up

DEVICE_NAMES = {VIRTIO_ID_ENTROPY: "rng", VIRTIO_ID_NET: "net", VIRTIO_ID_CONSOLE: "console"}


class HvlRemote:
    """The driver side of a hypervisorless system on ``shm`` (with its physical base).

    ``doorbell`` is the IPI line to the monitor, ``wait`` the strategy blocking calls
    use (default: spin 50 µs, then block), ``windows_at`` the offset of the first
    window, ``max_devices`` how many windows to look at.
    """

    def __init__(
        self,
        shm: IoRegion,
        doorbell: Doorbell,
        *,
        wait: WaitStrategy | None = None,
        windows_at: int = 0,
        max_devices: int = 16,
    ) -> None:
        self.shm = shm
        self.doorbell = doorbell
        self.waiter = DoorbellWaiter(doorbell, wait or SpinThenBlockWait())
        self.windows_at = windows_at
        self.max_devices = max_devices
        self.drivers: list[MmioDriver] = []
        self.rng: RngDriver | None = None
        self.console: ConsoleDriver | None = None
        self.net: NetDriver | None = None

    def _window(self, index: int) -> IoRegion:
        return self.shm.subregion(self.windows_at + index * WINDOW_SIZE, WINDOW_SIZE)

    def probe(self, timeout: float | None = 5.0) -> list[MmioDriver]:
        """Find the device windows (waiting up to ``timeout`` s for the monitor to write
        window 0) and run ``virtio_mmio_device_init`` on each."""
        first = self._window(0)
        deadline = Deadline(timeout)
        while first.read32(MAGIC_VALUE) != MMIO_MAGIC:
            if deadline.expired():
                raise OpenAMPTimeoutError(
                    f"no virtio-mmio window at {first.phys_base:#x} within {timeout} s; "
                    "is the monitor running?"
                )
            time.sleep(0.001)
        count = 0
        while (
            count < self.max_devices
            and (self.windows_at + (count + 1) * WINDOW_SIZE) <= self.shm.size
        ):
            if self._window(count).read32(MAGIC_VALUE) != MMIO_MAGIC:
                break
            count += 1
        windows_end = self.windows_at + count * WINDOW_SIZE
        drivers = []
        for index in range(count):
            io = self._window(index)
            pool = self._pool(MmioWindow(io), windows_end)
            driver = MmioDriver(
                io,
                self.shm,
                notify=self.doorbell.kick,
                waiter=self.waiter,
                pool=pool,
                name=f"virtio{index}@{io.phys_base:#x}",
            )
            driver.on_wake = self.handle_interrupts
            driver.init()
            drivers.append(driver)
        self.drivers = drivers
        return drivers

    def _pool(self, window: MmioWindow, windows_end: int) -> tuple[int, int]:
        base, length = window.shm()
        if base == 0 or length == 0:
            raise MmioWindowError(f"window at {window.phys:#x} advertises no shared memory")
        try:
            offset = self.shm.phys_to_offset(base, length)
        except RegionBoundsError as exc:
            raise MmioWindowError(f"window at {window.phys:#x}: {exc}") from None
        if offset < windows_end and offset + length > self.windows_at:
            # the reference lays its pools over the windows: keep clear of them
            start = align_up(windows_end, PAGE_SIZE)
            length -= start - offset
            offset = start
            if length <= 0:
                raise MmioWindowError(f"window at {window.phys:#x}: its pool lies in the windows")
        return offset, length

    def start(
        self, timeout: float | None = ACK_TIMEOUT_S, *, probe_timeout: float | None = 5.0
    ) -> None:
        """Probe, then start the driver of every known device (``timeout`` per queue ack)."""
        drivers = self.drivers or self.probe(probe_timeout)
        for driver in drivers:
            kind = DEVICE_NAMES.get(driver.device_id)
            if kind == "rng" and self.rng is None:
                self.rng = RngDriver(driver)
                self.rng.start(timeout)
            elif kind == "console" and self.console is None:
                self.console = ConsoleDriver(driver)
                self.console.start(timeout)
            elif kind == "net" and self.net is None:
                self.net = NetDriver(driver)
                self.net.start(timeout)

    def handle_interrupts(self) -> None:
        """Every device's interrupt handler (what one IPI runs, C ``virtio_mmio_hvl_cb_run``)."""
        for driver in self.drivers:
            driver.handle_interrupt()

    def wait(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Block until ``ready()`` (True) or ``timeout`` seconds (False), handling interrupts."""

        def check() -> bool:
            self.handle_interrupts()
            return ready()

        return self.waiter.wait(check, timeout)

    def close(self) -> None:
        """Drop the drivers' views of shared memory (so the mapping can be closed)."""
        for driver in self.drivers:
            for vq in driver.queues:
                vq.release()
        self.drivers = []

"""Both sides of a hypervisorless system in one process, on one bytearray (for the tests).

The monitor's devices (:class:`MmioDevice`) and the remote's drivers (:class:`MmioDriver`)
share the memory; an IPI is a flag, and :class:`Pump` is the drivers' waiter: while the
driver waits, it runs the monitor's diff pass whenever the driver raised the flag.  So
the whole handshake and every device run deterministically in one thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from openamp.metal.io import IoRegion
from openamp.virtio.devices.console import ConsoleDevice
from openamp.virtio.devices.net import NetDevice
from openamp.virtio.devices.rng import RngDevice
from openamp.virtio.mmio import WINDOW_SIZE, DeviceModel, MmioDevice, MmioDriver

PHYS = 0x37000000
SIZE = 0x100000
POOLS = {"rng": (0x1000, 0x6000), "net": (0x7000, 0x80000), "console": (0x87000, 0x6000)}


@dataclass
class Pair:
    """Monitor devices and remote drivers on one memory."""

    mem: bytearray
    shm: IoRegion
    devices: list[MmioDevice]
    drivers: list[MmioDriver]
    models: list[DeviceModel]
    to_monitor: list[int] = field(default_factory=lambda: [0])
    to_remote: list[int] = field(default_factory=lambda: [0])
    monitor_running: list[bool] = field(default_factory=lambda: [True])

    def notify_monitor(self) -> None:
        self.to_monitor[0] += 1

    def notify_remote(self) -> None:
        self.to_remote[0] += 1

    def pump(self) -> bool:
        """Run the monitor's diff pass if the remote notified it; return whether it ran."""
        if not self.to_monitor[0] or not self.monitor_running[0]:
            return False
        self.to_monitor[0] = 0
        for device in self.devices:
            device.notification()
        return True

    def window(self, index: int) -> IoRegion:
        return self.shm.subregion(index * WINDOW_SIZE, WINDOW_SIZE)


class Pump:
    """The drivers' waiter: checks, and runs the monitor while there is something for it."""

    def __init__(self, pair: Pair, rounds: int = 1000) -> None:
        self.pair = pair
        self.rounds = rounds

    def wait(
        self,
        ready: Callable[[], bool],
        timeout: float | None,
        arm: Callable[[], bool] | None = None,
    ) -> bool:
        for _ in range(self.rounds):
            if ready():
                return True
            if not self.pair.pump():
                return ready()
        return ready()


def make_pair(
    kinds: tuple[str, ...] = ("rng", "net", "console"),
    *,
    entropy: Callable[[int], bytes] = os.urandom,
    console_out: list[bytes] | None = None,
    net_out: list[bytes] | None = None,
    mrg_rxbuf: bool = True,
    init_drivers: bool = True,
) -> Pair:
    """A pair with one window per kind, in order; drivers probed and ``ACKNOWLEDGE``-d."""
    mem = bytearray(SIZE)
    shm = IoRegion(mem, phys_base=PHYS, name="hvl")
    pair = Pair(mem, shm, [], [], [])
    for index, kind in enumerate(kinds):
        model: DeviceModel
        if kind == "rng":
            model = RngDevice(entropy)
        elif kind == "console":
            model = ConsoleDevice((console_out if console_out is not None else []).append)
        else:
            model = NetDevice((net_out if net_out is not None else []).append, mrg_rxbuf=mrg_rxbuf)
        offset, size = POOLS[kind]
        device = MmioDevice(
            pair.window(index), shm, model, pool=(PHYS + offset, size), notify=pair.notify_remote
        )
        device.init_window()
        pair.devices.append(device)
        pair.models.append(model)
        driver = MmioDriver(pair.window(index), shm, notify=pair.notify_monitor, waiter=Pump(pair))
        if init_drivers:
            driver.init()
        pair.drivers.append(driver)
    return pair

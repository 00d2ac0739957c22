"""Both sides of a machine in one process: :class:`InProcessPair`.

The driver and the device share one ``bytearray`` laid out like the C Linux generic
machine, with notifications that only count kicks.  Nothing runs unless you call
``poll()`` or a blocking call hands control to the peer (the pump waiter), so two-sided
tests are fast and deterministic; no file, socket or thread is involved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..metal.io import IoRegion
from ..remoteproc.virtio import RscVdevTransport
from ..rpmsg.core import NsCallback
from ..rpmsg.virtio import (
    DEFAULT_FEATURES,
    RpmsgVirtioConfig,
    RpmsgVirtioDevice,
    ShmPool,
    TraceHook,
)
from ..virtio.virtqueue import Role
from .layout import LINUX_GENERIC, MachineLayout
from .machine import find_vdev


class _PumpWaiter:
    """In-process waiting: instead of blocking, let the peer run until nothing changes."""

    def __init__(self, pair: InProcessPair, me: Role) -> None:
        self._pair = pair
        self._me = me

    def wait(
        self,
        ready: Callable[[], bool],
        timeout: float | None,
        arm: Callable[[], bool] | None = None,
    ) -> bool:
        """Let the peer poll until ``ready()`` or it has nothing more to do.

        Handing control to the peer is this waiter's way of blocking, so ``arm`` is
        called first, as a blocking waiter would: the peer then notifies us exactly as
        it would a process asleep on its doorbell.  ``timeout`` is moot: the peer runs
        until it has nothing more to do.
        """
        if ready():
            return True
        if arm is not None and arm():
            return ready()
        for _ in range(10_000):
            if ready():
                return True
            peer = self._pair.side(Role.DEVICE if self._me is Role.DRIVER else Role.DRIVER)
            if peer is None or peer.poll() == 0:
                return ready()
        return ready()

    async def wait_async(
        self,
        ready: Callable[[], bool],
        timeout: float | None,
        arm: Callable[[], bool] | None = None,
    ) -> bool:
        """:meth:`wait` under asyncio: the pump never blocks, so it runs as it is."""
        return self.wait(ready, timeout, arm)


class InProcessPair:
    """Both sides of a machine in one process, over one ``bytearray``.

    Create the sides in the real order: :meth:`driver` first (it posts its buffers and
    sets DRIVER_OK), then :meth:`device`.  ``kicks`` counts notifications per sender
    role and notify id: ``kicks[Role.DRIVER][2]`` is how often the driver kicked vring 1.
    """

    def __init__(self, layout: MachineLayout = LINUX_GENERIC) -> None:
        self.layout = layout
        self.memory = bytearray(layout.shm_size)
        self.region = IoRegion(self.memory, name="in-process shm")
        self.region.write_block(layout.rsc_offset, layout.resource_table().to_bytes())
        self.kicks: dict[Role, dict[int, int]] = {Role.DRIVER: {}, Role.DEVICE: {}}
        self._sides: dict[Role, RpmsgVirtioDevice] = {}

    def side(self, role: Role) -> RpmsgVirtioDevice | None:
        """The device playing ``role``, if created."""
        return self._sides.get(role)

    def _transport(self, role: Role) -> RscVdevTransport:
        table_io = self.region.subregion(
            self.layout.rsc_offset, self.region.size - self.layout.rsc_offset
        )
        counts = self.kicks[role]

        def notify(notifyid: int) -> None:
            counts[notifyid] = counts.get(notifyid, 0) + 1

        return RscVdevTransport(
            table_io, find_vdev(table_io), ring_io=self.region, role=role, notify=notify
        )

    def driver(
        self,
        *,
        config: RpmsgVirtioConfig | None = None,
        ns_bind_cb: NsCallback | None = None,
        trace: TraceHook | None = None,
        blocking: bool = True,
        features: int = DEFAULT_FEATURES,
    ) -> RpmsgVirtioDevice:
        """Create the driver (host) side.  ``blocking=False`` gives it no waiter;
        ``features`` are the feature bits it accepts (fewer to act as a C host)."""
        dev = RpmsgVirtioDevice(
            self._transport(Role.DRIVER),
            shm=self.region,
            pool=ShmPool(self.layout.pool_base, self.layout.pool_size),
            config=config,
            waiter=_PumpWaiter(self, Role.DRIVER) if blocking else None,
            ns_bind_cb=ns_bind_cb,
            trace=trace,
            features=features,
        )
        self._sides[Role.DRIVER] = dev
        return dev

    def device(
        self,
        *,
        ns_bind_cb: NsCallback | None = None,
        trace: TraceHook | None = None,
        blocking: bool = True,
    ) -> RpmsgVirtioDevice:
        """Create the device (remote) side; the driver must exist (DRIVER_OK set)."""
        dev = RpmsgVirtioDevice(
            self._transport(Role.DEVICE),
            shm=self.region,
            waiter=_PumpWaiter(self, Role.DEVICE) if blocking else None,
            ns_bind_cb=ns_bind_cb,
            ready_timeout=0,
            trace=trace,
        )
        self._sides[Role.DEVICE] = dev
        return dev

    def pair(self, **kw: Any) -> tuple[RpmsgVirtioDevice, RpmsgVirtioDevice]:
        """``(driver, device)``, both created."""
        return self.driver(**kw), self.device()


__all__ = ["InProcessPair"]

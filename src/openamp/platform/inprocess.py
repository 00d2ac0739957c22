"""Both sides of a machine in one process: :class:`InProcessPair`.

The driver and the device share one ``bytearray`` laid out like the C Linux generic
machine, with notifications that only count kicks.  Nothing runs unless you call
``poll()`` or a blocking call hands control to the peer (the pump waiter), so two-sided
tests are fast and deterministic; no file, socket or thread is involved.

:meth:`InProcessPair.boot` is the exception, on purpose: it runs a Python firmware's
``main(ctx)`` unchanged, so the firmware gets a thread of its own (its ``main`` blocks,
as on any machine) and both sides wait on a socket-pair doorbell instead of the pump.
"""

from __future__ import annotations

import contextlib
import threading
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ..errors import OpenAMPError, OpenAMPTimeoutError, PeerGoneError
from ..metal.doorbell import UnixSocketDoorbell
from ..metal.io import IoRegion
from ..metal.wait import BlockingWait, DoorbellWaiter
from ..remoteproc.rsc_table import ResourceTable
from ..remoteproc.virtio import RscVdevTransport
from ..rpmsg.core import NsCallback
from ..rpmsg.events import EventHook, TraceHook
from ..rpmsg.virtio import (
    DEFAULT_FEATURES,
    RpmsgVirtioConfig,
    RpmsgVirtioDevice,
    ShmPool,
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
        self.region = IoRegion(self.memory, phys_base=layout.phys_base, name="in-process shm")
        self.region.write_block(layout.rsc_offset, layout.resource_table().to_bytes())
        self.kicks: dict[Role, dict[int, int]] = {Role.DRIVER: {}, Role.DEVICE: {}}
        self._sides: dict[Role, RpmsgVirtioDevice] = {}

    def side(self, role: Role) -> RpmsgVirtioDevice | None:
        """The device playing ``role``, if created."""
        return self._sides.get(role)

    def _transport(self, role: Role, kick: Callable[[], object] | None = None) -> RscVdevTransport:
        table_io = self.region.subregion(
            self.layout.rsc_offset, self.region.size - self.layout.rsc_offset
        )
        counts = self.kicks[role]

        def notify(notifyid: int) -> None:
            counts[notifyid] = counts.get(notifyid, 0) + 1
            if kick is not None:
                kick()

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
        capture: EventHook | None = None,
    ) -> RpmsgVirtioDevice:
        """Create the driver (host) side.  ``blocking=False`` gives it no waiter;
        ``features`` are the feature bits it accepts (fewer to act as a C host);
        ``capture`` records its events (:mod:`openamp.rpmsg.events`)."""
        dev = RpmsgVirtioDevice(
            self._transport(Role.DRIVER),
            shm=self.region,
            pool=ShmPool(self.layout.pool_offset, self.layout.pool_size),
            config=config,
            waiter=_PumpWaiter(self, Role.DRIVER) if blocking else None,
            ns_bind_cb=ns_bind_cb,
            trace=trace,
            features=features,
            capture=capture,
        )
        self._sides[Role.DRIVER] = dev
        return dev

    def device(
        self,
        *,
        ns_bind_cb: NsCallback | None = None,
        trace: TraceHook | None = None,
        blocking: bool = True,
        capture: EventHook | None = None,
    ) -> RpmsgVirtioDevice:
        """Create the device (remote) side; the driver must exist (DRIVER_OK set).
        ``capture`` records its events."""
        dev = RpmsgVirtioDevice(
            self._transport(Role.DEVICE),
            shm=self.region,
            pool=ShmPool(self.layout.pool_offset, self.layout.pool_size),
            waiter=_PumpWaiter(self, Role.DEVICE) if blocking else None,
            ns_bind_cb=ns_bind_cb,
            ready_timeout=0,
            trace=trace,
            capture=capture,
        )
        self._sides[Role.DEVICE] = dev
        return dev

    def pair(self, **kw: Any) -> tuple[RpmsgVirtioDevice, RpmsgVirtioDevice]:
        """``(driver, device)``, both created."""
        return self.driver(**kw), self.device()

    def boot(
        self,
        firmware: str | ModuleType | Callable[[Any], object],
        *,
        timeout: float = 10.0,
        config: RpmsgVirtioConfig | None = None,
    ) -> InProcessFirmware:
        """Run a Python firmware's ``main(ctx)`` on this pair; return the running firmware.

        ``firmware``: a built-in name (``"echo"``), ``"python:SPEC"`` or a SPEC (module
        path or ``.py`` file, as ``openamp rproc run`` takes), a module with ``main``, or
        the ``main`` function itself.  The host side (driver) is created here, the
        firmware's device side in its thread; :attr:`InProcessFirmware.rpmsg` is the
        host's rpmsg device.  ``timeout``: seconds the firmware may take to come up.
        Stop it with :meth:`InProcessFirmware.stop` (or ``with``).
        """
        from ..firmware import load_module

        if isinstance(firmware, str):
            main = load_module(firmware.removeprefix("python:")).main
            name = firmware
        elif isinstance(firmware, ModuleType):
            main = firmware.main
            name = firmware.__name__
        else:
            main = firmware
            name = getattr(firmware, "__qualname__", "firmware")
        return InProcessFirmware(self, main, name, timeout=timeout, config=config)


class InProcessFirmware:
    """A Python firmware's ``main(ctx)`` running in a thread, over an :class:`InProcessPair`.

    Made by :meth:`InProcessPair.boot`.  :attr:`rpmsg` is the host's rpmsg device;
    :attr:`trace_lines` what the firmware traced; :attr:`exit_code` and :attr:`error`
    say how ``main`` ended (an exception's traceback is also in :attr:`console`).
    """

    def __init__(
        self,
        pair: InProcessPair,
        main: Callable[[Any], object],
        name: str,
        *,
        timeout: float,
        config: RpmsgVirtioConfig | None,
    ) -> None:
        from ..firmware.context import FirmwareContext

        self.name = name
        self.pair = pair
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self.console: list[str] = []
        """Tracebacks of the firmware thread (it shares this process's stdout)."""
        self._host_bell, self._fw_bell = UnixSocketDoorbell.pair()
        host_bell, fw_bell = self._host_bell, self._fw_bell
        layout = pair.layout
        self.rpmsg = RpmsgVirtioDevice(
            pair._transport(Role.DRIVER, host_bell.kick),
            shm=pair.region,
            pool=ShmPool(layout.pool_base, layout.pool_size),
            config=config,
            waiter=DoorbellWaiter(host_bell, BlockingWait()),
        )
        pair._sides[Role.DRIVER] = self.rpmsg
        table_io = pair.region.subregion(layout.rsc_offset, pair.region.size - layout.rsc_offset)
        table = ResourceTable.parse(table_io.mem)
        started = threading.Event()
        self.ctx: FirmwareContext | None = None

        setup_failed: list[BaseException] = []

        def run() -> None:
            try:
                device = RpmsgVirtioDevice(
                    pair._transport(Role.DEVICE, fw_bell.kick),
                    shm=pair.region,
                    waiter=DoorbellWaiter(fw_bell, BlockingWait()),
                    ready_timeout=timeout,
                )
                pair._sides[Role.DEVICE] = device
                self.ctx = FirmwareContext(
                    None, pair.region, fw_bell, layout.rsc_offset, device, table
                )
                self.ctx.trace(f"{name}: booted in-process")
            except BaseException as exc:
                self._failed(exc)
                setup_failed.append(exc)
                started.set()
                return
            started.set()
            try:
                code = main(self.ctx)
                self.exit_code = code if isinstance(code, int) else 0
            except PeerGoneError:
                self.exit_code = 0  # the host went away: stopped, as a process would be
            except BaseException as exc:
                self._failed(exc)
            finally:
                with contextlib.suppress(OpenAMPError):
                    device.close()

        self._thread = threading.Thread(target=run, name=f"firmware {name}", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            self.stop()
            raise OpenAMPTimeoutError(f"firmware {name} did not come up within {timeout} s")
        if setup_failed:  # the link did not come up (main's own errors are in .error)
            self.stop()
            raise setup_failed[0]

    def _failed(self, exc: BaseException) -> None:
        self.error = exc
        self.exit_code = 1
        self.console += traceback.format_exception(exc)

    @property
    def trace_lines(self) -> list[str]:
        """What the firmware gave ``ctx.trace()``."""
        return list(self.ctx.trace_lines) if self.ctx is not None else []

    @property
    def running(self) -> bool:
        """Whether ``main`` has not returned yet."""
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for ``main`` to return (seconds; None = forever); its exit code, or None."""
        self._thread.join(timeout)
        return None if self._thread.is_alive() else self.exit_code

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the firmware as a host going away does: the host's endpoints are
        destroyed, the doorbell closes, ``main``'s next wait raises
        :class:`PeerGoneError`.  Returns the exit code (None if ``main`` ignores it and
        still runs after ``timeout`` s).  Idempotent."""
        with contextlib.suppress(OpenAMPError):
            self.rpmsg.close()
        self._host_bell.close()
        code = self.wait(timeout)
        if not self._thread.is_alive():
            self._fw_bell.close()
        return code

    def __enter__(self) -> InProcessFirmware:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["InProcessFirmware", "InProcessPair"]

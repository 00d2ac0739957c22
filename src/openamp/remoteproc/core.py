"""Remote processor life-cycle management (C ``remoteproc.c``, Linux ``remoteproc_core.c``).

A :class:`RemoteProc` owns one remote processor.  Everything platform-specific — how its
memory is reached, how it is started and stopped, how it is kicked — comes in through
a :class:`RemoteprocOps` object, as in both the C library and Linux.  This module
knows the life cycle (:mod:`.state`), firmware loading and the resource table.

Loading follows the C library's order: the resource table is read from the image and
handled first (carveouts are mapped, so segments have memory to land in), then the
segments are placed by physical address, then the handled table — with the notify ids,
addresses and features filled in — is written back into the remote's memory at the
table's device address.  The table is patched in place at field offsets, so the bytes
the remote sees keep the firmware's own layout.

State changes may come from another thread (a platform noticing that its remote died),
so the state is guarded by a condition variable; :meth:`RemoteProc.wait_state` blocks on
it.  Observers subscribe with :meth:`RemoteProc.subscribe`.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import (
    FirmwareImageError,
    InvalidStateError,
    OpenAMPError,
    OpenAMPTimeoutError,
    RegionBoundsError,
    ResourceTableError,
    UsageError,
)
from ..metal.io import IoRegion
from ..virtio.ring import vring_size
from .rsc_table import (
    CARVEOUT_DA_OFFSET,
    CARVEOUT_PA_OFFSET,
    FW_RSC_ADDR_ANY,
    RSC_NOTIFY_ID_ANY,
    VDEV_NOTIFYID_OFFSET,
    VDEV_VRING,
    VDEV_VRINGS_OFFSET,
    VRING_DA_OFFSET,
    VRING_NOTIFYID_OFFSET,
    Carveout,
    Devmem,
    ResourceTable,
    Trace,
    UnknownEntry,
    Vdev,
    Vendor,
)
from .state import RemoteprocStateError, RprocState, next_state
from .virtio import RscVdevTransport

if TYPE_CHECKING:
    from ..virtio.virtqueue import Role

log = logging.getLogger("openamp.remoteproc")

_U32 = struct.Struct("<I")

MAX_NOTIFY_IDS = 64
"""The C library tracks notify ids in one 64-bit bitmap."""


@dataclass(frozen=True)
class Mapping:
    """A piece of the remote's memory: where it is for the remote and for us."""

    pa: int
    da: int
    size: int
    region: IoRegion
    offset: int
    """Where ``da`` lies inside ``region``."""
    name: str = ""

    def contains_da(self, da: int, size: int = 1) -> bool:
        """Whether the device range ``[da, da+size)`` lies inside this mapping."""
        return self.da <= da and da + size <= self.da + self.size

    def contains_pa(self, pa: int, size: int = 1) -> bool:
        """Whether the physical range ``[pa, pa+size)`` lies inside this mapping."""
        return self.pa <= pa and pa + size <= self.pa + self.size


@dataclass(frozen=True)
class TraceBuffer:
    """A trace buffer the firmware declared (``RSC_TRACE``)."""

    name: str
    da: int
    size: int
    mapping: Mapping

    def read(self) -> str:
        """The text in the buffer, up to the first NUL."""
        off = self.mapping.offset + (self.da - self.mapping.da)
        raw = self.mapping.region.read_block(off, self.size)
        end = raw.find(b"\0")
        return (raw if end < 0 else raw[:end]).decode("utf-8", errors="replace")


@dataclass
class StateEvent:
    """A state change, as delivered to subscribers."""

    old: RprocState
    new: RprocState
    reason: str = ""


@runtime_checkable
class Firmware(Protocol):
    """What :meth:`RemoteProc.load` needs from a firmware image."""

    name: str

    @property
    def entry(self) -> int:
        """The boot address."""
        ...

    def rsc_table(self) -> tuple[bytes, int] | None:
        """``(table bytes, device address)`` or None if the image has no table."""
        ...

    def load_segments(self, mmap: Callable[[int, int], tuple[IoRegion, int]]) -> None:
        """Copy the loadable segments into memory found through ``mmap(da, size)``."""
        ...


class RemoteprocOps:
    """Platform operations of a remote processor (C ``struct remoteproc_ops``).

    Subclass and override what the platform supports; the defaults do nothing, except
    :meth:`mmap`, which only finds memory the platform registered with
    :meth:`RemoteProc.add_mem`, and :meth:`start`/:meth:`stop`, which are required.
    """

    def init(self, rproc: RemoteProc) -> None:
        """Called once by the :class:`RemoteProc` constructor."""

    def remove(self, rproc: RemoteProc) -> None:
        """Release everything :meth:`init` acquired."""

    def mmap(self, rproc: RemoteProc, pa: int, da: int, size: int) -> Mapping:
        """Map ``size`` bytes at physical ``pa`` / device ``da`` (either may be ANY).

        Raise an :class:`OpenAMPError` if there is no memory there.
        """
        raise RegionBoundsError(
            f"no memory at pa {pa:#x} / da {da:#x} (+{size:#x}) and the platform maps none"
        )

    def handle_rsc(self, rproc: RemoteProc, entry: Vendor, offset: int) -> bool:
        """A vendor resource; return True if it was handled (False: ignored)."""
        return False

    def config(self, rproc: RemoteProc, data: Any) -> None:
        """Platform configuration before loading."""

    def start(self, rproc: RemoteProc) -> None:
        """Start the remote processor at ``rproc.bootaddr``."""
        raise UsageError(f"{type(self).__name__} cannot start a remote processor")

    def stop(self, rproc: RemoteProc) -> None:
        """Stop the remote processor."""
        raise UsageError(f"{type(self).__name__} cannot stop a remote processor")

    def shutdown(self, rproc: RemoteProc) -> None:
        """Power it down after :meth:`stop`."""

    def notify(self, rproc: RemoteProc, notifyid: int) -> None:
        """Kick the remote for ``notifyid``."""

    def attach(self, rproc: RemoteProc) -> None:
        """Take over a remote that is already running (its table is in memory)."""
        raise UsageError(f"{type(self).__name__} cannot attach to a running remote")

    def detach(self, rproc: RemoteProc) -> None:
        """Leave the remote running and stop managing it."""
        raise UsageError(f"{type(self).__name__} cannot detach from a remote")


class VdevDevice(Protocol):
    """What a platform puts on a vdev (an rpmsg device, say): it can be closed."""

    def close(self) -> None:
        """Stop using the vdev's rings (the remote is stopping)."""
        ...


@dataclass(frozen=True)
class VdevLink:
    """Everything a virtio device on vdev ``index`` needs, and no more.

    ``transport`` is the vdev entry of the live table as a virtio transport (status,
    features, vring addresses, notifications through the ops' ``notify``); ``ring_io``
    the memory the vring addresses point into; ``buffers`` the carveout named
    ``vdev<N>buffer`` (the Linux convention for the driver's buffer pool), if any.
    The platform builds its device (rpmsg, for one) on this.
    """

    index: int
    transport: RscVdevTransport
    ring_io: IoRegion
    buffers: Mapping | None


@dataclass
class VdevResource:
    """A vdev entry after handling: its index among vdevs and where it lives."""

    index: int
    table_offset: int
    entry: Vdev


@dataclass
class _Handled:
    traces: list[TraceBuffer] = field(default_factory=list)
    vdevs: list[VdevResource] = field(default_factory=list)
    carveouts: list[Mapping] = field(default_factory=list)


class RemoteProc:
    """One remote processor: its state, firmware, memory, resources and vdev devices."""

    def __init__(self, ops: RemoteprocOps, name: str = "rproc0") -> None:
        self.ops = ops
        self.name = name
        self.firmware: Firmware | None = None
        self.bootaddr = 0
        self._table: ResourceTable | None = None
        self._table_da: int | None = None
        self.table_bytes: bytes | None = None
        self.mems: list[Mapping] = []
        self.traces: list[TraceBuffer] = []
        self.vdevs: list[VdevResource] = []
        self.recovery = False
        """Restart the remote automatically when it crashes (Linux ``recovery``)."""
        self.crash_count = 0
        self.loading: Firmware | None = None
        """The firmware being loaded, while :meth:`load` runs (ops may look at it)."""
        self.vdev_devices: dict[int, VdevDevice] = {}
        """The devices the platform built on the vdevs (see :meth:`vdev_link`), by vdev
        index; they are closed when the remote stops, and kept for a restart."""
        self._state = RprocState.OFFLINE
        self._cond = threading.Condition(threading.RLock())
        # One life-cycle operation at a time, whichever thread calls it: a recovery the
        # platform runs on its own thread finishes before the user's stop or shutdown
        # starts (which then finds a running remote to stop, not a half-started one).
        self._op_lock = threading.RLock()
        self._subscribers: list[Callable[[StateEvent], object]] = []
        self.history: list[StateEvent] = []
        """Every state change so far, oldest first."""
        ops.init(self)

    def __repr__(self) -> str:
        fw = self.firmware.name if self.firmware else None
        return f"RemoteProc({self.name!r}, state={self._state}, firmware={fw!r})"

    # -- state ------------------------------------------------------------------------------

    @property
    def state(self) -> RprocState:
        """The current life-cycle state."""
        return self._state

    def subscribe(self, callback: Callable[[StateEvent], object]) -> Callable[[], None]:
        """Call ``callback(event)`` on every state change; returns an unsubscribe function.

        Callbacks may run on a platform thread (a crash is noticed there).
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def wait_state(self, state: RprocState, timeout: float | None = None) -> None:
        """Block until the state is ``state``; ``timeout`` in seconds (None = forever)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._state is state, timeout):
                raise OpenAMPTimeoutError(
                    f"{self.name} did not become {state} within {timeout} s (it is {self._state})"
                )

    def _transition(self, operation: str) -> RprocState | None:
        """Check ``operation`` against the table; return the target state (None: no-op)."""
        with self._cond:
            return next_state(operation, self._state)

    def _set_state(self, new: RprocState, reason: str = "") -> None:
        with self._cond:
            old = self._state
            if old is new:
                return
            self._state = new
            event = StateEvent(old, new, reason)
            self.history.append(event)
            self._cond.notify_all()
        log.info("%s: %s -> %s%s", self.name, old, new, f" ({reason})" if reason else "")
        for cb in list(self._subscribers):
            try:
                cb(event)
            except Exception:  # a subscriber must not break the life cycle
                log.exception("state subscriber failed")

    # -- memory -----------------------------------------------------------------------------

    def add_mem(self, mapping: Mapping) -> None:
        """Register memory the platform knows about (C ``remoteproc_add_mem``)."""
        self.mems.append(mapping)

    def mmap(self, pa: int = FW_RSC_ADDR_ANY, da: int = FW_RSC_ADDR_ANY, size: int = 0) -> Mapping:
        """Find (or ask the platform to map) memory by physical or device address."""
        if size <= 0:
            raise UsageError(f"mmap size must be positive, got {size}")
        for m in self.mems:
            if pa != FW_RSC_ADDR_ANY and m.contains_pa(pa, size):
                return _sub(m, da=m.da + pa - m.pa, size=size)
            if pa == FW_RSC_ADDR_ANY and da != FW_RSC_ADDR_ANY and m.contains_da(da, size):
                return _sub(m, da=da, size=size)
        mapping = self.ops.mmap(self, pa, da, size)
        self.mems.append(mapping)
        return mapping

    def _mmap_da(self, da: int, size: int) -> tuple[IoRegion, int]:
        m = self.mmap(da=da, size=size)
        return m.region, m.offset

    # -- life cycle -------------------------------------------------------------------------

    def config(self, data: Any = None) -> None:
        """Configure the platform (C ``remoteproc_config``): offline -> ready."""
        with self._op_lock:
            target = self._transition("config")
            self.ops.config(self, data)
            if target is not None:
                self._set_state(target, "configured")

    def load(self, firmware: Firmware | str | bytes | Any) -> None:
        """Load a firmware image (C ``remoteproc_load``); the state must be ready.

        ``firmware``: a :class:`Firmware`, or a path / bytes / image store of an ELF
        image.  The resource table is handled before the segments are placed, and
        written back into the remote's memory afterwards.
        """
        with self._op_lock:
            target = self._transition("load")
            fw = firmware if isinstance(firmware, Firmware) else _elf_firmware(firmware)
            self.loading = fw
            try:
                self._load(fw)
            finally:
                self.loading = None
            if target is not None:
                self._set_state(target, f"loaded {fw.name}")

    def _load(self, fw: Firmware) -> None:
        found = fw.rsc_table()
        handled = _Handled()
        raw: bytearray | None = None
        if found is not None:
            raw = bytearray(found[0])
            table = ResourceTable.parse(raw)
            handled = self._handle_resources(table, raw)
        fw.load_segments(self._mmap_da)
        if found is not None and raw is not None:
            da = found[1]
            try:
                m = self.mmap(da=da, size=len(raw))
            except OpenAMPError as exc:
                raise FirmwareImageError(
                    f"{fw.name}: the resource table at {da:#x} is outside every mapped "
                    f"memory: {exc}"
                ) from None
            m.region.write_block(m.offset, bytes(raw))
            self.table = ResourceTable.parse(raw)
            self.table_da = da
            self.table_bytes = bytes(raw)
        else:
            self.table = None
            self.table_da = None
            self.table_bytes = None
        self.traces = handled.traces
        self.vdevs = handled.vdevs
        self.firmware = fw
        self.bootaddr = fw.entry

    def start(self) -> None:
        """Start the loaded firmware: ready -> running."""
        with self._op_lock:
            target = self._transition("start")
            self.ops.start(self)
            if target is not None:
                self._set_state(target, "started")

    def stop(self) -> None:
        """Stop the remote: -> stopped (a no-op when stopped or offline)."""
        with self._op_lock:
            target = self._transition("stop")
            if target is None:
                return
            self._close_vdev_devices()
            self.ops.stop(self)
            self._set_state(target, "stopped")

    def shutdown(self) -> None:
        """Stop (if needed) and power down: -> offline (a no-op when offline)."""
        with self._op_lock:
            target = self._transition("shutdown")
            if target is None:
                return
            if self._state is not RprocState.DETACHED:
                self._close_vdev_devices()
            if self._state not in (RprocState.STOPPED, RprocState.DETACHED):
                with contextlib.suppress(UsageError):
                    self.ops.stop(self)
            self.ops.shutdown(self)
            self._set_state(target, "shut down")

    def attach(self) -> None:
        """Take over a remote that is already running: offline/detached -> attached."""
        with self._op_lock:
            target = self._transition("attach")
            self.ops.attach(self)
            if target is not None:
                self._set_state(target, "attached")

    def detach(self) -> None:
        """Leave the remote running, unmanaged: running/attached -> detached."""
        with self._op_lock:
            target = self._transition("detach")
            self._close_vdev_devices()
            self.ops.detach(self)
            if target is not None:
                self._set_state(target, "detached")

    def remove(self) -> None:
        """Release the platform (C ``remoteproc_remove``); only when offline."""
        if self._state is not RprocState.OFFLINE:
            raise RemoteprocStateError("remove", self._state)
        self.ops.remove(self)

    def crashed(self, reason: str) -> None:
        """Report that the remote died on its own (called by the platform).

        Moves to crashed; with :attr:`recovery` on, restarts it through
        :meth:`recover`.
        """
        with self._cond:
            target = next_state("crash", self._state)
            if target is None:  # a late report: stopped or crashed already
                return
            self.crash_count += 1
            self._set_state(target, reason)
        if self.recovery:
            try:
                self.recover()
            except OpenAMPError as exc:
                log.error("%s: recovery failed: %s", self.name, exc)
                with self._cond:
                    if self._state is not RprocState.CRASHED:
                        return  # someone stopped it meanwhile
                    failed = next_state("fail", self._state)
                    if failed is not None:
                        self._set_state(failed, f"recovery failed: {exc}")

    def exited(self, reason: str) -> None:
        """Report that the firmware ended by itself, cleanly (called by the platform).

        A running remote becomes stopped; nothing else changes.
        """
        with self._cond:
            target = next_state("exit", self._state)
            if target is not None:  # None: a late report, nothing changes
                self._set_state(target, reason)

    def recover(self) -> None:
        """Restart a crashed remote with the same firmware: crashed -> running.

        The table is written afresh and the remote restarted; the platform resets the
        devices on its vdevs (an rpmsg device keeps its endpoints, which bind again when
        the service is re-announced).
        """
        with self._op_lock:
            target = self._transition("recover")
            if self.firmware is None:
                raise UsageError(f"{self.name} has no firmware to recover with")
            with contextlib.suppress(OpenAMPError):
                self.ops.stop(self)
            if self.table_bytes is not None and self._table_da is not None:
                m = self.mmap(da=self._table_da, size=len(self.table_bytes))
                m.region.write_block(m.offset, self.table_bytes)
            self.ops.start(self)
            if target is not None:
                self._set_state(target, "recovered")

    def adopt_table(self, da: int) -> ResourceTable:
        """Take the live resource table at ``da`` as this remote's (for :meth:`attach`).

        A remote started by someone else (a bootloader) has its table in memory already;
        it is parsed where it is and its traces and vdevs are registered, but nothing is
        mapped anew or written back: the values the firmware and the previous host
        agreed on stay.  A bad table raises :class:`ResourceTableError`.
        """
        m = self.mmap(da=da, size=16)
        region = m.region
        raw = region.read_block(m.offset, region.size - m.offset)
        table = ResourceTable.parse(raw)
        size = table.size
        raw = raw[:size] if len(raw) >= size else raw
        handled = _Handled()
        for entry, offset in zip(table.entries, table.offsets):
            if isinstance(entry, Trace) and entry.da != FW_RSC_ADDR_ANY and entry.len:
                tm = self.mmap(da=entry.da, size=entry.len)
                handled.traces.append(TraceBuffer(entry.name, entry.da, entry.len, tm))
            elif isinstance(entry, Vdev):
                handled.vdevs.append(VdevResource(len(handled.vdevs), offset, entry))
        self.table, self.table_da, self.table_bytes = table, da, bytes(raw)
        self.traces, self.vdevs = handled.traces, handled.vdevs
        return table

    # -- resources --------------------------------------------------------------------------

    def _handle_resources(self, table: ResourceTable, raw: bytearray) -> _Handled:
        out = _Handled()
        used_ids: set[int] = set()
        vdev_index = 0
        for i, (entry, offset) in enumerate(zip(table.entries, table.offsets)):
            try:
                if isinstance(entry, Carveout):
                    m = self.mmap(pa=entry.pa, da=entry.da, size=entry.len)
                    _U32.pack_into(raw, offset + CARVEOUT_DA_OFFSET, m.da)
                    _U32.pack_into(raw, offset + CARVEOUT_PA_OFFSET, m.pa)
                    out.carveouts.append(
                        Mapping(m.pa, m.da, m.size, m.region, m.offset, entry.name)
                    )
                elif isinstance(entry, Devmem):
                    self.mmap(pa=entry.pa, da=entry.da, size=entry.len)
                elif isinstance(entry, Trace):
                    if entry.da == FW_RSC_ADDR_ANY or entry.len == 0:
                        continue
                    m = self.mmap(da=entry.da, size=entry.len)
                    out.traces.append(TraceBuffer(entry.name, entry.da, entry.len, m))
                elif isinstance(entry, Vdev):
                    out.vdevs.append(self._handle_vdev(entry, offset, raw, used_ids, vdev_index))
                    vdev_index += 1
                elif isinstance(entry, Vendor):
                    if not self.ops.handle_rsc(self, entry, offset):
                        log.info("%s: vendor resource %d ignored", self.name, entry.type)
                elif isinstance(entry, UnknownEntry):
                    log.info("%s: resource type %d not supported, skipped", self.name, entry.type)
            except ResourceTableError:
                raise
            except OpenAMPError as exc:
                raise ResourceTableError(
                    f"cannot handle {type(entry).__name__}: {exc}", i, offset
                ) from None
        return out

    def _handle_vdev(
        self, entry: Vdev, offset: int, raw: bytearray, used: set[int], index: int
    ) -> VdevResource:
        def allocate(wanted: int) -> int:
            # Keep a fixed id (the firmware may rely on it); allocate ANY as Linux does.
            if wanted != RSC_NOTIFY_ID_ANY:
                if wanted in used:
                    raise ResourceTableError(f"notify id {wanted} is used twice")
                used.add(wanted)
                return wanted
            for candidate in range(MAX_NOTIFY_IDS):
                if candidate not in used:
                    used.add(candidate)
                    return candidate
            raise ResourceTableError(f"no notify id left (all {MAX_NOTIFY_IDS} in use)")

        _U32.pack_into(raw, offset + VDEV_NOTIFYID_OFFSET, allocate(entry.notifyid))
        for k, vring in enumerate(entry.vrings):
            at = offset + VDEV_VRINGS_OFFSET + VDEV_VRING.size * k
            size = vring_size(vring.num, vring.align) if vring.num and vring.align else 0
            if vring.da == FW_RSC_ADDR_ANY:
                m = self.mmap(size=max(size, 1))
                _U32.pack_into(raw, at + VRING_DA_OFFSET, m.da)
            elif size:
                self.mmap(da=vring.da, size=size)
            _U32.pack_into(raw, at + VRING_NOTIFYID_OFFSET, allocate(vring.notifyid))
        parsed = ResourceTable.parse(raw)
        vdev = parsed.entries[parsed.offsets.index(offset)]
        assert isinstance(vdev, Vdev)
        return VdevResource(index, offset, vdev)

    # -- results ----------------------------------------------------------------------------

    def trace(self, index: int = 0) -> str:
        """The text in trace buffer ``index`` (as Linux's debugfs ``trace<N>``)."""
        if not self.traces:
            raise UsageError(f"{self.name}'s firmware declares no trace buffer")
        return self.traces[index].read()

    # -- the resource table ---------------------------------------------------------------

    @property
    def has_table(self) -> bool:
        """Whether a resource table is loaded (a firmware may declare none)."""
        return self._table is not None

    @property
    def table(self) -> ResourceTable:
        """The handled resource table (notify ids and addresses filled in).

        Raises :class:`InvalidStateError` before :meth:`load`, or when the firmware
        declares no table (see :attr:`has_table`).
        """
        if self._table is None:
            raise InvalidStateError(self._no_table())
        return self._table

    @table.setter
    def table(self, table: ResourceTable | None) -> None:
        self._table = table

    @property
    def table_da(self) -> int:
        """The device address of the resource table; raises like :attr:`table`."""
        if self._table_da is None:
            raise InvalidStateError(self._no_table())
        return self._table_da

    @table_da.setter
    def table_da(self, da: int | None) -> None:
        self._table_da = da

    def _no_table(self) -> str:
        if self.firmware is None:
            return f"{self.name} has no resource table: load() a firmware first"
        return f"{self.name}: firmware {self.firmware.name} declares no resource table"

    def table_region(self) -> tuple[IoRegion, int]:
        """Where the live resource table is: (region, offset)."""
        if self._table_da is None or self.table_bytes is None:
            raise UsageError(f"{self.name} has no resource table loaded")
        m = self.mmap(da=self._table_da, size=len(self.table_bytes))
        return m.region, m.offset

    def vdev_link(self, index: int = 0, *, role: Role) -> VdevLink:
        """The link of vdev ``index``: its transport, ring memory and buffer carveout.

        The vrings must lie in one memory.  ``role`` is the side we play (the host is
        the virtio driver).  Raises :class:`ResourceTableError` for a vdev without
        rings, and :class:`UsageError` if there is no such vdev.
        """
        if index >= len(self.vdevs):
            raise UsageError(f"{self.name}'s resource table has no vdev #{index}")
        vdev = self.vdevs[index]
        table_io, table_off = self.table_region()
        if not vdev.entry.vrings:
            raise ResourceTableError(f"vdev #{index} has no vrings")
        ring_io = self.mmap(da=vdev.entry.vrings[0].da, size=16).region
        name = f"vdev{index}buffer"
        buffers = next((m for m in self._carveouts() if m.name == name), None)
        if buffers is not None and buffers.region is not ring_io:
            raise ResourceTableError(f"carveout {name!r} is not in the vrings' memory")
        rproc = self

        def notify(notifyid: int) -> None:
            rproc.ops.notify(rproc, notifyid)

        transport = RscVdevTransport(
            table_io.subregion(table_off, len(self.table_bytes or b"")),
            vdev.table_offset,
            ring_io=ring_io,
            role=role,
            notify=notify,
        )
        return VdevLink(index, transport, ring_io, buffers)

    def _carveouts(self) -> list[Mapping]:
        out = []
        for entry, _off in zip(
            self._table.entries if self._table else [], self._table.offsets if self._table else []
        ):
            if isinstance(entry, Carveout):
                m = self.mmap(da=entry.da, size=entry.len)
                out.append(Mapping(m.pa, m.da, m.size, m.region, m.offset, entry.name))
        return out

    def _close_vdev_devices(self) -> None:
        for dev in list(self.vdev_devices.values()):
            with contextlib.suppress(OpenAMPError):
                dev.close()

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Poll ``condition`` every 10 ms for at most ``timeout`` s (helper for platforms)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.01)
        return condition()


def _sub(m: Mapping, *, da: int, size: int) -> Mapping:
    """The part of mapping ``m`` that starts at device address ``da``."""
    delta = da - m.da
    return Mapping(m.pa + delta, da, size, m.region, m.offset + delta, m.name)


def _elf_firmware(image: Any) -> Firmware:
    from .firmware import ElfFirmware

    return ElfFirmware.open(image)


class MemoryMapOps(RemoteprocOps):
    """A remote processor that is only a memory map: load and inspect, not execute.

    ``regions`` is a list of ``(name, da, size)``; each becomes zeroed memory at that
    device (and physical) address.  ``start`` and ``stop`` only record that they were
    called.  Use it to check what a firmware image puts where — for a 32-bit MCU image
    that cannot run on this PC, say — or as the base of a platform that can run it.
    """

    def __init__(
        self, regions: list[tuple[str, int, int]], *, loaded_table_da: int | None = None
    ) -> None:
        """``loaded_table_da``: where a bootloader left the table of a running
        firmware, which :meth:`RemoteProc.attach` adopts."""
        self.loaded_table_da = loaded_table_da
        self.attached = 0
        self.detached = 0
        self.regions = [
            Mapping(da, da, size, IoRegion(bytearray(size), phys_base=da, name=name), 0, name)
            for name, da, size in regions
        ]
        self.started = 0
        self.stopped = 0
        self.kicks: list[int] = []

    def init(self, rproc: RemoteProc) -> None:
        """Register every region with the remoteproc."""
        for m in self.regions:
            rproc.add_mem(m)

    def mmap(self, rproc: RemoteProc, pa: int, da: int, size: int) -> Mapping:
        """Only the configured regions exist; ANY allocates nothing."""
        where = f"pa {pa:#x}" if pa != FW_RSC_ADDR_ANY else f"da {da:#x}"
        names = ", ".join(f"{m.name} [{m.da:#x}, +{m.size:#x})" for m in self.regions)
        raise RegionBoundsError(f"{where} (+{size:#x}) is in no memory region ({names})")

    def region(self, name: str) -> Mapping:
        """The region called ``name``."""
        for m in self.regions:
            if m.name == name:
                return m
        raise UsageError(f"no memory region {name!r}")

    def start(self, rproc: RemoteProc) -> None:
        """Record the start."""
        self.started += 1

    def stop(self, rproc: RemoteProc) -> None:
        """Record the stop."""
        self.stopped += 1

    def notify(self, rproc: RemoteProc, notifyid: int) -> None:
        """Record the kick."""
        self.kicks.append(notifyid)

    def attach(self, rproc: RemoteProc) -> None:
        """Adopt the table a bootloader left at ``loaded_table_da``."""
        if self.loaded_table_da is None:
            raise UsageError("no firmware was left running: give loaded_table_da")
        rproc.adopt_table(self.loaded_table_da)
        self.attached += 1

    def detach(self, rproc: RemoteProc) -> None:
        """Record the detach; the memory (and the firmware in it) stays as it is."""
        self.detached += 1

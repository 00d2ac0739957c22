"""RemoteProc: the life-cycle table, resource handling and loading, on a memory map."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from openamp import FirmwareImageError, ResourceTableError
from openamp.metal import IoRegion
from openamp.remoteproc.core import MemoryMapOps, RemoteProc
from openamp.remoteproc.rsc_table import (
    FW_RSC_ADDR_ANY,
    RSC_NOTIFY_ID_ANY,
    Carveout,
    ResourceTable,
    Trace,
    Vdev,
    VdevVring,
    Vendor,
)
from openamp.remoteproc.state import (
    TRANSITIONS,
    RemoteprocStateError,
    RprocState,
    next_state,
    transition_table_markdown,
)

S = RprocState


class TableFirmware:
    """A firmware that is only a resource table (and optional raw segments)."""

    def __init__(self, table: ResourceTable, da: int, segments=(), entry: int = 0x100) -> None:
        self.name = "table-firmware"
        self._table = table
        self._da = da
        self._segments = list(segments)
        self.entry = entry

    def rsc_table(self):
        return self._table.to_bytes(), self._da

    def load_segments(self, mmap: Callable[[int, int], tuple[IoRegion, int]]) -> None:
        for da, data in self._segments:
            region, off = mmap(da, len(data))
            region.write_block(off, data)


def machine() -> tuple[MemoryMapOps, RemoteProc]:
    ops = MemoryMapOps([("tcm", 0x0, 0x10000), ("ddr", 0x10000000, 0x100000)])
    return ops, RemoteProc(ops, name="m4")


def table(**kw) -> ResourceTable:
    return ResourceTable(
        [
            Carveout(da=0x10000000, pa=0x10000000, len=0x20000, name="vdev0buffer"),
            Trace(da=0x10040000, len=0x100, name="trace0"),
            Vdev(
                id=7,
                notifyid=kw.get("notifyid", RSC_NOTIFY_ID_ANY),
                dfeatures=1,
                vrings=[
                    VdevVring(kw.get("vring0", 0x10020000), 0x1000, 16, RSC_NOTIFY_ID_ANY),
                    VdevVring(0x10030000, 0x1000, 16, 7),
                ],
            ),
            *kw.get("extra", []),
        ]
    )


def test_illegal_transitions_are_refused_with_the_allowed_states():
    with pytest.raises(
        RemoteprocStateError, match="cannot start a remote processor that is offline"
    ):
        next_state("start", S.OFFLINE)
    with pytest.raises(RemoteprocStateError, match="allowed from: ready"):
        next_state("start", S.RUNNING)


def test_stop_and_shutdown_are_no_ops_where_c_makes_them_so():
    assert next_state("stop", S.STOPPED) is None and next_state("stop", S.OFFLINE) is None
    assert next_state("shutdown", S.OFFLINE) is None


def test_every_transition_leads_to_a_state():
    for op, moves in TRANSITIONS.items():
        for src, dst in moves.items():
            assert next_state(op, src) is dst, op


def test_the_docs_table_lists_every_operation():
    md = transition_table_markdown()
    for op in TRANSITIONS:
        assert f"| {op} |" in md


def test_a_full_life_cycle_records_each_state_change():
    ops, rp = machine()
    seen = []
    rp.subscribe(lambda ev: seen.append((ev.old, ev.new)))
    rp.config()
    rp.load(TableFirmware(table(), 0x1000))
    rp.start()
    rp.stop()
    rp.shutdown()
    assert seen == [
        (S.OFFLINE, S.READY),
        (S.READY, S.RUNNING),
        (S.RUNNING, S.STOPPED),
        (S.STOPPED, S.OFFLINE),
    ]
    assert (ops.started, ops.stopped) == (1, 1)
    rp.remove()


def test_loading_needs_a_configured_remote():
    _, rp = machine()
    with pytest.raises(RemoteprocStateError, match="cannot load"):
        rp.load(TableFirmware(table(), 0x1000))


def test_remove_is_refused_unless_offline():
    _, rp = machine()
    rp.config()
    with pytest.raises(RemoteprocStateError, match="remove"):
        rp.remove()


def test_the_handled_table_is_written_back_with_notify_ids_filled_in():
    ops, rp = machine()
    rp.config()
    rp.load(TableFirmware(table(), 0x1000))
    written = ops.region("tcm").region.read_block(0x1000, rp.table.size)
    back = ResourceTable.parse(written)
    vdev = back.vdevs()[0]
    # ANY ids are allocated around the fixed id 7, lowest first
    assert (vdev.notifyid, vdev.vrings[0].notifyid, vdev.vrings[1].notifyid) == (0, 1, 7)
    assert written == rp.table_bytes


def test_a_vring_at_any_address_is_allocated_and_written_back():
    ops = MemoryMapOps([("tcm", 0x0, 0x10000), ("ddr", 0x10000000, 0x100000)])

    class Allocating(MemoryMapOps):
        def mmap(self, rproc, pa, da, size):
            ddr = self.region("ddr")
            if pa == da == FW_RSC_ADDR_ANY:
                return type(ddr)(0x10080000, 0x10080000, size, ddr.region, 0x80000, "vring")
            return super().mmap(rproc, pa, da, size)

    ops = Allocating([("tcm", 0x0, 0x10000), ("ddr", 0x10000000, 0x100000)])
    rp = RemoteProc(ops)
    rp.config()
    rp.load(TableFirmware(table(vring0=FW_RSC_ADDR_ANY), 0x1000))
    assert rp.table.vdevs()[0].vrings[0].da == 0x10080000


def test_duplicate_fixed_notify_ids_are_an_error_naming_the_entry():
    _, rp = machine()
    rp.config()
    with pytest.raises(ResourceTableError, match="notify id 7 is used twice"):
        rp.load(TableFirmware(table(notifyid=7), 0x1000))


def test_a_carveout_outside_every_memory_is_refused():
    _, rp = machine()
    rp.config()
    bad = table(extra=[Carveout(da=0x90000000, pa=0x90000000, len=0x1000, name="nowhere")])
    with pytest.raises(ResourceTableError, match=r"entry 3.*no memory region"):
        rp.load(TableFirmware(bad, 0x1000))


def test_a_segment_outside_every_memory_is_refused():
    _, rp = machine()
    rp.config()
    with pytest.raises(Exception, match="0x90000000"):
        rp.load(TableFirmware(table(), 0x1000, segments=[(0x90000000, b"code")]))


def test_a_table_outside_every_memory_is_refused():
    _, rp = machine()
    rp.config()
    with pytest.raises(FirmwareImageError, match="resource table at 0x80000000"):
        rp.load(TableFirmware(table(), 0x80000000))


def test_trace_buffers_are_readable():
    ops, rp = machine()
    rp.config()
    rp.load(TableFirmware(table(), 0x1000))
    ddr = ops.region("ddr")
    ddr.region.write_block(0x40000, b"booted\nok\0garbage")
    assert rp.trace() == "booted\nok"


def test_vendor_resources_go_to_the_platform():
    handled = []

    class VendorOps(MemoryMapOps):
        def handle_rsc(self, rproc, entry, offset):
            handled.append((entry.type, entry.data, offset))
            return True

    ops = VendorOps([("tcm", 0x0, 0x10000), ("ddr", 0x10000000, 0x100000)])
    rp = RemoteProc(ops)
    rp.config()
    rp.load(TableFirmware(table(extra=[Vendor(200, b"\x01\x02\x03\x04")]), 0x1000))
    assert handled and handled[0][:2] == (200, b"\x01\x02\x03\x04")


def test_segments_land_at_their_physical_address():
    ops, rp = machine()
    rp.config()
    rp.load(TableFirmware(table(), 0x1000, segments=[(0x10000200, b"\xde\xad\xbe\xef")]))
    assert ops.region("ddr").region.read_block(0x200, 4) == b"\xde\xad\xbe\xef"
    assert rp.bootaddr == 0x100


def test_wait_state_times_out_with_the_current_state():
    _, rp = machine()
    with pytest.raises(TimeoutError, match="is offline"):
        rp.wait_state(S.RUNNING, timeout=0.01)


def test_a_crash_moves_a_running_remote_to_crashed_and_recovery_restarts_it():
    ops, rp = machine()
    rp.config()
    rp.load(TableFirmware(table(), 0x1000))
    rp.start()
    struct.pack_into("<I", ops.region("tcm").region.mem, 0x1000, 99)  # the remote scribbled
    rp.crashed("watchdog")
    assert rp.state is S.CRASHED and rp.crash_count == 1
    rp.recovery = True
    rp.recover()
    assert rp.state is S.RUNNING and ops.started == 2
    # the table was written afresh
    assert ops.region("tcm").region.read_block(0x1000, 4) == b"\x01\0\0\0"


def test_attach_adopts_the_table_a_bootloader_left_and_detach_lets_go():
    ops = MemoryMapOps(
        [("tcm", 0x0, 0x10000), ("ddr", 0x10000000, 0x100000)], loaded_table_da=0x1000
    )
    t = table(notifyid=0).to_bytes()
    ops.region("tcm").region.write_block(0x1000, t)  # left there by the "bootloader"
    ops.region("ddr").region.write_block(0x40000, b"running since boot\0")
    rp = RemoteProc(ops)
    rp.attach()
    assert rp.state is S.ATTACHED and ops.attached == 1
    assert rp.trace() == "running since boot"
    assert rp.table.vdevs()[0].notifyid == 0 and len(rp.vdevs) == 1
    assert ops.region("tcm").region.read_block(0x1000, len(t)) == t  # nothing rewritten
    rp.detach()
    assert rp.state is S.DETACHED and ops.detached == 1
    rp.attach()
    assert rp.state is S.ATTACHED
    with pytest.raises(RemoteprocStateError, match="cannot start"):
        rp.start()
    rp.stop()
    assert rp.state is S.STOPPED


def test_attach_without_a_running_firmware_is_refused():
    _, rp = machine()
    with pytest.raises(ValueError, match="no firmware was left running"):
        rp.attach()
    assert rp.state is S.OFFLINE


def test_every_state_change_is_a_row_of_the_transition_table():
    # h11's rule 1: nothing changes the state around the table.  Run the whole life
    # cycle, platform reports included, and check each recorded change.
    ops, rp = machine()
    rp.config()
    rp.load(TableFirmware(table(), 0x1000))
    rp.start()
    rp.crashed("watchdog")
    rp.recover()
    rp.exited("the firmware returned 0")
    rp.config()
    rp.load(TableFirmware(table(), 0x1000))
    rp.start()
    rp.detach()
    ops.loaded_table_da = 0x1000  # the firmware we left running keeps its table there
    rp.attach()
    rp.stop()
    rp.shutdown()
    allowed = {(old, new) for moves in TRANSITIONS.values() for old, new in moves.items()}
    changes = [(e.old, e.new) for e in rp.history]
    assert len(changes) == 11  # load keeps "ready": no change to record
    assert [c for c in changes if c not in allowed] == []


@pytest.mark.parametrize("report", ["crashed", "exited"])
def test_a_late_platform_report_changes_nothing(report):
    ops, rp = machine()
    rp.config()
    rp.load(TableFirmware(table(), 0x1000))
    rp.start()
    rp.stop()
    before = list(rp.history)
    getattr(rp, report)("the process went away after the stop")
    assert rp.state is S.STOPPED and rp.history == before and rp.crash_count == 0


def test_a_firmware_that_ends_by_itself_is_stopped_not_crashed():
    ops, rp = machine()
    rp.config()
    rp.load(TableFirmware(table(), 0x1000))
    rp.start()
    rp.exited("status 0")
    assert rp.state is S.STOPPED and rp.history[-1].reason == "status 0"


def test_a_failed_recovery_leaves_the_remote_in_error():
    ops, rp = machine()
    rp.config()
    rp.load(TableFirmware(table(), 0x1000))
    rp.start()

    def refuse(_rproc):
        raise FirmwareImageError("the image is gone")

    ops.start = refuse  # type: ignore[method-assign]
    rp.recovery = True
    rp.crashed("watchdog")
    assert rp.state is S.ERROR
    assert [e.new for e in rp.history[-2:]] == [S.CRASHED, S.ERROR]

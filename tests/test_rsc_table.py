"""Resource tables: the wire layout, the strict parser, the builder and the linter."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from openamp.errors import ResourceTableError
from openamp.remoteproc import (
    CARVEOUT,
    FW_RSC_ADDR_ANY,
    RSC_CARVEOUT,
    RSC_DEVMEM,
    RSC_LAST,
    RSC_TRACE,
    RSC_VDEV,
    TRACE,
    VDEV,
    VDEV_CONFIG_LEN_OFFSET,
    VDEV_DFEATURES_OFFSET,
    VDEV_GFEATURES_OFFSET,
    VDEV_NOTIFYID_OFFSET,
    VDEV_NUM_VRINGS_OFFSET,
    VDEV_STATUS_OFFSET,
    VDEV_VRING,
    VDEV_VRINGS_OFFSET,
    VENDOR,
    VIRTIO_ID_RPMSG,
    Carveout,
    Devmem,
    Entry,
    ResourceTable,
    Trace,
    UnknownEntry,
    Vdev,
    VdevVring,
    Vendor,
    entry_type_name,
)

CONFORMANCE = Path(__file__).resolve().parent / "conformance"  # vendored C captures
GOLDEN_SIZE = 88
VDEV_AT = 20  # the Linux-generic table's only entry


def conformance_bytes(name: str) -> bytes:
    """A capture file; the shared-memory images are stored gzipped."""
    if name.endswith(".bin"):
        return gzip.decompress((CONFORMANCE / f"{name}.gz").read_bytes())
    return (CONFORMANCE / name).read_bytes()


def linux_generic_table() -> ResourceTable:
    """The table of the C library's Linux "generic" machine, built in code."""
    return ResourceTable(
        [
            Vdev(
                id=VIRTIO_ID_RPMSG,
                notifyid=0,
                dfeatures=1,
                vrings=[VdevVring(0x4000, 0x1000, 256, 1), VdevVring(0x8000, 0x1000, 256, 2)],
            )
        ]
    )


def every_kind_table() -> ResourceTable:
    return ResourceTable(
        [
            Carveout(da=0x1000_0000, pa=0x3000_0000, len=0x10_0000, flags=3, name="text"),
            Devmem(da=0x4000_0000, pa=0x4000_0000, len=0x1000, name="uart"),
            Trace(da=0x2000_0000, len=0x4000, name="trace0"),
            Vdev(
                id=VIRTIO_ID_RPMSG,
                notifyid=0,
                dfeatures=1,
                gfeatures=1,
                status=4,
                vrings=[VdevVring(0x4000, 0x1000, 256, 1), VdevVring(0x8000, 0x1000, 256, 2)],
                config=b"\x01\x02\x03\x04\x05",
            ),
            Vendor(130, b"vendor-data"),
            UnknownEntry(9, b"\xaa\xbb\xcc"),
            UnknownEntry(600, b""),
        ]
    )


def golden_bytes() -> bytearray:
    return bytearray(linux_generic_table().to_bytes())


def parse_error(data: bytes | bytearray) -> ResourceTableError:
    with pytest.raises(ResourceTableError) as info:
        ResourceTable.parse(data)
    return info.value


def table_bytes(entries: list[bytes], offsets: list[int] | None = None) -> bytes:
    """Hand-assemble a table: header, offsets (default: back to back), raw entry bytes."""
    header_end = 16 + 4 * len(entries)
    if offsets is None:
        offsets, position = [], header_end
        for body in entries:
            offsets.append(position)
            position += len(body)
    head = struct.pack(f"<IIII{len(offsets)}I", 1, len(offsets), 0, 0, *offsets)
    return head + b"".join(entries)


# -- the layout itself -------------------------------------------------------------------


def test_entry_layouts_have_the_c_sizes() -> None:
    assert (CARVEOUT.size, TRACE.size, VDEV.size, VDEV_VRING.size, VENDOR.size) == (
        56,
        48,
        28,
        20,
        8,
    )


def test_vdev_field_offsets_match_fw_rsc_vdev() -> None:
    assert VDEV_NOTIFYID_OFFSET == 8
    assert VDEV_DFEATURES_OFFSET == 12
    assert VDEV_GFEATURES_OFFSET == 16
    assert VDEV_CONFIG_LEN_OFFSET == 20
    assert VDEV_STATUS_OFFSET == 24
    assert VDEV_NUM_VRINGS_OFFSET == 25
    assert VDEV_VRINGS_OFFSET == 28


def test_vdev_offsets_address_the_fields_of_a_live_table() -> None:
    raw = golden_bytes()
    raw[VDEV_AT + VDEV_STATUS_OFFSET] = 4
    struct.pack_into("<I", raw, VDEV_AT + VDEV_GFEATURES_OFFSET, 1)
    vdev = ResourceTable.parse(raw).vdevs()[0]
    assert (vdev.status, vdev.gfeatures) == (4, 1)
    assert raw[VDEV_AT + VDEV_NUM_VRINGS_OFFSET] == 2


@pytest.mark.parametrize(
    ("entry_type", "name"),
    [
        (RSC_CARVEOUT, "RSC_CARVEOUT"),
        (RSC_DEVMEM, "RSC_DEVMEM"),
        (RSC_TRACE, "RSC_TRACE"),
        (RSC_VDEV, "RSC_VDEV"),
        (RSC_LAST, "RSC_LAST"),
        (128, "RSC_VENDOR_128"),
        (512, "RSC_VENDOR_512"),
        (5, "RSC_UNKNOWN_5"),
        (513, "RSC_UNKNOWN_513"),
    ],
)
def test_entry_type_names(entry_type: int, name: str) -> None:
    assert entry_type_name(entry_type) == name


# -- golden tables from the C reference --------------------------------------------------


def test_linux_generic_table_builds_to_the_c_bytes() -> None:
    golden = conformance_bytes("a_initial.bin")[:GOLDEN_SIZE]
    assert linux_generic_table().to_bytes() == golden


def test_linux_generic_table_parses_to_the_c_fields() -> None:
    golden = conformance_bytes("a_initial.bin")[:GOLDEN_SIZE]
    table = ResourceTable.parse(golden)
    assert table == linux_generic_table()
    assert table.offsets == [VDEV_AT]
    assert table.size == GOLDEN_SIZE
    (vdev,) = table.vdevs()
    assert (vdev.id, vdev.notifyid, vdev.dfeatures, vdev.gfeatures, vdev.status) == (7, 0, 1, 0, 0)
    assert vdev.config_len == 0
    assert [(v.da, v.align, v.num, v.notifyid) for v in vdev.vrings] == [
        (0x4000, 0x1000, 256, 1),
        (0x8000, 0x1000, 256, 2),
    ]


def test_bound_table_shows_the_drivers_gfeatures_and_status() -> None:
    bound = conformance_bytes("c_bound.bin")[:GOLDEN_SIZE]
    (vdev,) = ResourceTable.parse(bound).vdevs()
    assert vdev.gfeatures == 1
    assert vdev.status == 4


def test_parse_ignores_the_rest_of_the_shared_memory_image() -> None:
    image = conformance_bytes("a_initial.bin")
    assert ResourceTable.parse(image) == linux_generic_table()


def _assert_contains(expected: Any, actual: Any, path: str = "resource_table") -> None:
    if isinstance(expected, dict):
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing"
            _assert_contains(value, actual[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(expected) == len(actual), path
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            _assert_contains(e, a, f"{path}[{i}]")
    else:
        assert expected == actual, path


def test_to_dict_has_every_field_of_the_conformance_json() -> None:
    golden = conformance_bytes("a_initial.bin")[:GOLDEN_SIZE]
    expected = json.loads(conformance_bytes("a_initial.json"))["resource_table"]
    actual = ResourceTable.parse(golden).to_dict()
    _assert_contains(expected, actual)
    assert json.loads(json.dumps(actual)) == actual


def test_linux_generic_table_has_no_findings() -> None:
    assert linux_generic_table().check() == []


# -- building and round trips ------------------------------------------------------------

ONE_OF_EACH: list[Entry] = list(every_kind_table().entries)


@pytest.mark.parametrize("entry", ONE_OF_EACH, ids=lambda e: entry_type_name(e.type))
def test_each_entry_kind_round_trips(entry: Entry) -> None:
    table = ResourceTable([entry])
    data = table.to_bytes()
    parsed = ResourceTable.parse(data)
    assert parsed == table
    assert parsed.to_bytes() == data


def test_a_table_with_every_kind_round_trips() -> None:
    table = every_kind_table()
    data = table.to_bytes()
    assert len(data) == table.size
    assert ResourceTable.parse(data) == table
    assert ResourceTable.parse(data).to_bytes() == data


def test_entries_are_laid_out_back_to_back_after_the_offset_array() -> None:
    table = every_kind_table()
    sizes = [entry.size for entry in table.entries]
    expected, position = [], 16 + 4 * len(sizes)
    for size in sizes:
        expected.append(position)
        position += size
    assert table.offsets == expected
    assert ResourceTable.parse(table.to_bytes()).offsets == expected


def test_vdev_size_and_config_len_follow_vrings_and_config() -> None:
    vdev = Vdev(id=7, notifyid=0, dfeatures=0, vrings=[VdevVring(0, 16, 4, 1)], config=b"abc")
    assert vdev.config_len == 3
    assert vdev.size == 28 + 20 + 3
    assert ResourceTable([vdev]).to_bytes()[16 + 4 + VDEV_CONFIG_LEN_OFFSET] == 3


def test_vendor_len_counts_the_len_word_and_the_data() -> None:
    data = ResourceTable([Vendor(200, b"12345")]).to_bytes()
    assert struct.unpack_from("<II", data, 20) == (200, 9)
    assert data[28:] == b"12345"


def test_unknown_entry_keeps_the_bytes_up_to_the_next_entry() -> None:
    trace = TRACE.pack(RSC_TRACE, 0x1000, 0x100, 0, b"t")
    data = table_bytes([struct.pack("<I", 77) + b"opaque", trace])
    table = ResourceTable.parse(data)
    assert table.entries == [UnknownEntry(77, b"opaque"), Trace(0x1000, 0x100, "t")]


def test_parsed_offsets_keep_gaps_and_to_bytes_removes_them() -> None:
    trace = TRACE.pack(RSC_TRACE, 0x1000, 0x100, 0, b"t")
    padded = struct.pack("<IIIIII", 1, 2, 0, 0, 32, 88) + bytes(8) + trace + bytes(8) + trace
    table = ResourceTable.parse(padded)
    assert table.offsets == [32, 88]
    assert ResourceTable.parse(table.to_bytes()).offsets == [24, 72]


def test_offsets_follow_the_layout_once_entries_change() -> None:
    padded = struct.pack("<IIIII", 1, 1, 0, 0, 40) + bytes(20) + TRACE.pack(RSC_TRACE, 1, 2, 0, b"")
    table = ResourceTable.parse(padded)
    assert table.offsets == [40]
    table.entries.insert(0, Trace(0x2000, 0x100))
    assert table.offsets == [24, 72]


def test_names_stop_at_the_first_nul() -> None:
    raw = CARVEOUT.pack(RSC_CARVEOUT, 0, 0, 0x1000, 0, 0, b"fw\0garbage")
    (carveout,) = ResourceTable.parse(table_bytes([raw])).carveouts()
    assert carveout.name == "fw"


def test_parse_accepts_bytearray_and_memoryview() -> None:
    raw = golden_bytes()
    assert ResourceTable.parse(raw) == ResourceTable.parse(memoryview(raw))


def test_find_returns_the_offset_and_entry_like_find_rsc() -> None:
    table = every_kind_table()
    offsets = table.offsets
    assert table.find(RSC_VDEV) == (offsets[3], table.entries[3])
    assert table.find(130) == (offsets[4], table.entries[4])


def test_find_counts_entries_of_the_same_type() -> None:
    table = ResourceTable([Trace(0x1000, 16, "a"), Carveout(0, 0, 16), Trace(0x2000, 16, "b")])
    found = table.find(RSC_TRACE, 1)
    assert found is not None
    assert found == (table.offsets[2], Trace(0x2000, 16, "b"))


def test_find_returns_none_when_there_is_no_such_entry() -> None:
    assert linux_generic_table().find(RSC_CARVEOUT) is None
    assert linux_generic_table().find(RSC_VDEV, 1) is None


def test_helpers_list_entries_by_kind() -> None:
    table = every_kind_table()
    assert table.carveouts() == [table.entries[0]]
    assert table.traces() == [table.entries[2]]
    assert table.vdevs() == [table.entries[3]]


def test_to_dict_describes_vendor_and_unknown_entries_as_hex() -> None:
    described = every_kind_table().to_dict()["entries"]
    assert described[4]["type_name"] == "RSC_VENDOR_130"
    assert described[4]["len"] == 4 + len(b"vendor-data")
    assert described[4]["data"] == b"vendor-data".hex()
    assert described[5] | {"offset": 0} == {
        "index": 5,
        "offset": 0,
        "type": 9,
        "type_name": "RSC_UNKNOWN_9",
        "data": "aabbcc",
    }


def test_a_table_built_with_nonzero_reserved_is_written_as_given() -> None:
    data = ResourceTable([Trace(0x1000, 16, reserved=7)]).to_bytes()
    assert struct.unpack_from("<I", data, 20 + 12) == (7,)


# -- building refuses descriptions it cannot encode --------------------------------------


def build_error(*entries: object) -> ResourceTableError:
    with pytest.raises(ResourceTableError) as info:
        ResourceTable(list(entries)).to_bytes()  # type: ignore[arg-type]
    return info.value


def test_a_name_longer_than_31_bytes_is_refused() -> None:
    error = build_error(Trace(0x1000, 16, "ok"), Carveout(0, 0, 16, name="x" * 32))
    assert error.entry == 1
    assert "too long" in error.reason


def test_a_name_of_31_bytes_fits() -> None:
    data = ResourceTable([Carveout(0, 0, 16, name="x" * 31)]).to_bytes()
    assert ResourceTable.parse(data).carveouts()[0].name == "x" * 31


def test_a_non_ascii_name_is_refused() -> None:
    error = build_error(Trace(0x1000, 16, "trace-é"))
    assert (error.entry, "ASCII" in error.reason) == (0, True)


def test_a_field_that_does_not_fit_its_width_is_refused() -> None:
    error = build_error(Vdev(id=7, notifyid=0, dfeatures=0, status=256))
    assert error.entry == 0
    assert "status" in error.reason and "u8" in error.reason


def test_a_vendor_type_outside_the_vendor_range_is_refused() -> None:
    error = build_error(Vendor(127, b""))
    assert (error.entry, "RSC_VENDOR_START" in error.reason) == (0, True)


def test_an_unknown_entry_with_a_defined_type_is_refused() -> None:
    assert build_error(UnknownEntry(RSC_VDEV, b"")).entry == 0
    assert build_error(UnknownEntry(300, b"")).entry == 0


def test_something_that_is_not_an_entry_is_refused() -> None:
    assert "not a resource-table entry" in build_error("vdev").reason


def test_a_name_with_a_nul_byte_is_refused() -> None:
    assert "NUL" in build_error(Trace(0x1000, 16, "a\0b")).reason


def test_more_than_255_vrings_are_refused() -> None:
    vdev = Vdev(id=7, notifyid=0, dfeatures=0, vrings=[VdevVring(0, 16, 4, 1)] * 256)
    assert "num_of_vrings" in build_error(vdev).reason


def test_config_that_is_not_bytes_is_refused() -> None:
    vdev = Vdev(id=7, notifyid=0, dfeatures=0, config=3)  # type: ignore[arg-type]
    assert "config must be bytes" in build_error(vdev).reason


def test_buffers_given_as_config_or_data_are_stored_as_bytes() -> None:
    assert Vdev(id=7, notifyid=0, dfeatures=0, config=bytearray(b"ab")).config == b"ab"
    assert Vendor(200, memoryview(b"xy")).data == b"xy"
    assert UnknownEntry(9, bytearray(b"z")).data == b"z"


# -- strict parsing: malformed tables ----------------------------------------------------


def test_a_table_shorter_than_its_header_is_rejected() -> None:
    error = parse_error(b"\x01\0\0\0\0\0\0\0")
    assert error.entry is None
    assert "header" in error.reason


def test_a_wrong_version_is_rejected() -> None:
    raw = golden_bytes()
    raw[0] = 2
    error = parse_error(raw)
    assert error.entry is None
    assert "version 2" in error.reason


def test_nonzero_reserved_header_words_are_rejected() -> None:
    raw = golden_bytes()
    raw[12] = 1
    error = parse_error(raw)
    assert error.entry is None
    assert "reserved" in error.reason


def test_an_offset_array_running_past_the_end_is_rejected() -> None:
    raw = golden_bytes()
    struct.pack_into("<I", raw, 4, 100)
    error = parse_error(raw)
    assert error.entry is None
    assert "offset array" in error.reason and "truncated" in error.reason


def test_an_entry_offset_past_the_end_is_rejected() -> None:
    raw = golden_bytes()
    struct.pack_into("<I", raw, 16, GOLDEN_SIZE - 2)
    error = parse_error(raw)
    assert (error.entry, error.offset) == (0, GOLDEN_SIZE - 2)
    assert "out of range" in error.reason


def test_an_entry_offset_inside_the_header_is_rejected() -> None:
    raw = golden_bytes()
    struct.pack_into("<I", raw, 16, 4)
    error = parse_error(raw)
    assert error.entry == 0
    assert "inside the table header" in error.reason


def test_the_failing_entry_is_named_by_its_index() -> None:
    trace = TRACE.pack(RSC_TRACE, 0x1000, 16, 0, b"")
    error = parse_error(table_bytes([trace, trace[:-1]]))
    assert error.entry == 1
    assert str(error).startswith("entry 1 at offset 0x48:")


def test_a_truncated_carveout_is_rejected() -> None:
    raw = CARVEOUT.pack(RSC_CARVEOUT, 0, 0, 16, 0, 0, b"")
    error = parse_error(table_bytes([raw[:40]]))
    assert error.entry == 0
    assert "truncated RSC_CARVEOUT" in error.reason


def test_a_vdev_whose_vrings_run_past_the_end_is_rejected() -> None:
    raw = golden_bytes()
    raw[VDEV_AT + VDEV_NUM_VRINGS_OFFSET] = 3
    error = parse_error(raw)
    assert error.entry == 0
    assert "truncated RSC_VDEV" in error.reason and "3 vrings" in error.reason


def test_a_vdev_cut_inside_its_vrings_is_rejected() -> None:
    error = parse_error(golden_bytes()[: GOLDEN_SIZE - 1])
    assert error.entry == 0
    assert "vrings" in error.reason


def test_a_vdev_whose_config_space_runs_past_the_end_is_rejected() -> None:
    raw = golden_bytes()
    struct.pack_into("<I", raw, VDEV_AT + VDEV_CONFIG_LEN_OFFSET, 8)
    error = parse_error(raw)
    assert error.entry == 0
    assert "config_len 8" in error.reason


@pytest.mark.parametrize(
    ("entry", "what"),
    [
        (Carveout(0, 0, 16, reserved=1), "RSC_CARVEOUT reserved"),
        (Devmem(0, 0, 16, reserved=1), "RSC_DEVMEM reserved"),
        (Trace(0x1000, 16, reserved=1), "RSC_TRACE reserved"),
        (Vdev(id=7, notifyid=0, dfeatures=0, reserved=1), "RSC_VDEV reserved"),
    ],
    ids=["carveout", "devmem", "trace", "vdev"],
)
def test_nonzero_reserved_fields_in_entries_are_rejected(entry: Entry, what: str) -> None:
    data = ResourceTable([Trace(0x1000, 16), entry]).to_bytes()
    error = parse_error(data)
    assert error.entry == 1
    assert what in error.reason and "must be zero" in error.reason


def test_a_vring_pa_word_is_kept_not_rejected() -> None:
    # Linux names the vring's last word ``pa`` (older headers: ``reserved``) and may set it.
    vdev = Vdev(
        id=7, notifyid=0, dfeatures=0, vrings=[VdevVring(0x4000, 16, 4, 1, reserved=0x4000)]
    )
    table = ResourceTable.parse(ResourceTable([vdev]).to_bytes())
    assert table.vdevs()[0].vrings[0].reserved == 0x4000


def test_a_vendor_len_below_four_is_rejected() -> None:
    error = parse_error(table_bytes([VENDOR.pack(140, 3) + b"\0" * 8]))
    assert error.entry == 0
    assert "len 3" in error.reason and "inconsistent" in error.reason


def test_a_vendor_len_running_past_the_end_is_rejected() -> None:
    error = parse_error(table_bytes([VENDOR.pack(140, 100) + b"\0" * 8]))
    assert error.entry == 0
    assert "len 100" in error.reason and "inconsistent" in error.reason


def test_a_vendor_entry_without_room_for_its_len_word_is_rejected() -> None:
    error = parse_error(table_bytes([struct.pack("<I", 140)]))
    assert error.entry == 0
    assert "truncated vendor" in error.reason


# -- check(): warnings, not errors -------------------------------------------------------


def vdev_with(*vrings: VdevVring, notifyid: int = 0) -> Vdev:
    return Vdev(id=7, notifyid=notifyid, dfeatures=1, vrings=vrings)


def findings_about(table: ResourceTable, text: str) -> list[str]:
    return [finding for finding in table.check() if text in finding]


def test_check_reports_a_vring_num_that_is_not_a_power_of_two() -> None:
    table = ResourceTable([vdev_with(VdevVring(0x4000, 0x1000, 100, 1))])
    assert findings_about(table, "num 100 is not a power of two")


def test_check_reports_a_vring_align_that_is_not_a_power_of_two() -> None:
    table = ResourceTable([vdev_with(VdevVring(0x4000, 0x1800, 256, 1))])
    assert findings_about(table, "align 0x1800 is not a power of two")


def test_check_reports_overlapping_vrings() -> None:
    table = ResourceTable(
        [vdev_with(VdevVring(0x4000, 0x1000, 256, 1), VdevVring(0x6000, 0x1000, 256, 2))]
    )
    assert findings_about(table, "overlap (vring memory)")


def test_check_reports_carveouts_overlapping_in_device_addresses() -> None:
    table = ResourceTable([Carveout(0x1000, 0x10000, 0x1000), Carveout(0x1800, 0x20000, 0x1000)])
    assert findings_about(table, "carveout device addresses")
    assert not findings_about(table, "carveout physical addresses")


def test_check_reports_carveouts_overlapping_in_physical_addresses() -> None:
    table = ResourceTable([Carveout(0x1000, 0x10000, 0x1000), Carveout(0x8000, 0x10800, 0x1000)])
    assert findings_about(table, "carveout physical addresses")


def test_check_ignores_carveouts_that_ask_for_any_address() -> None:
    table = ResourceTable(
        [
            Carveout(FW_RSC_ADDR_ANY, FW_RSC_ADDR_ANY, 0x1000),
            Carveout(FW_RSC_ADDR_ANY, FW_RSC_ADDR_ANY, 0x1000),
        ]
    )
    assert table.check() == []


def test_check_reports_duplicate_notify_ids() -> None:
    table = ResourceTable(
        [vdev_with(VdevVring(0x4000, 0x1000, 256, 1), VdevVring(0x8000, 0x1000, 256, 1))]
    )
    assert findings_about(table, "notify id 1 is used by")


def test_check_reports_notify_ids_the_c_library_cannot_allocate() -> None:
    table = ResourceTable([vdev_with(VdevVring(0x4000, 0x1000, 256, 64))])
    assert findings_about(table, "notify id 64 is >= 64")


def test_check_reports_a_trace_buffer_of_length_zero() -> None:
    assert findings_about(ResourceTable([Trace(0x1000, 0)]), "len 0")


def test_check_reports_a_vdev_without_vrings() -> None:
    assert findings_about(ResourceTable([vdev_with()]), "no vrings")


def test_check_reports_more_vrings_than_linux_accepts() -> None:
    vrings = [VdevVring(0x10000 * (k + 1), 0x1000, 16, k + 1) for k in range(3)]
    assert findings_about(ResourceTable([vdev_with(*vrings)]), "Linux accepts at most 2")


@pytest.mark.parametrize("entry_type", [RSC_LAST, 127, 513])
def test_check_reports_entries_of_undefined_types(entry_type: int) -> None:
    table = ResourceTable([UnknownEntry(entry_type, b"")])
    assert findings_about(table, "not a defined resource type")


def test_check_reports_misaligned_and_overlapping_entries_of_a_parsed_table() -> None:
    trace = TRACE.pack(RSC_TRACE, 0x1000, 16, 0, b"")
    data = table_bytes([trace + b"\0\0"], offsets=[26, 24]) + trace
    table = ResourceTable.parse(data)
    assert findings_about(table, "offset 0x1a is not 4-byte aligned")
    assert findings_about(table, "overlap (table bytes)")


def test_check_reports_names_without_a_nul_terminator() -> None:
    raw = CARVEOUT.pack(RSC_CARVEOUT, 0, 0, 16, 0, 0, b"n" * 32)
    table = ResourceTable.parse(table_bytes([raw]))
    assert findings_about(table, "no room for the NUL terminator")


def test_check_reports_names_with_non_ascii_bytes() -> None:
    raw = TRACE.pack(RSC_TRACE, 0x1000, 16, 0, b"tr\xffce")
    table = ResourceTable.parse(table_bytes([raw]))
    assert findings_about(table, "non-ASCII")


def test_check_reports_vrings_asking_for_a_dynamic_address() -> None:
    table = ResourceTable([vdev_with(VdevVring(FW_RSC_ADDR_ANY, 0x1000, 256, 0xFFFFFFFF))])
    assert findings_about(table, "da is FW_RSC_ADDR_ANY")
    assert not findings_about(table, "notify id")


# -- untrusted input: nothing but tables and ResourceTableError --------------------------


def parse_or_refuse(data: bytes) -> None:
    """Parse; if it works, everything else on the table works or refuses cleanly too."""
    try:
        table = ResourceTable.parse(data)
    except ResourceTableError:
        return
    assert isinstance(table.check(), list)
    json.dumps(table.to_dict())
    try:
        rebuilt = table.to_bytes()
    except ResourceTableError:
        return  # e.g. a parsed 32-byte name that cannot be written back
    assert ResourceTable.parse(rebuilt) == table


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEED_TABLES = [golden_bytes(), bytearray(every_kind_table().to_bytes())]


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_a_table_or_a_resource_table_error(data: bytes) -> None:
    parse_or_refuse(data)


@st.composite
def plausible_tables(draw: st.DrawFn) -> bytes:
    """A valid header whose offsets point into a mostly-zero body with random type words.

    Reaches the entry parsers with overlapping, duplicate and out-of-range offsets.
    """
    num = draw(st.integers(0, 6))
    header_end = 16 + 4 * num
    body = bytearray(draw(st.integers(0, 300)))
    for position, value in draw(st.lists(st.tuples(st.integers(0, 299), st.integers(0, 255)))):
        if position < len(body):
            body[position] = value
    types = st.sampled_from([0, 1, 2, 3, 4, 77, 128, 300, 512, 513, 0xFFFFFFFF])
    starts = st.integers(header_end, header_end + len(body) + 8)
    offsets = draw(st.lists(starts, min_size=num, max_size=num))
    table = bytearray(struct.pack(f"<IIII{num}I", 1, num, 0, 0, *offsets) + body)
    for offset in offsets:
        if offset + 4 <= len(table):
            struct.pack_into("<I", table, offset, draw(types))
    return bytes(table)


@FUZZ
@given(plausible_tables())
def test_random_entries_give_a_table_or_a_resource_table_error(data: bytes) -> None:
    parse_or_refuse(data)


u32 = st.integers(0, 0xFFFFFFFF)
names = st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=31)
any_vring = st.builds(VdevVring, u32, u32, u32, u32)
any_entry: st.SearchStrategy[Entry] = st.one_of(
    st.builds(Carveout, u32, u32, u32, u32, names),
    st.builds(Devmem, u32, u32, u32, u32, names),
    st.builds(Trace, u32, u32, names),
    st.builds(
        Vdev,
        u32,
        u32,
        u32,
        u32,
        st.integers(0, 255),
        st.lists(any_vring, max_size=4),
        st.binary(max_size=16),
    ),
    st.builds(Vendor, st.integers(128, 512), st.binary(max_size=16)),
    st.builds(
        UnknownEntry,
        st.integers(4, 127) | st.integers(513, 0xFFFFFFFF),
        st.binary(max_size=16),
    ),
)
any_table = st.builds(ResourceTable, st.lists(any_entry, max_size=5))


@FUZZ
@given(any_table)
def test_any_table_built_in_code_round_trips(table: ResourceTable) -> None:
    data = table.to_bytes()
    assert len(data) == table.size
    parsed = ResourceTable.parse(data)
    assert parsed == table
    assert parsed.offsets == table.offsets


def mutate(seed: bytes, flips: list[tuple[int, int]], cut: int) -> bytes:
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    return bytes(data[: len(data) - cut % (len(data) + 1)])


byte_flips = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8)
cuts = st.integers(0, 10_000) | st.just(0)


@FUZZ
@given(st.sampled_from(SEED_TABLES), byte_flips, cuts)
def test_mutated_golden_tables_give_a_table_or_a_resource_table_error(
    seed: bytearray, flips: list[tuple[int, int]], cut: int
) -> None:
    parse_or_refuse(mutate(bytes(seed), flips, cut))


@FUZZ
@given(any_table, byte_flips, cuts)
def test_mutated_built_tables_give_a_table_or_a_resource_table_error(
    table: ResourceTable, flips: list[tuple[int, int]], cut: int
) -> None:
    parse_or_refuse(mutate(table.to_bytes(), flips, cut))

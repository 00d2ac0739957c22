"""ELF firmware images: checks, resource-table lookup, segment loading and image stores.

Most images here are ELF32 little-endian ARM files built byte by byte by
:func:`build_elf32`, so each test can break exactly one field.  One test compiles a real
ELF64 with gcc and compares what we find with ``readelf``.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from openamp.errors import (
    FirmwareImageError,
    InvalidStateError,
    OpenAMPError,
    RegionBoundsError,
    ResourceTableError,
)
from openamp.metal import AddressSpace, IoRegion
from openamp.remoteproc import (
    VIRTIO_ID_RPMSG,
    BytesImageStore,
    Carveout,
    ElfImage,
    FileImageStore,
    ImageStore,
    ResourceTable,
    RscTableLocation,
    Segment,
    StreamingImageStore,
    Trace,
    Vdev,
    VdevVring,
    is_elf,
    load_segments,
    open_image,
)

# -- a tiny ELF32 writer -----------------------------------------------------------------

EHDR32 = struct.Struct("<16sHHIIIIIHHHHHH")
PHDR32 = struct.Struct("<8I")
SHDR32 = struct.Struct("<10I")
assert (EHDR32.size, PHDR32.size, SHDR32.size) == (52, 32, 40)

ET_EXEC = 2
EM_ARM = 40
PT_LOAD = 1
PT_NOTE = 4
PF_X, PF_W, PF_R = 1, 2, 4
SHT_PROGBITS, SHT_STRTAB, SHT_NOBITS = 1, 3, 8
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4

# p_* and sh_* fields by position in their (all-u32) ELF32 structs
P_OFFSET, P_PADDR, P_FILESZ, P_MEMSZ = 1, 3, 4, 5
SH_OFFSET = 4

TCM_BASE, TCM_SIZE = 0x0, 0x10000
DDR_BASE, DDR_SIZE = 0x10000000, 0x100000
GARBAGE = 0xA5


@dataclass
class SegmentSpec:
    """A PT_LOAD segment to write: its bytes and where they go."""

    paddr: int
    data: bytes
    memsz: int
    flags: int = PF_R
    p_type: int = PT_LOAD


@dataclass
class SectionSpec:
    """A section inside segment ``segment`` at ``start`` (``segment=None``: not allocated,
    its bytes placed after the segments)."""

    name: str
    segment: int | None
    start: int
    size: int
    sh_type: int = SHT_PROGBITS
    flags: int = SHF_ALLOC


@dataclass
class Built:
    """An image and where the builder put things."""

    data: bytes
    segment_offsets: list[int]
    sections: dict[str, tuple[int, int, int]]  # name -> (sh_addr, sh_offset, sh_size)
    section_index: dict[str, int] = field(default_factory=dict)
    shoff: int = 0


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def build_elf32(
    segments: list[SegmentSpec],
    sections: list[SectionSpec],
    *,
    entry: int = 0x101,
    machine: int = EM_ARM,
    unallocated: dict[str, bytes] | None = None,
) -> Built:
    """Ehdr, Phdrs, segment bytes, non-allocated section bytes, .shstrtab, Shdrs."""
    unallocated = unallocated or {}
    out = bytearray(EHDR32.size + PHDR32.size * len(segments))
    seg_offsets = []
    for seg in segments:
        out += bytes(_align(len(out), 0x100) - len(out))
        seg_offsets.append(len(out))
        out += seg.data
    loose = {}
    for name, blob in unallocated.items():
        out += bytes(_align(len(out), 16) - len(out))
        loose[name] = len(out)
        out += blob

    names = [s.name for s in sections] + list(unallocated) + [".shstrtab"]
    strtab = bytearray(b"\0")
    name_at = {}
    for name in names:
        name_at[name] = len(strtab)
        strtab += name.encode() + b"\0"
    shstrtab_off = len(out)
    out += strtab

    shdrs = [SHDR32.pack(*[0] * 10)]
    placed: dict[str, tuple[int, int, int]] = {}
    index: dict[str, int] = {}
    for sec in sections:
        assert sec.segment is not None
        seg = segments[sec.segment]
        addr = seg.paddr + sec.start
        offset = seg_offsets[sec.segment] + sec.start
        shdrs.append(
            SHDR32.pack(
                name_at[sec.name], sec.sh_type, sec.flags, addr, offset, sec.size, 0, 0, 4, 0
            )
        )
        index[sec.name] = len(shdrs) - 1
        placed[sec.name] = (addr, offset, sec.size)
    for name, blob in unallocated.items():
        shdrs.append(
            SHDR32.pack(name_at[name], SHT_PROGBITS, 0, 0, loose[name], len(blob), 0, 0, 1, 0)
        )
        index[name] = len(shdrs) - 1
        placed[name] = (0, loose[name], len(blob))
    shdrs.append(
        SHDR32.pack(name_at[".shstrtab"], SHT_STRTAB, 0, 0, shstrtab_off, len(strtab), 0, 0, 1, 0)
    )
    index[".shstrtab"] = len(shdrs) - 1
    out += bytes(_align(len(out), 4) - len(out))
    shoff = len(out)
    out += b"".join(shdrs)

    ident = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
    EHDR32.pack_into(
        out,
        0,
        ident,
        ET_EXEC,
        machine,
        1,
        entry,
        EHDR32.size,
        shoff,
        0x5000000,
        EHDR32.size,
        PHDR32.size,
        len(segments),
        SHDR32.size,
        len(shdrs),
        len(shdrs) - 1,
    )
    for i, seg in enumerate(segments):
        PHDR32.pack_into(
            out,
            EHDR32.size + i * PHDR32.size,
            seg.p_type,
            seg_offsets[i],
            seg.paddr,
            seg.paddr,
            len(seg.data),
            seg.memsz,
            seg.flags,
            0x100,
        )
    return Built(bytes(out), seg_offsets, placed, index, shoff)


# -- the firmware most tests use ---------------------------------------------------------

TABLE = ResourceTable(
    [
        Carveout(da=DDR_BASE, pa=DDR_BASE, len=DDR_SIZE, name="ddr"),
        Trace(da=DDR_BASE + 0x800, len=0x200, name="trace"),
        Vdev(
            id=VIRTIO_ID_RPMSG,
            notifyid=0,
            dfeatures=1,
            vrings=[
                VdevVring(da=DDR_BASE + 0x40000, align=0x1000, num=8, notifyid=1),
                VdevVring(da=DDR_BASE + 0x44000, align=0x1000, num=8, notifyid=2),
            ],
        ),
    ]
)
CODE = bytes(range(256)) * 2
BSS = 0x400
DATA_AT = 0x100  # .data follows the table inside the DDR segment
DATA = b"DATA" * 16


def firmware(table: bytes | None = None, *, debug: int = 0, ddr_paddr: int = DDR_BASE) -> Built:
    """Two segments: code in TCM at 0x0, the table + .data + .bss in DDR."""
    raw = TABLE.to_bytes() if table is None else table
    assert len(raw) <= DATA_AT
    ddr = raw + bytes(DATA_AT - len(raw)) + DATA
    segments = [
        SegmentSpec(TCM_BASE, CODE, len(CODE), PF_R | PF_X),
        SegmentSpec(ddr_paddr, ddr, len(ddr) + BSS, PF_R | PF_W),
    ]
    sections = [
        SectionSpec(".text", 0, 0, len(CODE), flags=SHF_ALLOC | SHF_EXECINSTR),
        SectionSpec(".resource_table", 1, 0, len(raw), flags=SHF_ALLOC | SHF_WRITE),
        SectionSpec(".data", 1, DATA_AT, len(DATA), flags=SHF_ALLOC | SHF_WRITE),
        SectionSpec(".bss", 1, len(ddr), BSS, SHT_NOBITS, SHF_ALLOC | SHF_WRITE),
    ]
    extra = {".debug_info": bytes(range(251)) * (debug // 251 + 1)} if debug else None
    return Built(**vars(build_elf32(segments, sections, unallocated=extra)))


def without_rsc_table() -> Built:
    segments = [SegmentSpec(TCM_BASE, CODE, len(CODE), PF_R | PF_X)]
    return build_elf32(segments, [SectionSpec(".text", 0, 0, len(CODE))])


def patched(data: bytes, offset: int, value: int, fmt: str = "<I") -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def phdr_field(index: int, word: int) -> int:
    return EHDR32.size + index * PHDR32.size + 4 * word


class Memories:
    """TCM and DDR over bytearrays full of garbage, and the ``mmap`` callable for them."""

    def __init__(self) -> None:
        self.tcm = bytearray([GARBAGE]) * TCM_SIZE
        self.ddr = bytearray([GARBAGE]) * DDR_SIZE
        self.space = AddressSpace(
            [
                IoRegion(self.tcm, phys_base=TCM_BASE, name="tcm"),
                IoRegion(self.ddr, phys_base=DDR_BASE, name="ddr"),
            ]
        )
        self.calls: list[tuple[int, int]] = []

    def mmap(self, pa: int, size: int) -> tuple[IoRegion, int]:
        self.calls.append((pa, size))
        return self.space.translate(pa, size)


def load(store_or_bytes: ImageStore | bytes) -> tuple[ElfImage, Memories]:
    image = ElfImage(store_or_bytes)
    mem = Memories()
    load_segments(image, mem.mmap)
    return image, mem


# -- a well-formed ELF32 -----------------------------------------------------------------


def test_elf32_header_fields_are_reported() -> None:
    image = ElfImage(firmware().data)
    assert (image.elf_class, image.machine, image.entry) == (32, "EM_ARM", 0x101)


def test_segments_are_the_pt_load_program_headers_in_order() -> None:
    fw = firmware()
    ddr_len = DATA_AT + len(DATA)
    assert ElfImage(fw.data).segments == [
        Segment(0, TCM_BASE, TCM_BASE, fw.segment_offsets[0], len(CODE), len(CODE), PF_R | PF_X),
        Segment(1, DDR_BASE, DDR_BASE, fw.segment_offsets[1], ddr_len, ddr_len + BSS, PF_R | PF_W),
    ]


def test_non_load_program_headers_are_not_segments() -> None:
    segments = [
        SegmentSpec(0x0, b"note", 4, p_type=PT_NOTE),
        SegmentSpec(0x100, CODE, len(CODE)),
    ]
    image = ElfImage(build_elf32(segments, []).data)
    assert [s.index for s in image.segments] == [1]


def test_segment_bytes_land_at_their_physical_addresses() -> None:
    _, mem = load(firmware().data)
    assert bytes(mem.tcm[: len(CODE)]) == CODE
    assert bytes(mem.ddr[DATA_AT : DATA_AT + len(DATA)]) == DATA
    assert bytes(mem.ddr[: TABLE.size]) == TABLE.to_bytes()


def test_memory_outside_the_segments_is_left_alone() -> None:
    _, mem = load(firmware().data)
    end = DATA_AT + len(DATA) + BSS
    assert set(mem.tcm[len(CODE) :]) == {GARBAGE}
    assert set(mem.ddr[end:]) == {GARBAGE}


def test_bss_is_zero_filled_over_garbage() -> None:
    _, mem = load(firmware().data)
    start = DATA_AT + len(DATA)
    assert bytes(mem.ddr[start : start + BSS]) == bytes(BSS)


def test_mmap_is_asked_for_paddr_and_memsz_of_each_segment() -> None:
    image, mem = load(firmware().data)
    assert mem.calls == [(s.paddr, s.memsz) for s in image.segments]


def test_placement_uses_paddr_not_vaddr() -> None:
    data = firmware().data
    data = patched(data, EHDR32.size + PHDR32.size + 8, 0xC0000000)  # segment 1 p_vaddr
    image, mem = load(data)
    assert image.segments[1].vaddr == 0xC0000000
    assert bytes(mem.ddr[DATA_AT : DATA_AT + len(DATA)]) == DATA


def test_segments_with_zero_memsz_are_skipped() -> None:
    segments = [SegmentSpec(0x20000000, b"", 0), SegmentSpec(0x0, CODE, len(CODE))]
    image = ElfImage(build_elf32(segments, []).data)
    mem = Memories()
    loaded = load_segments(image, mem.mmap)
    assert [s.index for s in loaded] == [1]
    assert mem.calls == [(0x0, len(CODE))]


def test_big_segments_are_copied_in_chunks_of_at_most_one_mib() -> None:
    big = bytes(range(256)) * (3 * 4096 + 7)  # a little over 3 MiB
    image = ElfImage(build_elf32([SegmentSpec(0x0, big, len(big) + 100)], []).data)
    memory = bytearray([GARBAGE]) * (len(big) + 100)
    store = StreamingImageStore(io.BytesIO(image.store.read(0, image.store.size)))
    streamed = ElfImage(store)
    before = store.requests
    load_segments(streamed, lambda pa, size: (IoRegion(memory), pa))
    assert store.requests - before == 4
    assert bytes(memory) == big + bytes(100)


def test_resource_table_location_is_the_resource_table_section() -> None:
    fw = firmware()
    da, offset, size = fw.sections[".resource_table"]
    assert ElfImage(fw.data).rsc_table == RscTableLocation(da=da, offset=offset, size=size)
    assert (da, size) == (DDR_BASE, TABLE.size)


def test_resource_table_is_decoded() -> None:
    image = ElfImage(firmware().data)
    assert image.read_rsc_table() == TABLE.to_bytes()
    assert image.resource_table() == TABLE


def test_is_elf_checks_the_magic_only() -> None:
    assert is_elf(firmware().data)
    assert is_elf(b"\x7fELF\x09")
    assert not is_elf(b"MZ\x90\x00")
    assert not is_elf(BytesImageStore(b"\x7fEL"))
    assert is_elf(BytesImageStore(firmware().data))


def test_an_image_can_be_opened_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "fw.elf"
    path.write_bytes(firmware().data)
    with ElfImage(path) as image:
        assert isinstance(image.store, FileImageStore)
        assert image.name == str(path)
        assert image.resource_table() == TABLE
    with pytest.raises(InvalidStateError):
        image.read_rsc_table()


def test_a_store_passed_in_stays_open_after_the_image_closes() -> None:
    store = BytesImageStore(firmware().data)
    with ElfImage(store) as image:
        pass
    assert image.read_rsc_table() == TABLE.to_bytes()


# -- ELF64 from gcc ----------------------------------------------------------------------

FW_C = r"""
#include <stddef.h>
#include <stdint.h>

struct fw_rsc_carveout {
    uint32_t type, da, pa, len, flags, reserved;
    char name[32];
} __attribute__((packed));
struct fw_rsc_trace {
    uint32_t type, da, len, reserved;
    char name[32];
} __attribute__((packed));
struct fw_rsc_vdev_vring {
    uint32_t da, align, num, notifyid, reserved;
} __attribute__((packed));
struct fw_rsc_vdev {
    uint32_t type, id, notifyid, dfeatures, gfeatures, config_len;
    uint8_t status, num_of_vrings, reserved[2];
    struct fw_rsc_vdev_vring vring[2];
} __attribute__((packed));
struct remote_resource_table {
    uint32_t version, num, reserved[2];
    uint32_t offset[3];
    struct fw_rsc_carveout carveout;
    struct fw_rsc_trace trace;
    struct fw_rsc_vdev vdev;
} __attribute__((packed));

__attribute__((section(".resource_table"), used))
struct remote_resource_table resources = {
    1, 3, {0, 0},
    {
        offsetof(struct remote_resource_table, carveout),
        offsetof(struct remote_resource_table, trace),
        offsetof(struct remote_resource_table, vdev),
    },
    {0, 0x3ed00000, 0x3ed00000, 0x100000, 0, 0, "fw-carveout"},
    {2, 0x3ed10000, 1024, 0, "fw-trace"},
    {3, 7, 0, 1, 0, 0, 0, 2, {0, 0},
     {{0x3ed40000, 0x1000, 256, 1, 0}, {0x3ed44000, 0x1000, 256, 2, 0}}},
};

int main(void) { return (int)resources.num - 3; }
"""

GCC_TABLE = ResourceTable(
    [
        Carveout(da=0x3ED00000, pa=0x3ED00000, len=0x100000, name="fw-carveout"),
        Trace(da=0x3ED10000, len=1024, name="fw-trace"),
        Vdev(
            id=VIRTIO_ID_RPMSG,
            notifyid=0,
            dfeatures=1,
            vrings=[
                VdevVring(da=0x3ED40000, align=0x1000, num=256, notifyid=1),
                VdevVring(da=0x3ED44000, align=0x1000, num=256, notifyid=2),
            ],
        ),
    ]
)


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is required by this test (install binutils/gcc); it is not on PATH"
    return path


@pytest.fixture(scope="module")
def gcc_firmware(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("gcc")
    (tmp / "fw.c").write_text(FW_C)
    r = subprocess.run(
        [_tool("gcc"), "-no-pie", "-O0", "-o", "fw", "fw.c"],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"gcc failed:\n{r.stderr}"
    return tmp / "fw"


def readelf_section(path: Path, name: str) -> tuple[int, int, int]:
    out = subprocess.run(
        [_tool("readelf"), "-S", "-W", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    m = re.search(rf"\]\s+{re.escape(name)}\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s", out)
    assert m, f"readelf shows no {name} section:\n{out}"
    return int(m[1], 16), int(m[2], 16), int(m[3], 16)


def test_gcc_elf64_is_parsed(gcc_firmware: Path) -> None:
    image = ElfImage(gcc_firmware)
    assert image.elf_class == 64
    assert image.machine.startswith("EM_")
    assert image.segments


def test_gcc_elf64_resource_table_equals_the_c_source(gcc_firmware: Path) -> None:
    assert ElfImage(gcc_firmware).resource_table() == GCC_TABLE


def test_gcc_elf64_rsc_table_location_matches_readelf(gcc_firmware: Path) -> None:
    da, offset, size = readelf_section(gcc_firmware, ".resource_table")
    loc = ElfImage(gcc_firmware).rsc_table
    assert loc == RscTableLocation(da=da, offset=offset, size=size)
    assert size == GCC_TABLE.size


def test_gcc_elf64_loads_with_the_table_at_its_address(gcc_firmware: Path) -> None:
    image = ElfImage(gcc_firmware)
    lo = min(s.paddr for s in image.segments)
    hi = max(s.paddr + s.memsz for s in image.segments)
    memory = IoRegion(bytearray(hi - lo), phys_base=lo, name="ram")
    load_segments(image, lambda pa, size: (memory, memory.phys_to_offset(pa, size)))
    loc = image.rsc_table
    assert loc is not None
    assert memory.read_block(memory.phys_to_offset(loc.da), loc.size) == image.read_rsc_table()


# -- malformed images --------------------------------------------------------------------


def refused(data: bytes) -> str:
    with pytest.raises(FirmwareImageError) as info:
        load(data)
    return str(info.value)


def test_not_elf_is_refused() -> None:
    assert "bad magic" in refused(b"MZ" + firmware().data[2:])


def test_empty_image_is_refused_as_not_elf() -> None:
    assert "bad magic" in refused(b"")


def test_elf_class_3_is_refused() -> None:
    data = bytearray(firmware().data)
    data[4] = 3
    assert "unsupported ELF class 3" in refused(bytes(data))


def test_big_endian_is_refused() -> None:
    data = bytearray(firmware().data)
    data[5] = 2
    assert "big-endian images are not supported" in refused(bytes(data))


def test_image_truncated_inside_the_elf_header_is_refused() -> None:
    assert "truncated ELF header" in refused(firmware().data[:40])


def test_image_truncated_after_the_elf_header_is_refused() -> None:
    message = refused(firmware().data[: EHDR32.size])
    assert "truncated program headers: [0x34, 0x74) runs past the end of the image" in message


def test_image_truncated_inside_the_program_headers_is_refused() -> None:
    message = refused(firmware().data[: EHDR32.size + 40])
    assert "truncated program headers" in message


def test_image_truncated_inside_the_section_headers_is_refused() -> None:
    fw = firmware()
    assert "truncated section headers" in refused(fw.data[: fw.shoff + 50])


def test_segment_data_past_eof_is_refused() -> None:
    data = firmware().data
    data = patched(data, phdr_field(1, P_OFFSET), len(data) - 4)
    assert "segment 1 runs past the end of the image: p_offset" in refused(data)


def test_filesz_larger_than_memsz_is_refused() -> None:
    data = patched(firmware().data, phdr_field(0, P_MEMSZ), len(CODE) - 1)
    assert "segment 0 has p_filesz 0x200 > p_memsz 0x1ff" in refused(data)


def test_overlapping_segments_are_refused() -> None:
    data = patched(firmware().data, phdr_field(1, P_PADDR), 0x100)
    message = refused(data)
    assert "segments 0 and 1 overlap in physical address range" in message
    assert "segment 0 [0x0, 0x200)" in message


def test_segment_outside_every_mapped_memory_is_refused() -> None:
    image = ElfImage(firmware(ddr_paddr=0x20000000).data)
    with pytest.raises(FirmwareImageError) as info:
        load_segments(image, Memories().mmap)
    memsz = DATA_AT + len(DATA) + BSS
    assert f"segment 1 at 0x20000000 (+{memsz:#x}) is outside every mapped memory: " in str(
        info.value
    )
    assert isinstance(info.value.__cause__, RegionBoundsError)


def test_mmap_returning_a_too_small_region_is_refused() -> None:
    image = ElfImage(firmware().data)
    tiny = IoRegion(bytearray(16))
    with pytest.raises(FirmwareImageError, match=r"segment 0 at 0x0 .* outside every mapped"):
        load_segments(image, lambda pa, size: (tiny, 0))


def test_missing_resource_table_is_reported_on_read() -> None:
    image = ElfImage(without_rsc_table().data)
    assert image.rsc_table is None
    with pytest.raises(FirmwareImageError, match=r"no \.resource_table section"):
        image.read_rsc_table()


def test_resource_table_past_eof_is_refused() -> None:
    fw = firmware()
    at = fw.shoff + fw.section_index[".resource_table"] * SHDR32.size + 4 * SH_OFFSET
    data = patched(fw.data, at, len(fw.data) - 8)
    assert "section .resource_table (section 2)" in refused(data)
    assert "runs past the end of the image" in refused(data)


def test_bad_resource_table_version_raises_resource_table_error() -> None:
    bad = ResourceTable(TABLE.entries, version=2).to_bytes()
    image = ElfImage(firmware(bad).data)
    with pytest.raises(ResourceTableError, match="unsupported version 2"):
        image.resource_table()


def test_program_header_entry_size_smaller_than_a_phdr_is_refused() -> None:
    data = patched(firmware().data, 42, 8, "<H")  # e_phentsize
    assert "program headers entry size 8 is smaller than an ELF32 program header" in refused(data)


def test_pyelftools_errors_become_firmware_image_errors() -> None:
    # e_phnum = PN_XNUM sends pyelftools to section header 0, which lies past the end.
    data = patched(patched(firmware().data, 44, 0xFFFF, "<H"), 32, 0x7FFFFFF0)
    message = refused(data)
    assert message.startswith("<memory>: malformed ELF header: ")
    assert "past EOF" in message


# -- image stores ------------------------------------------------------------------------


def test_short_read_names_the_store_and_the_range(tmp_path: Path) -> None:
    path = tmp_path / "fw.bin"
    path.write_bytes(b"0123456789")
    with (
        FileImageStore(path) as store,
        pytest.raises(FirmwareImageError, match=rf"truncated: {re.escape(str(path))} has 10 "),
    ):
        store.read(8, 4)
    with pytest.raises(FirmwareImageError, match=re.escape("wanted [0x8, 0xc)")):
        BytesImageStore(b"0123456789").read(8, 4)


def test_file_store_opens_lazily(tmp_path: Path) -> None:
    store = FileImageStore(tmp_path / "not-there-yet.elf")
    (tmp_path / "not-there-yet.elf").write_bytes(b"abc")
    assert store.read(1, 2) == b"bc"
    store.close()


def test_open_image_picks_the_store_by_type(tmp_path: Path) -> None:
    store = BytesImageStore(b"x")
    assert open_image(store) is store
    assert isinstance(open_image(b"\x7fELF"), BytesImageStore)
    assert isinstance(open_image(tmp_path / "fw.elf"), FileImageStore)
    assert isinstance(open_image(str(tmp_path / "fw.elf")), FileImageStore)


def test_streaming_store_skips_a_large_unused_section(tmp_path: Path) -> None:
    fw = firmware(debug=2 << 20)
    path = tmp_path / "fw.elf"
    path.write_bytes(fw.data)
    with path.open("rb") as f:
        store = StreamingImageStore(f)
        image, mem = load(store)
        assert image.resource_table() == TABLE
    assert len(fw.data) > 2 << 20
    assert store.bytes_read < 8 * 1024
    assert bytes(mem.ddr[DATA_AT : DATA_AT + len(DATA)]) == DATA


class ForwardOnly(io.RawIOBase):
    """A pipe-like file object: it can only be read forward."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._data.read(n)


def test_streaming_store_loads_from_a_non_seekable_file_object() -> None:
    fw = firmware(debug=2 << 20)
    store = StreamingImageStore(ForwardOnly(fw.data), size=len(fw.data))
    image, mem = load(store)
    assert not store.seekable
    assert image.resource_table() == TABLE
    assert bytes(mem.tcm[: len(CODE)]) == CODE
    assert bytes(mem.ddr[DATA_AT : DATA_AT + len(DATA)]) == DATA
    assert store.bytes_kept < 128 * 1024  # the 2 MiB of debug info went past, not kept


def test_streaming_store_loads_from_an_iterator_of_chunks_of_unknown_size() -> None:
    fw = firmware()

    def chunks() -> Iterator[bytes]:
        for at in range(0, len(fw.data), 100):
            yield fw.data[at : at + 100]

    image, mem = load(StreamingImageStore(chunks()))
    assert image.resource_table() == TABLE
    assert bytes(mem.tcm[: len(CODE)]) == CODE


def test_forward_only_store_refuses_a_range_it_passed_and_dropped() -> None:
    data = bytes(range(256)) * 1024
    store = StreamingImageStore(iter([data]), size=len(data), backlog=16)
    assert store.read(200_000, 4) == data[200_000:200_004]
    with pytest.raises(FirmwareImageError, match="was not retained"):
        store.read(10, 4)


def test_forward_only_store_keeps_retained_ranges() -> None:
    data = bytes(range(256)) * 1024
    store = StreamingImageStore(iter([data]), size=len(data), backlog=0)
    store.retain(1000, 50)
    store.read(200_000, 4)
    assert store.read(1010, 20) == data[1010:1030]
    assert store.bytes_kept == 50


def test_streaming_store_reports_a_source_that_ends_early() -> None:
    store = StreamingImageStore(iter([b"abc"]), size=10)
    with pytest.raises(FirmwareImageError, match=r"truncated: <stream> has 3 bytes"):
        store.read(0, 10)


# -- never anything but FirmwareImageError -----------------------------------------------

VALID = firmware().data
_SHOFF = firmware().shoff
HEADER_POSITIONS = list(range(0, EHDR32.size + 2 * PHDR32.size, 2)) + list(
    range(_SHOFF, len(VALID), 2)
)
INTERESTING = [0, 1, 2, 0x20, 0x28, 0x34, 0xFFFF, 0xFF00, 0x7FFFFFFF, 0xFFFFFFFF, len(VALID)]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def load_or_refuse(data: bytes) -> None:
    """The property: an ElfImage, or FirmwareImageError; loading raises only OpenAMPError."""
    try:
        image = ElfImage(data)
    except FirmwareImageError:
        return
    assert image.elf_class in (32, 64)
    assert isinstance(image.machine, str)
    for seg in image.segments:
        assert seg.filesz <= seg.memsz
    if image.rsc_table is not None:
        with contextlib.suppress(FirmwareImageError, ResourceTableError):
            image.resource_table()
    with contextlib.suppress(OpenAMPError):
        load_segments(image, Memories().mmap)


@st.composite
def corrupted_images(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.sampled_from(HEADER_POSITIONS))
        value = draw(st.sampled_from(INTERESTING) | st.integers(0, 0xFFFFFFFF))
        if draw(st.booleans()) and pos + 4 <= len(data):
            struct.pack_into("<I", data, pos, value)
        else:
            struct.pack_into("<H", data, pos, value & 0xFFFF)
    if draw(st.booleans()):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


@FUZZ
@given(corrupted_images())
def test_corrupted_elf32_loads_or_raises_firmware_image_error(data: bytes) -> None:
    load_or_refuse(data)


@FUZZ
@given(
    st.binary(max_size=300)
    | st.binary(max_size=300).map(lambda b: b"\x7fELF\x01\x01\x01" + b)
    | st.binary(max_size=300).map(lambda b: b"\x7fELF\x02\x01\x01" + b)
)
def test_arbitrary_bytes_load_or_raise_firmware_image_error(data: bytes) -> None:
    load_or_refuse(data)

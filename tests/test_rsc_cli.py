"""``openamp rsc show|check|build``, run as a user would run it.

The firmware the tests look at is compiled here with gcc, from a C file written the way
the OpenAMP demos write their ``rsc_table.c`` (packed structs, ``offsetof`` offsets), so
neither the table nor its address comes from the code under test.  ``readelf`` is the
oracle for the hex dump.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from conftest import run_openamp as openamp
from openamp.platform import LINUX_GENERIC
from openamp.remoteproc.rsc_table import (
    Carveout,
    Devmem,
    ResourceTable,
    Trace,
    Vdev,
    VdevVring,
    Vendor,
)

ROOT = Path(__file__).resolve().parents[1]

FIRMWARE_C = r"""
#include <stddef.h>
#include <stdint.h>

struct fw_rsc_carveout { uint32_t type, da, pa, len, flags, reserved; char name[32]; }
    __attribute__((packed));
struct fw_rsc_trace { uint32_t type, da, len, reserved; char name[32]; }
    __attribute__((packed));
struct fw_rsc_vdev_vring { uint32_t da, align, num, notifyid, reserved; }
    __attribute__((packed));
struct fw_rsc_vdev {
    uint32_t type, id, notifyid, dfeatures, gfeatures, config_len;
    uint8_t status, num_of_vrings, reserved[2];
} __attribute__((packed));

struct remote_resource_table {
    uint32_t version, num, reserved[2];
    uint32_t offset[4];
    struct fw_rsc_carveout text_cout;
    struct fw_rsc_carveout data_cout;
    struct fw_rsc_trace trace;
    struct fw_rsc_vdev rpmsg_vdev;
    struct fw_rsc_vdev_vring rpmsg_vring0;
    struct fw_rsc_vdev_vring rpmsg_vring1;
} __attribute__((packed));

struct remote_resource_table resource_table
    __attribute__((section(".resource_table"), used, aligned(8))) = {
    1, 4, {0, 0},
    {
        offsetof(struct remote_resource_table, text_cout),
        offsetof(struct remote_resource_table, data_cout),
        offsetof(struct remote_resource_table, trace),
        offsetof(struct remote_resource_table, rpmsg_vdev),
    },
    {0, 0x10000000, 0x10000000, 0x100000, 0x3, 0, "text"},
    {0, 0x10100000, 0xFFFFFFFF, 0x40000, 0, 0, "data"},
    {2, 0x20000000, 0x1000, 0, "trace0"},
    {3, 7, 0, 1, 0, 0, 0, 2, {0, 0}},
    {0x4000, 0x1000, 256, 1, 0},
    {0x8000, 0x1000, 256, 2, 0},
};

int main(void) { return (int)resource_table.rpmsg_vdev.status; }
"""

FIRMWARE_TABLE = ResourceTable(
    [
        Carveout(da=0x10000000, pa=0x10000000, len=0x100000, flags=3, name="text"),
        Carveout(da=0x10100000, pa=0xFFFFFFFF, len=0x40000, name="data"),
        Trace(da=0x20000000, len=0x1000, name="trace0"),
        Vdev(
            id=7,
            notifyid=0,
            dfeatures=1,
            vrings=[VdevVring(0x4000, 0x1000, 256, 1), VdevVring(0x8000, 0x1000, 256, 2)],
        ),
    ]
)

SPEC_YAML = """\
version: 1
entries:
  - carveout: {name: text, da: 0x10000000, pa: 0x10000000, len: 0x100000, flags: 0}
  - devmem: {name: regs, da: "0x40000000", pa: "0x40000000", len: 4096}
  - trace: {name: trace0, da: 0x20000000, len: 0x1000}
  - rpmsg:
      vrings:
        - {da: 0x4000, align: 0x1000, num: 256, notifyid: 1}
        - {da: 0x8000, align: 0x1000, num: 256, notifyid: any}
      config: "01020304"
  - vdev: {id: 3, notifyid: 5, vrings: [{da: any, align: 16, num: 8, notifyid: 6}]}
  - vendor: {type: 128, data: "0011aabb"}
"""

SPEC_TABLE = ResourceTable(
    [
        Carveout(da=0x10000000, pa=0x10000000, len=0x100000, name="text"),
        Devmem(da=0x40000000, pa=0x40000000, len=4096, name="regs"),
        Trace(da=0x20000000, len=0x1000, name="trace0"),
        Vdev(
            id=7,
            notifyid=0,
            dfeatures=1,
            vrings=[VdevVring(0x4000, 0x1000, 256, 1), VdevVring(0x8000, 0x1000, 256, 0xFFFFFFFF)],
            config=b"\x01\x02\x03\x04",
        ),
        Vdev(id=3, notifyid=5, dfeatures=0, vrings=[VdevVring(0xFFFFFFFF, 16, 8, 6)]),
        Vendor(128, b"\x00\x11\xaa\xbb"),
    ]
)

LINUX_GENERIC_YAML = """\
entries:
  - rpmsg:
      notifyid: 0
      vrings:
        - {da: 0x4000, align: 0x1000, num: 256, notifyid: 1}
        - {da: 0x8000, align: 0x1000, num: 256, notifyid: 2}
"""

READELF_ROW = re.compile(r"^  0x[0-9a-f]{8,16} ")


def gcc(*args: str | Path) -> None:
    r = subprocess.run(["gcc", *map(str, args)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def section_of(path: Path) -> tuple[bytes, int]:
    """Contents and address of ``.resource_table``, read with pyelftools."""
    with path.open("rb") as f:
        section = ELFFile(f).get_section_by_name(".resource_table")
        assert section is not None
        return bytes(section.data()), int(section["sh_addr"])


def hex_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if READELF_ROW.match(line)]


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("firmware")
    (work / "fw.c").write_text(FIRMWARE_C)
    gcc("-no-pie", "-O0", "-o", work / "fw.elf", work / "fw.c")
    return work / "fw.elf"


def write_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    spec = tmp_path / name
    spec.write_text(text)
    return spec


def write_table(tmp_path: Path, table: ResourceTable, name: str = "table.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(table.to_bytes())
    return path


# -- show ----------------------------------------------------------------------------------


def test_the_test_firmware_holds_the_table_it_was_written_with(firmware: Path) -> None:
    data, _ = section_of(firmware)
    assert data == FIRMWARE_TABLE.to_bytes()


def test_show_names_the_section_its_address_and_offset(firmware: Path) -> None:
    data, address = section_of(firmware)
    out = openamp("rsc", "show", firmware).stdout
    assert out.splitlines()[0].startswith(
        f"{firmware}: ELF section .resource_table at address {address:#010x}, file offset 0x"
    )
    assert f"{len(data):#x} bytes ({len(data)})" in out.splitlines()[0]


def test_show_decodes_every_field_of_the_compiled_firmware(firmware: Path) -> None:
    r = openamp("rsc", "show", firmware)
    assert r.returncode == 0, r.stderr
    _, address = section_of(firmware)
    lines = [line.rstrip() for line in r.stdout.splitlines()]
    expected = [
        "  version    1",
        "  num        4 entries",
        "  reserved   0 0",
        "  offset[0]  0x20",
        "  offset[3]  0xc0",
        f"entry 0 at offset 0x20 (address {address + 0x20:#010x}): RSC_CARVEOUT (type 0), 56 bytes",
        "  da        0x10000000",
        "  pa        0x10000000",
        "  len       0x00100000 (1 MiB)",
        "  flags     0x00000003",
        '  name      "text"',
        "  pa        0xffffffff (FW_RSC_ADDR_ANY: the host allocates it)",
        "  len       0x00040000 (256 KiB)",
        '  name      "data"',
        f"entry 2 at offset 0x90 (address {address + 0x90:#010x}): RSC_TRACE (type 2), 48 bytes",
        "  da        0x20000000",
        "  len       0x00001000 (4 KiB)",
        '  name      "trace0"',
        f"entry 3 at offset 0xc0 (address {address + 0xC0:#010x}): RSC_VDEV (type 3), 68 bytes",
        "  id             7 (rpmsg)",
        "  notifyid       0",
        "  dfeatures      0x00000001 (VIRTIO_RPMSG_F_NS)",
        "  gfeatures      0x00000000 (none)",
        "  config_len     0",
        "  status         0x00 (reset: no driver yet) at offset 0xd8",
        "  num_of_vrings  2",
        "  vring 0 at offset 0xdc",
        "    da        0x00004000",
        "    align     0x1000",
        "    num       256",
        "    notifyid  1",
        "  vring 1 at offset 0xf0",
        "    da        0x00008000",
        "    notifyid  2",
        "  config         (empty)",
    ]
    missing = [line for line in expected if line not in lines]
    assert not missing, r.stdout


def test_show_hex_dump_is_what_readelf_prints(firmware: Path) -> None:
    readelf = subprocess.run(
        ["readelf", "-x", ".resource_table", str(firmware)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = hex_rows(readelf)
    assert len(expected) == (0x104 + 15) // 16
    assert hex_rows(openamp("rsc", "show", firmware).stdout) == expected


def test_show_json_has_the_entries_and_the_section(firmware: Path) -> None:
    r = openamp("rsc", "show", firmware, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    data, address = section_of(firmware)
    assert doc["source"]["kind"] == "elf"
    assert doc["source"]["address"] == address
    assert doc["source"]["size"] == len(data)
    assert doc["findings"] == []
    assert doc["entries"] == FIRMWARE_TABLE.to_dict()["entries"]
    assert [e["type_name"] for e in doc["entries"]] == [
        "RSC_CARVEOUT",
        "RSC_CARVEOUT",
        "RSC_TRACE",
        "RSC_VDEV",
    ]


def test_show_reads_a_raw_table_and_names_the_status_bits(tmp_path: Path) -> None:
    table = ResourceTable(
        [
            Vdev(
                id=7,
                notifyid=0,
                dfeatures=1 | 1 << 29,
                gfeatures=1,
                status=0x0F,
                vrings=[VdevVring(0x4000, 0x1000, 256, 1)],
            ),
            Vendor(200, b"\xde\xad\xbe\xef"),
        ]
    )
    path = write_table(tmp_path, table)
    r = openamp("rsc", "show", path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"{path}: raw table, {table.size} bytes"
    assert "entry 0 at offset 0x18: RSC_VDEV (type 3), 48 bytes" in lines
    assert "  status         0x0f (ACK|DRIVER|DRIVER_OK|FEATURES_OK) at offset 0x30" in lines
    assert "  dfeatures      0x20000001 (VIRTIO_RPMSG_F_NS|VIRTIO_RING_F_EVENT_IDX)" in lines
    assert "  gfeatures      0x00000001 (VIRTIO_RPMSG_F_NS)" in lines
    assert "  len   8 (the len word and 4 data bytes)" in lines
    assert "  data  de ad be ef" in lines
    assert "  0x00000040 01000000 00000000 c8000000 08000000 ................" in lines
    assert "  0x00000050 deadbeef                            ...." in lines


def test_show_of_a_memory_dump_stops_at_the_end_of_the_table(tmp_path: Path) -> None:
    table = LINUX_GENERIC.resource_table()
    dump = tmp_path / "openamp.shm"
    dump.write_bytes(table.to_bytes() + bytes(0x4000))
    r = openamp("rsc", "show", dump)
    assert r.returncode == 0, r.stderr
    assert len(hex_rows(r.stdout)) == (table.size + 15) // 16
    assert "  (16384 more bytes after the last entry are not part of the table)" in r.stdout


# -- errors of show ------------------------------------------------------------------------


def test_a_file_that_is_neither_elf_nor_a_table_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a resource table\n")
    r = openamp("rsc", "show", path)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.startswith(
        f"openamp rsc: error: {path}: not an ELF file, and not a valid resource table: "
        "table header at offset 0x0: unsupported version"
    )


def test_an_elf_file_without_a_resource_table_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "plain.c").write_text("int main(void) { return 0; }\n")
    gcc("-no-pie", "-o", tmp_path / "plain.elf", tmp_path / "plain.c")
    r = openamp("rsc", "show", tmp_path / "plain.elf")
    assert r.returncode == 1
    assert f"{tmp_path / 'plain.elf'}: ELF file has no .resource_table section" in r.stderr


def test_a_truncated_elf_file_is_a_clear_error(tmp_path: Path, firmware: Path) -> None:
    path = tmp_path / "cut.elf"
    path.write_bytes(firmware.read_bytes()[:200])
    r = openamp("rsc", "show", path)
    assert r.returncode == 1
    assert f"openamp rsc: error: {path}: not a valid ELF file:" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    r = openamp("rsc", "show", tmp_path / "nope.elf")
    assert r.returncode == 1
    assert f"{tmp_path / 'nope.elf'}: cannot read: No such file or directory" in r.stderr


# -- check ---------------------------------------------------------------------------------


def test_check_of_a_sound_table_exits_0(firmware: Path) -> None:
    r = openamp("rsc", "check", firmware)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == f"{firmware}: sound: 4 entries, no findings\n"


def test_check_of_a_version_2_table_exits_1_with_the_reason(tmp_path: Path) -> None:
    path = write_table(tmp_path, ResourceTable(list(FIRMWARE_TABLE.entries), version=2))
    r = openamp("rsc", "check", path)
    assert r.returncode == 1
    assert r.stdout == (
        f"error: {path}: not an ELF file, and not a valid resource table: table header at "
        "offset 0x0: unsupported version 2 (only version 1 is defined)\n"
    )


def test_check_of_a_vring_num_not_a_power_of_two_exits_3_with_the_warning(
    tmp_path: Path,
) -> None:
    vrings = [VdevVring(0x4000, 0x1000, 100, 1), VdevVring(0x8000, 0x1000, 256, 2)]
    path = write_table(tmp_path, ResourceTable([Vdev(7, 0, 1, vrings=vrings)]))
    r = openamp("rsc", "check", path)
    assert r.returncode == 3
    assert r.stdout.splitlines() == [
        "warning: entry 0 (RSC_VDEV) vring 0: num 100 is not a power of two",
        f"{path}: 1 entry, 1 warning",
    ]


def test_check_help_documents_the_exit_codes() -> None:
    out = openamp("rsc", "check", "--help").stdout
    assert "exit status:" in out
    assert "0  the table parses and there are no findings" in out
    assert "1  the table cannot be used" in out
    assert "3  the table parses but there are warnings" in out


# -- build ---------------------------------------------------------------------------------


def test_build_writes_the_table_the_spec_describes(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC_YAML)
    r = openamp("rsc", "build", spec, "-o", tmp_path / "out.bin")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.bin").read_bytes() == SPEC_TABLE.to_bytes()
    assert r.stdout.startswith(f"wrote {tmp_path / 'out.bin'}: {SPEC_TABLE.size} bytes, 6 entries")


def test_build_c_source_compiles_into_the_same_bytes(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC_YAML)
    r = openamp("rsc", "build", spec, "-o", tmp_path / "t.bin", "--c", tmp_path / "t.c")
    assert r.returncode == 0, r.stderr
    source = (tmp_path / "t.c").read_text()
    assert "#include <stdint.h>" in source
    assert re.findall(r"#include\s*<[^>]+>", source) == ["#include <stdint.h>"]
    code = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    assert not re.search(r"\bconst\b", code)  # the host writes into the table
    gcc(
        "-c",
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        "-o",
        tmp_path / "t.o",
        tmp_path / "t.c",
    )
    data, _ = section_of(tmp_path / "t.o")
    assert data == (tmp_path / "t.bin").read_bytes()


def test_build_c_source_uses_the_symbol_name(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, LINUX_GENERIC_YAML)
    out_c = tmp_path / "rsc.c"
    r = openamp("rsc", "build", spec, "-o", tmp_path / "t.bin", "--c", out_c, "--symbol", "rsc")
    assert r.returncode == 0, r.stderr
    gcc("-c", "-o", tmp_path / "rsc.o", out_c)
    with (tmp_path / "rsc.o").open("rb") as f:
        symbols = ELFFile(f).get_section_by_name(".symtab")
        names = {s.name: s for s in symbols.iter_symbols()}
    assert names["rsc"]["st_size"] == LINUX_GENERIC.resource_table().size


def test_a_firmware_linking_the_generated_c_shows_the_spec_table(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC_YAML)
    openamp("rsc", "build", spec, "-o", tmp_path / "t.bin", "--c", tmp_path / "rsc_table.c")
    (tmp_path / "main.c").write_text("int main(void) { return 0; }\n")
    gcc("-no-pie", "-o", tmp_path / "fw.elf", tmp_path / "main.c", tmp_path / "rsc_table.c")
    r = openamp("rsc", "show", tmp_path / "fw.elf", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["entries"] == SPEC_TABLE.to_dict()["entries"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "entries:\n  - trace: {da: 0, len: 4}\n  - carveout: {da: 0, lenght: 4}\n",
            "entry 1 (carveout): unknown key 'lenght' (allowed: da, pa, len, flags, name, "
            "reserved)",
        ),
        ("entries:\n  - carveout: {da: 0}\n", "entry 0 (carveout): missing key 'len'"),
        (
            "entries:\n  - carvout: {da: 0, len: 4}\n",
            "entry 0: unknown entry kind 'carvout' (expected one of carveout, devmem, trace, "
            "vdev, rpmsg, vendor)",
        ),
        (
            "entries:\n  - rpmsg: {vrings: [{da: 0x4000, align: 0x1000, num: 256}]}\n",
            "entry 0 (rpmsg) vring 0: missing key 'notifyid'",
        ),
        (
            "entries:\n  - trace: {da: 0x1000, len: lots}\n",
            "entry 0 (trace): len must be a number (like 4096 or '0x1000'), not 'lots'",
        ),
        (
            "entries:\n  - vdev: {id: 7, status: 0x100, vrings: []}\n",
            "entry 0 (vdev): status = 256 is out of range 0..0xff",
        ),
        (
            "entries:\n  - trace: {da: 0, len: 1, name: " + "x" * 40 + "}\n",
            "entry 0: RSC_TRACE name '" + "x" * 40 + "' is 40 bytes",
        ),
        ("entries:\n  - vendor: {type: 12}\n", "entry 0 (vendor): type 12 is outside"),
        ("version: 1\n", "spec: missing key 'entries'"),
        ("entries: [\n", "2:1: not valid YAML"),
    ],
    ids=[
        "unknown-key",
        "missing-key",
        "unknown-kind",
        "missing-vring-key",
        "not-a-number",
        "out-of-range",
        "name-too-long",
        "vendor-type",
        "no-entries",
        "bad-yaml",
    ],
)
def test_a_bad_spec_exits_1_naming_the_entry_and_the_key(
    tmp_path: Path, spec: str, message: str
) -> None:
    path = write_spec(tmp_path, spec)
    r = openamp("rsc", "build", path, "-o", tmp_path / "out.bin")
    assert r.returncode == 1
    assert r.stderr.startswith(f"openamp rsc: error: {path}:"), r.stderr
    assert message in r.stderr
    assert not (tmp_path / "out.bin").exists()


def test_build_warns_about_what_check_would_report(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        "entries:\n  - rpmsg: {vrings: [{da: 0x4000, align: 0x1000, num: 100, notifyid: 1}]}\n",
    )
    r = openamp("rsc", "build", spec, "-o", tmp_path / "out.bin")
    assert r.returncode == 0
    assert "warning: entry 0 (RSC_VDEV) vring 0: num 100 is not a power of two" in r.stderr


def test_linux_generic_table_round_trips_through_build_and_show(tmp_path: Path) -> None:
    expected = LINUX_GENERIC.resource_table()
    spec = write_spec(tmp_path, LINUX_GENERIC_YAML)
    r = openamp("rsc", "build", spec, "-o", tmp_path / "lg.bin")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "lg.bin").read_bytes() == expected.to_bytes()
    shown = json.loads(openamp("rsc", "show", tmp_path / "lg.bin", "--json").stdout)
    del shown["source"], shown["findings"]
    assert shown == expected.to_dict()
    text = openamp("rsc", "show", tmp_path / "lg.bin").stdout
    assert "  dfeatures      0x00000001 (VIRTIO_RPMSG_F_NS)" in text.splitlines()


def yaml_examples() -> list[tuple[str, int, str]]:
    blocks = []
    for doc in (ROOT / "docs" / "resource-tables.md", ROOT / "docs" / "cli.md"):
        text = doc.read_text()
        for m in re.finditer(r"```yaml\n(.*?)```", text, re.S):
            blocks.append((doc.name, text[: m.start()].count("\n") + 1, m.group(1)))
    return blocks


@pytest.mark.parametrize(("doc", "line", "spec"), yaml_examples(), ids=lambda v: str(v)[:24])
def test_the_yaml_examples_in_the_docs_build(
    tmp_path: Path, doc: str, line: int, spec: str
) -> None:
    r = openamp("rsc", "build", write_spec(tmp_path, spec), "-o", tmp_path / "out.bin")
    assert r.returncode == 0, f"{doc}:{line}: {r.stderr}"

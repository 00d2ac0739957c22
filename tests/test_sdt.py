"""``openamp sdt``: one system description, generated for both sides and checked.

The inputs are Lopper's own demo inputs (tests/sdt/, Lopper's licence beside them): the
seed-era ones, whose expected outputs are printed in the seed, and the current ones.
The oracles come from outside the code under test: the seed's listing and channel-info
file (copied from the seed's text), the real ``dtc`` (every generated tree is compiled
again), gcc (the firmware is linked from the generated C table) and a running echo on
the simulated machine.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import run_openamp as openamp
from openamp.platform import InProcessPair
from openamp.platform.layout import load_layout
from openamp.remoteproc.rsc_table import ResourceTable
from openamp.sdt.fdt import load_tree, parse_dtb
from openamp.tools.sysdeps import ensure_tool

HERE = Path(__file__).resolve().parent / "sdt"
SEED = HERE / "seed-era"
SEED_YAML = SEED / "openamp-overlay-zynqmp.yaml"
SEED_DEVMEM_YAML = SEED / "openamp-overlay-zynqmp-dev-mem.yaml"
SEED_DTS = SEED / "system-dt" / "system-top.dts"
CUR_YAML = HERE / "openamp-overlay-zynqmp.yaml"
CUR_DTS = HERE / "openamp_zu.dts"

# The seed's "Lopper Demonstration", 3a) and 3b), as printed there (phandle values vary).
SEED_LISTING = """\
reserved-memory {
#address-cells = <0x2>;
#size-cells = <0x2>;
ranges;
rproc0 {
no-map;
reg = <0x0 0x3ed00000 0x0 0x40000>;
phandle = <PH>;
};
rpu0vdev0vring0 {
no-map;
reg = <0x0 0x3ed40000 0x0 0x2000>;
phandle = <PH>;
};
rpu0vdev0vring1 {
no-map;
reg = <0x0 0x3ed44000 0x0 0x4000>;
phandle = <PH>;
};
rpu0vdev0buffer {
no-map;
reg = <0x0 0x3ed48000 0x0 0x100000>;
compatible = "shared-dma-pool";
phandle = <PH>;
};
};"""

SEED_CHANNEL_INFO = b"""\
CHANNEL0VRING0BASE="0x3ed40000"
CHANNEL0VRING0SIZE="0x2000"
CHANNEL0VRING1BASE="0x3ed44000"
CHANNEL0VRING1SIZE="0x4000"
CHANNEL0VDEV0BUFFERBASE="0x3ed48000"
CHANNEL0VDEV0BUFFERSIZE="0x100000"
CHANNEL0VDEV0BUFFERRX="FW_RSC_U32_ADDR_ANY"
CHANNEL0VDEV0BUFFERTX="FW_RSC_U32_ADDR_ANY"
CHANNEL0ELFBASE="0x3ed00000"
CHANNEL0ELFSIZE="0x40000"
CHANNEL0TO_HOST="0xff340000"
CHANNEL0TO_HOST-BITMASK="0x1000000"
CHANNEL0TO_HOST-IPIIRQVECTID="0x3f"
CHANNEL0TO_REMOTE="0xff310000"
CHANNEL0TO_REMOTE-BITMASK="0x100"
CHANNEL0TO_REMOTE-IPIIRQVECTID="0x41"
"""

MAIN_C = """\
extern char resource_table[];
int main(void) { return resource_table[0]; }
"""


def generate(yaml: Path, dts: Path, out: Path) -> Path:
    r = openamp("sdt", "generate", yaml, dts, "-o", out)
    assert r.returncode == 0, r.stderr + r.stdout
    return out


def build_firmware(table_c: Path, out: Path) -> Path:
    """A real ELF whose .resource_table section is the generated C table."""
    main = out.parent / "main.c"
    main.write_text(MAIN_C)
    r = subprocess.run(
        ["gcc", "-no-pie", "-o", str(out), str(main), str(table_c)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def dtc() -> str:
    return ensure_tool("dtc", "device-tree-compiler")


@pytest.fixture(scope="module")
def seed_out(dtc: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(SEED_YAML, SEED_DTS, tmp_path_factory.mktemp("seed"))


@pytest.fixture(scope="module")
def cur_out(dtc: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(CUR_YAML, CUR_DTS, tmp_path_factory.mktemp("current"))


def compiled(dts: Path, dtc: str) -> bytes:
    r = subprocess.run(
        [dtc, "-q", "-@", "-I", "dts", "-O", "dtb", "-o", "-", str(dts)],
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def reserved(dts: Path, dtc: str) -> dict[str, tuple[int, int, bool, list[str]]]:
    tree = parse_dtb(compiled(dts, dtc))
    rm = tree.find("/reserved-memory")
    assert rm is not None
    out = {}
    for n in rm.children:
        reg = n.cells("reg") or []
        out[n.name] = (
            reg[0] << 32 | reg[1],
            reg[2] << 32 | reg[3],
            n.has("no-map"),
            n.compatible(),
        )
    return out


# -- seed-era inputs: the seed's outputs ---------------------------------------------------


def test_seed_era_reserved_memory_is_the_seeds_listing(seed_out: Path) -> None:
    text = (seed_out / "linux-boot.dts").read_text()
    block = re.search(r"\n\treserved-memory \{\n.*?\n\t\};", text, re.S)
    assert block is not None
    lines = [line.strip() for line in block.group(0).splitlines() if line.strip()]
    lines = [re.sub(r"^\w+: ", "", line) for line in lines]  # labels are ours
    lines = [re.sub(r"phandle = <0x[0-9a-f]+>", "phandle = <PH>", line) for line in lines]
    assert "\n".join(lines) == SEED_LISTING


def test_seed_era_channel_info_is_the_seeds_file_byte_for_byte(seed_out: Path) -> None:
    assert (seed_out / "openamp-channel-info.txt").read_bytes() == SEED_CHANNEL_INFO


def test_seed_era_tree_uses_the_seeds_remoteproc_binding(seed_out: Path, dtc: str) -> None:
    tree = parse_dtb(compiled(seed_out / "linux-boot.dts", dtc))
    cluster = tree.find("/rf5ss@ff9a0000")
    assert cluster is not None and cluster.compatible() == ["xlnx,zynqmp-r5-remoteproc"]
    assert cluster.cell("xlnx,cluster-mode") == 1  # split, in the 2022 binding
    core = tree.find("/rf5ss@ff9a0000/r5f_0")
    assert core is not None and core.strings("mbox-names") == ["tx", "rx"]
    regions = [tree.by_phandle(p) for p in core.cells("memory-region") or []]
    assert [n.name for n in regions if n] == [
        "rproc0",
        "rpu0vdev0vring0",
        "rpu0vdev0vring1",
        "rpu0vdev0buffer",
    ]
    mbox = tree.by_label("ipi_mailbox_rpu0")
    assert mbox is not None and mbox.cell("xlnx,ipi-id") == 1
    regions = (mbox.cells("reg") or [])[1::2]
    assert regions == [0xFF990600, 0x20, 0xFF990620, 0x20, 0xFF9900C0, 0x20, 0xFF9900E0, 0x20]
    assert (core.cells("mboxes") or [None])[0] == mbox.phandle


def test_seed_era_vring0_of_0x2000_bytes_gets_128_entries(seed_out: Path) -> None:
    table = ResourceTable.parse((seed_out / "rsc_table_r5_0.bin").read_bytes())
    vdev = table.entries[-1]
    assert [(v.da, v.num, v.align) for v in vdev.vrings] == [  # type: ignore[union-attr]
        (0x3ED40000, 128, 0x1000),
        (0x3ED44000, 128, 0x1000),
    ]


# -- current inputs ------------------------------------------------------------------------


def test_current_reserved_memory_carries_both_r5_carveouts(cur_out: Path, dtc: str) -> None:
    rm = reserved(cur_out / "linux-boot.dts", dtc)
    assert rm == {
        "rproc0@9800000": (0x9800000, 0x60000, True, []),
        "vdev0vring0@9860000": (0x9860000, 0x4000, True, []),
        "vdev0vring1@9864000": (0x9864000, 0x4000, True, []),
        "vdev0buffer@9868000": (0x9868000, 0x40000, True, ["shared-dma-pool"]),
        "rproc1@9e00000": (0x9E00000, 0x60000, True, []),
        "vdev0vring0@9e60000": (0x9E60000, 0x4000, True, []),
        "vdev0vring1@9e64000": (0x9E64000, 0x4000, True, []),
        "vdev0buffer@9e68000": (0x9E68000, 0x40000, True, ["shared-dma-pool"]),
    }


def test_current_tree_follows_the_upstream_binding(cur_out: Path, dtc: str) -> None:
    tree = parse_dtb(compiled(cur_out / "linux-boot.dts", dtc))
    cluster = tree.find("/remoteproc@ffe00000")
    assert cluster is not None and cluster.cell("xlnx,cluster-mode") == 0  # split
    for core, (req, ipi) in enumerate(((0xFF990600, 1), (0xFF990640, 2))):
        node = tree.find(f"/remoteproc@ffe00000/r5f@{core}")
        assert node is not None
        reg, names = node.cells("reg") or [], node.strings("reg-names") or []
        assert len(reg) == 4 * len(names) == 8  # as many reg entries as reg-names
        mbox = tree.find(f"/zynqmp_ipi1/mailbox@{req:x}")
        assert mbox is not None and mbox.cell("xlnx,ipi-id") == ipi
        assert node.cells("mboxes") == [mbox.phandle, 0, mbox.phandle, 1]
    assert tree.find("/zynqmp_ipi1").cell("xlnx,ipi-id") == 7  # type: ignore[union-attr]
    assert tree.find("/axi/ipi@ff340000").string("status") == "disabled"  # type: ignore[union-attr]


@pytest.mark.parametrize("folder", ["seed", "current"])
def test_generated_tree_compiles_without_warnings_on_our_nodes(
    folder: str, seed_out: Path, cur_out: Path, dtc: str
) -> None:
    dts = (seed_out if folder == "seed" else cur_out) / "linux-boot.dts"
    r = subprocess.run(
        [dtc, "-@", "-I", "dts", "-O", "dtb", "-o", "/dev/null", str(dts)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    ours = [
        line
        for line in r.stderr.splitlines()
        if re.search(r"/reserved-memory|/rf5ss|/remoteproc@|/zynqmp_ipi", line)
    ]
    if folder == "seed":
        # The seed's listing names its carveouts without unit addresses; dtc notes it.
        ours = [line for line in ours if "/reserved-memory/" not in line or "unit name" not in line]
    assert ours == []


def test_written_dts_compiles_back_into_the_same_tree(cur_out: Path, dtc: str) -> None:
    ours = load_tree(cur_out / "linux-boot.dts", dtc=dtc)
    again = parse_dtb(compiled(cur_out / "linux-boot.dts", dtc))
    assert ours.to_dtb() == again.to_dtb()
    assert ours.to_dts() == again.to_dts()


def test_header_derives_the_shared_memory_window_from_the_carveouts(cur_out: Path) -> None:
    for core, base in ((0, 0x9860000), (1, 0x9E60000)):
        text = (cur_out / f"amd_platform_info_r5_{core}.h").read_text()
        defines = dict(re.findall(r"#define (\w+)\s+(\S+)", text))
        assert int(defines["SHARED_MEM_PA"], 0) == base
        assert defines["SHARED_MEM_SIZE"] == "0x48000UL"  # vring0 .. end of the buffer
        assert int(defines["SHARED_BUF_OFFSET"], 0) == 0x8000
        assert int(defines["SHARED_BUF_PA"], 0) == base + 0x8000
        assert int(defines["RING_TX"], 0) == base and int(defines["RING_RX"], 0) == base + 0x4000
        assert defines["POLL_BASE_ADDR"] == ("0xff310000", "0xff320000")[core]
        assert defines["IPI_CHN_BITMASK"] == "0x1000000"


def test_current_channel_info_has_both_channels(cur_out: Path) -> None:
    text = (cur_out / "openamp-channel-info.txt").read_text()
    assert 'CHANNEL0VRING0BASE="0x9860000"' in text
    assert 'CHANNEL1VRING0BASE="0x9e60000"' in text
    assert 'CHANNEL1TO_REMOTE-IPIIRQVECTID="0x42"' in text


# -- check ---------------------------------------------------------------------------------


def test_everything_generated_agrees(cur_out: Path) -> None:
    files = sorted(p for p in cur_out.iterdir() if p.suffix != ".c")
    r = openamp("sdt", "check", CUR_YAML, CUR_DTS, *files)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "result: agree" in r.stdout


def test_a_firmware_built_from_the_generated_table_passes_check(
    cur_out: Path, tmp_path: Path
) -> None:
    fw = build_firmware(cur_out / "rsc_table_r5_0.c", tmp_path / "fw_r5_0.elf")
    r = openamp("sdt", "check", cur_out / "linux-boot.dts", fw)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "firmware" in r.stdout


def test_a_hand_broken_tree_fails_naming_both_values_and_the_file(
    cur_out: Path, tmp_path: Path
) -> None:
    fw = build_firmware(cur_out / "rsc_table_r5_0.c", tmp_path / "fw.elf")
    broken = tmp_path / "broken.dts"
    text = (cur_out / "linux-boot.dts").read_text()
    broken.write_text(
        text.replace("reg = <0x0 0x9860000 0x0 0x4000>", "reg = <0x0 0x9870000 0x0 0x4000>")
    )
    r = openamp("sdt", "check", broken, fw)
    assert r.returncode == 1
    assert (
        f"R5 core 0 vring0 address: {broken} says 0x9870000 "
        "(/reserved-memory/vdev0vring0@9860000), "
        f"{fw} says 0x9860000 (vdev vring 0 da)"
    ) in r.stdout
    assert f"change: {fw}: rebuild the firmware" in r.stdout
    r = openamp("sdt", "check", CUR_YAML, broken, fw)
    assert r.returncode == 1
    assert (
        f"{CUR_YAML} says 0x9860000 (carveout 'rpu0vdev0vring0'), {broken} says 0x9870000"
        in r.stdout
    )
    assert f"change: {broken}: regenerate it from the YAML" in r.stdout


def test_moving_a_carveout_breaks_the_old_firmware_until_it_is_rebuilt(
    cur_out: Path, tmp_path: Path
) -> None:
    old_fw = build_firmware(cur_out / "rsc_table_r5_0.c", tmp_path / "old_r5_0.elf")
    moved = tmp_path / "moved.yaml"
    moved.write_text(CUR_YAML.read_text().replace("start: 0x9860000", "start: 0x98b0000"))
    new = generate(moved, CUR_DTS, tmp_path / "new")
    r = openamp("sdt", "check", new / "linux-boot.dts", old_fw)
    assert r.returncode == 1
    assert "says 0x98b0000" in r.stdout and "says 0x9860000 (vdev vring 0 da)" in r.stdout
    new_fw = build_firmware(new / "rsc_table_r5_0.c", tmp_path / "new_r5_0.elf")
    r = openamp("sdt", "check", moved, new / "linux-boot.dts", new_fw)
    assert r.returncode == 0, r.stdout


def test_the_seeds_dev_mem_change_is_reported_as_a_misaligned_ring(
    seed_out: Path, tmp_path: Path
) -> None:
    new = generate(SEED_DEVMEM_YAML, SEED_DTS, tmp_path / "devmem")
    r = openamp(
        "sdt", "check", SEED_DEVMEM_YAML, new / "linux-boot.dts", seed_out / "rsc_table_r5_0.bin"
    )
    assert r.returncode == 1
    assert "'rpu0vdev0vring0' at 0xc0ffee is not page aligned" in r.stdout
    assert "says 0xc0ffee" in r.stdout and "says 0x3ed40000" in r.stdout


def test_check_of_an_unreadable_input_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dts"
    bad.write_text("/dts-v1/;\n/ { oops = <1 2; };\n")
    r = openamp("sdt", "check", bad)
    assert r.returncode == 2
    assert "bad.dts:2" in r.stderr and "dtc rejects it" in r.stderr


# -- the simulated machine ------------------------------------------------------------------


def test_the_machine_runs_echo_at_the_device_tree_addresses(cur_out: Path) -> None:
    layout = load_layout(cur_out / "machine_r5_0.json")
    assert (layout.phys_base, layout.vring0_da, layout.pool_base) == (
        0x9800000,
        0x9860000,
        0x9868000,
    )
    assert layout.resource_table() == ResourceTable.parse(
        (cur_out / "rsc_table_r5_0.bin").read_bytes()
    )
    pair = InProcessPair(layout)
    host, remote = pair.driver(), pair.device()
    remote.create_endpoint(
        "rpmsg-openamp-demo-channel", callback=lambda ept, data, src: ept.send(data)
    )
    ept = host.endpoint("rpmsg-openamp-demo-channel", timeout=1.0)
    for size in (1, 100, 496):
        payload = bytes((size + i) & 0xFF for i in range(size))
        ept.send(payload)
        assert ept.recv(timeout=1.0) == payload
    region = pair.region
    first_buffer = region.read64(region.phys_to_offset(0x9860000))  # vring0 descriptor 0
    assert 0x9868000 <= first_buffer < 0x9868000 + 0x40000


def test_demo_sdt_runs_echo_traffic_in_two_processes(cur_out: Path) -> None:
    r = openamp("demo", "sdt", cur_out / "machine_r5_1.json", "--count", "4", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "vring0 0x9e60000, vring1 0x9e64000" in r.stdout
    assert "vring0 descriptor 0 -> 0x9e68000" in r.stdout
    assert "4 of 4 messages came back" in r.stdout

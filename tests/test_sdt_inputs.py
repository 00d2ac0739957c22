"""Reading the description: the YAML layouts, Lopper's ``<<+`` merge, device tree blobs
and live trees, and errors that say where and what."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from openamp.sdt.domain import _load_yaml, load_domain, parse_domain
from openamp.sdt.fdt import DeviceTree, Node, load_tree, parse_dtb
from openamp.sdt.generate import generate, label_for
from openamp.sdt.model import DescriptionError
from openamp.sdt.system import resolve
from openamp.tools.sysdeps import ensure_tool

HERE = Path(__file__).resolve().parent / "sdt"


@pytest.fixture(scope="module")
def zu(tmp_path_factory: pytest.TempPathFactory) -> DeviceTree:
    return load_tree(HERE / "openamp_zu.dts", dtc=ensure_tool("dtc", "device-tree-compiler"))


# -- the YAML ------------------------------------------------------------------------------


def test_lopper_merge_adds_anchored_carveouts_as_children_named_after_their_key() -> None:
    text = """\
definitions:
  OpenAMP:
    vring_a: &anchor_name_differs
      - {start: 0x1000, size: 0x2000, no-map: 1}
    banks: &banks
      - dev: tcm0
      - dev: tcm1
domains:
  host:
    cpus: [{cluster: cpus_a53, cpumask: 1}]
    access:
      - dev: ipi7
      - <<+: *banks
    reserved-memory:
      ranges: true
      <<+: [*anchor_name_differs]
"""
    host = _load_yaml(text, "t.yaml").value["domains"].value["host"]
    access = [item.value["dev"].value for item in host.value["access"].value]
    assert access == ["ipi7", "tcm0", "tcm1"]  # `- <<+: *list` splices the list in
    rm = host.value["reserved-memory"].value
    assert list(rm) == ["ranges", "vring_a"]  # named after its key, not its anchor
    assert rm["vring_a"].value["start"].value == 0x1000


def test_the_seed_era_layout_is_read() -> None:
    spec = load_domain(HERE / "seed-era" / "openamp-overlay-zynqmp.yaml")
    assert spec.layout == "2022"
    (ch,) = spec.channels
    assert (ch.remote, ch.host_mbox, ch.remote_mbox) == (
        "openamp_r5_0_cluster",
        "ipi@ff340000",
        "ipi@ff310000",
    )
    assert ch.rpmsg == ("rpu0vdev0vring0", "rpu0vdev0vring1", "rpu0vdev0buffer")
    assert ch.elfload == ("psu_r5_0_atcm_global", "psu_r5_0_btcm_global", "rproc0")


def test_the_per_remote_lists_of_the_current_layout_are_shared_out() -> None:
    spec = load_domain(HERE / "openamp-overlay-zynqmp.yaml")
    assert spec.layout == "2024"
    assert [(c.remote, c.rpmsg[0], c.remote_mbox) for c in spec.channels] == [
        ("openamp_r5_0_cluster", "rpu0vdev0vring0", "ipi1"),
        ("openamp_r5_1_cluster", "rpu1vdev0vring0", "ipi2"),
    ]


def test_the_2025_layout_reads_top_level_reserved_memory_and_relations() -> None:
    spec = load_domain(HERE / "openamp-zephyr-zynqmp-r5.yaml")
    assert spec.layout == "2025"
    assert spec.carveouts["vdev0buffer"].node_name == "vdev0buffer@9888000"
    assert spec.carveouts["vdev0buffer"].size == 0x78000
    (ch,) = spec.channels
    assert ch.rpmsg == ("vdev0vring0@9880000", "vdev0vring1@9884000", "vdev0buffer@9888000")
    assert (ch.host_mbox, ch.remote_mbox) == ("ipi_7_to_ipi_1", "ipi_1_to_ipi_7")


def test_a_2025_description_generates_against_the_system_tree(zu: DeviceTree) -> None:
    text = """\
reserved-memory:
  rproc0@9800000: {label: rproc0, start: 0x9800000, size: 0x60000, no-map: 1}
  vdev0vring0@9860000: {label: vdev0vring0, start: 0x9860000, size: 0x4000, no-map: 1}
  vdev0vring1@9864000: {label: vdev0vring1, start: 0x9864000, size: 0x4000, no-map: 1}
  vdev0buffer@9868000: {label: vdev0buffer, start: 0x9868000, size: 0x40000, no-map: 1}
domains:
  linux:
    cpus: [{cluster: cpus_a53, cpumask: 0x1}]
    domain-to-domain:
      remoteproc-relation:
        compatible: openamp,remoteproc-v2
        relation0: {remote: r5, elfload: [psu_r5_0_atcm_global, rproc0@9800000]}
      rpmsg-relation:
        compatible: openamp,rpmsg-v1
        relation0:
          remote: r5
          mbox: psu_ipi_7_1
          carveouts: [vdev0vring0@9860000, vdev0vring1@9864000, vdev0buffer@9868000]
  r5:
    cpus: [{cluster: cpus_r5_0, cpumask: 0x1}]
    domain-to-domain:
      rpmsg-relation:
        compatible: openamp,rpmsg-v1
        relation0: {host: linux, mbox: psu_ipi_1_7}
"""
    system = resolve(parse_domain(text, "new.yaml"), zu)
    (ch,) = system.channels
    assert ch.host_ipi is not None and ch.remote_ipi is not None
    assert (ch.host_ipi.ipi_id, ch.remote_ipi.ipi_id) == (7, 1)
    assert ch.host_to_remote == (0xFF990600, 0xFF990620)
    out = generate(system)
    assert out.tables[0].entries[-1].vrings[0].da == 0x9860000  # type: ignore[union-attr]


def test_labels_lopper_writes_with_a_leading_digit_become_valid(zu: DeviceTree) -> None:
    assert label_for("0vdev0vring0") == "_0vdev0vring0"
    system = resolve(load_domain(HERE / "openamp-overlay-zynqmp-split.yaml"), zu)
    out = generate(system)
    assert "_0vdev0vring0: vdev0vring0@3ed60000 {" in str(out.files["linux-boot.dts"])


def test_lockstep_has_one_core_and_as_many_tcm_reg_entries_as_names(zu: DeviceTree) -> None:
    system = resolve(load_domain(HERE / "openamp-overlay-zynqmp-lockstep.yaml"), zu)
    out = generate(system)
    text = str(out.files["linux-boot.dts"])
    assert "r5f@1" not in text
    assert 'reg-names = "atcm0", "btcm0", "atcm1", "btcm1";' in text
    assert "xlnx,cluster-mode = <0x1>;" in text
    assert any("lockstep" in note for note in out.notes)


# -- errors say where ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("domains:\n  a: [1,\n", "t.yaml:3:1", "not valid YAML"),
        (
            "definitions:\n  X:\n    c: [{start: 0x1000, size: 0}]\ndomains: {}\n",
            "t.yaml:3:9",
            "size must not be 0",
        ),
        (
            "definitions:\n  X:\n    c: [{start: zero, size: 1}]\ndomains: {}\n",
            "t.yaml:3:17",
            "start must be a number",
        ),
        ("domains:\n  h:\n    cpus: [{cpumask: 1}]\n", "t.yaml:2:3", "expected exactly one host"),
        (
            "domains:\n  h:\n    cpus: [{cluster: c}]\n    domain-to-domain:\n"
            "      r:\n        compatible: openamp,remoteproc-v1\n        remote: nobody\n",
            "t.yaml:6:9",
            "remote domain 'nobody', which is not under 'domains'",
        ),
        ("x: 1\nx: 2\ndomains: {}\n", "t.yaml:2:4", "key 'x' appears twice"),
    ],
)
def test_a_bad_yaml_names_file_line_and_what_was_expected(text: str, where: str, what: str) -> None:
    with pytest.raises(DescriptionError) as info:
        parse_domain(text, "t.yaml")
    assert str(info.value).startswith(where + ": "), str(info.value)
    assert what in str(info.value)


def test_a_mailbox_the_tree_lacks_is_reported_at_its_yaml_line(zu: DeviceTree) -> None:
    spec = load_domain(HERE / "openamp-zephyr-zynqmp-r5.yaml")
    with pytest.raises(DescriptionError) as info:
        resolve(spec, zu)
    message = str(info.value)
    assert message.startswith(f"{HERE / 'openamp-zephyr-zynqmp-r5.yaml'}:71:17: ")
    assert "mbox 'ipi_7_to_ipi_1' names no label, path or unique node" in message


def test_a_dts_dtc_rejects_is_reported_with_dtcs_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dts"
    bad.write_text("/dts-v1/;\n/ {\n\tx = <1 2;\n};\n")
    with pytest.raises(DescriptionError) as info:
        load_tree(bad, dtc=ensure_tool("dtc", "device-tree-compiler"))
    assert str(info.value).startswith(f"{bad}: dtc rejects it:")
    assert "bad.dts:3" in str(info.value)


# -- device tree blobs ---------------------------------------------------------------------


def test_a_blob_round_trips_through_our_writer_and_dtc(zu: DeviceTree, tmp_path: Path) -> None:
    blob = zu.to_dtb()
    (tmp_path / "zu.dtb").write_bytes(blob)
    dtc = ensure_tool("dtc", "device-tree-compiler")
    r = subprocess.run(
        [dtc, "-I", "dtb", "-O", "dtb", str(tmp_path / "zu.dtb")], capture_output=True
    )
    assert r.returncode == 0, r.stderr
    assert parse_dtb(r.stdout).to_dtb() == blob


def test_a_live_tree_directory_reads_like_the_blob(tmp_path: Path) -> None:
    root = Node("")
    root.set_cells("#address-cells", [2])
    child = root.add(Node("reserved-memory"))
    node = child.add(Node("vdev0vring0@9860000"))
    node.set_cells("reg", [0, 0x9860000, 0, 0x4000])
    node.set_flag("no-map")

    def write(n: Node, path: Path) -> None:
        path.mkdir(exist_ok=True)
        for key, value in n.props.items():
            (path / key).write_bytes(value)
        for c in n.children:
            write(c, path / c.name)

    write(root, tmp_path / "device-tree")
    tree = load_tree(tmp_path / "device-tree")
    found = tree.find("/reserved-memory/vdev0vring0@9860000")
    assert found is not None and found.cells("reg") == [0, 0x9860000, 0, 0x4000]
    assert found.has("no-map")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 160), st.binary(min_size=1, max_size=8))
def test_a_corrupt_blob_raises_description_error_only(noise: bytes, at: int, patch: bytes) -> None:
    blob = bytearray(_SMALL_BLOB + noise)
    blob[at : at + len(patch)] = patch
    try:
        parse_dtb(bytes(blob), "fuzz.dtb")
    except DescriptionError as exc:
        assert str(exc).startswith("fuzz.dtb: ")


def _small_blob() -> bytes:
    root = Node("")
    root.set_strings("compatible", "test")
    root.add(Node("a@1")).set_cells("reg", [1, 2])
    return DeviceTree(root).to_dtb()


_SMALL_BLOB = _small_blob()


def test_a_truncated_blob_names_the_offset() -> None:
    with pytest.raises(DescriptionError) as info:
        parse_dtb(_SMALL_BLOB[:-20], "t.dtb")
    assert str(info.value).startswith("t.dtb: byte 0x4: not a valid device tree blob: totalsize")
    assert struct.unpack(">I", _SMALL_BLOB[:4])[0] == 0xD00DFEED


def test_sdt_help_explains_the_exit_codes() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "openamp", "sdt", "check", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0
    assert "0  every value stated by more than one file agrees" in r.stdout
    assert "2  a file cannot be read or understood" in r.stdout

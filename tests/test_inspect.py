"""``openamp inspect``: what a link's memory says, live (read-only) or from a dump, and
what a board's kernel says."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

from conftest import run_openamp as openamp
from openamp.metal.shm import SHM_DIR
from openamp.tools.board import BoardRoots, inspect_board, render_board
from openamp.tools.linkmem import read_link_memory, render_link_memory
from test_linux_remoteproc import Board

CONFORMANCE = Path(__file__).resolve().parent / "conformance"


def conformance(name: str) -> bytes:
    return gzip.open(CONFORMANCE / f"{name}.bin.gz").read()


def test_a_fresh_table_shows_a_reset_vdev_and_empty_rings() -> None:
    lm = read_link_memory(conformance("a_initial"), source="a_initial")
    (vdev,) = lm.vdevs
    assert (vdev.status, vdev.dfeatures, vdev.gfeatures) == (0, 1, 0)
    assert [(r.da, r.num, r.avail_idx, r.used_idx) for r in vdev.vrings] == [
        (0x4000, 256, 0, 0),
        (0x8000, 256, 0, 0),
    ]
    assert all(r.count("free") == 256 for r in vdev.vrings)


def test_a_bound_link_shows_posted_buffers_and_both_announcements() -> None:
    lm = read_link_memory(conformance("c_bound"))
    rx, tx = lm.vdevs[0].vrings
    assert rx.count("posted") == 256 and rx.outstanding == 256
    assert (tx.avail_idx, tx.used_idx, tx.count("done")) == (1, 1, 1)
    assert rx.used_flags == 1 and tx.avail_flags == 1  # both suppress tx-complete kicks
    assert [(a.from_remote, a.name, a.addr, a.destroy) for a in lm.announcements] == [
        (True, "rpmsg-openamp-demo-channel", 0x400, False),
        (False, "rpmsg-openamp-demo-channel", 0x400, False),
    ]
    desc0 = rx.descriptors[0]
    assert desc0.header is not None and (desc0.header.dst, desc0.header.length) == (0x35, 40)


def test_the_final_image_shows_the_message_the_host_never_took() -> None:
    lm = read_link_memory(conformance("e_final"))
    rx = lm.vdevs[0].vrings[0]
    assert (rx.avail_idx, rx.used_idx) == (737, 482)
    assert rx.count("in flight") == 1 and rx.count("posted") == 255
    flight = next(d for d in rx.descriptors if d.state == "in flight")
    assert "NS destroy 'rpmsg-openamp-demo-channel'" in flight.note
    text = render_link_memory(lm)
    assert "255 posted, 1 in flight" in text and "remote: destroy" in text


def test_garbage_is_reported_not_raised() -> None:
    lm = read_link_memory(b"\xff" * 0x2000, source="junk")
    assert lm.table is None and "no resource table" in (lm.table_error or "")
    assert "NOT FOUND OR INVALID" in render_link_memory(lm)


def test_inspect_reads_a_live_link_without_touching_it_and_saves_a_dump(
    tmp_path: Path, vm_name: str, children
) -> None:  # type: ignore[no-untyped-def]
    machine = ("--machine", "virtual", "--name", vm_name)
    children.openamp("echo", *machine)
    shm = Path(SHM_DIR) / f"{vm_name}.shm"
    for _ in range(500):
        if Path(f"/tmp/{vm_name}.event").exists():
            break
        subprocess.run(["sleep", "0.02"])
    before = shm.read_bytes()
    dump = tmp_path / "vm.bin"
    r = openamp("inspect", *machine, "--save", str(dump))
    assert r.returncode == 0, r.stderr
    assert (
        "status     0x00 (reset)" in r.stdout and "vring1 (driver -> device) at 0x8000" in r.stdout
    )
    assert shm.read_bytes() == before and dump.read_bytes() == before
    r = openamp("inspect", str(dump), "--json")
    doc = json.loads(r.stdout)
    assert doc["vdevs"][0]["vrings"][0]["num"] == 256 and doc["table_error"] is None


def test_inspect_reads_a_gzipped_dump() -> None:
    r = openamp("inspect", str(CONFORMANCE / "e_final.bin.gz"), "--descriptors", "none")
    assert r.returncode == 0, r.stderr
    assert "255 outstanding; descriptors: 255 posted, 1 in flight" in r.stdout


def test_inspect_of_a_missing_link_says_to_ask_the_doctor(vm_name: str) -> None:
    r = openamp("inspect", "--machine", "virtual", "--name", vm_name)
    assert r.returncode == 1 and "`openamp doctor` says more" in r.stderr


def test_a_board_shows_its_table_trace_and_channel_bindings(tmp_path: Path) -> None:
    b = Board(tmp_path)
    b.add_remoteproc(state="running", traces={0: "booted\nserving\n"})
    v = b.add_virtio()
    ch = b.add_channel(v, "rpmsg-raw", 0x401, 0x400, driver="rpmsg_chrdev")
    b.add_chrdev(ch, 0)
    b.add_channel(v, "rpmsg-client-sample", 0xFFFFFFFF, 0x401)
    report = inspect_board(BoardRoots(str(b.sysfs), str(b.debugfs), str(b.dev)))
    (proc,) = report["remoteprocs"]
    assert proc["state"] == "running" and proc["trace_text"] == {"trace0": "booted\nserving"}
    assert [e["type"] for e in proc["resource_table"]][:1] == ["carveout"]
    text = render_board(report)
    assert "'rpmsg-raw' 0x401 -> 0x400, driver rpmsg_chrdev, endpoint devices rpmsg0" in text
    assert "'rpmsg-client-sample' ANY -> 0x401, driver NONE" in text
    assert "| serving" in text
    r = openamp("inspect", "--board", "--sysfs", str(b.sysfs), "--debugfs", str(b.debugfs))
    assert r.returncode == 0 and "remoteproc0 (m4): running" in r.stdout

"""The link doctor diagnoses each deliberately broken set-up at the right step, with what
to do; the board doctor does the same for a kernel's remoteproc and rpmsg trees."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from openamp.metal.shm import SHM_DIR
from openamp.platform.inprocess import InProcessPair
from openamp.remoteproc.rsc_table import (
    RSC_VDEV,
    VDEV,
    VDEV_GFEATURES_OFFSET,
    VDEV_STATUS_OFFSET,
    VDEV_VRING,
    VRING_DA_OFFSET,
    ResourceTable,
)
from openamp.services.echo import ECHO_SERVICE, EchoService, run_ping
from openamp.tools.board import BoardRoots, doctor_board
from openamp.virtio.ring import DESC
from test_linux_remoteproc import Board

DEMO = ECHO_SERVICE


def doctor(vm: str, *extra: str) -> tuple[int, dict[str, object], str]:
    """``openamp doctor --json`` on virtual machine ``vm``: (status, document, last step)."""
    machine = ["--machine", "virtual", "--name", vm]
    r = subprocess.run(
        [sys.executable, "-m", "openamp", "doctor", *machine, "--json", *extra],
        capture_output=True,
        text=True,
        timeout=30,
    )
    doc = json.loads(r.stdout)
    last = doc["steps"][-1]
    return r.returncode, doc, f"{last['step']}: {last['detail']} -> {last['fix']}"


def failed_at(vm: str, *extra: str) -> tuple[str, str]:
    """The step the doctor stops at, and its text (detail and fix)."""
    rc, doc, text = doctor(vm, *extra)
    assert rc == 1 and not doc["ok"], text
    steps = doc["steps"]
    assert all(s["ok"] for s in steps[:-1]) and not steps[-1]["ok"]
    return str(steps[-1]["step"]), text


# -- memory images we break on purpose -----------------------------------------------------


def image(pings: int = 3) -> bytearray:
    """A healthy link's memory after a few pings."""
    pair = InProcessPair()
    host, remote = pair.driver(), pair.device()
    EchoService(remote)
    assert run_ping(host, count=pings).ok
    return bytearray(pair.memory)


def vdev_offset(mem: bytes) -> int:
    found = ResourceTable.parse(mem).find(RSC_VDEV)
    assert found is not None
    return found[0]


def put(vm: str, mem: bytes) -> Path:
    path = Path(SHM_DIR) / f"{vm}.shm"
    path.write_bytes(mem)
    return path


def set_u32(mem: bytearray, off: int, value: int) -> None:
    mem[off : off + 4] = value.to_bytes(4, "little")


def listening_socket(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    return s


# -- the walk on a shared-memory machine ------------------------------------------------------


def test_nothing_running_says_which_side_to_start_first(vm_name: str) -> None:
    step, text = failed_at(vm_name)
    assert step == "shared memory"
    assert "nothing runs" in text and f"openamp echo --machine virtual --name {vm_name}" in text


def test_a_dead_servers_socket_is_named(vm_name: str) -> None:
    s = listening_socket(f"/tmp/{vm_name}.event")
    s.close()  # the path stays behind, as when a server is killed
    step, text = failed_at(vm_name)
    assert step == "shared memory" and "a server that died left its socket" in text


def test_two_buffer_sizes_are_told_to_agree(vm_name: str, children) -> None:  # type: ignore[no-untyped-def]
    children.openamp("echo", "--machine", "virtual", "--name", vm_name, "--buffer-size", "4096")
    _wait_for(Path(SHM_DIR) / f"{vm_name}.shm")
    step, text = failed_at(vm_name)
    assert step == "shared memory"
    assert "pass the same --buffer-size on both sides" in text
    step, text = failed_at(vm_name, "--buffer-size", "4096")
    assert step == "vdev status"  # with the right size it gets further


def test_a_corrupt_table_is_found(vm_name: str) -> None:
    mem = image()
    mem[0:4] = b"\x07\x00\x00\x00"  # version 7
    put(vm_name, mem)
    step, text = failed_at(vm_name)
    assert step == "resource table" and "unsupported version 7" in text


def test_a_server_waiting_for_its_host_is_told_apart(vm_name: str, children) -> None:  # type: ignore[no-untyped-def]
    children.openamp("echo", "--machine", "virtual", "--name", vm_name)
    _wait_for(Path(f"/tmp/{vm_name}.event"))
    step, text = failed_at(vm_name)
    assert step == "vdev status" and "0x00 (reset)" in text
    assert f"the server waits on /tmp/{vm_name}.event" in text and "openamp ping" in text


def test_a_memory_nobody_maps_is_a_leftover(vm_name: str) -> None:
    mem = image()
    mem[vdev_offset(mem) + VDEV_STATUS_OFFSET] = 0
    put(vm_name, mem)
    step, text = failed_at(vm_name)
    assert step == "vdev status" and "no process maps the memory" in text


def test_a_device_that_needs_a_reset_says_so(vm_name: str) -> None:
    mem = image()
    mem[vdev_offset(mem) + VDEV_STATUS_OFFSET] = 0x44
    put(vm_name, mem)
    step, text = failed_at(vm_name)
    assert step == "vdev status" and "NEEDS_RESET" in text and "restart the host" in text


def test_features_the_device_did_not_offer_are_a_mismatch(vm_name: str) -> None:
    mem = image()
    set_u32(mem, vdev_offset(mem) + VDEV_GFEATURES_OFFSET, 0x20000001)  # + EVENT_IDX
    put(vm_name, mem)
    step, text = failed_at(vm_name)
    assert step == "features" and "VIRTIO_RING_F_EVENT_IDX" in text


def test_a_vring_outside_the_memory_is_found(vm_name: str) -> None:
    mem = image()
    set_u32(mem, vdev_offset(mem) + VDEV.size + VDEV_VRING.size + VRING_DA_OFFSET, 0x7F000)
    put(vm_name, mem)
    step, text = failed_at(vm_name)
    assert step == "vrings" and "vring 1 at 0x7f000" in text


def test_receive_buffers_of_another_size_ask_for_the_same_buffer_size(vm_name: str) -> None:
    mem = image()
    for d in range(256):  # vring0's descriptors at 0x4000: every length 1024
        set_u32(mem, 0x4000 + DESC.size * d + 8, 1024)
    put(vm_name, mem)
    step, text = failed_at(vm_name)
    assert step == "buffers" and "1024-byte receive buffers, 512 expected" in text
    assert "pass the same --buffer-size on both sides" in text


def test_buffers_outside_the_memory_are_found(vm_name: str) -> None:
    mem = image()
    mem[0x4000 : 0x4000 + 8] = (0x90000).to_bytes(8, "little")  # desc 0 of vring0
    put(vm_name, mem)
    step, text = failed_at(vm_name)
    assert step == "buffers" and "lies outside" in text


def test_a_socket_nobody_listens_on_is_stale(vm_name: str) -> None:
    put(vm_name, image())
    listening_socket(f"/tmp/{vm_name}.event").close()
    step, text = failed_at(vm_name)
    assert step == "doorbell" and "nothing listens on it" in text


HOLD = """
import os, signal, sys, time
from openamp.platform.virtual import VirtualMachine
m = VirtualMachine(role=sys.argv[1], name=sys.argv[2], socket=sys.argv[3])
r = m.start(timeout=10)
if sys.argv[4] == "bind":
    ept = r.endpoint(sys.argv[5], timeout=5)
    ept.send(b"hello")
    ept.recv(timeout=5)
elif sys.argv[4] == "wait":
    r.wait_service(sys.argv[5], 5)
print("ready", flush=True)
if sys.argv[4] == "die":
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(30)
"""


def hold(children, *args: str):  # type: ignore[no-untyped-def]
    """A side that brings the link up, then holds it (or dies) without polling."""
    p = children.start([sys.executable, "-c", HOLD, *args])
    return p


def test_a_peer_that_died_is_found(vm_name: str, children) -> None:  # type: ignore[no-untyped-def]
    server = hold(children, "device", vm_name, "server", "sleep", "")
    hold(children, "driver", vm_name, "client", "die", "")
    assert server.stdout.readline() == "ready\n"
    _wait_until(lambda: len(_mappers(vm_name)) == 1)
    step, text = failed_at(vm_name)
    assert step == "processes" and "the other side is gone" in text


def test_a_service_that_was_not_announced_lists_what_was(vm_name: str, children) -> None:  # type: ignore[no-untyped-def]
    children.openamp("echo", "--machine", "virtual", "--name", vm_name)
    host = hold(children, "driver", vm_name, "client", "wait", DEMO)
    assert host.stdout.readline() == "ready\n"
    step, text = failed_at(vm_name, "--service", "rpmsg-client-sample")
    assert step == "name service"
    assert f"did not announce 'rpmsg-client-sample'; it announced '{DEMO}'" in text


def test_an_endpoint_the_host_never_bound_is_found(vm_name: str, children) -> None:  # type: ignore[no-untyped-def]
    children.openamp("echo", "--machine", "virtual", "--name", vm_name)
    host = hold(children, "driver", vm_name, "client", "wait", DEMO)
    assert host.stdout.readline() == "ready\n"
    step, text = failed_at(vm_name, "--service", DEMO)
    assert step == "endpoint" and "the host has neither announced" in text


def test_a_healthy_link_passes_every_step(vm_name: str, children) -> None:  # type: ignore[no-untyped-def]
    children.openamp("echo", "--machine", "virtual", "--name", vm_name)
    host = hold(children, "driver", vm_name, "client", "bind", DEMO)
    assert host.stdout.readline() == "ready\n"
    rc, doc, text = doctor(vm_name, "--service", DEMO)
    assert rc == 0 and doc["ok"], text
    names = [s["step"] for s in doc["steps"]]  # type: ignore[index]
    assert names == [
        "shared memory",
        "resource table",
        "vdev status",
        "features",
        "vrings",
        "buffers",
        "doorbell",
        "processes",
        "name service",
        "endpoint",
    ]


def _mappers(vm: str) -> list[int]:
    from openamp.tools.procscan import processes_mapping

    return processes_mapping(f"{SHM_DIR}/{vm}.shm")


def _wait_for(path: Path) -> None:
    _wait_until(path.exists)


def _wait_until(cond: Callable[[], object], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


# -- a board ------------------------------------------------------------------------------


@pytest.fixture
def board(tmp_path: Path) -> Board:
    return Board(tmp_path)


def walk(board: Board, **kw: str) -> tuple[str, str]:
    roots = BoardRoots(str(board.sysfs), str(board.debugfs), str(board.dev), (str(board.firmware),))
    steps = doctor_board(roots, **kw)
    last = steps[-1]
    assert all(s.ok for s in steps[:-1])
    return ("ok" if last.ok else last.name), f"{last.detail} -> {last.fix}"


def test_a_board_without_remoteproc_or_rpmsg_names_the_drivers(board: Board) -> None:
    step, text = walk(board)
    assert step == "remote processor" and "lsmod" in text


def test_an_offline_processor_without_its_firmware_file_says_where_it_looked(
    board: Board,
) -> None:
    board.add_remoteproc(state="offline", firmware="rproc-m4-fw")
    step, text = walk(board)
    assert step == "firmware" and "'rproc-m4-fw' is not in the search path" in text
    assert str(board.firmware) in text


def test_an_offline_processor_with_its_firmware_is_told_to_start(board: Board) -> None:
    board.add_remoteproc(state="offline", firmware="fw.elf")
    (board.firmware / "fw.elf").write_bytes(b"\x7fELF")
    step, text = walk(board)
    assert step == "state" and "openamp rproc start remoteproc0" in text


def test_a_crashed_processor_points_at_its_trace(board: Board) -> None:
    board.add_remoteproc(state="crashed", firmware="fw.elf")
    (board.firmware / "fw.elf").write_bytes(b"\x7fELF")
    step, text = walk(board)
    assert step == "state" and "openamp rproc trace remoteproc0" in text


def test_a_running_processor_that_announced_nothing_is_found(board: Board) -> None:
    board.add_remoteproc(state="running")
    board.add_virtio()
    step, text = walk(board)
    assert step == "rpmsg channels" and "announced no rpmsg channel" in text


def test_a_missing_channel_lists_the_announced_ones(board: Board) -> None:
    board.add_remoteproc(state="running")
    v = board.add_virtio()
    board.add_channel(v, "rpmsg-client-sample", 0xFFFFFFFF, 0x400)
    step, text = walk(board, service="rpmsg-tty")
    assert step == "rpmsg channels" and "'rpmsg-client-sample' (0x400)" in text


def test_a_channel_without_a_driver_is_told_to_bind(board: Board) -> None:
    board.add_remoteproc(state="running")
    v = board.add_virtio()
    board.add_channel(v, "rpmsg-raw", 0xFFFFFFFF, 0x400)
    step, text = walk(board, service="rpmsg-raw")
    assert step.startswith("driver of") and "openamp rpmsg bind rpmsg-raw" in text


def test_a_bound_char_driver_without_a_dev_node_is_found(board: Board) -> None:
    board.add_remoteproc(state="running")
    v = board.add_virtio()
    ch = board.add_channel(v, "rpmsg-raw", 0x401, 0x400, driver="rpmsg_chrdev")
    board.add_chrdev(ch, 0)
    (board.dev / "rpmsg0").unlink()
    step, text = walk(board, service="rpmsg-raw")
    assert step == "/dev node rpmsg0" and "does not exist" in text


def test_a_dev_node_the_user_may_not_open_is_found() -> None:
    # as root every node opens, so the walk runs in a child that became 'nobody'
    root = Path(tempfile.mkdtemp(prefix="pyopenamp-board-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        b = Board(root)
        b.add_remoteproc(state="running")
        v = b.add_virtio()
        ch = b.add_channel(v, "rpmsg-raw", 0x401, 0x400, driver="rpmsg_chrdev")
        b.add_chrdev(ch, 0)
        for d, _dirs, _files in os.walk(root):
            os.chmod(d, 0o755)
        os.chmod(b.dev / "rpmsg0", 0o600)
        roots = BoardRoots(str(b.sysfs), str(b.debugfs), str(b.dev), (str(b.firmware),))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: drop to nobody, walk, report, exit
            try:
                os.close(r)
                os.setgid(65534)
                os.setuid(65534)
                steps = doctor_board(roots, service="rpmsg-raw")
                os.write(w, json.dumps([s.to_json() for s in steps]).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            steps = json.loads(f.read())
        os.waitpid(pid, 0)
    finally:
        shutil.rmtree(root)
    assert steps[-1]["step"] == "/dev node rpmsg0" and not steps[-1]["ok"]
    assert "not readable and writable for uid 65534" in steps[-1]["detail"]
    assert "udev rule" in steps[-1]["fix"]


def test_a_healthy_board_link_passes(board: Board) -> None:
    board.add_remoteproc(state="running", firmware="fw.elf")
    (board.firmware / "fw.elf").write_bytes(b"\x7fELF")
    v = board.add_virtio()
    ch = board.add_channel(v, "rpmsg-raw", 0x401, 0x400, driver="rpmsg_chrdev")
    board.add_chrdev(ch, 0)
    step, text = walk(board, service="rpmsg-raw")
    assert step == "ok", text


def test_doctor_help_has_examples_that_name_the_fixed_interface() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "openamp", "doctor", "--help"], capture_output=True, text=True
    )
    assert "openamp doctor --machine virtual --name vm1 --service" in r.stdout
    assert textwrap.dedent("--board") in r.stdout
    assert signal.SIGKILL  # the peer-died set-up uses it

"""openamp.linux.remoteproc on directory trees laid out like a board's sysfs and debugfs.

The trees follow spec/linux-kernel.md §1-§2 (class directories are symlinks into
/sys/devices, as on a real kernel).  Where the kernel would act — a state change after
``start``, an ioctl, an errno — a small fake plays its part: a thread that answers
commands written into ``state`` files, or a stand-in for ``fcntl.ioctl``/``os.write``.
Real-kernel tests of these interfaces run inside User-mode Linux (tests/test_uml.py).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import run_openamp as openamp
from openamp.errors import (
    FirmwareImageError,
    OpenAMPError,
    OpenAMPTimeoutError,
    PeerGoneError,
    SendTimeoutError,
    UsageError,
)
from openamp.linux import (
    KERNEL_TRANSITIONS,
    DeviceBusyError,
    DeviceNotFoundError,
    FirmwareInstallError,
    FirmwareNotFoundError,
    KernelError,
    KernelPermissionError,
    KernelState,
    RemoteProc,
    RequestRejectedError,
    firmware_search_path,
    list_remoteprocs,
    remoteproc as rp_mod,
)
from openamp.linux.remoteproc import (
    ERRNO_HINTS,
    IOC_GENERIC,
    RPROC_GET_SHUTDOWN_ON_RELEASE,
    RPROC_SET_SHUTDOWN_ON_RELEASE,
    KernelSendTimeoutError,
    errno_name,
    kernel_error,
    parse_resource_table_text,
    state_diagram,
)

ROOT = Path(__file__).resolve().parents[1]
ELF = b"\x7fELF\x01\x01\x01" + bytes(45) + b"firmware"

RSC_TEXT = """\
Entry 0 is of type carveout
  Device Address 0x10000000
  Physical Address 0x10000000
  Length 0x40000 Bytes
  Flags 0x0
  Reserved (should be zero) [0]
  Name vdev0buffer

Entry 1 is of type trace
  Device Address 0x10040000
  Length 0x800 Bytes
  Reserved (should be zero) [0]
  Name rsc_trace

Entry 2 is of type vdev
  ID 7
  Notify ID 2
  Device features 0x1
  Guest features 0x1
  Config length 0x0
  Status 0x7
  Number of vrings 2
  Reserved (should be zero) [0][0]

  Vring 0
    Device Address 0x10050000
    Alignment 16
    Number of buffers 16
    Notify ID 0
    Physical Address 0x10050000

  Vring 1
    Device Address 0x10054000
    Alignment 16
    Number of buffers 16
    Notify ID 1
    Physical Address 0x10054000

Unknown resource type found: 128 [hdr: 00000000c0ffee00]
"""


# -- a board as a directory tree ----------------------------------------------------------


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(target, link.parent), link)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _signed(addr: int) -> str:
    return str(addr - (1 << 32) if addr >= 1 << 31 else addr)


class Board:
    """sysfs, debugfs, /dev and /lib/firmware of a board, as files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sysfs = root / "sys"
        self.debugfs = self.sysfs / "kernel" / "debug"
        self.dev = root / "dev"
        self.firmware = root / "lib" / "firmware"
        for d in (
            self.sysfs / "class/remoteproc",
            self.debugfs / "remoteproc",
            self.dev,
            self.firmware,
            self.sysfs / "class/rpmsg",
            self.sysfs / "class/tty",
            self.sysfs / "bus/rpmsg/devices",
        ):
            d.mkdir(parents=True, exist_ok=True)
        for drv in ("rpmsg_chrdev", "rpmsg_ns", "rpmsg_ctrl", "rpmsg_tty"):
            for f in ("bind", "unbind", "uevent"):
                _write(self.sysfs / "bus/rpmsg/drivers" / drv / f, "")
        self.rprocs: dict[int, Path] = {}

    @property
    def roots(self) -> dict[str, Any]:
        return {
            "sysfs": self.sysfs,
            "debugfs": self.debugfs,
            "dev": self.dev,
            "firmware_path": self.firmware,
        }

    def cli_roots(self) -> list[str]:
        return ["--sysfs", str(self.sysfs), "--dev", str(self.dev)]

    def rproc(self, key: int | str = 0) -> RemoteProc:
        return RemoteProc(key, **self.roots)

    # -- remoteproc (§1.1, §1.3, §1.4)

    def add_remoteproc(
        self,
        index: int = 0,
        *,
        name: str = "m4",
        state: str = "offline",
        firmware: str = "rproc-m4-fw",
        recovery: str | None = "enabled",
        coredump: str | None = "disabled",
        cdev: bool = False,
        traces: dict[int, str] | None = None,
        rsc_table: str = RSC_TEXT,
    ) -> Path:
        d = (
            self.sysfs
            / f"devices/platform/soc/{0x10000000 + index:x}.{name}/remoteproc"
            / f"remoteproc{index}"
        )
        _write(d / "name", name + "\n")
        _write(d / "state", state + "\n")
        _write(d / "firmware", firmware + "\n")
        if recovery is not None:
            _write(d / "recovery", recovery + "\n")
        if coredump is not None:
            _write(d / "coredump", coredump + "\n")
        _write(d / "uevent", "")
        _link(self.sysfs / "class/remoteproc" / f"remoteproc{index}", d)
        dbg = self.debugfs / "remoteproc" / f"remoteproc{index}"
        _write(dbg / "name", name + "\n")
        _write(dbg / "recovery", (recovery or "enabled") + "\n")
        _write(dbg / "coredump", (coredump or "disabled") + "\n")
        _write(dbg / "crash", "")
        _write(dbg / "resource_table", rsc_table)
        _write(dbg / "carveout_memories", "")
        for i, text in (traces or {}).items():
            _write(dbg / f"trace{i}", text)
        if cdev:
            _write(d / "dev", f"246:{index}\n")
            _write(self.dev / f"remoteproc{index}", "")
        self.rprocs[index] = d
        return d

    def state_file(self, index: int = 0) -> Path:
        return self.rprocs[index] / "state"

    def set_state(self, state: str, index: int = 0) -> None:
        _replace(self.state_file(index), state + "\n")

    # -- rpmsg (§2.1)

    def add_virtio(self, rproc: int = 0, virtio: int = 0, *, ctrl: int | None = 0) -> Path:
        v = self.rprocs[rproc] / f"rproc-virtio.{virtio}.auto" / f"virtio{virtio}"
        v.mkdir(parents=True)
        self.add_channel(v, "rpmsg_ns", 53, 53, driver="rpmsg_ns", override="rpmsg_ns")
        if ctrl is not None:
            bus = self.add_channel(
                v, "rpmsg_ctrl", 0, 0, driver="rpmsg_ctrl", override="rpmsg_ctrl"
            )
            self.add_class_device(bus / "rpmsg" / f"rpmsg_ctrl{ctrl}", node="file")
        return v

    def add_channel(
        self,
        virtio: Path,
        name: str,
        src: int,
        dst: int,
        *,
        driver: str | None = None,
        override: str | None = None,
        announce: bool = False,
    ) -> Path:
        dev = f"{virtio.name}.{name}.{_signed(src)}.{_signed(dst)}"
        d = virtio / dev
        _write(d / "name", name + "\n")
        _write(d / "src", f"0x{src:x}\n")
        _write(d / "dst", f"0x{dst:x}\n")
        _write(d / "announce", ("true" if announce else "false") + "\n")
        _write(d / "modalias", f"rpmsg:{name}\n")
        _write(d / "driver_override", (override or "(null)") + "\n")
        _write(d / "uevent", f"MODALIAS=rpmsg:{name}\n")
        if driver:
            _link(d / "driver", self.sysfs / "bus/rpmsg/drivers" / driver)
        _link(self.sysfs / "bus/rpmsg/devices" / dev, d)
        return d

    def add_class_device(
        self,
        d: Path,
        *,
        name: str | None = None,
        src: int = 0,
        dst: int = 0,
        node: str = "fifo",
        cls: str = "rpmsg",
    ) -> Path:
        """A class device (rpmsg_ctrlN, rpmsgN, ttyRPMSGn) in ``d``, its class link and
        its /dev node (a FIFO gives an rpmsgN node that echoes what is written)."""
        if name is not None:
            _write(d / "name", name + "\n")
            _write(d / "src", _signed(src) + "\n")
            _write(d / "dst", _signed(dst) + "\n")
        _write(d / "dev", "240:0\n")
        _write(d / "uevent", f"MAJOR=240\nMINOR=0\nDEVNAME={d.name}\n")
        _link(self.sysfs / "class" / cls / d.name, d)
        dev = self.dev / d.name
        if node == "fifo":
            os.mkfifo(dev)
        elif node == "file":
            dev.touch()
        return d

    def add_chrdev(self, channel: Path, n: int) -> Path:
        """rpmsgN made by rpmsg_chrdev bound to ``channel`` (below ``<channel>/rpmsg``)."""
        name = (channel / "name").read_text().strip()
        src = int((channel / "src").read_text(), 16)
        dst = int((channel / "dst").read_text(), 16)
        return self.add_class_device(channel / "rpmsg" / f"rpmsg{n}", name=name, src=src, dst=dst)


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)


class FakeKernel:
    """Answers ``start``/``stop``/``detach`` written into the board's state files, as the
    kernel would (v5.19+): a thread, so it also serves ``openamp`` run as a subprocess."""

    def __init__(self, board: Board, *, ignore: tuple[str, ...] = ()) -> None:
        self.board = board
        self.ignore = ignore
        self.commands: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._last: dict[int, str] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeKernel:
        for index, d in self.board.rprocs.items():
            self._last[index] = (d / "state").read_text().strip()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for index, d in self.board.rprocs.items():
                try:
                    text = (d / "state").read_text().strip()
                except FileNotFoundError:
                    continue
                if text not in ("start", "stop", "detach"):
                    if text:
                        self._last[index] = text
                    continue
                self.commands.append((f"remoteproc{index}", text))
                old = self._last.get(index, "offline")
                new = {
                    "start": "attached" if old == "detached" else "running",
                    "stop": "offline",
                    "detach": "detached",
                }[text]
                _replace(d / "state", (old if text in self.ignore else new) + "\n")
            time.sleep(0.002)


@pytest.fixture
def board(tmp_path: Path) -> Board:
    b = Board(tmp_path)
    b.add_remoteproc(0, name="m4")
    return b


def fail_writes_to(monkeypatch: pytest.MonkeyPatch, path: Path, err: int) -> None:
    """Make ``write()`` on ``path`` fail with ``err``, as the kernel's store() would."""
    real_write = os.write
    target = os.path.realpath(path)

    def write(fd: int, data: Any) -> int:
        if os.readlink(f"/proc/self/fd/{fd}") == target:
            raise OSError(err, os.strerror(err))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)


# -- finding processors -------------------------------------------------------------------


def test_processors_are_listed_in_index_order_from_the_class_directory(board: Board) -> None:
    board.add_remoteproc(10, name="dsp")
    board.add_remoteproc(2, name="r5f")
    procs = list_remoteprocs(**board.roots)
    assert [(p.device, p.index, p.name) for p in procs] == [
        ("remoteproc0", 0, "m4"),
        ("remoteproc2", 2, "r5f"),
        ("remoteproc10", 10, "dsp"),
    ]


@pytest.mark.parametrize("key", [0, "0", "remoteproc0", "m4"])
def test_a_processor_is_found_by_index_device_name_or_its_name(board: Board, key: Any) -> None:
    assert board.rproc(key).device == "remoteproc0"


def test_an_unknown_processor_error_lists_the_processors_that_exist(board: Board) -> None:
    board.add_remoteproc(1, name="dsp", state="running")
    with pytest.raises(DeviceNotFoundError) as e:
        board.rproc("remoteproc7")
    assert str(e.value) == (
        "no remote processor 'remoteproc7': there are: remoteproc0 (m4, offline), "
        "remoteproc1 (dsp, running)"
    )


def test_with_no_processors_the_error_names_the_drivers_to_check(tmp_path: Path) -> None:
    b = Board(tmp_path)
    with pytest.raises(DeviceNotFoundError, match="stm32_rproc, imx_rproc"):
        b.rproc(0)
    assert list_remoteprocs(**b.roots) == []


# -- reading ------------------------------------------------------------------------------


def test_attributes_are_read_from_their_sysfs_files(board: Board) -> None:
    board.add_remoteproc(
        1, name="r5", state="running", firmware="r5.elf", recovery="disabled", coredump="inline"
    )
    p = board.rproc(1)
    assert (p.name, p.state, p.firmware, p.recovery, p.coredump) == (
        "r5",
        KernelState.RUNNING,
        "r5.elf",
        False,
        "inline",
    )
    assert p.path == board.sysfs / "class/remoteproc/remoteproc1"


@pytest.mark.parametrize("text", [s.value for s in KernelState])
def test_every_kernel_state_string_is_understood(board: Board, text: str) -> None:
    board.set_state(text)
    assert board.rproc().state is KernelState(text)


def test_a_state_the_kernel_does_not_define_reads_as_invalid(board: Board) -> None:
    board.set_state("starting")
    assert board.rproc().state is KernelState.INVALID


def test_a_processor_that_disappears_says_so(board: Board) -> None:
    p = board.rproc()
    (board.sysfs / "class/remoteproc/remoteproc0").unlink()
    with pytest.raises(DeviceNotFoundError, match="remoteproc0 disappeared"):
        p.state  # noqa: B018


# -- start / stop / detach ----------------------------------------------------------------


def test_start_writes_start_to_the_state_file_and_waits_for_running(board: Board) -> None:
    with FakeKernel(board) as kernel:
        assert board.rproc().start(timeout=5) is KernelState.RUNNING
    assert kernel.commands == [("remoteproc0", "start")]


def test_start_writes_exactly_the_word_start(board: Board) -> None:
    assert board.rproc().start(timeout=0) is KernelState.INVALID
    assert board.state_file().read_bytes() == b"start"


def test_start_refuses_a_running_processor_and_writes_nothing(board: Board) -> None:
    board.set_state("running")
    with pytest.raises(DeviceBusyError) as e:
        board.rproc().start()
    assert str(e.value).startswith("remoteproc0 is already running; stop it first")
    assert board.state_file().read_text() == "running\n"


def test_start_with_restart_stops_a_running_processor_first(board: Board) -> None:
    board.set_state("running")
    with FakeKernel(board) as kernel:
        assert board.rproc().start(timeout=5, restart=True) is KernelState.RUNNING
    assert kernel.commands == [("remoteproc0", "stop"), ("remoteproc0", "start")]


def test_start_on_a_detached_processor_attaches(board: Board) -> None:
    board.set_state("detached")
    with FakeKernel(board):
        assert board.rproc().start(timeout=5) is KernelState.ATTACHED


def test_start_on_a_crashed_processor_is_refused_with_recovery_advice(board: Board) -> None:
    board.set_state("crashed")
    with pytest.raises(RequestRejectedError, match="recovery is disabled: recover it"):
        board.rproc().start()


def test_start_times_out_naming_the_state_it_saw(board: Board) -> None:
    with pytest.raises(OpenAMPTimeoutError, match="did not become crashed or running within"):
        board.rproc().start(timeout=0.05)


def test_stop_writes_stop_and_waits_for_offline(board: Board) -> None:
    board.set_state("running")
    with FakeKernel(board) as kernel:
        assert board.rproc().stop(timeout=5) is KernelState.OFFLINE
    assert kernel.commands == [("remoteproc0", "stop")]


def test_stop_on_an_offline_processor_does_nothing(board: Board) -> None:
    assert board.rproc().stop() is KernelState.OFFLINE
    assert board.state_file().read_text() == "offline\n"


def test_stop_on_a_crashed_processor_is_refused_with_advice(board: Board) -> None:
    board.set_state("crashed")
    with pytest.raises(RequestRejectedError) as e:
        board.rproc().stop()
    assert "cannot stop remoteproc0: it is crashed (allowed from: running, attached)" in str(
        e.value
    )
    assert "recover it" in str(e.value)


def test_a_stop_the_kernel_ignores_explains_the_power_reference_count(board: Board) -> None:
    board.set_state("running")
    with FakeKernel(board, ignore=("stop",)), pytest.raises(OpenAMPTimeoutError) as e:
        board.rproc().stop(timeout=0.2)
    assert "'start' was written more than once" in str(e.value)


def test_detach_is_only_for_attached_processors(board: Board) -> None:
    board.set_state("running")
    with pytest.raises(RequestRejectedError, match="allowed from: attached"):
        board.rproc().detach()
    board.set_state("attached")
    with FakeKernel(board) as kernel:
        assert board.rproc().detach(timeout=5) is KernelState.DETACHED
    assert kernel.commands == [("remoteproc0", "detach")]


def test_wait_state_returns_when_another_thread_changes_the_state(board: Board) -> None:
    timer = threading.Timer(0.1, board.set_state, args=("crashed",))
    timer.start()
    try:
        t0 = time.monotonic()
        assert board.rproc().wait_state("running", "crashed", timeout=5) is KernelState.CRASHED
        assert time.monotonic() - t0 >= 0.09
    finally:
        timer.join()


def test_wait_state_times_out_with_the_last_state(board: Board) -> None:
    with pytest.raises(
        OpenAMPTimeoutError,
        match=r"did not become running within 0.05 s \(it "
        r"is offline\)",
    ):
        board.rproc().wait_state(KernelState.RUNNING, timeout=0.05)


def test_the_transition_table_is_the_kernels(board: Board) -> None:
    K = KernelState
    assert KERNEL_TRANSITIONS["start"] == {K.OFFLINE: K.RUNNING, K.DETACHED: K.ATTACHED}
    assert KERNEL_TRANSITIONS["stop"] == {K.RUNNING: K.OFFLINE, K.ATTACHED: K.OFFLINE}
    assert K.CRASHED not in KERNEL_TRANSITIONS["stop"]


def test_the_board_page_shows_the_state_diagram_drawn_from_the_table() -> None:
    assert state_diagram() in (ROOT / "docs" / "on-a-board.md").read_text()


def test_the_board_pages_board_only_examples_compile_and_use_the_real_api() -> None:
    # they need a board, so tests/test_docs.py does not run them; at least keep them true
    import ast
    import re

    import openamp.linux

    text = (ROOT / "docs" / "on-a-board.md").read_text()
    blocks = re.findall(r"```python board\n(.*?)```", text, re.S)
    assert len(blocks) >= 5
    for code in blocks:
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "linux"
            ):
                assert node.attr in openamp.linux.__all__, node.attr


# -- firmware -----------------------------------------------------------------------------


def test_a_firmware_name_in_the_search_path_is_written_to_the_firmware_file(
    board: Board,
) -> None:
    (board.firmware / "rproc-echo.elf").write_bytes(ELF)
    p = board.rproc()
    p.firmware = "rproc-echo.elf"
    assert (board.rprocs[0] / "firmware").read_bytes() == b"rproc-echo.elf"


def test_changing_the_firmware_of_a_running_processor_says_stop_it_first(board: Board) -> None:
    board.set_state("running")
    with pytest.raises(DeviceBusyError) as e:
        board.rproc().firmware = "x.elf"
    assert str(e.value) == (
        "EBUSY writing 'x.elf' to firmware: remoteproc0 is running; the firmware can only be "
        "changed while it is offline; stop it first"
    )
    assert e.value.errno == errno.EBUSY


def test_a_firmware_file_is_copied_into_the_search_path_on_request(
    board: Board, tmp_path: Path
) -> None:
    src = tmp_path / "build" / "echo.elf"
    src.parent.mkdir()
    src.write_bytes(ELF)
    assert board.rproc().set_firmware(src, install=True) == "echo.elf"
    assert (board.firmware / "echo.elf").read_bytes() == ELF
    assert (board.rprocs[0] / "firmware").read_bytes() == b"echo.elf"
    assert oct((board.firmware / "echo.elf").stat().st_mode & 0o777) == "0o644"


def test_installing_refuses_to_overwrite_a_different_file(board: Board, tmp_path: Path) -> None:
    (board.firmware / "echo.elf").write_bytes(ELF + b"old")
    src = tmp_path / "echo.elf"
    src.write_bytes(ELF + b"new")
    with pytest.raises(FirmwareInstallError, match=r"exists and differs .* overwrite=True"):
        board.rproc().set_firmware(src, install=True)
    assert (board.firmware / "echo.elf").read_bytes() == ELF + b"old"
    board.rproc().set_firmware(src, install=True, overwrite=True)
    assert (board.firmware / "echo.elf").read_bytes() == ELF + b"new"


def test_installing_an_identical_file_again_is_fine(board: Board, tmp_path: Path) -> None:
    (board.firmware / "echo.elf").write_bytes(ELF)
    src = tmp_path / "echo.elf"
    src.write_bytes(ELF)
    assert board.rproc().set_firmware(src, install=True) == "echo.elf"


def test_a_file_outside_the_search_path_needs_install(board: Board, tmp_path: Path) -> None:
    src = tmp_path / "echo.elf"
    src.write_bytes(ELF)
    with pytest.raises(
        FirmwareNotFoundError, match=r"not in the firmware search path .* install=True"
    ):
        board.rproc().set_firmware(src)
    assert (board.rprocs[0] / "firmware").read_text() == "rproc-m4-fw\n"


def test_a_file_inside_the_search_path_is_named_relative_to_it(board: Board) -> None:
    f = board.firmware / "st" / "m4.elf"
    f.parent.mkdir()
    f.write_bytes(ELF)
    assert board.rproc().set_firmware(f) == "st/m4.elf"


def test_a_missing_firmware_name_is_refused_listing_the_search_path(board: Board) -> None:
    with pytest.raises(FirmwareNotFoundError) as e:
        board.rproc().firmware = "nosuch.elf"
    assert f"no firmware 'nosuch.elf' in the search path ({board.firmware})" in str(e.value)


def test_a_file_that_is_not_elf_is_refused_unless_unchecked(board: Board, tmp_path: Path) -> None:
    src = tmp_path / "fw.bin"
    src.write_bytes(b"\0" * 64)
    with pytest.raises(FirmwareImageError, match="not an ELF image"):
        board.rproc().set_firmware(src, install=True)
    assert board.rproc().set_firmware(src, install=True, check=False) == "fw.bin"


def test_the_search_path_honours_the_firmware_class_path_parameter(tmp_path: Path) -> None:
    b = Board(tmp_path)
    b.add_remoteproc(0)
    custom = tmp_path / "custom-fw"
    custom.mkdir()
    _write(b.sysfs / "module/firmware_class/parameters/path", f"{custom}\n")
    path = firmware_search_path(b.sysfs, b.firmware)
    release = os.uname().release
    assert path == [
        custom,
        b.firmware / "updates" / release,
        b.firmware / "updates",
        b.firmware / release,
        b.firmware,
    ]
    p = RemoteProc(0, sysfs=b.sysfs)
    assert p.firmware_path[0] == custom and p.install_dir == custom


def test_without_the_parameter_the_search_path_is_lib_firmware(tmp_path: Path) -> None:
    b = Board(tmp_path)
    _write(b.sysfs / "module/firmware_class/parameters/path", "\n")
    assert firmware_search_path(b.sysfs)[-1] == Path("/lib/firmware")
    b.add_remoteproc(0)
    assert RemoteProc(0, sysfs=b.sysfs).install_dir == Path("/lib/firmware")


def test_install_into_an_unwritable_directory_says_what_to_do(
    board: Board, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "echo.elf"
    src.write_bytes(ELF)

    def denied(*a: Any, **k: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(rp_mod.tempfile, "mkstemp", denied)
    with pytest.raises(FirmwareInstallError, match="permission denied; run as root, or pass"):
        board.rproc().set_firmware(src, install=True)


# -- recovery, coredump, debugfs ----------------------------------------------------------


def test_recovery_and_coredump_write_the_kernels_words(board: Board) -> None:
    p = board.rproc()
    d = board.rprocs[0]
    p.recovery = False
    assert (d / "recovery").read_bytes() == b"disabled"
    p.recover()
    assert (d / "recovery").read_bytes() == b"recover"
    p.coredump = "inline"
    assert (d / "coredump").read_bytes() == b"inline"
    with pytest.raises(UsageError, match="disabled, enabled, inline"):
        p.coredump = "on"


def test_recovery_falls_back_to_debugfs_on_kernels_without_the_sysfs_file(
    tmp_path: Path,
) -> None:
    b = Board(tmp_path)
    b.add_remoteproc(0, recovery=None, coredump=None)
    p = b.rproc()
    assert p.recovery is True and p.coredump == "disabled"
    p.recovery = False
    assert (b.debugfs / "remoteproc/remoteproc0/recovery").read_bytes() == b"disabled"


def test_trace_buffers_are_read_from_debugfs(tmp_path: Path) -> None:
    b = Board(tmp_path)
    b.add_remoteproc(0, state="running", traces={0: "boot\nready\n", 1: "second"})
    p = b.rproc()
    assert p.trace_names() == ["trace0", "trace1"]
    assert p.trace() == "boot\nready" and p.trace(1) == "second"
    with pytest.raises(DeviceNotFoundError, match=r"no trace2 \(trace buffers: trace0, trace1"):
        p.trace(2)


def test_a_trace_the_kernel_cannot_map_is_reported(tmp_path: Path) -> None:
    b = Board(tmp_path)
    b.add_remoteproc(0, traces={0: "Trace trace0 not available\n"})
    with pytest.raises(KernelError, match="cannot map its device address"):
        b.rproc().trace()


def test_without_debugfs_the_error_says_how_to_mount_it(board: Board, tmp_path: Path) -> None:
    p = RemoteProc(0, sysfs=board.sysfs, debugfs=tmp_path / "nodebugfs")
    with pytest.raises(DeviceNotFoundError, match="mount -t debugfs none"):
        p.trace()


def test_the_resource_table_text_is_parsed() -> None:
    entries = parse_resource_table_text(RSC_TEXT)
    assert entries is not None
    assert [e.type for e in entries] == ["carveout", "trace", "vdev", "unknown"]
    carveout, trace, vdev, unknown = entries
    assert carveout.fields == {
        "device_address": 0x10000000,
        "physical_address": 0x10000000,
        "length": 0x40000,
        "flags": 0,
        "reserved_should_be_zero": "[0]",
        "name": "vdev0buffer",
    }
    assert trace.fields["name"] == "rsc_trace" and trace.fields["length"] == 0x800
    assert vdev.fields["id"] == 7 and vdev.fields["status"] == 7
    assert vdev.fields["number_of_vrings"] == 2
    assert vdev.vrings[1] == {
        "index": 1,
        "device_address": 0x10054000,
        "alignment": 16,
        "number_of_buffers": 16,
        "notify_id": 1,
        "physical_address": 0x10054000,
    }
    assert unknown.fields == {"type": 128}
    assert parse_resource_table_text("No resource table found\n") is None


def test_the_loaded_resource_table_is_read_from_debugfs(board: Board) -> None:
    table = board.rproc().resource_table()
    assert table is not None and table[2].to_json()["vrings"][0]["device_address"] == 0x10050000


def test_trigger_crash_writes_the_crash_type_number(board: Board) -> None:
    board.rproc().trigger_crash("fatal")
    assert (board.debugfs / "remoteproc/remoteproc0/crash").read_bytes() == b"2"


# -- kernel errors ------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "err"), sorted(ERRNO_HINTS), ids=lambda v: str(v))
def test_every_errno_becomes_an_error_naming_it_with_advice(action: str, err: int) -> None:
    cls, _ = ERRNO_HINTS[(action, err)]
    exc = kernel_error(
        err,
        action,
        "doing it",
        path="/sys/x",
        dev="remoteproc0",
        state=KernelState.RUNNING,
        busy_state="running",
        advice="advice",
        value="start",
        firmware="fw.elf",
        search="/lib/firmware",
        node="/dev/rpmsg0",
        src="0x400",
        dst="0x401",
        size=600,
        name="svc",
        channel="virtio0.svc.-1.1024",
        driver="rpmsg_chrdev",
        bound="rpmsg_tty",
        ioctl="RPROC_GET_SHUTDOWN_ON_RELEASE",
    )
    assert type(exc) is cls
    assert isinstance(exc, OpenAMPError) and isinstance(exc, OSError)
    assert exc.errno == err and exc.action == action
    assert str(exc).startswith(f"{errno_name(err)} doing it: ")
    assert "<" not in exc.hint, exc.hint  # every field of the template was filled
    assert len(exc.hint) > 20


def test_ebusy_writing_start_says_stop_it_first() -> None:
    exc = kernel_error(
        errno.EBUSY, "state:start", "writing 'start'", dev="remoteproc0", busy_state="running"
    )
    assert str(exc) == "EBUSY writing 'start': remoteproc0 is already running; stop it first"


def test_kernel_error_families_fit_the_library_errors() -> None:
    assert isinstance(kernel_error(errno.EPIPE, "rpmsg:read", "x"), PeerGoneError)
    assert isinstance(kernel_error(512, "rpmsg:write", "x"), SendTimeoutError)
    assert isinstance(kernel_error(512, "rpmsg:write", "x"), KernelSendTimeoutError)
    assert isinstance(kernel_error(errno.EMSGSIZE, "rpmsg:write", "x", size=1), UsageError)
    assert errno_name(512) == "ERESTARTSYS"


def test_an_errno_without_advice_falls_back_to_strerror() -> None:
    exc = kernel_error(errno.EXDEV, "state:start", "writing 'start'")
    assert type(exc) is KernelError
    assert str(exc) == "EXDEV writing 'start': invalid cross-device link"


def test_ebusy_from_the_kernel_on_start_is_translated(
    board: Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kernels up to v5.18 answer EBUSY when someone else started the processor meanwhile
    fail_writes_to(monkeypatch, board.state_file(), errno.EBUSY)
    with pytest.raises(DeviceBusyError) as e:
        board.rproc().start()
    assert str(e.value) == "EBUSY writing 'start': remoteproc0 is already running; stop it first"


def test_enoent_from_the_kernel_on_start_names_the_firmware_and_search_path(
    board: Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_writes_to(monkeypatch, board.state_file(), errno.ENOENT)
    with pytest.raises(FirmwareNotFoundError) as e:
        board.rproc().start()
    assert f"no firmware file 'rproc-m4-fw' in its search path ({board.firmware})" in str(e.value)
    assert "openamp rproc firmware remoteproc0 PATH --install" in str(e.value)


def test_einval_from_the_kernel_on_stop_explains_the_state(
    board: Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    board.set_state("running")
    fail_writes_to(monkeypatch, board.state_file(), errno.EINVAL)
    with pytest.raises(
        RequestRejectedError,
        match=r"^EINVAL writing 'stop': remoteproc0 is "
        "running",
    ):
        board.rproc().stop()


def test_a_write_the_real_kernel_rejects_is_translated(tmp_path: Path) -> None:
    # A real kernel file that answers EINVAL to words it does not know: the coredump
    # attribute of this tree points at /proc/self/oom_score_adj, which wants a number.
    b = Board(tmp_path)
    d = b.add_remoteproc(0)
    (d / "coredump").unlink()
    os.symlink("/proc/self/oom_score_adj", d / "coredump")
    before = Path("/proc/self/oom_score_adj").read_text()
    with pytest.raises(RequestRejectedError) as e:
        b.rproc().coredump = "inline"
    assert str(e.value).startswith("EINVAL writing 'inline' to coredump: the kernel accepts ")
    assert Path("/proc/self/oom_score_adj").read_text() == before


def test_a_denied_open_says_run_as_root(board: Board, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open
    target = os.path.realpath(board.state_file())

    def deny(path: Any, flags: int, *a: Any) -> int:
        if os.path.realpath(path) == target and flags & os.O_WRONLY:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(KernelPermissionError, match=r"run as root .*sysfs_read_only"):
        board.rproc().start()


# -- /dev/remoteprocN ---------------------------------------------------------------------


def test_rproc_ioctl_numbers_are_the_spec_literals() -> None:
    assert RPROC_SET_SHUTDOWN_ON_RELEASE == 0x4004B701
    assert RPROC_GET_SHUTDOWN_ON_RELEASE == 0x8004B702
    assert rp_mod.IOW(0xB7, 1, 4, IOC_GENERIC) == 0x4004B701


class FakeIoctl:
    """Stands in for fcntl.ioctl: records (node, request, argument) and answers."""

    def __init__(self, answer: Callable[[str, int, Any], int] | None = None) -> None:
        self.calls: list[tuple[str, int, Any]] = []
        self.answer = answer

    def __call__(self, fd: int, request: int, arg: Any = 0, mutate: bool = True) -> Any:
        node = os.readlink(f"/proc/self/fd/{fd}")
        self.calls.append(
            (node, request, bytes(arg) if isinstance(arg, (bytes, bytearray)) else arg)
        )
        return self.answer(node, request, arg) if self.answer else 0


def test_the_cdev_takes_commands_without_newline_and_shutdown_on_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = Board(tmp_path)
    b.add_remoteproc(0, cdev=True)
    stored = {"value": 0}

    def answer(node: str, request: int, arg: Any) -> int:
        if request == 0x4004B701:
            stored["value"] = struct.unpack("=i", arg)[0]
        elif request == 0x8004B702:
            arg[:] = struct.pack("=i", stored["value"])
        return 0

    fake = FakeIoctl(answer)
    monkeypatch.setattr(fcntl, "ioctl", fake)
    with b.rproc().open_cdev() as cdev:
        cdev.command("start")
        assert cdev.shutdown_on_release is False
        cdev.shutdown_on_release = True
        assert cdev.shutdown_on_release is True
    assert (b.dev / "remoteproc0").read_bytes() == b"start"
    node = str(b.dev / "remoteproc0")
    assert fake.calls == [
        (node, 0x8004B702, bytes(4)),
        (node, 0x4004B701, struct.pack("=i", 1)),
        (node, 0x8004B702, bytes(4)),
    ]


def test_without_the_cdev_the_error_names_the_kernel_option(board: Board) -> None:
    with pytest.raises(DeviceNotFoundError, match="CONFIG_REMOTEPROC_CDEV"):
        board.rproc().open_cdev()


# -- the command line ---------------------------------------------------------------------


def test_rproc_ls_json_lists_every_processor(board: Board) -> None:
    board.add_remoteproc(1, name="dsp", state="running", firmware="dsp.elf")
    r = openamp("rproc", "ls", *board.cli_roots(), "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert [(d["device"], d["name"], d["state"], d["firmware"]) for d in data] == [
        ("remoteproc0", "m4", "offline", "rproc-m4-fw"),
        ("remoteproc1", "dsp", "running", "dsp.elf"),
    ]
    assert data[0]["recovery"] == "enabled" and data[0]["coredump"] == "disabled"


def test_rproc_ls_prints_a_table(board: Board) -> None:
    r = openamp("rproc", "ls", *board.cli_roots())
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "DEVICE       NAME  STATE    FIRMWARE",
        "remoteproc0  m4    offline  rproc-m4-fw",
    ]


def test_rproc_status_shows_firmware_location_traces_and_channels(tmp_path: Path) -> None:
    b = Board(tmp_path)
    b.add_remoteproc(0, state="running", firmware="echo.elf", traces={0: "hi"})
    (b.firmware / "echo.elf").write_bytes(ELF)
    v = b.add_virtio(0)
    b.add_channel(v, "rpmsg-openamp-demo-channel", 0x400, 0x400, driver="rpmsg_chrdev")
    r = openamp("rproc", "status", "m4", *b.cli_roots(), "--firmware-path", str(b.firmware))
    assert r.returncode == 0, r.stderr
    assert "remoteproc0 (m4): running" in r.stdout
    assert f"firmware   echo.elf ({b.firmware / 'echo.elf'})" in r.stdout
    assert "traces     trace0" in r.stdout
    assert "channel    rpmsg-openamp-demo-channel  0x400 -> 0x400  driver rpmsg_chrdev" in (
        r.stdout
    )
    j = json.loads(openamp("rproc", "status", "0", *b.cli_roots(), "--json").stdout)
    assert j["channels"][0]["name"] == "rpmsg-openamp-demo-channel"


def test_rproc_firmware_install_then_start_then_stop(board: Board, tmp_path: Path) -> None:
    src = tmp_path / "echo.elf"
    src.write_bytes(ELF)
    fw = ["--firmware-path", str(board.firmware)]
    r = openamp("rproc", "firmware", "remoteproc0", str(src), "--install", *board.cli_roots(), *fw)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"remoteproc0: firmware echo.elf ({board.firmware / 'echo.elf'})\n"
    with FakeKernel(board) as kernel:
        r = openamp("rproc", "start", "m4", *board.cli_roots(), *fw)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "remoteproc0 (m4): offline -> running, firmware echo.elf\n"
        r = openamp("rproc", "stop", "m4", *board.cli_roots(), "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["state"] == "offline"
    assert kernel.commands == [("remoteproc0", "start"), ("remoteproc0", "stop")]


def test_rproc_start_on_a_running_processor_fails_with_advice(board: Board) -> None:
    board.set_state("running")
    r = openamp("rproc", "start", "0", *board.cli_roots())
    assert r.returncode == 1
    assert r.stderr.startswith(
        "openamp rproc: error: remoteproc0 is already running; stop it first"
    )


def test_rproc_on_an_unknown_processor_lists_the_ones_there_are(board: Board) -> None:
    r = openamp("rproc", "stop", "dsp", *board.cli_roots())
    assert r.returncode == 1
    assert "no remote processor 'dsp': there are: remoteproc0 (m4, offline)" in r.stderr


def test_rproc_recovery_coredump_and_trace_commands(tmp_path: Path) -> None:
    b = Board(tmp_path)
    b.add_remoteproc(0, traces={0: "line 1\nline 2\n"})
    assert openamp("rproc", "recovery", "0", "disabled", *b.cli_roots()).stdout == (
        "remoteproc0: recovery disabled (state offline)\n"
    )
    assert (b.rprocs[0] / "recovery").read_bytes() == b"disabled"
    r = openamp("rproc", "coredump", "0", "inline", *b.cli_roots(), "--json")
    assert (b.rprocs[0] / "coredump").read_bytes() == b"inline"
    assert json.loads(r.stdout) == {"device": "remoteproc0", "coredump": "inline"}
    r = openamp("rproc", "trace", "0", *b.cli_roots())
    assert r.stdout == "line 1\nline 2\n"


def test_rproc_run_is_still_there() -> None:
    out = openamp("rproc", "--help").stdout
    for action in ("run", "ls", "status", "start", "stop", "firmware"):
        assert action in out

"""The kernel's remoteproc core driving our processors: the ``uml_rproc`` driver and
:class:`~openamp.platform.uml_rproc.UmlRprocMachine`, with the board adapter
(:class:`openamp.linux.RemoteProc`) and ``openamp rproc`` used inside the guest.

One boot (``adapter`` in ``uml_rproc_guest.py``) goes through the life of a processor
on a board: firmware, start, trace and resource table from debugfs, rpmsg to the
firmware, a crash reported through debugfs (recovery and a coredump), a crash of the
firmware itself (our processor reports it: recovery again), recovery disabled and then
asked for, stop, and the character device; the tests below check parts of it.  A second
boot checks what the processor refuses.  The demos themselves are ``test_uml_board.py``.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import openamp
from openamp.metal.shm import unique_name
from openamp.platform.uml_rproc import (
    TABLE_DA,
    Processor,
    UmlRprocMachine,
    firmware_table,
    write_firmware,
)
from openamp.remoteproc.elf_writer import LoadSegment, Section, build_elf
from openamp.tools.uml import UmlGuest, UmlResult

pytestmark = [pytest.mark.uml, pytest.mark.timeout(1800)]

TESTS = Path(__file__).resolve().parent
GUEST = TESTS / "uml_rproc_guest.py"
SRC = Path(openamp.__file__).resolve().parent.parent


@dataclass
class Life:
    """The ``adapter`` boot: what the guest saw and what our processor went through."""

    guest: dict[str, Any]
    uml: UmlResult
    processor: Processor

    def step(self, key: str) -> Any:
        assert self.uml.ok and self.guest.get("ok"), self.describe()
        return self.guest["steps"][key]

    def describe(self) -> str:
        return (
            f"guest: {self.guest.get('error')}\n{self.guest.get('traceback', '')}\n"
            f"events: {self.processor.events}\n{self.uml.describe()}"
        )


def boot_guest(
    kernel: Path, directory: Path, program: str, firmware: dict[str, str], timeout: float = 120
) -> tuple[dict[str, Any], UmlResult, Processor]:
    """Boot with one processor (``r5f_0``) and the firmware files ``name -> spec``;
    the guest runs ``program RESULT.json``."""
    fw_dir = directory / "firmware"
    fw_dir.mkdir()
    for name, spec in firmware.items():
        write_firmware(fw_dir, name, spec)
    out = directory / "result.json"
    env = {"PYTHONPATH": f"{SRC}:{TESTS}"}
    with UmlRprocMachine(directory, ["r5f_0"], env=env) as machine:
        args = [*machine.kernel_args(), f"firmware_class.path={fw_dir}"]
        script = f"exec {program} {shlex.quote(str(out))}\n"
        with UmlGuest(
            kernel, {}, script, timeout=timeout, workdir=directory / "uml", extra_args=args
        ) as uml:
            result = uml.run(check=False)
        [processor] = machine.processors
    guest = json.loads(out.read_text()) if out.exists() else {}
    return guest, result, processor


@pytest.fixture(scope="module")
def life(uml_kernel: Path) -> Iterator[Life]:
    directory = Path("/tmp") / unique_name("openamp-rproc")
    directory.mkdir()
    try:
        program = (
            f"env PYTHONPATH={shlex.quote(str(SRC))} PYTHONDONTWRITEBYTECODE=1 "
            f"{shlex.quote(sys.executable)} -s {shlex.quote(str(GUEST))} adapter"
        )
        guest, result, processor = boot_guest(
            uml_kernel,
            directory,
            program,
            {"crashy.elf": "uml_crashy_firmware", "echo.elf": "echo"},
        )
        yield Life(guest, result, processor)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_the_kernel_registers_our_processor_offline_with_its_default_firmware(life: Life) -> None:
    initial = life.step("initial")
    assert life.step("name") == "r5f_0"
    assert initial == {
        "state": "offline",
        "firmware": "rproc-r5f_0-fw",
        "recovery": True,
        "coredump": "disabled",
    }
    assert life.step("ls")["code"] == 0 and '"name": "r5f_0"' in life.step("ls")["out"]
    assert life.step("search_path")[0].endswith("/firmware")  # firmware_class.path
    assert life.processor.events[:2] == ["connected", "hello remoteproc0 r5f_0"]


def test_start_loads_the_elf_and_our_firmware_serves_rpmsg(life: Life) -> None:
    assert life.step("start") == "running"
    assert life.step("addr") == 0x400  # the firmware's announcement reached Linux
    assert life.step("echo") == "hello remote"
    assert life.step("trace").startswith("uml_crashy_firmware: booted, table at 0x1000\n")
    assert life.step("trace_names") == ["trace0"]
    first = life.processor.boots[0]
    assert (first.firmware, first.spec, first.rsc_da) == (
        "crashy.elf",
        "uml_crashy_firmware",
        0x1000,
    )
    status = life.step("status")
    assert status["code"] == 0 and '"state": "running"' in status["out"]


def test_the_resource_table_shows_what_the_kernel_allocated(life: Life) -> None:
    trace, vdev = life.step("rsc")
    assert trace["type"] == "trace" and trace["device_address"] == 0x2000
    assert trace["length"] == 0x8000 and trace["name"] == "trace0"
    assert vdev["type"] == "vdev" and vdev["status"] == 7  # ACKNOWLEDGE|DRIVER|DRIVER_OK
    assert vdev["id"] == 7 and vdev["guest_features"] == 1
    vrings = vdev["vrings"]
    assert [v["notify_id"] for v in vrings] == [0, 1]
    for vring in vrings:  # allocated by the core (the firmware asked for any address)
        assert vring["device_address"] not in (0, 0xFFFFFFFF)
        assert vring["number_of_buffers"] == 16


def test_the_firmware_cannot_change_while_running(life: Life) -> None:
    err = life.step("firmware_while_running")
    assert err["type"] == "DeviceBusyError" and err["errno"] == 16


def test_a_crash_reported_through_debugfs_recovers_and_dumps_the_core(life: Life) -> None:
    assert life.step("after_kernel_crash") == "running"
    assert life.step("coredumps") == 1
    assert life.step("coredump_head") == "7f454c46"  # an ELF core file
    assert life.step("coredump_size") > 1 << 20  # the processor's 1 MiB of RAM
    assert life.step("echo_after_kernel_crash") == "again"
    log = "\n".join(life.step("dmesg"))
    assert "crash detected in r5f_0: type watchdog" in log


def test_a_firmware_that_dies_is_reported_and_rebooted(life: Life) -> None:
    assert life.step("crashes_seen") is True
    assert life.step("after_firmware_crash") == "running"
    assert life.step("echo_after_firmware_crash") == "still here"
    log = "\n".join(life.step("dmesg"))
    assert "crash detected in r5f_0: type fatal error" in log
    crashed = [b for b in life.processor.boots if b.crashed]
    assert len(crashed) == 1 and crashed[0].returncode == 3
    assert "crash reported" in life.processor.events


def test_with_recovery_off_the_processor_stays_crashed_until_recover(life: Life) -> None:
    assert life.step("crashed_state") == "crashed"
    assert life.step("stop_while_crashed")["type"] is not None  # the kernel refuses
    assert life.step("recovered_state") == "running"
    log = "\n".join(life.step("dmesg"))
    assert "crash detected in r5f_0: type mmufault" in log


def test_stop_removes_the_channels_and_the_trace(life: Life) -> None:
    assert life.step("stop") == "offline"
    assert life.step("channels_after_stop") == []
    assert life.step("traces_after_stop") == []


def test_openamp_rproc_starts_traces_and_stops_it(life: Life) -> None:
    assert life.step("cli_start")["code"] == 0 and life.step("cli_state") == "running"
    trace = life.step("cli_trace")
    assert trace["code"] == 0 and "uml_crashy_firmware: booted" in trace["out"]
    assert life.step("cli_stop")["code"] == 0 and life.step("cli_stopped") == "offline"


def test_the_character_device_starts_and_stops_the_processor(life: Life) -> None:
    assert life.step("cdev_started") == "running"
    assert life.step("cdev_stopped") == "offline"
    # every boot: load and start, and a stop (or a crash) before the next
    boots = life.processor.boots
    assert len(boots) == 6  # start, 2 recoveries, recover, the command's, the cdev's
    assert all(b.firmware == "crashy.elf" for b in boots)


def test_an_image_that_names_no_python_firmware_is_refused(uml_kernel: Path) -> None:
    directory = Path("/tmp") / unique_name("openamp-rproc")
    directory.mkdir()
    try:
        fw_dir = directory / "firmware"
        fw_dir.mkdir()
        table = firmware_table().to_bytes()  # loads fine, but names no program
        image = build_elf(
            [LoadSegment(TABLE_DA, table)], [Section(".resource_table", table, TABLE_DA, True)]
        )
        (fw_dir / "plain.elf").write_bytes(image)
        script = (
            "R=/sys/class/remoteproc/remoteproc0\n"
            "echo plain.elf > $R/firmware\n"
            "echo start > $R/state 2>&1; echo status $?\n"
            "cat $R/state\n"
        )
        with UmlRprocMachine(directory, ["r5f_0"]) as machine:
            args = [*machine.kernel_args(), f"firmware_class.path={fw_dir}"]
            with UmlGuest(
                uml_kernel, {}, script, timeout=60, workdir=directory / "uml", extra_args=args
            ) as uml:
                result = uml.run()
            [processor] = machine.processors
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert result.ok, result.describe()
    assert result.output == "status 1\noffline\n"  # the write failed, nothing runs
    assert "uml-rproc uml-rproc.0: request 2: the host answered -8" in result.console  # ENOEXEC
    assert processor.boots == [] and "load plain.elf: refused" in processor.events[-2]

"""The process driver: firmware booted as a process on the virtual machine."""

from __future__ import annotations

import os
import signal
import time

import pytest

from openamp import FirmwareImageError
from openamp.platform.process import ProcessMachine
from openamp.remoteproc.state import RprocState
from openamp.services import ECHO_SERVICE

S = RprocState


@pytest.fixture
def machine():
    m = ProcessMachine()
    try:
        yield m
    finally:
        m.close()
        assert not os.path.exists(f"/dev/shm/{m.name}.shm")


def echo_once(rproc, payload: bytes = b"ping") -> bytes:
    ept = rproc.rpmsg.get_endpoint(0x400) or rproc.rpmsg.endpoint(ECHO_SERVICE, timeout=10)
    ept.send(payload)
    return ept.recv(timeout=5)


def test_the_python_echo_firmware_boots_and_answers(machine):
    rproc = machine.remoteproc("echo")
    assert rproc.state is S.READY and rproc.table_da == 0x70000
    rproc.start()
    assert rproc.state is S.RUNNING
    assert echo_once(rproc, b"\x00hello\xff") == b"\x00hello\xff"
    assert "echo: booted, table at 0x70000" in rproc.trace()


def test_stop_ends_the_process_politely(machine):
    rproc = machine.remoteproc("echo")
    rproc.start()
    proc = machine.ops.proc
    rproc.stop()
    assert rproc.state is S.STOPPED
    assert proc.returncode == 0  # SIGTERM was enough
    rproc.shutdown()
    assert rproc.state is S.OFFLINE


def test_a_killed_remote_is_crashed_within_a_second(machine):
    rproc = machine.remoteproc("echo")
    rproc.start()
    echo_once(rproc)
    t0 = time.monotonic()
    os.kill(machine.ops.proc.pid, signal.SIGKILL)
    rproc.wait_state(S.CRASHED, timeout=1.0)
    assert time.monotonic() - t0 < 1.0
    assert "killed by signal 9" in rproc.history[-1].reason


def test_recovery_restarts_the_remote_and_the_host_endpoint_works_again(machine):
    rproc = machine.remoteproc("echo", recovery=True)
    rproc.start()
    ept = rproc.rpmsg.create_endpoint(ECHO_SERVICE)
    ept.wait_bound(10)
    ept.send(b"before")
    assert ept.recv(timeout=5) == b"before"
    states = []
    rproc.subscribe(lambda ev: states.append(ev.new))
    os.kill(machine.ops.proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while S.RUNNING not in states and time.monotonic() < deadline:
        time.sleep(0.01)
    assert states[:2] == [S.CRASHED, S.RUNNING]
    ept.wait_bound(10)  # the service is announced again and binds the same endpoint
    assert rproc.rpmsg.services == {ECHO_SERVICE: 0x400}
    ept.send(b"after")
    assert ept.recv(timeout=5) == b"after"
    assert rproc.crash_count == 1


def test_a_firmware_that_finishes_cleanly_is_stopped_not_crashed(machine):
    rproc = machine.remoteproc("echo")
    rproc.start()
    ept = rproc.rpmsg.endpoint(ECHO_SERVICE, timeout=10)
    ept.destroy()  # the echo firmware stops when the host's endpoint goes away
    rproc.wait_state(S.STOPPED, timeout=5)
    assert "exited with status 0" in rproc.history[-1].reason
    assert "stopped: the host destroyed its endpoint" in rproc.trace()


def test_an_unknown_python_firmware_is_a_clear_error(machine):
    with pytest.raises(FirmwareImageError):
        machine.remoteproc(b"not an elf")
    with pytest.raises(ValueError, match="no Python firmware 'openamp_no_such_module'"):
        machine.remoteproc("python:openamp_no_such_module")


def test_a_firmware_that_dies_before_connecting_reports_its_output(machine, tmp_path, monkeypatch):
    (tmp_path / "dying_fw.py").write_text(
        "import os\n"
        "if 'OPENAMP_SHM' in os.environ:\n"
        "    raise SystemExit('dying_fw: cannot start')\n"
        "def main(ctx):\n"
        "    return 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    rproc = machine.remoteproc("python:dying_fw")
    with pytest.raises(
        FirmwareImageError, match=r"exited with status 1 before connecting.*cannot start"
    ):
        rproc.start()
    assert rproc.state is S.READY


@pytest.mark.fixed_names
def test_a_linux_generic_program_without_a_table_is_attached_as_client(
    machine, tmp_path, fixed_names
):
    # Stand-in for a C Linux-generic demo such as rpmsg-echo: an ELF executable with no
    # .resource_table that creates /dev/shm/openamp.shm, writes its own table and serves
    # /tmp/openamp.event.0 (here by exec'ing our echo on the fixed names).
    import subprocess
    import sys

    src = tmp_path / "generic_echo.c"
    src.write_text(
        "#include <unistd.h>\n"
        "int main(int argc, char **argv) {\n"
        "    (void)argc; (void)argv;\n"
        f'    char *args[] = {{"{sys.executable}", "-m", "openamp", "echo", "--quiet", 0}};\n'
        f'    execv("{sys.executable}", args);\n'
        "    return 127;\n"
        "}\n"
    )
    exe = tmp_path / "generic_echo"
    subprocess.run(["gcc", "-O1", "-o", str(exe), str(src)], check=True)
    rproc = machine.remoteproc(str(exe))
    assert not rproc.has_table  # nothing to read before it runs
    rproc.start()
    assert rproc.state is S.RUNNING
    assert rproc.table.vdevs()[0].vrings[0].da == 0x4000  # the table it wrote itself
    ept = rproc.rpmsg.endpoint(ECHO_SERVICE, timeout=10)
    ept.send(b"generic")
    assert ept.recv(timeout=5) == b"generic"
    rproc.stop()
    assert rproc.state is S.STOPPED
    assert not os.path.exists("/dev/shm/openamp.shm")


def test_a_stopped_remote_starts_again_with_a_fresh_link(machine):
    rproc = machine.remoteproc("echo")
    rproc.start()
    assert echo_once(rproc, b"first run") == b"first run"
    rproc.stop()
    rproc.config()
    rproc.load(rproc.firmware)
    rproc.start()
    ept = rproc.rpmsg.endpoint(ECHO_SERVICE, timeout=10)
    ept.send(b"second run")
    assert ept.recv(timeout=5) == b"second run"


def test_the_compiled_c_firmware_boots_through_remoteproc_and_echoes(machine, tmp_path_factory):
    from firmware_build import build_echo_firmware

    exe = build_echo_firmware(tmp_path_factory.mktemp("fw"))
    rproc = machine.remoteproc(str(exe))
    assert rproc.table_da == 0x70000
    assert [t.name for t in rproc.traces] == ["trace0"]
    rproc.start()
    ept = rproc.rpmsg.endpoint(ECHO_SERVICE, timeout=10)
    for payload in (b"from the host", bytes(range(256)) + bytes(240), b"\0"):
        ept.send(payload)
        assert ept.recv(timeout=5) == payload
    assert "echo_fw: booted, table at 0x70000" in rproc.trace()
    ept.destroy()  # NS destroy: the C firmware exits 0
    rproc.wait_state(S.STOPPED, timeout=5)
    assert "echoed 3 messages" in rproc.trace()


def test_a_killed_c_firmware_is_crashed_and_recovered(machine, tmp_path_factory):
    from firmware_build import build_echo_firmware

    exe = build_echo_firmware(tmp_path_factory.mktemp("fw"))
    rproc = machine.remoteproc(str(exe), recovery=True)
    rproc.start()
    ept = rproc.rpmsg.create_endpoint(ECHO_SERVICE)
    ept.wait_bound(10)
    os.kill(machine.ops.proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while rproc.crash_count == 0 or rproc.state is not S.RUNNING:
        assert time.monotonic() < deadline, rproc.history
        time.sleep(0.01)
    ept.wait_bound(10)
    ept.send(b"after recovery")
    assert ept.recv(timeout=5) == b"after recovery"


def test_a_missing_firmware_file_is_a_clear_error(machine):
    with pytest.raises(ValueError, match=r"no firmware .nosuchfile.: no such file.*echo"):
        machine.remoteproc("nosuchfile")

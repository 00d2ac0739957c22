"""The pytest plugin: the documented example suite runs from another folder on two
workers, a failure shows the firmware's console, nothing is left behind, and a pytest
run that uses no fixture of ours loads no pyopenamp."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from openamp.platform import InProcessPair
from openamp.pytest_plugin import LinuxFixture, RprocFactory, VirtualMachineFixture
from openamp.rpmsg.virtio import RpmsgVirtioDevice

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "testing-firmware.md"


def documented_files(page: Path) -> dict[str, str]:
    """The ```python file=NAME blocks of a docs page: NAME -> source."""
    text = page.read_text()
    return dict(re.findall(r"```python file=(\S+)\n(.*?)```", text, re.S))


def plugin_option() -> list[str]:
    """``-p openamp.pytest_plugin`` unless the pytest11 entry point already loads it."""
    registered = any(
        ep.value == "openamp.pytest_plugin"
        for ep in importlib.metadata.entry_points(group="pytest11")
    )
    return [] if registered else ["-p", "openamp.pytest_plugin"]


def pytest_in(folder: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *plugin_option(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=folder,
        env=env,
    )


def test_the_plugin_is_registered_under_the_pytest11_entry_point() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"openamp": "openamp.pytest_plugin"}
    assert any(dep.startswith("pytest-xdist") for dep in project["optional-dependencies"]["test"])


@pytest.mark.parametrize("where", ["its folder", "the folder above"])
def test_the_documented_suite_passes_on_two_workers(tmp_path: Path, where: str) -> None:
    files = documented_files(PAGE)
    assert set(files) == {"my_firmware.py", "host.py", "test_my_firmware.py"}
    project = tmp_path / "my_project"
    project.mkdir()
    for name, source in files.items():
        (project / name).write_text(source)
    if where == "its folder":
        r = pytest_in(project, "-n", "2", "-v")
    else:
        r = pytest_in(tmp_path, "my_project", "-n", "2", "-v")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert re.search(r"\b6 passed\b", r.stdout), r.stdout[-2000:]
    workers = set(re.findall(r"\[(gw\d)\] .*PASSED", r.stdout))
    assert workers == {"gw0", "gw1"}, r.stdout[-2000:]  # the suite spread over both


@pytest.mark.parametrize("where", ["its folder", "another folder"])
def test_the_documented_host_program_runs(tmp_path: Path, where: str) -> None:
    project = tmp_path / "my_project"
    project.mkdir()
    for name, source in documented_files(PAGE).items():
        (project / name).write_text(source)
    cwd = project if where == "its folder" else tmp_path
    r = subprocess.run(
        [sys.executable, str(project / "host.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[b'HELLO', b'FIRMWARE']"


FAILING_SUITE = """\
from openamp.pytest_plugin import RprocFactory
from openamp.remoteproc import RprocState

def test_a_wrong_expectation(openamp_rproc: RprocFactory) -> None:
    rproc = openamp_rproc("python:crashing_fw")
    rproc.wait_state(RprocState.CRASHED, timeout=10)
    assert False, "the test failed"
"""

CRASHING_FIRMWARE = """\
def main(ctx):
    ctx.trace("crashing_fw: about to fail")
    print("console line before the crash", flush=True)
    raise ValueError("the firmware's own bug")
"""


def test_a_failed_test_shows_the_firmware_console_trace_and_states(tmp_path: Path) -> None:
    (tmp_path / "crashing_fw.py").write_text(CRASHING_FIRMWARE)
    (tmp_path / "test_failing.py").write_text(FAILING_SUITE)
    r = pytest_in(tmp_path, "-q")
    assert r.returncode == 1
    out = r.stdout
    assert "openamp: firmware console" in out
    assert "console line before the crash" in out
    assert "ValueError: the firmware's own bug" in out
    assert "openamp: firmware trace" in out and "crashing_fw: about to fail" in out
    assert "offline -> ready -> running -> crashed" in out
    # and the crash itself is reported at teardown, since the test did not allow it
    assert "the firmware crashed 1 time(s) during the test" in out


def test_a_crash_the_test_expects_is_not_an_error(
    openamp_rproc: RprocFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "crashing_fw.py").write_text(CRASHING_FIRMWARE)
    monkeypatch.chdir(tmp_path)
    rproc = openamp_rproc("python:crashing_fw", crashes_ok=True)
    from openamp.remoteproc import RprocState

    rproc.wait_state(RprocState.CRASHED, timeout=10)
    assert rproc.crash_count == 1


def test_leftovers_of_a_virtual_machine_fail_the_test(tmp_path: Path) -> None:
    (tmp_path / "test_leaky.py").write_text(
        textwrap.dedent(
            """\
            from openamp.pytest_plugin import VirtualMachineFixture

            def test_leaves_a_file(openamp_vm: VirtualMachineFixture) -> None:
                open(f"/dev/shm/{openamp_vm.name}.shm", "w").close()
            """
        )
    )
    r = pytest_in(tmp_path, "-q")
    assert r.returncode == 1
    assert "the virtual machine left these behind" in r.stdout and "1 passed, 1 error" in r.stdout


def test_a_run_that_uses_no_fixture_of_ours_loads_no_pyopenamp(tmp_path: Path) -> None:
    (tmp_path / "test_other.py").write_text(
        textwrap.dedent(
            """\
            import sys

            def test_nothing_of_openamp_is_loaded() -> None:
                ours = sorted(m for m in sys.modules if m.startswith("openamp"))
                assert ours == ["openamp", "openamp.errors", "openamp.pytest_plugin"], ours
            """
        )
    )
    r = pytest_in(tmp_path, "-q")
    assert r.returncode == 0, r.stdout


def test_openamp_vm_runs_a_remote_command_against_a_host(
    openamp_vm: VirtualMachineFixture,
) -> None:
    openamp_vm.remote("openamp", "echo", "--count", "1")
    ept = openamp_vm.host().endpoint("rpmsg-openamp-demo-channel", timeout=10.0)
    ept.send(b"two processes")
    assert ept.recv(timeout=5.0) == b"two processes"
    [(code, output)] = openamp_vm.finish()
    assert code == 0 and "1 messages" in output


def test_openamp_pair_runs_a_firmware_main_in_process(openamp_pair: InProcessPair) -> None:
    firmware = openamp_pair.boot("echo")
    ept = firmware.rpmsg.endpoint("rpmsg-openamp-demo-channel", timeout=5.0)
    ept.send(b"in process")
    assert ept.recv(timeout=5.0) == b"in process"
    assert "echo: serving 'rpmsg-openamp-demo-channel' at 0x400" in firmware.trace_lines


def test_openamp_rproc_boots_a_c_firmware_elf(
    openamp_rproc: RprocFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from firmware_build import build_echo_firmware

    elf = build_echo_firmware(tmp_path_factory.mktemp("firmware"))
    rproc = openamp_rproc(str(elf))
    ept = rproc.rpmsg.endpoint("rpmsg-openamp-demo-channel", timeout=10.0)
    ept.send(b"to C")
    assert ept.recv(timeout=5.0) == b"to C"
    assert "echo_fw: booted" in rproc.trace()


def test_openamp_rproc_boots_a_c_linux_generic_program(
    openamp_rproc: RprocFactory, tmp_path: Path
) -> None:
    # a stand-in for the C rpmsg-echo: no .resource_table, the C names, its own table
    src = tmp_path / "generic_echo.c"
    src.write_text(
        "#include <unistd.h>\n"
        "int main(void) {\n"
        f'    char *args[] = {{"{sys.executable}", "-m", "openamp", "echo", "-q", 0}};\n'
        f'    execv("{sys.executable}", args);\n'
        "    return 127;\n"
        "}\n"
    )
    exe = tmp_path / "generic_echo"
    subprocess.run(["gcc", "-O1", "-o", str(exe), str(src)], check=True)
    rproc = openamp_rproc(str(exe))
    ept = rproc.rpmsg.endpoint("rpmsg-openamp-demo-channel", timeout=10.0)
    ept.send(b"generic")
    assert ept.recv(timeout=5.0) == b"generic"


@pytest.mark.uml
@pytest.mark.timeout(1800)  # the first run builds the kernel (minutes)
def test_openamp_linux_makes_the_real_kernel_the_host_of_this_process(
    uml_kernel: Path, openamp_linux: LinuxFixture, tmp_path: Path
) -> None:
    # uml_kernel (conftest) builds the kernel if needed, so this never skips here
    listing = tmp_path / "channels.txt"

    def serve(rpmsg: RpmsgVirtioDevice) -> int:
        return rpmsg.create_endpoint("openamp-plugin-check").addr

    boot = openamp_linux.boot(f"sleep 2; ls /sys/bus/rpmsg/devices > {listing}\n", serve)
    assert boot.result.ok, boot.result.describe()
    assert f"openamp-plugin-check.-1.{boot.value}" in listing.read_text()

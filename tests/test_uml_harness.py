"""The UML harness's own rules, checked without booting anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import openamp
from openamp.errors import UsageError
from openamp.tools import uml
from openamp.tools.uml import (
    ARGS_ENV,
    BUILD_SCRIPT,
    KERNEL_ENV,
    UmlBuildError,
    UmlGuest,
    UmlKernelError,
    UmlScriptError,
    find_or_build_kernel,
)


@pytest.fixture
def fake_kernel(tmp_path: Path) -> Path:
    kernel = tmp_path / "linux"
    kernel.write_text("#!/bin/sh\nexit 0\n")
    kernel.chmod(0o755)
    return kernel


def test_the_kernel_named_by_the_environment_is_used_as_is(
    fake_kernel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KERNEL_ENV, str(fake_kernel))
    assert find_or_build_kernel() == fake_kernel


def test_a_kernel_named_by_the_environment_must_be_executable(
    fake_kernel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_kernel.chmod(0o644)
    monkeypatch.setenv(KERNEL_ENV, str(fake_kernel))
    with pytest.raises(UmlBuildError, match="not an executable"):
        find_or_build_kernel()


@pytest.mark.parametrize("path", ["relative.sock", "/tmp/a:b.sock", "/tmp/a b.sock"])
def test_socket_paths_must_fit_the_kernel_command_line(fake_kernel: Path, path: str) -> None:
    with pytest.raises(UsageError, match="absolute, without"):
        UmlGuest(fake_kernel, {path: 7}, "true")


def test_the_command_line_boots_hostfs_with_one_device_per_socket(
    fake_kernel: Path, tmp_path: Path
) -> None:
    with UmlGuest(fake_kernel, {"/tmp/x.sock": 7, tmp_path / "y.sock": 7}, "true") as guest:
        cmd = guest.command
        workdir = guest.workdir
        assert cmd[0] == str(fake_kernel)
        assert "rootfstype=hostfs" in cmd and "rootflags=/" in cmd and "rw" in cmd
        assert "virtio_uml.device=/tmp/x.sock:7" in cmd
        assert f"virtio_uml.device={tmp_path / 'y.sock'}:7" in cmd
        assert f"init={workdir / 'init.sh'}" in cmd
    assert not workdir.exists()  # our own working directory goes with the guest


def test_booting_without_a_listening_backend_is_refused(fake_kernel: Path) -> None:
    with (
        UmlGuest(fake_kernel, {"/tmp/openamp-nobody-listens.sock": 7}, "true") as guest,
        pytest.raises(UsageError, match="start the vhost-user backend first"),
    ):
        guest.start()
    assert not os.path.exists(guest.workdir)


def script_kernel(tmp_path: Path, body: str) -> Path:
    """A stand-in for the kernel: a shell script that behaves as ``body`` says.

    It gets UML's command line; ``$UML_DIR`` is the guest's working directory (from
    ``uml_dir=``), where the real init script would write ``script.status``.
    """
    kernel = tmp_path / "linux"
    kernel.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case $a in uml_dir=*) UML_DIR=${a#uml_dir=} ;; esac; done\n' + body
    )
    kernel.chmod(0o755)
    return kernel


PANIC = "Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b"


def test_a_panicking_kernel_raises_with_the_panic_line_first(tmp_path: Path) -> None:
    kernel = script_kernel(
        tmp_path,
        "echo 'ptrace set fp regs failed, errno = 14'\n"
        f"echo '{PANIC}'\n"
        'for i in 1 2 3; do echo "trace line $i"; done\n'
        "kill -ABRT $$\n",
    )
    with UmlGuest(kernel, {}, "true") as guest, pytest.raises(UmlKernelError) as caught:
        guest.run()
    message = str(caught.value)
    assert message.startswith(PANIC), message
    assert "killed by signal 6" in message.splitlines()[0]
    assert "trace line 3" in message  # the end of the console follows
    result = caught.value.result
    assert result.returncode == -6 and result.script_status is None
    assert not result.ok and not result.completed


def test_check_false_hands_back_a_failed_run_to_inspect(tmp_path: Path) -> None:
    kernel = script_kernel(tmp_path, "echo 'Segfault with no mm'\nexit 1\n")
    with UmlGuest(kernel, {}, "true") as guest:
        result = guest.run(check=False)
    assert not result.completed
    assert result.panic_line() == "Segfault with no mm"
    with pytest.raises(UmlKernelError, match=r"^Segfault with no mm \(UML exited with status 1"):
        result.check()


def test_a_kernel_that_hangs_is_killed_and_reported_as_a_time_out(tmp_path: Path) -> None:
    kernel = script_kernel(tmp_path, "echo booting\nexec sleep 60\n")
    with (
        UmlGuest(kernel, {}, "true", timeout=0.5) as guest,
        pytest.raises(UmlKernelError, match="did not power off within its time limit"),
    ):
        guest.run()


def test_a_failed_script_is_the_scripts_error_not_the_kernels(tmp_path: Path) -> None:
    kernel = script_kernel(tmp_path, 'echo 3 > "$UML_DIR/script.status"\nexit 0\n')
    with UmlGuest(kernel, {}, "exit 3") as guest:
        result = guest.run()  # the kernel completed the script: no exception here
    assert result.completed and result.script_status == 3 and not result.ok
    with pytest.raises(UmlScriptError, match="status 3"):
        result.check()


def test_extra_kernel_arguments_come_from_the_environment(
    fake_kernel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ARGS_ENV, "xstate_bounce loglevel=8")
    with UmlGuest(fake_kernel, {}, "true", extra_args=["quiet"]) as guest:
        assert guest.command[-3:] == ["quiet", "xstate_bounce", "loglevel=8"]


def test_the_build_script_and_its_patches_ship_inside_the_package() -> None:
    package = Path(openamp.__file__).parent
    assert BUILD_SCRIPT.parent.parent.parent == package
    names = sorted(p.name for p in BUILD_SCRIPT.parent.iterdir())
    assert "build-kernel.sh" in names
    assert "uml-xstate-host-size.patch" in names
    assert "virtio-uml-vring-work.patch" in names


def test_the_builds_progress_lines_reach_the_caller_as_they_come(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = tmp_path / "built-linux"
    built.write_text("")
    script = tmp_path / "build-kernel.sh"
    script.write_text(
        "echo 'uml kernel build [  0s] unpacking' >&2\n"
        "echo 'some compiler noise' >&2\n"
        "echo 'uml kernel build [ 20s] compiling: 10 of about 910 objects' >&2\n"
        f"echo {built}\n"
    )
    monkeypatch.delenv(KERNEL_ENV, raising=False)
    monkeypatch.setattr(uml, "BUILD_SCRIPT", script)
    lines: list[str] = []
    assert find_or_build_kernel(tmp_path / "cache", progress=lines.append) == built
    assert lines == [
        "uml kernel build [  0s] unpacking",
        "uml kernel build [ 20s] compiling: 10 of about 910 objects",
    ]


def test_a_failed_build_says_why_with_the_end_of_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    script = tmp_path / "build-kernel.sh"
    script.write_text(
        f"echo 'E: Unable to locate package linux-source-6.1' > {cache}/build.log\nexit 100\n"
    )
    monkeypatch.delenv(KERNEL_ENV, raising=False)
    monkeypatch.setattr(uml, "BUILD_SCRIPT", script)
    with pytest.raises(UmlBuildError, match=r"(?s)status 100.*Unable to locate package"):
        find_or_build_kernel(cache, progress=lambda line: None)


def test_a_present_system_tool_is_found_without_installing() -> None:
    from openamp.tools.sysdeps import ensure_tool

    assert ensure_tool("sh", "dash", install=False).endswith("/sh")


def test_a_missing_system_tool_says_what_to_install() -> None:
    from openamp.tools.sysdeps import SystemDependencyError, ensure_tool

    with pytest.raises(SystemDependencyError, match="apt-get install no-such-package"):
        ensure_tool("no-such-tool-pyopenamp", "no-such-package", install=False)

"""The UML harness's own rules, checked without booting anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from openamp.errors import UsageError
from openamp.tools.uml import KERNEL_ENV, UmlBuildError, UmlGuest, find_or_build_kernel


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

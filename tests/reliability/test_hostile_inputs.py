"""Bad input from a user's command line or a remote's request gets a clear, typed
answer, never a traceback, a hang or a file it should not get (issue 11, families 9 and
11).  The numbers on the command line are the CLI contract's (tests/test_cli.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import run_openamp
from openamp.platform import InProcessPair
from openamp.services.proxy import ProxyClient, ProxyServer
from openamp.services.rpc import LINUX_O_CREAT, LINUX_O_WRONLY, RpcFileClient, RpcFileServer


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def sparse(tmp_path: Path) -> Path:
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as f:
        f.truncate(3 << 30)  # 3 GiB of nothing
    return path


@pytest.mark.parametrize("command", ["show", "check"])
@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("/dev/zero", "it is a character device"),
        ("/dev/urandom", "it is a character device"),
        ("/", "it is a directory"),
        ("fifo", "it is a FIFO"),
        ("sparse", "more than the 67108864-byte limit"),
        ("/nonexistent/x.elf", "No such file or directory"),
    ],
)
def test_rsc_refuses_what_is_not_a_regular_file_of_sane_size(
    command: str, target: str, says: str, request: pytest.FixtureRequest
) -> None:
    if target in ("fifo", "sparse"):
        target = str(request.getfixturevalue(target))
    done = run_openamp("rsc", command, target)
    assert done.returncode != 0
    assert says in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "command", [["inspect"], ["capture", "show"]], ids=["inspect", "capture show"]
)
@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("/dev/zero", "it is a character device"),
        ("/dev/null", "it is a character device"),
        ("/", "it is a directory"),
        ("fifo", "it is a FIFO"),
        ("sparse", "-byte limit"),
        ("empty", "the file is empty"),
        ("/nonexistent/x.bin", "No such file or directory"),
    ],
)
def test_the_debugging_commands_refuse_what_is_no_dump_or_capture(
    command: list[str], target: str, says: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if target in ("fifo", "sparse"):
        target = str(request.getfixturevalue(target))
    elif target == "empty":
        (tmp_path / "empty").write_bytes(b"")
        target = str(tmp_path / "empty")
    done = run_openamp(*command, target)
    assert done.returncode == 1, done
    assert says in done.stderr and "Traceback" not in done.stderr


def test_inspect_refuses_a_gzip_bomb_and_a_broken_gzip(tmp_path: Path) -> None:
    import gzip

    bomb = tmp_path / "bomb.bin.gz"
    bomb.write_bytes(gzip.compress(bytes(300 << 20)))  # 300 MiB of zeros in 300 KiB
    done = run_openamp("inspect", str(bomb))
    assert done.returncode == 1 and "unpacks to more than" in done.stderr, done
    broken = tmp_path / "broken.bin.gz"
    broken.write_bytes(gzip.compress(b"x" * 1000)[:20])
    done = run_openamp("inspect", str(broken))
    assert done.returncode == 1 and "a broken gzip file" in done.stderr, done


@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_the_link_watchers_refuse_a_shm_that_is_not_a_regular_file(
    target: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if target == "fifo":
        target = str(request.getfixturevalue("fifo"))
    cap = tmp_path / "tap.pcapng"
    for command in (
        ["capture", "tap", str(cap), "--shm", target, "--wait", "5"],
        ["monitor", "--shm", target, "--for", "1"],
        ["inspect", "--shm", target],
        ["doctor", "--shm", target],
    ):
        done = run_openamp(*command)
        assert done.returncode == 1, done
        assert "not a regular file" in done.stdout + done.stderr, done
        assert "Traceback" not in done.stderr
    assert not cap.exists()  # a tap that saw nothing leaves no empty capture behind


def test_rsc_build_refuses_yaml_nested_too_deeply(tmp_path: Path) -> None:
    spec = tmp_path / "deep.yaml"
    spec.write_text("[" * 5000 + "]" * 5000)
    done = run_openamp("rsc", "build", str(spec), "-o", str(tmp_path / "t.bin"))
    assert done.returncode != 0
    assert "nested too deeply" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "t.bin").exists()


def test_a_remote_never_creates_an_executable_through_rpc(tmp_path: Path) -> None:
    p = InProcessPair()
    host, remote = p.driver(), p.device()
    RpcFileServer(host, tmp_path)
    client = RpcFileClient(remote, timeout=1.0)
    fd = client.open("tool", LINUX_O_CREAT | LINUX_O_WRONLY, 0o6777)
    client.close(fd)
    mode = (tmp_path / "tool").stat().st_mode & 0o7777
    assert mode & 0o7111 == 0, oct(mode)


def test_a_remote_never_creates_an_executable_through_the_proxy(tmp_path: Path) -> None:
    p = InProcessPair()
    host, remote = p.driver(), p.device()
    ProxyServer(host, tmp_path)
    client = ProxyClient(remote, timeout=1.0)
    client.open("tool", "w", perm=0o6777).close()
    mode = (tmp_path / "tool").stat().st_mode & 0o7777
    assert mode & 0o7111 == 0, oct(mode)

"""Two terminals: ``openamp rproc run --name`` keeps a firmware up, and ``openamp send``,
``listen`` and ``console`` reach it from other processes through its relay."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from conftest import run_openamp as openamp
from openamp.metal.shm import unique_name

ECHO = "rpmsg-openamp-demo-channel"


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "openamp", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def read_until(proc: subprocess.Popen[str], text: str) -> str:
    assert proc.stdout is not None
    seen = ""
    while text not in seen:
        line = proc.stdout.readline()
        assert line, f"{proc.args} ended before {text!r}:\n{seen}"
        seen += line
    return seen


def interrupt(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


@pytest.fixture
def running_echo() -> Iterator[str]:
    """`openamp rproc run echo --name NAME` in "terminal 1"; yields NAME."""
    name = unique_name("openamp-vm")
    proc = start("rproc", "run", "echo", "--name", name)
    try:
        read_until(proc, "announced")
        yield name
    finally:
        code, out, err = interrupt(proc)
        assert code == 0, out + err
        assert not os.path.exists(f"/tmp/{name}.ctl")


def test_send_with_reply_from_another_process(running_echo: str) -> None:
    r = openamp("send", "--machine", "virtual", "--name", running_echo, ECHO, "hello", "--reply")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{ECHO}: sent 1 message(s), 5 bytes", "reply: 'hello'"]


def test_listen_in_one_process_sees_what_another_one_sent(running_echo: str) -> None:
    listener = start("listen", "--machine", "virtual", "--name", running_echo, ECHO, "--count", "2")
    try:
        read_until(listener, "listening on")
        for word in ("first", "second"):
            assert openamp("send", "--name", running_echo, ECHO, word).returncode == 0
        out, err = listener.communicate(timeout=20)
    finally:
        interrupt(listener)
    assert listener.returncode == 0, err
    assert "'first'" in out and "'second'" in out and "2 message(s)" in out


def test_console_shows_the_firmware_trace_so_far(running_echo: str) -> None:
    r = openamp("console", "--machine", "virtual", "--name", running_echo, "--for", "0.5")
    assert r.returncode == 0, r.stderr
    assert "trace: echo: serving 'rpmsg-openamp-demo-channel' at 0x400" in r.stdout


def test_an_unknown_service_is_named_with_the_announced_ones(running_echo: str) -> None:
    r = openamp("send", "--name", running_echo, "nosuch", "x", "--timeout", "0.5")
    assert r.returncode == 1
    assert f"the firmware announced no 'nosuch' (announced: {ECHO})" in r.stderr


def test_no_machine_of_that_name_says_how_to_start_one() -> None:
    name = unique_name("openamp-vm")
    r = openamp("send", "--name", name, ECHO, "x", "--timeout", "0.5")
    assert r.returncode == 1
    assert f"start it with `openamp rproc run FIRMWARE --name {name}`" in r.stderr


def test_a_second_machine_of_the_same_name_is_refused(running_echo: str) -> None:
    r = openamp("rproc", "run", "echo", "--name", running_echo, "--for", "1")
    assert r.returncode == 1
    assert "is already running" in r.stderr


def test_send_right_after_starting_the_machine_waits_for_the_service() -> None:
    name = unique_name("openamp-vm")
    machine = start("rproc", "run", "echo", "--name", name)
    try:
        r = openamp("send", "--name", name, ECHO, "early", "--reply", "--timeout", "20")
    finally:
        code, out, err = interrupt(machine)
    assert r.returncode == 0, r.stderr
    assert "reply: 'early'" in r.stdout
    assert code == 0, out + err

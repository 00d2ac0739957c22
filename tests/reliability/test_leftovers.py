"""Nothing is left behind, even after SIGKILL of one side (issue 11, family 7).

A process killed with SIGKILL runs no cleanup.  Whatever it created must be removed by
the survivor (the peer still holding the memory) or by the next machine that starts
(files whose names carry the pid of a dead process, held by nobody).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from openamp.metal import doorbell, shm
from openamp.metal.shm import SHM_DIR, SharedMemory, is_held, reap_stale, unique_name
from openamp.platform.virtual import virtual_paths

HOST_SCRIPT = """
import sys, time
from openamp.platform.process import ProcessMachine
m = ProcessMachine(name=sys.argv[1])
rproc = m.remoteproc("echo")
rproc.start()
ept = rproc.rpmsg.endpoint("rpmsg-openamp-demo-channel", timeout=10)
ept.send(b"hi"); assert ept.recv(timeout=5) == b"hi"
print("up", flush=True)
time.sleep(60)
"""


def files_of(name: str) -> list[str]:
    shm_name, event = virtual_paths(name)
    return [p for p in (os.path.join(SHM_DIR, shm_name), event) if os.path.exists(p)]


def wait_until(condition, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def firmware_children(host_pid: int) -> list[int]:
    """Processes whose command line runs a Python firmware for machine ``host_pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"openamp.firmware" in cmd:
            found.append(int(entry.name))
    return found


def test_a_killed_host_leaves_nothing_its_firmware_cannot_remove(
    hostile_iterations: Callable[[int], int],
) -> None:
    # The host (the process driver) is killed; the firmware sees its doorbell close,
    # stops, and as the last holder removes the memory file.
    runs = hostile_iterations(1)
    for _ in range(runs):
        kill_a_host()
    print(f"SIGKILL of the host: {runs} runs, nothing left behind")


def kill_a_host() -> None:
    name = unique_name("openamp-vm")
    before = set(firmware_children(0))
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT, name], stdout=subprocess.PIPE, text=True
    )
    try:
        assert host.stdout is not None and host.stdout.readline().strip() == "up"
        assert files_of(name), "the machine's memory should exist while it runs"
        mine = set(firmware_children(0)) - before
        assert mine, "the firmware process should be running"
        host.send_signal(signal.SIGKILL)
        host.wait(10)
        assert wait_until(lambda: not (set(firmware_children(0)) & mine)), "firmware lingers"
        assert wait_until(lambda: not files_of(name)), f"left behind: {files_of(name)}"
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()


SERVER_SCRIPT = """
import sys
from openamp.platform.virtual import VirtualMachine
m = VirtualMachine(role="device", name=sys.argv[1])
m.listen()
print("listening", flush=True)
rpmsg = m.start(timeout=20)
rpmsg.create_endpoint("svc", callback=lambda e, d, s: e.sendto(d, s))
print("up", flush=True)
rpmsg.wait_until(lambda: False, 60)
"""


def test_the_survivor_of_a_killed_server_removes_its_memory(
    hostile_iterations: Callable[[int], int],
) -> None:
    runs = hostile_iterations(1)
    for _ in range(runs):
        kill_a_server()
    print(f"SIGKILL of the socket server: {runs} runs, nothing left behind")


def kill_a_server() -> None:
    from openamp.errors import PeerGoneError
    from openamp.platform.virtual import VirtualMachine

    name = unique_name("openamp-vm")
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, name], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "listening"
        with VirtualMachine(role="driver", name=name) as host:
            assert server.stdout.readline().strip() == "up"
            ept = host.rpmsg.endpoint("svc", timeout=10)
            ept.send(b"ping")
            assert ept.recv(timeout=5) == b"ping"
            server.send_signal(signal.SIGKILL)
            server.wait(10)
            with pytest.raises(PeerGoneError):
                ept.send(b"anyone?")
                ept.recv(timeout=5)
        assert files_of(name) == []
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_files_of_dead_processes_are_reaped_when_a_machine_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shm, "STALE_AGE_S", 0.0)
    stale = f"openamp-vm-{dead_pid()}-deadbeef"
    shm_path = os.path.join(SHM_DIR, f"{stale}.shm")
    Path(shm_path).write_bytes(b"\0" * 4096)
    sock_path = f"/tmp/{stale}.event"
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(sock_path)
    s.close()  # bound, never listened: what a server killed at start-up leaves
    from openamp.platform.virtual import VirtualMachine

    machine = VirtualMachine(role="device", name=unique_name("openamp-vm"))
    try:
        machine.listen()  # a server starting up cleans up after the dead
        assert not os.path.exists(shm_path)
        assert not os.path.exists(sock_path)
    finally:
        machine.close()


def test_nothing_held_or_of_a_living_process_is_ever_reaped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shm, "STALE_AGE_S", 0.0)
    held_name = unique_name("openamp-vm")  # our own (living) pid in the name
    with SharedMemory.open(held_name, 4096, unlink_on_close=True) as held:
        assert is_held(held.path)
        assert held.path not in reap_stale()
        assert os.path.exists(held.path)
    # a dead pid, but someone holds it: not reaped either
    name = f"openamp-vm-{dead_pid()}-0badf00d"
    with SharedMemory.open(name, 4096, unlink_on_close=True) as other:
        assert other.path not in reap_stale()
        assert os.path.exists(other.path)
    # the fixed C names never qualify
    assert all("openamp.shm" not in p for p in reap_stale(pattern="*"))
    assert doorbell.reap_stale_sockets(pattern="openamp.event.*") == []


def test_the_last_holder_removes_the_memory_and_only_the_last() -> None:
    name = unique_name("openamp-test")
    first = SharedMemory.open(name, 4096, unlink_when_last=True)
    second = SharedMemory.open(name, 4096, create=False, unlink_when_last=True)
    first.close()
    assert os.path.exists(second.path)
    second.close()
    assert not os.path.exists(second.path)


def test_a_killed_holder_stops_holding() -> None:
    name = unique_name("openamp-test")
    code = textwrap.dedent(
        f"""
        import time
        from openamp.metal.shm import SharedMemory
        SharedMemory.open({name!r}, 4096)
        print("held", flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    path = os.path.join(SHM_DIR, name)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        assert is_held(path)
        child.kill()
        child.wait()
        assert not is_held(path)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if os.path.exists(path):
            os.unlink(path)

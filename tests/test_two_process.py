"""Python host and Python remote in two processes, over real shared memory and sockets."""

from __future__ import annotations

import os
import signal
import time

import pytest

from openamp import OpenAMPError, PeerGoneError
from openamp.platform import LinuxGenericMachine, VirtualMachine
from openamp.services import ECHO_SERVICE, run_ping

PAIRINGS = [("server", "client"), ("client", "server")]  # (device socket, driver socket)


def machine_args(machine: str, name: str) -> list[str]:
    return ["--machine", "virtual", "--name", name] if machine == "virtual" else []


def run_echo_and_ping(children, machine: str, name: str, device_socket: str, driver_socket: str):
    common = [*machine_args(machine, name), "--timeout", "20"]
    echo = children.openamp("echo", *common, "--role", "device", "--socket", device_socket)
    ping = children.openamp("ping", *common, "--role", "driver", "--socket", driver_socket)
    return children.result(ping), children.result(echo)


@pytest.mark.parametrize(("device_socket", "driver_socket"), PAIRINGS)
def test_480_message_echo_on_the_virtual_machine(children, vm_name, device_socket, driver_socket):
    (ping_rc, ping_out, ping_err), (echo_rc, echo_out, _) = run_echo_and_ping(
        children, "virtual", vm_name, device_socket, driver_socket
    )
    assert ping_rc == 0, ping_out + ping_err
    assert "480 sent, 480 received, 0 errors" in ping_out
    assert "Error count = 0" in ping_out
    assert echo_rc == 0
    assert (
        "480 messages (123120 bytes) echoed; stopped: the host destroyed its endpoint" in echo_out
    )


@pytest.mark.fixed_names
@pytest.mark.parametrize(("device_socket", "driver_socket"), PAIRINGS)
def test_480_message_echo_on_the_linux_generic_machine(
    children, fixed_names, device_socket, driver_socket
):
    (ping_rc, ping_out, ping_err), (echo_rc, echo_out, _) = run_echo_and_ping(
        children, "linux-generic", "", device_socket, driver_socket
    )
    assert ping_rc == 0, ping_out + ping_err
    assert "480 sent, 480 received, 0 errors" in ping_out
    assert "/dev/shm/openamp.shm (512 KiB), doorbell /tmp/openamp.event.0" in echo_out
    assert echo_rc == 0


def test_the_socket_server_removes_the_shared_memory_and_socket(children, vm_name):
    echo = children.openamp("echo", "--machine", "virtual", "--name", vm_name, "--timeout", "20")
    with VirtualMachine(role="driver", name=vm_name, socket="client") as host:
        assert os.path.exists(f"/dev/shm/{vm_name}.shm")
        assert run_ping(host.rpmsg, count=10).ok  # so the server has accepted us
        assert not os.path.exists(f"/tmp/{vm_name}.event")  # unlinked once accepted
    rc, out, _ = children.result(echo)
    assert rc == 0
    assert not os.path.exists(f"/dev/shm/{vm_name}.shm")


def test_a_host_in_this_process_talks_to_a_remote_process(children, vm_name):
    children.openamp("echo", "--machine", "virtual", "--name", vm_name, "--timeout", "20")
    with VirtualMachine(role="driver", name=vm_name) as host:
        ept = host.rpmsg.endpoint(ECHO_SERVICE, timeout=10)
        for payload in (b"x", bytes(range(256)) + b"\0" * 240, b"\0"):
            ept.send(payload)
            assert ept.recv(timeout=5) == payload


def test_a_remote_that_dies_gives_the_host_an_error_not_a_hang(children, vm_name):
    echo = children.openamp("echo", "--machine", "virtual", "--name", vm_name, "--timeout", "20")
    with VirtualMachine(role="driver", name=vm_name) as host:
        ept = host.rpmsg.endpoint(ECHO_SERVICE, timeout=10)
        ept.send(b"first")
        assert ept.recv(timeout=5) == b"first"
        os.kill(echo.pid, signal.SIGKILL)
        echo.wait(timeout=10)
        t0 = time.monotonic()
        with pytest.raises(OpenAMPError) as info:
            for _ in range(1000):
                ept.send(b"anyone?", timeout=2)
                ept.recv(timeout=2)
        assert isinstance(info.value, (PeerGoneError, TimeoutError))
        assert time.monotonic() - t0 < 30


def test_a_host_without_a_remote_times_out_with_the_socket_path(vm_name):
    host = VirtualMachine(role="driver", name=vm_name)
    with pytest.raises(OpenAMPError, match=vm_name):
        host.start(timeout=0.3)
    host.close()


@pytest.mark.fixed_names
def test_the_linux_generic_machine_uses_the_c_names(fixed_names, children):
    m = LinuxGenericMachine(role="device")
    assert (m.shm_name, m.event_path) == ("openamp.shm", "/tmp/openamp.event.0")
    assert m.socket_role == "server"
    assert LinuxGenericMachine(role="driver").socket_role == "client"


@pytest.mark.parametrize("host_wait", ["block", "spin-then-block"])
def test_a_flood_larger_than_the_rings_completes_between_blocking_peers(
    children, vm_name, host_wait
):
    # 3000 echoed messages through 256-entry rings: the host runs out of transmit buffers
    # while echoes fill its receive ring.  A blocked side wakes only on a kick, so every
    # wait must have asked for the kicks it needs (rx kicks are off while we are busy).
    children.openamp(
        "echo", "--machine", "virtual", "--name", vm_name, "--timeout", "30", "--wait", "block"
    )
    got = []
    with VirtualMachine(role="driver", name=vm_name, wait=host_wait) as host:
        ept = host.rpmsg.create_endpoint(
            ECHO_SERVICE, callback=lambda e, data, src: got.append(bytes(data))
        )
        ept.wait_bound(10)
        payloads = [b"%d" % i for i in range(3000)]
        assert ept.send_many(payloads, timeout=10) == 3000
        assert host.rpmsg.wait_until(lambda: len(got) == 3000, 10), len(got)
        assert got == payloads

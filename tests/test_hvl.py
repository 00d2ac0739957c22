"""Hypervisorless virtio across processes: the monitor here, the remote in a child, real shm.

Also the two sides' command lines, the board's mailbox doorbell, the TAP interface in a
network namespace of the test's own (root only), and ``openamp demo hvl`` as a user
runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Children
from openamp.errors import PeerGoneError
from openamp.hvl import HvlLayout, HvlSystem, SocketPairBackend, UserMboxDoorbell
from openamp.hvl.tap import NetNamespace, TapBackend, namespaces
from openamp.metal.shm import unique_name
from openamp.tools.hvl import LINUX_IP, REMOTE_IP, PythonHost, linux_side

ROOT = Path(__file__).resolve().parents[1]
IS_ROOT = os.geteuid() == 0
NEEDS_ROOT = pytest.mark.skipif(
    not IS_ROOT, reason="creating a TAP interface and a network namespace needs root"
)


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT / "src"))


def test_the_remote_boots_in_its_own_process_and_passes_the_entropy_test() -> None:
    with HvlSystem(remote_args=["--no-shell"]) as system:
        system.wait_output("get_entropy test passed", 10)
        status, _out, err = system.wait_remote(10)
        assert system.monitor is not None
        stats = system.monitor.stats()
    assert status == 0, err
    text = system.output.decode()
    assert "VIRTIO 4d564b4c:00000004" in text and "virtio_rng_init()" in text
    assert len([line for line in text.splitlines() if line.startswith("  0x")]) == 9
    assert stats["notifications"] > 0 and stats["rng_interrupts"] > 0


def test_the_shell_runs_commands_over_the_virtio_console() -> None:
    with HvlSystem() as system:
        mark = system.wait_output("uart:~$ ", 10)
        system.send("device list\n")
        mark = system.wait_output("uart:~$ ", 5, start=mark)
        system.send("entropy 8\n")
        mark = system.wait_output("uart:~$ ", 5, start=mark)
        system.send("exit\n")
        status, _out, err = system.wait_remote(5)
    assert status == 0, err
    text = system.output.decode()
    assert "- virt-rng (READY)" in text and "- virt-net (READY)" in text
    lines = text.splitlines()
    hexline = lines[lines.index("uart:~$ entropy 8") + 1]
    assert len(bytes.fromhex(hexline)) == 8
    assert text.rstrip().endswith("bye")


def test_pings_cross_the_virtio_network_both_ways_over_a_socket_pair() -> None:
    net = SocketPairBackend()
    host = PythonHost(net.peer)
    try:
        with HvlSystem(net=net) as system:
            mark = system.wait_output("uart:~$ ", 10)
            rtts = host.ping(REMOTE_IP, 3)
            system.send(f"net ping -c 2 {LINUX_IP}\n")
            system.wait_output("uart:~$ ", 10, start=mark)
            system.send("exit\n")
            system.wait_remote(5)
    finally:
        host.close()
        net.close()
    assert len(rtts) == 3
    assert system.output.decode().count(f"bytes from {LINUX_IP} to {REMOTE_IP}") == 2


def test_the_remote_leaves_when_the_monitor_goes_away() -> None:
    system = HvlSystem().start()
    system.wait_output("uart:~$ ", 10)
    system.close()  # no "exit": the IPI line closes under the remote
    assert system.remote_result is not None
    status, _out, err = system.remote_result
    assert status == 0 and "the monitor went away" in err


def test_a_monitor_with_the_reference_pools_over_the_windows_still_serves_our_remote() -> None:
    layout = HvlLayout(pools_at=0)  # as lkvm --no-dtb advertises them
    with HvlSystem(layout=layout, remote_args=["--no-shell"]) as system:
        system.wait_output("get_entropy test passed", 10)
        status, _out, err = system.wait_remote(10)
        assert system.shm is not None
        window0 = bytes(system.shm.mmap[0:4])
    assert status == 0, err
    assert window0 == b"virt"  # the remote kept its rings off the windows


def test_the_two_sides_run_from_their_command_lines(children: Children) -> None:
    name = unique_name("openamp-hvl")
    sock = f"/tmp/{name}.sock"
    monitor = children.start(
        [
            sys.executable,
            "-m",
            "openamp.hvl",
            "monitor",
            "--shm",
            name,
            "--socket",
            sock,
            "--devices",
            "rng,console",
            "--size",
            "0x100000",
            "--timeout",
            "20",
        ]
    )
    remote = children.start(
        [
            sys.executable,
            "-m",
            "openamp.hvl",
            "remote",
            "--shm",
            name,
            "--socket",
            sock,
            "--size",
            "0x100000",
            "--no-shell",
        ]
    )
    status, out, err = Children.result(remote, 30)
    assert status == 0, err
    mstatus, mout, merr = Children.result(monitor, 30)
    assert mstatus == 0, merr
    assert "virtio-mmio.devices=0x200@0x37000000 [0x4d564b4c:0x4]" in merr
    assert "virtio-mmio.devices=0x200@0x37000200 [0x4d564b4c:0x3]" in merr
    assert "get_entropy test passed" in mout  # the remote's console is the monitor's stdout
    assert not Path(f"/dev/shm/{name}").exists() and not Path(sock).exists()


def test_the_mailbox_doorbell_writes_a_newline_per_ipi_and_drains_what_arrived() -> None:
    a, b = socket.socketpair()
    mbox = UserMboxDoorbell.from_fd(os.dup(a.fileno()), "umb-test")
    try:
        mbox.kick()
        assert b.recv(16) == b"\n"
        assert not mbox.wait_readable(0)
        b.send(b"\n\n")
        assert mbox.wait_readable(1) and mbox.drain() == 2
        assert mbox.kicks_sent == 1 and mbox.kicks_received == 2
    finally:
        mbox.close()
        a.close()
        b.close()


def test_the_demo_says_what_it_skipped_without_a_tap() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "openamp", "demo", "hvl", "--no-tap"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "get_entropy test passed" in r.stdout
    assert "skipped: the real `ping -c 3 192.168.200.2`" in r.stdout
    assert r.stdout.rstrip().endswith("result: PASS")


AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


NOBODY_PROBE = (
    "import subprocess, sys; assert sys.version_info >= (3, 10); "
    "subprocess.run([sys.executable, '-c', ''], check=True)"
)
"""What the demo needs of its interpreter: to start itself again (for the remote)."""


def python_for_nobody() -> str | None:
    """An interpreter the unprivileged user can run (ours may live under /root)."""
    if not IS_ROOT or shutil.which("setpriv") is None:
        return None
    for candidate in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run(
            [*AS_NOBODY, candidate, "-c", NOBODY_PROBE],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return candidate
    return None


NOBODY_PYTHON = python_for_nobody()


@pytest.mark.skipif(
    NOBODY_PYTHON is None,
    reason="needs root (to become an unprivileged user with setpriv) and a Python >= 3.10 "
    "that user may run",
)
def test_the_demo_run_by_an_unprivileged_user_explains_why_it_did_not_ping_from_linux() -> None:
    assert NOBODY_PYTHON is not None
    r = subprocess.run(
        [*AS_NOBODY, NOBODY_PYTHON, "-m", "openamp", "demo", "hvl"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
        cwd="/",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "not root: a TAP interface in a network namespace needs CAP_NET_ADMIN" in r.stdout
    assert r.stdout.rstrip().endswith("result: PASS")


@NEEDS_ROOT
def test_a_tap_in_a_namespace_of_our_own_reaches_the_kernel_and_leaves_nothing() -> None:
    before = namespaces()
    side = linux_side()
    assert side.real, side.skipped
    assert side.namespace is not None and side.namespace.name in namespaces()
    name = side.namespace.name
    try:
        with HvlSystem(net=side.backend) as system:
            mark = system.wait_output("uart:~$ ", 10)
            ok, transcript, rtts = side.ping_remote(2)
            assert ok, transcript
            system.send(f"net ping -c 2 {LINUX_IP}\n")
            system.wait_output("uart:~$ ", 10, start=mark)
            system.send("exit\n")
            system.wait_remote(5)
    finally:
        side.close()
    assert "2 received" in transcript and len(rtts) == 2
    assert system.output.decode().count(f"bytes from {LINUX_IP}") == 2
    assert namespaces() == before and name not in namespaces()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "hvl" not in links


@NEEDS_ROOT
def test_the_demo_pings_the_remote_with_the_real_ping_as_the_seed_shows() -> None:
    before = namespaces()
    r = subprocess.run(
        [sys.executable, "-m", "openamp", "demo", "hvl"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "get_entropy test passed" in r.stdout
    assert "$ ping -c 3 192.168.200.2" in r.stdout and "3 received, 0% packet loss" in r.stdout
    assert "PASS  ping from Linux: 3 of 3 replies" in r.stdout
    assert "PASS  ping from the remote: 3 of 3 replies" in r.stdout
    assert "skipped" not in r.stdout
    assert namespaces() == before


@NEEDS_ROOT
def test_a_namespace_is_deleted_even_when_its_tap_cannot_be_added() -> None:
    ns = NetNamespace(unique_name("openamp-hvl"))
    tap = TapBackend("hvlprobe0")
    try:
        tap.close()  # the interface is gone: moving it fails
        with pytest.raises(Exception, match="failed"):
            ns.add_tap(tap, "10.0.0.1/24")
    finally:
        ns.close()
    assert ns.name not in namespaces()


def test_bench_hvl_reports_rng_console_and_ping_figures() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "openamp", "bench", "hvl", "--count", "50", "--runs", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    summary = result["summary"]
    assert summary["rng"]["mb_per_s"]["median"] > 0
    assert summary["console"]["rtt_median_us"]["median"] > 0
    assert summary["ping"]["rtt_median_us"]["median"] > 0
    assert result["runs"][0]["ping"]["count"] == 50


def test_a_remote_that_dies_before_connecting_is_reported_and_nothing_is_left() -> None:
    system = HvlSystem(remote_args=["--no-such-option"], timeout=10)
    with pytest.raises(PeerGoneError, match="exited with status 2 before connecting"):
        system.start()
    assert system.shm is None and not Path(system.socket_path).exists()
    assert not Path(f"/dev/shm/{system.name}").exists()

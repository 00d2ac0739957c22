"""The passive tap: it follows two other processes' link read-only, and counts what it
may have missed instead of pretending it saw everything."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from openamp.errors import OpenAMPTimeoutError
from openamp.metal.shm import map_readonly
from openamp.platform.inprocess import InProcessPair
from openamp.rpmsg.events import Event, MessageEvent, MissedEvent
from openamp.services.echo import EchoService, run_ping
from openamp.tools.capture import read_capture
from openamp.tools.decode import decode_payload
from openamp.tools.tap import Tap


def _image_after_pings(count: int) -> bytes:
    pair = InProcessPair()
    host = pair.driver()
    remote = pair.device()
    EchoService(remote)
    assert run_ping(host, count=count).ok
    remote.poll()
    return bytes(pair.memory)


def test_a_tap_reads_the_rings_from_the_start_and_counts_what_was_overwritten(
    tmp_path: Path,
) -> None:
    path = tmp_path / "after.shm"
    path.write_bytes(_image_after_pings(600))
    events: list[Event] = []
    stats = Tap(str(path), events.append, from_start=True).run(wait=1)
    # host: NS create, 600 pings, NS destroy; remote: NS create, 600 echoes.  Nothing
    # maps the file, so the tap stops once it has read it.
    assert "no process maps" in stats.stop_reason
    assert stats.messages + stats.missed == 602 + 601
    missed = [e for e in events if isinstance(e, MissedEvent)]
    assert sum(e.missed for e in missed) == stats.missed
    reasons = " ".join(e.reason for e in missed)
    assert "moved 602 entries at once" in reasons  # 346 ring entries overwritten
    assert "reused before it was read" in reasons  # the host reuses one tx buffer
    # what was read is right: the last 256 echoes, each from its own receive buffer
    rx = [e for e in events if isinstance(e, MessageEvent) and e.direction == "rx"]
    nums = [decode_payload(e.payload, "echo").get("rpmsg_echo.num") for e in rx]
    assert nums == list(range(600 - 256, 600))
    # of the host's, only the last message of its reused buffer survives: its NS destroy
    tx = [e for e in events if isinstance(e, MessageEvent) and e.direction == "tx"]
    assert [e.ns() for e in tx][-1].destroy  # type: ignore[union-attr]


def test_the_tap_maps_the_memory_read_only_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "after.shm"
    path.write_bytes(_image_after_pings(10))
    m = map_readonly(path)
    with pytest.raises(TypeError):
        m[0] = 1  # type: ignore[index]
    m.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    Tap(str(path), lambda e: None, from_start=True).run(wait=1)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_the_tap_says_what_it_waited_for(tmp_path: Path) -> None:
    with pytest.raises(OpenAMPTimeoutError, match=r"waited 0.1 s for .*missing.shm to appear"):
        Tap(str(tmp_path / "missing.shm"), lambda e: None).run(wait=0.1)


def test_a_tap_of_two_processes_accounts_for_every_message(
    tmp_path: Path, vm_name: str, children
) -> None:  # type: ignore[no-untyped-def]
    capture = tmp_path / "tap.pcapng"
    machine = ["--machine", "virtual", "--name", vm_name]
    tap = children.openamp("capture", "tap", str(capture), *machine, "--quiet", "--wait", "20")
    assert "tap: waiting for" in tap.stderr.readline()  # it watches before the link exists
    echo = children.openamp("echo", *machine, "--wait", "block")
    ping = subprocess.run(
        [sys.executable, "-m", "openamp", "ping", *machine, "--wait", "block"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ping.returncode == 0, ping.stdout + ping.stderr
    out, err = tap.communicate(timeout=30)
    # it ends by itself when the link is gone: the memory removed, or unmapped by both
    assert "was removed" in out or "no process maps the memory" in out
    echo.communicate(timeout=10)
    assert tap.returncode == 0, err
    assert "may have been missed" in out
    data = read_capture(capture)
    messages = list(data.messages())
    missed = sum(ce.event.missed for ce in data.events if isinstance(ce.event, MissedEvent))
    # 480 pings and echoes, an NS create and an NS destroy each way: seen or counted
    assert len(messages) + missed == 2 * 482
    for ce in messages:
        assert isinstance(ce.event, MessageEvent)
        d = decode_payload(ce.event.payload, ce.app, dst=ce.event.dst, h2r=ce.h2r)
        assert d.protocol in ("ns", "echo"), d
        if d.protocol == "echo":
            assert d.get("rpmsg_echo.intact") is True

"""Replay: a capture drives one side of a link, and the recorded peer answers as it did."""

from __future__ import annotations

from pathlib import Path

import pytest

from openamp.errors import UsageError
from openamp.platform.inprocess import InProcessPair
from openamp.services.echo import EchoService, run_ping
from openamp.services.matrix import MatrixService, run_matrix
from openamp.tools.capture import open_capture, read_capture
from openamp.tools.replay import ReplayPeer


def record(tmp_path: Path, serve, host_run, app: str) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / f"{app}.pcapng"
    with open_capture(path, app=app) as cap:
        pair = InProcessPair()
        host = pair.driver(capture=cap)
        remote = pair.device()
        serve(remote)
        assert host_run(host).ok
        remote.poll()
    return path


def replayed(path: Path, side: str = "remote"):  # type: ignore[no-untyped-def]
    pair = InProcessPair()
    host = pair.driver()
    remote = pair.device()
    peer = ReplayPeer.from_capture(remote if side == "remote" else host, str(path), side=side)
    peer.start()
    return host, remote, peer


def test_a_recorded_echo_remote_answers_a_new_ping_as_it_did(tmp_path: Path) -> None:
    path = record(tmp_path, EchoService, lambda h: run_ping(h, count=30), "echo")
    host, remote, peer = replayed(path)
    assert run_ping(host, count=30).ok
    remote.poll()
    assert peer.done and peer.mismatches == [] and peer.unexpected == 0
    # the host's announcement, 30 pings and its NS destroy were expected; the rest sent
    assert sum(s.action == "expect" for s in peer.steps) == 32


def test_a_replay_answers_as_recorded_even_when_the_host_now_asks_otherwise(
    tmp_path: Path,
) -> None:
    path = record(tmp_path, MatrixService, lambda h: run_matrix(h, rounds=10, seed=7), "matrix")
    host, remote, peer = replayed(path)
    assert run_matrix(host, rounds=10, seed=7).ok  # the same question: the same answers
    host, remote, peer = replayed(path)
    result = run_matrix(host, rounds=10, seed=8)  # other matrices: the recorded products
    assert result.errors == 10
    assert len(peer.mismatches) == 10 and "expected 0x400 -> 0x400" in peer.mismatches[0]


def test_the_host_side_can_be_replayed_against_a_live_remote(tmp_path: Path) -> None:
    path = record(tmp_path, EchoService, lambda h: run_ping(h, count=5), "echo")
    pair = InProcessPair()
    host = pair.driver()
    remote = pair.device()
    service = EchoService(remote)
    peer = ReplayPeer.from_capture(host, read_capture(path), side="host")
    assert peer.run(timeout=1)
    remote.poll()
    assert peer.mismatches == [] and service.stats.messages == 5
    assert "destroyed its endpoint" in service.serve(0)


def test_a_replay_needs_to_know_who_sent_what(tmp_path: Path) -> None:
    from openamp.rpmsg.events import MessageEvent

    path = tmp_path / "bare.jsonl"
    with open_capture(path) as cap:  # messages only: no link event, no sides
        cap(MessageEvent("tx", 1, 0, -1, 512, 0x400, 0x400, 1, 0, b"x"))
    with pytest.raises(UsageError, match="does not say which side sent what"):
        ReplayPeer.from_capture(InProcessPair().driver(), str(path))

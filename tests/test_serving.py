"""The one serving loop every service shares (``services.base.serve_until``)."""

from __future__ import annotations

import threading
import time

from openamp.platform import InProcessPair
from openamp.services.base import CLOSED_REASON, serve_until
from openamp.services.echo import EchoService
from openamp.services.proxy import ProxyServer
from openamp.services.rpc import RpcServer


def run_in_thread(fn):  # type: ignore[no-untyped-def]
    """Run ``fn`` in a daemon thread; return (thread, result list)."""
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    return t, out


def test_a_service_whose_device_is_closed_under_it_returns_at_once():
    # With timeout=None this used to spin forever: wait_until returns at once on a
    # closed device, and the loop never looked at ``closed``.
    p = InProcessPair()
    _host, remote = p.pair()
    service = EchoService(remote)
    remote.close()
    started = time.process_time()
    t, out = run_in_thread(lambda: service.run(timeout=None))
    t.join(5.0)
    assert not t.is_alive(), "the service kept serving a closed device"
    assert out[0].stop_reason == CLOSED_REASON
    assert time.process_time() - started < 1.0


def test_every_server_reports_a_closed_device_the_same_way(tmp_path):
    p = InProcessPair()
    host, remote = p.pair()
    proxy = ProxyServer(host, tmp_path)
    rpc = RpcServer(remote, {})
    host.close()
    remote.close()
    assert proxy.run(timeout=None).stop_reason == CLOSED_REASON
    assert rpc.run(timeout=None).stop_reason == CLOSED_REASON


def test_the_first_stop_reason_wins_everywhere(tmp_path):
    p = InProcessPair()
    host, remote = p.pair()
    proxy = ProxyServer(host, tmp_path)
    echo = EchoService(remote)
    for server in (proxy, echo):
        server.stop("first")
        server.stop("second")
    assert proxy.run(timeout=1).stop_reason == "first"
    assert echo.run(timeout=1).stop_reason == "first"


def test_serving_ends_at_its_time_limit_with_that_reason():
    p = InProcessPair()
    _host, remote = p.pair()
    started = time.monotonic()
    assert serve_until(remote, lambda: "", 0.05) == "time limit of 0.05 s"
    assert time.monotonic() - started < 1.0


def test_a_reason_given_before_serving_ends_it_without_waiting():
    p = InProcessPair()
    _host, remote = p.pair()
    assert serve_until(remote, lambda: "done already", None) == "done already"

"""The event model: every device, both roles, reports what can be observed on its link;
errors and logs explain themselves."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from conftest import run_openamp as openamp
from openamp.errors import MessageError, OpenAMPTimeoutError
from openamp.platform.inprocess import InProcessPair
from openamp.platform.layout import MachineLayout
from openamp.rpmsg.events import (
    ConfigEvent,
    EndpointEvent,
    ErrorEvent,
    Event,
    FeaturesEvent,
    KickEvent,
    LinkEvent,
    MessageEvent,
    NsEvent,
    StatusEvent,
)
from openamp.rpmsg.virtio import MessageEvent as MessageEventFromVirtio, RpmsgVirtioDevice
from openamp.rpmsg.wire import RPMSG_HDR, RPMSG_NS_EPT_ADDR
from openamp.services.echo import ECHO_SERVICE, EchoService, run_ping


def _pair() -> tuple[list[Event], list[Event], RpmsgVirtioDevice, RpmsgVirtioDevice]:
    host_events: list[Event] = []
    remote_events: list[Event] = []
    pair = InProcessPair()
    host = pair.driver(capture=host_events.append)
    remote = pair.device(capture=remote_events.append)
    return host_events, remote_events, host, remote


def test_both_roles_report_the_handshake_messages_and_endpoints() -> None:
    host_events, remote_events, host, remote = _pair()
    EchoService(remote)
    assert run_ping(host, count=4).ok
    remote.poll()
    h = Counter(type(e).__name__ for e in host_events)
    r = Counter(type(e).__name__ for e in remote_events)
    # the driver wrote features and DRIVER_OK; the device saw them
    assert host_events[:3] == [
        FeaturesEvent(1, 1, "write"),
        StatusEvent(0x04, "write"),
        host_events[2],
    ]
    assert isinstance(host_events[2], LinkEvent) and host_events[2].role == "driver"
    assert remote_events[:2] == [StatusEvent(0x04, "seen"), FeaturesEvent(1, 1, "seen")]
    assert isinstance(remote_events[2], LinkEvent) and remote_events[2].role == "device"
    # 4 pings and 4 echoes, an announcement each way, the host's NS destroy
    assert h["MessageEvent"] == r["MessageEvent"] == 11
    assert h["KickEvent"] >= 1 and r["KickEvent"] >= 1
    assert NsEvent("rx", ECHO_SERVICE, 0x400, False) in host_events
    assert NsEvent("rx", ECHO_SERVICE, 0x400, True) in remote_events
    assert EndpointEvent("bind", ECHO_SERVICE, 0x400, 0x400) in host_events
    assert EndpointEvent("announce", ECHO_SERVICE, 0x400, 0xFFFFFFFF) in remote_events
    assert EndpointEvent("unbind", ECHO_SERVICE, 0x400, 0x400) in remote_events
    tx = [e for e in host_events if isinstance(e, MessageEvent) and e.direction == "tx"]
    rx = [e for e in remote_events if isinstance(e, MessageEvent) and e.direction == "rx"]
    assert [(e.src, e.dst, e.payload) for e in tx] == [(e.src, e.dst, e.payload) for e in rx]
    assert all(e.vring == 1 and e.buflen == 512 for e in tx + rx)


def test_the_trace_hook_still_gets_messages_and_only_messages() -> None:
    traced: list[object] = []
    captured: list[Event] = []
    pair = InProcessPair()
    host = pair.driver(trace=traced.append, capture=captured.append)
    EchoService(pair.device())
    run_ping(host, count=2)
    assert MessageEvent is MessageEventFromVirtio
    assert traced and all(type(e) is MessageEvent for e in traced)
    assert traced == [e for e in captured if type(e) is MessageEvent]
    assert host.trace == traced.append


def test_capture_can_start_later_and_then_records_kicks() -> None:
    pair = InProcessPair()
    host = pair.driver()
    EchoService(pair.device())
    ept = host.endpoint(ECHO_SERVICE, timeout=1)
    events: list[Event] = []
    host.set_capture(events.append)
    ept.send(b"hi")
    host.poll()
    kinds = [type(e) for e in events]
    assert kinds[:3] == [LinkEvent, MessageEvent, KickEvent]
    assert events[2] == KickEvent(1, 2)
    host.set_capture(None)
    ept.send(b"quiet")
    assert len(events) == len(kinds)


def test_a_malformed_message_is_reported_as_an_error_event() -> None:
    host_events, _remote_events, host, remote = _pair()
    EchoService(remote)
    host.endpoint(ECHO_SERVICE, timeout=1)
    # the remote claims 600 payload bytes in a 512-byte buffer
    buf = remote.get_tx_buffer(remote.endpoints[-1], 1)
    remote.send_nocopy(buf, 0x400, 0x400, 4)
    RPMSG_HDR.pack_into(remote._mem, buf.offset, 0x400, 0x400, 0, 600, 0)
    with pytest.raises(MessageError):
        host.poll()
    errors = [e for e in host_events if isinstance(e, ErrorEvent)]
    assert errors and errors[0].error == "MessageError" and "600" in errors[0].message


def test_the_config_space_is_reported_when_buffer_sizes_are_offered() -> None:
    events: list[Event] = []
    pair = InProcessPair(MachineLayout.for_buffers(1024, num=16))
    pair.driver(capture=events.append)
    config = [e for e in events if isinstance(e, ConfigEvent)]
    assert len(config) == 1 and len(config[0].config) == 66
    link = next(e for e in events if isinstance(e, LinkEvent))
    assert (link.rx_size, link.tx_size) == (1024, 1024)


def test_a_bind_timeout_names_what_the_peer_announced() -> None:
    pair = InProcessPair()
    host = pair.driver()
    EchoService(pair.device())
    host.poll()
    ept = host.create_endpoint("rpmsg-client-sample")
    with pytest.raises(
        OpenAMPTimeoutError,
        match=r"announced 'rpmsg-openamp-demo-channel' at 0x400, not 'rpmsg-client-sample'",
    ):
        ept.wait_bound(0)


def test_a_ping_against_the_wrong_service_says_what_was_announced(children, vm_name) -> None:  # type: ignore[no-untyped-def]
    machine = ("--machine", "virtual", "--name", vm_name)
    sample = children.openamp("sample", "--role", "device", *machine)
    r = openamp("ping", *machine, "--timeout", "1.5")
    sample.kill()
    assert r.returncode == 1
    assert "'rpmsg-client-sample' at 0x400" in r.stderr + r.stdout


def test_verbose_logs_the_handshake(children, vm_name) -> None:  # type: ignore[no-untyped-def]
    children.openamp("echo", "--machine", "virtual", "--name", vm_name)
    r = openamp("-v", "ping", "--machine", "virtual", "--name", vm_name, "--count", "2")
    assert r.returncode == 0, r.stderr
    log = r.stderr
    assert "openamp.rpmsg: INFO: driver: the device offers features 0x1 (VIRTIO_RPMSG_F_NS)" in log
    assert "status 0x04 (DRIVER_OK) written" in log
    assert "the peer announced 'rpmsg-openamp-demo-channel' at 0x400 (NS create)" in log
    assert "bound to the peer at 0x400" in log


def test_the_device_logs_what_the_driver_set(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="openamp.rpmsg")
    pair = InProcessPair()
    pair.driver()
    pair.device()
    assert "device: the driver set status 0x04 (DRIVER_OK) and accepted features 0x1" in caplog.text
    assert RPMSG_NS_EPT_ADDR == 0x35

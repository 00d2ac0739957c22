"""The STM32MP1 multi-services remote, in one process: endpoints and their addresses, the
client sample's 20-byte copy and its end after 100 answers, the tty and raw answers
(prefix, payload, trailing byte), the tty made for a Linux announcement (``bound``,
silent unbind) under both address policies.  The same remote behind the real kernel is
in ``tests/test_uml_board.py``."""

from __future__ import annotations

from typing import Any

import pytest

from openamp import UsageError
from openamp.platform import InProcessPair
from openamp.rpmsg.core import Endpoint
from openamp.rpmsg.virtio import RpmsgVirtioDevice
from openamp.rpmsg.wire import RPMSG_NS_EPT_ADDR, decode_ns, encode_ns
from openamp.services.multi import BANNER, BOUND, LINES, MultiServices


@pytest.fixture
def pair() -> tuple[RpmsgVirtioDevice, RpmsgVirtioDevice, list[Any]]:
    p = InProcessPair()
    events: list[Any] = []
    host = p.driver(trace=events.append)
    remote = p.device()
    return host, remote, events


def ns(events: list[Any], direction: str) -> list[tuple[str, int, bool]]:
    out = []
    for e in events:
        if e.direction == direction and e.dst == RPMSG_NS_EPT_ADDR:
            m = decode_ns(e.payload)
            out.append((m.name, m.addr, m.destroy))
    return out


def test_it_reports_the_c_lines_and_announces_three_services_in_the_c_order(pair) -> None:
    host, remote, events = pair
    lines: list[str] = []
    service = MultiServices(remote, report=lines.append)
    host.poll()
    assert ns(events, "rx") == [
        ("rpmsg-client-sample", 0x400, False),
        ("rpmsg-tty", 0x401, False),
        ("rpmsg-raw", 0x402, False),
    ]
    assert lines == [BANNER, LINES["sample"], LINES["tty"], LINES["raw"], LINES["fixed"]]
    assert BANNER == "OpenAMP[remote]  linux responder demo started"
    assert service.fixed_raw.addr == 0x1 and service.fixed_raw.dest_addr == 0x1


def test_the_client_sample_answers_100_times_then_destroys_its_endpoint(pair) -> None:
    host, remote, events = pair
    lines: list[str] = []
    service = MultiServices(remote, report=lines.append)
    ept = host.endpoint("rpmsg-client-sample", timeout=1)
    for _ in range(100):
        ept.send(b"hello world!")
        assert ept.recv(timeout=1) == b"hello world!"
    host.poll()
    assert ("rpmsg-client-sample", 0x400, True) in ns(events, "rx")
    assert service.stats.sample_answers == 100 and service.stats.sample_ended
    assert lines[-1] == "OpenAMP Linux sample client responder ended"


def test_a_client_sample_payload_over_20_bytes_is_answered_with_its_first_20(pair) -> None:
    host, remote, _ = pair
    service = MultiServices(remote)
    ept = host.endpoint("rpmsg-client-sample", timeout=1)
    ept.send(bytes(range(30)))
    assert ept.recv(timeout=1) == bytes(range(20))
    assert service.stats.clipped == 1


def test_tty_answers_prefix_payload_and_a_zero_byte(pair) -> None:
    host, remote, _ = pair
    MultiServices(remote)
    tty = host.endpoint("rpmsg-tty", timeout=1)
    tty.send(b"Hello Zephyr\n")
    reply = tty.recv(timeout=1)
    assert reply == b"TTY 0: Hello Zephyr\n\0" and len(reply) == len(b"Hello Zephyr\n") + 8


def test_stale_trailing_bytes_are_what_an_earlier_longer_message_left(pair) -> None:
    host, remote, _ = pair
    MultiServices(remote, trailing="stale")
    tty = host.endpoint("rpmsg-tty", timeout=1)
    tty.send(b"abcdef")
    assert tty.recv(timeout=1) == b"TTY 0: abcdef\0"  # nothing there before: 0
    tty.send(b"xy")
    assert tty.recv(timeout=1) == b"TTY 0: xyc"  # the 'c' of "abcdef"
    raw = host.endpoint("rpmsg-raw", timeout=1)
    raw.send(b"0123456789")
    raw.send(b"ab")
    assert raw.recv(timeout=1) == b"from ept 0x0402: 0123456789\0"
    assert raw.recv(timeout=1) == b"from ept 0x0402: ab2"


def test_raw_answers_go_to_the_source_and_name_the_local_address(pair) -> None:
    host, remote, _ = pair
    service = MultiServices(remote)
    raw = host.endpoint("rpmsg-raw", timeout=1)
    raw.send(b"ping /dev/rpmsg0")
    assert raw.recv(timeout=1) == b"from ept 0x0402: ping /dev/rpmsg0\0"
    # two endpoints of ours, neither announced, both sending to 0x1
    a = host.create_endpoint("", src=100, dst=0x1)
    b = host.create_endpoint("", src=101, dst=0x1)
    a.send(b"ping /dev/rpmsg1")
    b.send(b"ping /dev/rpmsg2")
    assert a.recv(timeout=1) == b"from ept 0x0001: ping /dev/rpmsg1\0"
    assert b.recv(timeout=1) == b"from ept 0x0001: ping /dev/rpmsg2\0"
    assert service.stats.raw_answers == {0x402: 1, 0x1: 2}


def _bind_tty_channel(host: RpmsgVirtioDevice) -> Endpoint:
    """What Linux does for ``rpmsg_export_dev rpmsg-tty 257 -1``: announce from 257."""
    return host.create_endpoint("rpmsg-tty", src=257)


@pytest.mark.parametrize(("policy", "addr"), [("lowest-free", 0x400), ("round-robin", 0x403)])
def test_a_linux_tty_announcement_gets_its_own_endpoint_which_says_bound(
    pair, policy: str, addr: int
) -> None:
    host, remote, events = pair
    service = MultiServices(remote, address_policy=policy, sample_limit=1)  # type: ignore[arg-type]
    sample = host.endpoint("rpmsg-client-sample", timeout=1)
    sample.send(b"hi")
    assert sample.recv(timeout=1) == b"hi"  # and the sample endpoint (0x400) is gone
    tty0 = host.endpoint("rpmsg-tty", timeout=1)
    tty0.send(b"first\n")  # the seed's prerequisite: the remote learns tty 0's peer
    assert tty0.recv(timeout=1) == b"TTY 0: first\n\0"
    tty1 = _bind_tty_channel(host)
    assert tty1.recv_from(timeout=1) == (BOUND, addr) and BOUND == b"bound\0"
    assert service.stats.tty_bound == [addr]
    # Linux (with the seed's patch) takes the sender of "bound" as the channel's peer
    tty1.sendto(b"hello dev1\n", addr)
    assert tty1.recv(timeout=1) == b"TTY 1: hello dev1\n\0"


def test_without_a_first_message_the_announcement_binds_tty_0_as_the_seed_warns(pair) -> None:
    host, remote, _ = pair
    service = MultiServices(remote)
    host.poll()
    tty1 = _bind_tty_channel(host)
    remote.poll()
    assert service.ttys[1] is None and service.ttys[0] is not None
    assert service.ttys[0].dest_addr == 257  # "bad endpoints association"
    tty1.send(b"x")
    assert tty1.recv(timeout=1) == b"TTY 0: x\0"


def test_destroying_the_linux_tty_channel_destroys_our_endpoint_silently(pair) -> None:
    host, remote, events = pair
    service = MultiServices(remote)
    tty0 = host.endpoint("rpmsg-tty", timeout=1)
    tty0.send(b"a")
    tty0.recv(timeout=1)
    tty1 = _bind_tty_channel(host)
    assert tty1.recv(timeout=1) == BOUND
    made = service.stats.tty_bound[0]
    before = ns(events, "rx")
    # Linux announces the destroy of a channel it announced, whatever its address (the
    # C library, and so our core, would not for an address below 1024)
    host.send_offchannel(257, RPMSG_NS_EPT_ADDR, encode_ns("rpmsg-tty", 257, destroy=True), 1)
    tty1.destroy()
    remote.poll()
    host.poll()
    assert ns(events, "rx") == before  # no destroy announced for our endpoint
    assert service.ttys[1] is None and remote.get_endpoint(made) is None
    assert service.stats.tty_unbound == 1
    again = _bind_tty_channel(host)
    assert again.recv(timeout=1) == BOUND  # and a new announcement gets a new one


def test_bad_options_are_usage_errors(pair) -> None:
    _, remote, _ = pair
    with pytest.raises(UsageError, match="trailing"):
        MultiServices(remote, trailing="garbage")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="address_policy"):
        MultiServices(remote, address_policy="random")  # type: ignore[arg-type]

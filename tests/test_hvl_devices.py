"""The device types, both halves: entropy, console, network, and the demo's tiny IP host."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from hvl_pair import make_pair
from openamp.errors import PayloadTooLargeError
from openamp.hvl.netstack import (
    ARP,
    ETH,
    ICMP_ECHO,
    IPV4,
    NetStack,
    checksum,
)
from openamp.virtio.devices.console import CONSOLE_CONFIG, ConsoleDevice, ConsoleDriver
from openamp.virtio.devices.net import (
    NET_HDR,
    VIRTIO_NET_F_MAC,
    NetDevice,
    NetDriver,
)
from openamp.virtio.devices.rng import RngDevice, RngDriver

# -- rng --------------------------------------------------------------------------------


def counting_entropy() -> tuple[list[int], object]:
    asked: list[int] = []

    def entropy(n: int) -> bytes:
        asked.append(n)
        return bytes(i & 0xFF for i in range(n))

    return asked, entropy


def test_the_entropy_device_fills_every_posted_buffer_from_its_source() -> None:
    asked, entropy = counting_entropy()
    pair = make_pair(("rng",), entropy=entropy)  # type: ignore[arg-type]
    rng = RngDriver(pair.drivers[0])
    rng.start()
    assert rng.get_entropy(9) == bytes(range(9))
    assert asked == [9]


def test_a_large_entropy_request_is_split_into_chunks_posted_together() -> None:
    asked, entropy = counting_entropy()
    pair = make_pair(("rng",), entropy=entropy)  # type: ignore[arg-type]
    rng = RngDriver(pair.drivers[0], chunk=1000)
    rng.start()
    data = rng.get_entropy(5500)
    assert len(data) == 5500
    assert asked == [5500]  # six buffers, one pass: one call of the source
    model = pair.models[0]
    assert isinstance(model, RngDevice) and model.requests == 6


def test_the_bounce_buffers_go_back_to_the_pool() -> None:
    pair = make_pair(("rng",))
    rng = RngDriver(pair.drivers[0])
    rng.start()
    pool = pair.drivers[0].pool
    assert pool is not None
    free = pool.free_bytes
    for _ in range(50):
        rng.get_entropy(3000)
    assert pool.free_bytes == free


def test_an_entropy_device_that_reports_more_than_it_was_given_is_clipped() -> None:
    pair = make_pair(("rng",))
    rng = RngDriver(pair.drivers[0])
    rng.start()
    assert rng.vq is not None
    model = pair.models[0]
    assert isinstance(model, RngDevice)
    model.entropy = lambda n: b"\xaa" * (n + 100)  # a device that overruns its length
    assert rng.get_entropy(10) == b"\xaa" * 10


# -- console -------------------------------------------------------------------------------


def test_console_output_reaches_the_device_side_in_order() -> None:
    out: list[bytes] = []
    pair = make_pair(("console",), console_out=out)
    console = ConsoleDriver(pair.drivers[0], tx_chunk=7)
    console.start()
    console.write(b"hello, hypervisorless world\n")
    console.flush()
    assert b"".join(out) == b"hello, hypervisorless world\n"


def test_console_input_reaches_the_driver_line_by_line() -> None:
    pair = make_pair(("console",))
    console = ConsoleDriver(pair.drivers[0], rx_size=4)
    console.start()
    model = pair.models[0]
    assert isinstance(model, ConsoleDevice)
    assert model.feed(b"net iface\nexit\n") == 15
    pair.devices[0].poll()
    assert console.readline(timeout=1) == b"net iface\n"
    assert console.readline(timeout=1) == b"exit\n"
    assert console.readline(timeout=0) is None


def test_console_input_beyond_the_backlog_is_refused_not_lost() -> None:
    model = ConsoleDevice(lambda _d: None, backlog=8)
    assert model.feed(b"0123456789") == 8
    assert model.pending_input == 8


def test_the_console_config_is_80_by_24_with_one_port() -> None:
    model = ConsoleDevice(lambda _d: None)
    assert CONSOLE_CONFIG.unpack(model.config_space()) == (80, 24, 1, 0)


# -- net -----------------------------------------------------------------------------------


def frame(size: int, fill: int = 0x5A) -> bytes:
    return b"\xff" * 6 + b"\x02" + b"\0" * 5 + b"\x08\x00" + bytes([fill]) * (size - 14)


def test_frames_cross_both_ways_with_a_12_byte_header_and_the_mac_from_config() -> None:
    wire: list[bytes] = []
    pair = make_pair(("net",), net_out=wire)
    net = NetDriver(pair.drivers[0])
    net.start()
    assert net.hdr_size == 12 and net.mac == b"\x02\x15\x15\x15\x15\x15"
    net.send(frame(60))
    pair.pump()
    assert wire == [frame(60)]
    model = pair.models[0]
    assert isinstance(model, NetDevice)
    model.receive(frame(100, 0x11))
    pair.devices[0].poll()
    assert net.receive(timeout=1) == frame(100, 0x11)


def test_the_device_writes_a_zero_header_with_num_buffers() -> None:
    pair = make_pair(("net",))
    net = NetDriver(pair.drivers[0], rx_buffers=1, tx_buffers=1, num=2)
    net.start()
    assert net.rx is not None
    pair.pump()  # the monitor sees DRIVER_OK
    model = pair.models[0]
    assert isinstance(model, NetDevice)
    model.receive(frame(64))
    pair.devices[0].poll()
    got = net.rx.take_used(keep=True)
    assert len(got) == 1
    buf, length, _slot = got[0]
    assert length == 12 + 64
    assert NET_HDR.unpack_from(pair.shm.mem, buf) == (0, 0, 0, 0, 0, 0, 1)


def test_a_frame_larger_than_a_buffer_is_merged_over_several() -> None:
    pair = make_pair(("net",))
    net = NetDriver(pair.drivers[0], buffer_size=500, rx_buffers=8)
    net.start()
    model = pair.models[0]
    assert isinstance(model, NetDevice)
    big = frame(1400, 0x77)
    model.receive(big)
    pair.devices[0].poll()
    assert net.receive(timeout=1) == big
    assert model.rx_frames == 1


def test_a_frame_waits_for_enough_buffers_when_merging() -> None:
    pair = make_pair(("net",))
    net = NetDriver(pair.drivers[0], buffer_size=500, rx_buffers=2, tx_buffers=2, num=2)
    net.start()
    model = pair.models[0]
    assert isinstance(model, NetDevice)
    pair.pump()  # the monitor sees DRIVER_OK
    model.receive(frame(1400))  # needs three buffers of 500 bytes and has two
    pair.devices[0].poll()
    assert model.pending_frames == 1 and model.rx_frames == 0
    assert net.receive(timeout=0) is None
    net.poll()  # nothing returned yet: both buffers hold the first part
    assert model.pending_frames == 1


def test_without_merged_buffers_the_header_is_10_bytes_as_open_amp_negotiates() -> None:
    wire: list[bytes] = []
    pair = make_pair(("net",), net_out=wire)
    net = NetDriver(pair.drivers[0], features=VIRTIO_NET_F_MAC)  # what virtio_net_drv.c asks
    net.start()
    assert net.hdr_size == 10
    net.send(frame(60))
    pair.pump()
    assert wire == [frame(60)]
    model = pair.models[0]
    assert isinstance(model, NetDevice)
    model.receive(frame(70))
    model.receive(frame(3000))  # too big for one buffer: dropped, as there is no merging
    model.receive(frame(80))
    pair.devices[0].poll()
    assert net.receive(timeout=1) == frame(70)
    assert net.receive(timeout=1) == frame(80)
    assert model.rx_dropped == 1


def test_the_backlog_drops_the_oldest_frame() -> None:
    model = NetDevice(lambda _f: None, backlog=2)
    for i in range(3):
        model.receive(frame(60, i))
    assert model.pending_frames == 2 and model.rx_dropped == 1


def test_a_frame_larger_than_a_transmit_buffer_is_refused() -> None:
    pair = make_pair(("net",))
    net = NetDriver(pair.drivers[0])
    net.start()
    with pytest.raises(PayloadTooLargeError):
        net.send(b"x" * 1515)


# -- the demo's IP host --------------------------------------------------------------------

MAC_A, MAC_B = b"\x02\0\0\0\0\x0a", b"\x02\0\0\0\0\x0b"


def hosts() -> tuple[NetStack, NetStack, list[bytes], list[bytes]]:
    to_b: list[bytes] = []
    to_a: list[bytes] = []
    a = NetStack(MAC_A, "192.168.200.2/24", to_b.append)
    b = NetStack(MAC_B, "192.168.200.254/24", to_a.append)
    return a, b, to_a, to_b


def test_the_ip_host_answers_arp_and_echo_with_correct_checksums() -> None:
    a, b, to_a, to_b = hosts()
    b.arp_request("192.168.200.2")
    a.handle(to_a.pop())
    reply = to_b.pop()
    dst, src, kind = ETH.unpack_from(reply)
    assert (dst, src, kind) == (MAC_B, MAC_A, 0x0806)
    assert ARP.unpack_from(reply, 14)[4] == 2  # a reply
    b.handle(reply)
    b.echo_request("192.168.200.2", 7, b"payload")
    a.handle(to_a.pop())
    echo = to_b.pop()
    ip = echo[14:34]
    assert checksum(ip) == 0 and checksum(echo[34:]) == 0
    assert IPV4.unpack_from(ip)[8] == ipaddress.IPv4Address("192.168.200.2").packed
    assert ICMP_ECHO.unpack_from(echo, 34)[0] == 0 and echo.endswith(b"payload")
    b.handle(echo)
    got = b.take_reply(7)
    assert got is not None and got.source == "192.168.200.2" and got.ttl == 64


@pytest.mark.parametrize(
    "junk",
    [
        b"",
        b"\xff" * 13,
        b"\xff" * 12 + b"\x08\x06" + b"\0" * 10,  # a short ARP
        b"\xff" * 12 + b"\x08\x00" + b"\x4f" + b"\0" * 40,  # IHL 15 past the end
        b"\xff" * 12 + b"\x08\x00" + struct.pack("!BBH", 0x45, 0, 9000) + b"\0" * 40,
    ],
)
def test_the_ip_host_ignores_malformed_frames(junk: bytes) -> None:
    a, _b, _to_a, to_b = hosts()
    a.handle(junk)
    assert to_b == [] and a.counters["bad"] + a.counters["ignored"] == 1

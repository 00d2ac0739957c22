"""RPMsg behaviour, both roles, on an in-process pair (deterministic, no threads)."""

from __future__ import annotations

import pytest

from openamp import (
    AddressExhaustedError,
    AddressInUseError,
    DeviceGoneError,
    EndpointClosedError,
    EndpointNotBoundError,
    EndpointUnboundError,
    InvalidStateError,
    MessageError,
    NoBufferError,
    OpenAMPTimeoutError,
    PayloadTooLargeError,
    PeerGoneError,
    SendTimeoutError,
    UsageError,
)
from openamp.metal.doorbell import InProcessDoorbell
from openamp.metal.wait import DoorbellWaiter, wait_strategy
from openamp.platform import LINUX_GENERIC, InProcessPair
from openamp.rpmsg import RPMSG_ADDR_ANY, RPMSG_NS_EPT_ADDR, RpmsgVirtioConfig
from openamp.rpmsg.core import SERVICE_LIMIT
from openamp.virtio import Role
from openamp.virtio.ring import VRING_AVAIL_F_NO_INTERRUPT, VringLayout

SERVICE = "svc"


@pytest.fixture
def pair():
    p = InProcessPair()
    host = p.driver()
    remote = p.device()
    return p, host, remote


def test_first_dynamic_address_is_0x400_on_each_side(pair):
    _, host, remote = pair
    assert host.create_endpoint("a").addr == 0x400
    assert remote.create_endpoint("a").addr == 0x400


def test_dynamic_addresses_are_handed_out_round_robin(pair):
    _, host, _ = pair
    a, b = host.create_endpoint(), host.create_endpoint()
    a.destroy()
    assert (a.addr, b.addr, host.create_endpoint().addr) == (0x400, 0x401, 0x402)


def test_exhausting_the_dynamic_range_raises_instead_of_duplicating(pair):
    _, host, _ = pair
    for _ in range(128):
        host.create_endpoint()
    with pytest.raises(AddressExhaustedError, match="128 dynamic addresses"):
        host.create_endpoint()
    assert host.create_endpoint(src=5000).addr == 5000  # explicit ones still work


def test_an_explicit_address_in_use_is_refused(pair):
    _, host, _ = pair
    host.create_endpoint(src=0x500)
    with pytest.raises(AddressInUseError):
        host.create_endpoint(src=0x500)
    with pytest.raises(AddressInUseError):
        host.create_endpoint(src=RPMSG_NS_EPT_ADDR)


def test_a_name_longer_than_31_bytes_is_refused(pair):
    _, host, _ = pair
    with pytest.raises(ValueError, match="at most 31"):
        host.create_endpoint("x" * 32)


def test_peer_announcement_binds_an_endpoint_of_the_same_name(pair):
    _, host, remote = pair
    h = host.create_endpoint(SERVICE)
    r = remote.create_endpoint(SERVICE, src=0x777)
    remote.poll()
    host.poll()
    assert (h.dest_addr, r.dest_addr) == (0x777, h.addr)
    assert host.services == {SERVICE: 0x777}


def test_the_first_message_binds_an_unannounced_endpoint(pair):
    _, host, remote = pair
    r = remote.create_endpoint("", src=0x600)  # no name: no announcement
    h = host.create_endpoint("", dst=0x600)
    assert not r.is_bound
    h.send(b"hi")
    assert r.recv(timeout=0) == b"hi"
    assert r.dest_addr == h.addr


def test_ns_bind_callback_gets_announcements_without_a_local_match():
    p = InProcessPair()
    seen = []
    host = p.driver(ns_bind_cb=lambda dev, name, addr: seen.append((name, addr)))
    remote = p.device()
    remote.create_endpoint("only-remote", src=0x456)
    host.poll()
    assert seen == [("only-remote", 0x456)]


def test_ns_destroy_unbinds_and_calls_the_unbind_callbacks():
    p = InProcessPair()
    device_unbinds = []
    host = p.driver()
    host.ns_unbind_cb = lambda dev, name, addr: device_unbinds.append((name, addr))
    remote = p.device()
    unbound = []
    h = host.create_endpoint(SERVICE, on_unbind=unbound.append)
    r = remote.create_endpoint(SERVICE)
    remote.poll()
    host.poll()
    r.destroy()
    host.poll()
    assert unbound == [h] and h.unbound and not h.is_bound
    assert device_unbinds == [(SERVICE, r.addr)]
    assert SERVICE not in host.services
    assert not h.closed  # unbinding does not destroy


def test_send_before_binding_is_a_usage_error(pair):
    _, host, _ = pair
    with pytest.raises(EndpointNotBoundError, match="wait_bound"):
        host.create_endpoint(SERVICE).send(b"x")


def test_wait_bound_times_out_with_a_clear_error(pair):
    _, host, _ = pair
    with pytest.raises(OpenAMPTimeoutError, match="not bound"):
        host.create_endpoint(SERVICE).wait_bound(timeout=0.01)


def test_endpoint_waits_for_the_peers_announcement(pair):
    _, host, remote = pair
    remote.create_endpoint(SERVICE, src=0x999)
    ept = host.endpoint(SERVICE, timeout=1)
    assert ept.dest_addr == 0x999


def test_wait_service_names_what_was_announced_on_timeout(pair):
    _, host, remote = pair
    remote.create_endpoint("other")
    with pytest.raises(OpenAMPTimeoutError, match="'other'"):
        host.wait_service(SERVICE, timeout=0)


@pytest.mark.parametrize("sender", ["host", "remote"])
def test_payload_over_the_buffer_size_raises_instead_of_truncating(pair, sender):
    _, host, remote = pair
    dev = host if sender == "host" else remote
    ept = dev.create_endpoint("", dst=0x500)
    ept.send(b"x" * 496)
    with pytest.raises(PayloadTooLargeError, match="497 bytes exceeds the buffer capacity of 496"):
        ept.send(b"x" * 497)
    ept.send(b"y" * 496)  # the refused send did not leak a buffer


def test_recv_times_out(pair):
    _, host, _ = pair
    with pytest.raises(OpenAMPTimeoutError, match="no message"):
        host.create_endpoint(SERVICE).recv(timeout=0)


def test_messages_to_unknown_addresses_are_dropped_and_counted(pair):
    _, host, remote = pair
    host.create_endpoint("", dst=0x1234).send(b"lost")
    remote.poll()
    assert remote.dropped == 1


def test_trysend_raises_no_buffer_when_the_remote_does_not_consume():
    p = InProcessPair()
    host = p.driver(blocking=False)
    p.device(blocking=False)
    ept = host.create_endpoint("", dst=0x400)
    for _ in range(256):
        ept.trysend(b"x")
    with pytest.raises(NoBufferError):
        ept.trysend(b"x")


def test_blocking_send_times_out_when_no_buffer_comes_back(pair):
    p, host, remote = pair
    ept = host.create_endpoint("", dst=0x400)
    hold = []
    remote.create_endpoint("", src=0x400, callback=lambda e, d, s: hold.append(e.hold_rx_buffer()))
    for _ in range(256):
        ept.send(b"x")
    with pytest.raises(SendTimeoutError, match="no transmit buffer"):
        ept.send(b"x", timeout=0.05)
    hold[0].release()
    ept.send(b"x", timeout=1)  # one came back: sending works again


def test_a_sender_waiting_for_buffers_keeps_receiving(pair):
    # Both sides flood each other: a waiting sender must drain its rx ring, or neither
    # side ever frees a buffer.
    _, host, remote = pair
    got = []
    h = host.create_endpoint("", src=0x400, dst=0x400, callback=lambda e, d, s: got.append(1))
    remote.create_endpoint("", src=0x400, callback=lambda e, d, s: e.send(bytes(d)))
    for _ in range(2000):
        h.send(b"ping", timeout=1)
    while remote.poll() + host.poll():
        pass
    assert len(got) == 2000


def test_nocopy_send_fills_the_shared_buffer_in_place(pair):
    _, host, remote = pair
    r = remote.create_endpoint("", src=0x400)
    h = host.create_endpoint("", dst=0x400)
    buf = h.get_tx_buffer()
    assert buf.capacity == 496
    buf.data[:5] = b"hello"
    buf.send(5)
    assert r.recv(timeout=0) == b"hello"
    with pytest.raises(InvalidStateError):
        buf.send(5)


def test_a_released_tx_buffer_is_reused_first(pair):
    _, host, _ = pair
    h = host.create_endpoint("", dst=0x400)
    with h.get_tx_buffer() as buf:
        offset = buf.offset
    assert h.get_tx_buffer().offset == offset


def test_held_rx_buffers_return_to_the_peer_only_on_release(pair):
    p, host, remote = pair
    held = []
    remote.create_endpoint("", src=0x400, callback=lambda e, d, s: held.append(e.hold_rx_buffer()))
    host.create_endpoint("", dst=0x400).send(b"keep me")
    remote.poll()
    rx = remote.rx_queue
    assert bytes(held[0].data) == b"keep me"
    used_before = rx._used_idx
    held[0].release()
    assert rx._used_idx == used_before + 1


def test_hold_outside_a_callback_is_refused(pair):
    _, host, _ = pair
    with pytest.raises(InvalidStateError):
        host.create_endpoint(SERVICE).hold_rx_buffer()


def test_a_message_with_an_impossible_length_is_reported_and_its_buffer_returned(pair):
    p, host, remote = pair
    r = remote.create_endpoint("", src=0x400)
    h = host.create_endpoint("", dst=0x400)
    h.send(b"ok?")
    # the peer lies: claims 600 bytes in its 512-byte tx buffer at 0x30000
    p.region.write16(0x30000 + 12, 600)
    with pytest.raises(MessageError, match="claims 600 payload bytes"):
        remote.poll()
    h.send(b"next")
    remote.poll()
    assert r.recv(timeout=0) == b"next"


def test_destroyed_endpoints_refuse_to_receive(pair):
    _, host, _ = pair
    ept = host.create_endpoint(SERVICE)
    ept.destroy()
    ept.destroy()  # idempotent
    with pytest.raises(EndpointClosedError):
        ept.recv(timeout=0)
    assert host.get_endpoint(ept.addr) is None


def test_close_announces_every_destroy(pair):
    _, host, remote = pair
    remote.create_endpoint("a")
    remote.create_endpoint("b")
    host.poll()
    assert set(host.services) == {"a", "b"}
    remote.close()
    host.poll()
    assert host.services == {}
    with pytest.raises(InvalidStateError):
        remote.create_endpoint("c")


def test_buffer_sizes_are_configurable_per_direction():
    from dataclasses import replace

    from openamp.platform import MachineLayout

    # a remote that offers no sizes: the driver's own config decides
    p = InProcessPair(layout=replace(MachineLayout.for_buffers(4096), buffer_sizes=None))
    host = p.driver(config=RpmsgVirtioConfig(h2r_buf_size=4096, r2h_buf_size=1024))
    remote = p.device()
    assert (host.tx_capacity, host.rx_capacity) == (4080, 1008)
    assert (remote.tx_capacity, remote.rx_capacity) == (1008, 496)  # no host buffer posted yet
    r = remote.create_endpoint("", src=0x400)
    h = host.create_endpoint("", dst=0x400)
    h.send(b"z" * 4080)
    assert r.recv(timeout=0) == b"z" * 4080
    with pytest.raises(PayloadTooLargeError):
        r.sendto(b"z" * 1009, h.addr)


def test_kicks_for_returned_buffers_are_suppressed_both_ways():
    p = InProcessPair()
    host, remote = p.pair()
    remote.create_endpoint("e", callback=lambda e, d, s: e.send(bytes(d)))
    h = host.create_endpoint("e")
    h.wait_bound(1)
    kicks_before = dict(p.kicks[Role.DRIVER]), dict(p.kicks[Role.DEVICE])
    for _ in range(10):
        h.send(b"m")
        h.recv(timeout=1)
    assert p.kicks[Role.DRIVER][2] - kicks_before[0].get(2, 0) == 10
    assert p.kicks[Role.DEVICE][1] - kicks_before[1].get(1, 0) == 10
    assert RPMSG_ADDR_ANY not in (h.dest_addr,)


def test_an_endpoint_created_after_the_announcement_binds_at_once(pair):
    _, host, remote = pair
    remote.create_endpoint(SERVICE, src=0x777)
    host.wait_service(SERVICE, timeout=1)  # the announcement is consumed here
    ept = host.create_endpoint(SERVICE)
    assert ept.dest_addr == 0x777


def test_a_closed_device_refuses_calls_with_a_typed_error(pair):
    _, host, _ = pair
    ept = host.create_endpoint("", dst=0x400)
    host.close()
    with pytest.raises(InvalidStateError):
        host.send_offchannel(0x400, 0x400, b"x", 0)
    with pytest.raises(EndpointClosedError):
        ept.recv(timeout=0)
    assert host.poll() == 0 and not host.has_rx_pending()


def test_send_many_delivers_in_order_with_one_kick_per_batch():
    p = InProcessPair()
    host, remote = p.pair()
    inbox = remote.create_endpoint("", src=0x400)
    out = host.create_endpoint("", dst=0x400)
    before = p.kicks[Role.DRIVER].get(2, 0)
    assert out.send_many([b"a", b"bb", b"ccc"] * 10) == 30
    assert p.kicks[Role.DRIVER][2] - before == 1
    assert inbox.recv_many(timeout=0) == [b"a", b"bb", b"ccc"] * 10


def test_send_many_kicks_the_peer_when_it_must_wait_for_buffers():
    # 600 messages need more than the 256 tx buffers: the peer must be told to drain.
    p = InProcessPair()
    host, remote = p.pair()
    got = []
    remote.create_endpoint("", src=0x400, callback=lambda e, d, s: got.append(bytes(d)))
    out = host.create_endpoint("", dst=0x400)
    assert out.send_many(b"%d" % i for i in range(600)) == 600
    while remote.poll():
        pass
    assert got == [b"%d" % i for i in range(600)]


def test_send_many_stops_at_an_oversized_payload_after_sending_the_rest(pair):
    _, host, remote = pair
    inbox = remote.create_endpoint("", src=0x400)
    out = host.create_endpoint("", dst=0x400)
    with pytest.raises(PayloadTooLargeError):
        out.send_many([b"ok", b"x" * 497, b"never"])
    assert inbox.recv_many(timeout=0) == [b"ok"]


def test_recv_many_limits_the_batch(pair):
    _, host, remote = pair
    inbox = remote.create_endpoint("", src=0x400)
    host.create_endpoint("", dst=0x400).send_many([b"1", b"2", b"3"])
    assert inbox.recv_many(2, timeout=0) == [b"1", b"2"]
    assert inbox.recv_many(timeout=0) == [b"3"]


def test_a_stopped_transport_makes_every_call_raise_peer_gone(pair):
    from openamp import PeerGoneError, TransportStoppedError

    _, host, remote = pair
    ept = remote.create_endpoint("", src=0x400, dst=0x400)
    remote.transport_stopped("the driver reset the device")
    with pytest.raises(TransportStoppedError, match="reset the device") as info:
        ept.send(b"x")
    assert isinstance(info.value, PeerGoneError)
    with pytest.raises(PeerGoneError):
        remote.poll()


def _event_idx_pair():
    from dataclasses import replace

    from openamp.platform import LINUX_GENERIC
    from openamp.virtio import VIRTIO_RING_F_EVENT_IDX

    p = InProcessPair(layout=replace(LINUX_GENERIC, dfeatures=1 | 1 << VIRTIO_RING_F_EVENT_IDX))
    return p, p.driver(), p.device()


def test_event_idx_is_negotiated_when_the_device_offers_it():
    p, host, remote = _event_idx_pair()
    assert host.features == remote.features == 1 | 1 << 29
    assert host.rx_queue.event_idx and remote.tx_queue.event_idx
    remote.create_endpoint("e", callback=lambda e, d, s: e.send(bytes(d)))
    h = host.create_endpoint("e")
    h.wait_bound(1)
    for i in range(300):  # more than a ring's worth: indices and events wrap around
        h.send(b"%d" % i)
        assert h.recv(timeout=1) == b"%d" % i


def test_event_idx_is_not_used_with_the_c_table(pair):
    _, host, remote = pair
    assert host.features == remote.features == 1
    assert not host.rx_queue.event_idx and not remote.rx_queue.event_idx


def test_event_idx_suppresses_kicks_a_flood_does_not_need():
    p, host, remote = _event_idx_pair()
    inbox = remote.create_endpoint("", src=0x400)
    out = host.create_endpoint("", dst=0x400)
    before = p.kicks[Role.DRIVER].get(2, 0)
    for _ in range(10):  # the remote never looks: it needs to be told only once
        out.send(b"x")
    assert p.kicks[Role.DRIVER][2] - before == 1
    assert len(inbox.recv_many(timeout=0)) == 10


def _echo_flood(monkeypatch: pytest.MonkeyPatch, stage: int) -> tuple[bytes, list[bytes], int]:
    """A remote that answers every message with several kinds of send, flooded by the host.

    Returns the final shared memory, what the host received, and the remote's kicks."""
    from openamp.rpmsg import virtio as rpmsg_virtio

    monkeypatch.setattr(rpmsg_virtio, "STAGE_TX", stage)
    p = InProcessPair()
    host, remote = p.pair()

    def answer(ept, data, src):
        ept.sendto(bytes(data) + b"/a", src)
        if data[0] % 7 == 0:  # now and then a batch and a nocopy send in between
            ept.send_many([b"/m1", b"/m2"])
            buf = ept.get_tx_buffer()
            buf.data[:2] = b"/n"
            buf.send(2)
            ept.sendto(b"/c", src)
            buf = ept.get_tx_buffer()
            buf.data[:2] = b"/N"
            buf.send(2)
        ept.sendto(bytes(data) + b"/b", src)

    remote.create_endpoint("", src=0x400, callback=answer)
    got: list[bytes] = []
    out = host.create_endpoint(
        "", src=0x400, dst=0x400, callback=lambda e, d, s: got.append(bytes(d))
    )
    for start in range(0, 120, 40):
        out.send_many([bytes([i]) for i in range(start, start + 40)])
        remote.poll()
        host.poll()
    return bytes(p.memory), got, sum(p.kicks[Role.DEVICE].values())


def test_staged_echoes_keep_their_order_and_the_rings_bytes(monkeypatch):
    # The device publishes a callback's sends STAGE_TX at a time; that changes when the
    # driver sees them, never what it sees: same order, same ring bytes as one by one.
    image, got, kicks = _echo_flood(monkeypatch, 16)
    expected: list[bytes] = []
    for i in range(120):
        expected.append(bytes([i]) + b"/a")
        if i % 7 == 0:
            expected += [b"/m1", b"/m2", b"/n", b"/c", b"/N"]
        expected.append(bytes([i]) + b"/b")
    assert got == expected
    one_by_one, got_1, kicks_1 = _echo_flood(monkeypatch, 1)
    assert got_1 == expected
    assert image == one_by_one
    assert kicks == kicks_1


def test_staged_sends_reach_the_driver_when_a_callback_waits_for_a_buffer(monkeypatch):
    # A callback that runs out of transmit buffers must publish what it staged first, or
    # the driver never sees them and never returns a buffer: 300 answers to one message
    # with 256 buffers, and nothing published before the wait (a stage larger than that).
    import threading
    import time

    from openamp.rpmsg import virtio as rpmsg_virtio

    monkeypatch.setattr(rpmsg_virtio, "STAGE_TX", 1000)
    p = InProcessPair()
    host, remote = p.pair()

    def burst(ept, data, src):
        for i in range(300):
            ept.sendto(b"%d" % i, src, timeout=5)

    remote.create_endpoint("", src=0x400, callback=burst)
    got: list[bytes] = []
    out = host.create_endpoint(
        "", src=0x400, dst=0x400, callback=lambda e, d, s: got.append(bytes(d))
    )
    out.send(b"go")
    deadline = time.monotonic() + 10

    def drain() -> None:
        while len(got) < 300 and time.monotonic() < deadline:
            if not host.poll():
                time.sleep(0.0005)

    host_thread = threading.Thread(target=drain)
    host_thread.start()
    try:
        remote.poll()
    finally:
        host_thread.join()
    assert got == [b"%d" % i for i in range(300)]


def test_a_pool_larger_than_the_ring_never_hands_out_more_buffers_than_descriptors():
    # 512 tx buffers would fit in this pool, but vring 1 has 256 descriptors: a batch
    # (or nocopy reservations) must stop at 256 instead of failing to post the rest.
    from dataclasses import replace

    from openamp.platform import LINUX_GENERIC

    p = InProcessPair(layout=replace(LINUX_GENERIC, shm_size=0x100000, pool_size=0x60000))
    host, remote = p.pair()
    inbox = remote.create_endpoint("", src=0x400)
    out = host.create_endpoint("", dst=0x400)
    with pytest.raises(NoBufferError):
        out.send_many([b"x"] * 300, timeout=0)
    assert len(inbox.recv_many(timeout=0)) == 256
    reserved = [out.get_tx_buffer(timeout=0) for _ in range(256)]  # all came back
    with pytest.raises(NoBufferError):
        out.get_tx_buffer(timeout=0)
    for buf in reserved:
        buf.send(0)
    assert len(inbox.recv_many(timeout=0)) == 256


class _KickOnlyWaiter:
    """Waits as a blocked process does: it can only be woken by a kick it asked for.

    Before each "block" it checks the host's rx notification flag (vring 0
    avail.flags), then lets the remote run once."""

    arms = True

    def __init__(self, pair: InProcessPair) -> None:
        self.pair = pair
        self.rx_kicks_on: list[bool] = []

    def wait(self, ready, timeout, arm=None):
        if ready():
            return True
        if arm is not None and arm():
            return True
        import struct

        flags = struct.unpack_from("<H", self.pair.memory, 0x5000)[0]
        self.rx_kicks_on.append(not flags & 1)  # VRING_AVAIL_F_NO_INTERRUPT
        remote = self.pair.side(Role.DEVICE)
        assert remote is not None
        remote.poll()
        return ready()


def test_a_sender_blocked_for_buffers_has_asked_for_rx_kicks():
    # While it fills buffers or spins, a sender keeps rx kicks off (a C peer would kick
    # for every answer); before it blocks it must turn them on, or a peer that needs
    # our receive buffers back could never wake it.
    p = InProcessPair()
    host, remote = p.driver(blocking=False), p.device(blocking=False)
    waiter = _KickOnlyWaiter(p)
    host.waiter = waiter
    remote.create_endpoint("", src=0x400, callback=lambda e, d, s: e.sendto(bytes(d), s))
    got: list[bytes] = []
    out = host.create_endpoint(
        "", src=0x400, dst=0x400, callback=lambda e, d, s: got.append(bytes(d))
    )
    payloads = [b"%d" % i for i in range(600)]
    assert out.send_many(payloads, timeout=5) == 600
    while remote.poll() or host.poll():
        continue  # until both sides are quiet
    assert got == payloads
    assert waiter.rx_kicks_on and all(waiter.rx_kicks_on)
    # and back with the user, rx kicks are on (for select/asyncio on the doorbell)
    import struct

    assert not struct.unpack_from("<H", p.memory, 0x5000)[0] & 1


def test_a_batch_asks_the_peer_not_to_kick_and_handles_what_came_in_meanwhile(pair):
    p, host, remote = pair
    got: list[bytes] = []
    out = host.create_endpoint(
        "", src=0x400, dst=0x400, callback=lambda e, d, s: got.append(bytes(d))
    )
    back = remote.create_endpoint("", src=0x400, dst=0x400)
    remote_rx_kicks = []

    def payloads():
        for i in range(3):
            back.send(b"news %d" % i)  # the remote talks while we fill our batch
            remote_rx_kicks.append(p.kicks[Role.DEVICE].get(1, 0))
            yield b"%d" % i

    assert out.send_many(payloads()) == 3
    assert remote_rx_kicks == [0, 0, 0]  # nobody was kicked for those
    assert got == [b"news 0", b"news 1", b"news 2"]  # processed before send_many returned


def _remote_sends(*, together: bool, hold: int | None = None) -> bytes:
    """Three remote -> host messages, processed by the host in one poll or one by one;
    the host's callback holds message ``hold`` and releases it at the end."""
    p = InProcessPair()
    host, remote = p.pair()
    held = []

    def on_message(ept, data, src):
        if hold is not None and bytes(data) == b"m%d" % hold:
            held.append(ept.hold_rx_buffer())

    host.create_endpoint("", src=0x400, callback=on_message)
    out = remote.create_endpoint("", src=0x400, dst=0x400)
    for i in range(3):
        out.send(b"m%d" % i)
        if not together:
            host.poll()
    host.poll()
    for buf in held:
        buf.release()
    return bytes(p.memory)


@pytest.mark.parametrize("hold", [None, 1])
def test_a_batch_of_received_buffers_goes_back_as_the_c_loop_returns_them(hold):
    # C frees each used descriptor and re-adds its buffer before it takes the next, so
    # each buffer goes back into its own descriptor and avail lists them in order.  A
    # host that takes a whole batch at once must leave the same bytes.
    assert _remote_sends(together=True, hold=hold) == _remote_sends(together=False, hold=hold)


@pytest.mark.parametrize("strategy", ["spin-then-block", "block", "spin", "poll"])
def test_rx_notifications_are_on_again_after_a_receive_times_out(strategy):
    # docs/architecture.md: kicks are on whenever control is the caller's, so a caller
    # who next waits on the doorbell's descriptor is woken by the peer's next message.
    # Strategies that never block (spin, poll) never call arm(); wait_until re-arms.
    p = InProcessPair()
    host, _remote = p.pair()
    mine, _theirs = InProcessDoorbell.pair()
    host.waiter = DoorbellWaiter(mine, wait_strategy(strategy))
    ept = host.create_endpoint("", src=0x500)
    with pytest.raises(OpenAMPTimeoutError):
        ept.recv(timeout=0.02)
    L = LINUX_GENERIC
    vring0 = VringLayout(L.vring_num, L.vring_align, L.vring0_da, L.vring0_da)
    assert not p.region.read16(vring0.avail) & VRING_AVAIL_F_NO_INTERRUPT


def test_a_message_that_arrives_while_kicks_are_off_is_not_slept_through():
    # The remote publishes while the host spins with kicks off; the host's wait ends on
    # it (re-arming sees it) instead of missing it until the next kick.
    p = InProcessPair()
    host, remote = p.pair()
    r = remote.create_endpoint("svc")
    h = host.create_endpoint("svc")
    h.wait_bound(1)
    r.wait_bound(1)

    class PublishOnArm:
        """Blocks like a doorbell waiter; the peer sends just as we re-arm."""

        def wait(self, ready, timeout, arm=None):
            r.send(b"late")
            return bool(arm and arm()) or ready()

    host.waiter = PublishOnArm()
    assert h.recv(timeout=0.1) == b"late"


def test_an_endpoint_nobody_reads_pushes_back_instead_of_growing():
    # Past queue_limit, messages stay in their receive buffers: the sender runs out of
    # buffers (back-pressure) and nothing is lost, duplicated or reordered.
    p = InProcessPair()
    host, remote = p.pair()
    h = host.create_endpoint("svc")
    h.queue_limit = h._room = 8
    r = remote.create_endpoint("svc")
    h.wait_bound(1)
    r.wait_bound(1)
    sent = 0
    with pytest.raises(NoBufferError):
        while sent < 10_000:
            r.send(sent.to_bytes(4, "little"), timeout=0)
            sent += 1
            host.poll()
    assert sent <= 8 + LINUX_GENERIC.vring_num  # the copies, then every ring buffer
    assert h.pending == sent
    got = [int.from_bytes(h.recv(timeout=0), "little") for _ in range(sent)]
    assert got == list(range(sent))
    # every buffer came back: the remote can send a full ring again
    for _ in range(LINUX_GENERIC.vring_num):
        r.send(b"again", timeout=0)
        host.poll()
    assert h.recv_many(timeout=0)[:2] == [b"again", b"again"]


def test_the_peer_cannot_grow_the_service_table_without_end(caplog):
    p = InProcessPair()
    host, remote = p.pair()
    for i in range(SERVICE_LIMIT + 50):
        remote.create_endpoint(f"s{i}", src=0x500 + i)
        host.poll()
    assert len(host.services) == SERVICE_LIMIT
    assert host.services_dropped == 50
    assert "dropping the announcement" in caplog.text


def test_a_batch_that_fails_part_way_says_how_many_went(pair):
    _, host, remote = pair
    h = host.create_endpoint("svc")
    remote.create_endpoint("svc")
    h.wait_bound(1)
    payloads = [b"m"] * 10 + [b"x" * 1000] + [b"m"] * 5
    with pytest.raises(PayloadTooLargeError) as caught:
        h.send_many(payloads, timeout=0)
    assert caught.value.sent == 10
    assert h.send_many(payloads[caught.value.sent + 1 :], timeout=0) == 5


def test_a_send_after_the_peer_destroyed_the_service_is_the_peers_doing(pair):
    _, host, remote = pair
    r = remote.create_endpoint("svc")
    h = host.create_endpoint("svc")
    h.wait_bound(1)
    r.destroy()
    host.poll()
    with pytest.raises(EndpointUnboundError, match="destroyed service 'svc'"):
        h.send(b"hello")
    assert isinstance(EndpointUnboundError("x"), PeerGoneError)


def test_a_device_closed_because_the_peer_went_is_not_a_usage_error(pair):
    _, host, _remote = pair
    host.peer_gone("the remote crashed")
    with pytest.raises(DeviceGoneError, match="the remote crashed"):
        host.create_endpoint("late")
    assert not issubclass(DeviceGoneError, UsageError)

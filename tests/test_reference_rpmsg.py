"""The inlined per-message path and its readable twin (tests/reference_rpmsg.py) leave
the same bytes in shared memory, send the same kicks and deliver the same messages."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from openamp.errors import MessageError, PayloadTooLargeError
from openamp.metal.io import IoRegion
from openamp.platform import LINUX_GENERIC
from openamp.platform.machine import find_vdev
from openamp.remoteproc.virtio import RscVdevTransport
from openamp.rpmsg.core import Endpoint
from openamp.rpmsg.virtio import RpmsgVirtioDevice, ShmPool
from openamp.rpmsg.wire import RPMSG_HDR
from openamp.virtio.ring import VringLayout
from openamp.virtio.virtqueue import Role
from reference_rpmsg import ReferenceRpmsgDevice

L = LINUX_GENERIC
Cls = type[RpmsgVirtioDevice]


class Link:
    """Both sides in one memory, with the device classes chosen per side; no waiter,
    so nothing runs unless the test polls (the same steps in the same order)."""

    def __init__(self, host_cls: Cls, remote_cls: Cls) -> None:
        self.memory = bytearray(L.shm_size)
        self.region = IoRegion(self.memory, name="link")
        self.region.write_block(L.rsc_offset, L.resource_table().to_bytes())
        self.kicks: list[tuple[str, int]] = []
        self.host = host_cls(
            self._transport(Role.DRIVER),
            shm=self.region,
            pool=ShmPool(L.pool_base, L.pool_size),
        )
        self.remote = remote_cls(self._transport(Role.DEVICE), shm=self.region, ready_timeout=0)

    def _transport(self, role: Role) -> RscVdevTransport:
        table_io = self.region.subregion(L.rsc_offset, self.region.size - L.rsc_offset)

        def notify(notifyid: int) -> None:
            self.kicks.append((role.name, notifyid))

        return RscVdevTransport(
            table_io, find_vdev(table_io), ring_io=self.region, role=role, notify=notify
        )


Scenario = Callable[[Link], list[object]]


def echo_flood(link: Link) -> list[object]:
    """The device echoes each message twice from its callback; the host sends singly and
    in batches, polls, and a few messages go to addresses nobody has."""
    seen: list[object] = []

    def echo(ept: Endpoint, data: memoryview, src: int) -> None:
        ept.sendto(bytes(data) + b"/1", src)
        ept.sendto(bytes(data) + b"/2", src)

    link.remote.create_endpoint("svc", callback=echo)
    link.host.poll()
    h = link.host.create_endpoint("svc")
    link.remote.poll()
    for i in range(300):
        if i % 9 == 0:
            h.send_many([bytes([i % 256, k]) for k in range(5)], timeout=0)
        else:
            h.send(bytes([i % 256]) * (1 + i % 40), timeout=0)
        if i % 13 == 0:
            h.sendto(b"nobody", 0x777, timeout=0)
        if i % 3 == 2:
            link.remote.poll()
            link.host.poll()
            while h.pending:
                seen.append(h.recv(timeout=0))
            seen.append(bytes(link.memory))
    return seen


def held_buffers(link: Link) -> list[object]:
    """Callbacks keep some receive buffers and give them back later, on both sides."""
    held = []

    def keep_odd(ept: Endpoint, data: memoryview, src: int) -> None:
        if data[0] % 2:
            held.append(ept.hold_rx_buffer())
        ept.sendto(bytes(data), src)

    link.remote.create_endpoint("svc", callback=keep_odd)
    link.host.poll()
    got: list[bytes] = []

    def host_cb(ept: Endpoint, data: memoryview, src: int) -> None:
        got.append(bytes(data))
        if data[0] % 3 == 0:
            held.append(ept.hold_rx_buffer())

    h = link.host.create_endpoint("svc", callback=host_cb)
    link.remote.poll()
    out: list[object] = []
    for round_ in range(20):
        for i in range(10):
            h.send(bytes([round_ * 10 + i]), timeout=0)
        link.remote.poll()
        link.host.poll()
        if round_ % 4 == 3:
            for buf in held:
                buf.release()
            held.clear()
        out.append(bytes(link.memory))
    out.append(got)
    return out


def errors_on_the_way(link: Link) -> list[object]:
    """A payload too large for the buffer, and a malformed message in the middle of a
    batch: the rest of the batch is still delivered and every buffer goes back."""
    out: list[object] = []
    link.remote.create_endpoint("svc", callback=lambda e, d, s: e.sendto(bytes(d), s))
    link.host.poll()
    h = link.host.create_endpoint("svc")
    link.remote.poll()
    with pytest.raises(PayloadTooLargeError):
        h.send(b"x" * 1000, timeout=0)
    for i in range(5):
        h.send(bytes([i]) * 8, timeout=0)
    # corrupt the third message's length before the device reads it
    layout = VringLayout(L.vring_num, L.vring_align, L.vring1_da, L.vring1_da)
    head = link.region.read16(layout.avail + 4 + 2 * 2)
    addr = link.region.read64(layout.desc + 16 * head)
    src, dst, _r, _n, flags = RPMSG_HDR.unpack_from(link.memory, addr)
    RPMSG_HDR.pack_into(link.memory, addr, src, dst, 0, 9999, flags)
    with pytest.raises(MessageError):
        link.remote.poll()
    link.host.poll()
    while h.pending:
        out.append(h.recv(timeout=0))
    out.append(bytes(link.memory))
    return out


@pytest.mark.parametrize("scenario", [echo_flood, held_buffers, errors_on_the_way])
@pytest.mark.parametrize("side", ["host", "remote", "both"])
def test_the_fast_path_and_its_readable_twin_leave_the_same_bytes(
    scenario: Scenario, side: str
) -> None:
    fast = Link(RpmsgVirtioDevice, RpmsgVirtioDevice)
    slow = Link(
        ReferenceRpmsgDevice if side in ("host", "both") else RpmsgVirtioDevice,
        ReferenceRpmsgDevice if side in ("remote", "both") else RpmsgVirtioDevice,
    )
    fast_seen = scenario(fast)
    slow_seen = scenario(slow)
    assert len(fast_seen) == len(slow_seen)
    for i, (a, b) in enumerate(zip(fast_seen, slow_seen)):
        assert a == b, f"step {i} differs"
    assert bytes(fast.memory) == bytes(slow.memory)
    assert fast.kicks == slow.kicks


def test_the_twin_is_really_used() -> None:
    # guard against the scenario silently running the fast path on both links
    link = Link(ReferenceRpmsgDevice, ReferenceRpmsgDevice)
    assert type(link.host).send_offchannel is ReferenceRpmsgDevice.send_offchannel
    assert type(link.remote)._drain_rx is ReferenceRpmsgDevice._drain_rx

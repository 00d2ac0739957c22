"""Virtqueue behaviour in both roles, on one ring in a bytearray."""

from __future__ import annotations

import struct

import pytest

from openamp import RingError, UsageError
from openamp.metal import IoRegion
from openamp.virtio import Role, Virtqueue, VringLayout, vring_size
from openamp.virtio.ring import VQ_RING_DESC_CHAIN_END, vring_need_event

NUM = 8
BUF = 0x1000


def make(event_idx: bool = False):
    mem = bytearray(0x2000)
    ring = IoRegion(mem, name="ring")
    bufs = ring.subregion(BUF, 0x1000, "bufs")
    layout = VringLayout(NUM, 16, base=0, pa=0)
    kicks = {"driver": 0, "device": 0}

    def kick(who):
        def f():
            kicks[who] += 1

        return f

    drv = Virtqueue(
        ring, layout, role=Role.DRIVER, buf_io=bufs, notify=kick("driver"), event_idx=event_idx
    )
    dev = Virtqueue(
        ring, layout, role=Role.DEVICE, buf_io=bufs, notify=kick("device"), event_idx=event_idx
    )
    drv.init_driver_ring()
    dev.attach_device()
    return mem, layout, drv, dev, kicks


def test_vring_size_matches_the_c_formula():
    assert [vring_size(256, 4096), vring_size(16, 4096), vring_size(8, 16)] == [10246, 4230, 230]


def test_init_chains_the_free_list_like_the_c_driver():
    mem, layout, *_ = make()
    nexts = [struct.unpack_from("<H", mem, 16 * i + 14)[0] for i in range(NUM)]
    assert nexts == [1, 2, 3, 4, 5, 6, 7, VQ_RING_DESC_CHAIN_END]


def test_a_buffer_travels_driver_to_device_and_back():
    mem, layout, drv, dev, _ = make()
    head = drv.add_buffer(0x40, 64, writable=False)
    assert dev.get_avail() == (head, 0x40, 64)
    dev.add_used(head, 64)
    assert drv.get_used() == (0x40, 64, 0)
    assert drv.get_used() is None and dev.get_avail() is None


def test_a_freed_descriptor_becomes_the_free_list_head():
    mem, layout, drv, dev, _ = make()
    h = drv.add_buffer(0, 16, False)
    dev.get_avail()
    dev.add_used(h, 16)
    drv.get_used()
    assert struct.unpack_from("<H", mem, 16 * h + 14)[0] == 1  # next = old free head
    assert drv.add_buffer(0, 16, False) == h


def test_role_operations_are_guarded():
    _, _, drv, dev, _ = make()
    with pytest.raises(UsageError, match="device-side"):
        drv.get_avail()
    with pytest.raises(UsageError, match="driver-side"):
        dev.add_buffer(0, 16, False)


def test_posting_more_buffers_than_descriptors_is_refused():
    _, _, drv, *_ = make()
    for _ in range(NUM):
        drv.add_buffer(0, 16, True)
    with pytest.raises(UsageError, match="no free descriptor"):
        drv.add_buffer(0, 16, True)


def test_flags_mode_suppression_follows_the_peers_flag():
    _, _, drv, dev, kicks = make()
    drv.add_buffer(0, 16, False)
    assert drv.kick() and kicks["driver"] == 1
    dev.disable_cb()  # device sets VRING_USED_F_NO_NOTIFY
    drv.add_buffer(0, 16, False)
    assert not drv.kick() and kicks["driver"] == 1
    assert dev.enable_cb() is True  # two buffers are waiting
    drv.disable_cb()
    h, _, _ = dev.get_avail()
    dev.add_used(h, 16)
    assert not dev.kick() and kicks["device"] == 0


def test_event_idx_mode_notifies_only_when_the_peer_index_is_crossed():
    _, layout, drv, dev, kicks = make(event_idx=True)
    dev.enable_cb()  # avail_event = 0: wake me for the first buffer
    drv.add_buffer(0, 16, False)
    assert drv.kick()
    drv.add_buffer(0, 16, False)
    assert not drv.kick()  # device has not caught up: no new kick needed
    assert vring_need_event(0, 1, 0) and not vring_need_event(0, 2, 1)


def test_a_head_outside_the_table_breaks_the_queue():
    mem, layout, drv, dev, _ = make()
    drv.add_buffer(0, 16, False)
    struct.pack_into("<H", mem, layout.avail_ring, NUM + 3)
    with pytest.raises(RingError, match="outside the table"):
        dev.get_avail()
    assert dev.broken is not None
    with pytest.raises(RingError):
        dev.get_avail()


def test_a_descriptor_pointing_outside_the_buffers_is_refused():
    mem, layout, drv, dev, _ = make()
    head = drv.add_buffer(0, 16, False)
    struct.pack_into("<Q", mem, 16 * head, 0x10)  # into the ring itself
    with pytest.raises(RingError, match="outside the shared buffers"):
        dev.get_avail()


def test_an_avail_index_jump_is_refused():
    mem, layout, drv, dev, _ = make()
    struct.pack_into("<H", mem, layout.avail_idx, NUM + 1)
    with pytest.raises(RingError, match=r"avail\.idx jumped"):
        dev.get_avail()


def test_a_used_id_the_driver_never_posted_is_refused():
    mem, layout, drv, dev, _ = make()
    drv.add_buffer(0, 16, True)
    struct.pack_into("<II", mem, layout.used_ring, 5, 16)
    struct.pack_into("<H", mem, layout.used_idx, 1)
    with pytest.raises(RingError, match="not in use"):
        drv.get_used()


def test_more_used_entries_than_outstanding_buffers_are_refused():
    mem, layout, drv, dev, _ = make()
    drv.add_buffer(0, 16, True)
    struct.pack_into("<H", mem, layout.used_idx, 2)
    with pytest.raises(RingError, match="only 1 buffers outstanding"):
        drv.get_used()


def test_a_kept_batch_naming_one_descriptor_twice_is_refused():
    # take_used(keep=True) does not free as it goes, so it must notice a repeated id
    mem, layout, drv, dev, _ = make()
    drv.add_buffer(0, 16, True)
    drv.add_buffer(16, 16, True)
    struct.pack_into("<IIII", mem, layout.used_ring, 0, 16, 0, 16)
    struct.pack_into("<H", mem, layout.used_idx, 2)
    with pytest.raises(RingError, match="not in use"):
        drv.take_used(keep=True)
    assert drv.broken is not None


def test_recycle_puts_each_buffer_back_into_its_own_descriptor():
    mem, layout, drv, dev, _ = make()
    for i in range(3):
        drv.add_buffer(16 * i, 16, True)
    heads = [dev.get_avail()[0] for _ in range(3)]
    for head in reversed(heads):  # the device returns them in reverse
        dev.add_used(head, 16)
    taken = drv.take_used(keep=True)
    assert [off for off, _len, _slot in taken] == [32, 16, 0]
    with pytest.raises(UsageError, match="recycle"):
        drv.take_used(keep=True)
    drv.recycle([True, False, True], 16, True)  # the middle one is held
    descs = [struct.unpack_from("<QIHH", mem, 16 * h) for h in range(3)]
    assert [d[0] - BUF for d in descs] == [0, 16, 32]  # own buffers, nothing swapped
    # avail: 3 initial entries, then the two returned ones in the order they came back
    ring = struct.unpack_from("<5H", mem, layout.avail_ring)
    assert ring == (0, 1, 2, 2, 0) and drv.free_count == NUM - 2
    assert descs[2][3] == 3 and descs[0][3] == 1  # next = the free head at their time
    assert drv.add_buffer(16, 16, True) == 1  # the held one's descriptor is free again


def test_layout_rejects_bad_geometry():
    with pytest.raises(UsageError, match="power of two"):
        VringLayout(6, 16, base=0, pa=0)
    with pytest.raises(UsageError, match="align"):
        VringLayout(8, 24, base=0, pa=0)
    with pytest.raises(UsageError, match="16-byte aligned"):
        VringLayout(8, 16, base=8, pa=8)


def test_indices_wrap_at_16_bits():
    _, _, drv, dev, _ = make()
    drv._avail_idx = dev._last_avail = 0xFFFF
    h = drv.add_buffer(0, 16, False)
    assert dev.get_avail() == (h, 0, 16)
    assert drv._avail_idx == 0


def test_a_ring_whose_parts_are_placed_apart_works():
    # vhost-user and virtio 1.0 give desc, avail and used addresses separately.
    mem = bytearray(0x4000)
    ring = IoRegion(mem)
    bufs = ring.subregion(0x3000, 0x1000)
    layout = VringLayout(NUM, 16, base=0x1000, pa=0x1000, avail_at=0x200, used_at=0x2000)
    assert (layout.avail, layout.used, layout.start) == (0x200, 0x2000, 0x200)
    drv = Virtqueue(ring, layout, role=Role.DRIVER, buf_io=bufs, notify=lambda: None)
    dev = Virtqueue(ring, layout, role=Role.DEVICE, buf_io=bufs, notify=lambda: None)
    drv.init_driver_ring()
    dev.attach_device()
    head = drv.add_buffer(0x10, 32, writable=True)
    assert struct.unpack_from("<H", mem, 0x202)[0] == 1  # avail.idx where we put it
    assert dev.get_avail() == (head, 0x10, 32)
    dev.add_used(head, 32)
    assert struct.unpack_from("<H", mem, 0x2002)[0] == 1  # used.idx where we put it
    assert drv.get_used() == (0x10, 32, 0)


def test_a_driver_ring_with_parts_apart_zeroes_only_its_parts():
    mem = bytearray(b"\xee" * 0x4000)
    ring = IoRegion(mem)
    layout = VringLayout(NUM, 16, base=0x1000, pa=0x1000, avail_at=0x200, used_at=0x2000)
    drv = Virtqueue(
        ring, layout, role=Role.DRIVER, buf_io=ring.subregion(0x3000, 0x1000), notify=lambda: None
    )
    drv.init_driver_ring()
    assert mem[0x300:0x1000] == b"\xee" * 0xD00  # between avail and desc: untouched
    assert mem[0x200:0x202] == b"\0\0" and mem[0x2000:0x2004] == b"\0" * 4


def test_a_device_resumes_at_the_avail_index_it_is_given():
    mem, layout, drv, dev, _ = make()
    for _ in range(3):
        drv.add_buffer(0, 16, False)
    dev.attach_device(last_avail=2)  # the first two were handled before
    head, _, _ = dev.get_avail()
    assert head == 2 and dev.get_avail() is None


def test_a_broken_queue_refuses_everything_and_wakes_waiters():
    _, _, drv, dev, _ = make()
    err = RingError("stopped")
    dev.broken = err
    assert dev.has_pending()
    with pytest.raises(RingError):
        dev.get_avail()
    with pytest.raises(RingError):
        dev.add_used(0, 16)

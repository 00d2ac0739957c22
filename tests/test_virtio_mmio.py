"""virtio-mmio over shared memory: the window, the driver's handshake and the monitor's diff pass.

Both roles run in one process on one bytearray (``tests/hvl_pair.py``): the driver's
waiter runs the monitor's pass whenever the driver notified it.
"""

from __future__ import annotations

import pytest

from hvl_pair import PHYS, POOLS, Pair, make_pair
from openamp.errors import MmioAckTimeoutError, MmioWindowError, NoBufferError, UsageError
from openamp.metal.io import IoRegion
from openamp.virtio.devices.rng import RngDriver
from openamp.virtio.mmio import (
    HVL_CFG_ACK,
    INT_CONFIG,
    INT_VRING,
    INTERRUPT_ACK,
    INTERRUPT_STATUS,
    MAGIC_VALUE,
    OFFSET,
    QUEUE_NUM,
    QUEUE_PFN,
    QUEUE_SEL,
    REGS,
    STATUS,
    VERSION,
    MmioDriver,
    MmioWindow,
    ShmAllocator,
)
from openamp.virtio.ring import (
    VIRTIO_CONFIG_STATUS_ACK,
    VIRTIO_CONFIG_STATUS_DRIVER,
    VIRTIO_CONFIG_STATUS_NEEDS_RESET,
)

SPEC_OFFSETS = {
    "magic": 0x000,
    "version": 0x004,
    "device_id": 0x008,
    "vendor_id": 0x00C,
    "device_features": 0x010,
    "device_features_sel": 0x014,
    "driver_features": 0x020,
    "driver_features_sel": 0x024,
    "guest_page_size": 0x028,
    "queue_sel": 0x030,
    "queue_num_max": 0x034,
    "queue_num": 0x038,
    "queue_align": 0x03C,
    "queue_pfn": 0x040,
    "queue_notify": 0x050,
    "interrupt_status": 0x060,
    "interrupt_ack": 0x064,
    "status": 0x070,
    "shm_sel": 0x0AC,
    "shm_len_low": 0x0B0,
    "shm_len_high": 0x0B4,
    "shm_base_low": 0x0B8,
    "shm_base_high": 0x0BC,
}
"""The legacy register table of ``spec/hvl-virtio.md`` (and kvmtool's ``virtio_mmio_hdr``)."""


def test_the_register_offsets_are_the_legacy_window_of_the_spec() -> None:
    assert OFFSET == SPEC_OFFSETS
    assert REGS.size == 0xC0


def test_the_monitor_writes_the_window_as_the_reference_leaves_it() -> None:
    pair = make_pair(("rng", "net"), init_drivers=False)
    rng, net = (MmioWindow(pair.window(i)).snapshot() for i in (0, 1))
    assert bytes(pair.mem[0:4]) == b"virt"
    assert (rng.version, rng.device_id, rng.vendor_id) == (1, 4, 0x4D564B4C)
    assert (net.device_id, net.queue_num_max, rng.queue_num_max) == (1, 256, 128)
    assert (rng.queue_sel, rng.queue_num, rng.queue_pfn) == (0x00FF00FF, 0x00FF00FF, 0)
    assert (rng.guest_page_size, rng.queue_align, rng.status) == (0x1000, 0x1000, 0)
    assert (rng.shm_base_low, rng.shm_len_low) == (PHYS + POOLS["rng"][0], POOLS["rng"][1])
    assert net.device_features == (1 << 5) | (1 << 15) | (1 << 16)  # MAC, MRG_RXBUF, STATUS
    # the network config space sits at +0x100 of the window: the MAC, link up
    assert bytes(pair.mem[0x300:0x308]) == b"\x02\x15\x15\x15\x15\x15\x01\x00"


def test_the_driver_sequence_leaves_the_registers_the_c_driver_writes() -> None:
    pair = make_pair(("rng",))
    window = MmioWindow(pair.window(0))
    assert window.read(STATUS) == VIRTIO_CONFIG_STATUS_ACK
    rng = RngDriver(pair.drivers[0], num=16)
    rng.start()
    regs = window.snapshot()
    assert regs.status == VIRTIO_CONFIG_STATUS_ACK | VIRTIO_CONFIG_STATUS_DRIVER | 4
    assert (regs.queue_sel, regs.queue_num, regs.queue_align, regs.guest_page_size) == (
        0,
        16,
        4096,
        4096,
    )
    # the acknowledgement was overwritten with the real PFN again, as the C driver does
    assert rng.vq is not None
    assert regs.queue_pfn == rng.vq.layout.pa // 4096 != HVL_CFG_ACK
    assert regs.queue_notify == 0  # the kick after DRIVER_OK
    assert pair.devices[0].queues[0].layout == rng.vq.layout


def test_each_pfn_is_acknowledged_and_queues_are_taken_in_order() -> None:
    pair = make_pair(("net",))
    driver, device = pair.drivers[0], pair.devices[0]
    driver.set_status(VIRTIO_CONFIG_STATUS_DRIVER)
    driver.negotiate(0)
    q0 = driver.setup_queue(0, 8)
    q1 = driver.setup_queue(1, 4)
    assert [vq.layout for vq in device.queues] == [q0.layout, q1.layout]
    assert [vq.num for vq in device.queues] == [8, 4]


def test_a_queue_without_a_monitor_times_out_with_a_typed_error() -> None:
    pair = make_pair(("rng",))
    pair.monitor_running[0] = False
    driver = pair.drivers[0]
    with pytest.raises(MmioAckTimeoutError, match="did not acknowledge queue 0"):
        driver.setup_queue(0, 16, timeout=0.01)
    assert driver.pool is not None and driver.pool.free_bytes == POOLS["rng"][1]


def test_queues_must_be_set_up_in_order_and_fit_num_max() -> None:
    pair = make_pair(("rng",))
    with pytest.raises(UsageError, match="in order"):
        pair.drivers[0].setup_queue(1, 16)
    with pytest.raises(UsageError, match="at most 128"):
        pair.drivers[0].setup_queue(0, 256)


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (MAGIC_VALUE, 0x12345678, "bad magic"),
        (VERSION, 2, "version 2"),
        (OFFSET["device_id"], 0, "device id 0"),
        (OFFSET["shm_len_low"], 0, "not a hypervisorless device"),
        (OFFSET["shm_base_low"], 0x10, "outside the mapped memory"),
    ],
)
def test_the_driver_refuses_a_window_that_is_not_an_hvl_device(
    offset: int, value: int, message: str
) -> None:
    pair = make_pair(("rng",), init_drivers=False)
    pair.shm.write32(offset, value)
    with pytest.raises(MmioWindowError, match=message):
        pair.drivers[0].probe()


def test_a_status_drop_reinitialises_the_device_and_the_driver_can_start_again() -> None:
    pair = make_pair(("rng",))
    rng = RngDriver(pair.drivers[0])
    rng.start()
    assert len(rng.get_entropy(32)) == 32
    device = pair.devices[0]
    pair.drivers[0].reset()
    pair.pump()
    assert device.resets == 1 and device.queues == [] and device.status == 0
    assert pair.shm.read32(QUEUE_SEL) == 0x00FF00FF
    pair.drivers[0].init()
    rng = RngDriver(pair.drivers[0])
    rng.start()  # the same PFN again: the reset cleared the monitor's shadow
    assert len(rng.get_entropy(100)) == 100


def test_an_acknowledgement_clears_the_interrupt_and_a_kick_with_it_is_served() -> None:
    pair = make_pair(("rng",))
    rng = RngDriver(pair.drivers[0])
    rng.start()
    assert rng.vq is not None
    driver, device = pair.drivers[0], pair.devices[0]
    driver.on_wake = lambda: None  # acknowledge by hand below
    assert len(rng.get_entropy(8)) == 8
    assert pair.shm.read32(INTERRUPT_STATUS) == INT_VRING
    # the driver acknowledges and posts a new request; one IPI covers both
    pair.shm.write32(INTERRUPT_ACK, INT_VRING)
    offset = driver.bounce_in(b"\0" * 8)
    rng.vq.add_buffer(offset, 8, writable=True)
    pair.shm.write32(OFFSET["queue_notify"], 0)
    pair.notify_monitor()
    pair.pump()
    assert pair.shm.read32(INTERRUPT_ACK) == 0
    # the reference would have returned after the ack; we served the kick as well
    assert rng.vq.get_used() is not None
    assert pair.shm.read32(INTERRUPT_STATUS) == INT_VRING
    assert device.interrupts == 2


def test_an_interrupt_raised_twice_before_the_ack_is_raised_again() -> None:
    pair = make_pair(("rng",))
    rng = RngDriver(pair.drivers[0])
    rng.start()
    driver, device = pair.drivers[0], pair.devices[0]
    driver.on_wake = lambda: None
    rng.get_entropy(8)
    rng.get_entropy(8)  # raised again while the first was not acknowledged
    before = device.interrupts
    seen = []
    driver.callbacks[0] = lambda: seen.append(1)
    assert driver.handle_interrupt() == INT_VRING and seen == [1]
    assert pair.to_remote[0]
    pair.pump()
    # the driver may have read the status before the second raise: it is told again
    assert device.interrupts == before + 1
    assert pair.shm.read32(INTERRUPT_STATUS) == INT_VRING
    assert driver.handle_interrupt() == INT_VRING
    pair.pump()
    assert device.interrupts == before + 1  # once was enough
    assert pair.shm.read32(INTERRUPT_STATUS) == 0


def test_the_driver_does_not_acknowledge_twice_before_the_monitor_cleared() -> None:
    pair = make_pair(("rng",))
    rng = RngDriver(pair.drivers[0])
    rng.start()
    driver = pair.drivers[0]
    driver.on_wake = lambda: None
    rng.get_entropy(8)
    assert driver.handle_interrupt() == INT_VRING
    assert driver.handle_interrupt() == 0  # the ack is still in the window
    assert driver.acks == 1


@pytest.mark.parametrize(
    ("register", "value", "message"),
    [
        (QUEUE_PFN, 0x100, "unusable"),  # below the shared memory
        (QUEUE_PFN, 0xFFFFFFFF, "unusable"),
        (QUEUE_NUM, 3, "not a power of two"),
        (QUEUE_NUM, 1024, "not a power of two up to 128"),
        (OFFSET["guest_page_size"], 0, "guest page size"),
        (OFFSET["queue_align"], 3, "queue align"),
    ],
)
def test_a_bad_queue_breaks_the_device_until_the_driver_resets_it(
    register: int, value: int, message: str
) -> None:
    pair = make_pair(("rng",))
    driver, device = pair.drivers[0], pair.devices[0]
    window = MmioWindow(pair.window(0))
    window.write(QUEUE_SEL, 0)
    window.write(QUEUE_NUM, 16)
    window.write(QUEUE_PFN, (PHYS + 0x2000) // 4096)
    window.write(register, value)
    if register != QUEUE_PFN:
        window.write(QUEUE_PFN, (PHYS + 0x3000) // 4096)
    driver.notify()
    pair.pump()
    assert isinstance(device.broken, MmioWindowError) and message in str(device.broken)
    assert window.read(STATUS) & VIRTIO_CONFIG_STATUS_NEEDS_RESET
    assert window.read(INTERRUPT_STATUS) & INT_CONFIG
    assert window.read(QUEUE_PFN) != HVL_CFG_ACK
    driver.reset()
    pair.pump()
    assert device.broken is None
    driver.init()
    rng = RngDriver(driver)
    rng.start()
    assert len(rng.get_entropy(4)) == 4


def test_a_broken_ring_stops_the_device_with_a_typed_error() -> None:
    pair = make_pair(("rng",))
    rng = RngDriver(pair.drivers[0])
    rng.start()
    assert rng.vq is not None
    device = pair.devices[0]
    pair.shm.write16(rng.vq.layout.avail_idx, 500)  # a jump larger than the ring
    pair.notify_monitor()
    pair.pump()
    assert device.broken is not None and "jumped" in str(device.broken)
    assert pair.shm.read32(STATUS) & VIRTIO_CONFIG_STATUS_NEEDS_RESET


def test_one_notification_runs_every_device_and_the_monitor_side_owns_no_pfn_until_asked() -> None:
    pair: Pair = make_pair()
    assert all(d.passes == 0 for d in pair.devices)
    pair.notify_monitor()
    pair.pump()
    assert [d.passes for d in pair.devices] == [1, 1, 1]
    assert all(MmioWindow(pair.window(i)).read(QUEUE_PFN) == 0 for i in range(3))


def test_the_pool_aligns_physical_addresses_and_merges_what_is_freed() -> None:
    region = IoRegion(bytearray(0x10000), phys_base=0x1000_0800)
    pool = ShmAllocator(region, 0x100, 0x8000)
    ring = pool.alloc(100, 4096)
    assert (region.phys_base + ring) % 4096 == 0
    a, b = pool.alloc(64), pool.alloc(64)
    pool.free(a)
    pool.free(ring)
    pool.free(b)
    assert pool.free_bytes == 0x8000 and pool.alloc(0x8000, 1) == 0x100
    with pytest.raises(NoBufferError):
        pool.alloc(1)
    with pytest.raises(UsageError):
        pool.free(0x100 + 8)


def test_a_driver_on_a_reference_layout_is_given_its_pool_explicitly() -> None:
    pair = make_pair(("rng",), init_drivers=False)
    driver = MmioDriver(
        pair.window(0),
        pair.shm,
        notify=pair.notify_monitor,
        waiter=pair.drivers[0].waiter,
        pool=(0x40000, 0x8000),
    )
    driver.init()
    rng = RngDriver(driver)
    rng.start()
    assert rng.vq is not None and rng.vq.layout.base == 0x40000

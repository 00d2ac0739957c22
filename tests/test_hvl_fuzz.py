"""A window or ring written by an adversarial peer: typed errors or nothing, never a hang.

Hypervisorless virtio trusts nothing in shared memory (DESIGN.md): whatever the driver
writes into a device's register window or rings, the monitor's diff pass never raises
(a bad value marks the device broken, with ``DEVICE_NEEDS_RESET``), and whatever the
monitor writes, the driver and the device drivers raise only
:class:`~openamp.errors.OpenAMPError` subclasses.  Every example runs under a CPU-time
watchdog, so a hang fails instead of stalling the suite.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from hypothesis import HealthCheck, given, settings, strategies as st

from hvl_pair import Pair, make_pair
from openamp.errors import MmioWindowError, OpenAMPError, RingError
from openamp.virtio.devices.console import ConsoleDriver
from openamp.virtio.devices.net import NetDriver
from openamp.virtio.devices.rng import RngDriver
from openamp.virtio.mmio import OFFSET, WINDOW_SIZE, MmioWindow
from openamp.virtio.ring import VIRTIO_CONFIG_STATUS_NEEDS_RESET

FUZZ = settings(
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
REGISTER = st.sampled_from(sorted(OFFSET.values()))
U32S = st.integers(0, 0xFFFFFFFF)
INTERESTING = st.sampled_from(
    [0, 1, 2, 3, 4, 7, 0x40, 0x80, 16, 128, 256, 4096, 0xAABBAABB, 0x00FF00FF, 0xFF00FF00, 0x37001]
)
WRITES = st.lists(st.tuples(REGISTER, st.one_of(U32S, INTERESTING)), max_size=12)


class Hang(Exception):
    """A call used more CPU time than any legitimate path needs."""


@contextlib.contextmanager
def cpu_watchdog(seconds: float = 5.0) -> Iterator[None]:
    """Raise :class:`Hang` inside the code under test after ``seconds`` of CPU time."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(_signum: int, _frame: FrameType | None) -> None:
        raise Hang(f"a call spun for more than {seconds} s of CPU time")

    old = signal.signal(signal.SIGVTALRM, on_alarm)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, old)


def started(stage: int) -> tuple[Pair, RngDriver, ConsoleDriver, NetDriver]:
    """A pair whose drivers got to ``stage``: 0 probed, 1 started, 2 after some traffic."""
    pair = make_pair()
    rng, console, net = (
        RngDriver(pair.drivers[0]),
        ConsoleDriver(pair.drivers[2]),
        NetDriver(pair.drivers[1], rx_buffers=4, tx_buffers=4, num=8),
    )
    if stage >= 1:
        rng.start()
        net.start()
        console.start()
    if stage >= 2:
        rng.get_entropy(64)
        console.write(b"hello\n")
        net.send(b"\xff" * 14 + b"frame")
        pair.pump()
    return pair, rng, console, net


@FUZZ
@given(stage=st.integers(0, 2), device=st.integers(0, 2), writes=WRITES, passes=st.integers(1, 3))
def test_whatever_the_driver_writes_the_monitor_never_raises(
    stage: int, device: int, writes: list[tuple[int, int]], passes: int
) -> None:
    pair, *_ = started(stage)
    window = pair.window(device)
    with cpu_watchdog():
        for offset, value in writes:
            window.write32(offset, value)
        for _ in range(passes):
            for d in pair.devices:
                d.notification()  # must not raise, whatever is in the window
                d.poll()
    d = pair.devices[device]
    if d.broken is not None:
        assert isinstance(d.broken, (MmioWindowError, RingError))
        assert MmioWindow(window).read(OFFSET["status"]) & VIRTIO_CONFIG_STATUS_NEEDS_RESET


@FUZZ
@given(
    stage=st.integers(1, 2),
    device=st.integers(0, 2),
    at=st.integers(0, 0x8000),
    junk=st.binary(min_size=1, max_size=64),
)
def test_whatever_the_driver_writes_into_its_rings_the_monitor_never_raises(
    stage: int, device: int, at: int, junk: bytes
) -> None:
    pair, *_ = started(stage)
    ring = pair.devices[device].queues[0].layout.base
    pair.shm.write_block(min(ring + at, pair.shm.size - len(junk)), junk)
    with cpu_watchdog():
        for d in pair.devices:
            d.notification()
            d.poll()
    broken = pair.devices[device].broken
    assert broken is None or isinstance(broken, (MmioWindowError, RingError))


@FUZZ
@given(writes=WRITES, junk_at=st.integers(0, WINDOW_SIZE - 4))
def test_whatever_the_monitor_writes_the_driver_raises_only_our_errors(
    writes: list[tuple[int, int]], junk_at: int
) -> None:
    pair = make_pair(("rng", "console"), init_drivers=False)
    pair.monitor_running[0] = False
    for index in (0, 1):
        window = pair.window(index)
        for offset, value in writes:
            window.write32(offset, value)
        window.write32(junk_at & ~3, writes[0][1] if writes else 0)
    driver = pair.drivers[0]
    with cpu_watchdog():
        try:
            driver.init()
            driver.handle_interrupt()
            driver.negotiate(0xFFFFFFFF)
            driver.setup_queue(0, 16, timeout=0)
        except OpenAMPError:
            pass


@FUZZ
@given(
    stage=st.integers(1, 2),
    target=st.sampled_from(["rng", "console", "net"]),
    at=st.integers(0, 0x3000),
    junk=st.binary(min_size=1, max_size=64),
)
def test_whatever_the_monitor_writes_into_the_rings_the_device_drivers_raise_only_our_errors(
    stage: int, target: str, at: int, junk: bytes
) -> None:
    pair, rng, console, net = started(stage)
    pair.monitor_running[0] = False  # the peer is the junk, not our monitor
    index = {"rng": 0, "net": 1, "console": 2}[target]
    ring = pair.drivers[index].queues[0].layout.base
    pair.shm.write_block(ring + at, junk)
    with cpu_watchdog():
        for call in (
            lambda: rng.get_entropy(16, timeout=0),
            lambda: console.read(timeout=0),
            console.poll,
            net.poll,
            lambda: net.receive(timeout=0),
            lambda: net.send(b"\x01" * 20, timeout=0),
            lambda: console.write(b"x", timeout=0),
        ):
            with contextlib.suppress(OpenAMPError):
                call()

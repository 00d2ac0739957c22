"""Wait strategies: wake on a kick when shared memory says work is ready, never lose a kick."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from openamp.errors import PeerGoneError, UsageError
from openamp.metal import (
    SHM_DIR,
    BlockingWait,
    Doorbell,
    EventFdDoorbell,
    InProcessDoorbell,
    PollingWait,
    SharedMemory,
    SpinThenBlockWait,
    SpinWait,
    UnixSocketDoorbell,
    UnixSocketServer,
    WaitStrategy,
    unique_name,
    wait_strategy,
)

STRATEGIES = {
    "block": BlockingWait(),
    "spin": SpinWait(),
    "spin-then-block": SpinThenBlockWait(spin_us=200.0),
    "poll": PollingWait(0.001),
}


@pytest.fixture(params=list(STRATEGIES))
def strategy(request: pytest.FixtureRequest) -> WaitStrategy:
    return STRATEGIES[request.param]


@pytest.fixture
def sock_path() -> Iterator[str]:
    path = f"/tmp/{unique_name('openamp-test')}.sock"
    try:
        yield path
    finally:
        if os.path.lexists(path):
            os.unlink(path)


@pytest.fixture(params=["unix-socket", "eventfd", "in-process"])
def pair(request: pytest.FixtureRequest, sock_path: str) -> Iterator[tuple[Doorbell, Doorbell]]:
    """(waiter's doorbell, peer's doorbell) of each kind, closed afterwards."""
    a: Doorbell
    b: Doorbell
    if request.param == "unix-socket":
        with UnixSocketServer(sock_path) as server:
            b = UnixSocketDoorbell.connect(sock_path, timeout=5.0)
            a = server.accept(timeout=5.0)
    elif request.param == "eventfd":
        a, b = EventFdDoorbell.pair()
    else:
        a, b = InProcessDoorbell.pair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


class Flag:
    """Stands in for a word in shared memory that the peer sets."""

    def __init__(self) -> None:
        self.value = False
        self.checks = 0

    def ready(self) -> bool:
        self.checks += 1
        return self.value


def _run_in_thread(fn: Callable[[], object]) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_returns_true_when_work_arrives_from_another_thread_with_a_kick(
    strategy: WaitStrategy, pair: tuple[Doorbell, Doorbell]
) -> None:
    waiter_bell, peer_bell = pair
    flag = Flag()

    def peer() -> None:
        time.sleep(0.02)
        flag.value = True
        peer_bell.kick()

    t = _run_in_thread(peer)
    try:
        assert strategy.wait(waiter_bell, flag.ready, 10.0) is True
    finally:
        t.join(10.0)


def test_returns_true_when_work_arrives_from_another_process(
    strategy: WaitStrategy, sock_path: str
) -> None:
    shm_name = unique_name("openamp-test")
    child_code = textwrap.dedent(
        f"""
        import sys
        from openamp.metal import SharedMemory, UnixSocketDoorbell
        with SharedMemory.open({shm_name!r}, create=False) as shm, \\
                UnixSocketDoorbell.connect({sock_path!r}, timeout=10.0) as bell:
            sys.stdin.readline()
            shm.region().write32(0x40, 1)
            bell.kick()
            sys.stdin.readline()
        """
    )
    with (
        SharedMemory.open(shm_name, 4096, unlink_on_close=True) as shm,
        UnixSocketServer(sock_path) as server,
    ):
        region = shm.region()
        child = subprocess.Popen(
            [sys.executable, "-c", child_code],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdin is not None
            with server.accept(timeout=10.0) as bell:
                child.stdin.write("go\n")
                child.stdin.flush()
                assert strategy.wait(bell, lambda: region.read32(0x40) == 1, 10.0) is True
                child.stdin.write("bye\n")
                child.stdin.flush()
                _, err = child.communicate(timeout=30)
                assert child.returncode == 0, err
        finally:
            if child.poll() is None:
                child.kill()
            child.communicate(timeout=30)
    assert not os.path.exists(os.path.join(SHM_DIR, shm_name))


def test_returns_false_at_the_timeout(
    strategy: WaitStrategy, pair: tuple[Doorbell, Doorbell]
) -> None:
    waiter_bell, _ = pair
    flag = Flag()
    t0 = time.monotonic()
    assert strategy.wait(waiter_bell, flag.ready, 0.05) is False
    assert time.monotonic() - t0 >= 0.05 - 1e-3  # did not give up early


def test_kicks_without_work_do_not_end_the_wait(
    strategy: WaitStrategy, pair: tuple[Doorbell, Doorbell]
) -> None:
    waiter_bell, peer_bell = pair
    peer_bell.kick()
    peer_bell.kick()
    assert strategy.wait(waiter_bell, Flag().ready, 0.03) is False


def test_timeout_zero_checks_once_without_blocking(
    strategy: WaitStrategy, pair: tuple[Doorbell, Doorbell]
) -> None:
    waiter_bell, _ = pair
    flag = Flag()
    assert strategy.wait(waiter_bell, flag.ready, 0) is False
    assert flag.checks == 1
    flag.value = True
    assert strategy.wait(waiter_bell, flag.ready, 0) is True


def test_negative_timeout_is_like_zero(strategy: WaitStrategy) -> None:
    a, _ = InProcessDoorbell.pair()
    flag = Flag()
    assert strategy.wait(a, flag.ready, -1.0) is False
    assert flag.checks == 1


def test_work_already_there_returns_at_once_even_without_a_kick(
    strategy: WaitStrategy, pair: tuple[Doorbell, Doorbell]
) -> None:
    waiter_bell, _ = pair
    assert strategy.wait(waiter_bell, lambda: True, None) is True


def test_a_kick_between_the_check_and_the_block_is_not_lost(
    strategy: WaitStrategy, pair: tuple[Doorbell, Doorbell]
) -> None:
    """The peer publishes work and kicks right after our check said "not ready"."""
    waiter_bell, peer_bell = pair
    published = False

    def ready() -> bool:
        nonlocal published
        if published:
            return True
        # this check saw nothing; the peer's work and kick land before we block
        published = True
        peer_bell.kick()
        return False

    result: list[bool] = []
    t = _run_in_thread(lambda: result.append(strategy.wait(waiter_bell, ready, None)))
    t.join(5.0)
    if t.is_alive():  # a lost kick: unblock the waiter so the test can fail cleanly
        peer_bell.kick()
        t.join(5.0)
        pytest.fail("the waiter slept through a kick that arrived after its check")
    assert result == [True]


def test_blocking_wait_does_not_busy_loop() -> None:
    a, _ = InProcessDoorbell.pair()
    flag = Flag()
    assert BlockingWait().wait(a, flag.ready, 0.1) is False
    assert flag.checks <= 3


def test_blocking_wait_raises_peer_gone_when_the_peer_left_and_no_work_is_there(
    pair: tuple[Doorbell, Doorbell],
) -> None:
    waiter_bell, peer_bell = pair
    peer_bell.close()
    if isinstance(waiter_bell, EventFdDoorbell):
        # an eventfd cannot tell that the peer went away: the wait just times out
        assert BlockingWait().wait(waiter_bell, Flag().ready, 0.02) is False
        return
    with pytest.raises(PeerGoneError):
        BlockingWait().wait(waiter_bell, Flag().ready, None)


@pytest.mark.parametrize("name", ["block", "spin", "spin-then-block"])
def test_work_the_peer_left_before_going_away_is_still_seen(name: str) -> None:
    a, b = UnixSocketDoorbell.pair()
    with a:
        flag = Flag()
        flag.value = True
        b.kick()
        b.close()
        for _ in range(3):  # the EOF is reported only once nothing is ready
            assert STRATEGIES[name].wait(a, flag.ready, 1.0) is True
        flag.value = False
        with pytest.raises(PeerGoneError):
            STRATEGIES[name].wait(a, flag.ready, 1.0)


@pytest.mark.parametrize("name", ["block", "spin", "spin-then-block"])
def test_draining_strategies_consume_pending_kicks(name: str) -> None:
    a, b = EventFdDoorbell.pair()
    with a, b:
        for _ in range(5):
            b.kick()
        assert STRATEGIES[name].wait(a, Flag().ready, 0.01) is False
        assert a.kicks_received == 5
        assert a.wait_readable(0) is False


def test_spin_wait_keeps_draining_while_it_spins() -> None:
    a, b = UnixSocketDoorbell.pair()
    with a, b:

        def ready() -> bool:
            b.kick()  # the peer keeps kicking about something this waiter does not check
            return False

        assert SpinWait(drain_interval_s=0.005).wait(a, ready, 0.05) is False
        # only the drains during the spin can have consumed them: the first drain
        # ran before any kick
        assert a.kicks_received > 0


def test_polling_wait_leaves_kicks_for_the_waiter_they_belong_to() -> None:
    a, b = InProcessDoorbell.pair()
    b.kick()
    assert PollingWait(0.001).wait(a, Flag().ready, 0.01) is False
    assert a.wait_readable(0) is True
    assert a.drain() == 1


def test_polling_wait_sees_work_nobody_kicks_for() -> None:
    a, _ = InProcessDoorbell.pair()
    flag = Flag()
    timer = threading.Timer(0.02, lambda: setattr(flag, "value", True))
    timer.start()
    try:
        assert PollingWait(0.001).wait(a, flag.ready, 10.0) is True
    finally:
        timer.join()


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("block", BlockingWait),
        ("spin", SpinWait),
        ("spin-then-block", SpinThenBlockWait),
        ("poll", PollingWait),
    ],
)
def test_factory_builds_each_strategy_by_name(name: str, cls: type[WaitStrategy]) -> None:
    s = wait_strategy(name)
    assert type(s) is cls
    assert s.name == name


def test_factory_passes_keyword_arguments() -> None:
    s = wait_strategy("spin-then-block", spin_us=20.0)
    assert isinstance(s, SpinThenBlockWait)
    assert s.spin_us == 20.0
    p = wait_strategy("poll", interval_s=0.5)
    assert isinstance(p, PollingWait)
    assert p.interval_s == 0.5


def test_factory_rejects_an_unknown_name_listing_the_valid_ones() -> None:
    with pytest.raises(UsageError) as info:
        wait_strategy("busy")
    message = str(info.value)
    for name in ("'block'", "'spin'", "'spin-then-block'", "'poll'"):
        assert name in message


@pytest.mark.parametrize(
    "make",
    [
        lambda: SpinWait(check_every=0),
        lambda: SpinWait(drain_interval_s=0),
        lambda: SpinThenBlockWait(spin_us=-1),
        lambda: PollingWait(0),
    ],
)
def test_bad_parameters_are_usage_errors(make: Callable[[], WaitStrategy]) -> None:
    with pytest.raises(UsageError):
        make()


@pytest.mark.parametrize("make", [BlockingWait, lambda: SpinThenBlockWait(spin_us=10)])
def test_arm_is_called_once_before_blocking_and_can_end_the_wait(make) -> None:
    a, _ = InProcessDoorbell.pair()
    calls = []

    def arm() -> bool:
        calls.append(1)
        return True  # "work arrived while notifications were off"

    assert make().wait(a, lambda: False, timeout=5.0, arm=arm) is True
    assert calls == [1]


def test_an_armed_wait_still_wakes_on_a_later_kick() -> None:
    a, b = InProcessDoorbell.pair()
    work: list[int] = []
    armed: list[int] = []
    t = threading.Thread(target=lambda: (time.sleep(0.05), work.append(1), b.kick()))
    t.start()
    try:
        ok = BlockingWait().wait(a, lambda: bool(work), 5.0, arm=lambda: bool(armed.append(1)))
    finally:
        t.join()
    assert ok and armed == [1]


@pytest.mark.parametrize("name", ["spin", "spin-then-block"])
def test_a_spinner_that_finds_work_at_once_makes_no_system_call(name: str) -> None:
    # A drain costs a system call; a reply that is already there must not pay it.
    a, b = UnixSocketDoorbell.pair()
    with a, b:
        b.kick()
        for _ in range(100):
            assert STRATEGIES[name].wait(a, lambda: True, 1.0) is True
        assert a.kicks_received == 0 and a.wait_readable(0) is True


def test_spinners_drain_about_once_per_interval_across_waits() -> None:
    a, b = UnixSocketDoorbell.pair()
    with a, b:
        real_drain = a.drain
        drains = 0

        def counting_drain() -> int:
            nonlocal drains
            drains += 1
            return real_drain()

        a.drain = counting_drain  # type: ignore[method-assign]
        interval = 0.005
        strategy = SpinWait(drain_interval_s=interval)
        calls = 2000
        t0 = time.monotonic()
        for _ in range(calls):
            answers = iter([False, True])  # work turns up on the second look
            b.kick()
            assert strategy.wait(a, answers.__next__, 1.0) is True
        elapsed = time.monotonic() - t0
        # at most one drain per interval (plus the first), however many waits ran, and
        # still some: the kicks do not pile up
        assert 1 <= drains <= 2 + elapsed / interval
        assert drains < calls // 10
        assert a.kicks_received > 0

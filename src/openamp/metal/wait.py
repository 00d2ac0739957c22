"""Wait strategies: how a blocked caller waits until work is ready in shared memory.

"Work is ready" is a predicate, ``ready()``, that looks at shared memory (a used ring
that moved, a status byte that changed).  A :class:`WaitStrategy` decides how to spend
the time until it turns true, given the :class:`~openamp.metal.doorbell.Doorbell` the
peer kicks:

* :class:`BlockingWait` sleeps in the kernel until a kick arrives (no CPU used);
* :class:`SpinWait` polls ``ready()`` in a tight loop (lowest latency, burns a core);
* :class:`SpinThenBlockWait` spins for a short window, then blocks (the default choice
  for request/response traffic: low latency without burning a core when idle);
* :class:`PollingWait` sleeps a fixed interval between checks and ignores the doorbell,
  for conditions the peer never kicks for (a tx buffer the peer returns silently).

The one rule that makes blocking race-free: drain the doorbell, *then* check
``ready()``, then block on :meth:`~openamp.metal.doorbell.Doorbell.wait_readable`.  A
kick that lands after the check is still pending when we block, so the block returns at
once.  Draining after the check would swallow that kick and sleep through the work.

When the peer has gone (:class:`~openamp.errors.PeerGoneError` from ``drain``), a
strategy still returns True if ``ready()`` is true, so work the peer left behind before
leaving is not lost; otherwise the error propagates.

Every ``timeout`` is in seconds, measured with :func:`time.monotonic`: ``None`` waits
forever, 0 (or a negative value) checks ``ready()`` once and does not block.  This
module must not know what ``ready()`` looks at; it only calls it.  Spinning in one
thread of a process starves the other threads of that process (the GIL), so spin only
where the peer runs in another process.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from typing import Any, ClassVar

from ..errors import PeerGoneError, UsageError
from .deadline import Deadline
from .doorbell import Doorbell

__all__ = [
    "BlockingWait",
    "DoorbellWaiter",
    "PollingWait",
    "SpinThenBlockWait",
    "SpinWait",
    "WaitStrategy",
    "wait_strategy",
    "wait_strategy_names",
]

Ready = Callable[[], bool]
Arm = Callable[[], bool]
"""Called once just before a strategy blocks: re-enables the peer's notifications and
returns True if work arrived while they were off (then the wait ends without blocking)."""


def _drain_then_ready(doorbell: Doorbell, ready: Ready) -> bool:
    """Consume pending kicks, then check ``ready()``.  Never the other way round."""
    try:
        doorbell.drain()
    except PeerGoneError:
        if ready():
            return True
        raise
    return ready()


def _block(doorbell: Doorbell, ready: Ready, deadline: Deadline, arm: Arm | None = None) -> bool:
    while True:
        if _drain_then_ready(doorbell, ready):
            return True
        if arm is not None:
            # The peer was told not to kick while we polled; ask for kicks again and
            # re-check, or a message published in between would sleep with us.
            if arm():
                return True
            arm = None
            continue
        remaining = deadline.remaining()
        if remaining == 0.0:
            return False
        doorbell.wait_readable(remaining)


def _check_spin(check_every: int, drain_interval_s: float) -> None:
    if check_every < 1:
        raise UsageError(f"check_every must be at least 1, got {check_every}")
    if drain_interval_s <= 0:
        raise UsageError(f"drain_interval_s must be positive, got {drain_interval_s}")


class _DrainSchedule:
    """When each doorbell is next due for a drain while spinning.

    A drain is a system call (about 1 µs, most of it the exception of an empty
    non-blocking read), and a spinner that drained at the start of every wait would pay
    it once per message.  Instead it drains a given doorbell about every ``interval_s``
    across calls, which still keeps a kicking peer's socket from filling up.  Blocking
    always drains first, so skipping a drain here never loses a kick.
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._next: dict[int, float] = {}

    def due(self, doorbell: Doorbell, now: float) -> bool:
        """Whether ``doorbell`` should be drained now; if so, schedule the next drain."""
        key = id(doorbell)
        if now < self._next.get(key, 0.0):
            return False
        if len(self._next) > 1024:  # ids of doorbells long gone
            self._next.clear()
        self._next[key] = now + self.interval_s
        return True


def _spin(
    doorbell: Doorbell,
    ready: Ready,
    until: float | None,
    check_every: int,
    drains: _DrainSchedule,
) -> bool:
    """Call ``ready()`` until it is true (True) or ``until`` passes (False).

    Reads the clock every ``check_every`` calls and drains the doorbell when ``drains``
    says it is due, so kicks do not pile up in the peer's socket while we spin.
    """
    if ready():
        return True
    while True:
        now = time.monotonic()
        if until is not None and now >= until:
            return False
        if drains.due(doorbell, now) and _drain_then_ready(doorbell, ready):
            return True
        for _ in range(check_every):
            if ready():
                return True


class WaitStrategy(abc.ABC):
    """How to wait until ``ready()`` is true.  Subclasses implement :meth:`wait`."""

    #: The name :func:`wait_strategy` knows this strategy by.
    name: ClassVar[str] = ""

    @abc.abstractmethod
    def wait(
        self, doorbell: Doorbell, ready: Ready, timeout: float | None, arm: Arm | None = None
    ) -> bool:
        """Return True as soon as ``ready()`` is true, False when ``timeout`` expires.

        ``timeout`` is in seconds; ``None`` waits forever, 0 (or less) checks ``ready()``
        once without blocking.  ``doorbell`` is the one the peer kicks when it has put
        work in shared memory; the strategy consumes its kicks.  ``arm``, if given, is
        called once before the strategy blocks (see :data:`Arm`); strategies that never
        block ignore it.  Raises :class:`~openamp.errors.PeerGoneError` if the peer went
        away and ``ready()`` is false.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BlockingWait(WaitStrategy):
    """Sleep in the kernel (``poll``/condition wait) until a kick; no CPU used while idle."""

    name = "block"

    def wait(
        self, doorbell: Doorbell, ready: Ready, timeout: float | None, arm: Arm | None = None
    ) -> bool:
        """See :meth:`WaitStrategy.wait` (``timeout`` in seconds, ``None`` forever)."""
        return _block(doorbell, ready, Deadline(timeout), arm)


class SpinWait(WaitStrategy):
    """Poll ``ready()`` in a tight loop, never sleeping.

    ``check_every`` is how many ``ready()`` calls run between two reads of the clock;
    ``drain_interval_s`` (seconds) how often pending kicks are drained meanwhile, so
    that a peer whose kicks block when our socket is full (the C peer's socket is
    blocking) never stalls.  With ``timeout=None`` this burns a core until the work
    arrives.

    The drain interval defaults to 10 ms, longer than the interpreter's switch interval
    (5 ms, :func:`sys.getswitchinterval`), on purpose: each drain is a system call that
    briefly releases the GIL, and a spinner that does so more often than every switch
    interval can starve the other threads of its process for seconds (each release
    restarts their wait for the GIL, and the spinner takes it back first).
    """

    name = "spin"

    def __init__(self, *, check_every: int = 64, drain_interval_s: float = 0.01) -> None:
        _check_spin(check_every, drain_interval_s)
        self.check_every = check_every
        self.drain_interval_s = drain_interval_s
        self._drains = _DrainSchedule(drain_interval_s)

    def wait(
        self, doorbell: Doorbell, ready: Ready, timeout: float | None, arm: Arm | None = None
    ) -> bool:
        """See :meth:`WaitStrategy.wait` (``timeout`` in seconds, ``None`` forever)."""
        return _spin(doorbell, ready, Deadline(timeout).at, self.check_every, self._drains)

    def __repr__(self) -> str:
        return f"SpinWait(check_every={self.check_every}, drain_interval_s={self.drain_interval_s})"


class SpinThenBlockWait(WaitStrategy):
    """Spin for ``spin_us`` microseconds, then block like :class:`BlockingWait`.

    A reply that comes back within the window is seen without a trip through the
    scheduler; an idle wait costs one window of CPU, then nothing.  ``check_every`` and
    ``drain_interval_s`` apply to the spin phase as in :class:`SpinWait`.
    """

    name = "spin-then-block"

    def __init__(
        self,
        spin_us: float = 50.0,
        *,
        check_every: int = 16,
        drain_interval_s: float = 0.01,
    ) -> None:
        if spin_us < 0:
            raise UsageError(f"spin_us must not be negative, got {spin_us}")
        _check_spin(check_every, drain_interval_s)
        self.spin_us = spin_us
        self.check_every = check_every
        self.drain_interval_s = drain_interval_s
        self._drains = _DrainSchedule(drain_interval_s)

    def wait(
        self, doorbell: Doorbell, ready: Ready, timeout: float | None, arm: Arm | None = None
    ) -> bool:
        """See :meth:`WaitStrategy.wait` (``timeout`` in seconds, ``None`` forever)."""
        deadline = Deadline(timeout)
        spin_end = time.monotonic() + self.spin_us / 1e6
        if deadline.at is not None:
            spin_end = min(spin_end, deadline.at)
        if _spin(doorbell, ready, spin_end, self.check_every, self._drains):
            return True
        if deadline.expired():
            return False
        return _block(doorbell, ready, deadline, arm)

    def __repr__(self) -> str:
        return f"SpinThenBlockWait(spin_us={self.spin_us})"


class PollingWait(WaitStrategy):
    """Check ``ready()`` every ``interval_s`` seconds, sleeping in between.

    For conditions the peer does not kick for, such as the C library returning a tx
    buffer without notifying (it polls the same way: ``metal_sleep_usec(1000)``).  The
    doorbell is neither drained nor waited on: its kicks are left for the waiter they
    are meant for.
    """

    name = "poll"

    def __init__(self, interval_s: float = 0.001) -> None:
        if interval_s <= 0:
            raise UsageError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = interval_s

    def wait(
        self, doorbell: Doorbell, ready: Ready, timeout: float | None, arm: Arm | None = None
    ) -> bool:
        """See :meth:`WaitStrategy.wait` (``timeout`` in seconds, ``None`` forever)."""
        deadline = Deadline(timeout)
        while True:
            if ready():
                return True
            remaining = deadline.remaining()
            if remaining is None:
                time.sleep(self.interval_s)
                continue
            if remaining == 0.0:
                return False
            time.sleep(min(self.interval_s, remaining))

    def __repr__(self) -> str:
        return f"PollingWait(interval_s={self.interval_s})"


_STRATEGIES: dict[str, Callable[..., WaitStrategy]] = {
    BlockingWait.name: BlockingWait,
    SpinWait.name: SpinWait,
    SpinThenBlockWait.name: SpinThenBlockWait,
    PollingWait.name: PollingWait,
}


def wait_strategy_names() -> list[str]:
    """The names :func:`wait_strategy` knows, the default (``spin-then-block``) first."""
    return sorted(_STRATEGIES, key=lambda n: (n != SpinThenBlockWait.name, n))


def wait_strategy(name: str, **kw: Any) -> WaitStrategy:
    """The strategy called ``name`` ('block', 'spin', 'spin-then-block', 'poll').

    Keyword arguments go to its constructor, e.g.
    ``wait_strategy('spin-then-block', spin_us=20)``.  An unknown name raises
    :class:`~openamp.errors.UsageError` listing the valid ones.
    """
    try:
        factory = _STRATEGIES[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(n) for n in _STRATEGIES)
        raise UsageError(f"unknown wait strategy {name!r}; valid names: {valid}") from None
    return factory(**kw)


class DoorbellWaiter:
    """A doorbell and a :class:`WaitStrategy` together: what the rpmsg layer waits with.

    It satisfies :class:`openamp.rpmsg.core.Waiter`: ``wait(ready, timeout, arm)``.
    ``arm`` is handed to the strategy, which calls it before it blocks; strategies that
    never block (``spin``, ``poll``) do not call it, and the caller re-arms when the
    wait ends (see :meth:`openamp.rpmsg.core.RpmsgDevice.wait_until`).
    """

    __slots__ = ("doorbell", "strategy")

    def __init__(self, doorbell: Doorbell, strategy: WaitStrategy) -> None:
        self.doorbell = doorbell
        self.strategy = strategy

    def wait(self, ready: Ready, timeout: float | None, arm: Arm | None = None) -> bool:
        """True once ``ready()`` holds, False after ``timeout`` seconds (None = forever).

        ``arm`` is called before blocking (see :data:`Arm`).
        """
        return self.strategy.wait(self.doorbell, ready, timeout, arm)

    async def wait_async(self, ready: Ready, timeout: float | None, arm: Arm | None = None) -> bool:
        """:meth:`wait` for asyncio: the event loop sleeps on the doorbell's descriptor.

        The same race-free order as the blocking strategies (drain, check, arm, then
        wait for a kick); it never spins, whatever the strategy, because spinning would
        stall every other task of the loop.  Needs a doorbell with a descriptor
        (:class:`~openamp.metal.doorbell.UnixSocketDoorbell`, ``EventFdDoorbell``).
        """
        from .aio import readable

        fd = self.doorbell.fileno()
        deadline = Deadline(timeout)
        while True:
            if _drain_then_ready(self.doorbell, ready):
                return True
            if arm is not None:
                if arm():
                    return True
                arm = None
                continue
            remaining = deadline.remaining()
            if remaining == 0.0:
                return False
            await readable(fd, remaining)

    def __repr__(self) -> str:
        return f"DoorbellWaiter({self.doorbell!r}, {self.strategy!r})"

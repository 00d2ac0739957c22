"""RPMsg core: endpoints, addresses, the name service and message dispatch.

This is the transport-neutral half (Linux ``rpmsg_core.c``, C ``rpmsg.c``).  It knows
endpoints and channels and nothing about virtio; a transport subclass
(:class:`openamp.rpmsg.virtio.RpmsgVirtioDevice`) moves the bytes.

Behaviour kept from the C library because peers depend on it:

* dynamic addresses are 1024..1151, handed out round-robin, so the first endpoint on
  each side is 0x400;
* an endpoint created with an unknown destination announces itself (NS create) when the
  name service is negotiated; destroying an endpoint at an address >= 1024 announces
  the destroy;
* an endpoint binds to the peer by the peer's NS create with the same name, or by the
  source address of the first message it receives;
* an NS destroy unbinds (destination back to ANY) and calls the unbind callbacks; it
  does not destroy the endpoint.

Where the C library is silently lossy we raise instead: a 129th dynamic address raises
:class:`AddressExhaustedError` (C hands out a duplicate), a payload over the buffer size
raises :class:`PayloadTooLargeError` (C truncates), and name-service records are
zero-padded (C leaks stack bytes).

Blocking: ``recv``/``send``/``wait_bound`` take ``timeout`` in seconds (``None`` waits
forever, ``0`` does not wait).  Waiting itself is done by a :class:`Waiter` handed in by
the platform; this module never sleeps.  A device and its endpoints are meant to be used
from one thread at a time.

asyncio: ``await ept.arecv()``, ``await ept.asend(data)`` and ``async for data in ept``
have the shape of the board adapter's endpoint.  They await the waiter's
``wait_async`` (which sleeps on the doorbell's descriptor, in :mod:`openamp.metal`);
this module only uses ``await`` and imports no event loop.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from ..errors import (
    AddressExhaustedError,
    AddressInUseError,
    DeviceGoneError,
    EndpointClosedError,
    EndpointNotBoundError,
    EndpointUnboundError,
    InvalidStateError,
    MessageError,
    NoBufferError,
    OpenAMPError,
    OpenAMPTimeoutError,
    PeerGoneError,
    SendTimeoutError,
    UsageError,
)
from ..metal.deadline import Deadline
from .events import EndpointEvent, NsEvent
from .wire import (
    RPMSG_ADDR_ANY,
    RPMSG_ADDR_BMP_SIZE,
    RPMSG_NS_EPT_ADDR,
    RPMSG_RESERVED_ADDRESSES,
    decode_ns,
    encode_name,
    encode_ns,
)

if TYPE_CHECKING:
    from .buffers import RxBuffer, TxBuffer
    from .events import EventHook

log = logging.getLogger("openamp.rpmsg")

SEND_TIMEOUT = 15.0
"""Default seconds a blocking send waits for a free buffer (the C library's 15 s)."""

QUEUE_LIMIT = 1024
"""Messages an endpoint without a callback copies out before back-pressure
(:attr:`Endpoint.queue_limit`): 1024 of 496 bytes is about 0.5 MB."""

SERVICE_LIMIT = 1024
"""Peer announcements :attr:`RpmsgDevice.services` remembers; more are dropped (with a
warning and :attr:`RpmsgDevice.services_dropped`), so a peer cannot grow it forever."""

EndpointCallback = Callable[["Endpoint", memoryview, int], object]
"""``callback(endpoint, payload, src)``; ``payload`` is valid only during the call.
Whatever it returns is ignored (so ``lambda ept, data, src: ept.send(data)`` fits)."""
UnbindCallback = Callable[["Endpoint"], object]
NsCallback = Callable[["RpmsgDevice", str, int], object]
"""``callback(device, service_name, remote_address)``; its return value is ignored."""


class Waiter(Protocol):
    """How a blocked call waits for shared memory to change (handed in by the platform).

    :class:`openamp.metal.wait.DoorbellWaiter` is the usual one.
    """

    def wait(
        self,
        ready: Callable[[], bool],
        timeout: float | None,
        arm: Callable[[], bool] | None = None,
    ) -> bool:
        """Return True once ``ready()`` is true, False after ``timeout`` seconds.

        ``None`` waits forever; ``0`` checks once.  ``arm``, if given, is called once
        before the waiter blocks: it turns the peer's notifications back on (they are
        off while the device polls) and returns True if work arrived meanwhile, which
        ends the wait.  A waiter that never blocks may ignore it; the device re-arms
        when the wait returns either way.
        """
        ...


class Gate(Protocol):
    """What a barred device waits on (handed in by the platform, see
    :meth:`RpmsgDevice.bar`)."""

    def wait(self, timeout: float | None = None) -> bool:
        """True once the caller may go on (the gate opened, or the caller is the thread
        that barred the device), False after ``timeout`` seconds."""
        ...


GATE_TIMEOUT = 30.0
"""Seconds a call waits at a barred device before it gives up (DeviceGoneError)."""


AsyncWait = Callable[
    [Callable[[], bool], "float | None", "Callable[[], bool] | None"], Awaitable[bool]
]
"""A waiter's ``wait_async(ready, timeout, arm)``: :meth:`Waiter.wait` for asyncio (optional;
:class:`openamp.metal.wait.DoorbellWaiter` has it)."""


class _Messages:
    """``async for data in ept``: each message's payload until the endpoint is destroyed."""

    __slots__ = ("ept",)

    def __init__(self, ept: Endpoint) -> None:
        self.ept = ept

    def __aiter__(self) -> _Messages:
        return self

    async def __anext__(self) -> bytes:
        if self.ept.closed and not self.ept.pending:
            raise StopAsyncIteration
        try:
            return await self.ept.arecv()
        except EndpointClosedError:
            raise StopAsyncIteration from None


class Endpoint:
    """A local rpmsg endpoint: an address, an optional service name and a peer address.

    Without a ``callback`` incoming messages queue up for :meth:`recv`; with one, the
    callback runs during the device's :meth:`RpmsgDevice.poll` and gets a zero-copy
    view of the payload (call :meth:`hold_rx_buffer` inside it to keep the buffer).

    The queue is bounded: :attr:`queue_limit` messages are copied out of shared memory;
    beyond that a message stays in its receive buffer, which is not given back to the
    peer until :meth:`recv` takes it.  A peer that keeps sending then runs out of
    buffers and its sends block (back-pressure, the virtio way): nothing is dropped and
    memory does not grow, but the device's other endpoints wait for the ring too, so
    read what you receive, or give the endpoint a callback.
    """

    __slots__ = (
        "_overflow",
        "_queue",
        "_room",
        "addr",
        "announced",
        "callback",
        "closed",
        "dest_addr",
        "device",
        "name",
        "on_unbind",
        "queue_limit",
        "unbound",
    )

    def __init__(
        self,
        device: RpmsgDevice,
        name: str,
        addr: int,
        dest_addr: int,
        callback: EndpointCallback | None,
        on_unbind: UnbindCallback | None,
    ) -> None:
        self.device = device
        self.name = name
        self.addr = addr
        self.dest_addr = dest_addr
        self.callback = callback
        self.on_unbind = on_unbind
        self.closed = False
        self.unbound = False
        """True once the peer announced the service's destruction (NS destroy)."""
        self.announced = False
        """Whether we announced this endpoint to the peer (NS create) when creating it."""
        self._queue: deque[tuple[bytes, int]] = deque()
        self.queue_limit = QUEUE_LIMIT
        """Messages copied into the queue before back-pressure (see the class doc)."""
        # messages past the bound, still in their receive buffers, in arrival order
        self._overflow: deque[tuple[RxBuffer, int]] = deque()
        # how long the copy queue may grow now: queue_limit, or 0 while messages wait
        # in _overflow (they came first); the transport checks only this
        self._room = QUEUE_LIMIT

    def __repr__(self) -> str:
        dest = "ANY" if self.dest_addr == RPMSG_ADDR_ANY else f"{self.dest_addr:#x}"
        return f"Endpoint({self.name!r}, addr={self.addr:#x}, dest={dest})"

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- state --------------------------------------------------------------------------

    @property
    def is_bound(self) -> bool:
        """Whether the peer's address is known (C ``is_rpmsg_ept_ready``)."""
        return not self.closed and self.dest_addr != RPMSG_ADDR_ANY

    def wait_bound(self, timeout: float | None = None) -> None:
        """Block until the peer is known; ``timeout`` in seconds, None = forever.

        Raises :class:`OpenAMPTimeoutError` if it is not bound in time.
        """
        self._check_open()
        if not self.device.wait_until(lambda: self.dest_addr != RPMSG_ADDR_ANY, timeout):
            raise OpenAMPTimeoutError(
                f"endpoint {self.name!r} at {self.addr:#x} was not bound by the peer "
                f"within {timeout} s (no name-service announcement or first message); "
                + self.device.describe_services(self.name)
            )

    # -- sending ------------------------------------------------------------------------

    def send(
        self, data: bytes | bytearray | memoryview, timeout: float | None = SEND_TIMEOUT
    ) -> int:
        """Send ``data`` to the bound peer; return the payload length.

        ``timeout``: seconds to wait for a free buffer (None = forever, 0 = don't wait).
        Raises :class:`EndpointNotBoundError` before binding,
        :class:`PayloadTooLargeError`, :class:`NoBufferError`/:class:`SendTimeoutError`.
        """
        dst = self.dest_addr
        if dst == RPMSG_ADDR_ANY:
            raise self._not_bound()
        return self.device.send_offchannel(self.addr, dst, data, timeout)

    def sendto(
        self, data: bytes | bytearray | memoryview, dst: int, timeout: float | None = SEND_TIMEOUT
    ) -> int:
        """Send ``data`` to address ``dst`` from this endpoint's address."""
        return self.device.send_offchannel(self.addr, dst, data, timeout)

    def send_offchannel(
        self,
        src: int,
        dst: int,
        data: bytes | bytearray | memoryview,
        timeout: float | None = SEND_TIMEOUT,
    ) -> int:
        """Send with explicit source and destination addresses."""
        return self.device.send_offchannel(src, dst, data, timeout)

    def send_many(
        self,
        payloads: Iterable[bytes | bytearray | memoryview],
        timeout: float | None = SEND_TIMEOUT,
    ) -> int:
        """Send every payload to the bound peer with one notification per batch.

        Much cheaper than a :meth:`send` per message when the peer polls: the peer is
        kicked only when we have to wait for a buffer and once at the end.  ``timeout``
        is per wait for a buffer.  Returns how many were sent.

        Like every blocking send it keeps receiving: messages that arrive meanwhile are
        delivered (callbacks run, queues fill) before it returns, and the peer is asked
        not to notify us for them while the batch is being filled.

        When it fails part way (no buffer within ``timeout``, a payload too large, the
        peer gone), the messages before the failure are sent, and the error's ``sent``
        attribute says how many: resume with ``payloads[exc.sent:]``.
        """
        dst = self.dest_addr
        if dst == RPMSG_ADDR_ANY:
            raise self._not_bound()
        return self.device.send_offchannel_many(self.addr, dst, payloads, timeout)

    def recv_many(self, max_count: int = 0, timeout: float | None = None) -> list[bytes]:
        """Every queued message (at most ``max_count``; 0 = all), waiting for the first.

        ``timeout`` is for the first message only; raises :class:`OpenAMPTimeoutError`
        if none arrives.
        """
        first = self.recv(timeout)
        q = self._queue
        out = [first]
        limit = max_count - 1 if max_count > 0 else len(q) + len(self._overflow)
        while q and limit > 0:
            out.append(q.popleft()[0])
            limit -= 1
        while self._overflow and limit > 0:
            out.append(self._from_overflow()[0])
            limit -= 1
        return out

    def trysend(self, data: bytes | bytearray | memoryview) -> int:
        """:meth:`send` without waiting: :class:`NoBufferError` if no buffer is free now."""
        return self.send(data, timeout=0)

    def trysendto(self, data: bytes | bytearray | memoryview, dst: int) -> int:
        """:meth:`sendto` without waiting."""
        return self.sendto(data, dst, timeout=0)

    def trysend_offchannel(self, src: int, dst: int, data: bytes | bytearray | memoryview) -> int:
        """:meth:`send_offchannel` without waiting."""
        return self.send_offchannel(src, dst, data, timeout=0)

    def get_tx_buffer(self, timeout: float | None = SEND_TIMEOUT) -> TxBuffer:
        """Reserve a transmit buffer to fill in place (zero-copy send).

        Fill ``buf.data[:n]`` and call ``buf.send(n)``, or ``buf.release()`` to give it
        back unsent.  Used as a context manager it is released if not sent.
        """
        self._check_open()
        return self.device.get_tx_buffer(self, timeout)

    @property
    def tx_capacity(self) -> int:
        """Largest payload one message can carry, in bytes."""
        return self.device.tx_capacity

    # -- receiving ----------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> bytes:
        """Next message's payload; ``timeout`` in seconds (None = forever, 0 = poll once).

        Raises :class:`OpenAMPTimeoutError` when nothing arrives in time.
        """
        return self.recv_from(timeout)[0]

    def recv_from(self, timeout: float | None = None) -> tuple[bytes, int]:
        """Next message as ``(payload, source address)``."""
        q = self._queue
        if q:
            return q.popleft()
        if self._overflow:
            return self._from_overflow()
        self._check_open()
        if self.callback is not None:
            raise UsageError(f"endpoint {self.name!r} delivers to a callback; recv() never returns")
        overflow = self._overflow
        if not self.device.wait_until(lambda: bool(q or overflow), timeout):
            raise OpenAMPTimeoutError(
                f"no message for endpoint {self.name!r} at {self.addr:#x} within {timeout} s"
            )
        return q.popleft() if q else self._from_overflow()

    def _from_overflow(self) -> tuple[bytes, int]:
        """The oldest message past the bound: copied out, its buffer given back."""
        held, src = self._overflow.popleft()
        data = bytes(held.data)
        if not self._overflow:
            self._room = self.queue_limit  # the copy queue may grow again
        if not self.device.closed:
            held.release()
        return data, src

    def _keep_overflow(self) -> None:
        """Transport, before a link reset: copy the messages past the bound out of their
        buffers (which the new link reuses) into the queue, in order."""
        while self._overflow:
            held, src = self._overflow.popleft()
            self._queue.append((bytes(held.data), src))
        self._room = self.queue_limit

    def _queue_held(self, held: RxBuffer, src: int) -> None:
        """Transport: keep a message past the bound in its receive buffer."""
        self._overflow.append((held, src))
        self._room = 0

    @property
    def pending(self) -> int:
        """Messages queued for :meth:`recv` (those past the bound included)."""
        return len(self._queue) + len(self._overflow)

    # -- asyncio ------------------------------------------------------------------------

    async def arecv(self, *, timeout: float | None = None) -> bytes:
        """:meth:`recv` for asyncio: the event loop waits on the doorbell meanwhile.

        ``timeout`` in seconds (None = forever); or wrap it in ``asyncio.wait_for``.
        Raises :class:`OpenAMPTimeoutError`, :class:`EndpointClosedError`.
        """
        return (await self.arecv_from(timeout=timeout))[0]

    async def arecv_from(self, *, timeout: float | None = None) -> tuple[bytes, int]:
        """:meth:`recv_from` for asyncio: ``(payload, source address)``."""
        q = self._queue
        if q:
            return q.popleft()
        if self._overflow:
            return self._from_overflow()
        self._check_open()
        if self.callback is not None:
            raise UsageError(
                f"endpoint {self.name!r} delivers to a callback; arecv() never returns"
            )
        overflow = self._overflow
        if not await self.device.wait_until_async(
            lambda: bool(q or overflow) or self.closed, timeout
        ):
            raise OpenAMPTimeoutError(
                f"no message for endpoint {self.name!r} at {self.addr:#x} within {timeout} s"
            )
        if not (q or overflow):
            self._check_open()
        return q.popleft() if q else self._from_overflow()

    async def asend(
        self, data: bytes | bytearray | memoryview, timeout: float | None = SEND_TIMEOUT
    ) -> int:
        """:meth:`send` for asyncio: waiting for a free buffer yields to the event loop.

        ``timeout``: seconds to wait for a buffer (None = forever, 0 = don't wait).
        Raises what :meth:`send` raises.
        """
        deadline = Deadline(timeout)
        delay = 0.0002
        while True:
            try:
                return self.send(data, timeout=0)
            except NoBufferError:
                remaining = deadline.remaining()
                if remaining == 0.0:
                    if timeout == 0:
                        raise
                    raise SendTimeoutError(
                        f"no transmit buffer became free within {timeout} s "
                        "(is the peer processing its receive queue?)"
                    ) from None
            # the peer returns buffers without always kicking: look again soon
            wait = delay if remaining is None else min(delay, remaining)
            await self.device.wait_until_async(lambda: False, wait)
            delay = min(delay * 2, 0.005)

    def __aiter__(self) -> _Messages:
        """``async for data in ept``: payloads as they arrive, until :meth:`destroy`."""
        return _Messages(self)

    def hold_rx_buffer(self) -> RxBuffer:
        """Inside the callback: keep the current receive buffer after the callback returns.

        The returned :class:`RxBuffer`'s ``data`` stays valid until its ``release()``; the
        buffer goes back to the peer only then (C ``rpmsg_hold_rx_buffer``).
        """
        return self.device.hold_rx_buffer(self)

    # -- teardown -----------------------------------------------------------------------

    def destroy(self) -> None:
        """Unregister; announce the destroy to the peer if the C rules say so.  Idempotent.

        Messages still queued are discarded; their receive buffers go back to the peer.
        """
        if not self.closed:
            self.device.destroy_endpoint(self)
        while self._overflow:
            held, _src = self._overflow.popleft()
            if not self.device.closed:
                held.release()

    def close(self) -> None:
        """The same as :meth:`destroy` (for ``contextlib.closing`` and friends)."""
        self.destroy()

    def _check_open(self) -> None:
        if self.closed:
            raise EndpointClosedError(f"endpoint {self.name!r} at {self.addr:#x} is destroyed")

    def _not_bound(self) -> OpenAMPError:
        """Why a send to the bound peer cannot go: whose fault it is decides the type."""
        self._check_open()
        if self.unbound:
            return EndpointUnboundError(
                f"the peer destroyed service {self.name!r} that endpoint {self.addr:#x} was "
                "bound to (NS destroy); wait_bound() for it to be announced again"
            )
        return EndpointNotBoundError(
            f"endpoint {self.name!r} at {self.addr:#x} has no peer address yet; "
            "wait_bound() or use sendto()"
        )


class RpmsgDevice:
    """Endpoints and name service over some transport (abstract; see the virtio one)."""

    def __init__(
        self,
        *,
        ns_bind_cb: NsCallback | None = None,
        ns_unbind_cb: NsCallback | None = None,
        waiter: Waiter | None = None,
    ) -> None:
        self.ns_bind_cb = ns_bind_cb
        """Called for a peer announcement that matches no local endpoint."""
        self.ns_unbind_cb = ns_unbind_cb
        """Called for every peer NS destroy, after the endpoint's own unbind callback."""
        self.waiter = waiter
        self.support_ns = False
        self.services: dict[str, int] = {}
        """Services the peer announced and has not destroyed: name -> remote address
        (at most :data:`SERVICE_LIMIT`)."""
        self.services_dropped = 0
        """Announcements of new names dropped because :attr:`services` was full."""
        self.closed = False
        self.gone_reason = ""
        """Why the device was closed, when its peer's departure closed it (see
        :meth:`peer_gone`); empty when open or closed by its user."""
        self.dropped = 0
        """Messages for unknown addresses that were dropped (as the C library does)."""
        self._endpoints: dict[int, Endpoint] = {}
        self._order: list[Endpoint] = []
        self._bitnext = 0
        self._gate: Gate | None = None
        self.generation = 0
        """How many times the link under this device was reset (see :meth:`bar`)."""
        self.capture: EventHook | None = None
        """Called with every observable event (:mod:`openamp.rpmsg.events`); None = off."""

    # -- to be provided by a transport ----------------------------------------------------

    @property
    def tx_capacity(self) -> int:
        """Largest payload of one message, in bytes."""
        raise NotImplementedError

    def send_offchannel(
        self, src: int, dst: int, data: bytes | bytearray | memoryview, timeout: float | None
    ) -> int:
        """Send ``data`` from ``src`` to ``dst``; see :meth:`Endpoint.send`."""
        raise NotImplementedError

    def send_offchannel_many(
        self,
        src: int,
        dst: int,
        payloads: Iterable[bytes | bytearray | memoryview],
        timeout: float | None,
    ) -> int:
        """Send several payloads; a transport may notify the peer once per batch.

        An error carries ``sent``: how many were sent before it (see
        :meth:`Endpoint.send_many`)."""
        sent = 0
        try:
            for data in payloads:
                self.send_offchannel(src, dst, data, timeout)
                sent += 1
        except OpenAMPError as exc:
            exc.sent = sent
            raise
        return sent

    def get_tx_buffer(self, ept: Endpoint, timeout: float | None) -> TxBuffer:
        """Reserve a transmit buffer for zero-copy send."""
        raise NotImplementedError

    def hold_rx_buffer(self, ept: Endpoint) -> RxBuffer:
        """Keep the receive buffer being dispatched to ``ept``."""
        raise NotImplementedError

    def poll(self) -> int:
        """Process every message the peer has sent; return how many."""
        raise NotImplementedError

    def has_rx_pending(self) -> bool:
        """Whether the peer has sent something :meth:`poll` has not processed."""
        raise NotImplementedError

    # -- another thread's turn ------------------------------------------------------------

    def bar(self, gate: Gate) -> None:
        """Make calls that enter the device from now on wait at ``gate`` until :meth:`unbar`.

        A device is used from one thread, but a platform may have to rebuild the link
        under it from another (the process driver restarting a crashed remote): it bars
        the device, waits until the user's thread is out of the device or parked in a
        wait (it looks at the thread's frames, see ``platform.machine.quiesced``),
        resets, and unbars.  Calls that arrive meanwhile wait up to
        :data:`GATE_TIMEOUT` seconds and then carry on, on the new link.  Nested calls
        (from a receive callback) never wait: their outer call is what the platform
        waits for.  Costs one attribute test per call when no gate is set.
        """
        self._gate = gate

    def unbar(self) -> None:
        """Let calls through again (see :meth:`bar`)."""
        self._gate = None

    def _pass_gate(self) -> None:
        gate = self._gate
        if gate is not None and not gate.wait(GATE_TIMEOUT):
            raise DeviceGoneError(
                f"the link was being rebuilt and did not come back within {GATE_TIMEOUT} s"
            )

    # -- waiting --------------------------------------------------------------------------

    def wait_until(self, condition: Callable[[], bool], timeout: float | None) -> bool:
        """Process incoming messages until ``condition()`` holds or ``timeout`` passes.

        ``timeout`` in seconds; None = forever; 0 = process what is pending, check once.
        """
        if condition():
            return True
        self.poll()
        if condition():
            return True
        waiter = self.waiter
        if waiter is None or timeout == 0:
            return False
        deadline = Deadline(timeout)
        pending = self.has_rx_pending
        met = False
        try:
            while not self.closed:  # a closed device never changes again
                remaining = deadline.remaining()
                if remaining == 0.0:
                    break
                # While we poll the ring the peer need not kick us; a waiter that blocks
                # re-arms the notification (and re-checks) first.
                self._quiet()
                waiter.wait(pending, remaining, self._arm)
                self.poll()
                if condition():
                    met = True
                    break
        finally:
            # Notifications are on whenever control is the caller's, whatever the
            # waiter did: someone may wait on the doorbell's descriptor next.
            slipped_in = self._rearm()
        if slipped_in and not met:
            self.poll()
            met = condition()
        return met

    async def wait_until_async(self, condition: Callable[[], bool], timeout: float | None) -> bool:
        """:meth:`wait_until` for asyncio: awaits the waiter's ``wait_async``.

        Raises :class:`InvalidStateError` if this device's waiter cannot wait under
        asyncio (the in-process pair's pump can; every doorbell with a descriptor can).
        """
        if condition():
            return True
        self.poll()
        if condition():
            return True
        if timeout == 0:
            return False
        wait_async: AsyncWait | None = getattr(self.waiter, "wait_async", None)
        if wait_async is None:
            raise InvalidStateError(
                f"this rpmsg device's waiter ({self.waiter!r}) cannot wait under asyncio"
            )
        deadline = Deadline(timeout)
        pending = self.has_rx_pending
        met = False
        try:
            while not self.closed:
                remaining = deadline.remaining()
                if remaining == 0.0:
                    break
                self._quiet()
                await wait_async(pending, remaining, self._arm)
                self.poll()
                if condition():
                    met = True
                    break
        finally:
            slipped_in = self._rearm()
        if slipped_in and not met:
            self.poll()
            met = condition()
        return met

    def _quiet(self) -> None:
        """Tell the peer not to notify us about new messages (we are polling)."""

    def _arm(self) -> bool:
        """Ask the peer to notify us again; True if messages are already pending."""
        return self.has_rx_pending()

    def _rearm(self) -> bool:
        """After a wait: notifications on again (unless closed or broken); True if
        messages came in while they were off."""
        return not self.closed and self._arm()

    # -- endpoints ------------------------------------------------------------------------

    def create_endpoint(
        self,
        name: str = "",
        src: int = RPMSG_ADDR_ANY,
        dst: int = RPMSG_ADDR_ANY,
        callback: EndpointCallback | None = None,
        on_unbind: UnbindCallback | None = None,
    ) -> Endpoint:
        """Create an endpoint (C ``rpmsg_create_ept``).

        ``src``: local address, or ANY for the next dynamic one (1024..1151).  ``dst``:
        the peer's address, or ANY to learn it from the peer; with ANY and a name the
        endpoint is announced to the peer (NS create), and bound at once if the peer
        already announced that name.  ``callback(ept, payload, src)``
        receives messages; without one they queue for :meth:`Endpoint.recv`.
        """
        if self._gate is not None:
            self._pass_gate()
        if self.closed:
            raise self.closed_error()
        if name:
            encode_name(name)
        if src == RPMSG_ADDR_ANY:
            addr = self._allocate_address()
        else:
            if not 0 <= src < RPMSG_ADDR_ANY:
                raise UsageError(f"endpoint address {src:#x} out of range")
            if src in self._endpoints:
                raise AddressInUseError(
                    f"address {src:#x} is already used by {self._endpoints[src]!r}"
                )
            addr = src
        ept = Endpoint(self, name, addr, dst, callback, on_unbind)
        self._endpoints[addr] = ept
        self._order.append(ept)
        if name and dst == RPMSG_ADDR_ANY and name in self.services:
            # The peer announced this service before the endpoint existed (the C library
            # hands that case to ns_bind_cb); bind now, and still announce ourselves.
            ept.dest_addr = self.services[name]
            self._bound(ept, "the peer's earlier announcement")
        if name and self.support_ns and dst == RPMSG_ADDR_ANY:
            try:
                self._announce(ept)
            except BaseException:
                self._unregister(ept)
                raise
        return ept

    def _announce(self, ept: Endpoint) -> None:
        self.send_offchannel(
            ept.addr, RPMSG_NS_EPT_ADDR, encode_ns(ept.name, ept.addr), SEND_TIMEOUT
        )
        ept.announced = True
        log.info("announced %r at %#x (NS create)", ept.name, ept.addr)
        if self.capture is not None:
            self.capture(NsEvent("tx", ept.name, ept.addr, False))
            self.capture(EndpointEvent("announce", ept.name, ept.addr, ept.dest_addr))

    def endpoint(self, name: str, timeout: float | None = None) -> Endpoint:
        """An endpoint bound to the peer's service ``name``, waiting for its announcement.

        Unlike :meth:`create_endpoint` this does not announce anything: the endpoint is
        created with the announced address as destination (as Linux's rpmsg_char does).
        """
        addr = self.wait_service(name, timeout)
        return self.create_endpoint(name, dst=addr)

    def wait_service(self, name: str, timeout: float | None = None) -> int:
        """Wait for the peer to announce ``name``; return its address."""
        if not self.wait_until(lambda: name in self.services, timeout):
            raise OpenAMPTimeoutError(
                f"the peer did not announce service {name!r} within {timeout} s "
                f"(announced so far: {sorted(self.services) or 'none'})"
            )
        return self.services[name]

    def describe_services(self, wanted: str = "") -> str:
        """What the peer announced, in words, for error messages about ``wanted``."""
        if not self.support_ns:
            return "the name service is not negotiated, so the peer announces nothing"
        if not self.services:
            return "the peer has announced no service"
        names = ", ".join(f"{n!r} at {a:#x}" for n, a in sorted(self.services.items()))
        if wanted and wanted not in self.services:
            return f"the peer announced {names}, not {wanted!r}"
        return f"the peer announced {names}"

    @property
    def endpoints(self) -> list[Endpoint]:
        """Local endpoints in creation order (the name-service endpoint included)."""
        return list(self._order)

    def get_endpoint(self, addr: int) -> Endpoint | None:
        """The local endpoint at ``addr``, if any."""
        return self._endpoints.get(addr)

    def destroy_endpoint(self, ept: Endpoint) -> None:
        """Destroy ``ept`` (C ``rpmsg_destroy_ept``); a best-effort NS destroy is sent."""
        if ept.closed:
            return
        if self._gate is not None:
            self._pass_gate()
        if (
            ept.name
            and self.support_ns
            and ept.addr >= RPMSG_RESERVED_ADDRESSES
            and not self.closed
        ):
            try:
                self.send_offchannel(
                    ept.addr, RPMSG_NS_EPT_ADDR, encode_ns(ept.name, ept.addr, destroy=True), 1.0
                )
                log.info("announced the destroy of %r at %#x (NS destroy)", ept.name, ept.addr)
                if self.capture is not None:
                    self.capture(NsEvent("tx", ept.name, ept.addr, True))
            except PeerGoneError:
                log.debug("not announcing the destroy of %r: the peer is gone", ept)
            except OpenAMPError as exc:
                log.warning("could not announce the destroy of %r: %s", ept, exc)
        self._unregister(ept)

    def close(self) -> None:
        """Destroy every endpoint (announcing as above) and refuse further use."""
        if self.closed:
            return
        for ept in list(self._order):
            self.destroy_endpoint(ept)
        self.closed = True

    def peer_gone(self, reason: str) -> None:
        """Close the device because its peer went away (called by the platform).

        Nothing is announced (nobody listens).  Later calls raise
        :class:`DeviceGoneError` (a :class:`PeerGoneError`) with ``reason``, not the
        :class:`InvalidStateError` of a device its user closed.
        """
        if self.closed:
            return
        self.gone_reason = reason
        for ept in list(self._order):
            self._unregister(ept)
        self.closed = True

    def closed_error(self) -> OpenAMPError:
        """The error a call on this closed device raises: whose fault decides the type."""
        if self.gone_reason:
            return DeviceGoneError(f"the rpmsg device is gone: {self.gone_reason}")
        return InvalidStateError("the rpmsg device is closed")

    def __enter__(self) -> RpmsgDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------

    def _allocate_address(self) -> int:
        used = self._endpoints
        for i in range(RPMSG_ADDR_BMP_SIZE):
            bit = (self._bitnext + i) % RPMSG_ADDR_BMP_SIZE
            addr = RPMSG_RESERVED_ADDRESSES + bit
            if addr not in used:
                self._bitnext = (bit + 1) % RPMSG_ADDR_BMP_SIZE
                return addr
        first = RPMSG_RESERVED_ADDRESSES
        last = first + RPMSG_ADDR_BMP_SIZE - 1
        raise AddressExhaustedError(
            f"all {RPMSG_ADDR_BMP_SIZE} dynamic addresses ({first:#x}..{last:#x}) are in use; "
            "destroy an endpoint or pass an explicit src"
        )

    def _unregister(self, ept: Endpoint) -> None:
        if self.capture is not None and not ept.closed:
            self.capture(EndpointEvent("destroy", ept.name, ept.addr, ept.dest_addr))
        ept.closed = True
        if self._endpoints.get(ept.addr) is ept:
            del self._endpoints[ept.addr]
        if ept in self._order:
            self._order.remove(ept)

    def _register_ns_endpoint(self) -> None:
        self.support_ns = True
        ns = Endpoint(self, "NS", RPMSG_NS_EPT_ADDR, RPMSG_NS_EPT_ADDR, self._ns_callback, None)
        self._endpoints[RPMSG_NS_EPT_ADDR] = ns
        self._order.append(ns)

    def _find_by_name(self, name: str, dest: int) -> Endpoint | None:
        # C rpmsg_get_endpoint(rdev, name, ANY, dest): first in list order whose name
        # matches and which is bound to dest or not bound at all.
        for ept in self._order:
            if ept.name == name and (ept.dest_addr == dest or ept.dest_addr == RPMSG_ADDR_ANY):
                return ept
        return None

    def _ns_callback(self, _ept: Endpoint, data: memoryview, src: int) -> None:
        try:
            msg = decode_ns(data)
        except MessageError as exc:
            log.warning("ignoring a name-service message from %#x: %s", src, exc)
            return
        target = self._find_by_name(msg.name, msg.addr)
        capture = self.capture
        if capture is not None:
            capture(NsEvent("rx", msg.name, msg.addr, msg.destroy))
        if msg.destroy:
            log.info("the peer destroyed %r at %#x (NS destroy)", msg.name, msg.addr)
            if self.services.get(msg.name) == msg.addr:
                del self.services[msg.name]
            if target is not None:
                target.dest_addr = RPMSG_ADDR_ANY
                target.unbound = True
                log.info("endpoint %r at %#x unbound", target.name, target.addr)
                if capture is not None:
                    capture(EndpointEvent("unbind", target.name, target.addr, msg.addr))
                if target.on_unbind is not None:
                    target.on_unbind(target)
            if self.ns_unbind_cb is not None:
                self.ns_unbind_cb(self, msg.name, msg.addr)
        else:
            if msg.name not in self.services and len(self.services) >= SERVICE_LIMIT:
                # a peer announcing without end must not grow our memory without end
                self.services_dropped += 1
                log.warning(
                    "dropping the announcement of %r from %#x: %d services known already",
                    msg.name,
                    msg.addr,
                    SERVICE_LIMIT,
                )
                return
            log.info("the peer announced %r at %#x (NS create)", msg.name, msg.addr)
            self.services[msg.name] = msg.addr
            if target is not None:
                target.dest_addr = msg.addr
                target.unbound = False
                self._bound(target, "its announcement")
            elif self.ns_bind_cb is not None:
                self.ns_bind_cb(self, msg.name, msg.addr)
            else:
                log.info("no local endpoint is called %r yet", msg.name)

    def _bound(self, ept: Endpoint, how: str) -> None:
        """Log and record that ``ept`` learnt its peer's address (``how``: by what)."""
        log.info(
            "endpoint %r at %#x bound to the peer at %#x (by %s)",
            ept.name,
            ept.addr,
            ept.dest_addr,
            how,
        )
        if self.capture is not None:
            self.capture(EndpointEvent("bind", ept.name, ept.addr, ept.dest_addr))

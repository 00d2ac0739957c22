"""RPMsg over virtio (C ``rpmsg_virtio.c``, Linux ``virtio_rpmsg_bus.c``), both roles.

Vring 0 carries device -> driver messages and vring 1 driver -> device, whichever side we
play; so the driver receives on vring 0 and the device on vring 1.  The driver owns the
buffers: it posts every receive buffer (zeroed) before it sets DRIVER_OK, and takes
transmit buffers lazily from the pool after them.  The device uses whatever buffers the
driver posted and learns their sizes from the descriptors.

Byte compatibility with the C library (see ``tests/conformance/``):

* a message is a 16-byte header (``reserved = 0``, ``flags = 0``) and its payload in one
  buffer; descriptor and used lengths are always the whole buffer size;
* the receiver writes its own buffer index into the header's ``reserved`` field (the
  used-ring slot on the driver, the descriptor head on the device);
* transmit-complete notifications are suppressed on both sides (driver sets
  ``VRING_AVAIL_F_NO_INTERRUPT`` on vring 1, device ``VRING_USED_F_NO_NOTIFY`` on
  vring 0); new messages always notify;
* a driver reclaims a sent buffer only when it needs a new one, and takes a new pool
  buffer only if none came back;
* the driver writes ``gfeatures = dfeatures & ours`` and status ``DRIVER_OK`` (0x04)
  and notifies the device's notify id after each.

While a sender waits for a free buffer it re-enables the notification it had suppressed
(as Linux does), so it can block on the doorbell instead of polling, and it keeps
processing incoming messages so two flooding peers cannot deadlock.

The state of a device, and the rules that keep it
-------------------------------------------------
Everything that changes it lives in this file, for both roles; the role is decided once,
in :meth:`RpmsgVirtioDevice._bind_role`, which picks the role's ring operations
(publish transmit buffers, commit one, take received ones, give them back) so that the
code below reads the same for driver and device.  Five pieces of per-device state decide
what a call may do:

* ``_dispatching`` is true exactly while :meth:`poll` delivers a batch.  Callbacks run
  only then; a nested :meth:`poll` returns 0; sends made by callbacks are *staged*.
* ``_staged`` holds transmit buffers filled by callbacks and not yet shown to the peer.
  They are published :data:`STAGE_TX` at a time, before any other transmit buffer (so
  the order on the wire is the order of the sends), and at the end of the batch.
* ``_tx_kick_pending`` is true when something was published without a kick; the kick
  goes out when the poll ends (one per batch) or before a sender starts waiting.
* ``_current`` is the message a callback is running for (offset, size, index, view,
  src, dst), None outside callbacks; ``_held`` is the :class:`RxBuffer` a callback
  asked to keep, None outside callbacks and once the poll took it over.
* ``_reclaimer`` holds free transmit buffers that are not in the ring: given back
  unsent, or (device) taken from the ring ahead of use.  It is used first.

The per-message path (:meth:`RpmsgVirtioDevice.send_offchannel`, the delivery loop of
:meth:`_drain_rx`) is inlined on purpose (docs/performance.md); its readable twin is
``tests/reference_rpmsg.py``, and a test proves the two leave the same bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from ..errors import (
    DeviceGoneError,
    EndpointNotBoundError,
    InvalidStateError,
    MessageError,
    NoBufferError,
    OpenAMPError,
    OpenAMPTimeoutError,
    PayloadTooLargeError,
    ResourceTableError,
    RingError,
    SendTimeoutError,
    TransportStoppedError,
    UsageError,
)
from ..metal import sigbus
from ..metal.deadline import Deadline
from ..metal.io import IoRegion
from ..virtio.ring import (
    U32,
    VIRTIO_CONFIG_STATUS_DRIVER_OK,
    VIRTIO_CONFIG_STATUS_NEEDS_RESET,
    VIRTIO_ID_RPMSG,
    VIRTIO_RING_F_EVENT_IDX,
)
from ..virtio.transport import VirtioTransport
from ..virtio.virtqueue import Buf, Role, Virtqueue
from .buffers import RxBuffer, TxBuffer
from .core import Endpoint, NsCallback, RpmsgDevice, Waiter
from .events import (
    ConfigEvent,
    ErrorEvent,
    EventHook,
    FeaturesEvent,
    KickEvent,
    LinkEvent,
    MessageEvent,
    StatusEvent,
    TraceHook,
    VringLocation,
    describe_features,
    describe_status,
    messages_only,
    tee,
)
from .wire import (
    RPMSG_ADDR_ANY,
    RPMSG_BUFFER_SIZE,
    RPMSG_HDR,
    RPMSG_HDR_SIZE,
    RPMSG_NS_EPT_ADDR,
    VIRTIO_RPMSG_F_BUFSZ,
    VIRTIO_RPMSG_F_NS,
    RpmsgConfigSpace,
)

log = logging.getLogger("openamp.rpmsg")

_HDR_PACK = RPMSG_HDR.pack_into
_HDR_UNPACK = RPMSG_HDR.unpack_from
_U32_PACK = U32.pack_into

DEFAULT_FEATURES = (
    (1 << VIRTIO_RPMSG_F_NS) | (1 << VIRTIO_RPMSG_F_BUFSZ) | (1 << VIRTIO_RING_F_EVENT_IDX)
)
"""What a pyopenamp driver accepts when the device offers it (the device's offer decides)."""

STAGE_TX = 16
"""Device: a callback's sends are published this many at a time (and when its poll ends)."""


def _return_device_rx(rvq: Virtqueue) -> Callable[[list[Buf], list[int]], None]:
    """Device: give a received batch back in the used ring, except the held positions."""
    put = rvq.put_used

    def give_back(batch: list[Buf], held: list[int]) -> None:
        if held:
            kept = set(held)
            batch = [buf for i, buf in enumerate(batch) if i not in kept]
        if batch:
            put(batch)

    return give_back


class ShmPool:
    """The driver's buffer pool: a bump allocator that never frees (C ``rpmsg_virtio_shm_pool``)."""

    def __init__(self, base: int, size: int) -> None:
        if base < 0 or size <= 0:
            raise UsageError(f"shared buffer pool [{base:#x}, +{size:#x}) is empty or negative")
        self.base = base
        self.size = size
        self.avail = size

    def get_buffer(self, size: int) -> int | None:
        """Offset of a new ``size``-byte buffer, or None when the pool is used up."""
        if size <= 0 or self.avail < size:
            return None
        offset = self.base + self.size - self.avail
        self.avail -= size
        return offset


@dataclass(frozen=True)
class RpmsgVirtioConfig:
    """Buffer sizes per direction (driver role; a device takes sizes from descriptors)."""

    h2r_buf_size: int = RPMSG_BUFFER_SIZE
    """Host (driver) to remote buffers: the driver's transmit buffers, bytes."""
    r2h_buf_size: int = RPMSG_BUFFER_SIZE
    """Remote to host buffers: the driver's receive buffers, bytes."""

    def __post_init__(self) -> None:
        for name in ("h2r_buf_size", "r2h_buf_size"):
            v = getattr(self, name)
            if not RPMSG_HDR_SIZE < v <= 0x10000 + RPMSG_HDR_SIZE:
                raise UsageError(f"{name} must be 17..65552 bytes, got {v}")


# MessageEvent and TraceHook live in .events (the one event model); they are imported
# above and stay importable from here, as before.


class RpmsgVirtioDevice(RpmsgDevice):
    """An rpmsg device on a virtio transport, as driver (host) or device (remote).

    ``shm`` is the region holding the message buffers (C ``shm_io``); the driver
    allocates them from ``pool``.  Given to the device, ``pool`` is where the driver's
    buffers must lie: a descriptor pointing anywhere else (the resource table, a ring)
    is the driver's :class:`RingError`, never a write there; without it the device
    accepts any buffer inside ``shm``.  ``waiter`` makes blocking calls possible (without one
    every call is non-blocking).  The device role waits up to ``ready_timeout`` seconds
    for the driver's DRIVER_OK (None = forever).  ``features`` are the feature bits we
    support (driver: accepted from the device's offer; device: ignored).

    Buffer sizes: the driver uses ``config`` unless the device offers
    ``VIRTIO_RPMSG_F_BUFSZ``; then the sizes in the device's config space win (the
    remote decides, as with Linux).  The device always learns them from the descriptors.

    ``capture`` is called with every observable event of the link (messages both ways,
    name service, status and features, kicks, errors; :mod:`openamp.rpmsg.events`),
    e.g. an ``openamp.tools.capture`` writer; ``trace`` is the older message-only hook
    (it gets the :class:`MessageEvent` s).  Both may be None (off, the default).
    """

    def __init__(
        self,
        transport: VirtioTransport,
        *,
        shm: IoRegion,
        pool: ShmPool | None = None,
        config: RpmsgVirtioConfig | None = None,
        waiter: Waiter | None = None,
        ns_bind_cb: NsCallback | None = None,
        ns_unbind_cb: NsCallback | None = None,
        features: int = DEFAULT_FEATURES,
        ready_timeout: float | None = 10.0,
        trace: TraceHook | None = None,
        capture: EventHook | None = None,
    ) -> None:
        super().__init__(ns_bind_cb=ns_bind_cb, ns_unbind_cb=ns_unbind_cb, waiter=waiter)
        if transport.device_id != VIRTIO_ID_RPMSG:
            raise ResourceTableError(f"virtio device id {transport.device_id} is not rpmsg (7)")
        if transport.num_vrings < 2:
            raise ResourceTableError(
                f"an rpmsg device needs 2 vrings, the vdev has {transport.num_vrings}"
            )
        self.transport = transport
        self._guard: Callable[[], None] | None = getattr(transport, "check_memory", None)
        """A transport whose memory a peer can take away (vhost-user: the frontend can
        shrink its memory file) names that cause when a ring reads as corrupt; None: no
        such transport.  Its regular check runs on every wake-up, in the doorbell."""
        self.role = transport.role
        self.shm = shm
        self.capture = tee(capture, None if trace is None else messages_only(trace))
        self._mem = shm.mem
        self._driver = self.role is Role.DRIVER
        self._dispatching = False
        self._tx_kick_pending = False
        # Device: buffers that callbacks filled during this poll and that the driver has
        # not been shown yet.  Publishing echoes a few at a time instead of one by one
        # saves most of the cache-line traffic on used.idx between the two cores while
        # the driver can still start on the first ones (docs/performance.md).  The used
        # ring ends up exactly as with one add_used() per message.
        self._staged: list[Buf] = []
        self._current: tuple[int, int, int, memoryview, int, int] | None = None
        self._held: RxBuffer | None = None
        self._reclaimer: list[Buf] = []
        self._tx_max = 0
        # Set after the per-message state: set earlier in __init__ (which changes the
        # instance's attribute layout), they made a round trip cost 0.6 % more
        # instructions (callgrind, docs/performance.md).
        self._capture_hook = capture
        self._trace: TraceHook | None = trace
        self.config = config or RpmsgVirtioConfig()
        self._buffer_pool = pool
        if self._driver:
            if pool is None:
                raise UsageError("the driver role needs a shared buffer pool")
            self.pool: ShmPool | None = pool
            self._wanted_features = features
            self._rx_size = self.config.r2h_buf_size
            self._tx_size = self.config.h2r_buf_size
            self._driver_init()
        else:
            self.pool = None
            self._wait_driver_ok(ready_timeout)
            self.features = transport.device_features() & transport.driver_features()
            self._report_device_setup()
            vq0, vq1 = self._make_queues()
            vq0.event_idx = vq1.event_idx = bool(self.features & (1 << VIRTIO_RING_F_EVENT_IDX))
            vq0.attach_device(transport.vring(0).base)
            vq1.attach_device(transport.vring(1).base)
            self._tvq, self._rvq = vq0, vq1
            self._rx_size = 0
            self._tx_size = 0
            self._bind_role()
            self._tvq.disable_cb()
            if self.features & (1 << VIRTIO_RPMSG_F_NS):
                self._register_ns_endpoint()
            self._report_link()

    def __repr__(self) -> str:
        return f"RpmsgVirtioDevice(role={self.role.name}, endpoints={len(self._endpoints)})"

    # -- set-up ---------------------------------------------------------------------------

    def _driver_init(self) -> None:
        """Driver set-up in the C library's order (features, rings, rx buffers, DRIVER_OK)."""
        transport, pool, shm = self.transport, self.pool, self.shm
        assert pool is not None
        offered = transport.device_features()
        self.features = offered & self._wanted_features
        if self.features & (1 << VIRTIO_RPMSG_F_BUFSZ):
            self._rx_size, self._tx_size = self._sizes_from_config()
        transport.set_driver_features(self.features)
        log.info(
            "driver: the device offers features %s, we accept %s",
            describe_features(offered),
            describe_features(self.features),
        )
        if self.capture is not None:
            self.capture(FeaturesEvent(offered, self.features, "write"))
        vq0, vq1 = self._make_queues()
        vq0.event_idx = vq1.event_idx = bool(self.features & (1 << VIRTIO_RING_F_EVENT_IDX))
        vq0.init_driver_ring()
        vq1.init_driver_ring()
        self._tx_allocated = 0
        self._rvq, self._tvq = vq0, vq1
        self._bind_role()
        self._tvq.disable_cb()
        rx_size = self._rx_size
        for _ in range(self._rvq.num):
            off = pool.get_buffer(rx_size)
            if off is None:
                raise UsageError(
                    f"the buffer pool ({pool.size:#x} bytes) cannot hold "
                    f"{self._rvq.num} receive buffers of {rx_size} bytes"
                )
            shm.fill(off, rx_size)
            self._rvq.add_buffer(off, rx_size, True)
        if pool.avail < self._tx_size:
            raise UsageError(
                f"the buffer pool ({pool.size:#x} bytes) has no room for a transmit buffer of "
                f"{self._tx_size} bytes after {self._rvq.num} receive buffers of {rx_size}"
            )
        if self.features & (1 << VIRTIO_RPMSG_F_NS) and RPMSG_NS_EPT_ADDR not in self._endpoints:
            self._register_ns_endpoint()
        transport.set_status(VIRTIO_CONFIG_STATUS_DRIVER_OK)
        log.info(
            "driver: %d receive buffers of %d bytes posted, transmit buffers of %d bytes; "
            "status %s written",
            self._rvq.num,
            rx_size,
            self._tx_size,
            describe_status(VIRTIO_CONFIG_STATUS_DRIVER_OK),
        )
        if self.capture is not None:
            self.capture(StatusEvent(VIRTIO_CONFIG_STATUS_DRIVER_OK, "write"))
            self._report_link()

    def _report_device_setup(self) -> None:
        """Device: log and record the status and features the driver left us."""
        transport = self.transport
        status = transport.get_status()
        log.info(
            "device: the driver set status %s and accepted features %s (we offer %s)",
            describe_status(status),
            describe_features(transport.driver_features()),
            describe_features(transport.device_features()),
        )
        if self.capture is not None:
            self.capture(StatusEvent(status, "seen"))
            self.capture(
                FeaturesEvent(transport.device_features(), transport.driver_features(), "seen")
            )

    def _report_link(self) -> None:
        """Record where the link lives (a :class:`LinkEvent`), once it is up."""
        if self.capture is None:
            return
        vrings = []
        for i in (0, 1):
            info = self.transport.vring(i)
            lay = info.layout
            vrings.append(VringLocation(i, lay.pa, lay.num, lay.align, info.notifyid))
        self.capture(
            LinkEvent(
                "driver" if self._driver else "device",
                self.features,
                self._rx_size,
                self._tx_size,
                tuple(vrings),
            )
        )

    @property
    def trace(self) -> TraceHook | None:
        """The message-only hook (``trace=``); setting it keeps ``capture=``'s hook.

        New code should use :attr:`capture` (or :meth:`set_capture`), which sees every
        event; this one is kept for code written against the message hook.
        """
        return self._trace

    @trace.setter
    def trace(self, hook: TraceHook | None) -> None:
        self._trace = hook
        self.set_capture(self._capture_hook)

    def set_capture(self, hook: EventHook | None) -> None:
        """Start (or stop, with None) recording this device's events with ``hook``.

        Unlike assigning :attr:`capture`, this also records the kicks we send from now
        on (they are counted at the rings' notify callables) and starts with a
        :class:`LinkEvent`.  A ``trace`` hook keeps getting the messages.
        """
        self._capture_hook = hook
        trace = self._trace
        self.capture = tee(hook, None if trace is None else messages_only(trace))
        if hasattr(self, "_tvq"):
            for vq in (self._rvq, self._tvq):
                vq.notify = self._notifier(vq.index)
            self._report_link()  # a late recorder learns who we are on the link

    def _bind_role(self) -> None:
        """Pick the role's ring operations once (the only role branch after set-up).

        Called when the queues exist and the buffer sizes are known: at creation and
        after :meth:`reset`.
        """
        tvq, rvq = self._tvq, self._rvq
        if self._driver:
            self._publish_tx: Callable[[list[Buf]], None] = partial(
                tvq.post, length=self._tx_size, writable=False
            )
            self._commit_tx: Callable[[int, int, int], None] = self._commit_tx_driver
            self._give_back_rx: Callable[[list[Buf]], None] = partial(
                rvq.post, length=self._rx_size, writable=True
            )
            self._take_rx: Callable[[], list[Buf]] = partial(rvq.take_used, keep=True)
            self._return_rx: Callable[[list[Buf], list[int]], None] = self._recycle_rx
            self._get_tx_buffer: Callable[[bool], Buf | None] = self._driver_tx_buffer
            self._tx_max = self._tx_size - RPMSG_HDR_SIZE
        else:
            self._publish_tx = tvq.put_used
            self._commit_tx = self._commit_tx_device
            self._give_back_rx = rvq.put_used
            self._take_rx = rvq.take_avail
            self._return_rx = _return_device_rx(rvq)
            self._get_tx_buffer = self._device_tx_buffer
            self._tx_max = 0x7FFFFFFF  # the device learns each buffer's size from the ring

    def _sizes_from_config(self) -> tuple[int, int]:
        """``(rx, tx)`` buffer sizes the device's config space gives (``F_BUFSZ``).

        The remote decides, as with Linux: its ``txbuf_size`` is our receive size, its
        ``rxbuf_size`` our transmit size.  The config space is the peer's word, so it is
        checked like any other untrusted input."""
        try:
            cfg = RpmsgConfigSpace.parse(self.transport.config_space())
        except MessageError as exc:
            raise ResourceTableError(f"VIRTIO_RPMSG_F_BUFSZ offered, but {exc}") from None
        largest = 0x10000 + RPMSG_HDR_SIZE
        if cfg.txbuf_size > largest or cfg.rxbuf_size > largest:
            raise ResourceTableError(
                f"the remote asks for {cfg.txbuf_size}/{cfg.rxbuf_size}-byte buffers "
                f"(tx/rx); pyopenamp supports up to {largest}"
            )
        log.info(
            "driver: the config space gives buffer sizes %d (remote -> host) and %d "
            "(host -> remote)",
            cfg.txbuf_size,
            cfg.rxbuf_size,
        )
        if self.capture is not None:
            self.capture(ConfigEvent(bytes(self.transport.config_space())))
        return cfg.txbuf_size, cfg.rxbuf_size

    def reset(self, waiter: Waiter | None = None) -> None:
        """Driver: bring the link up again after the remote restarted, keeping endpoints.

        The rings and buffers start afresh (as after a Linux remoteproc recovery);
        endpoints we had announced become unbound (a send raises
        :class:`~openamp.errors.EndpointUnboundError` until the remote re-announces the
        service; ``wait_bound(timeout)`` waits for that) and are announced again.
        Messages already queued for :meth:`Endpoint.recv` stay; buffer handles from
        before (held or reserved) belong to no ring any more and are forgotten.
        ``waiter`` replaces the old one (a restarted remote comes with a new doorbell).
        Called by the platform, from another thread too, with the device barred
        (:meth:`bar`) while the user's thread is out of it.
        """
        if not self._driver or self.pool is None:
            raise UsageError("only the driver side can reset the link")
        if waiter is not None:
            self.waiter = waiter
        self.generation += 1
        self.closed = False
        self.gone_reason = ""
        self.services.clear()
        self._reclaimer.clear()
        self._staged.clear()
        self._tx_kick_pending = False
        self._dispatching = False
        self._current = self._held = None
        self.pool.avail = self.pool.size
        for ept in self._order:
            ept._keep_overflow()  # copies, before the new link reuses their buffers
        self._driver_init()
        for ept in self._order:
            if ept.announced:
                ept.dest_addr = RPMSG_ADDR_ANY
                ept.unbound = True
                self._announce(ept)

    def _make_queues(self) -> tuple[Virtqueue, Virtqueue]:
        names = ("rx_vq", "tx_vq") if self._driver else ("tx_vq", "rx_vq")
        pool = self._buffer_pool
        window = None if self._driver or pool is None else (pool.base, pool.size)
        queues = []
        for i in (0, 1):
            info = self.transport.vring(i)
            queues.append(
                Virtqueue(
                    info.region,
                    info.layout,
                    role=self.role,
                    buf_io=self.shm,
                    notify=self._notifier(i),
                    index=i,
                    name=f"vring{i} ({names[i]})",
                    # the device confines the driver's buffers to the pool, if it knows it
                    buffers=window,
                )
            )
        return queues[0], queues[1]

    def _notifier(self, index: int) -> Callable[[], None]:
        """The notify callable of vring ``index``: the transport's, recording each kick
        when capture is on (decided here, so that the kick path costs nothing when off)."""
        notifyid = self.transport.vring(index).notifyid
        notify = partial(self.transport.notify, notifyid)
        capture = self.capture
        if capture is None:
            return notify

        def notify_recorded() -> None:
            capture(KickEvent(index, notifyid))
            notify()

        return notify_recorded

    def _wait_driver_ok(self, timeout: float | None) -> None:
        transport = self.transport

        def ready() -> bool:
            status = transport.get_status()
            if status & VIRTIO_CONFIG_STATUS_NEEDS_RESET:
                transport.set_status(0)
                return False
            return bool(status & VIRTIO_CONFIG_STATUS_DRIVER_OK)

        if ready():
            return
        if self.waiter is None or not self.waiter.wait(ready, timeout):
            raise OpenAMPTimeoutError(
                f"the driver did not set DRIVER_OK within {timeout} s "
                f"(status byte is {transport.get_status():#04x})"
            )

    # -- properties -------------------------------------------------------------------------

    @property
    def rx_queue(self) -> Virtqueue:
        """The virtqueue we receive on (vring 0 for the driver, 1 for the device)."""
        return self._rvq

    @property
    def tx_queue(self) -> Virtqueue:
        """The virtqueue we send on."""
        return self._tvq

    @property
    def tx_capacity(self) -> int:
        """Payload bytes of the next transmit buffer (C ``rpmsg_get_tx_buffer_size``)."""
        if self._driver:
            return self._tx_size - RPMSG_HDR_SIZE
        size = self._tvq.peek_avail_len() or self._tx_size or RPMSG_BUFFER_SIZE
        return max(0, size - RPMSG_HDR_SIZE)

    @property
    def rx_capacity(self) -> int:
        """Payload bytes of a receive buffer (C ``rpmsg_get_rx_buffer_size``)."""
        if self._driver:
            return self._rx_size - RPMSG_HDR_SIZE
        size = self._rvq.peek_avail_len() or self._rx_size or RPMSG_BUFFER_SIZE
        return max(0, size - RPMSG_HDR_SIZE)

    def buffer_view(self, offset: int, length: int) -> memoryview:
        """A view of ``length`` bytes of the buffer region at ``offset``."""
        return self.shm.view(offset, length)

    # -- receiving ----------------------------------------------------------------------------

    def has_rx_pending(self) -> bool:
        """Whether the peer has published messages not yet processed."""
        return not self.closed and self._rvq.has_pending()

    def transport_stopped(self, reason: str) -> None:
        """The transport took the rings back: every later call raises
        :class:`TransportStoppedError` (a :class:`PeerGoneError`), and nothing touches the
        rings again.  Platforms call this when the driver stops or resets the device."""
        err = TransportStoppedError(reason)
        self._rvq.broken = err
        self._tvq.broken = err
        # not even into a buffer we hold: its memory may be gone (a vhost-user frontend
        # that shrank it); the next send asks the broken queue, which raises
        self._reclaimer.clear()

    def _memory_gone(self) -> None:
        """Raise the real cause if the memory under the rings was taken away: the
        transport's own check (vhost-user), or faults the SIGBUS guard absorbed in the
        shared-memory mapping (a truncated file; see :mod:`openamp.metal.sigbus`)."""
        if self._guard is not None:
            self._guard()
        if sigbus.faults(id(self.shm.mem.obj)):
            err = RingError(
                f"the shared memory {self.shm.name!r} under the rings is gone: its file was "
                "truncated (by the peer, or whoever owns it); the link cannot go on"
            )
            self._rvq.broken = self._tvq.broken = err
            raise err

    def _quiet(self) -> None:
        self._rvq.disable_cb()

    def _arm(self) -> bool:
        return self._rvq.enable_cb()

    def _rearm(self) -> bool:
        # not on a closed device (its ring views are released) or a broken queue
        # (the error is raised by the next call; the flags are the peer's problem now),
        # nor while another thread rebuilds the link
        if self.closed or self._rvq.broken is not None or self._gate is not None:
            return False
        return self._rvq.enable_cb()

    def close(self) -> None:
        """Destroy the endpoints (announcing it), then drop our views of the rings.

        Afterwards every call raises :class:`InvalidStateError`; the shared memory can be
        unmapped.  Idempotent.
        """
        if self.closed:
            return
        super().close()
        self._rvq.release()
        self._tvq.release()

    def poll(self) -> int:
        """Process every pending incoming message; return how many.

        Messages go to their endpoint's callback or queue; messages for unknown
        addresses are dropped (counted in ``dropped``).  A malformed message raises
        :class:`MessageError` after its buffer went back to the peer; a corrupt ring
        raises :class:`RingError`.  Calls from inside a callback return 0.
        """
        if self._dispatching or self.closed:
            return 0
        if self._gate is not None:
            self._pass_gate()
        rvq = self._rvq
        n = 0
        self._dispatching = True
        enabled = True
        try:
            # While we drain, the peer need not kick us (NAPI style); notifications are
            # on again whenever nobody polls, so fd-based waiters keep working.
            while rvq.has_pending():
                rvq.disable_cb()
                enabled = False
                n += self._drain_rx()
                enabled = True
                if not rvq.enable_cb():
                    break  # nothing slipped in between the last check and re-enabling
        except Exception as exc:
            if self.capture is not None:
                self.capture(ErrorEvent(type(exc).__name__, str(exc)))
            if isinstance(exc, RingError):
                self._memory_gone()  # a ring gone bad because its memory went away: say so
            raise
        finally:
            self._dispatching = False
            if rvq.broken is None:
                if not enabled:
                    rvq.enable_cb()
                if n:
                    rvq.kick()
            if self._staged:  # only after an error: _drain_rx flushes them
                self._flush_staged()
            if self._tx_kick_pending:
                self._tx_kick_pending = False
                self._tvq.kick()
        return n

    def _drain_rx(self) -> int:
        """Deliver every pending message, then give their buffers back in one go.

        If a message is malformed or a callback raises, the rest of the batch is still
        delivered and every buffer returned; then the first error is raised.
        """
        # (offset, size, index) of each buffer: the index is the used-ring slot on the
        # driver, the descriptor head on the device.  The driver's buffers are its own
        # size (the length in the used ring is the peer's word); the device's are what
        # their descriptors say (its own _rx_size is 0, so ``own_size or size`` picks).
        # The driver keeps the descriptors until the batch is done, then recycles them
        # in the C receive loop's order (Virtqueue.recycle, in _return_rx).
        batch = self._take_rx()
        if not batch:
            return 0
        deliver = self._deliver
        own_size = self._rx_size
        held: list[int] = []  # positions in the batch of buffers a callback kept
        error: BaseException | None = None
        for i, (off, size, idx) in enumerate(batch):
            try:
                if not deliver(off, own_size or size, idx):
                    held.append(i)
            except BaseException as exc:
                error = error or exc
                if self._take_held() is not None:
                    held.append(i)
        try:
            if self._staged:  # answers first: the peer may be waiting for them
                self._flush_staged()
        finally:
            self._return_rx(batch, held)
        if error is not None:
            raise error
        return len(batch)

    def _recycle_rx(self, batch: list[Buf], held: list[int]) -> None:
        """Driver: re-post the buffers of ``batch`` except those at the ``held``
        positions, which free their descriptors and come back on release."""
        if not held:
            self._rvq.recycle(None, self._rx_size, True)
            return
        kept = set(held)
        self._rvq.recycle([i not in kept for i in range(len(batch))], self._rx_size, True)

    def _kick_tx(self) -> None:
        # Sends made by callbacks during a poll are kicked once, when the poll ends.
        if self._dispatching:
            self._tx_kick_pending = True
        else:
            self._tvq.kick()

    def _deliver(self, off: int, size: int, idx: int) -> bool:
        """Hand one received buffer to its endpoint; True if the buffer can go back now
        (False: the callback holds it).  Raises :class:`MessageError` for a malformed
        message, whose buffer the caller returns."""
        mem = self._mem
        if size < RPMSG_HDR_SIZE:
            raise MessageError(f"receive buffer {idx} is {size} bytes, smaller than a header")
        src, dst, _reserved, length, flags = _HDR_UNPACK(mem, off)
        # The receiver records its buffer index in the header, as the C library does.
        _U32_PACK(mem, off + 8, idx)
        if length > size - RPMSG_HDR_SIZE:
            raise MessageError(
                f"message from {src:#x} to {dst:#x} claims {length} payload bytes in a "
                f"{size}-byte buffer"
            )
        start = off + RPMSG_HDR_SIZE
        if self.capture is not None:
            self.capture(
                MessageEvent(
                    "rx",
                    self._rvq.index,
                    self.shm.phys_base + off,
                    idx,
                    size,
                    src,
                    dst,
                    length,
                    flags,
                    bytes(mem[start : start + length]),
                )
            )
        ept = self._endpoints.get(dst)
        if ept is None:
            self.dropped += 1
            log.debug("dropping a message from %#x to unknown address %#x", src, dst)
            return True
        if ept.dest_addr == RPMSG_ADDR_ANY:
            ept.dest_addr = src  # the first message binds, as in the C library
            self._bound(ept, "its first message")
        cb = ept.callback
        if cb is None:
            q = ept._queue
            if len(q) < ept._room:
                q.append((mem[start : start + length].tobytes(), src))
                return True
            # past the queue's bound the message stays in its buffer: back-pressure
            ept._queue_held(
                RxBuffer(self, off, size, idx, mem[start : start + length], src, dst), src
            )
            return False
        view = mem[start : start + length]
        # _held is None outside callbacks: cleared here, or by _drain_rx on an error
        self._current = (off, size, idx, view, src, dst)
        try:
            cb(ept, view, src)
        finally:
            self._current = None
        if self._held is None:
            view.release()
            return True
        self._held = None  # the callback keeps it; RxBuffer.release() gives it back
        return False

    def _take_held(self) -> RxBuffer | None:
        """The buffer the last callback held, if any (and forget it)."""
        held, self._held = self._held, None
        return held

    def hold_rx_buffer(self, ept: Endpoint) -> RxBuffer:
        """Keep the buffer being dispatched to ``ept`` past its callback."""
        cur = self._current
        if cur is None:
            raise InvalidStateError("hold_rx_buffer() is only allowed inside a receive callback")
        if self._held is not None:
            return self._held
        off, size, idx, view, src, dst = cur
        self._held = RxBuffer(self, off, size, idx, view, src, dst)
        return self._held

    def release_rx_buffer(self, buf: RxBuffer) -> None:
        """Give a held receive buffer back to the peer (C ``rpmsg_release_rx_buffer``)."""
        if self._gate is not None and not self._dispatching:
            self._pass_gate()
        if self.closed or buf.generation != self.generation:
            return  # closed, or a buffer of the link before a reset: nothing to give back
        self._give_back_rx([(buf.offset, buf.size, buf.index)])
        self._rvq.kick()

    # -- sending ------------------------------------------------------------------------------

    # ``_get_tx_buffer(batch)``, bound by _bind_role to one of the two below, gives
    # ``(offset, size, head)`` of a free transmit buffer, or None (C ``get_tx_buffer``).
    # Sources in the C library's order: buffers given back unsent, then (driver) the
    # ones the device returned or (device) the ones the driver posted, then (driver) a
    # new one from the pool.  The device takes every posted buffer at once and keeps
    # them in ``_reclaimer``, oldest on top; the driver does so only with ``batch``
    # (:meth:`send_offchannel_many`), so that single sends use descriptors exactly as
    # the C library does.

    def _driver_tx_buffer(self, batch: bool) -> Buf | None:
        """Driver: a free transmit buffer (see ``_get_tx_buffer``), or None."""
        rec = self._reclaimer
        if rec:
            return rec.pop()
        tvq = self._tvq
        if batch:
            used = tvq.take_used()
            if used:
                size = self._tx_size
                rec.extend([(off, size, -1) for off, _len, _slot in reversed(used)])
                return rec.pop()
        else:
            # One at a time, as C does: freeing several descriptors before reposting
            # would reorder the free list and put buffers in other descriptors.
            got = tvq.get_used()
            if got is not None:
                return got[0], self._tx_size, -1
        # C takes a pool buffer while a descriptor is free.  Buffers filled by a
        # batch or reserved for a nocopy send hold no descriptor yet, so we count
        # buffers instead: never more transmit buffers than descriptors.
        if self._tx_allocated < tvq.num and self.pool is not None:
            off = self.pool.get_buffer(self._tx_size)
            if off is not None:
                self._tx_allocated += 1
                return off, self._tx_size, -1
        return None

    def _device_tx_buffer(self, batch: bool) -> Buf | None:
        """Device: a free transmit buffer (see ``_get_tx_buffer``), or None."""
        rec = self._reclaimer
        if rec:
            return rec.pop()
        tvq = self._tvq
        avail = tvq.take_avail()
        if not avail:
            return None
        for buf in reversed(avail):
            if buf[1] <= RPMSG_HDR_SIZE:
                err = RingError(f"the driver posted a {buf[1]}-byte receive buffer (desc {buf[2]})")
                tvq.broken = err  # like every RingError, it marks its queue broken
                raise err
            rec.append(buf)
        self._tx_size = avail[-1][1]
        return rec.pop()

    def _tx_ready(self) -> bool:
        return self._tvq.has_pending() or (not self._dispatching and self._rvq.has_pending())

    def _wait_tx_buffer(self, timeout: float | None) -> Buf:
        if self.closed:
            raise self.closed_error()
        waiter = self.waiter
        if timeout == 0 or waiter is None:
            raise NoBufferError("no transmit buffer is free (the peer has not returned any)")
        deadline = Deadline(timeout)
        tvq = self._tvq
        generation = self.generation
        self._flush_staged()
        if self._tx_kick_pending:  # the peer must see what we queued before we wait
            self._tx_kick_pending = False
            tvq.kick()
        tvq.enable_cb()  # ask the peer to tell us when it returns a buffer
        rvq = self._rvq
        # While we spin we look at the rx ring ourselves (_tx_ready), so the peer need
        # not kick us for each message; the waiter re-arms that before it blocks.
        quiet = not self._dispatching
        try:
            while True:
                buf = self._get_tx_buffer(False)
                if buf is not None:
                    break
                if not self._dispatching and rvq.has_pending():
                    self.poll()
                    continue
                remaining = deadline.remaining()
                if remaining == 0.0:
                    raise SendTimeoutError(
                        f"no transmit buffer became free within {timeout} s "
                        "(is the peer processing its receive queue?)"
                    )
                rvq.disable_cb()
                waiter.wait(self._tx_ready, remaining, self._arm_tx)
                if self._gate is not None or self.generation != generation:
                    # another thread is rebuilding the link: this buffer wait is over
                    raise DeviceGoneError("the link was reset while this send waited for a buffer")
        finally:
            if self.generation == generation:  # the old rings are not ours to touch
                tvq.disable_cb()
                if quiet and rvq.broken is None:
                    rvq.enable_cb()
        if quiet and rvq.has_pending():
            self.poll()  # what came in unannounced while rx kicks were off
        return buf

    def _arm_tx(self) -> bool:
        """Before a tx-buffer wait blocks: rx kicks on again; True if work is there."""
        self._rvq.enable_cb()
        return self._tx_ready()

    # ``_commit_tx(off, size, head)``, bound by _bind_role: publish one filled transmit
    # buffer, after any staged ones (to keep the order).

    def _commit_tx_driver(self, off: int, size: int, head: int) -> None:
        """Driver: the buffer goes into a descriptor of its own."""
        if self._staged:
            self._publish(self._staged)
        self._tvq.add_buffer(off, size, False)

    def _commit_tx_device(self, off: int, size: int, head: int) -> None:
        """Device: the buffer goes back in the descriptor it came in."""
        if self._staged:
            self._publish(self._staged)
        self._tvq.add_used(head, size)

    def send_offchannel(
        self, src: int, dst: int, data: bytes | bytearray | memoryview, timeout: float | None
    ) -> int:
        """Copy ``data`` into a free buffer and send it from ``src`` to ``dst``.

        ``timeout``: seconds to wait for a free buffer (None = forever, 0 = don't wait).
        Returns the payload length.
        """
        if dst == RPMSG_ADDR_ANY:
            raise EndpointNotBoundError("destination address ANY: the peer is not known yet")
        if self._gate is not None and not self._dispatching:
            self._pass_gate()
        if self.closed:
            raise self.closed_error()
        n = len(data)
        if n > self._tx_max:  # the driver knows its size before it takes a buffer
            raise PayloadTooLargeError(n, self._tx_max)
        # The per-message path of every echo: calls are inlined (see docs/performance.md;
        # tests/reference_rpmsg.py is the readable twin).
        rec = self._reclaimer
        buf = rec.pop() if rec else self._get_tx_buffer(False)
        if buf is None:
            buf = self._wait_tx_buffer(timeout)
        off, size, head = buf
        if n > size - RPMSG_HDR_SIZE:
            rec.append(buf)
            raise PayloadTooLargeError(n, size - RPMSG_HDR_SIZE)
        mem = self._mem
        start = off + RPMSG_HDR_SIZE
        mem[start : start + n] = data
        _HDR_PACK(mem, off, src, dst, 0, n, 0)
        if self.capture is not None:
            self._trace_tx(off, size, head, src, dst, n)
        if not self._dispatching:
            self._commit_tx(off, size, head)
            self._tvq.kick()
        else:
            # A callback's sends are published STAGE_TX at a time and kicked once, when
            # the poll ends (see _staged).
            staged = self._staged
            staged.append(buf)
            if len(staged) >= STAGE_TX:
                self._publish(staged)
            self._tx_kick_pending = True
        return n

    def send_offchannel_many(
        self,
        src: int,
        dst: int,
        payloads: Iterable[bytes | bytearray | memoryview],
        timeout: float | None,
    ) -> int:
        """Send every payload from ``src`` to ``dst``, notifying the peer once per batch.

        Buffers are filled back to back and published as they go; the peer is kicked
        when we must wait for a buffer (so it can drain what we queued) and once at the
        end.  ``timeout`` applies to each wait for a buffer.  Returns how many were sent.

        On an error (:class:`PayloadTooLargeError`, :class:`SendTimeoutError`, a peer
        gone...) the messages before it are sent and the error's ``sent`` attribute says
        how many: resume with ``payloads[error.sent:]`` and nothing is lost or sent twice.
        """
        if dst == RPMSG_ADDR_ANY:
            raise EndpointNotBoundError("destination address ANY: the peer is not known yet")
        if self._gate is not None and not self._dispatching:
            self._pass_gate()
        if self.closed:
            raise self.closed_error()
        if self._staged:  # keep the order of a callback's earlier sends
            self._publish(self._staged)
        # No rx kicks while we fill buffers: answers to the first messages of a batch
        # would make a C peer kick us for each one.  Outside a poll, rx kicks are on
        # again when we return, and what came in meanwhile is processed first.
        rvq = self._rvq
        quiet = not self._dispatching
        if quiet:
            rvq.disable_cb()
        mem = self._mem
        get_buffer = self._get_tx_buffer
        rec = self._reclaimer
        trace = self.capture
        pending: list[Buf] = []
        sent = 0  # filled; published once they leave ``pending``
        error: BaseException | None = None
        try:
            for data in payloads:
                buf = rec.pop() if rec else get_buffer(True)
                if buf is None:
                    self._publish(pending)  # the peer must see these before we wait
                    self._tvq.kick()
                    buf = self._wait_tx_buffer(timeout)
                off, size, head = buf
                n = len(data)
                if n > size - RPMSG_HDR_SIZE:
                    rec.append(buf)
                    raise PayloadTooLargeError(n, size - RPMSG_HDR_SIZE)
                start = off + RPMSG_HDR_SIZE
                mem[start : start + n] = data
                _HDR_PACK(mem, off, src, dst, 0, n, 0)
                pending.append(buf)
                if trace is not None:
                    self._trace_tx(off, size, head, src, dst, n)
                sent += 1
        except BaseException as exc:
            error = exc
        try:
            self._publish(pending)
            if sent:
                self._kick_tx()
        except BaseException as exc:
            error = error or exc
        finally:
            if quiet and rvq.broken is None:
                rvq.enable_cb()
        if error is not None:
            # what a caller needs to resume: payloads[sent:] (buffers filled but never
            # published, on a broken ring, do not count)
            if isinstance(error, OpenAMPError):
                error.sent = sent - len(pending)
            raise error
        if quiet and rvq.has_pending():
            self.poll()
        return sent

    def _flush_staged(self) -> None:
        """Publish the staged transmit buffers; on a broken queue they are dropped (the
        peer cannot take them, and the next call raises the queue's error)."""
        staged = self._staged
        if staged:
            if self._tvq.broken is None:
                self._publish(staged)
            else:
                staged.clear()

    def _publish(self, pending: list[Buf]) -> None:
        """Hand filled transmit buffers to the peer with one index update; clears the list."""
        if pending:
            self._publish_tx(pending)
            pending.clear()

    def _trace_tx(self, off: int, size: int, head: int, src: int, dst: int, n: int) -> None:
        assert self.capture is not None
        start = off + RPMSG_HDR_SIZE
        self.capture(
            MessageEvent(
                "tx",
                self._tvq.index,
                self.shm.phys_base + off,
                head,
                size,
                src,
                dst,
                n,
                0,
                bytes(self._mem[start : start + n]),
            )
        )

    def get_tx_buffer(self, ept: Endpoint, timeout: float | None) -> TxBuffer:
        """Reserve a transmit buffer for ``ept`` to fill in place."""
        if self._gate is not None and not self._dispatching:
            self._pass_gate()
        if self.closed:
            raise self.closed_error()
        off, size, head = self._get_tx_buffer(False) or self._wait_tx_buffer(timeout)
        return TxBuffer(self, ept, off, size, head)

    def send_nocopy(self, buf: TxBuffer, src: int, dst: int, length: int) -> None:
        """Send the first ``length`` payload bytes of a reserved buffer."""
        if dst == RPMSG_ADDR_ANY:
            raise EndpointNotBoundError("destination address ANY: the peer is not known yet")
        if not 0 <= length <= buf.capacity:
            raise PayloadTooLargeError(length, buf.capacity)
        if self._gate is not None and not self._dispatching:
            self._pass_gate()
        _HDR_PACK(self._mem, buf.offset, src, dst, 0, length, 0)
        self._commit_tx(buf.offset, buf.size, buf.head)
        if self.capture is not None:
            self._trace_tx(buf.offset, buf.size, buf.head, src, dst, length)
        self._kick_tx()

    def release_tx_buffer(self, buf: TxBuffer) -> None:
        """Take back an unsent reserved buffer; the next send reuses it first."""
        if self._gate is not None and not self._dispatching:
            self._pass_gate()
        if buf.generation == self.generation:  # not a buffer of the link before a reset
            self._reclaimer.append((buf.offset, buf.size, buf.head))

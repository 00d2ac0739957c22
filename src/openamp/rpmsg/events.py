"""What a link lets you observe: one event model for capture, logging, replay and tools.

Theory of operation
-------------------
An :class:`~openamp.rpmsg.virtio.RpmsgVirtioDevice` calls its ``capture`` hook (any
callable taking one event, see :data:`EventHook`) with an event for everything that
can be observed on the link from its side:

* :class:`MessageEvent` -- every rpmsg message sent (``"tx"``) or received (``"rx"``),
  name-service records included (they are messages to address 0x35);
* :class:`NsEvent` -- a name-service record the device decoded (received) or sent:
  the same bytes as the message, said in words (capture files skip it);
* :class:`EndpointEvent` -- an endpoint was bound to the peer (by NS or by a first
  message), unbound by an NS destroy, announced or destroyed;
* :class:`StatusEvent` and :class:`FeaturesEvent` -- the virtio status byte and the
  feature words, as the driver wrote them or the device found them;
* :class:`ConfigEvent` -- the device's config space, when the driver read it;
* :class:`KickEvent` -- a notification we sent to the peer;
* :class:`ErrorEvent` -- an error the device raised while receiving;
* :class:`LinkEvent` -- where the link lives (role, rings, buffer sizes), once it is up;
* :class:`MissedEvent` -- a passive observer (the tap) could not read some messages.

Rules of this module: the events are plain immutable tuples, built only from numbers,
strings and ``bytes`` (no views of shared memory); nothing here does I/O or looks at
the clock.  Whoever records events stamps them (``openamp.tools.capture``).  The
hook is called synchronously on the path that produced the event, so it must be quick
and must not call back into the device.  A hook that is ``None`` costs one ``is not
None`` test per message; that is the only cost of capture when it is off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from .wire import RPMSG_NS_EPT_ADDR, RPMSG_NS_MSG_SIZE, NsMessage, decode_ns


class MessageEvent(NamedTuple):
    """One rpmsg message as the recording side saw it."""

    direction: str
    """``"tx"`` (we sent it) or ``"rx"`` (we received it)."""
    vring: int
    """The vring it travelled on (1: driver -> device, 0: device -> driver)."""
    buffer: int
    """Physical address of the buffer (its rpmsg header)."""
    slot: int
    """Receiver's buffer index (rx) or descriptor head / -1 (tx)."""
    buflen: int
    """Size of the whole buffer, header included, in bytes."""
    src: int
    dst: int
    length: int
    """Payload length from the header, in bytes."""
    flags: int
    payload: bytes

    @property
    def kind(self) -> str:
        """``"message"``."""
        return "message"

    def ns(self) -> NsMessage | None:
        """The name-service record this message carries, or None (not NS, or malformed)."""
        if self.dst != RPMSG_NS_EPT_ADDR or len(self.payload) != RPMSG_NS_MSG_SIZE:
            return None
        return decode_ns(self.payload)


class NsEvent(NamedTuple):
    """A name-service announcement, decoded (the message itself is a MessageEvent)."""

    direction: str
    """``"rx"`` (the peer announced) or ``"tx"`` (we announced)."""
    name: str
    addr: int
    destroy: bool

    @property
    def kind(self) -> str:
        """``"ns"``."""
        return "ns"


class EndpointEvent(NamedTuple):
    """Something happened to one of our endpoints."""

    action: str
    """``"announce"`` (NS create sent), ``"bind"`` (the peer's address became known),
    ``"unbind"`` (the peer's NS destroy) or ``"destroy"``."""
    name: str
    addr: int
    """Our address."""
    dest: int
    """The peer's address (``RPMSG_ADDR_ANY`` when unknown)."""

    @property
    def kind(self) -> str:
        """``"endpoint"``."""
        return "endpoint"


class StatusEvent(NamedTuple):
    """The virtio status byte."""

    status: int
    action: str
    """``"write"`` (we, the driver, wrote it) or ``"seen"`` (we found it set)."""

    @property
    def kind(self) -> str:
        """``"status"``."""
        return "status"


class FeaturesEvent(NamedTuple):
    """The feature words: what the device offers and what the driver accepted."""

    device_features: int
    driver_features: int
    action: str
    """``"write"`` (we, the driver, wrote ours) or ``"seen"`` (we read both)."""

    @property
    def kind(self) -> str:
        """``"features"``."""
        return "features"


class ConfigEvent(NamedTuple):
    """The device's config space as the driver read it (with ``VIRTIO_RPMSG_F_BUFSZ``)."""

    config: bytes

    @property
    def kind(self) -> str:
        """``"config"``."""
        return "config"


class KickEvent(NamedTuple):
    """We notified the peer."""

    vring: int
    """The vring the kick is for (-1: the device itself, for a status or feature write)."""
    notifyid: int

    @property
    def kind(self) -> str:
        """``"kick"``."""
        return "kick"


class ErrorEvent(NamedTuple):
    """An error the device raised while it processed the peer's messages."""

    error: str
    """The exception's class name (``MessageError``, ``RingError``...)."""
    message: str

    @property
    def kind(self) -> str:
        """``"error"``."""
        return "error"


class VringLocation(NamedTuple):
    """Where one vring lives (for :class:`LinkEvent`)."""

    vring: int
    pa: int
    """Physical address of its descriptor table."""
    num: int
    align: int
    notifyid: int


class LinkEvent(NamedTuple):
    """The link is up: who we are on it and where its rings and buffers live."""

    role: str
    """``"driver"``, ``"device"`` or ``"tap"`` (a passive observer, the driver's view)."""
    features: int
    """The negotiated feature bits."""
    rx_size: int
    """Our receive buffer size in bytes (0: learnt from the ring, as a device does)."""
    tx_size: int
    """Our transmit buffer size in bytes (0: learnt from the ring)."""
    vrings: tuple[VringLocation, ...]

    @property
    def kind(self) -> str:
        """``"link"``."""
        return "link"


class MissedEvent(NamedTuple):
    """A passive observer may have missed messages (it fell behind the ring)."""

    vring: int
    missed: int
    """How many messages may be missing or unreadable."""
    reason: str

    @property
    def kind(self) -> str:
        """``"missed"``."""
        return "missed"


Event = (
    MessageEvent
    | NsEvent
    | EndpointEvent
    | StatusEvent
    | FeaturesEvent
    | ConfigEvent
    | KickEvent
    | ErrorEvent
    | LinkEvent
    | MissedEvent
)
"""Anything a capture hook receives."""

EventHook = Callable[[Event], None]
"""A capture hook: called with every event, synchronously (keep it quick)."""

TraceHook = Callable[[MessageEvent], None]
"""The message-only hook of ``trace=`` (earlier versions); it sees messages only."""

EVENT_TYPES: dict[str, type[tuple[object, ...]]] = {
    "message": MessageEvent,
    "ns": NsEvent,
    "endpoint": EndpointEvent,
    "status": StatusEvent,
    "features": FeaturesEvent,
    "config": ConfigEvent,
    "kick": KickEvent,
    "error": ErrorEvent,
    "link": LinkEvent,
    "missed": MissedEvent,
}
"""Kind name -> event class (for readers of recorded events)."""


def messages_only(trace: TraceHook) -> EventHook:
    """An event hook that hands ``trace`` the :class:`MessageEvent` s and nothing else."""

    def hook(event: Event) -> None:
        if type(event) is MessageEvent:
            trace(event)

    hook.__wrapped__ = trace  # type: ignore[attr-defined]
    return hook


def tee(*hooks: EventHook | None) -> EventHook | None:
    """One hook that calls each of ``hooks`` (the ``None`` ones left out) in turn."""
    live = [h for h in hooks if h is not None]
    if not live:
        return None
    if len(live) == 1:
        return live[0]

    def hook(event: Event) -> None:
        for h in live:
            h(event)

    return hook


STATUS_BITS = (
    (0x01, "ACKNOWLEDGE"),
    (0x02, "DRIVER"),
    (0x04, "DRIVER_OK"),
    (0x08, "FEATURES_OK"),
    (0x40, "NEEDS_RESET"),
    (0x80, "FAILED"),
)
"""The virtio status bits, by value."""

FEATURE_BITS = {
    0: "VIRTIO_RPMSG_F_NS",
    1: "VIRTIO_RPMSG_F_BUFSZ",
    28: "VIRTIO_RING_F_INDIRECT_DESC",
    29: "VIRTIO_RING_F_EVENT_IDX",
    30: "VHOST_USER_F_PROTOCOL_FEATURES",
    32: "VIRTIO_F_VERSION_1",
}
"""The feature bits an rpmsg link may carry, by bit number."""


def describe_status(status: int) -> str:
    """``0x07 (ACKNOWLEDGE|DRIVER|DRIVER_OK)``; ``0x00 (reset)`` for zero."""
    names = [n for bit, n in STATUS_BITS if status & bit]
    return f"{status:#04x} ({'|'.join(names) or 'reset'})"


def describe_features(features: int) -> str:
    """``0x1 (VIRTIO_RPMSG_F_NS)``; unknown bits as ``bit N``."""
    names = []
    bit = 0
    rest = features
    while rest:
        if rest & 1:
            names.append(FEATURE_BITS.get(bit, f"bit {bit}"))
        rest >>= 1
        bit += 1
    return f"{features:#x} ({', '.join(names) or 'none'})"


__all__ = [
    "EVENT_TYPES",
    "ConfigEvent",
    "EndpointEvent",
    "ErrorEvent",
    "Event",
    "EventHook",
    "FeaturesEvent",
    "KickEvent",
    "LinkEvent",
    "MessageEvent",
    "MissedEvent",
    "NsEvent",
    "StatusEvent",
    "TraceHook",
    "VringLocation",
    "describe_features",
    "describe_status",
    "messages_only",
    "tee",
]

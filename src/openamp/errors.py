"""The exceptions pyopenamp raises, grouped by whose fault the problem is.

Following h11, there are two families:

* :class:`UsageError` — *you* used the API wrong: a call in the wrong state, an argument
  out of range, a payload larger than the buffer.  Fix the calling code.
* :class:`PeerProtocolError` — *the peer* broke the protocol: it wrote something into
  shared memory (a ring index, a descriptor address, a message length, a resource
  table) that cannot be right.  Everything read from shared memory is untrusted input,
  and a bad value becomes one of these, never an ``IndexError``, a ``struct.error`` or
  an out-of-region access.

Plus a few that are nobody's fault (a timeout, no free buffer, a vanished peer).  Every
exception derives from :class:`OpenAMPError`, so ``except openamp.OpenAMPError`` catches
all of them.  This module must not import anything else from the package.
"""

from __future__ import annotations


class OpenAMPError(Exception):
    """Base class of every error pyopenamp raises on purpose."""

    sent: int | None = None
    """Set on an error raised by a batch send (``send_many``): how many messages of the
    batch were sent before it, so ``payloads[sent:]`` resumes without duplicates or
    losses.  None for every other error."""


# -- the caller's fault ------------------------------------------------------------------


class UsageError(OpenAMPError, ValueError):
    """The API was used wrong (bad argument, wrong state).  Fix the calling code."""


class InvalidStateError(UsageError):
    """The call is not allowed in the object's current state (e.g. send before DRIVER_OK)."""


class PayloadTooLargeError(UsageError):
    """A message does not fit into one buffer.

    The C library silently truncates such messages; we refuse them instead.
    """

    def __init__(self, size: int, capacity: int) -> None:
        super().__init__(f"payload of {size} bytes exceeds the buffer capacity of {capacity} bytes")
        self.size = size
        self.capacity = capacity


class AddressInUseError(UsageError):
    """An explicit endpoint address is already taken on this device."""


class AddressExhaustedError(OpenAMPError):
    """Every dynamic endpoint address (1024..1151 by default) is in use.

    The C library hands out a duplicate address in this case; we raise instead.
    """


class EndpointNotBoundError(UsageError):
    """``send()`` on an endpoint whose peer address is not known yet.

    An endpoint becomes bound when the peer announces the same service name or sends it
    a first message.  Use ``wait_bound(timeout)`` or ``sendto()``.
    """


class EndpointClosedError(UsageError):
    """The endpoint was destroyed; it can no longer send or receive."""


class RegionBoundsError(OpenAMPError):
    """An access falls outside a shared-memory region.

    Raised by :class:`openamp.metal.IoRegion`.  When the offending address came from
    shared memory, the layer above re-raises it as a :class:`PeerProtocolError`.
    """


# -- the peer's fault --------------------------------------------------------------------


class PeerProtocolError(OpenAMPError):
    """The peer wrote something into shared memory that breaks the protocol."""


class RingError(PeerProtocolError):
    """A virtqueue index, descriptor or length read from shared memory is invalid.

    The virtqueue that raised it is marked broken and refuses further work.
    """


class MessageError(PeerProtocolError):
    """An rpmsg message read from shared memory is malformed (bad length, bad NS record)."""


class ResourceTableError(PeerProtocolError):
    """A resource table is malformed.

    ``entry`` is the index of the offending entry (``None`` for the table header) and
    ``reason`` says what is wrong with it.  Tables come from firmware images or shared
    memory, which is why this counts as the peer's fault; the same error is raised when
    building a table from a bad description.
    """

    def __init__(self, reason: str, entry: int | None = None, offset: int | None = None) -> None:
        where = "table header" if entry is None else f"entry {entry}"
        if offset is not None:
            where += f" at offset {offset:#x}"
        super().__init__(f"{where}: {reason}")
        self.reason = reason
        self.entry = entry
        self.offset = offset


class MmioWindowError(PeerProtocolError):
    """A virtio-mmio register window in shared memory holds a value that cannot be right.

    Raised for a bad magic, version or device id seen by a driver, and for a queue size,
    page size, alignment or ring address a driver wrote that a device cannot use (the
    hypervisorless monitor reads its devices' registers from shared memory, so every
    one of them is untrusted).  The device that raised it stops serving until the driver
    resets it.
    """


class FirmwareImageError(PeerProtocolError):
    """A firmware image is malformed or does not fit the remote's memory.

    The message names the problem: a truncated file, a segment outside every mapped
    memory, overlapping segments, a missing or bad resource table.
    """


# -- nobody's fault ----------------------------------------------------------------------


class OpenAMPTimeoutError(OpenAMPError, TimeoutError):
    """A blocking call did not complete within its ``timeout``."""


class MmioAckTimeoutError(OpenAMPTimeoutError):
    """A hypervisorless driver wrote a queue address and the monitor did not acknowledge it
    (``0xAABBAABB`` in ``QueuePFN``) within the timeout: no monitor runs, or it is stuck."""


class NoBufferError(OpenAMPError):
    """No transmit buffer is free right now (``trysend`` and friends)."""


class SendTimeoutError(NoBufferError, OpenAMPTimeoutError):
    """No transmit buffer became free within the send timeout."""


class PeerGoneError(OpenAMPError, ConnectionError):
    """The peer disconnected (its doorbell socket closed) or its device was reset."""


class EndpointUnboundError(PeerGoneError):
    """The peer destroyed the service this endpoint was bound to (an NS destroy).

    The endpoint stays; ``wait_bound(timeout)`` waits for the service to be announced
    again (a restarted remote re-announces it).
    """


class DeviceGoneError(PeerGoneError):
    """The rpmsg device was closed because its peer went away (the remote stopped,
    crashed or is being recovered), not by you."""


class TransportStoppedError(PeerGoneError, RingError):
    """The transport took the rings back (the driver stopped or reset the device, or the
    remote went away); the rpmsg device on them can do nothing more."""

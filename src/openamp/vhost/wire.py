"""vhost-user wire formats: message headers, payload layouts, request numbers, features.

One definition each, little-endian (``<``), as the frontend writes them.  Sans-IO: this
module only describes bytes.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from ..errors import (
    PeerProtocolError,
    TransportStoppedError,
)
from ..rpmsg.wire import VIRTIO_RPMSG_F_NS
from ..virtio.ring import (
    VIRTIO_F_VERSION_1,
)

HEADER = struct.Struct("<III")
"""Message header: request, flags, payload size."""
U64 = struct.Struct("<Q")
VRING_STATE = struct.Struct("<II")
"""``vhost_vring_state``: index, num."""
VRING_ADDR = struct.Struct("<IIQQQQ")
"""``vhost_vring_addr``: index, flags, desc, used, avail (user addresses), log (guest)."""
MEMORY_HEADER = struct.Struct("<II")
"""Memory table head: number of regions, padding."""
MEMORY_REGION = struct.Struct("<QQQQ")
"""One region: guest address, size, user address, mmap offset."""
CONFIG_HEADER = struct.Struct("<III")
"""Config space access: offset, size, flags; ``size`` bytes follow."""

VHOST_USER_VERSION = 0x1
FLAG_VERSION_MASK = 0x3
FLAG_REPLY = 0x4
FLAG_NEED_REPLY = 0x8
VHOST_USER_F_PROTOCOL_FEATURES = 30
"""Feature bit 30 (unused by virtio) says the backend knows protocol features."""
VRING_INDEX_MASK = 0xFF
VRING_NOFD_MASK = 0x100
"""In SET_VRING_KICK/CALL/ERR: no descriptor comes with the message (poll instead)."""
MAX_PAYLOAD = 0x1000
MAX_FDS = 8
MAX_REGIONS = 8
MAX_CONFIG_SIZE = 256
"""QEMU's ``VHOST_USER_MAX_CONFIG_SIZE``."""

CONFIG_NOTIFYID = 0x100
"""The device's own notify id (outside the vring index range): :meth:`VhostUserDevice.notify`
with it sends ``CONFIG_CHANGE_MSG`` on the backend channel."""

KICK_VALUE = U64.pack(1)
RING_ALIGN = 4096  # VringLayout wants one; with explicit part offsets it is not used


class Request(IntEnum):
    """Frontend -> backend requests."""

    GET_FEATURES = 1
    SET_FEATURES = 2
    SET_OWNER = 3
    RESET_OWNER = 4
    SET_MEM_TABLE = 5
    SET_LOG_BASE = 6
    SET_LOG_FD = 7
    SET_VRING_NUM = 8
    SET_VRING_ADDR = 9
    SET_VRING_BASE = 10
    GET_VRING_BASE = 11
    SET_VRING_KICK = 12
    SET_VRING_CALL = 13
    SET_VRING_ERR = 14
    GET_PROTOCOL_FEATURES = 15
    SET_PROTOCOL_FEATURES = 16
    GET_QUEUE_NUM = 17
    SET_VRING_ENABLE = 18
    SEND_RARP = 19
    NET_SET_MTU = 20
    SET_SLAVE_REQ_FD = 21
    IOTLB_MSG = 22
    SET_VRING_ENDIAN = 23
    GET_CONFIG = 24
    SET_CONFIG = 25
    RESET_DEVICE = 34
    VRING_KICK = 35
    GET_MAX_MEM_SLOTS = 36
    ADD_MEM_REG = 37
    REM_MEM_REG = 38
    SET_STATUS = 39
    GET_STATUS = 40


class BackendRequest(IntEnum):
    """Backend -> frontend requests (the "slave" channel of ``SET_SLAVE_REQ_FD``)."""

    IOTLB_MSG = 1
    CONFIG_CHANGE_MSG = 2
    VRING_HOST_NOTIFIER_MSG = 3
    VRING_CALL = 4
    VRING_ERR = 5


class ProtocolFeature(IntEnum):
    """Protocol feature bit numbers."""

    MQ = 0
    LOG_SHMFD = 1
    RARP = 2
    REPLY_ACK = 3
    NET_MTU = 4
    SLAVE_REQ = 5
    CROSS_ENDIAN = 6
    CRYPTO_SESSION = 7
    PAGEFAULT = 8
    CONFIG = 9
    SLAVE_SEND_FD = 10
    HOST_NOTIFIER = 11
    INFLIGHT_SHMFD = 12
    RESET_DEVICE = 13
    INBAND_NOTIFICATIONS = 14
    CONFIGURE_MEM_SLOTS = 15
    STATUS = 16


def _bits(*bits: int) -> int:
    value = 0
    for b in bits:
        value |= 1 << b
    return value


DEFAULT_PROTOCOL_FEATURES = _bits(
    ProtocolFeature.MQ,
    ProtocolFeature.REPLY_ACK,
    ProtocolFeature.SLAVE_REQ,
    ProtocolFeature.CONFIG,
    ProtocolFeature.RESET_DEVICE,
    ProtocolFeature.STATUS,
)
"""What we offer.  ``SLAVE_REQ`` matters: UML 6.1 allocates the device's interrupt only
when it gets the backend channel, and fails the probe with EBUSY otherwise."""

SUPPORTED_PROTOCOL_FEATURES = DEFAULT_PROTOCOL_FEATURES
"""Everything this backend implements; an offer outside this set is refused."""

RPMSG_DEVICE_FEATURES = _bits(VIRTIO_RPMSG_F_NS, VIRTIO_F_VERSION_1)
"""The default offer of an rpmsg device: name service and VERSION_1 (little-endian)."""

HAS_OWN_REPLY = frozenset(
    {
        Request.GET_FEATURES,
        Request.GET_PROTOCOL_FEATURES,
        Request.GET_VRING_BASE,
        Request.GET_QUEUE_NUM,
        Request.GET_CONFIG,
        Request.GET_STATUS,
        Request.GET_MAX_MEM_SLOTS,
    }
)


class VhostUserError(PeerProtocolError):
    """The vhost-user frontend sent a message that breaks the protocol."""


VringStoppedError = TransportStoppedError
"""The frontend stopped or disabled a vring we were using (the driver went away): the
rpmsg device stops touching rings the guest may already have freed.  It is a
:class:`~openamp.errors.PeerGoneError`, which services treat as the end."""

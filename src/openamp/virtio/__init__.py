"""Virtio split rings and the device control plane, for both roles.

Sans-IO: nothing here opens a file, a socket or sleeps.  Kicks go through an injected
``notify`` callable.
"""

from .ring import (
    VIRTIO_CONFIG_STATUS_DRIVER_OK,
    VIRTIO_CONFIG_STATUS_NEEDS_RESET,
    VIRTIO_ID_RPMSG,
    VIRTIO_RING_F_EVENT_IDX,
    VRING_AVAIL_F_NO_INTERRUPT,
    VRING_USED_F_NO_NOTIFY,
    VringLayout,
    vring_size,
)
from .transport import VirtioTransport, VringInfo
from .virtqueue import Role, Virtqueue

__all__ = [
    "VIRTIO_CONFIG_STATUS_DRIVER_OK",
    "VIRTIO_CONFIG_STATUS_NEEDS_RESET",
    "VIRTIO_ID_RPMSG",
    "VIRTIO_RING_F_EVENT_IDX",
    "VRING_AVAIL_F_NO_INTERRUPT",
    "VRING_USED_F_NO_NOTIFY",
    "Role",
    "VirtioTransport",
    "Virtqueue",
    "VringInfo",
    "VringLayout",
    "vring_size",
]

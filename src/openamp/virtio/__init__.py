"""Virtio split rings, the device control plane and virtio-mmio over shared memory
(hypervisorless), for both roles; the device types are in :mod:`openamp.virtio.devices`.

Sans-IO: nothing here opens a file, a socket or sleeps.  Kicks go through an injected
``notify`` callable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "VIRTIO_CONFIG_STATUS_DRIVER_OK": ".ring",
    "VIRTIO_CONFIG_STATUS_NEEDS_RESET": ".ring",
    "VIRTIO_ID_RPMSG": ".ring",
    "VIRTIO_RING_F_EVENT_IDX": ".ring",
    "VRING_AVAIL_F_NO_INTERRUPT": ".ring",
    "VRING_USED_F_NO_NOTIFY": ".ring",
    "VringLayout": ".ring",
    "vring_size": ".ring",
    "HVL_CFG_ACK": ".mmio",
    "MmioDevice": ".mmio",
    "MmioDriver": ".mmio",
    "MmioWindow": ".mmio",
    "ShmAllocator": ".mmio",
    "VirtioTransport": ".transport",
    "VringInfo": ".transport",
    "Role": ".virtqueue",
    "Virtqueue": ".virtqueue",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .mmio import (
        HVL_CFG_ACK as HVL_CFG_ACK,
        MmioDevice as MmioDevice,
        MmioDriver as MmioDriver,
        MmioWindow as MmioWindow,
        ShmAllocator as ShmAllocator,
    )
    from .ring import (
        VIRTIO_CONFIG_STATUS_DRIVER_OK as VIRTIO_CONFIG_STATUS_DRIVER_OK,
        VIRTIO_CONFIG_STATUS_NEEDS_RESET as VIRTIO_CONFIG_STATUS_NEEDS_RESET,
        VIRTIO_ID_RPMSG as VIRTIO_ID_RPMSG,
        VIRTIO_RING_F_EVENT_IDX as VIRTIO_RING_F_EVENT_IDX,
        VRING_AVAIL_F_NO_INTERRUPT as VRING_AVAIL_F_NO_INTERRUPT,
        VRING_USED_F_NO_NOTIFY as VRING_USED_F_NO_NOTIFY,
        VringLayout as VringLayout,
        vring_size as vring_size,
    )
    from .transport import (
        VirtioTransport as VirtioTransport,
        VringInfo as VringInfo,
    )
    from .virtqueue import (
        Role as Role,
        Virtqueue as Virtqueue,
    )

"""What a virtio device needs from whatever carries its control plane.

On a remoteproc the status byte, the feature words and the vring addresses live in the
resource table's vdev entry (:class:`openamp.remoteproc.virtio.RscVdevTransport`); under
vhost-user they arrive as protocol messages; on virtio-mmio they are registers.  The
rpmsg-over-virtio device only sees this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..metal.io import IoRegion
from .ring import VringLayout
from .virtqueue import Role


@dataclass(frozen=True)
class VringInfo:
    """Where vring ``index`` lives: a region, its layout inside it, and its notify id."""

    index: int
    region: IoRegion
    layout: VringLayout
    notifyid: int
    base: int = 0
    """Device role: the avail index to start taking buffers at (0 for a fresh ring)."""


class VirtioTransport(Protocol):
    """The control plane of one virtio device, seen from ``role``."""

    role: Role

    @property
    def device_id(self) -> int:
        """Virtio device id (7 for rpmsg)."""
        ...

    @property
    def num_vrings(self) -> int:
        """How many vrings the device has."""
        ...

    def get_status(self) -> int:
        """The virtio status byte."""
        ...

    def set_status(self, status: int) -> None:
        """Write the status byte and notify the peer (driver side)."""
        ...

    def device_features(self) -> int:
        """Features the device offers."""
        ...

    def driver_features(self) -> int:
        """Features the driver accepted (0 until it wrote them)."""
        ...

    def set_driver_features(self, features: int) -> None:
        """Driver: write the accepted features and notify the peer."""
        ...

    def vring(self, index: int) -> VringInfo:
        """Location and notify id of vring ``index``."""
        ...

    def config_space(self) -> bytes:
        """The device-specific config space (empty if the device has none)."""
        ...

    def notify(self, notifyid: int) -> None:
        """Kick the peer for notify id ``notifyid`` (a vring's or the device's own)."""
        ...

    @property
    def notifyid(self) -> int:
        """The device's own notify id (used for status and feature writes)."""
        ...

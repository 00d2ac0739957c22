"""A virtio device whose control plane is a vdev entry of a live resource table.

This is C's ``remoteproc_virtio.c``: the status byte, the feature words and the vring
addresses are fields of the ``RSC_VDEV`` entry in shared memory, written by the driver
and polled by the device; every status or feature write notifies the vdev's notify id.

The entry is read from shared memory the peer can write, so it is validated once when
the transport is created (entry bounds, vring count, vring geometry and placement) and
afterwards only the status and feature words are re-read.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import RegionBoundsError, ResourceTableError, UsageError
from ..metal.io import IoRegion
from ..virtio.ring import VringLayout, vring_size
from ..virtio.transport import VringInfo
from ..virtio.virtqueue import Role
from .rsc_table import (
    RSC_VDEV,
    VDEV,
    VDEV_DFEATURES_OFFSET,
    VDEV_GFEATURES_OFFSET,
    VDEV_STATUS_OFFSET,
    VDEV_VRING,
    VDEV_VRINGS_OFFSET,
)


class RscVdevTransport:
    """The vdev entry at ``vdev_offset`` of ``table_io`` as a virtio transport.

    ``ring_io`` is the region the vring device addresses (``da``) point into;
    ``notify(notifyid)`` kicks the peer.  ``role`` is the side we play.
    """

    def __init__(
        self,
        table_io: IoRegion,
        vdev_offset: int,
        *,
        ring_io: IoRegion,
        role: Role,
        notify: Callable[[int], None],
    ) -> None:
        self.role = role
        self._io = table_io
        self._off = vdev_offset
        self._notify = notify
        try:
            (rtype, dev_id, notifyid, _df, _gf, config_len, _st, nrings, _rsv) = VDEV.unpack_from(
                table_io.view(vdev_offset, VDEV.size)
            )
        except RegionBoundsError as exc:
            raise ResourceTableError(
                f"vdev entry does not fit in the table region: {exc}"
            ) from None
        if rtype != RSC_VDEV:
            raise ResourceTableError(f"entry type {rtype} is not RSC_VDEV", offset=vdev_offset)
        end = vdev_offset + VDEV_VRINGS_OFFSET + VDEV_VRING.size * nrings + config_len
        if end > table_io.size:
            raise ResourceTableError(
                f"vdev with {nrings} vrings and {config_len} config bytes runs past the table",
                offset=vdev_offset,
            )
        self._config_off = end - config_len
        self._config_len: int = config_len
        self._device_id: int = dev_id
        self._notifyid: int = notifyid
        self._vrings: list[VringInfo] = []
        for i in range(nrings):
            da, align, num, vnotify, _r = VDEV_VRING.unpack_from(
                table_io.mem, vdev_offset + VDEV_VRINGS_OFFSET + VDEV_VRING.size * i
            )
            try:
                layout = VringLayout(num, align, base=0, pa=da)
                # The used ring is aligned on ``da`` itself, so a ring whose ``da`` is not
                # a multiple of ``align`` can end past ``vring_size()``: check both spans.
                size = max(vring_size(num, align), layout.size)
                base = ring_io.phys_to_offset(da, size)
            except (UsageError, RegionBoundsError) as exc:
                raise ResourceTableError(f"vring {i}: {exc}", offset=vdev_offset) from None
            layout = VringLayout(num, align, base=base, pa=da)
            self._vrings.append(VringInfo(i, ring_io, layout, vnotify))

    @property
    def device_id(self) -> int:
        """Virtio device id of the entry (7 for rpmsg)."""
        return self._device_id

    @property
    def notifyid(self) -> int:
        """The vdev's own notify id (status and feature writes kick with it)."""
        return self._notifyid

    @property
    def num_vrings(self) -> int:
        """Number of vrings described by the entry."""
        return len(self._vrings)

    def vring(self, index: int) -> VringInfo:
        """Location of vring ``index``."""
        return self._vrings[index]

    def config_space(self) -> bytes:
        """The vdev's ``config_len`` bytes of config space (after its vrings)."""
        return self._io.read_block(self._config_off, self._config_len)

    def get_status(self) -> int:
        """The status byte (the device polls it for DRIVER_OK)."""
        return self._io.read8(self._off + VDEV_STATUS_OFFSET)

    def set_status(self, status: int) -> None:
        """Write the status byte, then notify the peer (C ``rproc_virtio_set_status``)."""
        self._io.write8(self._off + VDEV_STATUS_OFFSET, status)
        self._notify(self._notifyid)

    def device_features(self) -> int:
        """``dfeatures``: what the device (remote) offers."""
        return int(self._io.read32(self._off + VDEV_DFEATURES_OFFSET))

    def driver_features(self) -> int:
        """``gfeatures``: what the driver accepted."""
        return int(self._io.read32(self._off + VDEV_GFEATURES_OFFSET))

    def set_driver_features(self, features: int) -> None:
        """Driver: write ``gfeatures`` and notify (C ``rproc_virtio_create_vdev``)."""
        self._io.write32(self._off + VDEV_GFEATURES_OFFSET, features)
        self._notify(self._notifyid)

    def notify(self, notifyid: int) -> None:
        """Kick the peer for ``notifyid``."""
        self._notify(notifyid)

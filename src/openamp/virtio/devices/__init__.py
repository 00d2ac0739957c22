"""Virtio device types — entropy, console, network — each with its device and driver half.

Theory of operation
-------------------
A device type is two small classes in one module:

* the **device** half (``RngDevice``, ``ConsoleDevice``, ``NetDevice``) implements
  :class:`openamp.virtio.mmio.DeviceModel`: the transport hands it each queue as the
  driver sets it up and calls ``service()`` whenever there may be work; it takes the
  buffers the driver posted, does what the device does, returns them and kicks.  What
  it exchanges with the outside world comes and goes through callables and methods
  (``entropy``, ``output``/``feed``, ``transmit``/``receive``): the platform
  (:mod:`openamp.hvl`) connects them to ``os.urandom``, a terminal or pipe, a TAP
  interface or a socket pair;
* the **driver** half (``RngDriver``, ``ConsoleDriver``, ``NetDriver``) runs on an
  :class:`openamp.virtio.mmio.MmioDriver`: it performs the device's initialisation as
  open-amp's driver does (status, features, queues, ``DRIVER_OK``), posts buffers from
  the shared pool and waits through the transport's waiter.

Rules of this folder: sans-IO, like all of :mod:`openamp.virtio` (no file, socket,
thread or sleep); every length or count the peer wrote is checked or clipped before it
is used (a device's used length never reads past the buffer the driver posted; a
driver's buffer is checked by the ring layer to lie in shared memory); buffers are
single descriptors, which is what open-amp's drivers post (chains are not followed);
wire layouts (``virtio_net_hdr``, the config spaces) are one ``struct`` each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

_EXPORTS = {
    "CONSOLE_CONFIG": ".console",
    "VIRTIO_ID_CONSOLE": ".console",
    "ConsoleDevice": ".console",
    "ConsoleDriver": ".console",
    "NET_CONFIG": ".net",
    "NET_HDR": ".net",
    "VIRTIO_ID_NET": ".net",
    "VIRTIO_NET_F_MAC": ".net",
    "VIRTIO_NET_F_MRG_RXBUF": ".net",
    "NetDevice": ".net",
    "NetDriver": ".net",
    "VIRTIO_ID_ENTROPY": ".rng",
    "RngDevice": ".rng",
    "RngDriver": ".rng",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .console import (
        CONSOLE_CONFIG as CONSOLE_CONFIG,
        VIRTIO_ID_CONSOLE as VIRTIO_ID_CONSOLE,
        ConsoleDevice as ConsoleDevice,
        ConsoleDriver as ConsoleDriver,
    )
    from .net import (
        NET_CONFIG as NET_CONFIG,
        NET_HDR as NET_HDR,
        VIRTIO_ID_NET as VIRTIO_ID_NET,
        VIRTIO_NET_F_MAC as VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_MRG_RXBUF as VIRTIO_NET_F_MRG_RXBUF,
        NetDevice as NetDevice,
        NetDriver as NetDriver,
    )
    from .rng import (
        VIRTIO_ID_ENTROPY as VIRTIO_ID_ENTROPY,
        RngDevice as RngDevice,
        RngDriver as RngDriver,
    )

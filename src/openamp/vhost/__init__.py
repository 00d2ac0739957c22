"""A vhost-user backend: pyopenamp plays the virtio *device* behind a real virtio driver.

vhost-user (QEMU ``docs/interop/vhost-user.rst``) lets a process implement a virtio
device for a virtual machine: the *frontend* (QEMU, or User-mode Linux's ``virtio_uml``
driver) connects to a UNIX socket, negotiates features, hands over the guest's memory as
file descriptors and tells where the vrings live; from then on the rings are shared
memory and notifications are eventfd writes.  With ``virtio_uml.device=SOCKET:7`` on a
UML kernel's command line, the kernel's ``virtio_rpmsg_bus`` becomes the rpmsg driver
(host) and :class:`VhostUserMachine` the remote, exactly as on a board.

Theory of operation
-------------------
:class:`VhostUserDevice` listens on the socket (unlink, bind, listen), accepts one
frontend and unlinks the path again.  Control messages are processed by :meth:`process`
(also called by :class:`VhostUserDoorbell` whenever the rpmsg layer waits), one message
at a time and in order, from the one thread that uses the device.  The handlers form a
table (:data:`VhostUserDevice._HANDLERS`); everything that changes the session's state
lives in them:

* features, protocol features and the owner;
* the memory table: every region is ``mmap``-ed (``MAP_SHARED``, at its ``mmap
  offset``) and becomes an :class:`~openamp.metal.io.IoRegion` whose physical base is
  the region's *guest* address, so descriptor addresses (guest-physical) translate
  directly; vring addresses are *user* addresses and are translated through the
  regions' user bases;
* per vring: size, base, the three part addresses, the kick/call/err descriptors and the
  enabled flag;
* the config space (``GET_CONFIG``/``SET_CONFIG``) and, if negotiated, the status byte.

The object is also the :class:`~openamp.virtio.transport.VirtioTransport` of the device
(role ``DEVICE``): :meth:`vring` gives each vring's region and explicit part offsets,
:meth:`notify` writes the vring's *call* descriptor.  Without the ``STATUS`` protocol
feature (UML 6.1 does not know it) the status byte is synthesised: DRIVER_OK once the
memory table is there, every vring has its addresses and kick descriptor and is
enabled, *and the driver has kicked* (Linux kicks its receive ring right after it set
DRIVER_OK; see :attr:`VhostUserDevice.ready`).  :class:`VhostUserDoorbell` implements
the :class:`~openamp.metal.doorbell.Doorbell` protocol over an epoll set of the socket
and the kick descriptors, so the wait strategies and
:class:`~openamp.platform.machine.DoorbellWaiter` work unchanged.

When the driver goes away -- it disables or stops a ring after the device was ready,
resets the device, re-initialises it, or the socket closes -- the device counts as
*stopped*: :attr:`VhostUserDevice.on_stop` runs (before any reply is sent, so the
frontend cannot free the rings while we still use them) and the doorbell raises
:class:`~openamp.errors.PeerGoneError` from then on.  One session per device: it stays
stopped even if the driver sets the rings up again (a guest that re-binds
``virtio_rpmsg_bus``); serving that would need a fresh rpmsg device on new rings.

What this module does not do: it implements no virtio device itself (rpmsg runs on top
through the transport protocol), starts no thread, and never touches guest memory
except through the regions it hands out and the used-ring index it reports for
``GET_VRING_BASE``.  Messages use the host's byte order, little-endian on every host we
support (the ring layer refuses big-endian hosts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "VhostUserDevice": ".device",
    "VhostUserDoorbell": ".device",
    "CONFIG_NOTIFYID": ".wire",
    "DEFAULT_PROTOCOL_FEATURES": ".wire",
    "RPMSG_DEVICE_FEATURES": ".wire",
    "BackendRequest": ".wire",
    "ProtocolFeature": ".wire",
    "Request": ".wire",
    "VhostUserError": ".wire",
    "VringStoppedError": ".wire",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .device import VhostUserDevice as VhostUserDevice, VhostUserDoorbell as VhostUserDoorbell
    from .wire import (
        CONFIG_NOTIFYID as CONFIG_NOTIFYID,
        DEFAULT_PROTOCOL_FEATURES as DEFAULT_PROTOCOL_FEATURES,
        RPMSG_DEVICE_FEATURES as RPMSG_DEVICE_FEATURES,
        BackendRequest as BackendRequest,
        ProtocolFeature as ProtocolFeature,
        Request as Request,
        VhostUserError as VhostUserError,
        VringStoppedError as VringStoppedError,
    )

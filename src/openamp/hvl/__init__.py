"""Hypervisorless virtio: the monitor (device side) and the remote runtime (driver side).

A remote core runs ordinary virtio drivers — entropy, console, network — whose devices a
*monitor* on the Linux core emulates (kvmtool's "PMM" in the seed's demo4).  No
hypervisor traps the drivers' MMIO accesses: each device's virtio-mmio register window
is plain shared memory, and every write the other side must see is followed by an
inter-processor interrupt.  The transport and the devices are sans-IO and live in
:mod:`openamp.virtio.mmio` and :mod:`openamp.virtio.devices`; this package gives them
memory, an IPI line, a TAP interface, a terminal and processes.

Theory of operation
-------------------
* :class:`HvlLayout` is the memory map both sides agree on: one ``0x200``-byte window
  per device from offset 0, a pool per device after them, physical base ``0x37000000``.
* :class:`Monitor` writes the windows and serves: a diff pass over every device per IPI,
  one IPI back per pass, frames from a :class:`TapBackend` or :class:`SocketPairBackend`
  and console bytes from a pipe or terminal handed to the devices as they arrive.
* :class:`HvlRemote` is open-amp's HVL driver runtime: it finds the windows, runs the
  HVL handshake per device and queue, and starts the device drivers; blocking calls
  wait on the IPI line with a spin-then-block strategy.  :class:`RemoteFirmware` is the
  demo's remote on top of it (the Zephyr image's entropy test, a shell, ARP and ICMP).
* :class:`HvlSystem` runs both on one PC: the monitor in a thread here, the remote as
  ``python -m openamp.hvl remote`` in a child process, on a fresh POSIX shared memory
  and a UNIX-socket IPI line (one byte per IPI, as libmetal's Linux machine kicks).

Rules of this folder: the monitor serves from one thread and never sleeps on a timer;
everything that touches registers or rings goes through :mod:`openamp.virtio.mmio`;
whatever this package creates (shared memory, sockets, TAP interfaces, namespaces,
processes) it removes again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "UserMboxDoorbell": ".board",
    "open_uio": ".board",
    "RemoteFirmware": ".firmware",
    "HvlLayout": ".layout",
    "ConsoleBackend": ".monitor",
    "Monitor": ".monitor",
    "NetStack": ".netstack",
    "HvlRemote": ".remote",
    "HvlSystem": ".system",
    "NetBackendError": ".tap",
    "NetNamespace": ".tap",
    "SocketPairBackend": ".tap",
    "TapBackend": ".tap",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .board import UserMboxDoorbell as UserMboxDoorbell, open_uio as open_uio
    from .firmware import RemoteFirmware as RemoteFirmware
    from .layout import HvlLayout as HvlLayout
    from .monitor import ConsoleBackend as ConsoleBackend, Monitor as Monitor
    from .netstack import NetStack as NetStack
    from .remote import HvlRemote as HvlRemote
    from .system import HvlSystem as HvlSystem
    from .tap import (
        NetBackendError as NetBackendError,
        NetNamespace as NetNamespace,
        SocketPairBackend as SocketPairBackend,
        TapBackend as TapBackend,
    )

"""The C reference's Linux "generic" machine, with its fixed names.

``/dev/shm/openamp.shm`` (512 KiB, physical address = offset), the resource table at 0,
vrings at 0x4000 and 0x8000 (256 entries, align 0x1000), buffers at 0x10000 (0x40000
bytes), kicks as one byte on the UNIX stream socket ``/tmp/openamp.event.0``.  A program
on this machine pairs with the C demos (``rpmsg-echo``, ``msg-test-rpmsg-ping``, ...).
Only one such machine can run at a time on a PC; use :mod:`openamp.platform.virtual`
for anything that must run in parallel.
"""

from __future__ import annotations

from typing import Any

from ..virtio.virtqueue import Role
from .layout import LINUX_GENERIC
from .machine import RoleName, SharedMemoryMachine, SocketRole

SHM_NAME = "openamp.shm"
EVENT_PATH = "/tmp/openamp.event.0"


class LinuxGenericMachine(SharedMemoryMachine):
    """One side of the C Linux generic machine (see the module docstring)."""

    def __init__(
        self, *, role: Role | RoleName, socket: SocketRole | None = None, **kw: Any
    ) -> None:
        kw.setdefault("layout", LINUX_GENERIC)
        super().__init__(role=role, shm_name=SHM_NAME, event_path=EVENT_PATH, socket=socket, **kw)

"""The virtual machine: the Linux generic machine under names of its own.

:class:`VirtualMachine` is :class:`SharedMemoryMachine` with a unique name, so many can
run at once (tests, CI, several demos): the memory is ``/dev/shm/NAME.shm`` and the
doorbell ``/tmp/NAME.event``.  Give the same ``name`` to both sides.  (Both sides in one
process are :class:`openamp.platform.inprocess.InProcessPair`; firmware booted as a
process is :class:`openamp.platform.process.ProcessMachine`.)
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..metal.shm import unique_name
from ..virtio.virtqueue import Role
from .layout import LINUX_GENERIC, MachineLayout
from .machine import RoleName, SharedMemoryMachine, SocketRole, parse_role


def virtual_paths(name: str) -> tuple[str, str]:
    """``(shm_name, event_path)`` of the virtual machine called ``name``."""
    if not name or "/" in name:
        raise UsageError(f"virtual machine name {name!r} must be non-empty and have no '/'")
    return f"{name}.shm", f"/tmp/{name}.event"


class VirtualMachine(SharedMemoryMachine):
    """A shared-memory machine under a unique ``name`` (generated when None)."""

    survivor_cleans_up = True

    def __init__(
        self,
        *,
        role: Role | RoleName,
        name: str | None = None,
        socket: SocketRole | None = None,
        layout: MachineLayout = LINUX_GENERIC,
        **kw: Any,
    ) -> None:
        self.name = name or unique_name("openamp-vm")
        shm_name, event_path = virtual_paths(self.name)
        super().__init__(
            role=role, shm_name=shm_name, event_path=event_path, socket=socket, layout=layout, **kw
        )


__all__ = ["VirtualMachine", "parse_role", "virtual_paths"]

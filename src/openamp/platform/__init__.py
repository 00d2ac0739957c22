"""Concrete machines: the C Linux generic machine, the virtual one, an in-process pair, the
vhost-user backend that puts a real Linux kernel (User-mode Linux) on the driver side, and
the UML remoteproc machine whose processors a real kernel's remoteproc core boots."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "LINUX_GENERIC": ".layout",
    "MachineLayout": ".layout",
    "EVENT_PATH": ".linux_generic",
    "LinuxGenericMachine": ".linux_generic",
    "SHM_NAME": ".linux_generic",
    "SharedMemoryMachine": ".machine",
    "parse_role": ".machine",
    "VhostUserMachine": ".vhost_user",
    "UmlRprocMachine": ".uml_rproc",
    "InProcessPair": ".inprocess",
    "VirtualMachine": ".virtual",
    "virtual_paths": ".virtual",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .inprocess import InProcessPair as InProcessPair
    from .layout import (
        LINUX_GENERIC as LINUX_GENERIC,
        MachineLayout as MachineLayout,
    )
    from .linux_generic import (
        EVENT_PATH as EVENT_PATH,
        SHM_NAME as SHM_NAME,
        LinuxGenericMachine as LinuxGenericMachine,
    )
    from .machine import (
        SharedMemoryMachine as SharedMemoryMachine,
        parse_role as parse_role,
    )
    from .uml_rproc import (
        UmlRprocMachine as UmlRprocMachine,
    )
    from .vhost_user import (
        VhostUserMachine as VhostUserMachine,
    )
    from .virtual import (
        VirtualMachine as VirtualMachine,
        virtual_paths as virtual_paths,
    )

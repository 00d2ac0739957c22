"""Concrete machines: the C Linux generic machine, the virtual one, an in-process pair, and
the vhost-user backend that puts a real Linux kernel (User-mode Linux) on the driver side."""

from .layout import LINUX_GENERIC, MachineLayout
from .linux_generic import EVENT_PATH, SHM_NAME, LinuxGenericMachine
from .machine import DoorbellWaiter, SharedMemoryMachine, parse_role
from .vhost_user import VhostUserDevice, VhostUserMachine
from .virtual import InProcessPair, VirtualMachine, virtual_paths

__all__ = [
    "EVENT_PATH",
    "LINUX_GENERIC",
    "SHM_NAME",
    "DoorbellWaiter",
    "InProcessPair",
    "LinuxGenericMachine",
    "MachineLayout",
    "SharedMemoryMachine",
    "VhostUserDevice",
    "VhostUserMachine",
    "VirtualMachine",
    "parse_role",
    "virtual_paths",
]

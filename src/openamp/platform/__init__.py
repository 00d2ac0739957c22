"""Concrete machines: the C Linux generic machine, the virtual one, and an in-process pair."""

from .layout import LINUX_GENERIC, MachineLayout
from .linux_generic import EVENT_PATH, SHM_NAME, LinuxGenericMachine
from .machine import DoorbellWaiter, SharedMemoryMachine, parse_role
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
    "VirtualMachine",
    "parse_role",
    "virtual_paths",
]

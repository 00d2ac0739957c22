"""Memory and doorbells (libmetal's role): regions, shared memory, kicks, waiting.

Nothing above this layer opens a file, a socket or sleeps; everything that does lives
here and is handed in.
"""

from .doorbell import (
    KICK_BYTE,
    Doorbell,
    EventFdDoorbell,
    InProcessDoorbell,
    UnixSocketDoorbell,
    UnixSocketServer,
)
from .io import AddressSpace, IoRegion, fence
from .shm import SHM_DIR, SharedMemory, unique_name
from .wait import (
    BlockingWait,
    PollingWait,
    SpinThenBlockWait,
    SpinWait,
    WaitStrategy,
    wait_strategy,
)

__all__ = [
    "KICK_BYTE",
    "SHM_DIR",
    "AddressSpace",
    "BlockingWait",
    "Doorbell",
    "EventFdDoorbell",
    "InProcessDoorbell",
    "IoRegion",
    "PollingWait",
    "SharedMemory",
    "SpinThenBlockWait",
    "SpinWait",
    "UnixSocketDoorbell",
    "UnixSocketServer",
    "WaitStrategy",
    "fence",
    "unique_name",
    "wait_strategy",
]

"""Memory and doorbells (libmetal's role): regions, shared memory, kicks, waiting.

Nothing above this layer opens a file, a socket or sleeps; everything that does lives
here and is handed in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "Doorbell": ".doorbell",
    "EventFdDoorbell": ".doorbell",
    "InProcessDoorbell": ".doorbell",
    "KICK_BYTE": ".doorbell",
    "UnixSocketDoorbell": ".doorbell",
    "UnixSocketServer": ".doorbell",
    "AddressSpace": ".io",
    "IoRegion": ".io",
    "fence": ".io",
    "SHM_DIR": ".shm",
    "SharedMemory": ".shm",
    "unique_name": ".shm",
    "BlockingWait": ".wait",
    "PollingWait": ".wait",
    "SpinThenBlockWait": ".wait",
    "SpinWait": ".wait",
    "WaitStrategy": ".wait",
    "wait_strategy": ".wait",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .doorbell import (
        KICK_BYTE as KICK_BYTE,
        Doorbell as Doorbell,
        EventFdDoorbell as EventFdDoorbell,
        InProcessDoorbell as InProcessDoorbell,
        UnixSocketDoorbell as UnixSocketDoorbell,
        UnixSocketServer as UnixSocketServer,
    )
    from .io import (
        AddressSpace as AddressSpace,
        IoRegion as IoRegion,
        fence as fence,
    )
    from .shm import (
        SHM_DIR as SHM_DIR,
        SharedMemory as SharedMemory,
        unique_name as unique_name,
    )
    from .wait import (
        BlockingWait as BlockingWait,
        PollingWait as PollingWait,
        SpinThenBlockWait as SpinThenBlockWait,
        SpinWait as SpinWait,
        WaitStrategy as WaitStrategy,
        wait_strategy as wait_strategy,
    )

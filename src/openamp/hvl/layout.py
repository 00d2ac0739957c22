"""Where a hypervisorless system puts things in its shared memory: windows and device pools.

The reference monitor (kvmtool ``--rsld --pmm --no-dtb``) puts device *i*'s register
window at ``shm + i * 0x200`` and gives each device a pool from a running offset (rng
and console ``0x6000`` bytes, net ``0x80000``), advertised in the window's
``SHMBase``/``SHMLen``.  The seed's demo4 maps ``0x1000000`` bytes at physical
``0x37000000`` with the rng first and the network second.

One difference, on purpose: the reference starts the pools at the shared memory's base,
on top of the windows (its Zephyr remote ignores the advertised pool and allocates from
its linker script's ``__shmem0_pool_start``).  Our pools start at ``pools_at``, one page
after the windows by default; ``pools_at=0`` reproduces the reference's values, and our
remote then leaves the windows out of its pools.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..errors import UsageError
from ..virtio.mmio import PAGE_SIZE, WINDOW_SIZE
from ..virtio.ring import align_up

DEVICE_KINDS: Final = ("rng", "net", "console")
"""The device types a monitor can emulate, by the name layouts and command lines use."""

POOL_SIZES: Final = {"rng": 0x6000, "console": 0x6000, "net": 0x80000}
"""Per-device pool sizes, as kvmtool's ``get_mem_size`` gives them."""

SEED_PHYS_BASE: Final = 0x37000000
"""The seed's ``--shmem-addr``: where demo4's shared memory sits on the ZynqMP."""
SEED_SHM_SIZE: Final = 0x1000000


@dataclass(frozen=True)
class HvlLayout:
    """The memory map both sides agree on.

    ``devices`` in window order (the seed: rng at ``0x37000000``, net at
    ``0x37000200``; we add the console third), ``phys_base`` the physical address of
    the first byte, ``shm_size`` the bytes mapped, ``windows_at`` the offset of window
    0, ``pools_at`` the offset of the first pool.
    """

    devices: tuple[str, ...] = DEVICE_KINDS
    phys_base: int = SEED_PHYS_BASE
    shm_size: int = SEED_SHM_SIZE
    windows_at: int = 0
    pools_at: int | None = None
    """None: the first page boundary after the windows."""

    def __post_init__(self) -> None:
        unknown = [d for d in self.devices if d not in DEVICE_KINDS]
        if unknown or not self.devices:
            raise UsageError(
                f"devices must be some of {', '.join(DEVICE_KINDS)}, got {list(self.devices)}"
            )
        if self.phys_base % PAGE_SIZE or self.phys_base < 0:
            raise UsageError(f"phys_base {self.phys_base:#x} is not page-aligned")
        if self.windows_at % WINDOW_SIZE or self.windows_at < 0:
            raise UsageError(
                f"windows_at {self.windows_at:#x} is not a multiple of {WINDOW_SIZE:#x}"
            )
        end = self.pool(len(self.devices) - 1)
        if end[0] + end[1] > self.shm_size or self.windows_end > self.shm_size:
            raise UsageError(
                f"{self.shm_size:#x} bytes of shared memory do not hold the windows and pools "
                f"(they need {max(end[0] + end[1], self.windows_end):#x})"
            )

    @property
    def windows_end(self) -> int:
        """Offset one past the last window."""
        return self.windows_at + WINDOW_SIZE * len(self.devices)

    @property
    def first_pool(self) -> int:
        """Offset of the first device's pool."""
        if self.pools_at is not None:
            return self.pools_at
        return align_up(self.windows_end, PAGE_SIZE)

    def window(self, index: int) -> int:
        """Offset of device ``index``'s register window."""
        return self.windows_at + WINDOW_SIZE * index

    def pool(self, index: int) -> tuple[int, int]:
        """``(offset, size)`` of device ``index``'s pool."""
        at = self.first_pool
        for kind in self.devices[:index]:
            at += POOL_SIZES[kind]
        return at, POOL_SIZES[self.devices[index]]

    def describe(self) -> list[str]:
        """One line per device as the reference monitor logs it."""
        from ..virtio.mmio import VENDOR_LKVM
        from .monitor import DEVICE_IDS

        return [
            f"virtio-mmio.devices={WINDOW_SIZE:#x}@{self.phys_base + self.window(i):#x} "
            f"[{VENDOR_LKVM:#x}:{DEVICE_IDS[kind]:#x}]"
            for i, kind in enumerate(self.devices)
        ]

"""Firmware images for :meth:`RemoteProc.load`: ELF files (and, elsewhere, Python firmware).

:class:`ElfFirmware` adapts an :class:`~openamp.remoteproc.elf.ElfImage` to the
:class:`~openamp.remoteproc.core.Firmware` protocol.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from typing import Any

from ..metal.io import IoRegion
from .elf import ElfImage, load_segments
from .store import ImageStore, open_image

_HOST_MACHINES = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64", "arm64": "EM_AARCH64"}


class ElfFirmware:
    """An ELF firmware image; ``path`` is set when it came from a file."""

    def __init__(self, image: ElfImage, name: str, path: str | None = None) -> None:
        self.image = image
        self.name = name
        self.path = path

    @classmethod
    def open(cls, source: str | os.PathLike[str] | bytes | ImageStore | Any) -> ElfFirmware:
        """Open a path, bytes or an image store as an ELF firmware."""
        path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
        store = open_image(source)
        return cls(ElfImage(store), store.name, path)

    @property
    def entry(self) -> int:
        """``e_entry``: the boot address."""
        return int(self.image.entry)

    def rsc_table(self) -> tuple[bytes, int] | None:
        """The ``.resource_table`` section's bytes and device address, if any."""
        loc = self.image.rsc_table
        if loc is None:
            return None
        return self.image.read_rsc_table(), loc.da

    def load_segments(self, mmap: Callable[[int, int], tuple[IoRegion, int]]) -> None:
        """Place every loadable segment by physical address."""
        load_segments(self.image, mmap)

    @property
    def runs_here(self) -> bool:
        """Whether this PC can execute the image as a process (same architecture, 64-bit)."""
        want = _HOST_MACHINES.get(platform.machine())
        return self.path is not None and self.image.machine == want and self.image.elf_class == 64

"""Python firmware: programs the process driver boots as a remote processor.

A Python firmware is a module with a ``main(ctx: FirmwareContext) -> int`` function and,
optionally, ``RESOURCE_TABLE`` (a :class:`ResourceTable`) and ``RSC_DA`` (where the
table lives); without them it gets :func:`default_table` at :data:`TABLE_DA`.  The
built-in ones are listed in :data:`BUILTIN` (``"echo"``).

The process driver and a firmware — Python or C — agree on this contract:

* one shared-memory file is the remote's memory; device/physical address = offset;
* the environment gives ``OPENAMP_SHM`` (its path), ``OPENAMP_SHM_SIZE``,
  ``OPENAMP_EVENT`` (the host's UNIX socket; the firmware connects as client) and
  ``OPENAMP_RSC_DA`` (the resource table's address, written there by the host);
* a kick is one byte 0x01 on the socket either way;
* the firmware is the virtio *device*; the host drives it;
* optionally ``OPENAMP_FIRMWARE_OPTIONS`` gives the firmware's options as
  ``key=value`` words separated by commas (:attr:`FirmwareContext.options`), and
  ``OPENAMP_DA_WINDOW`` = ``da,pa,size`` says that device addresses in
  ``[da, da + size)`` lie at ``pa`` in the memory file (a remote with local RAM, as on
  the UML remoteproc machine); every other address is an offset in the file.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

from ..errors import UsageError
from ..metal.io import IoRegion
from ..remoteproc.rsc_table import Carveout, ResourceTable, Trace, Vdev, VdevVring
from ..rpmsg.wire import VIRTIO_RPMSG_F_NS
from ..virtio.ring import VIRTIO_ID_RPMSG

MEMORY_SIZE = 0x80000
"""Size of the memory file a firmware gets by default (512 KiB)."""
TABLE_DA = 0x70000
"""Where the default resource table lives."""
POOL_DA, POOL_SIZE = 0x10000, 0x40000
TRACE_DA, TRACE_SIZE = 0x60000, 0x1000
VRING0_DA, VRING1_DA, VRING_NUM, VRING_ALIGN = 0x4000, 0x8000, 256, 0x1000

BUILTIN = {
    "echo": "openamp.firmware.echo",
    "hello": "openamp.firmware.hello",
    "matrix": "openamp.firmware.matrix",
    "multi-services": "openamp.firmware.multi_services",
    "proxy": "openamp.firmware.proxy_demo",
    "rpc": "openamp.firmware.rpc_demo",
    "sample": "openamp.firmware.sample",
}
"""Built-in Python firmware: name -> module."""


def default_table() -> ResourceTable:
    """The table of a Python firmware that declares none.

    A carveout ``vdev0buffer`` for the rpmsg buffers (the Linux convention), a trace
    buffer ``trace0`` and one rpmsg vdev with the name service, rings as in the C
    Linux generic machine.
    """
    return ResourceTable(
        [
            Carveout(da=POOL_DA, pa=POOL_DA, len=POOL_SIZE, name="vdev0buffer"),
            Trace(da=TRACE_DA, len=TRACE_SIZE, name="trace0"),
            Vdev(
                id=VIRTIO_ID_RPMSG,
                notifyid=0,
                dfeatures=1 << VIRTIO_RPMSG_F_NS,
                vrings=[
                    VdevVring(VRING0_DA, VRING_ALIGN, VRING_NUM, 1),
                    VdevVring(VRING1_DA, VRING_ALIGN, VRING_NUM, 2),
                ],
            ),
        ]
    )


def load_module(spec: str) -> ModuleType:
    """The module of a built-in firmware name or a dotted module path."""
    name = BUILTIN.get(spec, spec)
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise UsageError(
            f"no Python firmware {spec!r} (built-in: {', '.join(sorted(BUILTIN))}; "
            f"or a module path): {exc}"
        ) from None
    if not callable(getattr(module, "main", None)):
        raise UsageError(f"Python firmware {name} has no main(ctx) function")
    return module


class PythonFirmware:
    """A Python firmware module as a :class:`~openamp.remoteproc.core.Firmware`."""

    entry = 0

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.module = load_module(spec)
        self.name = f"python:{spec}"

    def rsc_table(self) -> tuple[bytes, int]:
        """The module's ``RESOURCE_TABLE`` at ``RSC_DA``, or the default table."""
        table = getattr(self.module, "RESOURCE_TABLE", None) or default_table()
        return table.to_bytes(), int(getattr(self.module, "RSC_DA", TABLE_DA))

    def load_segments(self, mmap: Callable[[int, int], tuple[IoRegion, int]]) -> None:
        """Nothing to place: the code runs in its own interpreter."""

    def command(self, python: str) -> list[str]:
        """The command line that runs this firmware."""
        return [python, "-m", "openamp.firmware", self.spec]


__all__ = [
    "BUILTIN",
    "MEMORY_SIZE",
    "TABLE_DA",
    "PythonFirmware",
    "default_table",
    "load_module",
]

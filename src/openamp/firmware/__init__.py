"""Python firmware: programs the process driver boots as a remote processor.

A Python firmware is a module with a ``main(ctx: FirmwareContext) -> int`` function and,
optionally, ``RESOURCE_TABLE`` (a :class:`ResourceTable`) and ``RSC_DA`` (where the
table lives); without them it gets :func:`default_table` at :data:`TABLE_DA`.  The
built-in ones are listed in :data:`BUILTIN` (``"echo"``).  Your own is named by
``python:SPEC`` (or the SPEC alone, in the API): a module path (``my_firmware``,
``package.module``) found on ``sys.path`` or in the current directory, or a ``.py`` file
(``path/to/file.py``, relative to the current directory).

The firmware process finds what its host finds: it is started with the host's
``sys.path`` (in ``PYTHONPATH``), with the current directory first, as ``python -m``
does, and unbuffered output, so every ``print()`` reaches the host's console at once.

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
import importlib.util
import os
import re
import sys
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


_MODULE_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def is_file_spec(spec: str) -> bool:
    """Whether ``spec`` names a ``.py`` file rather than a module path."""
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def check_spec(spec: str) -> str:
    """``spec`` if it can name a Python firmware, else :class:`UsageError` saying why."""
    if not spec:
        raise UsageError(
            "python: needs a module or a file after the colon: python:my_firmware, "
            "python:package.module or python:path/to/firmware.py"
        )
    if not is_file_spec(spec) and spec not in BUILTIN and not _MODULE_PATH.fullmatch(spec):
        raise UsageError(
            f"{spec!r} is neither a module path (package.module) nor a .py file "
            "(path/to/firmware.py)"
        )
    return spec


def find_firmware(spec: str) -> None:
    """Raise :class:`UsageError` unless ``spec`` names a firmware that exists.

    Looks without running it: a ``.py`` file must exist, a module must be found on
    ``sys.path`` or in the current directory (its parent packages are imported).
    """
    check_spec(spec)
    if is_file_spec(spec):
        if not os.path.isfile(spec):
            raise UsageError(f"no Python firmware file {spec!r}")
        return
    name = BUILTIN.get(spec, spec)
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        found = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        found = None
    finally:
        if added:
            sys.path.remove(cwd)
    if found is None:
        raise UsageError(
            f"no Python firmware {spec!r}: no module {name!r} on sys.path or in {cwd} "
            f"(built-in: {', '.join(sorted(BUILTIN))}; or python:path/to/file.py)"
        )


def search_path() -> list[str]:
    """This process's ``sys.path`` with the current directory first, every entry absolute.

    What a firmware process is given (``PYTHONPATH``), so that it imports what the
    host imports; the current directory comes first as with ``python -m`` (a console
    script's own ``sys.path`` lacks it).
    """
    cwd = os.getcwd()
    out = [cwd]
    for entry in sys.path:
        path = os.path.abspath(entry) if entry else cwd
        if path not in out:
            out.append(path)
    return out


def _import_file(path: str) -> ModuleType:
    if not os.path.isfile(path):
        raise UsageError(f"no Python firmware file {path!r}")
    name = "openamp_firmware_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path!r} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # its directory is importable, as for a script, so it can import its neighbours
    folder = os.path.dirname(path)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        if added:
            sys.path.remove(folder)
    return module


def load_module(spec: str) -> ModuleType:
    """The module of a built-in firmware name, a module path or a ``.py`` file.

    A module path is looked up on ``sys.path`` and then in the current directory.
    Errors in the firmware's own import (a syntax error, a failing import inside it)
    propagate as they are, with their traceback; a firmware that cannot be found or has
    no ``main`` raises :class:`UsageError`.
    """
    check_spec(spec)
    if is_file_spec(spec):
        module = _import_file(os.path.abspath(spec))
        name = spec
    else:
        name = BUILTIN.get(spec, spec)
        cwd = os.getcwd()
        added = cwd not in sys.path and "" not in sys.path
        if added:
            sys.path.append(cwd)
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
                raise  # the firmware itself imports something that is missing
            raise UsageError(
                f"no Python firmware {spec!r}: no module {exc.name!r} on sys.path or in "
                f"{cwd} (built-in: {', '.join(sorted(BUILTIN))}; or python:path/to/file.py)"
            ) from None
        finally:
            if added:
                sys.path.remove(cwd)
    if not callable(getattr(module, "main", None)):
        raise UsageError(f"Python firmware {name} has no main(ctx) function")
    return module


class PythonFirmware:
    """A Python firmware module as a :class:`~openamp.remoteproc.core.Firmware`."""

    entry = 0

    def __init__(self, spec: str, options: dict[str, str] | None = None) -> None:
        check_spec(spec)
        # a file is named by its absolute path: the firmware process may start elsewhere
        self.spec = os.path.abspath(spec) if is_file_spec(spec) else spec
        self.module = load_module(self.spec)
        self.name = f"python:{spec}"
        self.options = dict(options or {})
        """The firmware's options (``ctx.options`` in the firmware), e.g. ``{"count": "20"}``."""
        for key, value in self.options.items():
            if not key or any(c in key + value for c in ",=\n"):
                raise UsageError(f"firmware option {key!r}={value!r}: no ',', '=' or newline")

    def rsc_table(self) -> tuple[bytes, int]:
        """The module's ``RESOURCE_TABLE`` at ``RSC_DA``, or the default table."""
        table = getattr(self.module, "RESOURCE_TABLE", None) or default_table()
        return table.to_bytes(), int(getattr(self.module, "RSC_DA", TABLE_DA))

    def load_segments(self, mmap: Callable[[int, int], tuple[IoRegion, int]]) -> None:
        """Nothing to place: the code runs in its own interpreter."""

    def command(self, python: str) -> list[str]:
        """The command line that runs this firmware."""
        return [python, "-m", "openamp.firmware", self.spec]

    def environment(self) -> dict[str, str]:
        """What the firmware process adds to its environment: this process's
        ``sys.path`` (:func:`search_path`), unbuffered output, and the options."""
        env = {"PYTHONPATH": os.pathsep.join(search_path()), "PYTHONUNBUFFERED": "1"}
        if self.options:
            env["OPENAMP_FIRMWARE_OPTIONS"] = ",".join(f"{k}={v}" for k, v in self.options.items())
        return env


__all__ = [
    "BUILTIN",
    "MEMORY_SIZE",
    "TABLE_DA",
    "PythonFirmware",
    "check_spec",
    "default_table",
    "find_firmware",
    "load_module",
    "search_path",
]

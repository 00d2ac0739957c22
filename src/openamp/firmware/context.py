"""What a running Python firmware gets: its memory, table, trace buffer and rpmsg device.

:meth:`FirmwareContext.from_env` reads the process-driver contract (see
:mod:`openamp.firmware`), maps the memory, validates the table the host wrote, connects
the doorbell and brings up the rpmsg device in the virtio device role.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections import deque
from collections.abc import Iterator
from types import FrameType

from ..errors import OpenAMPError, OpenAMPTimeoutError, ResourceTableError, UsageError
from ..metal.doorbell import UnixSocketDoorbell
from ..metal.io import IoRegion
from ..metal.shm import SharedMemory, unlink_when_unheld
from ..metal.wait import DoorbellWaiter, wait_strategy
from ..remoteproc.rsc_table import (
    FW_RSC_ADDR_ANY,
    RSC_VDEV,
    VDEV_STATUS_OFFSET,
    Carveout,
    ResourceTable,
    Trace,
)
from ..remoteproc.virtio import RscVdevTransport
from ..rpmsg.events import EventHook
from ..rpmsg.virtio import RpmsgVirtioDevice, ShmPool
from ..virtio.ring import VIRTIO_CONFIG_STATUS_DRIVER_OK
from ..virtio.virtqueue import Role


def da_to_offset(da: int, window: tuple[int, int, int] | None) -> int:
    """Where device address ``da`` lies in the memory file: through the local-RAM
    window when it falls inside it, else the address itself."""
    if window is not None:
        w_da, w_pa, w_size = window
        if w_da <= da < w_da + w_size:
            return w_pa + (da - w_da)
    return da


class _TraceHandler(logging.Handler):
    """Log records as lines in a firmware's trace buffer."""

    def __init__(self, ctx: FirmwareContext, prefix: str) -> None:
        super().__init__(logging.INFO)
        self.ctx = ctx
        self.prefix = prefix

    def emit(self, record: logging.LogRecord) -> None:
        level = "" if record.levelno <= logging.INFO else f"{record.levelname.lower()}: "
        self.ctx.trace(f"{self.prefix}: {level}{record.getMessage()}")


def _buffer_pool(
    table: ResourceTable, region: IoRegion, window: tuple[int, int, int] | None
) -> ShmPool | None:
    """The ``vdev0buffer`` carveout, where every buffer the host posts must lie.

    Only under the process driver's contract (device address = offset): behind a
    device-address window the host allocates the buffers where it likes (Linux does).
    """
    if window is not None:
        return None
    for entry in table.entries:
        if isinstance(entry, Carveout) and entry.name == "vdev0buffer":
            if entry.da == FW_RSC_ADDR_ANY:
                return None
            if entry.da + entry.len > region.size:
                raise ResourceTableError(
                    f"carveout vdev0buffer [{entry.da:#x}, +{entry.len:#x}) is outside the "
                    f"firmware's memory ({region.size:#x} bytes)"
                )
            return ShmPool(entry.da, entry.len)
    return None


def _options(text: str) -> dict[str, str]:
    """``key=value`` words separated by commas (``OPENAMP_FIRMWARE_OPTIONS``)."""
    options: dict[str, str] = {}
    for word in filter(None, (w.strip() for w in text.split(","))):
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise UsageError(f"OPENAMP_FIRMWARE_OPTIONS: {word!r} is not key=value")
        options[key.strip()] = value.strip()
    return options


def _window(text: str) -> tuple[int, int, int] | None:
    """``da,pa,size`` (``OPENAMP_DA_WINDOW``), or None when unset."""
    if not text:
        return None
    try:
        da, pa, size = (int(v, 0) for v in text.split(","))
    except ValueError:
        raise UsageError(f"OPENAMP_DA_WINDOW={text!r} is not da,pa,size") from None
    if min(da, pa) < 0 or size <= 0:
        raise UsageError(f"OPENAMP_DA_WINDOW={text!r}: negative address or empty window")
    return da, pa, size


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise UsageError(f"{name} is not set: a firmware is started by the process driver")
    return value


class FirmwareContext:
    """The environment of one running firmware (see the module docstring)."""

    def __init__(
        self,
        shm: SharedMemory | None,
        region: IoRegion,
        doorbell: UnixSocketDoorbell,
        table_da: int,
        rpmsg: RpmsgVirtioDevice,
        table: ResourceTable,
        *,
        options: dict[str, str] | None = None,
        window: tuple[int, int, int] | None = None,
    ) -> None:
        self.shm = shm
        """The memory file (None when the firmware runs in the host's process)."""
        self.memory = region
        self.doorbell = doorbell
        self.table_da = table_da
        self.table = table
        self.rpmsg = rpmsg
        self.trace_lines: deque[str] = deque(maxlen=1000)
        """The last 1000 lines given to :meth:`trace`, also without a trace buffer."""
        self.options: dict[str, str] = dict(options or {})
        """The firmware's options (``OPENAMP_FIRMWARE_OPTIONS``), e.g. ``{"trailing": "stale"}``."""
        self.window = window
        """``(da, pa, size)``: device addresses of the remote's local RAM and where it lies
        in the memory file (``OPENAMP_DA_WINDOW``), or None: every address is an offset."""
        self._trace = next((e for e in table.entries if isinstance(e, Trace)), None)
        self._trace_pos = 0

    @classmethod
    def from_env(
        cls,
        wait: str = "spin-then-block",
        timeout: float = 10.0,
        capture: EventHook | None = None,
    ) -> FirmwareContext:
        """Connect as the process driver's environment says; ``capture`` records the
        firmware's (device side) rpmsg events (:mod:`openamp.rpmsg.events`)."""

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            # A polite stop: unwind through the caller's cleanup (NS destroy, unmap).
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, on_sigterm)
        path = _env("OPENAMP_SHM")
        size = int(_env("OPENAMP_SHM_SIZE"), 0)
        event = _env("OPENAMP_EVENT")
        options = _options(os.environ.get("OPENAMP_FIRMWARE_OPTIONS", ""))
        window = _window(os.environ.get("OPENAMP_DA_WINDOW", ""))
        table_da = int(_env("OPENAMP_RSC_DA"), 0)
        table_off = da_to_offset(table_da, window)
        # If the host was killed, the firmware is the survivor and removes the memory the
        # process driver made for it; behind a window the memory is the host's own.
        shm = SharedMemory.open_file(path, size, create=False, unlink_when_last=window is None)
        try:
            region = shm.region(name=os.path.basename(path))
            view = region.view(table_off, region.size - table_off)
            table = ResourceTable.parse(view)
            found = table.find(RSC_VDEV, 0)
            if found is None:
                raise UsageError("the resource table has no vdev entry")
            doorbell = UnixSocketDoorbell.connect(event, timeout)
            waiter = DoorbellWaiter(doorbell, wait_strategy(wait))
            # Linux writes the vring addresses of vrings it allocates (da = ANY in the
            # firmware's table) only when its virtio driver probes, just before it sets
            # DRIVER_OK: read the vdev entry after that.
            status_at = table_off + found[0] + VDEV_STATUS_OFFSET
            if not waiter.wait(
                lambda: bool(region.read8(status_at) & VIRTIO_CONFIG_STATUS_DRIVER_OK), timeout
            ):
                raise OpenAMPTimeoutError(
                    f"the host did not set DRIVER_OK in the vdev entry within {timeout} s"
                )
            transport = RscVdevTransport(
                region.subregion(table_off, region.size - table_off),
                found[0],
                ring_io=region,
                role=Role.DEVICE,
                notify=lambda _id: doorbell.kick(),
            )
            rpmsg = RpmsgVirtioDevice(
                transport,
                shm=region,
                pool=_buffer_pool(table, region, window),
                waiter=waiter,
                ready_timeout=timeout,
                capture=capture,
            )
        except BaseException:
            shm.close()
            raise
        return cls(shm, region, doorbell, table_da, rpmsg, table, options=options, window=window)

    def trace(self, line: str) -> None:
        """Append a line to the firmware's trace buffer (if it declares one)."""
        self.trace_lines.append(line.rstrip("\n"))
        t = self._trace
        if t is None:
            return
        data = (line.rstrip("\n") + "\n").encode()
        room = t.len - 1 - self._trace_pos
        if room <= 0:
            return
        data = data[:room]
        self.memory.write_block(da_to_offset(t.da, self.window) + self._trace_pos, data + b"\0")
        self._trace_pos += len(data)

    @contextlib.contextmanager
    def log_to_trace(self, logger: logging.Logger, prefix: str) -> Iterator[None]:
        """Copy ``logger``'s records of level INFO and above into the trace buffer.

        Services log their steps; a firmware shows them to the host this way.
        """
        handler = _TraceHandler(self, prefix)
        logger.addHandler(handler)
        old_level = logger.level
        logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)

    def close(self) -> None:
        """Destroy the endpoints (announcing it), disconnect and unmap.

        When the host is gone (killed, say), the firmware is the survivor and removes the
        memory file once nobody holds it: a dying host closes its socket before the
        kernel has dropped its hold on the memory, hence the short wait.
        """
        with contextlib.suppress(OpenAMPError):
            self.rpmsg.close()
        host_gone = self.doorbell.peer_closed()
        self.doorbell.close()
        if self.shm is not None:
            self.shm.close()
            if host_gone and self.shm.unlink_when_last and os.path.exists(self.shm.path):
                unlink_when_unheld(self.shm.path, wait=5.0)

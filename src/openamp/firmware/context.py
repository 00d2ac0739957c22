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

from ..errors import OpenAMPError, UsageError
from ..metal.doorbell import UnixSocketDoorbell
from ..metal.io import IoRegion
from ..metal.shm import SharedMemory
from ..metal.wait import DoorbellWaiter, wait_strategy
from ..remoteproc.rsc_table import RSC_VDEV, ResourceTable, Trace
from ..remoteproc.virtio import RscVdevTransport
from ..rpmsg.virtio import RpmsgVirtioDevice
from ..virtio.virtqueue import Role


class _TraceHandler(logging.Handler):
    """Log records as lines in a firmware's trace buffer."""

    def __init__(self, ctx: FirmwareContext, prefix: str) -> None:
        super().__init__(logging.INFO)
        self.ctx = ctx
        self.prefix = prefix

    def emit(self, record: logging.LogRecord) -> None:
        level = "" if record.levelno <= logging.INFO else f"{record.levelname.lower()}: "
        self.ctx.trace(f"{self.prefix}: {level}{record.getMessage()}")


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
        self._trace = next((e for e in table.entries if isinstance(e, Trace)), None)
        self._trace_pos = 0

    @classmethod
    def from_env(cls, wait: str = "spin-then-block", timeout: float = 10.0) -> FirmwareContext:
        """Connect as the process driver's environment says."""

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            # A polite stop: unwind through the caller's cleanup (NS destroy, unmap).
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, on_sigterm)
        path = _env("OPENAMP_SHM")
        size = int(_env("OPENAMP_SHM_SIZE"), 0)
        event = _env("OPENAMP_EVENT")
        table_da = int(_env("OPENAMP_RSC_DA"), 0)
        shm = SharedMemory.open_file(path, size, create=False)
        try:
            region = shm.region(name=os.path.basename(path))
            view = region.view(table_da, region.size - table_da)
            table = ResourceTable.parse(view)
            found = table.find(RSC_VDEV, 0)
            if found is None:
                raise UsageError("the resource table has no vdev entry")
            doorbell = UnixSocketDoorbell.connect(event, timeout)
            transport = RscVdevTransport(
                region.subregion(table_da, region.size - table_da),
                found[0],
                ring_io=region,
                role=Role.DEVICE,
                notify=lambda _id: doorbell.kick(),
            )
            rpmsg = RpmsgVirtioDevice(
                transport,
                shm=region,
                waiter=DoorbellWaiter(doorbell, wait_strategy(wait)),
                ready_timeout=timeout,
            )
        except BaseException:
            shm.close()
            raise
        return cls(shm, region, doorbell, table_da, rpmsg, table)

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
        self.memory.write_block(t.da + self._trace_pos, data + b"\0")
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
        """Destroy the endpoints (announcing it), disconnect and unmap."""
        with contextlib.suppress(OpenAMPError):
            self.rpmsg.close()
        self.doorbell.close()
        if self.shm is not None:
            self.shm.close()

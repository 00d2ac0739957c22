"""The monitor (kvmtool's "PMM"): emulates the devices of a remote core's virtio drivers.

Theory of operation
-------------------
The monitor owns the shared memory's windows: at construction it writes every device's
register window (:meth:`openamp.virtio.mmio.MmioDevice.init_window`) as kvmtool's
``virtio_mmio_init`` does.  Then it serves: on every IPI from the remote it runs one
diff pass over *every* device, in window order (one IPI line serves them all, as on the
board), and after the pass it sends at most one IPI back, however many devices wanted
to interrupt.  Input from the outside — frames from the TAP interface or socket pair,
bytes from the console's terminal or pipe — is handed to the device model and the
device's queues are serviced at once, without waiting for an IPI.

One thread runs everything (:meth:`Monitor.serve`, or :meth:`Monitor.start` for a
background thread): a ``poll`` over the doorbell, the network backend, the console
input and a wake-up pipe.  Nothing sleeps on a timer: the reference sleeps 1 ms per
device per notification, we do not.

What this module must not do: look into rings or registers itself (that is
:mod:`openamp.virtio.mmio` and the device models), or block in a device callback.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Final

from ..errors import PeerGoneError, UsageError
from ..metal.doorbell import Doorbell
from ..metal.io import IoRegion
from ..virtio.devices.console import ConsoleDevice
from ..virtio.devices.net import NetDevice
from ..virtio.devices.rng import RngDevice
from ..virtio.mmio import WINDOW_SIZE, DeviceModel, MmioDevice
from .layout import HvlLayout
from .tap import NetBackend

DEVICE_IDS: Final = {"rng": 4, "net": 1, "console": 3}
"""Virtio device id of each device kind."""

DEFAULT_MAC: Final = b"\x02\x15\x15\x15\x15\x15"
"""The remote's MAC when the monitor is not told one: kvmtool's default, 02:15:15:15:15:15."""

_CONSOLE_READ = 4096
_FRAMES_PER_WAKE = 64


class ConsoleBackend:
    """The console device's terminal or pipe: ``output`` gets the remote's bytes,
    ``input_fd`` (optional; made non-blocking until :meth:`close`) is read for what to
    send it."""

    def __init__(self, output: Callable[[bytes], None], input_fd: int | None = None) -> None:
        self.output = output
        self.input_fd = input_fd
        self._was_blocking = False
        if input_fd is not None:
            self._was_blocking = os.get_blocking(input_fd)
            os.set_blocking(input_fd, False)

    def close(self) -> None:
        """Give the input descriptor its blocking mode back (a terminal is shared with the
        shell).  The descriptor stays open: it is the caller's."""
        if self.input_fd is not None and self._was_blocking:
            with contextlib.suppress(OSError):
                os.set_blocking(self.input_fd, True)


class Monitor:
    """The device side of a hypervisorless system on ``shm`` laid out as ``layout``.

    ``entropy`` feeds the rng (default :func:`os.urandom`), ``console`` and ``net``
    are the outside ends of those devices (a device without one still works: output
    is dropped, no input arrives).  ``mac`` is what the network device reports.
    """

    def __init__(
        self,
        shm: IoRegion,
        layout: HvlLayout,
        *,
        entropy: Callable[[int], bytes] = os.urandom,
        console: ConsoleBackend | None = None,
        net: NetBackend | None = None,
        mac: bytes = DEFAULT_MAC,
        spin_us: float = 0.0,
    ) -> None:
        if spin_us < 0:
            raise UsageError(f"spin_us must not be negative, got {spin_us}")
        self.spin_us = spin_us
        """Microseconds to keep looking for the next IPI before blocking (0: block at once)."""
        if shm.size < layout.shm_size:
            raise UsageError(
                f"shared memory of {shm.size:#x} bytes; the layout needs {layout.shm_size:#x}"
            )
        self.shm = shm
        self.layout = layout
        self.console_backend = console
        self.net_backend = net
        self.devices: list[MmioDevice] = []
        self.rng: RngDevice | None = None
        self.console: ConsoleDevice | None = None
        self.net: NetDevice | None = None
        self._ipi_wanted = False
        for index, kind in enumerate(layout.devices):
            model: DeviceModel
            if kind == "rng":
                model = self.rng = RngDevice(entropy)
            elif kind == "console":
                out = console.output if console is not None else (lambda _data: None)
                model = self.console = ConsoleDevice(out)
            else:
                send = net.send if net is not None else (lambda _frame: None)
                model = self.net = NetDevice(send, mac=mac)
            offset, size = layout.pool(index)
            device = MmioDevice(
                shm.subregion(layout.window(index), WINDOW_SIZE, f"{kind} window"),
                shm,
                model,
                pool=(layout.phys_base + offset, size),
                notify=self._want_ipi,
                name=f"virtio-{kind}@{layout.phys_base + layout.window(index):#x}",
            )
            device.init_window()
            self.devices.append(device)
        self._by_kind = dict(zip(layout.devices, self.devices))
        self.doorbell: Doorbell | None = None
        self.notifications = 0
        """IPIs served (each is one diff pass over every device)."""
        self.ipis_sent = 0
        self.peer_gone = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stop = False
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def device(self, kind: str) -> MmioDevice:
        """The transport of device ``kind`` ('rng', 'net', 'console')."""
        return self._by_kind[kind]

    def banner(self) -> list[str]:
        """What the reference monitor logs at start-up, one line per device."""
        return self.layout.describe()

    # -- one step at a time (also what tests drive) ---------------------------------------

    def _want_ipi(self) -> None:
        self._ipi_wanted = True

    def _send_ipi(self) -> None:
        if self._ipi_wanted and self.doorbell is not None:
            self._ipi_wanted = False
            try:
                self.doorbell.kick()
            except PeerGoneError:
                self.peer_gone = True
            self.ipis_sent += 1

    def notification(self) -> None:
        """One IPI from the remote: a diff pass over every device, then at most one IPI back."""
        self.notifications += 1
        for device in self.devices:
            device.notification()
        self._send_ipi()

    def console_input(self, data: bytes) -> int:
        """Offer ``data`` to the remote's console now (monitor thread only); return bytes taken."""
        if self.console is None:
            return 0
        taken = self.console.feed(data)
        self._by_kind["console"].poll()
        self._send_ipi()
        return taken

    def net_input(self, frame: bytes) -> None:
        """Deliver ``frame`` to the remote's network device now (monitor thread only)."""
        if self.net is None:
            return
        self.net.receive(frame)
        self._by_kind["net"].poll()
        self._send_ipi()

    # -- serving ------------------------------------------------------------------------

    def serve(self, doorbell: Doorbell, timeout: float | None = None) -> None:
        """Serve until :meth:`stop`, the remote going away, or ``timeout`` seconds of no IPI.

        ``doorbell`` is the IPI line to the remote.  Returns normally in all three cases
        (:attr:`peer_gone` says whether the remote went).
        """
        self.doorbell = doorbell
        poller = select.poll()
        poller.register(doorbell.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        net_fd = console_fd = -1
        if self.net_backend is not None and self.net is not None:
            net_fd = self.net_backend.fileno()
            poller.register(net_fd, select.POLLIN)
        cb = self.console_backend
        if cb is not None and cb.input_fd is not None and self.console is not None:
            console_fd = cb.input_fd
            poller.register(console_fd, select.POLLIN)
        console_paused = False
        ms = None if timeout is None else int(timeout * 1000)
        # the remote may have notified before we started listening
        self.notification()
        spin_s = self.spin_us / 1e6
        while not self._stop:
            events = poller.poll(0) if spin_s else None
            if not events and spin_s:
                # a reply usually comes back within microseconds of our IPI: look again
                # for a short while before paying for a sleep and a wake-up
                end = time.perf_counter() + spin_s
                while not events and time.perf_counter() < end:
                    events = poller.poll(0)
            if not events:
                events = poller.poll(ms)
            if not events:
                return
            for fd, _mask in events:
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 64)
                elif fd == net_fd:
                    self._net_readable()
                elif fd == console_fd and self._console_readable(console_fd) is None:
                    poller.unregister(console_fd)  # end of input
                    console_fd = -1
            # doorbell last: anything the input above produced is in this pass
            try:
                kicks = doorbell.drain()
            except PeerGoneError:
                self.peer_gone = True
                return
            if kicks:
                self.notification()
            self._send_ipi()
            # hold console input back while the remote is not taking it
            if console_fd >= 0 and self.console is not None:
                full = self.console.pending_input >= self.console.backlog // 2
                if full and not console_paused:
                    poller.unregister(console_fd)
                    console_paused = True
                elif not full and console_paused:
                    poller.register(console_fd, select.POLLIN)
                    console_paused = False

    def _net_readable(self) -> None:
        backend, model = self.net_backend, self.net
        assert backend is not None and model is not None
        for _ in range(_FRAMES_PER_WAKE):
            frame = backend.recv()
            if frame is None:
                break
            model.receive(frame)
        self._by_kind["net"].poll()

    def _console_readable(self, fd: int) -> int | None:
        model = self.console
        assert model is not None
        try:
            data = os.read(fd, _CONSOLE_READ)
        except BlockingIOError:
            return 0
        except OSError:
            return None
        if not data:
            return None
        model.feed(data)
        self._by_kind["console"].poll()
        return len(data)

    def start(self, doorbell: Doorbell) -> None:
        """Serve in a background thread until :meth:`stop` or the remote goes away."""
        if self._thread is not None:
            raise UsageError("the monitor is already serving")

        def run() -> None:
            try:
                self.serve(doorbell)
            except BaseException as exc:  # reported by stop()
                self.error = exc

        self._stop = False
        self._thread = threading.Thread(target=run, name="openamp-hvl-monitor", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Make the serving loop look around (any thread)."""
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"w")

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop serving and wait for the thread; re-raises what killed it, if anything."""
        self._stop = True
        self.wake()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    @property
    def running(self) -> bool:
        """Whether the background thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Stop and release the wake-up pipe (the shared memory and backends are the caller's)."""
        try:
            self.stop()
        finally:
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake_r = self._wake_w = -1
            for device in self.devices:
                for vq in device.queues:
                    vq.release()

    def stats(self) -> dict[str, int]:
        """Counters for people: notifications, IPIs, per-device passes and interrupts."""
        out = {"notifications": self.notifications, "ipis_sent": self.ipis_sent}
        for kind, device in self._by_kind.items():
            out[f"{kind}_interrupts"] = device.interrupts
        return out

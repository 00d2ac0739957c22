"""The virtual machine's process driver: a remote processor that is a process on this PC.

:class:`ProcessMachine` gives a :class:`~openamp.remoteproc.RemoteProc` whose ops
(:class:`ProcessOps`) emulate a remote core:

* **memory** is one POSIX shared-memory file; device/physical address = offset.
  Carveouts and vrings at fixed addresses must lie in it; ``ANY`` addresses are
  allocated from its free space.  Segments of an executable for this PC that lie outside
  it (its code and data, which the kernel maps from the file when it runs) go to private
  memory; for any other image such a segment is refused, as on a real memory map.
* **start** spawns the firmware with the environment of the firmware contract
  (:mod:`openamp.firmware`): an ELF executable with a ``.resource_table`` section, or a
  Python firmware (``"echo"`` or a module path).  The host listens on the doorbell socket,
  accepts the firmware, and brings up its rpmsg device as the virtio driver.  An
  executable *without* a table is taken to be a C Linux-generic-machine program that
  writes its own table (``rpmsg-echo``...): it is started with argument ``0`` and the
  host attaches to ``/dev/shm/openamp.shm`` as the socket client.
* **stop** is polite, then forced: SIGTERM, then SIGKILL after ``stop_timeout`` s.
* a firmware process that exits on its own moves the remoteproc to *crashed* (a
  watcher thread notices within milliseconds); with ``recovery`` on it is restarted and
  the host's rpmsg device reset, keeping the host's endpoints.
* trace buffers declared by the table are read from the memory (``rproc.trace()``);
  the firmware's stdout and stderr are kept in :attr:`ProcessOps.console` and, line by
  line as they come, handed to the ``console`` callback (``openamp rproc run`` prints
  them live).  A Python firmware gets the host's ``sys.path`` and unbuffered output.
* the firmware runs in a session of its own: a Ctrl-C in the host's terminal reaches
  the host only, which then stops the firmware as usual (a crash is a crash, an
  interrupted host is not one).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import (
    DeviceGoneError,
    FirmwareImageError,
    InvalidStateError,
    OpenAMPError,
    OpenAMPTimeoutError,
    RegionBoundsError,
    UsageError,
)
from ..metal.deadline import Deadline
from ..metal.doorbell import UnixSocketDoorbell, UnixSocketServer, reap_stale_sockets
from ..metal.io import IoRegion
from ..metal.shm import SHM_DIR, SharedMemory, reap_stale, unique_name
from ..metal.wait import DoorbellWaiter, wait_strategy
from ..remoteproc.core import Firmware, Mapping, RemoteProc, RemoteprocOps
from ..remoteproc.firmware import ElfFirmware
from ..remoteproc.rsc_table import FW_RSC_ADDR_ANY, ResourceTable
from ..remoteproc.state import RprocState
from ..rpmsg.core import RpmsgDevice
from ..rpmsg.events import EventHook
from ..rpmsg.virtio import RpmsgVirtioDevice
from ..virtio.virtqueue import Role
from .linux_generic import EVENT_PATH, SHM_NAME, LinuxGenericMachine
from .machine import SharedMemoryMachine, quiesced, rpmsg_on_link
from .virtual import virtual_paths

log = logging.getLogger("openamp.platform.process")

ALLOC_ALIGN = 0x1000


class ProcessOps(RemoteprocOps):
    """Remoteproc operations for a firmware process (see the module docstring)."""

    def __init__(
        self,
        name: str,
        *,
        memory_size: int,
        wait: str = "spin-then-block",
        start_timeout: float = 10.0,
        stop_timeout: float = 2.0,
        console: Callable[[str], object] | None = None,
        capture: EventHook | None = None,
    ) -> None:
        self.name = name
        self.capture = capture
        """Records the host side's rpmsg events (:mod:`openamp.rpmsg.events`)."""
        self.memory_size = memory_size
        self.wait = wait
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.shm_name, self.event_path = virtual_paths(name)
        self.shm: SharedMemory | None = None
        self.memory: IoRegion | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.doorbell: UnixSocketDoorbell | None = None
        self.console: deque[str] = deque(maxlen=1000)
        """The firmware's recent stdout/stderr lines."""
        self.on_console = console
        """Called with every line of the firmware's output as it arrives (in a reader
        thread; it must not block for long)."""
        self._private: list[Mapping] = []
        self._allocated: list[tuple[int, int]] = []
        self._stopping = False
        self._watcher: threading.Thread | None = None
        self._generic: SharedMemoryMachine | None = None
        self._readers: list[threading.Thread] = []

    # -- memory -----------------------------------------------------------------------

    def init(self, rproc: RemoteProc) -> None:
        """Create the memory file and register it as the remote's memory at address 0."""
        reap_stale()  # what killed machines left behind (see openamp.metal.shm)
        reap_stale_sockets()
        self.shm = SharedMemory.open(
            self.shm_name, self.memory_size, create=True, unlink_on_close=True
        )
        self.memory = self.shm.region(name=self.shm_name)
        rproc.add_mem(Mapping(0, 0, self.memory_size, self.memory, 0, "memory"))

    def mmap(self, rproc: RemoteProc, pa: int, da: int, size: int) -> Mapping:
        """Allocate for ANY; put host-executable segments outside the memory in private memory."""
        assert self.memory is not None
        if pa == FW_RSC_ADDR_ANY and da == FW_RSC_ADDR_ANY:
            at = self._allocate(rproc, size)
            return Mapping(at, at, size, self.memory, at, "allocated")
        addr = da if da != FW_RSC_ADDR_ANY else pa
        fw = rproc.loading
        if isinstance(fw, ElfFirmware) and fw.runs_here and addr >= self.memory_size:
            region = IoRegion(bytearray(size), phys_base=addr, name=f"private@{addr:#x}")
            m = Mapping(addr, addr, size, region, 0, "private")
            self._private.append(m)
            return m
        raise RegionBoundsError(
            f"[{addr:#x}, +{size:#x}) is outside the remote's memory [0, {self.memory_size:#x})"
        )

    def _allocate(self, rproc: RemoteProc, size: int) -> int:
        taken = sorted(
            [
                (m.da, m.da + m.size)
                for m in rproc.mems
                if m.region is self.memory and m.name != "memory"
            ]
            + self._allocated
        )
        at = ALLOC_ALIGN
        for start, end in taken:
            if at + size <= start:
                break
            at = max(at, (end + ALLOC_ALIGN - 1) & ~(ALLOC_ALIGN - 1))
        if at + size > self.memory_size:
            raise RegionBoundsError(f"no room for {size:#x} bytes in the remote's memory")
        self._allocated.append((at, at + size))
        return at

    # -- running ----------------------------------------------------------------------

    def _command(self, fw: Firmware) -> list[str]:
        from ..firmware import PythonFirmware

        if isinstance(fw, PythonFirmware):
            return fw.command(sys.executable)
        if isinstance(fw, ElfFirmware):
            if not fw.runs_here:
                raise FirmwareImageError(
                    f"{fw.name}: a {fw.image.machine} ELF{fw.image.elf_class} image cannot run "
                    "as a process on this PC (it loads, but only executables for this PC start)"
                )
            return [os.path.abspath(fw.path or fw.name)]
        raise UsageError(f"the process driver cannot run {fw!r}")

    def start(self, rproc: RemoteProc) -> None:
        """Spawn the firmware, accept its doorbell and bring the host's rpmsg device up."""
        from ..firmware import PythonFirmware

        fw = rproc.firmware
        assert fw is not None and self.shm is not None
        cmd = self._command(fw)
        if not rproc.has_table:
            self._start_generic(rproc, cmd)
            return
        env = dict(os.environ)
        if isinstance(fw, PythonFirmware):
            env.update(fw.environment())
        env.update(
            OPENAMP_SHM=os.path.join(SHM_DIR, self.shm_name),
            OPENAMP_SHM_SIZE=str(self.memory_size),
            OPENAMP_EVENT=self.event_path,
            OPENAMP_RSC_DA=hex(rproc.table_da),
        )
        server = UnixSocketServer(self.event_path)
        try:
            self._stopping = False
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the terminal's Ctrl-C is for the host
            )
            self._read_console(self.proc)
            self.doorbell = self._accept(server, self.proc)
        except BaseException:
            server.close()
            self._kill()
            raise
        server.close()
        self._watcher = threading.Thread(target=self._watch, args=(rproc, self.proc), daemon=True)
        self._watcher.start()
        if rproc.vdevs:
            waiter = DoorbellWaiter(self.doorbell, wait_strategy(self.wait))
            dev = rproc.vdev_devices.get(0)
            if isinstance(dev, RpmsgVirtioDevice) and dev.role is Role.DRIVER:
                # a restart (recovery, maybe from the watcher thread): keep the host's
                # endpoints; the user's thread is kept out of the device meanwhile
                with quiesced(dev):
                    dev.reset(waiter)
            else:
                rproc.vdev_devices[0] = rpmsg_on_link(
                    rproc.vdev_link(0, role=Role.DRIVER),
                    waiter=waiter,
                    ready_timeout=self.start_timeout,
                    capture=self.capture,
                )

    def _start_generic(self, rproc: RemoteProc, cmd: list[str]) -> None:
        """A C Linux-generic-machine program: it writes its own table and serves the socket.

        Such a program (the C ``rpmsg-echo``, say) has no ``.resource_table`` section; it
        creates ``/dev/shm/openamp.shm``, writes the table at 0 and listens on
        ``/tmp/openamp.event.0``.  We start it with its index argument ``0`` and attach as
        the socket client, like the C host demos do.
        """

        self._stopping = False
        self.proc = subprocess.Popen(
            [*cmd, "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._read_console(self.proc)
        host = LinuxGenericMachine(
            role="driver", socket="client", wait=self.wait, capture=self.capture
        )
        try:
            rproc.vdev_devices[0] = host.start(timeout=self.start_timeout)
        except BaseException:
            host.close()
            self._kill()
            code = self.proc.poll()
            if code is not None:
                raise FirmwareImageError(
                    f"the firmware exited with status {code} before serving the Linux generic "
                    "machine: " + " | ".join(list(self.console)[-5:])
                ) from None
            raise
        self._generic = host
        self.doorbell = host.doorbell
        table_io = host.rpmsg.shm
        rproc.table = ResourceTable.parse(table_io.view(0, table_io.size))
        self._watcher = threading.Thread(target=self._watch, args=(rproc, self.proc), daemon=True)
        self._watcher.start()

    def _accept(
        self, server: UnixSocketServer, proc: subprocess.Popen[bytes]
    ) -> UnixSocketDoorbell:
        waited = 0.0
        while True:
            try:
                return server.accept(0.05)
            except OpenAMPError:
                waited += 0.05
                code = proc.poll()
                if code is not None:
                    raise FirmwareImageError(
                        f"the firmware exited with status {code} before connecting: "
                        + " | ".join(list(self.console)[-5:])
                    ) from None
                if waited >= self.start_timeout:
                    raise

    def _read_console(self, proc: subprocess.Popen[bytes]) -> None:
        def pump() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip()
                self.console.append(line)
                log.debug("%s: %s", self.name, line)
                sink = self.on_console
                if sink is not None:
                    try:
                        sink(line)
                    except Exception:  # a broken sink must not stop the draining
                        log.exception("console callback failed")

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        self._readers.append(t)

    def _watch(self, rproc: RemoteProc, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        if self._stopping or proc is not self.proc:
            return
        if code == 0:
            rproc.exited("the firmware process exited with status 0")
        else:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            rproc.crashed(f"the firmware process {how}")

    def stop(self, rproc: RemoteProc) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout`` s; close the doorbell.

        May run on the watcher thread (a recovery) while the user's thread uses the
        rpmsg device: the doorbell is hung up first, which wakes that thread with
        :class:`~openamp.errors.PeerGoneError`, and closed only once no thread is in
        the device any more (:func:`~openamp.platform.machine.quiesced`), so nobody
        ever waits on a closed descriptor.
        """
        self._stopping = True
        doorbell = self.doorbell
        if doorbell is not None:
            doorbell.hang_up()
        self._kill()
        dev = rproc.vdev_devices.get(0)
        if doorbell is not None and isinstance(dev, RpmsgDevice) and not dev.closed:
            try:
                with quiesced(dev):
                    self._close_link(doorbell)
            except OpenAMPTimeoutError as exc:
                log.warning(
                    "%s: %s; the old doorbell stays open until it is collected", self.name, exc
                )
                self.doorbell = None
                self._generic = None
        else:
            self._close_link(doorbell)

    def _close_link(self, doorbell: UnixSocketDoorbell | None) -> None:
        if self._generic is not None:
            self._generic.close()  # also closes its doorbell
            self._generic = None
            self.doorbell = None
            # C programs never unlink their files; the program is gone, so we do.
            for path in (os.path.join(SHM_DIR, SHM_NAME), EVENT_PATH):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        if doorbell is not None:
            doorbell.close()
        if self.doorbell is doorbell:
            self.doorbell = None

    def firmware_alive(self) -> bool:
        """Whether the firmware process runs (False also before start and after stop).

        Read from ``/proc`` rather than ``Popen.poll()``, which answers None while the
        watcher thread waits for the same process: a dead process that nobody reaped
        yet (a zombie) counts as dead.
        """
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return False
        try:
            stat = Path(f"/proc/{proc.pid}/stat").read_text()
        except OSError:
            return False
        if stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"]):
            return False
        # an exiting process closes its descriptors before it is a zombie: its end of
        # the doorbell tells first
        doorbell = self.doorbell
        return not (isinstance(doorbell, UnixSocketDoorbell) and doorbell.peer_closed())

    def _kill(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for t in self._readers:
            t.join(1.0)
        self._readers.clear()
        if proc.stdout is not None:
            proc.stdout.close()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(1.0)

    def shutdown(self, rproc: RemoteProc) -> None:
        """Make sure the process is gone and the doorbell closed (it may have exited)."""
        self.stop(rproc)

    def notify(self, rproc: RemoteProc, notifyid: int) -> None:
        """One byte on the doorbell socket (the notify id is not carried, as in C)."""
        if self.doorbell is not None:
            self.doorbell.kick()

    def remove(self, rproc: RemoteProc) -> None:
        """Unmap and delete the memory file."""
        self.memory = None
        if self.shm is not None:
            self.shm.close()
            self.shm.unlink()
            self.shm = None


class ProcessRemoteProc(RemoteProc):
    """A :class:`RemoteProc` booted by the process driver, with its host-side rpmsg device."""

    @property
    def rpmsg(self) -> RpmsgVirtioDevice:
        """The host (virtio driver) side of the firmware's rpmsg device.

        Raises :class:`InvalidStateError` before the firmware was started (a firmware
        without a vdev has none).  After a stop it stays, closed; a restart (or a
        recovery) resets it, keeping its endpoints.
        """
        dev = self.vdev_devices.get(0)
        if not isinstance(dev, RpmsgVirtioDevice):
            raise InvalidStateError(
                f"{self.name} has no rpmsg device: it is {self.state}"
                + ("" if self.vdevs or not self.has_table else " and its table has no vdev")
                + "; start() it first"
            )
        return dev

    def wait_recovered(self, timeout: float | None = None) -> RpmsgVirtioDevice:
        """Block until the remote runs again after its last crash; return its rpmsg device.

        Call it when a call on the link raised :class:`~openamp.errors.PeerGoneError`:
        a crash the platform has not registered yet (the firmware process is dead but
        the watcher has not noticed) counts, so there is no window in which this
        returns at once on a dead remote.  Endpoints announced before the crash are
        announced again; ``ept.wait_bound(timeout)`` then waits for the remote to
        re-announce its service.  ``timeout`` in seconds (None = forever).

        Raises :class:`~openamp.errors.DeviceGoneError` when the remote will not run
        again (recovery is off, it failed, or the remote was stopped) and
        :class:`~openamp.errors.OpenAMPTimeoutError` when it does not run in time.
        """
        ops = self.ops
        alive = ops.firmware_alive if isinstance(ops, ProcessOps) else (lambda: True)
        deadline = Deadline(timeout)
        with self._cond:
            pending = self.state is RprocState.RUNNING and not alive()
            target = self.crash_count + (1 if pending else 0)
            ended = (RprocState.ERROR, RprocState.STOPPED, RprocState.OFFLINE)

            def settled() -> bool:
                return (
                    self.crash_count >= target and self.state is RprocState.RUNNING
                ) or self.state in ended

            while not settled():
                if self.state is RprocState.CRASHED and not self.recovery:
                    break
                left = deadline.remaining()
                if left == 0.0:
                    raise OpenAMPTimeoutError(
                        f"{self.name} did not run again within {timeout} s (it is {self.state})"
                    )
                # the watcher's report needs no notify when the process died unnoticed
                self._cond.wait(0.05 if left is None else min(left, 0.05))
            if self.state is not RprocState.RUNNING:
                raise DeviceGoneError(
                    f"{self.name} is {self.state}"
                    + (" and recovery is off" if not self.recovery else "")
                    + "; it will not run again by itself"
                )
        return self.rpmsg


class ProcessMachine:
    """A virtual machine that boots firmware as processes on this PC.

    ``name`` (generated when None) names the memory file ``/dev/shm/NAME.shm`` and the
    doorbell ``/tmp/NAME.event``.  ``memory_size`` is the remote's memory.  ``console``,
    if given, gets every line the firmware prints, as it prints it.  ``capture`` records
    the events of the host side's rpmsg device (:mod:`openamp.rpmsg.events`).
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        memory_size: int = 0x80000,
        wait: str = "spin-then-block",
        start_timeout: float = 10.0,
        console: Callable[[str], object] | None = None,
        capture: EventHook | None = None,
    ) -> None:
        self.name = name or unique_name("openamp-vm")
        self.ops = ProcessOps(
            self.name,
            memory_size=memory_size,
            wait=wait,
            start_timeout=start_timeout,
            console=console,
            capture=capture,
        )
        self.rproc = ProcessRemoteProc(self.ops, name=self.name)

    def remoteproc(
        self,
        firmware: Firmware | str | bytes | Any,
        *,
        recovery: bool = False,
        options: dict[str, str] | None = None,
    ) -> ProcessRemoteProc:
        """Configure and load ``firmware``: a built-in Python firmware (``"echo"``),
        ``"python:SPEC"`` (a module path or a ``.py`` file, see :mod:`openamp.firmware`),
        a :class:`Firmware`, or an ELF file path / bytes.  ``options``: a Python
        firmware's ``ctx.options`` (``key=value`` strings)."""
        from ..firmware import BUILTIN, PythonFirmware

        rproc = self.rproc
        if isinstance(firmware, str) and (firmware in BUILTIN or firmware.startswith("python:")):
            firmware = PythonFirmware(firmware.removeprefix("python:"), options)
        elif isinstance(firmware, (str, os.PathLike)) and not os.path.exists(firmware):
            raise UsageError(
                f"no firmware {os.fspath(firmware)!r}: no such file, and not a built-in Python "
                f"firmware ({', '.join(sorted(BUILTIN))}; or python:MODULE)"
            )
        elif isinstance(firmware, (str, os.PathLike)) and os.fspath(firmware).endswith(".py"):
            raise UsageError(
                f"{os.fspath(firmware)!r} is Python source, not an ELF image: boot it as "
                f"python:{os.fspath(firmware)}"
            )
        elif not isinstance(firmware, Firmware):
            firmware = ElfFirmware.open(firmware)
        if options and not isinstance(firmware, PythonFirmware):
            raise UsageError("options are for a Python firmware (its ctx.options)")
        rproc.recovery = recovery
        if rproc.state.name == "OFFLINE":
            rproc.config()
        rproc.load(firmware)
        return rproc

    @property
    def console(self) -> list[str]:
        """The firmware's recent output lines."""
        return list(self.ops.console)

    def close(self) -> None:
        """Shut the remote down and delete the machine's files.  Idempotent."""
        with contextlib.suppress(OpenAMPError):
            self.rproc.shutdown()
        self.ops.remove(self.rproc)

    def __enter__(self) -> ProcessMachine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The UML remoteproc machine: remote processors the real kernel's remoteproc core drives.

A User-mode Linux kernel built with pyopenamp's ``uml-rproc.patch``
(:mod:`openamp.tools.uml`) registers one remote processor per
``uml_rproc.device=SOCKET:NAME`` on its command line.  Its remoteproc core does
everything a board's does -- reads the firmware file from ``firmware_class.path``,
checks and loads the ELF, handles the resource table, allocates vrings, registers the
virtio device that ``virtio_rpmsg_bus`` drives, keeps the sysfs state machine, reads
trace buffers, recovers from crashes and writes coredumps -- and asks the *processor*
to load, start and stop over the socket.  :class:`UmlRprocMachine` is that processor:
one listening socket per remote processor, served by one thread.

Theory of operation
-------------------
The kernel connects at boot and says HELLO with the descriptor of its physical memory
(a host file: physical address = offset) and where the processor's local RAM lies
(device addresses ``[0, ram_size)`` at ``ram_pa``).  On ``echo start > state`` it loads
the ELF into that RAM and sends LOAD with the file's name and bytes: we read which
program to run from the image's :data:`~openamp.remoteproc.elf_writer.FIRMWARE_SECTION`
(a Python firmware: ``"echo"``, ``"multi-services"`` or a module path, and its options).
START gives the resource table's address; we start the firmware as a process with the
firmware contract of :mod:`openamp.firmware` -- the kernel's memory as the memory file,
``OPENAMP_DA_WINDOW`` for the local RAM, a doorbell socket of ours -- and it serves rpmsg
as the virtio device over the kernel's own vrings and buffers.  Kicks are relayed both
ways (the firmware's one-byte kicks become KICK records for every vring).  STOP halts
the processor: the firmware process is killed, as a core is powered off.  A firmware
process that dies with a non-zero status while running is reported as a CRASH (fatal
error), and the kernel's recovery runs: stop, coredump, load, start.  The wire format
is :data:`K2R_HEADER` and friends below; docs/linux-kernel.md describes it.

What this module must not do: touch the kernel's memory itself (only the firmware
does, through its own mapping), or block the serving thread on a firmware (starting
one returns at once; its doorbell is accepted when it connects).
"""

from __future__ import annotations

import contextlib
import errno as E
import logging
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FirmwareImageError, InvalidStateError, OpenAMPError, UsageError
from ..metal.deadline import Deadline
from ..metal.doorbell import UnixSocketDoorbell, UnixSocketServer
from ..remoteproc.elf import ElfImage
from ..remoteproc.elf_writer import FIRMWARE_SECTION, python_firmware_image, read_firmware_section
from ..remoteproc.rsc_table import FW_RSC_ADDR_ANY, ResourceTable, Trace, Vdev, VdevVring
from ..rpmsg.wire import VIRTIO_RPMSG_F_NS
from ..virtio.ring import VIRTIO_ID_RPMSG

log = logging.getLogger("openamp.platform.uml_rproc")

# -- the wire format (drivers/remoteproc/uml_rproc.c) ---------------------------------------

K2R_HEADER = struct.Struct("<II")
"""Kernel to host: ``{u32 type, u32 size}``, then ``size`` bytes."""
K2R_HELLO, K2R_LOAD, K2R_START, K2R_STOP, K2R_KICK = 1, 2, 3, 4, 5
HELLO = struct.Struct("<IIQQQQ32s")
"""HELLO: version, index, mem_size, ram_da, ram_pa, ram_size, name (+ the memory fd)."""
LOAD = struct.Struct("<II")
"""LOAD: name_len, image_size, then the firmware name and the ELF image."""
START = struct.Struct("<QQQII")
"""START: boot_addr, rsc_da, rsc_pa, rsc_size, reserved."""
KICK = struct.Struct("<I")
"""KICK: the vring's notify id."""
R2K_RECORD = struct.Struct("<IIII")
"""Host to kernel: ``{u32 type, u32 a, u32 b, u32 c}``."""
R2K_REPLY, R2K_KICK, R2K_CRASH = 1, 2, 3
ALL_VRINGS = 0xFFFFFFFF
START_TIMEOUT = 8.0
"""Seconds a started firmware has to connect its doorbell (the kernel waits 10)."""
PROTOCOL_VERSION = 1
MAX_MESSAGE = 64 << 20
CRASH_MMUFAULT, CRASH_WATCHDOG, CRASH_FATAL = 0, 1, 2
CRASH_KINDS = {"mmufault": CRASH_MMUFAULT, "watchdog": CRASH_WATCHDOG, "fatal": CRASH_FATAL}

# -- the memory map a firmware for this machine uses ------------------------------------------

TABLE_DA = 0x1000
"""Where a Python firmware's resource table goes in the processor's local RAM."""
TRACE_DA, TRACE_LEN = 0x2000, 0x8000
"""Its trace buffer (cleared by the loader: the segment's memsz covers it)."""
VRING_NUM, VRING_ALIGN = 16, 16


def firmware_table(*, vring_num: int = VRING_NUM, trace_name: str = "trace0") -> ResourceTable:
    """The resource table of a Python firmware on this machine.

    A trace buffer in local RAM and one rpmsg vdev with the name service whose vrings
    the kernel allocates (``da = FW_RSC_ADDR_ANY``), as the seed's Zephyr sample has.
    No ``vdev0buffer`` carveout: the rpmsg buffers come from the kernel's DMA pool.
    """
    return ResourceTable(
        [
            Trace(da=TRACE_DA, len=TRACE_LEN, name=trace_name),
            Vdev(
                id=VIRTIO_ID_RPMSG,
                notifyid=0,
                dfeatures=1 << VIRTIO_RPMSG_F_NS,
                vrings=[
                    VdevVring(FW_RSC_ADDR_ANY, VRING_ALIGN, vring_num, 0),
                    VdevVring(FW_RSC_ADDR_ANY, VRING_ALIGN, vring_num, 1),
                ],
            ),
        ]
    )


def firmware_image(
    spec: str,
    options: Mapping[str, str] | None = None,
    *,
    table: ResourceTable | None = None,
) -> bytes:
    """The firmware file (ELF) of Python firmware ``spec`` for this machine."""
    raw = (table or firmware_table()).to_bytes()
    if TABLE_DA + len(raw) > TRACE_DA:
        raise UsageError(f"a {len(raw)}-byte resource table does not fit before the trace")
    return python_firmware_image(
        spec, raw, table_da=TABLE_DA, memsz=TRACE_DA + TRACE_LEN - TABLE_DA, options=options
    )


def write_firmware(
    directory: str | os.PathLike[str],
    filename: str,
    spec: str,
    options: Mapping[str, str] | None = None,
    *,
    table: ResourceTable | None = None,
) -> Path:
    """Write :func:`firmware_image` as ``directory/filename``; return its path."""
    path = Path(directory) / filename
    path.write_bytes(firmware_image(spec, options, table=table))
    return path


# -- one remote processor ----------------------------------------------------------------------


@dataclass
class Boot:
    """One start of a firmware on a processor."""

    firmware: str
    """The file name the kernel loaded."""
    spec: str
    options: dict[str, str]
    rsc_da: int = 0
    rsc_pa: int = 0
    pid: int = 0
    returncode: int | None = None
    crashed: bool = False
    """Whether its end was reported to the kernel as a crash."""


@dataclass
class Processor:
    """The host side of one ``uml_rproc.device``: its socket and what it went through."""

    name: str
    socket_path: Path
    index: int = -1
    """The kernel's remoteproc index (``remoteprocN``), from HELLO."""
    mem_size: int = 0
    ram: tuple[int, int, int] = (0, 0, 0)
    """(da, pa, size) of the local RAM."""
    state: str = "waiting"
    """``waiting`` (for the kernel), ``offline``, ``loaded``, ``running``, ``gone``."""
    boots: list[Boot] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    """What happened, one line each (``hello``, ``load NAME``, ``start``, ``stop``...)."""
    console: list[str] = field(default_factory=list)
    """The firmware processes' stdout and stderr lines (the processor's UART)."""
    # private state of the serving thread
    _conn: socket.socket | None = None
    _rx: bytearray = field(default_factory=bytearray)
    _fds: list[int] = field(default_factory=list)
    _mem_fd: int = -1
    _loaded: tuple[str, str, dict[str, str]] | None = None
    _child: subprocess.Popen[bytes] | None = None
    _pidfd: int = -1
    _server: UnixSocketServer | None = None
    _doorbell: UnixSocketDoorbell | None = None
    _kick_pending: bool = False
    _out: dict[int, bytearray] = field(default_factory=dict)
    _start_deadline: Deadline | None = None

    @property
    def firmware_pid(self) -> int | None:
        """The running firmware process, if any."""
        child = self._child
        return child.pid if child is not None and child.returncode is None else None


class UmlRprocMachine:
    """The processors behind ``uml_rproc.device=`` (see the module docstring).

    ``directory``: a short existing directory for the sockets (AF_UNIX paths are at
    most 107 bytes).  ``names``: one processor per name (``remoteproc0``, ``1``... in
    order).  ``python``: the interpreter that runs Python firmware; ``env``: extra
    environment for it.  The sockets listen from construction on; boot the kernel with
    :meth:`kernel_args`, then the serving thread (started by :meth:`start`, or by
    ``with``) does the rest until :meth:`close`.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        names: Sequence[str] = ("rproc0",),
        *,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        on_console: Callable[[Processor, str], None] | None = None,
    ) -> None:
        if not names:
            raise UsageError("a UML remoteproc machine needs at least one processor")
        self.directory = Path(directory)
        self.python = python
        self.env = dict(env or {})
        self.on_console = on_console
        self.processors = [
            Processor(n, self.directory / f"rproc{i}.sock") for i, n in enumerate(names)
        ]
        for p in self.processors:
            if any(c in p.name for c in ": ,\t\n") or not p.name:
                raise UsageError(f"processor name {p.name!r} must be a word without ':' or ','")
            if len(os.fsencode(p.socket_path)) > 100:
                raise UsageError(f"socket path {p.socket_path} is too long for AF_UNIX")
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._listeners: list[socket.socket] = []
        self._thread: threading.Thread | None = None
        self._closing = False
        self.error: BaseException | None = None
        """What stopped the serving thread, if it failed."""
        try:
            for p in self.processors:
                with contextlib.suppress(FileNotFoundError):
                    p.socket_path.unlink()
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._listeners.append(s)
                s.bind(os.fspath(p.socket_path))
                s.listen(1)
                self._selector.register(s, selectors.EVENT_READ, ("listen", p))
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"UmlRprocMachine({[p.name for p in self.processors]})"

    def kernel_args(self) -> list[str]:
        """The kernel command-line words that register our processors."""
        return [f"uml_rproc.device={p.socket_path}:{p.name}" for p in self.processors]

    # -- the serving thread -------------------------------------------------------------------

    def start(self) -> None:
        """Start serving (in a thread of its own).  Idempotent."""
        if self._closing:
            raise InvalidStateError("the machine is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="uml-rproc", daemon=True)
            self._thread.start()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _serve(self) -> None:
        try:
            while not self._closing:
                for key, _ in self._selector.select(timeout=0.1):
                    kind, proc = key.data
                    if kind == "wake":
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 4096)
                        continue
                    with self._lock:
                        self._dispatch(kind, proc, key.fileobj)
                with self._lock:
                    self._check_deadlines()
        except BaseException as exc:
            log.exception("the UML remoteproc machine stopped serving")
            self.error = exc

    def _dispatch(self, kind: str, p: Processor, obj: object) -> None:
        if kind == "listen":
            assert isinstance(obj, socket.socket)
            conn, _ = obj.accept()
            self._selector.unregister(obj)
            obj.close()
            with contextlib.suppress(FileNotFoundError):
                p.socket_path.unlink()
            p._conn = conn
            self._selector.register(conn, selectors.EVENT_READ, ("kernel", p))
            p.events.append("connected")
        elif kind == "kernel":
            self._kernel_readable(p)
        elif kind == "fw-listen":
            self._accept_firmware(p)
        elif kind == "fw-kick":
            self._firmware_kicked(p)
        elif kind == "fw-exit":
            self._firmware_exited(p)
        elif kind == "fw-out":
            assert isinstance(obj, int)
            self._firmware_output(p, obj)

    # -- the kernel's messages ---------------------------------------------------------------

    def _kernel_readable(self, p: Processor) -> None:
        conn = p._conn
        assert conn is not None
        try:
            data, ancdata, _flags, _addr = conn.recvmsg(1 << 20, socket.CMSG_SPACE(16))
        except (ConnectionResetError, BlockingIOError, InterruptedError) as exc:
            if isinstance(exc, BlockingIOError | InterruptedError):
                return
            data, ancdata = b"", []
        for level, ctype, cdata in ancdata:
            if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
                usable = len(cdata) - len(cdata) % 4
                p._fds.extend(struct.unpack(f"<{usable // 4}i", cdata[:usable]))
        if not data:
            self._kernel_gone(p)
            return
        p._rx += data
        while len(p._rx) >= K2R_HEADER.size:
            mtype, size = K2R_HEADER.unpack_from(p._rx)
            if size > MAX_MESSAGE:
                p.events.append(f"protocol error: a {size}-byte message")
                self._kernel_gone(p)
                return
            if len(p._rx) < K2R_HEADER.size + size:
                break
            payload = bytes(p._rx[K2R_HEADER.size : K2R_HEADER.size + size])
            del p._rx[: K2R_HEADER.size + size]
            self._kernel_message(p, mtype, payload)

    def _kernel_message(self, p: Processor, mtype: int, payload: bytes) -> None:
        if mtype == K2R_KICK:
            if p._doorbell is not None:
                with contextlib.suppress(OpenAMPError):
                    p._doorbell.kick()
            else:
                p._kick_pending = True
            return
        if mtype == K2R_HELLO:
            self._hello(p, payload)
            return
        handler = {K2R_LOAD: self._load, K2R_START: self._start, K2R_STOP: self._stop}.get(mtype)
        if handler is None:
            p.events.append(f"protocol error: unknown message {mtype}")
            return
        try:
            status = handler(p, payload)
        except (OpenAMPError, OSError, struct.error) as exc:
            p.events.append(f"error: {exc}")
            log.warning("%s: %s", p.name, exc)
            status = -(getattr(exc, "errno", None) or E.EINVAL)
        if status is not None:
            self._send(p, R2K_REPLY, mtype, status & 0xFFFFFFFF)

    def _send(self, p: Processor, rtype: int, a: int, b: int = 0) -> None:
        conn = p._conn
        if conn is None:
            return
        with self._send_lock:
            try:
                conn.sendall(R2K_RECORD.pack(rtype, a, b, 0))
            except OSError as exc:
                p.events.append(f"cannot reach the kernel: {exc}")

    def _kernel_gone(self, p: Processor) -> None:
        conn = p._conn
        if conn is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn)
            conn.close()
            p._conn = None
        self._halt(p)
        p.state = "gone"
        p.events.append("the kernel went away")

    def _hello(self, p: Processor, payload: bytes) -> None:
        version, index, mem_size, ram_da, ram_pa, ram_size, name = HELLO.unpack_from(payload)
        if version != PROTOCOL_VERSION or not p._fds:
            p.events.append(f"protocol error: HELLO version {version}, {len(p._fds)} descriptors")
            self._kernel_gone(p)
            return
        if ram_pa + ram_size > mem_size or ram_size == 0:
            p.events.append(f"protocol error: RAM at {ram_pa:#x} outside {mem_size:#x} bytes")
            self._kernel_gone(p)
            return
        p._mem_fd = p._fds.pop(0)
        p.index, p.mem_size, p.ram = index, mem_size, (ram_da, ram_pa, ram_size)
        p.state = "offline"
        kernel_name = name.split(b"\0", 1)[0].decode(errors="replace")
        p.events.append(f"hello remoteproc{index} {kernel_name}")

    def _load(self, p: Processor, payload: bytes) -> int | None:
        name_len, image_size = LOAD.unpack_from(payload)
        if LOAD.size + name_len + image_size != len(payload):
            raise FirmwareImageError(f"LOAD of {len(payload)} bytes does not add up")
        name = payload[LOAD.size : LOAD.size + name_len].decode(errors="replace")
        image = payload[LOAD.size + name_len :]
        with ElfImage(image) as elf:
            section = elf.read_section(FIRMWARE_SECTION)
        if section is None:
            p.events.append(f"load {name}: refused, it names no Python firmware")
            return -E.ENOEXEC
        spec, options = read_firmware_section(section)
        p._loaded = (name, spec, options)
        p.state = "loaded"
        p.events.append(f"load {name} ({spec})")
        return 0

    def _start(self, p: Processor, payload: bytes) -> int | None:
        _boot, rsc_da, rsc_pa, rsc_size, _r = START.unpack_from(payload)
        if p._loaded is None:
            p.events.append("start without a load")
            return -E.EINVAL
        if rsc_size == 0:
            p.events.append("start: the firmware has no resource table")
            return -E.EINVAL
        self._halt(p)
        name, spec, options = p._loaded
        ram_da, ram_pa, ram_size = p.ram
        sock = self.directory / f"fw{self.processors.index(p)}.sock"
        p._server = UnixSocketServer(sock)
        self._selector.register(p._server, selectors.EVENT_READ, ("fw-listen", p))
        env = dict(os.environ)
        env.update(self.env)
        env.update(
            OPENAMP_SHM=f"/proc/self/fd/{p._mem_fd}",
            OPENAMP_SHM_SIZE=str(p.mem_size),
            OPENAMP_EVENT=os.fspath(sock),
            OPENAMP_RSC_DA=hex(rsc_da),
            OPENAMP_DA_WINDOW=f"{ram_da:#x},{ram_pa:#x},{ram_size:#x}",
            OPENAMP_FIRMWARE_OPTIONS=",".join(f"{k}={v}" for k, v in options.items()),
        )
        child = subprocess.Popen(
            [self.python, "-m", "openamp.firmware", spec],
            env=env,
            pass_fds=(p._mem_fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        p._child = child
        p._pidfd = os.pidfd_open(child.pid)
        self._selector.register(p._pidfd, selectors.EVENT_READ, ("fw-exit", p))
        assert child.stdout is not None
        out = child.stdout.fileno()
        os.set_blocking(out, False)
        p._out[out] = bytearray()
        self._selector.register(out, selectors.EVENT_READ, ("fw-out", p))
        p.boots.append(Boot(name, spec, options, rsc_da, rsc_pa, child.pid))
        p.state = "running"
        p.events.append(f"start {name} ({spec}, pid {child.pid})")
        # The answer waits until the firmware is up (it connects its doorbell before it
        # waits for the driver), so `echo start > state` returns with a running core,
        # as on a board where the core boots in microseconds.
        p._start_deadline = Deadline(START_TIMEOUT)
        return None

    def _started(self, p: Processor, status: int) -> None:
        if p._start_deadline is not None:
            p._start_deadline = None
            self._send(p, R2K_REPLY, K2R_START, status & 0xFFFFFFFF)

    def _check_deadlines(self) -> None:
        for p in self.processors:
            deadline = p._start_deadline
            if deadline is not None and deadline.expired():
                p.events.append(f"start: the firmware did not come up within {START_TIMEOUT} s")
                self._started(p, -E.ETIMEDOUT)
                self._halt(p)
                p.state = "offline"

    def _stop(self, p: Processor, payload: bytes) -> int | None:
        was = p.state
        self._halt(p)
        if was == "running":
            p.events.append("stop")
        p.state = "offline"
        return 0

    # -- the firmware process ----------------------------------------------------------------

    def _accept_firmware(self, p: Processor) -> None:
        server = p._server
        assert server is not None
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(server)
        p._server = None
        try:
            p._doorbell = server.accept(0)
        except OpenAMPError:
            server.close()
            return
        self._selector.register(p._doorbell, selectors.EVENT_READ, ("fw-kick", p))
        self._started(p, 0)
        if p._kick_pending:
            p._kick_pending = False
            with contextlib.suppress(OpenAMPError):
                p._doorbell.kick()

    def _firmware_kicked(self, p: Processor) -> None:
        bell = p._doorbell
        assert bell is not None
        try:
            bell.drain()
        except OpenAMPError:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(bell)
            bell.close()
            p._doorbell = None
            return
        if p.state == "running":
            self._send(p, R2K_KICK, ALL_VRINGS)

    def _firmware_output(self, p: Processor, fd: int) -> None:
        buf = p._out.get(fd)
        if buf is None:
            return
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(fd)
            if buf:
                self._console(p, buf.decode(errors="replace"))
            del p._out[fd]
            return
        buf += data
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            self._console(p, line.decode(errors="replace"))

    def _console(self, p: Processor, line: str) -> None:
        p.console.append(line)
        if self.on_console is not None:
            self.on_console(p, line)

    def _firmware_exited(self, p: Processor) -> None:
        child = p._child
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(p._pidfd)
        os.close(p._pidfd)
        p._pidfd = -1
        if child is None:
            return
        code = child.wait()
        boot = p.boots[-1]
        boot.returncode = code
        p.events.append(f"firmware exited with status {code}")
        if p._start_deadline is not None:
            p.state = "offline"
            self._started(p, -E.EIO)  # it never came up: the boot fails
            return
        if code != 0 and p.state == "running":
            boot.crashed = True
            p.events.append("crash reported")
            self._send(p, R2K_CRASH, CRASH_FATAL)

    def _halt(self, p: Processor) -> None:
        """Power the processor off: kill the firmware, forget its doorbell."""
        child = p._child
        if child is not None:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                code = child.wait()
                if p.boots and p.boots[-1].returncode is None:
                    p.boots[-1].returncode = code
            if p._pidfd >= 0:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(p._pidfd)
                os.close(p._pidfd)
                p._pidfd = -1
            if child.stdout is not None:
                fd = child.stdout.fileno()
                if fd in p._out:
                    self._firmware_output(p, fd)  # whatever it printed last
                    with contextlib.suppress(KeyError, ValueError):
                        self._selector.unregister(fd)
                    p._out.pop(fd, None)
                child.stdout.close()
            p._child = None
        for obj in (p._server, p._doorbell):
            if obj is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(obj)
                obj.close()
        p._server = None
        p._doorbell = None
        p._kick_pending = False
        if p._start_deadline is not None:
            self._started(p, -E.EINTR)

    # -- for tests and tools -------------------------------------------------------------------

    def crash(self, processor: int = 0, kind: str = "fatal") -> None:
        """Report a crash of ``processor`` to the kernel (``mmufault``, ``watchdog`` or
        ``fatal``), as a board's watchdog interrupt would."""
        if kind not in CRASH_KINDS:
            raise UsageError(f"crash kind must be one of {', '.join(CRASH_KINDS)}, got {kind!r}")
        p = self.processors[processor]
        with self._lock:
            p.events.append(f"crash reported ({kind})")
            self._send(p, R2K_CRASH, CRASH_KINDS[kind])

    def wait_for(
        self, condition: Callable[[], bool], timeout: float | None = 10.0, interval: float = 0.01
    ) -> bool:
        """Poll ``condition`` (under the machine's lock) until true or ``timeout`` s."""
        deadline = Deadline(timeout)
        while True:
            with self._lock:
                if condition():
                    return True
            if deadline.expired() or self.error is not None:
                return False
            time.sleep(interval)

    def close(self) -> None:
        """Stop serving, kill firmware processes, close and remove the sockets.  Idempotent."""
        if self._closing and self._thread is None:
            return
        self._closing = True
        self._wake()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
        with self._lock:
            for p in self.processors:
                self._halt(p)
                if p._conn is not None:
                    p._conn.close()
                    p._conn = None
                for fd in [p._mem_fd, *p._fds]:
                    if fd >= 0:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                p._mem_fd = -1
                p._fds.clear()
                with contextlib.suppress(FileNotFoundError):
                    p.socket_path.unlink()
            for s in self._listeners:
                s.close()
            self._selector.close()
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def __enter__(self) -> UmlRprocMachine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "CRASH_KINDS",
    "HELLO",
    "K2R_HEADER",
    "LOAD",
    "R2K_RECORD",
    "START",
    "TABLE_DA",
    "TRACE_DA",
    "TRACE_LEN",
    "Boot",
    "Processor",
    "UmlRprocMachine",
    "firmware_image",
    "firmware_table",
    "write_firmware",
]

"""The Linux host programs of the OpenAMP demos: ``echo_test``, ``mat_mul_demo``, ``proxy_app``.

These are the programs a board user runs after ``echo start > .../state``
(openamp-system-reference ``examples/linux/``, at commit 843ec10): each finds the
channel ``rpmsg-openamp-demo-channel`` in sysfs, binds it to ``rpmsg_chrdev``, makes an
endpoint through the control device and talks to the remote through ``/dev/rpmsgN``.
Ours do the same system calls with the same bytes -- the same ``driver_override`` and
``bind`` writes (with their NUL), the same ``RPMSG_CREATE_EPT_IOCTL`` (``src`` 0, ``dst``
from the channel's name), the same messages -- and print the same lines, ``\\r\\n`` and
all, so a transcript compares with a board's.

Where we differ, none of it visible on the wire:

* the C programs poll a non-blocking descriptor in a loop (``echo_test`` sleeps 10 ms
  between reads, the others spin); we wait in ``poll()``, and give up after
  ``timeout`` seconds (the C programs wait forever) with a message and status 1;
* ``echo_test`` compares a plain ``char`` with ``0xA5``: where ``char`` is signed (x86)
  every byte compares unequal and each message counts as an error, where it is unsigned
  (ARM, the boards the demo is for) the test passes.  We compare bytes as the ARM build
  does; ``signed_char=True`` reproduces the x86 count for anyone comparing runs;
* ``mat_mul_demo`` seeds ``rand()`` with the time; ``seed=N`` seeds it with ``N``
  instead.  Either way the numbers are glibc's ``rand()`` sequence for that seed, so a
  seeded run sends exactly what the C program would;
* ``proxy_app`` answers the remote's ``close`` only for descriptors the remote opened
  (the C program would close any descriptor of its own, its stdout or the rpmsg one);
* the payload head of ``echo_test`` is two ``unsigned long``: 16 bytes on 64-bit hosts,
  8 on 32-bit ones (``word_size``, default this host's).

This module is part of the board layer: it imports the rest of :mod:`openamp.linux`,
:mod:`openamp.errors` and the deadline, and nothing of the simulation.
"""

from __future__ import annotations

import errno as E
import fcntl
import os
import select
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..errors import OpenAMPTimeoutError, UsageError
from ..metal.deadline import Deadline
from .remoteproc import PathLike
from .rpmsg import ENDPOINT_INFO, RPMSG_CREATE_EPT_IOCTL

DEMO_CHANNEL = "rpmsg-openamp-demo-channel"
DEFAULT_DEVICE = "virtio0.rpmsg-openamp-demo-channel.-1.0"
DEFAULT_CTRL = "virtio0.rpmsg_ctrl.0.0"
"""Where kernels from 6.0 on put the control device (the programs' ``-c`` default)."""
CHRDEV = "rpmsg_chrdev"
SHUTDOWN_MSG = 0xEF56A55A
RPMSG_BUFFER = 512
RPMSG_HEADER = 16
PAYLOAD_MAX_SIZE = (RPMSG_BUFFER - RPMSG_HEADER) - 24
"""echo_test's ``PAYLOAD_MAX_SIZE``: 472 bytes of data at most."""
NUM_PAYLOADS = PAYLOAD_MAX_SIZE
"""echo_test's ``NUM_PAYLOADS`` (sizes 1..472)."""
MATRIX_SIZE = 6
MATRIX = struct.Struct(f"=I{MATRIX_SIZE * MATRIX_SIZE}I")
"""mat_mul_demo's ``struct _matrix {unsigned int size; unsigned int elements[6][6];}``."""
RPC = struct.Struct("=IiiI")
"""proxy_app's ``struct _sys_rpc``: u32 id, i32 int_field1, i32 int_field2, u32 data_len."""
RPC_BUFF_SIZE = 512
INIT_MSG = b"init_msg\0"
"""proxy_app's first message (``sizeof("init_msg")``: 9 bytes with the NUL)."""
OPEN_SYSCALL_ID, CLOSE_SYSCALL_ID, WRITE_SYSCALL_ID, READ_SYSCALL_ID = 1, 2, 3, 4
TERM_SYSCALL_ID = 6
ECHO_TEST_CREATE_LINE = 143
"""``__LINE__`` of echo_test's ``PR_DBG("app_rpmsg_create_ept: ...")``."""
STAR_LINE = "\r\n **********************************" + "****\r\n"
WORD_SIZE = struct.calcsize("L")
"""``sizeof(unsigned long)`` on this host."""


class HostProgramError(Exception):
    """A step of a host program failed; the message is what the C program prints and
    :attr:`status` its exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _c_hex(value: int) -> str:
    """printf's ``%#x``: ``0`` for zero, ``0x...`` otherwise."""
    return f"{value:#x}" if value else "0"


def _strerror(err: int) -> str:
    return os.strerror(err)


# -- glibc rand() ---------------------------------------------------------------------------


class GlibcRand:
    """glibc's ``srand``/``rand`` (the TYPE_3 additive feedback generator), so that a
    seeded ``mat_mul_demo`` sends exactly what the C program sends for that seed."""

    def __init__(self, seed: int) -> None:
        seed &= 0xFFFFFFFF
        if seed == 0:
            seed = 1
        r = [0] * 34
        # glibc's srandom_r keeps the seed in an int32_t and divides as C does
        word = seed - (1 << 32) if seed & 0x80000000 else seed
        r[0] = word
        for i in range(1, 31):
            # 16807 * word mod (2**31 - 1) by Schrage's method
            hi = int(word / 127773)
            lo = word - hi * 127773
            word = 16807 * lo - 2836 * hi
            if word < 0:
                word += 2147483647
            r[i] = word
        for i in range(31, 34):
            r[i] = r[i - 31]
        self._r = [v & 0xFFFFFFFF for v in r]
        for _ in range(34, 344):
            self._next()

    def _next(self) -> int:
        r = self._r
        value = (r[-31] + r[-3]) & 0xFFFFFFFF
        r.append(value)
        del r[0]
        return value

    def rand(self) -> int:
        """The next ``rand()`` value, 0..2**31-1."""
        return self._next() >> 1


# -- the steps every program shares (examples/linux/common/common.c) --------------------------


@dataclass
class _Setup:
    device: str
    dst: int
    ctrl_name: str = ""
    ept_node: Path = field(default_factory=Path)


class _Printer:
    """printf to the program's output: text exactly as the C program writes it."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err

    def __call__(self, text: str) -> None:
        self.out.write(text)

    def error(self, text: str) -> None:
        self.out.flush()
        self.err.write(text)
        self.err.flush()


def _lookup_channel(p: _Printer, sysfs: Path, name: str) -> tuple[str, int] | None:
    """``lookup_channel``: the first bus device (in directory order) whose name contains
    ``name``, and the destination address its last field gives."""
    devices = sysfs / "bus" / "rpmsg" / "devices"
    try:
        entries = os.listdir(devices)
    except OSError as exc:
        p.error(f"opendir {devices}, {_strerror(exc.errno or 0)}\n")
        return None
    for entry in entries:
        if name in entry:
            p(f"using dev file: {entry}\n")
            last = entry.rsplit(".", 1)[-1]
            try:
                dst = int(last, 10) & 0xFFFFFFFF
            except ValueError:
                dst = 0
            return entry, dst
    p.error(f"No dev file for {name} in {devices}\n")
    return None


def _bind_rpmsg_chrdev(p: _Printer, sysfs: Path, device: str) -> None:
    """``bind_rpmsg_chrdev``: unless the channel's ``driver_override`` already names
    rpmsg_chrdev, write it there and the channel into the driver's ``bind`` (both with
    their NUL, as the C code writes ``strlen + 1`` bytes)."""
    override = sysfs / "bus" / "rpmsg" / "devices" / device / "driver_override"
    p(f"open {override}\n")
    try:
        fd = os.open(override, os.O_RDWR)
    except OSError as exc:
        p.error(f"Failed to open {override}, {_strerror(exc.errno or 0)}\n")
        raise HostProgramError("bind", 256 - E.EINVAL) from None
    try:
        current = os.read(fd, 64).split(b"\0", 1)[0].decode(errors="replace")
        p(f"current drv override = {current}\n")
        if current.startswith(CHRDEV):
            return
        if not current.startswith("(null)"):
            p.error(f"error: device {device} is busy, drv bind={current}\n")
            raise HostProgramError("busy", 256 - E.EBUSY)
        try:
            os.write(fd, CHRDEV.encode() + b"\0")
        except OSError as exc:
            p.error(f"Failed to write {CHRDEV} to {override}, {_strerror(exc.errno or 0)}\n")
            raise HostProgramError("bind", 256 - E.EINVAL) from None
    finally:
        os.close(fd)
    bind = sysfs / "bus" / "rpmsg" / "drivers" / CHRDEV / "bind"
    try:
        fd = os.open(bind, os.O_WRONLY)
    except OSError as exc:
        p.error(f"Failed to open {bind}, {_strerror(exc.errno or 0)}\n")
        raise HostProgramError("bind", 256 - E.EINVAL) from None
    try:
        p(f"write {device} to {bind}\n")
        os.write(fd, device.encode() + b"\0")
    except OSError as exc:
        p.error(f"Failed to write {device} to {bind}, {_strerror(exc.errno or 0)}\n")
        raise HostProgramError("bind", 256 - E.EINVAL) from None
    finally:
        os.close(fd)


def _get_rpmsg_chrdev_fd(p: _Printer, sysfs: Path, dev: Path, device: str) -> tuple[int, str]:
    """``get_rpmsg_chrdev_fd``: open the ``rpmsg_ctrl*`` found below ``device``."""
    where = sysfs / "bus" / "rpmsg" / "devices" / device / "rpmsg"
    p(f"opendir {where}\n")
    try:
        entries = os.listdir(where)
    except OSError as exc:
        p.error(f"opendir {where}, {_strerror(exc.errno or 0)}\n")
        return -E.EINVAL, ""
    for entry in entries:
        if entry.startswith("rpmsg_ctrl"):
            node = dev / entry
            p(f"open {node}\n")
            try:
                return os.open(node, os.O_RDWR | os.O_NONBLOCK), entry
            except OSError as exc:
                p.error(f"open {node}, {_strerror(exc.errno or 0)}\n")
                return -(exc.errno or E.EIO), ""
    p.error(f"No rpmsg_ctrl file found in {where}\n")
    return -E.EINVAL, ""


def _get_rpmsg_ept_dev_name(p: _Printer, sysfs: Path, ctrl_name: str, ept_name: str) -> str | None:
    """``get_rpmsg_ept_dev_name``: the first of ``rpmsg0..127`` below the control device
    whose ``name`` starts with ``ept_name``."""
    for i in range(128):
        path = sysfs / "class" / "rpmsg" / ctrl_name / f"rpmsg{i}" / "name"
        p(f"checking {path}\n")
        if not path.exists():
            continue
        try:
            svc_name = path.read_bytes()[:63].decode(errors="replace")
        except OSError:
            p(f"failed to open {path}\n")
            break
        p(f"svc_name: {svc_name}.\n")
        if svc_name.startswith(ept_name[:64]):
            return f"rpmsg{i}"
    p(f"Not able to RPMsg endpoint file for {ctrl_name}:{ept_name}.\n")
    return None


def _open_demo_endpoint(
    p: _Printer,
    *,
    sysfs: Path,
    dev: Path,
    device: str,
    ctrl: str,
    src: int,
    dst: int,
    announce: Callable[[str, int, int], str],
    timeout: float | None,
) -> tuple[int, int, str]:
    """From the access check to the open endpoint: ``(endpoint fd, control fd, node)``."""
    fpath = sysfs / "bus" / "rpmsg" / "devices" / device
    if not fpath.exists():
        p.error(f"access({fpath}): {_strerror(E.ENOENT)}\n")
        raise HostProgramError("access", 256 - E.EINVAL)
    _bind_rpmsg_chrdev(p, sysfs, device)
    charfd, ctrl_name = _get_rpmsg_chrdev_fd(p, sysfs, dev, ctrl)
    if charfd < 0:
        charfd, ctrl_name = _get_rpmsg_chrdev_fd(p, sysfs, dev, device)
        if charfd < 0:
            raise HostProgramError("ctrl", (256 + charfd) & 0xFF)
    try:
        p(announce(DEMO_CHANNEL, src, dst))
        try:
            fcntl.ioctl(
                charfd,
                RPMSG_CREATE_EPT_IOCTL,
                ENDPOINT_INFO.pack(DEMO_CHANNEL.encode(), src & 0xFFFFFFFF, dst & 0xFFFFFFFF),
            )
        except OSError as exc:
            p.error(f"Failed to create endpoint.\n: {_strerror(exc.errno or 0)}\n")
            raise HostProgramError("create", 256 - E.EINVAL) from None
        name = _get_rpmsg_ept_dev_name(p, sysfs, ctrl_name, DEMO_CHANNEL)
        if name is None:
            raise HostProgramError("ept", 256 - E.EINVAL)
        node = dev / name
        deadline = Deadline(timeout)
        while not node.exists() and not deadline.expired():  # udev/devtmpfs may lag
            time.sleep(0.005)
        return os.open(node, os.O_RDWR | os.O_NONBLOCK), charfd, str(node)
    except BaseException:
        os.close(charfd)
        raise


def _read_message(fd: int, size: int, timeout: float | None, what: str) -> bytes:
    """One message (at most ``size`` bytes), waiting in poll() instead of the C loop."""
    deadline = Deadline(timeout)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        try:
            return os.read(fd, size)
        except BlockingIOError:
            pass
        ms = deadline.remaining_ms()
        if ms == 0:
            raise OpenAMPTimeoutError(f"no {what} within {timeout} s")
        poller.poll(ms)


def _read_now(fd: int, size: int) -> bytes | None:
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None


# -- echo_test ----------------------------------------------------------------------------


@dataclass
class EchoTestResult:
    """What :func:`echo_test` did."""

    status: int = 0
    """The exit status."""
    rounds: int = 0
    sent: int = 0
    received: int = 0
    errors: int = 0
    """The program's ``err_cnt`` (all rounds)."""
    node: str = ""


def echo_test(
    *,
    device: str | None = None,
    ctrl: str = DEFAULT_CTRL,
    rounds: int = 1,
    src: int = 0,
    dst: int | None = None,
    signed_char: bool = False,
    word_size: int = WORD_SIZE,
    sysfs: PathLike = "/sys",
    dev: PathLike = "/dev",
    out: TextIO | None = None,
    err: TextIO | None = None,
    timeout: float | None = 10.0,
) -> EchoTestResult:
    """Run ``echo_test`` (options ``-d device -c ctrl -n rounds -s src -e dst``).

    Sends 472 payloads ``{unsigned long num, size; size x 0xA5}`` of 1..472 data bytes
    per round, checks each echo, prints ``Echo Test Round N Test Results: Error count
    = E``, and ends with the 32-byte shutdown message.  ``timeout``: seconds to wait
    for each echo (None = forever, as the C program).
    """
    if word_size not in (4, 8):
        raise UsageError(f"word_size must be 4 or 8, got {word_size}")
    if rounds < 0:
        raise UsageError(f"rounds must be >= 0, got {rounds}")
    p = _Printer(out or sys.stdout, err or sys.stderr)
    sysfs_p, dev_p = Path(sysfs), Path(dev)
    head = struct.Struct("=QQ" if word_size == 8 else "=II")
    result = EchoTestResult()
    p("\r\n Echo test start \r\n")
    found = _lookup_channel(p, sysfs_p, DEMO_CHANNEL)
    channel = DEFAULT_DEVICE
    channel_dst = 0
    if found is not None:
        channel, channel_dst = found
    try:
        fd, charfd, node = _open_demo_endpoint(
            p,
            sysfs=sysfs_p,
            dev=dev_p,
            device=device or channel,
            ctrl=ctrl,
            src=src,
            dst=channel_dst if dst is None else dst,
            announce=lambda name, s, d: (
                f"main():{ECHO_TEST_CREATE_LINE} app_rpmsg_create_ept: "
                f"{name}[src={_c_hex(s)},dst={_c_hex(d)}]\n"
            ),
            timeout=timeout,
        )
    except HostProgramError as exc:
        result.status = exc.status
        return result
    result.node = node
    p(f"open {node}\n")
    try:
        for j in range(rounds):
            p(STAR_LINE)
            p(f"\r\n  Echo Test Round {j} \r\n")
            p(STAR_LINE)
            for i in range(NUM_PAYLOADS):
                size = i + 1
                payload = head.pack(i, size) + b"\xa5" * size
                p("\r\n sending payload number")
                p(f" {i} of size {len(payload)}\r\n")
                try:
                    sent = os.write(fd, payload)
                except OSError:
                    sent = -1
                if sent <= 0:
                    p("\r\n Error sending data")
                    p(" .. \r\n")
                    break
                result.sent += 1
                p(f"echo test: sent : {sent}\n")
                try:
                    reply = _read_message(
                        fd, head.size + PAYLOAD_MAX_SIZE, timeout, f"echo of payload {i}"
                    )
                except OpenAMPTimeoutError as exc:
                    p.error(f"echo_test: {exc}\n")
                    result.status = 1
                    return result
                result.received += 1
                num, rsize = head.unpack_from(reply) if len(reply) >= head.size else (0, 0)
                p(" received payload number ")
                p(f"{num} of size {len(reply)}\r\n")
                data = reply[head.size :]
                for k in range(min(rsize, PAYLOAD_MAX_SIZE)):
                    byte = data[k] if k < len(data) else 0
                    # char data[k] != 0xA5: with a signed char 0xA5 reads as -91
                    value = byte - 256 if signed_char and byte >= 0x80 else byte
                    if value != 0xA5:
                        p(" \r\n Data corruption")
                        p(f" at index {k} \r\n")
                        result.errors += 1
                        break
                _read_now(fd, head.size + PAYLOAD_MAX_SIZE)  # the C program's extra read
            p(STAR_LINE)
            p(f"\r\n Echo Test Round {j} Test Results: Error count = {result.errors}\r\n")
            p(STAR_LINE)
            result.rounds += 1
        shutdown = bytearray(struct.pack("=8I", *[SHUTDOWN_MSG] * 8))
        head_field = struct.Struct("=Q" if word_size == 8 else "=I")
        head_field.pack_into(shutdown, word_size, len(shutdown))
        try:
            os.write(fd, bytes(shutdown))
        except OSError as exc:
            p.error(f"write SHUTDOWN_MSG\n: {_strerror(exc.errno or 0)}\n")
    finally:
        os.close(fd)
        os.close(charfd)
        p.out.flush()
    return result


# -- mat_mul_demo ---------------------------------------------------------------------------


@dataclass
class MatMulResult:
    """What :func:`mat_mul_demo` did."""

    status: int = 0
    rounds: int = 0
    products: list[list[list[int]]] = field(default_factory=list)
    """The result matrices received, one per round."""
    inputs: list[tuple[list[list[int]], list[list[int]]]] = field(default_factory=list)
    """The two input matrices of each round."""
    node: str = ""


def _matrix_rows(elements: tuple[int, ...], size: int) -> list[list[int]]:
    return [list(elements[r * MATRIX_SIZE : r * MATRIX_SIZE + size]) for r in range(size)]


def _print_matrix(p: _Printer, size: int, elements: tuple[int, ...]) -> None:
    for i in range(min(size, MATRIX_SIZE)):
        p("".join(f" {elements[i * MATRIX_SIZE + j]:3d} " for j in range(min(size, MATRIX_SIZE))))
        p("\r\n")
    p("\r\n")


def mat_mul_demo(
    *,
    device: str | None = None,
    ctrl: str = DEFAULT_CTRL,
    rounds: int = 1,
    src: int = 0,
    dst: int | None = None,
    seed: int | None = None,
    sysfs: PathLike = "/sys",
    dev: PathLike = "/dev",
    out: TextIO | None = None,
    err: TextIO | None = None,
    timeout: float | None = 10.0,
) -> MatMulResult:
    """Run ``mat_mul_demo`` (options ``-d -c -n -s -e`` as ``echo_test``).

    Each round sends two random 6x6 matrices (296 bytes, elements ``(rand() & 0x7F) %
    10``) and prints the 148-byte product; the end is the 4-byte shutdown message.
    ``seed``: the ``srand`` seed (default: the time in seconds at each round, as C).
    """
    p = _Printer(out or sys.stdout, err or sys.stderr)
    sysfs_p, dev_p = Path(sysfs), Path(dev)
    result = MatMulResult()
    p("Matrix multiplication demo start\n")
    found = _lookup_channel(p, sysfs_p, DEMO_CHANNEL)
    channel, channel_dst = found if found is not None else (DEFAULT_DEVICE, 0)
    try:
        fd, charfd, node = _open_demo_endpoint(
            p,
            sysfs=sysfs_p,
            dev=dev_p,
            device=device or channel,
            ctrl=ctrl,
            src=src,
            dst=channel_dst if dst is None else dst,
            announce=lambda name, s, d: (
                f"Creating RPMSG endpoint with name: {name}, src={_c_hex(s)}, dst={_c_hex(d)}\n"
            ),
            timeout=timeout,
        )
    except HostProgramError as exc:
        result.status = exc.status
        return result
    result.node = node
    p(f"open {node}\n")
    try:
        p(f"Start of Matrix multiplication demo with {rounds} rounds\n")
        for i in range(rounds):
            gen = GlibcRand(int(time.time()) if seed is None else seed)
            matrices = []
            for m in range(2):
                elements = tuple((gen.rand() & 0x7F) % 10 for _ in range(MATRIX_SIZE**2))
                matrices.append(elements)
                p(f" \r\n Host : Linux : Input matrix {m} \r\n")
                _print_matrix(p, MATRIX_SIZE, elements)
            request = b"".join(MATRIX.pack(MATRIX_SIZE, *e) for e in matrices)
            p(f"Sending RPMSG: {len(request)} bytes\n")
            try:
                os.write(fd, request)
            except OSError as exc:
                p.error(f"write,errno = -1, {exc.errno}\n")
            try:
                while True:
                    reply = _read_message(fd, MATRIX.size, timeout, "product")
                    if len(reply) >= MATRIX.size:
                        break
            except OpenAMPTimeoutError as exc:
                p.error(f"mat_mul_demo: {exc}\n")
                result.status = 1
                return result
            p(f"Received RPMSG: {len(reply)} bytes\n")
            size, *values = MATRIX.unpack(reply)
            product = tuple(int(v) for v in values)
            p(" \r\n Host : Linux : Printing results \r\n")
            _print_matrix(p, size, product)
            result.inputs.append(
                (_matrix_rows(matrices[0], MATRIX_SIZE), _matrix_rows(matrices[1], MATRIX_SIZE))
            )
            result.products.append(_matrix_rows(product, min(size, MATRIX_SIZE)))
            result.rounds += 1
            p(f"End of Matrix multiplication demo round {i}\n")
        try:
            os.write(fd, struct.pack("=I", SHUTDOWN_MSG))
        except OSError as exc:
            p.error(f"write SHUTDOWN_MSG\n: {_strerror(exc.errno or 0)}\n")
    finally:
        os.close(fd)
        os.close(charfd)
    p("\r\n Quitting application .. \r\n")
    p(" Matrix multiply application end \r\n")
    p.out.flush()
    return result


# -- proxy_app ----------------------------------------------------------------------------


@dataclass
class ProxyAppResult:
    """What :func:`proxy_app` did."""

    status: int = 0
    requests: dict[int, int] = field(default_factory=dict)
    """Requests served, by RPC id."""
    terminated: bool = False
    """Whether the remote sent the terminate request."""
    node: str = ""


def proxy_app(
    *,
    sysfs: PathLike = "/sys",
    dev: PathLike = "/dev",
    stdin: int = 0,
    stdout: int = 1,
    out: TextIO | None = None,
    err: TextIO | None = None,
    start_delay: float = 1.0,
    timeout: float | None = None,
) -> ProxyAppResult:
    """Run ``proxy_app``: serve the remote's open/close/read/write/terminate requests.

    The remote's files are the host's, relative to the working directory (as C); its
    console is ``stdin``/``stdout`` (descriptors; fd 0 and 1 of the remote).
    ``start_delay``: the C program's ``sleep(1)`` before it looks for the channel.
    ``timeout``: seconds to wait for the next request (None = until terminated).
    """
    p = _Printer(out or sys.stdout, err or sys.stderr)
    sysfs_p, dev_p = Path(sysfs), Path(dev)
    result = ProxyAppResult()
    time.sleep(start_delay)
    found = _lookup_channel(p, sysfs_p, DEMO_CHANNEL)
    if found is None:
        result.status = 256 - E.EINVAL
        return result
    channel, channel_dst = found
    try:
        fd, charfd, node = _open_demo_endpoint(
            p,
            sysfs=sysfs_p,
            dev=dev_p,
            device=channel,
            ctrl=DEFAULT_CTRL,
            src=0,
            dst=channel_dst,
            announce=lambda name, s, d: (
                f"app_rpmsg_create_ept: {name}[src={_c_hex(s)},dst={_c_hex(d)}]\n"
            ),
            timeout=timeout,
        )
    except HostProgramError as exc:
        result.status = exc.status
        return result
    result.node = node
    opened: set[int] = set()
    fds = {0: stdin, 1: stdout}
    try:
        p("\r\nHost>RPC service started !!\r\n")
        p.out.flush()
        os.write(fd, INIT_MSG)
        while True:
            try:
                request = _read_message(fd, RPC_BUFF_SIZE, timeout, "request")
            except OpenAMPTimeoutError as exc:
                p.error(f"proxy_app: {exc}\n")
                result.status = 1
                break
            if not request:
                continue
            if len(request) < RPC.size:
                request = request + bytes(RPC.size - len(request))
            call, f1, f2, _dlen = RPC.unpack_from(request)
            data = request[RPC.size :]
            result.requests[call] = result.requests.get(call, 0) + 1
            if call == TERM_SYSCALL_ID:
                result.terminated = True
                break
            if not _handle_rpc(p, fd, call, f1, f2, data, fds, opened):
                p("\nHost>Err:Handling remote procedure call!\n")
                p(f"\nrpc id {call}\n")
                p(f"\nrpc int field1 {f1}\n")
                p(f"\nrpc int field2 {f2}\n")
                break
        p("\r\nHost>RPC service exiting !!\r\n")
    finally:
        os.close(fd)
        os.close(charfd)
        for f in opened:
            os.close(f)
        p.out.flush()
    time.sleep(start_delay)  # "Wait for other end to cleanup"
    return result


def _handle_rpc(
    p: _Printer,
    ept: int,
    call: int,
    f1: int,
    f2: int,
    data: bytes,
    fds: dict[int, int],
    opened: set[int],
) -> bool:
    """One request, answered as proxy_app's ``handle_*``; False where C returns -1."""

    def reply(answer: bytes) -> bool:
        try:
            return os.write(ept, answer) == len(answer)
        except OSError:
            return False

    if call == OPEN_SYSCALL_ID:
        path = data.split(b"\0", 1)[0]
        try:
            new = os.open(path, f1, f2)
            opened.add(new)
        except OSError:
            new = -1
        return reply(RPC.pack(OPEN_SYSCALL_ID, new, 0, 0))
    if call == CLOSE_SYSCALL_ID:
        if f1 in opened:
            os.close(f1)
            opened.discard(f1)
            status = 0
        else:
            status = -1
        return reply(RPC.pack(CLOSE_SYSCALL_ID, status, 0, 0))
    if call == READ_SYSCALL_ID:
        target = fds.get(f1, f1)
        count = 512 if f1 == 0 else max(f2, 0)
        try:
            if f1 == 0:
                p.out.flush()
            got = os.read(target, count) if (f1 in fds or f1 in opened) else None
        except OSError:
            got = None
        n = -1 if got is None else len(got)
        p(f"handle_read: {READ_SYSCALL_ID}, {n}\n")
        return reply(RPC.pack(READ_SYSCALL_ID, n, 0, max(n, 0) & 0xFFFFFFFF) + (got or b""))
    if call == WRITE_SYSCALL_ID:
        target = fds.get(f1, f1)
        chunk = data[: max(f2, 0)]
        try:
            if f1 in (1, 2):
                p.out.flush()
            wrote = os.write(target, chunk) if (f1 in fds or f1 in opened or f1 == 2) else -1
        except OSError:
            wrote = -1
        return reply(RPC.pack(WRITE_SYSCALL_ID, wrote, 0, 0))
    p(f"\r\nHost>Err:Invalid RPC sys call ID: {call}! \r\n")
    return False


__all__ = [
    "DEMO_CHANNEL",
    "NUM_PAYLOADS",
    "PAYLOAD_MAX_SIZE",
    "EchoTestResult",
    "GlibcRand",
    "HostProgramError",
    "MatMulResult",
    "ProxyAppResult",
    "echo_test",
    "mat_mul_demo",
    "proxy_app",
]

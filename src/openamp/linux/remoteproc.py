"""Remote processors on a real board, driven through the Linux kernel's remoteproc.

Theory of operation.  The kernel owns the remote core; user space asks it for things by
writing words into sysfs files (``/sys/class/remoteproc/remoteprocN/state`` and friends,
see docs/on-a-board.md) and reads its answers back from the same files, from
debugfs (trace buffers, the loaded resource table) and from the optional
``/dev/remoteprocN`` character device.  This module is a thin, honest layer over those
files: :class:`RemoteProc` reads and writes exactly the strings the kernel documents, and
turns every ``errno`` the kernel returns into a :class:`KernelError` whose message says
what happened *and what to do about it* (``EBUSY writing 'start': remoteproc0 is already
running; stop it first``).

Every root (sysfs, debugfs, /dev, the firmware search path) is a parameter, so the same
code runs on a directory tree laid out like the kernel's — that is how it is tested.

What this module must not do:

* write ``start`` to a processor that is already ``running``/``attached``: kernels from
  v5.19 accept it silently and leak a power reference, so one ``stop`` no longer stops it
  (§1.2, §6.1).  :meth:`RemoteProc.start` reads the state first;
* guess: it never invents a path the kernel does not create, and never retries a command
  the kernel refused;
* know anything about rpmsg (that is :mod:`openamp.linux.rpmsg`).

The module also holds the small kernel plumbing that :mod:`openamp.linux.rpmsg` shares:
the :class:`KernelError` family with its errno table, and the ``_IOC`` ioctl encoding.
"""

from __future__ import annotations

import contextlib
import errno as E
import fcntl
import filecmp
import os
import platform
import re
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ..errors import (
    FirmwareImageError,
    NoBufferError,
    OpenAMPError,
    OpenAMPTimeoutError,
    PeerGoneError,
    SendTimeoutError,
    UsageError,
)
from ..metal.deadline import Deadline

PathLike = str | os.PathLike[str]

# -- errors -------------------------------------------------------------------------------

ERESTARTSYS = 512
"""Kernel-internal errno a blocked rpmsg write returns after its 15 s wait (§2.4, §6.5)."""


class KernelError(OpenAMPError, OSError):
    """The kernel refused a request (an ``errno`` from a sysfs write, an open, an ioctl).

    ``errno`` is the kernel's error number (or None when the problem was found before
    asking the kernel), ``path`` the file involved, ``action`` what was attempted (a key
    of :data:`ERRNO_HINTS`) and ``hint`` the advice part of the message.  The message
    itself reads ``<ERRNO> <what was done>: <what it means and what to do>``.
    """

    def __init__(
        self,
        message: str,
        *,
        errno: int | None = None,
        path: str | None = None,
        action: str = "",
        hint: str = "",
    ) -> None:
        super().__init__(errno, message)
        self.message = message
        self.path = path
        self.action = action
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class DeviceNotFoundError(KernelError):
    """No such processor, channel or device node (the message lists what exists)."""


class DeviceBusyError(KernelError):
    """``EBUSY``: the object is in use or in a state that forbids the request."""


class RequestRejectedError(KernelError):
    """``EINVAL`` and friends: the kernel does not accept this request in this state."""


class KernelPermissionError(KernelError):
    """``EACCES``/``EPERM``: not root, or the platform driver made the file read-only."""


class FirmwareNotFoundError(KernelError):
    """The firmware file is not in the kernel's firmware search path."""


class FirmwareInstallError(KernelError):
    """The firmware file could not be copied into the search path."""


class EndpointGoneError(KernelError, PeerGoneError):
    """The rpmsg device behind an endpoint vanished (channel destroyed, processor stopped)."""


class MessageTooLargeError(KernelError, UsageError):
    """``EMSGSIZE``: a message longer than the transport's MTU (496 bytes on virtio)."""


class KernelNoBufferError(KernelError, NoBufferError):
    """``EAGAIN``/``ENOMEM`` on a non-blocking send: no transmit buffer is free now."""


class KernelSendTimeoutError(KernelError, SendTimeoutError):
    """No transmit buffer became free in time (``ERESTARTSYS`` after the kernel's 15 s)."""


Hint = tuple[type[KernelError], str]

ERRNO_HINTS: dict[tuple[str, int], Hint] = {
    # -- remoteproc sysfs ``state`` (§1.2)
    ("state:start", E.EBUSY): (DeviceBusyError, "{dev} is already {busy_state}; stop it first"),
    ("state:start", E.ENOENT): (
        FirmwareNotFoundError,
        "the kernel found no firmware file {firmware!r} in its search path ({search}); "
        "copy it there: RemoteProc.set_firmware(PATH, install=True) or "
        "`openamp rproc firmware {dev} PATH --install`",
    ),
    ("state:start", E.EINVAL): (
        RequestRejectedError,
        "the kernel rejected firmware {firmware!r}: it is not an ELF image it can load, its "
        ".resource_table is missing or malformed, or a memory region cannot be mapped; "
        "`dmesg | tail` names the reason and `openamp rsc show FILE` checks the table",
    ),
    ("state:start", E.ENODEV): (
        DeviceNotFoundError,
        "{dev} is being removed (state 'deleted'): its platform driver was unbound",
    ),
    ("state:start", E.ENOMEM): (
        KernelError,
        "the kernel could not allocate memory to boot {dev}: a carveout, vring or buffer "
        "does not fit the reserved-memory regions of the device tree; see dmesg",
    ),
    ("state:start", E.EINTR): (
        KernelError,
        "interrupted while waiting for {dev}'s lock (another start/stop in progress); try again",
    ),
    ("state:start", E.ETIMEDOUT): (
        KernelError,
        "the platform driver gave up waiting for {dev} to come up; see dmesg",
    ),
    ("state:stop", E.EINVAL): (RequestRejectedError, "{dev} is {state}: {advice}"),
    ("state:detach", E.EINVAL): (
        RequestRejectedError,
        "{dev} is {state}: only an attached processor (one started by the bootloader) can "
        "be detached, and only if its platform driver implements detach",
    ),
    ("state:command", E.EINVAL): (
        RequestRejectedError,
        "the kernel knows only 'start', 'stop' and 'detach', not {value!r}",
    ),
    # -- firmware, recovery, coredump, crash (§1.1, §1.4, §4.5)
    ("firmware", E.EBUSY): (
        DeviceBusyError,
        "{dev} is {state}; the firmware can only be changed while it is offline; stop it first",
    ),
    ("firmware", E.EINVAL): (
        RequestRejectedError,
        "the kernel refused the firmware name {value!r} (an empty name?)",
    ),
    ("recovery", E.EINVAL): (
        RequestRejectedError,
        "the kernel accepts only 'enabled', 'disabled' or 'recover', not {value!r}",
    ),
    ("coredump", E.EBUSY): (
        DeviceBusyError,
        "{dev} has crashed; the coredump setting cannot change until it is recovered",
    ),
    ("coredump", E.EINVAL): (
        RequestRejectedError,
        "the kernel accepts only 'disabled', 'enabled' or 'inline', not {value!r}",
    ),
    ("crash", E.EINVAL): (
        RequestRejectedError,
        "the crash type must be a number (0 mmufault, 1 watchdog, 2 fatal error)",
    ),
    # -- /dev/remoteprocN (§1.3)
    ("cdev:command", E.EINVAL): (
        RequestRejectedError,
        "{dev} refused {value!r}: commands are 'start', 'stop' or 'detach', at most 10 "
        "bytes and without a trailing newline; or the state does not allow it ({state})",
    ),
    ("cdev:command", E.EBUSY): (DeviceBusyError, "{dev} is already {busy_state}; stop it first"),
    ("cdev:ioctl", E.EINVAL): (
        RequestRejectedError,
        "this kernel's /dev/remoteprocN does not know {ioctl}",
    ),
    # -- /dev/rpmsgN (§2.4)
    ("rpmsg:open", E.EBUSY): (
        DeviceBusyError,
        "{node} is already open (the kernel allows one opener at a time); "
        "find the other process with `fuser {node}`",
    ),
    ("rpmsg:open", E.ENETRESET): (
        EndpointGoneError,
        "the rpmsg device behind {node} is gone (the remote destroyed the channel, or the "
        "processor stopped); look for the new node with `openamp rpmsg ls`",
    ),
    ("rpmsg:open", E.EINVAL): (
        RequestRejectedError,
        "the kernel could not create the endpoint of {node}: its local address ({src}) is "
        "probably taken; use another src, or -1 for a dynamic address",
    ),
    ("rpmsg:read", E.EPIPE): (
        EndpointGoneError,
        "the endpoint behind {node} is gone: the remote destroyed the channel, or the "
        "processor stopped or crashed (queued messages are lost)",
    ),
    ("rpmsg:write", E.EPIPE): (
        EndpointGoneError,
        "the endpoint behind {node} is gone: the remote destroyed the channel, or the "
        "processor stopped or crashed",
    ),
    # -- /dev/ttyRPMSGn (§2.5): a tty whose channel went away is hung up
    ("tty:write", E.EIO): (
        EndpointGoneError,
        "the rpmsg tty {path} is gone (hung up): the remote destroyed its channel, or the "
        "processor stopped or crashed; look for it again with `openamp rpmsg ls`",
    ),
    ("rpmsg:write", E.EMSGSIZE): (
        MessageTooLargeError,
        "a message of {size} bytes is longer than the transport's MTU (496 bytes on virtio)",
    ),
    ("rpmsg:write", E.EINVAL): (
        RequestRejectedError,
        "{node} has no destination address (dst is RPMSG_ADDR_ANY); create the endpoint "
        "with an explicit dst",
    ),
    ("rpmsg:write", ERESTARTSYS): (
        KernelSendTimeoutError,
        "no transmit buffer became free for 15 s: the remote does not consume messages "
        "(is it still running? `openamp rproc status`)",
    ),
    ("rpmsg:write", E.EAGAIN): (
        KernelNoBufferError,
        "no transmit buffer is free right now: the remote has not returned any yet",
    ),
    ("rpmsg:write", E.ENOMEM): (
        KernelNoBufferError,
        "no transmit buffer is free right now: the remote has not returned any yet",
    ),
    ("rpmsg:destroy", E.EINVAL): (
        RequestRejectedError,
        "{node} is a channel's endpoint (the rpmsg_chrdev driver bound to the channel), not "
        "one created through rpmsg_ctrl, so it cannot be destroyed; unbind the driver "
        "(`openamp rpmsg unbind CHANNEL`) or let the remote destroy the channel",
    ),
    ("rpmsg:set_flow", E.EOPNOTSUPP): (
        RequestRejectedError,
        "the transport has no flow control (virtio never has; only Qualcomm GLINK does)",
    ),
    ("rpmsg:set_flow", E.EINVAL): (
        RequestRejectedError,
        "this kernel has no RPMSG_SET_INCOMING_FLOWCONTROL (flow control came in v6.6)",
    ),
    ("rpmsg:get_flow", E.EINVAL): (
        RequestRejectedError,
        "this kernel has no RPMSG_GET_OUTGOING_FLOWCONTROL (flow control came in v6.6)",
    ),
    # -- /dev/rpmsg_ctrlN (§2.3)
    ("ctrl:create_ept", E.ENOMEM): (
        KernelError,
        "the kernel could not create another endpoint device (out of memory or minors)",
    ),
    ("ctrl:create_dev", E.ENXIO): (
        RequestRejectedError,
        "the kernel could not create channel {name!r} ({src} -> {dst}): it exists already, "
        "or the transport cannot create channels",
    ),
    ("ctrl:create_dev", E.EINVAL): (
        RequestRejectedError,
        "this kernel's rpmsg_ctrl does not know RPMSG_CREATE_DEV_IOCTL (v5.18 had only "
        "RPMSG_CREATE_EPT_IOCTL)",
    ),
    ("ctrl:release_dev", E.EINVAL): (
        RequestRejectedError,
        "there is no channel {name!r} ({src} -> {dst}) to release, or this kernel's "
        "rpmsg_ctrl does not know RPMSG_RELEASE_DEV_IOCTL",
    ),
    # -- binding channels to drivers (§2.5)
    ("bind", E.EBUSY): (
        DeviceBusyError,
        "channel {channel} is already bound to {bound}; unbind it first (rebind=True, `--rebind`)",
    ),
    ("bind", E.ENODEV): (
        RequestRejectedError,
        "driver {driver} did not take channel {channel}: its driver_override does not name "
        "the driver, or the driver's probe failed (see dmesg)",
    ),
    ("bind", E.ENOENT): (
        DeviceNotFoundError,
        "there is no driver {driver} on the rpmsg bus; load it (`modprobe rpmsg_char`)",
    ),
    ("unbind", E.ENODEV): (
        RequestRejectedError,
        "channel {channel} is not bound to {driver}",
    ),
    ("driver_override", E.EINVAL): (
        RequestRejectedError,
        "the driver name {value!r} is not accepted (too long?)",
    ),
    # -- any action
    ("*", E.EACCES): (
        KernelPermissionError,
        "permission denied on {path}: run as root or grant access with a udev rule "
        "(sysfs files of a processor whose driver sets sysfs_read_only are read-only "
        "even for root)",
    ),
    ("*", E.EPERM): (
        KernelPermissionError,
        "operation not permitted on {path}: run as root (CAP_SYS_ADMIN)",
    ),
    ("*", E.EROFS): (KernelPermissionError, "{path} is on a read-only file system"),
    ("*", E.ENOENT): (DeviceNotFoundError, "{path} does not exist"),
    ("*", E.ENODEV): (DeviceNotFoundError, "the device behind {path} is gone"),
    ("*", E.ENXIO): (DeviceNotFoundError, "the device behind {path} is gone"),
    ("*", E.EBUSY): (
        DeviceBusyError,
        "{path} is in use, or its state does not allow this now (dmesg may say why)",
    ),
    ("*", E.EINVAL): (
        RequestRejectedError,
        "the kernel rejected the request (dmesg may say why)",
    ),
    ("*", E.ENOTTY): (
        RequestRejectedError,
        "{path} does not understand this ioctl: it is not the kind of device expected",
    ),
    ("*", E.EOPNOTSUPP): (RequestRejectedError, "the driver does not support this"),
    ("*", E.EPIPE): (EndpointGoneError, "the device behind {path} is gone"),
    ("*", E.ENETRESET): (EndpointGoneError, "the device behind {path} is gone"),
    ("*", E.EMSGSIZE): (MessageTooLargeError, "the message is too long for the transport"),
    ("*", E.EAGAIN): (KernelNoBufferError, "the device cannot take more right now"),
    ("*", ERESTARTSYS): (
        KernelSendTimeoutError,
        "the kernel gave up waiting (ERESTARTSYS after its own timeout)",
    ),
    ("*", E.EINTR): (KernelError, "interrupted by a signal; try again"),
}
"""``(action, errno) -> (error class, advice template)``; ``("*", errno)`` is the
fallback for any action.  The templates use the context the caller passes."""


class _Fields(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return f"<{key}>"


def errno_name(err: int) -> str:
    """``EBUSY`` for 16, ``ERESTARTSYS`` for 512, ``errno 999`` for unknown numbers."""
    if err == ERESTARTSYS:
        return "ERESTARTSYS"
    return E.errorcode.get(err, f"errno {err}")


def kernel_error(err: int, action: str, doing: str, **context: object) -> KernelError:
    """The :class:`KernelError` for ``err`` returned while ``doing`` (e.g. "writing 'start'").

    ``action`` selects the row of :data:`ERRNO_HINTS` (falling back to ``("*", err)``);
    ``context`` fills the template (``dev``, ``state``, ``path``, ``node``...).
    """
    cls, template = ERRNO_HINTS.get((action, err)) or ERRNO_HINTS.get(
        ("*", err), (KernelError, "{strerror}")
    )
    fields = _Fields(context)
    fields.setdefault("strerror", os.strerror(err).lower())
    hint = template.format_map(fields)
    path = context.get("path")
    return cls(
        f"{errno_name(err)} {doing}: {hint}",
        errno=err,
        path=None if path is None else str(path),
        action=action,
        hint=hint,
    )


# -- ioctl numbers ------------------------------------------------------------------------


@dataclass(frozen=True)
class IocLayout:
    """How an architecture packs ``_IOC(dir, type, nr, size)`` (``asm-generic/ioctl.h``)."""

    dir_shift: int
    size_bits: int
    none: int
    write: int
    read: int


IOC_GENERIC = IocLayout(dir_shift=30, size_bits=14, none=0, write=1, read=2)
"""x86_64, arm64, arm, riscv and most others."""
IOC_POWERPC = IocLayout(dir_shift=29, size_bits=13, none=1, write=4, read=2)
"""powerpc, mips and sparc (3 direction bits)."""


def ioc_layout(machine: str | None = None) -> IocLayout:
    """The ioctl layout of ``machine`` (``platform.machine()`` by default)."""
    m = (machine or platform.machine()).lower()
    return IOC_POWERPC if m.startswith(("ppc", "powerpc", "mips", "sparc")) else IOC_GENERIC


def _ioc(direction: str, type_: int, nr: int, size: int, layout: IocLayout) -> int:
    if not 0 <= size < 1 << layout.size_bits:
        raise UsageError(f"ioctl argument size {size} does not fit {layout.size_bits} bits")
    bits = {"none": layout.none, "w": layout.write, "r": layout.read}[direction]
    return (bits << layout.dir_shift) | (size << 16) | (type_ << 8) | nr


def IO(type_: int, nr: int, layout: IocLayout | None = None) -> int:
    """``_IO(type, nr)``: an ioctl without an argument."""
    return _ioc("none", type_, nr, 0, layout or ioc_layout())


def IOW(type_: int, nr: int, size: int, layout: IocLayout | None = None) -> int:
    """``_IOW(type, nr, T)`` with ``size = sizeof(T)``: user space writes the argument."""
    return _ioc("w", type_, nr, size, layout or ioc_layout())


def IOR(type_: int, nr: int, size: int, layout: IocLayout | None = None) -> int:
    """``_IOR(type, nr, T)``: the kernel writes the argument back."""
    return _ioc("r", type_, nr, size, layout or ioc_layout())


RPROC_MAGIC = 0xB7
S32 = struct.Struct("=i")
RPROC_SET_SHUTDOWN_ON_RELEASE = IOW(RPROC_MAGIC, 1, S32.size)
"""``_IOW(0xB7, 1, __s32)`` = 0x4004B701 (generic layout)."""
RPROC_GET_SHUTDOWN_ON_RELEASE = IOR(RPROC_MAGIC, 2, S32.size)
"""``_IOR(0xB7, 2, __s32)`` = 0x8004B702 (generic layout)."""


# -- sysfs file access --------------------------------------------------------------------


def read_attr(path: PathLike) -> str:
    """A sysfs/debugfs attribute's text without its trailing newline."""
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace").rstrip("\n")


def write_attr(
    path: PathLike, text: str | bytes, *, action: str, doing: str, **context: object
) -> None:
    """Write ``text`` to an attribute in one ``write()``, as ``echo -n`` does.

    sysfs hands the whole buffer of one write to the driver, which answers with an
    errno; that errno becomes a :class:`KernelError` from :data:`ERRNO_HINTS`.
    """
    data = text.encode() if isinstance(text, str) else text
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise kernel_error(exc.errno or 0, action, doing, path=path, **context) from exc


def parse_addr(text: str) -> int:
    """An rpmsg address as sysfs prints it: ``0x400`` (bus files), ``1024`` or ``-1``
    (class files, signed decimal) — as an unsigned 32-bit number."""
    t = text.strip()
    return (int(t, 16) if t.lower().startswith("0x") else int(t, 10)) & 0xFFFFFFFF


# -- states -------------------------------------------------------------------------------


class KernelState(str, Enum):
    """What ``/sys/class/remoteproc/remoteprocN/state`` reads (``rproc_state_string[]``)."""

    OFFLINE = "offline"
    SUSPENDED = "suspended"
    RUNNING = "running"
    CRASHED = "crashed"
    DELETED = "deleted"
    ATTACHED = "attached"
    DETACHED = "detached"
    INVALID = "invalid"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, text: str) -> KernelState:
        """The state a ``state`` file shows; anything unknown is ``invalid`` (as the kernel
        shows values above ``RPROC_LAST``)."""
        try:
            return cls(text.strip())
        except ValueError:
            return cls.INVALID


K = KernelState

KERNEL_TRANSITIONS: dict[str, dict[KernelState, KernelState]] = {
    "start": {K.OFFLINE: K.RUNNING, K.DETACHED: K.ATTACHED},
    "stop": {K.RUNNING: K.OFFLINE, K.ATTACHED: K.OFFLINE},
    "detach": {K.ATTACHED: K.DETACHED},
    "crash": {K.RUNNING: K.CRASHED, K.ATTACHED: K.CRASHED},
    "recover": {K.CRASHED: K.RUNNING},
}
"""What the kernel (v5.19 and later) does with each command, from each state (§1.2, §4.5,
§4.6).  ``start``, ``stop`` and ``detach`` are written to ``state``; ``crash`` is the
kernel noticing a crash (or a debugfs ``crash`` write); ``recover`` happens on its own
while recovery is enabled, or when ``recover`` is written to ``recovery``.  A pair that
is missing is refused (or, for ``start`` on a running processor, silently leaks a power
reference).  The diagram in docs/on-a-board.md is drawn from this table."""

_STATE_COMMANDS = ("start", "stop", "detach")

_STOP_ADVICE = {
    K.OFFLINE: "there is nothing to stop",
    K.CRASHED: "a crashed processor cannot be stopped through sysfs; recover it "
    "(RemoteProc.recover(), `openamp rproc recovery DEV recover`) or enable recovery",
    K.DETACHED: "it runs without Linux managing it; start it to attach first",
    K.SUSPENDED: "the kernel stops only running or attached processors",
    K.DELETED: "it is being removed",
    K.INVALID: "the kernel stops only running or attached processors",
}


def state_diagram() -> str:
    """A Mermaid state diagram of :data:`KERNEL_TRANSITIONS` (used by the docs)."""
    lines = [
        "stateDiagram-v2",
        "    [*] --> offline",
        "    [*] --> detached: booted by the bootloader",
    ]
    for command, moves in KERNEL_TRANSITIONS.items():
        for old, new in moves.items():
            lines.append(f"    {old} --> {new}: {command}")
    return "\n".join(lines)


# -- firmware search path -----------------------------------------------------------------

FIRMWARE_DIR = "/lib/firmware"


def firmware_search_path(sysfs: PathLike = "/sys", root: PathLike = FIRMWARE_DIR) -> list[Path]:
    """The directories the kernel's ``request_firmware()`` searches, in its order.

    The ``firmware_class.path`` module parameter (read from
    ``<sysfs>/module/firmware_class/parameters/path``) when set, then
    ``<root>/updates/<release>``, ``<root>/updates``, ``<root>/<release>``, ``<root>``.
    """
    dirs: list[Path] = []
    with contextlib.suppress(OSError):
        custom = read_attr(Path(sysfs) / "module/firmware_class/parameters/path").strip()
        if custom:
            dirs.append(Path(custom))
    release = os.uname().release
    r = Path(root)
    dirs += [r / "updates" / release, r / "updates", r / release, r]
    return dirs


# -- debugfs resource_table text ----------------------------------------------------------


@dataclass
class DebugfsResource:
    """One entry of debugfs ``resource_table`` (§1.5): its type and the numbers shown."""

    index: int
    type: str
    """``carveout``, ``devmem``, ``trace``, ``vdev``, or ``unknown``."""
    fields: dict[str, int | str] = field(default_factory=dict)
    """Keys as the kernel prints them, in snake case: ``device_address``, ``length``,
    ``name``, ``notify_id``, ``status``, ... (numbers as ints)."""
    vrings: list[dict[str, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out: dict[str, Any] = {"index": self.index, "type": self.type, **self.fields}
        if self.type == "vdev":
            out["vrings"] = self.vrings
        return out


def _rsc_field(line: str) -> tuple[str, int | str] | None:
    s = line.strip()
    if s.startswith("Name "):
        return "name", s[5:]
    if s.endswith(" Bytes"):
        s = s[: -len(" Bytes")]
    parts = s.rsplit(None, 1)
    if len(parts) != 2:
        return None
    key = re.sub(r"[^a-z0-9]+", "_", parts[0].lower()).strip("_")
    try:
        return key, int(parts[1], 0)
    except ValueError:
        return key, parts[1]


def parse_resource_table_text(text: str) -> list[DebugfsResource] | None:
    """Parse debugfs ``remoteproc/remoteprocN/resource_table``; None for
    ``No resource table found``."""
    if text.strip().startswith("No resource table found"):
        return None
    entries: list[DebugfsResource] = []
    vring: dict[str, int] | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            continue
        m = re.match(r"^Entry (\d+) is of type (\w+)$", line)
        if m:
            entries.append(DebugfsResource(int(m.group(1)), m.group(2)))
            vring = None
            continue
        m = re.match(r"^Unknown resource type found: (\d+)", line)
        if m:
            entries.append(DebugfsResource(len(entries), "unknown", {"type": int(m.group(1))}))
            vring = None
            continue
        if not entries:
            continue
        entry = entries[-1]
        m = re.match(r"^\s+Vring (\d+)$", line)
        if m:
            vring = {"index": int(m.group(1))}
            entry.vrings.append(vring)
            continue
        parsed = _rsc_field(line)
        if parsed is None:
            continue
        key, value = parsed
        if vring is not None and raw.startswith("    ") and isinstance(value, int):
            vring[key] = value
        else:
            entry.fields[key] = value
    return entries


# -- /dev/remoteprocN ---------------------------------------------------------------------


class RemoteprocCdev:
    """``/dev/remoteprocN`` (``CONFIG_REMOTEPROC_CDEV``, §1.3).

    Commands are written without a newline (the driver compares ``len`` bytes, so
    ``start\\n`` fails).  With shutdown-on-release set, closing the file stops the
    processor: a crashed or killed application does not leave the remote running.
    """

    def __init__(self, path: PathLike, *, device: str | None = None) -> None:
        self.path = Path(path)
        self.device = device or self.path.name
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise kernel_error(
                exc.errno or 0, "cdev:open", f"opening {self.path}", path=self.path
            ) from exc

    def fileno(self) -> int:
        """The file descriptor."""
        return self._fd

    def command(self, word: str) -> None:
        """Write ``start``, ``stop`` or ``detach`` (no newline).

        Unlike :meth:`RemoteProc.start` this does not read the state first: a ``start``
        on a running processor takes another kernel power reference.
        """
        if word not in _STATE_COMMANDS:
            raise UsageError(f"unknown command {word!r} (start, stop, detach)")
        try:
            os.write(self._fd, word.encode())
        except OSError as exc:
            raise kernel_error(
                exc.errno or 0,
                "cdev:command",
                f"writing {word!r} to {self.path}",
                path=self.path,
                dev=self.device,
                value=word,
                state="see `openamp rproc status`",
                busy_state="running",
            ) from exc

    @property
    def shutdown_on_release(self) -> bool:
        """``RPROC_GET_SHUTDOWN_ON_RELEASE``; setting it uses ``RPROC_SET_...``."""
        buf = bytearray(S32.size)
        self._ioctl(RPROC_GET_SHUTDOWN_ON_RELEASE, buf, "RPROC_GET_SHUTDOWN_ON_RELEASE")
        return bool(S32.unpack(buf)[0])

    @shutdown_on_release.setter
    def shutdown_on_release(self, value: bool) -> None:
        self._ioctl(
            RPROC_SET_SHUTDOWN_ON_RELEASE,
            S32.pack(1 if value else 0),
            "RPROC_SET_SHUTDOWN_ON_RELEASE",
        )

    def _ioctl(self, request: int, arg: bytes | bytearray, name: str) -> None:
        try:
            if isinstance(arg, bytearray):
                fcntl.ioctl(self._fd, request, arg, True)
            else:
                fcntl.ioctl(self._fd, request, arg)
        except OSError as exc:
            raise kernel_error(
                exc.errno or 0,
                "cdev:ioctl",
                f"ioctl {name} on {self.path}",
                path=self.path,
                ioctl=name,
            ) from exc

    def close(self) -> None:
        """Close the device (which stops the processor if shutdown-on-release is set)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RemoteprocCdev:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- remoteproc ---------------------------------------------------------------------------

_DEVICE_RE = re.compile(r"^remoteproc(\d+)$")
COREDUMP_MODES = ("disabled", "enabled", "inline")
CRASH_TYPES = {"mmufault": 0, "watchdog": 1, "fatal": 2}


def _remoteproc_dirs(sysfs: PathLike) -> list[tuple[int, str]]:
    cls = Path(sysfs) / "class" / "remoteproc"
    try:
        names = os.listdir(cls)
    except FileNotFoundError:
        return []
    found = [(int(m.group(1)), n) for n in names if (m := _DEVICE_RE.match(n))]
    return sorted(found)


class RemoteProc:
    """One remote processor the kernel manages (``/sys/class/remoteproc/remoteprocN``).

    ``name_or_index``: ``0``, ``"0"``, ``"remoteproc0"``, or the processor's ``name``
    (e.g. ``"m4"``; see ``openamp rproc ls``).  ``sysfs``, ``debugfs`` and ``dev`` are the
    roots the kernel's files live under; ``firmware_path`` the directories searched for
    firmware (default: :func:`firmware_search_path`; the first one is where
    :meth:`set_firmware` installs files).  ``poll_interval`` is in seconds.
    """

    def __init__(
        self,
        name_or_index: int | str,
        *,
        sysfs: PathLike = "/sys",
        debugfs: PathLike = "/sys/kernel/debug",
        dev: PathLike = "/dev",
        firmware_path: PathLike | Sequence[PathLike] | None = None,
        poll_interval: float = 0.02,
    ) -> None:
        self.sysfs = Path(sysfs)
        self.debugfs = Path(debugfs)
        self.dev = Path(dev)
        self.poll_interval = poll_interval
        self._explicit_fw_path = firmware_path is not None
        if firmware_path is None:
            self.firmware_path = firmware_search_path(self.sysfs)
        elif isinstance(firmware_path, (str, os.PathLike)):
            self.firmware_path = [Path(firmware_path)]
        else:
            self.firmware_path = [Path(p) for p in firmware_path]
        self.index, self.device = self._resolve(name_or_index)

    def _resolve(self, key: int | str) -> tuple[int, str]:
        found = _remoteproc_dirs(self.sysfs)
        wanted: int | None = None
        if isinstance(key, int):
            wanted = key
        elif (m := _DEVICE_RE.match(key)) or key.isdigit():
            wanted = int(m.group(1)) if m else int(key)
        for index, device in found:
            if index == wanted:
                return index, device
        if wanted is None:
            for index, device in found:
                with contextlib.suppress(OSError):
                    if read_attr(self.sysfs / "class/remoteproc" / device / "name") == key:
                        return index, device
        raise DeviceNotFoundError(
            f"no remote processor {key!r}: {describe_remoteprocs(self.sysfs)}",
            errno=E.ENODEV,
            path=str(self.sysfs / "class/remoteproc"),
        )

    def __repr__(self) -> str:
        return f"RemoteProc({self.device!r}, sysfs={str(self.sysfs)!r})"

    # -- paths ----------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The sysfs class directory, ``<sysfs>/class/remoteproc/remoteprocN``."""
        return self.sysfs / "class" / "remoteproc" / self.device

    @property
    def debug_path(self) -> Path:
        """``<debugfs>/remoteproc/remoteprocN``."""
        return self.debugfs / "remoteproc" / self.device

    @property
    def cdev_path(self) -> Path:
        """``<dev>/remoteprocN`` (exists only with ``CONFIG_REMOTEPROC_CDEV``)."""
        return self.dev / self.device

    def _read(self, attr: str) -> str:
        path = self.path / attr
        try:
            return read_attr(path)
        except FileNotFoundError:
            if not self.path.exists():
                raise DeviceNotFoundError(
                    f"{self.device} disappeared (its platform driver was unbound)",
                    errno=E.ENODEV,
                    path=str(self.path),
                ) from None
            alt = self.debug_path / attr
            if attr in ("recovery", "coredump") and alt.exists():
                return read_attr(alt)
            raise DeviceNotFoundError(
                f"{self.device} has no {attr!r} attribute (this kernel is too old for it)",
                errno=E.ENOENT,
                path=str(path),
            ) from None
        except OSError as exc:
            raise kernel_error(
                exc.errno or 0, attr, f"reading {attr}", path=path, dev=self.device
            ) from exc

    def _write(self, attr: str, value: str, *, action: str | None = None, **ctx: object) -> None:
        path = self.path / attr
        debug = self.debug_path / attr
        if attr in ("recovery", "coredump") and not path.exists() and debug.exists():
            path = debug
        doing = f"writing {value!r}" if attr == "state" else f"writing {value!r} to {attr}"
        ctx.setdefault("dev", self.device)
        ctx.setdefault("value", value)
        if "state" not in ctx:
            with contextlib.suppress(OpenAMPError):
                ctx["state"] = self.state
        write_attr(path, value, action=action or attr, doing=doing, **ctx)

    # -- attributes -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The processor's name from its platform driver (``name``)."""
        return self._read("name")

    @property
    def state(self) -> KernelState:
        """The current state (read from ``state`` on every access)."""
        return KernelState.parse(self._read("state"))

    @property
    def firmware(self) -> str:
        """The firmware file name (relative to the search path); ``unknown`` while attached.

        Setting it is :meth:`set_firmware` with its defaults.
        """
        return self._read("firmware")

    @firmware.setter
    def firmware(self, value: PathLike) -> None:
        self.set_firmware(value)

    @property
    def recovery(self) -> bool:
        """Whether the kernel reboots the processor by itself after a crash."""
        return self._read("recovery") == "enabled"

    @recovery.setter
    def recovery(self, enabled: bool) -> None:
        self._write("recovery", "enabled" if enabled else "disabled")

    def recover(self) -> None:
        """Recover a crashed processor once (writes ``recover``; no-op unless crashed)."""
        self._write("recovery", "recover")

    @property
    def coredump(self) -> str:
        """``disabled``, ``enabled`` (dump to devcoredump) or ``inline`` (recovery waits
        until user space has read the dump)."""
        return self._read("coredump")

    @coredump.setter
    def coredump(self, mode: str) -> None:
        if mode not in COREDUMP_MODES:
            raise UsageError(f"coredump mode {mode!r}: use one of {', '.join(COREDUMP_MODES)}")
        self._write("coredump", mode)

    # -- life cycle -----------------------------------------------------------------------

    def start(self, *, timeout: float | None = 10.0, restart: bool = False) -> KernelState:
        """Boot the processor (or attach to it when ``detached``); return the new state.

        Reads ``state`` first and refuses a processor that already runs (writing
        ``start`` again would leak a kernel power reference): :class:`DeviceBusyError`,
        unless ``restart`` is true, which stops it first.  ``timeout``: seconds to wait
        for ``running``/``attached`` afterwards (None = forever, 0 = don't wait).
        """
        state = self.state
        if state in (K.RUNNING, K.ATTACHED):
            if not restart:
                raise DeviceBusyError(
                    f"{self.device} is already {state}; stop it first (or restart it: "
                    "start(restart=True), `openamp rproc start --restart`)",
                    errno=E.EBUSY,
                    path=str(self.path / "state"),
                    action="state:start",
                )
            self.stop(timeout=timeout)
            state = self.state
        target = KERNEL_TRANSITIONS["start"].get(state)
        if target is None:
            raise self._refused("start", state)
        self._write(
            "state",
            "start",
            action="state:start",
            state=state,
            busy_state="running",
            firmware=self._firmware_or_unknown(),
            search=", ".join(str(p) for p in self.firmware_path),
        )
        if timeout == 0:
            return self.state
        return self.wait_state(target, K.CRASHED, timeout=timeout)

    def stop(self, *, timeout: float | None = 10.0) -> KernelState:
        """Shut the processor down (``running``/``attached`` -> ``offline``).

        Already ``offline``: nothing happens.  ``timeout``: seconds to wait for
        ``offline`` (None = forever, 0 = don't wait).  If it stays up, the message
        explains the kernel's power reference count (each ``start`` needs a ``stop``).
        """
        state = self.state
        if state is K.OFFLINE:
            return state
        if state not in KERNEL_TRANSITIONS["stop"]:
            raise self._refused("stop", state)
        self._write(
            "state", "stop", action="state:stop", state=state, advice=_STOP_ADVICE.get(state, "")
        )
        if timeout == 0:
            return self.state
        try:
            return self.wait_state(K.OFFLINE, timeout=timeout)
        except OpenAMPTimeoutError as exc:
            raise OpenAMPTimeoutError(
                f"{exc}; if it is still running, the kernel keeps it powered because "
                "'start' was written more than once (v5.19+ counts them): write 'stop' "
                "once more per extra 'start'"
            ) from None

    def detach(self, *, timeout: float | None = 10.0) -> KernelState:
        """Let an ``attached`` processor run on without Linux (-> ``detached``)."""
        state = self.state
        if state not in KERNEL_TRANSITIONS["detach"]:
            raise self._refused("detach", state)
        self._write("state", "detach", action="state:detach", state=state)
        if timeout == 0:
            return self.state
        return self.wait_state(K.DETACHED, timeout=timeout)

    def _refused(self, command: str, state: KernelState) -> KernelError:
        allowed = ", ".join(str(s) for s in KERNEL_TRANSITIONS[command])
        advice = ""
        if command == "start" and state is K.CRASHED:
            advice = (
                "; it crashed and recovery is disabled: recover it (RemoteProc.recover(), "
                "`openamp rproc recovery DEV recover`)"
            )
        elif command == "stop":
            advice = f"; {_STOP_ADVICE.get(state, '')}"
        return RequestRejectedError(
            f"cannot {command} {self.device}: it is {state} (allowed from: {allowed}){advice}",
            errno=E.EINVAL,
            path=str(self.path / "state"),
            action=f"state:{command}",
        )

    def _firmware_or_unknown(self) -> str:
        try:
            return self.firmware
        except OpenAMPError:
            return "unknown"

    def wait_state(self, *states: KernelState | str, timeout: float | None = 10.0) -> KernelState:
        """Block until ``state`` is one of ``states``; return it.

        ``timeout``: seconds (None = forever).  Raises :class:`OpenAMPTimeoutError`
        naming the last state seen.  ``state`` has no change notification, so this polls
        every ``poll_interval`` seconds.
        """
        if not states:
            raise UsageError("wait_state() needs at least one state")
        wanted = {KernelState(s) for s in states}
        deadline = Deadline(timeout)
        while True:
            state = self.state
            if state in wanted:
                return state
            if deadline.expired():
                names = " or ".join(sorted(str(s) for s in wanted))
                raise OpenAMPTimeoutError(
                    f"{self.device} did not become {names} within {timeout} s (it is {state})"
                )
            time.sleep(self.poll_interval)

    # -- firmware -------------------------------------------------------------------------

    def find_firmware(self, name: str) -> Path | None:
        """Where the kernel would find firmware ``name``, or None."""
        for d in self.firmware_path:
            candidate = d / name
            if candidate.is_file():
                return candidate
        return None

    @property
    def install_dir(self) -> Path:
        """Where :meth:`set_firmware` copies files: the first search directory that is
        not a kernel-release or ``updates`` directory."""
        if self._explicit_fw_path:
            return self.firmware_path[0]
        release = os.uname().release
        for d in self.firmware_path:
            if d.name != release and d.name != "updates":
                return d
        return Path(FIRMWARE_DIR)

    def set_firmware(
        self,
        firmware: PathLike,
        *,
        install: bool = False,
        overwrite: bool = False,
        check: bool = True,
    ) -> str:
        """Tell the kernel which firmware to boot next; return the name written.

        ``firmware`` is a name in the search path (``rproc-echo.elf``, ``sub/fw.elf``) or
        the path of a file.  A file already inside a search directory is named relative
        to it; any other file is copied into :attr:`install_dir` when ``install`` is true
        (a different file of the same name there is kept unless ``overwrite``).  The
        processor must be offline (:class:`DeviceBusyError` otherwise).  ``check``: make
        sure the kernel will find the file and that it is an ELF image.
        """
        state = self.state
        if state is not K.OFFLINE:
            raise kernel_error(
                E.EBUSY,
                "firmware",
                f"writing {str(firmware)!r} to firmware",
                path=self.path / "firmware",
                dev=self.device,
                state=state,
                value=str(firmware),
            )
        name = self._firmware_name(
            Path(firmware), install=install, overwrite=overwrite, check=check
        )
        self._write("firmware", name, state=state)
        return name

    def _firmware_name(self, source: Path, *, install: bool, overwrite: bool, check: bool) -> str:
        text = str(source)
        local = source.is_file() and (install or "/" in text or not self.find_firmware(text))
        if not local:
            if source.is_absolute():
                raise FirmwareNotFoundError(f"no firmware file {text}", errno=E.ENOENT, path=text)
            if check and self.find_firmware(text) is None:
                raise FirmwareNotFoundError(
                    f"no firmware {text!r} in the search path "
                    f"({', '.join(str(p) for p in self.firmware_path)}); give the path of "
                    "the file with install=True (`--install`) to copy it there",
                    errno=E.ENOENT,
                    path=text,
                )
            return text
        if check:
            check_elf(source)
        resolved = source.resolve()
        for d in self.firmware_path:
            with contextlib.suppress(ValueError, OSError):
                return str(resolved.relative_to(d.resolve()))
        if not install:
            raise FirmwareNotFoundError(
                f"{source} is not in the firmware search path "
                f"({', '.join(str(p) for p in self.firmware_path)}); pass install=True "
                f"(`--install`) to copy it into {self.install_dir}",
                errno=E.ENOENT,
                path=text,
            )
        install_firmware(source, self.install_dir, overwrite=overwrite)
        return source.name

    # -- debugfs --------------------------------------------------------------------------

    def _debug_file(self, name: str) -> Path:
        if not self.debugfs.is_dir() or not (self.debugfs / "remoteproc").is_dir():
            raise DeviceNotFoundError(
                f"no remoteproc directory in debugfs at {self.debugfs}: mount it "
                f"(`mount -t debugfs none {self.debugfs}`) and run as root",
                errno=E.ENOENT,
                path=str(self.debugfs),
            )
        return self.debug_path / name

    def trace_names(self) -> list[str]:
        """The trace buffers debugfs shows (``trace0``, ...); they exist only while the
        firmware runs and declares ``RSC_TRACE`` entries."""
        d = self._debug_file("")
        try:
            names = [n for n in os.listdir(d) if re.fullmatch(r"trace\d+", n)]
        except FileNotFoundError:
            return []
        return sorted(names, key=lambda n: int(n[5:]))

    def trace(self, index: int = 0) -> str:
        """The text of trace buffer ``index`` (the kernel stops at the first NUL)."""
        path = self._debug_file(f"trace{index}")
        try:
            text = read_attr(path)
        except FileNotFoundError:
            have = ", ".join(self.trace_names()) or "none"
            raise DeviceNotFoundError(
                f"{self.device} has no trace{index} (trace buffers: {have}; they exist while "
                "a firmware with an RSC_TRACE entry runs)",
                errno=E.ENOENT,
                path=str(path),
            ) from None
        except OSError as exc:
            raise kernel_error(exc.errno or 0, "trace", f"reading {path}", path=path) from exc
        if text.startswith("Trace ") and text.endswith(" not available"):
            raise KernelError(
                f"{self.device}: {text} (the kernel cannot map its device address)",
                path=str(path),
            )
        return text

    def resource_table(self) -> list[DebugfsResource] | None:
        """The loaded resource table as debugfs shows it (None: no table)."""
        path = self._debug_file("resource_table")
        try:
            return parse_resource_table_text(read_attr(path))
        except OSError as exc:
            raise kernel_error(
                exc.errno or 0, "resource_table", f"reading {path}", path=path
            ) from exc

    def trigger_crash(self, kind: str | int = "watchdog") -> None:
        """Make the kernel handle a crash (debugfs ``crash``): to test recovery."""
        code = CRASH_TYPES[kind] if isinstance(kind, str) else int(kind)
        write_attr(
            self._debug_file("crash"),
            str(code),
            action="crash",
            doing=f"writing {code} to crash",
            dev=self.device,
        )

    # -- the character device -------------------------------------------------------------

    def open_cdev(self) -> RemoteprocCdev:
        """Open ``/dev/remoteprocN`` (see :class:`RemoteprocCdev`)."""
        if not self.cdev_path.exists():
            raise DeviceNotFoundError(
                f"no {self.cdev_path}: the kernel was built without CONFIG_REMOTEPROC_CDEV",
                errno=E.ENOENT,
                path=str(self.cdev_path),
            )
        return RemoteprocCdev(self.cdev_path, device=self.device)

    # -- summary --------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Everything readable about the processor, for ``--json`` and ``status``."""

        def attempt(fn: Callable[[], Any]) -> Any:
            try:
                return fn()
            except OpenAMPError:
                return None

        traces = attempt(self.trace_names)
        return {
            "device": self.device,
            "index": self.index,
            "name": attempt(lambda: self.name),
            "state": attempt(lambda: str(self.state)),
            "firmware": attempt(lambda: self.firmware),
            "recovery": attempt(lambda: "enabled" if self.recovery else "disabled"),
            "coredump": attempt(lambda: self.coredump),
            "traces": traces,
            "sysfs": str(self.path),
            "cdev": str(self.cdev_path) if self.cdev_path.exists() else None,
            "firmware_path": [str(p) for p in self.firmware_path],
        }


def list_remoteprocs(
    *,
    sysfs: PathLike = "/sys",
    debugfs: PathLike = "/sys/kernel/debug",
    dev: PathLike = "/dev",
    firmware_path: PathLike | Sequence[PathLike] | None = None,
) -> list[RemoteProc]:
    """Every remote processor in ``<sysfs>/class/remoteproc``, by index."""
    return [
        RemoteProc(index, sysfs=sysfs, debugfs=debugfs, dev=dev, firmware_path=firmware_path)
        for index, _ in _remoteproc_dirs(sysfs)
    ]


def describe_remoteprocs(sysfs: PathLike = "/sys") -> str:
    """``there are: remoteproc0 (m4, offline)`` or why there are none (for messages)."""
    found = _remoteproc_dirs(sysfs)
    if not found:
        return (
            f"there are none in {Path(sysfs) / 'class/remoteproc'} (is the platform's "
            "remoteproc driver loaded and enabled in the device tree? e.g. stm32_rproc, "
            "imx_rproc, zynqmp_r5_remoteproc, ti_k3_r5_remoteproc)"
        )
    parts = []
    for _, device in found:
        d = Path(sysfs) / "class/remoteproc" / device
        bits = []
        for attr in ("name", "state"):
            with contextlib.suppress(OSError):
                bits.append(read_attr(d / attr))
        parts.append(f"{device} ({', '.join(bits)})" if bits else device)
    return "there are: " + ", ".join(parts)


# -- firmware files -----------------------------------------------------------------------


def check_elf(path: PathLike) -> None:
    """Raise :class:`FirmwareImageError` unless ``path`` starts like an ELF image
    (the kernel refuses anything else with ``EINVAL``)."""
    with open(path, "rb") as f:
        head = f.read(52)
    if head[:4] != b"\x7fELF":
        raise FirmwareImageError(
            f"{path} is not an ELF image (the kernel would refuse it with EINVAL); "
            "pass check=False (`--no-check`) if your platform driver loads other formats"
        )
    if len(head) < 52:
        raise FirmwareImageError(f"{path} is too small for an ELF header")


def install_firmware(source: PathLike, directory: PathLike, *, overwrite: bool = False) -> Path:
    """Copy ``source`` into ``directory`` under its own name; return the new path.

    An identical file there is left alone; a different one is replaced only with
    ``overwrite``.  The copy is atomic (a temporary file renamed into place), so the
    kernel never reads a half-written image.
    """
    src = Path(source)
    dest = Path(directory) / src.name
    if dest.exists():
        if filecmp.cmp(src, dest, shallow=False):
            return dest
        if not overwrite:
            raise FirmwareInstallError(
                f"{dest} exists and differs from {src}; pass overwrite=True (`--overwrite`) "
                "to replace it",
                errno=E.EEXIST,
                path=str(dest),
            )
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{src.name}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                shutil.copyfileobj(inp, out)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except PermissionError as exc:
        raise FirmwareInstallError(
            f"cannot copy {src} into {directory}: permission denied; run as root, or pass a "
            "writable directory the kernel searches (firmware_path=..., see "
            "/sys/module/firmware_class/parameters/path)",
            errno=exc.errno,
            path=str(directory),
        ) from exc
    return dest

"""RPMsg on a real board through the kernel's ``rpmsg_char`` and ``rpmsg_ctrl`` drivers.

Theory of operation (docs/on-a-board.md).  The kernel's virtio_rpmsg_bus talks to
the remote; user space sees three kinds of objects:

* **channels** — rpmsg bus devices under ``/sys/bus/rpmsg/devices``, one per service the
  remote announced (``virtio0.rpmsg-openamp-demo-channel.-1.1024``), with ``name``,
  ``src``, ``dst`` (``0x%x``), ``driver_override`` and a ``driver`` link;
* **control devices** ``/dev/rpmsg_ctrlN``: ``RPMSG_CREATE_EPT_IOCTL`` makes a new
  endpoint device, ``RPMSG_CREATE_DEV_IOCTL``/``RPMSG_RELEASE_DEV_IOCTL`` add and remove
  channels;
* **endpoint devices** ``/dev/rpmsgN``: one message per ``read``/``write``.  Either made
  through a control device (their sysfs directory hangs below ``rpmsg_ctrlN`` and shows
  ``src``/``dst`` in signed decimal), or made by the ``rpmsg_chrdev`` driver when it binds
  to a channel (below ``<channel>/rpmsg/``).

This module finds things by what sysfs says — a channel by its service name, the
``/dev`` node of an endpoint by its class directory — never by guessing ``/dev/rpmsgN``
numbers, which change with every boot of the remote.  The ioctl numbers are computed from
``_IOW``/``_IOR``/``_IO`` as the uapi header does.

What it must not do: block forever in the kernel.  Endpoint file descriptors are always
non-blocking, and every wait is ours, with a timeout (a blocking ``write`` can stall 15 s
and then fail with ``ERESTARTSYS``, and virtio endpoints never report ``POLLOUT`` before
Linux 7.0, §6.4-6.5).
"""

from __future__ import annotations

import contextlib
import errno as E
import fcntl
import os
import re
import select
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EndpointClosedError, OpenAMPTimeoutError, UsageError
from ..metal.aio import readable
from ..metal.deadline import Deadline
from .remoteproc import (
    IO,
    IOR,
    IOW,
    DeviceNotFoundError,
    KernelError,
    KernelSendTimeoutError,
    PathLike,
    RequestRejectedError,
    kernel_error,
    parse_addr,
    read_attr,
    write_attr,
)

RPMSG_ADDR_ANY = 0xFFFFFFFF
RPMSG_NAME_SIZE = 32
VIRTIO_RPMSG_MTU = 496
"""Largest payload of one message over virtio (512-byte buffers minus the header)."""
DEFAULT_MAX_SIZE = 65536
"""Receive buffer per message; a longer message would be cut short by the kernel."""

ENDPOINT_INFO = struct.Struct("=32sII")
"""``struct rpmsg_endpoint_info { char name[32]; __u32 src; __u32 dst; }`` (40 bytes)."""
INT = struct.Struct("=i")

RPMSG_MAGIC = 0xB5
RPMSG_CREATE_EPT_IOCTL = IOW(RPMSG_MAGIC, 0x1, ENDPOINT_INFO.size)
RPMSG_DESTROY_EPT_IOCTL = IO(RPMSG_MAGIC, 0x2)
RPMSG_CREATE_DEV_IOCTL = IOW(RPMSG_MAGIC, 0x3, ENDPOINT_INFO.size)
RPMSG_RELEASE_DEV_IOCTL = IOW(RPMSG_MAGIC, 0x4, ENDPOINT_INFO.size)
RPMSG_GET_OUTGOING_FLOWCONTROL = IOR(RPMSG_MAGIC, 0x5, INT.size)
RPMSG_SET_INCOMING_FLOWCONTROL = IOR(RPMSG_MAGIC, 0x6, INT.size)
"""Declared ``_IOR`` but the kernel takes the value (0/1) itself as the argument."""

CHRDEV_DRIVER = "rpmsg_chrdev"
_GONE_EVENTS = select.POLLERR | select.POLLHUP | select.POLLNVAL
"""What ``poll`` reports on an endpoint device the kernel removed (``rpmsg_eptdev_poll``
returns ``EPOLLERR`` once the endpoint is gone)."""
INTERNAL_CHANNELS = ("rpmsg_ns", "rpmsg_ctrl")


def format_addr(addr: int) -> str:
    """``0x400``, or ``ANY`` for ``RPMSG_ADDR_ANY``."""
    return "ANY" if addr == RPMSG_ADDR_ANY else f"{addr:#x}"


# -- the ioctl argument -------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointInfo:
    """The ioctl argument ``struct rpmsg_endpoint_info``: a name and two addresses."""

    name: str
    src: int = RPMSG_ADDR_ANY
    """Local address; ``RPMSG_ADDR_ANY`` = a dynamic one (>= 1024) on every open."""
    dst: int = RPMSG_ADDR_ANY

    def __post_init__(self) -> None:
        raw = self.name.encode()
        if not raw or len(raw) >= RPMSG_NAME_SIZE or b"\0" in raw:
            raise UsageError(
                f"rpmsg name {self.name!r} must be 1..{RPMSG_NAME_SIZE - 1} bytes without NUL"
            )
        for what, addr in (("src", self.src), ("dst", self.dst)):
            if not 0 <= addr <= 0xFFFFFFFF:
                raise UsageError(f"{what} address {addr} is not a 32-bit number")

    def pack(self) -> bytes:
        """The 40 bytes the kernel copies in (name NUL-padded, host byte order)."""
        return ENDPOINT_INFO.pack(self.name.encode(), self.src, self.dst)

    @classmethod
    def unpack(cls, data: bytes) -> EndpointInfo:
        """Decode 40 bytes (the name up to its first NUL)."""
        name, src, dst = ENDPOINT_INFO.unpack(data)
        return cls(name.split(b"\0", 1)[0].decode(), src, dst)


def _ioctl(fd: int, request: int, arg: int | bytes | bytearray = 0) -> int:
    if isinstance(arg, bytearray):
        return int(fcntl.ioctl(fd, request, arg, True))
    result = fcntl.ioctl(fd, request, arg)
    return result if isinstance(result, int) else 0


# -- sysfs discovery ----------------------------------------------------------------------


def _dev_node(class_dir: Path, dev: Path) -> Path:
    """The /dev node of a class device: ``DEVNAME`` from its ``uevent``, else its name."""
    with contextlib.suppress(OSError):
        for line in read_attr(class_dir / "uevent").splitlines():
            if line.startswith("DEVNAME="):
                return dev / line.split("=", 1)[1]
    return dev / class_dir.name


def _remoteproc_of(path: Path) -> str | None:
    with contextlib.suppress(OSError):
        for part in reversed(path.resolve().parts):
            if re.fullmatch(r"remoteproc\d+", part):
                return part
    return None


def _read_opt(path: Path) -> str | None:
    try:
        return read_attr(path)
    except OSError:
        return None


@dataclass
class Channel:
    """An rpmsg channel: a device on the rpmsg bus (``/sys/bus/rpmsg/devices/<device>``)."""

    device: str
    """Bus device name, ``<virtioN>.<name>.<src>.<dst>`` (addresses as ``%d``)."""
    name: str
    src: int
    """Linux's local address (``RPMSG_ADDR_ANY`` until a driver binds)."""
    dst: int
    """The remote's address."""
    path: Path
    announce: bool | None = None
    driver: str | None = None
    driver_override: str | None = None
    virtio: str | None = None
    remoteproc: str | None = None
    endpoints: list[str] = field(default_factory=list)
    """Endpoint devices (``rpmsgN``) the rpmsg_chrdev driver made on this channel."""
    ctrls: list[str] = field(default_factory=list)
    """Control devices (``rpmsg_ctrlN``) below this device."""
    ttys: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """``ctrl``, ``ns`` (kernel-internal) or ``service``."""
        return {"rpmsg_ctrl": "ctrl", "rpmsg_ns": "ns"}.get(self.name, "service")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (addresses as numbers)."""
        return {
            "device": self.device,
            "name": self.name,
            "src": self.src,
            "dst": self.dst,
            "announce": self.announce,
            "driver": self.driver,
            "driver_override": self.driver_override,
            "virtio": self.virtio,
            "remoteproc": self.remoteproc,
            "endpoints": self.endpoints,
            "ctrls": self.ctrls,
            "ttys": self.ttys,
            "sysfs": str(self.path),
        }


def _children(d: Path, pattern: str) -> list[str]:
    try:
        names = [n for n in os.listdir(d) if re.fullmatch(pattern, n)]
    except OSError:
        return []
    return sorted(names, key=lambda n: (len(n), n))


def read_channel(path: Path) -> Channel:
    """The :class:`Channel` whose bus directory is ``path``."""
    device = path.name
    announce = _read_opt(path / "announce")
    override = _read_opt(path / "driver_override")
    driver = None
    with contextlib.suppress(OSError):
        driver = Path(os.readlink(path / "driver")).name
    return Channel(
        device=device,
        name=_read_opt(path / "name") or device.split(".")[1 if "." in device else 0],
        src=parse_addr(_read_opt(path / "src") or "-1"),
        dst=parse_addr(_read_opt(path / "dst") or "-1"),
        path=path,
        announce=None if announce is None else announce == "true",
        driver=driver,
        driver_override=None if override in (None, "(null)", "") else override,
        virtio=device.split(".", 1)[0] if "." in device else None,
        remoteproc=_remoteproc_of(path),
        endpoints=_children(path / "rpmsg", r"rpmsg\d+"),
        ctrls=_children(path / "rpmsg", r"rpmsg_ctrl\d+"),
        ttys=_children(path / "tty", r"ttyRPMSG\d+"),
    )


def list_channels(*, sysfs: PathLike = "/sys", include_internal: bool = False) -> list[Channel]:
    """The channels on the rpmsg bus; without the kernel's own ``rpmsg_ns``/``rpmsg_ctrl``
    devices unless ``include_internal``."""
    bus = Path(sysfs) / "bus" / "rpmsg" / "devices"
    channels = [read_channel(bus / n) for n in _children(bus, r".+")]
    if not include_internal:
        channels = [c for c in channels if c.kind == "service"]
    return sorted(channels, key=lambda c: (c.virtio or "", c.dst, c.name))


def describe_channels(channels: list[Channel]) -> str:
    """``channels: 'a' (0x400), ...`` for error messages."""
    if not channels:
        return (
            "there are no channels (has the remote announced any? is its processor "
            "running? `openamp rproc ls`)"
        )
    return "channels: " + ", ".join(f"{c.name!r} ({format_addr(c.dst)})" for c in channels)


def find_channel(
    name: str, *, sysfs: PathLike = "/sys", dst: int | None = None, virtio: str | None = None
) -> Channel:
    """The channel named ``name`` (a service name or a bus device name).

    Several remotes may announce the same name; ``dst`` and ``virtio`` choose among them.
    Raises :class:`DeviceNotFoundError` listing the channels there are.
    """
    channels = list_channels(sysfs=sysfs, include_internal=True)
    found = [c for c in channels if name in (c.name, c.device)]
    if dst is not None:
        found = [c for c in found if c.dst == dst]
    if virtio is not None:
        found = [c for c in found if c.virtio == virtio]
    if len(found) == 1:
        return found[0]
    services = [c for c in channels if c.kind == "service"]
    if not found:
        raise DeviceNotFoundError(
            f"no rpmsg channel {name!r}: {describe_channels(services)}",
            errno=E.ENODEV,
            path=str(Path(sysfs) / "bus/rpmsg/devices"),
        )
    raise UsageError(
        f"{len(found)} channels are named {name!r} ({', '.join(c.device for c in found)}); "
        "choose one by its device name or dst"
    )


@dataclass
class CtrlDevice:
    """A control device ``rpmsg_ctrlN`` (class ``rpmsg``)."""

    device: str
    node: Path
    path: Path
    parent: str | None
    """The bus device it hangs below: ``virtioN.rpmsg_ctrl.0.0`` (v5.18+) or a channel."""
    virtio: str | None
    remoteproc: str | None
    endpoints: list[str] = field(default_factory=list)
    """Endpoint devices created through it that still exist."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "device": self.device,
            "node": str(self.node),
            "parent": self.parent,
            "virtio": self.virtio,
            "remoteproc": self.remoteproc,
            "endpoints": self.endpoints,
            "sysfs": str(self.path),
        }


def _class_dir(sysfs: PathLike) -> Path:
    return Path(sysfs) / "class" / "rpmsg"


def _parent_bus_device(path: Path) -> str | None:
    """``<bus device>/rpmsg/<class device>``: the bus device's name."""
    real = path.resolve()
    if real.parent.name == "rpmsg":
        return real.parent.parent.name
    return None


def list_ctrls(*, sysfs: PathLike = "/sys", dev: PathLike = "/dev") -> list[CtrlDevice]:
    """The control devices in ``<sysfs>/class/rpmsg``."""
    out = []
    for name in _children(_class_dir(sysfs), r"rpmsg_ctrl\d+"):
        path = _class_dir(sysfs) / name
        parent = _parent_bus_device(path)
        out.append(
            CtrlDevice(
                device=name,
                node=_dev_node(path, Path(dev)),
                path=path,
                parent=parent,
                virtio=parent.split(".", 1)[0] if parent and "." in parent else None,
                remoteproc=_remoteproc_of(path),
                endpoints=_children(path, r"rpmsg\d+"),
            )
        )
    return out


@dataclass
class EndpointDevice:
    """An endpoint device ``rpmsgN`` as sysfs describes it."""

    device: str
    name: str
    src: int
    dst: int
    node: Path
    """Its ``/dev`` node."""
    path: Path
    ctrl: str | None = None
    """``rpmsg_ctrlN`` if it was created through a control device (destroyable)."""
    channel: str | None = None
    """The bus device if the rpmsg_chrdev driver made it for a channel."""
    remoteproc: str | None = None

    @property
    def info(self) -> EndpointInfo:
        """Name and addresses as an :class:`EndpointInfo`."""
        return EndpointInfo(self.name or "?", self.src, self.dst)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "device": self.device,
            "name": self.name,
            "src": self.src,
            "dst": self.dst,
            "node": str(self.node),
            "ctrl": self.ctrl,
            "channel": self.channel,
            "remoteproc": self.remoteproc,
            "sysfs": str(self.path),
        }


def read_endpoint_device(path: Path, dev: PathLike = "/dev") -> EndpointDevice:
    """The :class:`EndpointDevice` whose class directory is ``path``."""
    real = path.resolve()
    ctrl = real.parent.name if re.fullmatch(r"rpmsg_ctrl\d+", real.parent.name) else None
    return EndpointDevice(
        device=path.name,
        name=_read_opt(path / "name") or "",
        src=parse_addr(_read_opt(path / "src") or "-1"),
        dst=parse_addr(_read_opt(path / "dst") or "-1"),
        node=_dev_node(path, Path(dev)),
        path=path,
        ctrl=ctrl,
        channel=None if ctrl else _parent_bus_device(path),
        remoteproc=_remoteproc_of(path),
    )


def list_endpoint_devices(
    *, sysfs: PathLike = "/sys", dev: PathLike = "/dev"
) -> list[EndpointDevice]:
    """Every endpoint device in ``<sysfs>/class/rpmsg``."""
    d = _class_dir(sysfs)
    return [read_endpoint_device(d / n, dev) for n in _children(d, r"rpmsg\d+")]


def describe_endpoint_devices(eps: list[EndpointDevice]) -> str:
    """``endpoint devices: /dev/rpmsg0 ('x' 1024 -> 0x400), ...`` for messages."""
    if not eps:
        return (
            "there are no endpoint devices (create one: `openamp rpmsg ept create NAME "
            "--dst ADDR`, or bind a channel: `openamp rpmsg bind CHANNEL`)"
        )
    return "endpoint devices: " + ", ".join(
        f"{e.node} ({e.name!r} {format_addr(e.src)} -> {format_addr(e.dst)})" for e in eps
    )


@dataclass
class TtyDevice:
    """An rpmsg tty ``ttyRPMSGn`` and the channel it serves."""

    device: str
    node: Path
    path: Path
    channel: str | None
    name: str | None
    src: int | None
    dst: int | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "device": self.device,
            "node": str(self.node),
            "channel": self.channel,
            "name": self.name,
            "src": self.src,
            "dst": self.dst,
            "sysfs": str(self.path),
        }


def list_ttys(*, sysfs: PathLike = "/sys", dev: PathLike = "/dev") -> list[TtyDevice]:
    """The rpmsg ttys in ``<sysfs>/class/tty``.

    The tty is registered with the channel as its parent (``rpmsg_tty.c``), so the
    channel is the parent of its ``tty/`` directory; its addresses come from there.
    """
    d = Path(sysfs) / "class" / "tty"
    out = []
    for n in _children(d, r"ttyRPMSG\d+"):
        path = d / n
        real = path.resolve()
        chan = real.parent.parent if real.parent.name == "tty" else None
        ch = read_channel(chan) if chan is not None and (chan / "name").exists() else None
        out.append(
            TtyDevice(
                device=n,
                node=_dev_node(path, Path(dev)),
                path=path,
                channel=ch.device if ch else None,
                name=ch.name if ch else None,
                src=ch.src if ch else None,
                dst=ch.dst if ch else None,
            )
        )
    return out


# -- binding channels to drivers ----------------------------------------------------------


def bind_channel(
    channel: Channel | str,
    driver: str = CHRDEV_DRIVER,
    *,
    sysfs: PathLike = "/sys",
    rebind: bool = False,
) -> Channel:
    """Bind ``channel`` to ``driver`` the way the OpenAMP examples do: write the driver
    into ``driver_override``, then the device into ``drivers/<driver>/bind``.

    A channel bound to another driver is refused (:class:`DeviceBusyError`) unless
    ``rebind``, which unbinds it first.  Returns the channel re-read from sysfs.
    """
    ch = channel if isinstance(channel, Channel) else find_channel(channel, sysfs=sysfs)
    drivers = Path(sysfs) / "bus" / "rpmsg" / "drivers"
    ctx: dict[str, object] = {"channel": ch.device, "driver": driver, "bound": ch.driver}
    if ch.driver == driver:
        return ch
    if not (drivers / driver).is_dir():
        # before anything is changed: a failed bind must not leave the channel unbound
        raise kernel_error(
            E.ENOENT, "bind", f"binding {ch.device} to {driver}", path=drivers / driver, **ctx
        )
    if ch.driver is not None:
        if not rebind:
            raise kernel_error(
                E.EBUSY,
                "bind",
                f"binding {ch.device} to {driver}",
                path=drivers / driver / "bind",
                **ctx,
            )
        unbind_channel(ch, sysfs=sysfs, clear_override=False)
    write_attr(
        ch.path / "driver_override",
        driver,
        action="driver_override",
        doing=f"writing {driver!r} to {ch.device}/driver_override",
        value=driver,
        **ctx,
    )
    write_attr(
        drivers / driver / "bind",
        ch.device,
        action="bind",
        doing=f"binding {ch.device} to {driver}",
        **ctx,
    )
    return read_channel(ch.path)


def unbind_channel(
    channel: Channel | str, *, sysfs: PathLike = "/sys", clear_override: bool = True
) -> Channel:
    """Unbind ``channel`` from its driver (and clear ``driver_override``)."""
    ch = channel if isinstance(channel, Channel) else find_channel(channel, sysfs=sysfs)
    drivers = Path(sysfs) / "bus" / "rpmsg" / "drivers"
    if ch.driver is not None:
        write_attr(
            drivers / ch.driver / "unbind",
            ch.device,
            action="unbind",
            doing=f"unbinding {ch.device} from {ch.driver}",
            channel=ch.device,
            driver=ch.driver,
        )
    if clear_override and ch.driver_override is not None:
        write_attr(
            ch.path / "driver_override",
            "\n",
            action="driver_override",
            doing=f"clearing {ch.device}/driver_override",
            value="",
        )
    return read_channel(ch.path)


# -- waiting for sysfs --------------------------------------------------------------------


def _wait_for(what: Callable[[], Any], timeout: float | None, message: Callable[[], str]) -> Any:
    deadline = Deadline(timeout)
    delay = 0.001
    while True:
        value = what()
        if value:
            return value
        if deadline.expired():
            raise OpenAMPTimeoutError(message())
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


# -- /dev/rpmsg_ctrlN ---------------------------------------------------------------------


class RpmsgCtrl:
    """A control device ``/dev/rpmsg_ctrlN``: creates endpoint devices and channels.

    ``path`` is the node (or just ``rpmsg_ctrl0``, looked up under ``dev``); ``sysfs`` is
    where the new endpoint devices are looked for.
    """

    def __init__(
        self,
        path: PathLike = "/dev/rpmsg_ctrl0",
        *,
        sysfs: PathLike = "/sys",
        dev: PathLike | None = None,
    ) -> None:
        p = Path(path)
        if "/" not in str(path):
            p = Path(dev or "/dev") / p
        self.path = p
        self.sysfs = Path(sysfs)
        self.dev = Path(dev) if dev is not None else p.parent
        self.device = p.name
        try:
            self._fd = os.open(p, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (E.ENOENT, E.ENXIO, E.ENODEV):
                have = ", ".join(str(c.node) for c in list_ctrls(sysfs=sysfs, dev=self.dev))
                raise DeviceNotFoundError(
                    f"no control device {p} (control devices: {have or 'none'}; the kernel "
                    "makes one per virtio rpmsg device from v5.18 on, older kernels only "
                    "when rpmsg_chrdev binds a channel: `openamp rpmsg bind CHANNEL`)",
                    errno=exc.errno,
                    path=str(p),
                ) from exc
            raise kernel_error(exc.errno or 0, "ctrl:open", f"opening {p}", path=p) from exc

    def __repr__(self) -> str:
        return f"RpmsgCtrl({str(self.path)!r})"

    def fileno(self) -> int:
        """The file descriptor."""
        return self._fd

    def _ioctl(self, request: int, info: EndpointInfo, action: str, name: str) -> None:
        try:
            _ioctl(self._fd, request, info.pack())
        except OSError as exc:
            raise kernel_error(
                exc.errno or 0,
                action,
                f"ioctl {name} on {self.path}",
                path=self.path,
                name=info.name,
                src=format_addr(info.src),
                dst=format_addr(info.dst),
            ) from exc

    @property
    def class_path(self) -> Path:
        """``<sysfs>/class/rpmsg/rpmsg_ctrlN``."""
        return _class_dir(self.sysfs) / self.device

    def endpoint_devices(self) -> list[EndpointDevice]:
        """The endpoint devices created through this control device."""
        return [
            read_endpoint_device(self.class_path / n, self.dev)
            for n in _children(self.class_path, r"rpmsg\d+")
        ]

    def create_endpoint(
        self,
        name: str,
        src: int = RPMSG_ADDR_ANY,
        dst: int = RPMSG_ADDR_ANY,
        *,
        timeout: float | None = 2.0,
    ) -> EndpointDevice:
        """``RPMSG_CREATE_EPT_IOCTL``: a new ``/dev/rpmsgN``; return its description.

        The endpoint itself (its local address) exists only while the node is open; the
        node stays until destroyed (:meth:`RpmsgEndpoint.destroy`).  ``timeout``: seconds
        to wait for sysfs and the ``/dev`` node (None = forever).
        """
        info = EndpointInfo(name, src, dst)
        before = set(_children(self.class_path, r"rpmsg\d+"))
        self._ioctl(RPMSG_CREATE_EPT_IOCTL, info, "ctrl:create_ept", "RPMSG_CREATE_EPT_IOCTL")

        def appeared() -> EndpointDevice | None:
            for n in _children(self.class_path, r"rpmsg\d+"):
                if n in before:
                    continue
                with contextlib.suppress(OSError, ValueError):
                    ep = read_endpoint_device(self.class_path / n, self.dev)
                    if (ep.name, ep.src, ep.dst) == (name, src, dst) and ep.node.exists():
                        return ep
            return None

        result: EndpointDevice = _wait_for(
            appeared,
            timeout,
            lambda: (
                f"the kernel made no endpoint device for {name!r} below {self.class_path} "
                f"within {timeout} s (or udev did not create its /dev node)"
            ),
        )
        return result

    def create_channel(
        self, name: str, src: int = RPMSG_ADDR_ANY, dst: int = RPMSG_ADDR_ANY
    ) -> None:
        """``RPMSG_CREATE_DEV_IOCTL``: a new channel on the bus (with an explicit ``src``
        Linux announces it to the remote once a driver binds)."""
        self._ioctl(
            RPMSG_CREATE_DEV_IOCTL,
            EndpointInfo(name, src, dst),
            "ctrl:create_dev",
            "RPMSG_CREATE_DEV_IOCTL",
        )

    def release_channel(
        self, name: str, src: int = RPMSG_ADDR_ANY, dst: int = RPMSG_ADDR_ANY
    ) -> None:
        """``RPMSG_RELEASE_DEV_IOCTL``: remove a channel (matched by name, and by the
        addresses unless they are ``RPMSG_ADDR_ANY``)."""
        self._ioctl(
            RPMSG_RELEASE_DEV_IOCTL,
            EndpointInfo(name, src, dst),
            "ctrl:release_dev",
            "RPMSG_RELEASE_DEV_IOCTL",
        )

    def close(self) -> None:
        """Close the control device (endpoint devices made through it stay)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RpmsgCtrl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- /dev/rpmsgN --------------------------------------------------------------------------


class RpmsgEndpoint:
    """An open endpoint device ``/dev/rpmsgN``: one message per :meth:`send`/:meth:`recv`.

    ``path`` is the node (or ``rpmsg0``, looked up under ``dev``).  The descriptor is
    non-blocking; waiting happens here, with timeouts, and works with ``select``
    (:meth:`fileno`) and asyncio (:meth:`arecv`).  ``destroy_on_close``: destroy the
    endpoint device when closing (what :func:`open_endpoint` sets up).
    """

    def __init__(
        self,
        path: PathLike,
        *,
        sysfs: PathLike = "/sys",
        dev: PathLike = "/dev",
        info: EndpointDevice | None = None,
        destroy_on_close: bool = False,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        p = Path(path) if "/" in str(path) else Path(dev) / str(path)
        self.path = p
        self.device_info = info
        self.destroy_on_close = destroy_on_close
        self.max_size = max_size
        self._buf = bytearray(max_size)
        self._src = "ANY" if info is None else format_addr(info.src)
        try:
            self._fd = os.open(p, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == E.ENOENT:
                eps = list_endpoint_devices(sysfs=sysfs, dev=dev)
                raise DeviceNotFoundError(
                    f"no endpoint device {p}: {describe_endpoint_devices(eps)}",
                    errno=exc.errno,
                    path=str(p),
                ) from exc
            raise kernel_error(
                exc.errno or 0, "rpmsg:open", f"opening {p}", path=p, node=p, src=self._src
            ) from exc

    @classmethod
    def from_fd(
        cls, fd: int, *, name: str = "fd", max_size: int = DEFAULT_MAX_SIZE
    ) -> RpmsgEndpoint:
        """Wrap an already open descriptor with message semantics (made non-blocking).

        For tests and stand-ins: a ``SOCK_SEQPACKET`` socket behaves like ``/dev/rpmsgN``
        (one message per read, a short buffer cuts a message).
        """
        self = cls.__new__(cls)
        self.path = Path(name)
        self.device_info = None
        self.destroy_on_close = False
        self.max_size = max_size
        self._buf = bytearray(max_size)
        self._src = "ANY"
        os.set_blocking(fd, False)
        self._fd = fd
        return self

    def __repr__(self) -> str:
        return f"RpmsgEndpoint({str(self.path)!r})"

    @property
    def name(self) -> str | None:
        """The endpoint's name from sysfs, when known."""
        return self.device_info.name if self.device_info else None

    @property
    def src(self) -> int | None:
        """The local address from sysfs (``RPMSG_ADDR_ANY``: dynamic), when known."""
        return self.device_info.src if self.device_info else None

    @property
    def dst(self) -> int | None:
        """Where :meth:`send` sends to, when known."""
        return self.device_info.dst if self.device_info else None

    @property
    def closed(self) -> bool:
        """Whether the endpoint was closed."""
        return self._fd < 0

    def fileno(self) -> int:
        """The descriptor; readable when a message is queued."""
        self._check_open()
        return self._fd

    def _check_open(self) -> None:
        if self._fd < 0:
            raise EndpointClosedError(f"{self.path} is closed")

    def _error(self, exc: OSError, action: str, doing: str, **ctx: object) -> KernelError:
        return kernel_error(exc.errno or 0, action, doing, path=self.path, node=self.path, **ctx)

    # -- sending --------------------------------------------------------------------------

    def _write_now(self, data: bytes) -> int | None:
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno == E.ENOMEM:
                return None
            raise self._error(
                exc, "rpmsg:write", f"sending to {self.path}", size=len(data)
            ) from exc

    def send(self, data: bytes | bytearray | memoryview, timeout: float | None = 15.0) -> int:
        """Send ``data`` as one message; return its length.

        ``timeout``: seconds to wait for a free transmit buffer (None = forever, 0 =
        don't wait: :class:`KernelNoBufferError`).  Virtio endpoints never report
        ``POLLOUT`` before Linux 7.0, so the wait retries with short sleeps.  Raises
        :class:`KernelSendTimeoutError`, :class:`MessageTooLargeError`,
        :class:`EndpointGoneError`.
        """
        self._check_open()
        payload = bytes(data)
        deadline = Deadline(timeout)
        delay = 0.0002
        while True:
            n = self._write_now(payload)
            if n is not None:
                return n
            if timeout == 0:
                raise kernel_error(
                    E.EAGAIN,
                    "rpmsg:write",
                    f"sending to {self.path}",
                    path=self.path,
                    node=self.path,
                )
            if deadline.expired():
                raise KernelSendTimeoutError(
                    f"no transmit buffer became free within {timeout} s for {self.path}: "
                    "the remote does not consume messages (is it still running? "
                    "`openamp rproc status`)",
                    errno=E.EAGAIN,
                    path=str(self.path),
                    action="rpmsg:write",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.005)

    def trysend(self, data: bytes | bytearray | memoryview) -> int:
        """:meth:`send` without waiting."""
        return self.send(data, timeout=0)

    async def asend(
        self, data: bytes | bytearray | memoryview, timeout: float | None = 15.0
    ) -> int:
        """:meth:`send` for asyncio: waits for a buffer with ``asyncio.sleep``."""
        import asyncio  # only here: see metal/aio.py

        self._check_open()
        payload = bytes(data)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        delay = 0.0002
        while True:
            n = self._write_now(payload)
            if n is not None:
                return n
            if deadline is not None and loop.time() >= deadline:
                raise KernelSendTimeoutError(
                    f"no transmit buffer became free within {timeout} s for {self.path}",
                    errno=E.EAGAIN,
                    path=str(self.path),
                    action="rpmsg:write",
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.005)

    # -- receiving ------------------------------------------------------------------------

    def _read_now(self, max_size: int | None) -> bytes | None:
        size = max_size or self.max_size
        buf = self._buf if size <= len(self._buf) else bytearray(size)
        try:
            n = os.readv(self._fd, [memoryview(buf)[:size]])
        except BlockingIOError:
            return None
        except OSError as exc:
            raise self._error(exc, "rpmsg:read", f"receiving from {self.path}") from exc
        return bytes(buf[:n])

    def recv(self, timeout: float | None = None, *, max_size: int | None = None) -> bytes:
        """The next message; ``timeout`` in seconds (None = forever, 0 = poll once).

        ``max_size``: the read buffer (default :attr:`max_size`); the kernel silently cuts
        a longer message.  Raises :class:`OpenAMPTimeoutError` if nothing arrives in time,
        :class:`EndpointGoneError` if the endpoint vanished.
        """
        self._check_open()
        deadline = Deadline(timeout)
        poller = select.poll()
        poller.register(self._fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        while True:
            msg = self._read_now(max_size)
            if msg is not None:
                return msg
            remaining_ms = deadline.remaining_ms()
            if remaining_ms == 0:
                raise OpenAMPTimeoutError(f"no message on {self.path} within {timeout} s")
            poller.poll(remaining_ms)

    async def arecv(self, *, max_size: int | None = None) -> bytes:
        """:meth:`recv` for asyncio, waiting on the descriptor with ``loop.add_reader``.

        Wrap it in ``asyncio.wait_for`` for a timeout.
        """
        self._check_open()
        while True:
            msg = self._read_now(max_size)
            if msg is not None:
                return msg
            await readable(self._fd, None)

    def __iter__(self) -> Iterator[bytes]:
        """Messages as they arrive, until the endpoint goes away."""
        while True:
            yield self.recv()

    # -- ioctls ---------------------------------------------------------------------------

    def outgoing_flow_restricted(self) -> bool:
        """``RPMSG_GET_OUTGOING_FLOWCONTROL`` (v6.6+): whether the remote asked us to
        pause.  Always false on virtio (only Qualcomm GLINK reports it)."""
        self._check_open()
        buf = bytearray(INT.size)
        try:
            _ioctl(self._fd, RPMSG_GET_OUTGOING_FLOWCONTROL, buf)
        except OSError as exc:
            raise self._error(
                exc, "rpmsg:get_flow", f"ioctl RPMSG_GET_OUTGOING_FLOWCONTROL on {self.path}"
            ) from exc
        return bool(INT.unpack(buf)[0])

    def set_incoming_flow_control(self, pause: bool) -> None:
        """``RPMSG_SET_INCOMING_FLOWCONTROL`` (v6.6+): ask the remote to pause (True) or
        resume sending.  Virtio has no flow control and refuses it."""
        self._check_open()
        try:
            _ioctl(self._fd, RPMSG_SET_INCOMING_FLOWCONTROL, 1 if pause else 0)
        except OSError as exc:
            raise self._error(
                exc, "rpmsg:set_flow", f"ioctl RPMSG_SET_INCOMING_FLOWCONTROL on {self.path}"
            ) from exc

    def gone(self) -> bool:
        """Whether the kernel has removed the endpoint device (its remote vanished, its
        virtio device went away): ``poll`` then reports ``POLLERR`` at once."""
        self._check_open()
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        return any(ev & _GONE_EVENTS for _fd, ev in poller.poll(0))

    def destroy(self) -> None:
        """``RPMSG_DESTROY_EPT_IOCTL``: remove the endpoint and its ``/dev`` node, then
        close.  Only for endpoints made through a control device.

        An endpoint the kernel has already removed (:meth:`gone`) is only closed: a second
        removal through the ioctl crashes Linux (6.1 deletes the device twice).
        """
        self._check_open()
        if self.gone():
            self.close()
            return
        try:
            _ioctl(self._fd, RPMSG_DESTROY_EPT_IOCTL)
        except OSError as exc:
            raise self._error(
                exc, "rpmsg:destroy", f"ioctl RPMSG_DESTROY_EPT_IOCTL on {self.path}"
            ) from exc
        finally:
            self.close()

    def close(self) -> None:
        """Close the node (a ctrl-made endpoint releases its local address; the node
        stays unless ``destroy_on_close``)."""
        if self._fd < 0:
            return
        if self.destroy_on_close:
            self.destroy_on_close = False
            with contextlib.suppress(KernelError):
                self.destroy()
            return
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> RpmsgEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the convenient ways in ---------------------------------------------------------------


def find_ctrl(
    channel: Channel | None = None, *, sysfs: PathLike = "/sys", dev: PathLike = "/dev"
) -> CtrlDevice | None:
    """The control device serving ``channel``'s virtio device (or the only one there is).

    v5.18+ kernels have one per virtio device (below ``virtioN.rpmsg_ctrl.0.0``); older
    ones make it below the channel when rpmsg_chrdev binds it.
    """
    ctrls = list_ctrls(sysfs=sysfs, dev=dev)
    if channel is None:
        return ctrls[0] if len(ctrls) == 1 else None
    for c in ctrls:
        if c.parent == channel.device or (c.virtio is not None and c.virtio == channel.virtio):
            return c
    return None


def open_endpoint(
    name: str,
    src: int = RPMSG_ADDR_ANY,
    dst: int | None = None,
    *,
    ctrl: PathLike | RpmsgCtrl | None = None,
    sysfs: PathLike = "/sys",
    dev: PathLike = "/dev",
    bind: bool = True,
    timeout: float | None = 2.0,
) -> RpmsgEndpoint:
    """Create an endpoint through a control device and open it; closing destroys it.

    ``dst`` None: talk to the channel ``name`` the remote announced (its address is read
    from sysfs).  ``src``: the local address (``RPMSG_ADDR_ANY``: a dynamic one; the
    remote learns it from your first message).  ``ctrl``: the control device (default:
    the one of the channel's virtio device, or the only one).  Kernels before v5.18 have a
    control device only while rpmsg_chrdev is bound to a channel; with ``bind`` the
    channel is bound for that, as the OpenAMP examples do.  ``timeout`` (seconds, None =
    forever) bounds the wait for the new ``/dev`` node.
    """
    channel: Channel | None = None
    if dst is None:
        channel = find_channel(name, sysfs=sysfs)
        dst = channel.dst
    own_ctrl = not isinstance(ctrl, RpmsgCtrl)
    if isinstance(ctrl, RpmsgCtrl):
        c = ctrl
    else:
        c = RpmsgCtrl(
            _pick_ctrl(ctrl, channel, sysfs=sysfs, dev=dev, bind=bind, timeout=timeout),
            sysfs=sysfs,
            dev=dev,
        )
    try:
        if src != RPMSG_ADDR_ANY:
            _check_src_free(c, src, sysfs)
        ep = c.create_endpoint(channel.name if channel else name, src, dst, timeout=timeout)
    finally:
        if own_ctrl:
            c.close()
    try:
        return RpmsgEndpoint(ep.node, sysfs=sysfs, dev=dev, info=ep, destroy_on_close=True)
    except KernelError as exc:
        # the node exists but cannot be opened: do not leave it behind -- which is possible
        # only if it can be opened now (the kernel destroys endpoints through their node)
        try:
            with RpmsgEndpoint(ep.node, info=ep) as e:
                e.destroy()
        except OSError:
            raise type(exc)(
                f"{exc.message} ({ep.node} stays until it can be opened; remove it then with "
                f"`openamp rpmsg ept destroy {ep.node}`)",
                errno=exc.errno,
                path=exc.path,
                action=exc.action,
                hint=exc.hint,
            ) from exc
        raise


def _check_src_free(ctrl: RpmsgCtrl, src: int, sysfs: PathLike) -> None:
    """Refuse a local address that a channel's driver holds (sysfs shows it as the
    channel's ``src``), before a node is made: the kernel would make the node and then
    refuse to open it, and a node that cannot be opened cannot be destroyed."""
    parent = _parent_bus_device(ctrl.class_path)
    virtio = parent.split(".", 1)[0] if parent and "." in parent else None
    for ch in list_channels(sysfs=sysfs, include_internal=True):
        held = ch.src == src and ch.driver is not None and ch.kind != "ctrl"
        if held and (virtio is None or ch.virtio == virtio):
            raise RequestRejectedError(
                f"EADDRINUSE local address {format_addr(src)}: channel {ch.device} (driver "
                f"{ch.driver}) holds it; use another src, or RPMSG_ADDR_ANY (-1) for a "
                "dynamic address",
                errno=E.EADDRINUSE,
                path=str(ch.path),
                action="rpmsg:open",
                hint=f"channel {ch.device} (driver {ch.driver}) holds it",
            )


def _pick_ctrl(
    ctrl: PathLike | None,
    channel: Channel | None,
    *,
    sysfs: PathLike,
    dev: PathLike,
    bind: bool,
    timeout: float | None,
) -> Path:
    if ctrl is not None:
        return Path(ctrl) if "/" in str(ctrl) else Path(dev) / str(ctrl)
    found = find_ctrl(channel, sysfs=sysfs, dev=dev)
    if found is not None:
        return found.node
    ctrls = list_ctrls(sysfs=sysfs, dev=dev)
    if channel is None or not bind:
        have = ", ".join(str(c.node) for c in ctrls) or "none"
        raise DeviceNotFoundError(
            f"no single control device to use (control devices: {have}); pass ctrl=",
            errno=E.ENODEV,
            path=str(_class_dir(sysfs)),
        )
    bound = bind_channel(channel, sysfs=sysfs)

    def ctrl_node() -> Path | None:
        for name in read_channel(bound.path).ctrls:
            node = _dev_node(bound.path / "rpmsg" / name, Path(dev))
            if node.exists():
                return node
        return None

    found_node: Path = _wait_for(
        ctrl_node,
        timeout,
        lambda: (
            f"no control device appeared below {bound.path}/rpmsg after binding {CHRDEV_DRIVER}"
        ),
    )
    return found_node


def open_channel(
    name: str,
    *,
    sysfs: PathLike = "/sys",
    dev: PathLike = "/dev",
    bind: bool = True,
    rebind: bool = False,
    timeout: float | None = 2.0,
) -> RpmsgEndpoint:
    """Open the endpoint device of channel ``name`` itself (the channel's own address).

    ``rpmsg-raw`` channels get one from the kernel; for other names, ``bind`` binds the
    channel to rpmsg_chrdev first (``rebind``: even if another driver has it).  Unlike
    :func:`open_endpoint`, closing leaves the device in place.
    """
    ch = find_channel(name, sysfs=sysfs)
    if not ch.endpoints:
        if not bind:
            raise DeviceNotFoundError(
                f"channel {ch.device} has no endpoint device (driver: {ch.driver or 'none'}); "
                f"bind it to {CHRDEV_DRIVER} (`openamp rpmsg bind {ch.name}`)",
                errno=E.ENODEV,
                path=str(ch.path),
            )
        bound = bind_channel(ch, sysfs=sysfs, rebind=rebind)

        def with_endpoint() -> Channel | None:
            now = read_channel(bound.path)
            return now if now.endpoints else None

        ch = _wait_for(
            with_endpoint,
            timeout,
            lambda: (
                f"no endpoint device appeared below {bound.path}/rpmsg after binding "
                f"{CHRDEV_DRIVER}"
            ),
        )
    info = read_endpoint_device(ch.path / "rpmsg" / ch.endpoints[0], dev)
    _wait_for(lambda: info.node.exists(), timeout, lambda: f"{info.node} did not appear")
    return RpmsgEndpoint(info.node, sysfs=sysfs, dev=dev, info=info)

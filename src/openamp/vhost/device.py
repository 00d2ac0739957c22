"""The vhost-user backend session: a virtio device behind a frontend's socket.

See :mod:`openamp.vhost` for the theory of operation.  This module holds the session
(:class:`VhostUserDevice`: socket, handlers, guest memory, vrings) and the doorbell the
rpmsg layer waits on (:class:`VhostUserDoorbell`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import logging
import mmap
import os
import select
import socket
import stat
import struct
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._files import describe_mode
from ..errors import (
    InvalidStateError,
    OpenAMPError,
    OpenAMPTimeoutError,
    PeerGoneError,
    RegionBoundsError,
    UsageError,
)
from ..metal import sigbus
from ..metal.io import AddressSpace, IoRegion
from ..metal.wait import BlockingWait, DoorbellWaiter
from ..rpmsg.events import ConfigEvent, EventHook, FeaturesEvent, StatusEvent
from ..virtio.ring import (
    VIRTIO_CONFIG_STATUS_ACK,
    VIRTIO_CONFIG_STATUS_DRIVER,
    VIRTIO_CONFIG_STATUS_DRIVER_OK,
    VIRTIO_CONFIG_STATUS_FEATURES_OK,
    VIRTIO_F_VERSION_1,
    VIRTIO_ID_RPMSG,
    VringLayout,
)
from ..virtio.transport import VringInfo
from ..virtio.virtqueue import Role
from .wire import (
    CONFIG_HEADER,
    CONFIG_NOTIFYID,
    DEFAULT_PROTOCOL_FEATURES,
    FLAG_NEED_REPLY,
    FLAG_REPLY,
    FLAG_VERSION_MASK,
    HAS_OWN_REPLY,
    HEADER,
    KICK_VALUE,
    MAX_CONFIG_SIZE,
    MAX_FDS,
    MAX_PAYLOAD,
    MAX_REGIONS,
    MEMORY_HEADER,
    MEMORY_REGION,
    RING_ALIGN,
    RPMSG_DEVICE_FEATURES,
    SUPPORTED_PROTOCOL_FEATURES,
    U64,
    VHOST_USER_F_PROTOCOL_FEATURES,
    VHOST_USER_VERSION,
    VRING_ADDR,
    VRING_INDEX_MASK,
    VRING_NOFD_MASK,
    VRING_STATE,
    BackendRequest,
    ProtocolFeature,
    Request,
    VhostUserError,
)

log = logging.getLogger("openamp.vhost")

# -- guest memory --------------------------------------------------------------------------


@dataclass
class _GuestRegion:
    """One region of the memory table, mapped."""

    guest_addr: int
    size: int
    user_addr: int
    mmap_offset: int
    mapping: mmap.mmap
    region: IoRegion
    fd: int | None = None
    """A descriptor of the file, kept to notice when the frontend shrinks it (None: the
    file is sealed against shrinking, as QEMU's memfds are, and needs no check)."""

    def shrunk(self) -> int | None:
        """The file's size if it no longer covers the region, else None."""
        if sigbus.faults(id(self.mapping)):  # a page went away under an access
            return os.fstat(self.fd).st_size if self.fd is not None else 0
        if self.fd is None:
            return None
        size = os.fstat(self.fd).st_size
        return size if self.mmap_offset + self.size > size else None

    def contains_user(self, addr: int, length: int) -> bool:
        off = addr - self.user_addr
        return off >= 0 and length >= 0 and off + length <= self.size

    def close(self) -> bool:
        """Release the region and unmap; False if other views keep the mapping alive."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        with contextlib.suppress(BufferError, ValueError):
            self.region.release()
        try:
            self._unmap()
        except BufferError:
            gc.collect()  # views may only be kept alive by reference cycles
            try:
                self._unmap()
            except BufferError:
                return False
        return True

    def _unmap(self) -> None:
        if not self.mapping.closed:
            self.mapping.close()  # BufferError while views are alive: still guarded then
        sigbus.unguard(id(self.mapping))


_O_PATH = getattr(os, "O_PATH", 0o10000000)
_F_GET_SEALS = getattr(fcntl, "F_GET_SEALS", 1034)
_F_SEAL_SHRINK = getattr(fcntl, "F_SEAL_SHRINK", 0x0002)


def _describe_fd(fd: int, st: os.stat_result) -> str:
    """What a descriptor is, for an error message ("a directory", "anon_inode:[eventpoll]")."""
    if stat.S_IFMT(st.st_mode) == 0:  # an anonymous inode: its name says what it is
        with contextlib.suppress(OSError):
            return os.readlink(f"/proc/self/fd/{fd}")
    return describe_mode(st.st_mode)


def _fd_facts(fd: int, what: str) -> tuple[int, os.stat_result]:
    """The status flags and stat of a descriptor the frontend passed; refuses O_PATH."""
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        st = os.fstat(fd)
    except OSError as exc:
        raise VhostUserError(f"{what}: the descriptor is not usable ({exc.strerror})") from None
    if flags & _O_PATH:
        raise VhostUserError(f"{what}: an O_PATH descriptor, which cannot be read or written")
    return flags, st


def _is_eventfd(fd: int, st: os.stat_result) -> bool:
    if stat.S_IFMT(st.st_mode) not in (0, stat.S_IFREG):
        return False
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"
    except OSError:  # no /proc: an anonymous inode of no type is the best guess
        return stat.S_IFMT(st.st_mode) == 0


def _check_notify_fd(fd: int, what: str, *, read: bool) -> None:
    """A kick (read) or call/err (write) descriptor must be an eventfd, a pipe or a socket,
    open for the direction it is used in (UML kicks through an eventfd and takes calls on
    a pipe; QEMU uses eventfds for both)."""
    flags, st = _fd_facts(fd, what)
    mode = flags & os.O_ACCMODE
    if mode != os.O_RDWR and mode != (os.O_RDONLY if read else os.O_WRONLY):
        raise VhostUserError(f"{what}: not open for {'reading' if read else 'writing'}")
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode) or _is_eventfd(fd, st):
        return
    raise VhostUserError(
        f"{what}: must be an eventfd, a pipe or a socket, not {_describe_fd(fd, st)}"
    )


def _memory_fd(fd: int, what: str) -> tuple[os.stat_result, bool]:
    """A memory region's descriptor must be a regular file (a memfd, a tmpfs or hugetlbfs
    file) open for reading and writing; returns its stat and whether it is sealed against
    shrinking."""
    flags, st = _fd_facts(fd, what)
    if not stat.S_ISREG(st.st_mode):
        raise VhostUserError(
            f"{what}: must be a memory file (memfd, tmpfs), not {_describe_fd(fd, st)}"
        )
    if flags & os.O_ACCMODE != os.O_RDWR:
        raise VhostUserError(f"{what}: not open for reading and writing")
    try:
        sealed = bool(fcntl.fcntl(fd, _F_GET_SEALS) & _F_SEAL_SHRINK)
    except OSError:  # not a memfd: it cannot be sealed
        sealed = False
    return st, sealed


def _map_region(fd: int, guest_addr: int, size: int, user_addr: int, offset: int) -> _GuestRegion:
    if size <= 0 or offset < 0:
        raise VhostUserError(
            f"memory region at guest {guest_addr:#x} has size {size} at offset {offset}"
        )
    st, sealed = _memory_fd(fd, f"memory region at guest {guest_addr:#x}")
    if offset + size > st.st_size:
        # Touching a mapping beyond the end of its file kills the process with SIGBUS.
        raise VhostUserError(
            f"memory region [{offset:#x}, +{size:#x}) lies beyond the end of its "
            f"{st.st_size:#x}-byte file"
        )
    delta = offset % mmap.ALLOCATIONGRANULARITY
    try:
        mapping = mmap.mmap(
            fd,
            size + delta,
            flags=mmap.MAP_SHARED,
            prot=mmap.PROT_READ | mmap.PROT_WRITE,
            offset=offset - delta,
        )
    except (OSError, ValueError, OverflowError) as exc:
        raise VhostUserError(
            f"cannot map memory region guest {guest_addr:#x} size {size:#x}: {exc}"
        ) from None
    region = IoRegion(
        mapping, offset=delta, size=size, phys_base=guest_addr, name=f"guest@{guest_addr:#x}"
    )
    sigbus.guard(id(mapping), mapping)  # a shrink racing our checks cannot kill us
    kept = None
    if not sealed:
        try:
            kept = os.dup(fd)
        except OSError as exc:
            region.release()
            sigbus.unguard(id(mapping))
            mapping.close()
            raise VhostUserError(f"cannot keep the memory descriptor: {exc.strerror}") from None
    return _GuestRegion(guest_addr, size, user_addr, offset, mapping, region, kept)


# -- vrings --------------------------------------------------------------------------------


@dataclass
class _Vring:
    index: int
    num: int = 0
    base: int = 0
    flags: int = 0
    desc: int | None = None
    used: int | None = None
    avail: int | None = None
    kick_fd: int | None = None
    kick_polled: bool = False
    """SET_VRING_KICK came without a descriptor: the frontend never kicks, poll."""
    call_fd: int | None = None
    err_fd: int | None = None
    enabled: bool = False
    stopped: bool = False
    kicks: int = 0
    calls: int = 0

    def close_fds(self) -> None:
        for name in ("kick_fd", "call_fd", "err_fd"):
            fd = getattr(self, name)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, None)


@dataclass
class _Message:
    request: int
    flags: int
    payload: bytes
    fds: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        try:
            return Request(self.request).name
        except ValueError:
            return f"request {self.request}"

    def take_fd(self) -> int | None:
        return self.fds.pop(0) if self.fds else None

    def close_fds(self) -> None:
        while self.fds:
            with contextlib.suppress(OSError):
                os.close(self.fds.pop())


def _unpack(st: struct.Struct, msg: _Message) -> tuple[Any, ...]:
    if len(msg.payload) < st.size:
        raise VhostUserError(
            f"{msg.name}: payload of {len(msg.payload)} bytes, need at least {st.size}"
        )
    return st.unpack_from(msg.payload)


# -- the device ----------------------------------------------------------------------------


class VhostUserDevice:
    """A vhost-user backend for one virtio device, and its :class:`VirtioTransport`.

    ``socket_path``: where to listen (an existing *socket* there is replaced; anything
    else raises :class:`UsageError`).  ``device_id``: the virtio device id (7 = rpmsg).
    ``device_features``: the virtio feature bits offered (bit 30 is added on the wire).
    ``config``: the device's config space.  ``num_vrings``: how many vrings it has.
    ``protocol_features``: the protocol features offered.  ``io_timeout``: seconds a
    started message may take to arrive completely, and a reply to be sent.

    Listening starts in the constructor, so a frontend started right after finds the
    socket.  Use from one thread at a time.
    """

    role = Role.DEVICE

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        device_id: int = VIRTIO_ID_RPMSG,
        device_features: int = RPMSG_DEVICE_FEATURES,
        config: bytes = b"",
        num_vrings: int = 2,
        protocol_features: int = DEFAULT_PROTOCOL_FEATURES,
        io_timeout: float = 5.0,
    ) -> None:
        if device_features & (1 << VHOST_USER_F_PROTOCOL_FEATURES):
            raise UsageError("feature bit 30 is vhost-user's own; do not offer it yourself")
        if not 1 <= num_vrings <= VRING_INDEX_MASK + 1:
            raise UsageError(f"num_vrings must be 1..256, got {num_vrings}")
        if protocol_features & ~SUPPORTED_PROTOCOL_FEATURES:
            raise UsageError(
                f"protocol features {protocol_features & ~SUPPORTED_PROTOCOL_FEATURES:#x} "
                "are not implemented by this backend"
            )
        if len(config) > MAX_CONFIG_SIZE:
            raise UsageError(f"config space is limited to {MAX_CONFIG_SIZE} bytes")
        self.path = os.fspath(socket_path)
        self._device_id = device_id
        self._device_features = device_features
        self._offered_protocol = protocol_features
        self.config = bytearray(config)
        self.io_timeout = io_timeout

        self.owner = False
        self.acked_features = 0
        """The features word of the last SET_FEATURES (bit 30 included)."""
        self.features_set = False
        self.protocol_features = 0
        """The protocol features the frontend accepted."""
        self.status = 0
        """The status byte the frontend set (only with the STATUS protocol feature)."""
        self.vrings = [_Vring(i) for i in range(num_vrings)]
        self.received: Counter[str] = Counter()
        """How many messages of each request type were processed."""
        self.on_stop: Callable[[str], None] | None = None
        """Called once when the driver goes away (see the module docstring)."""
        self.capture: EventHook | None = None
        """Called with the frontend's status, feature and config writes (None: off)."""
        self.stopped = ""
        """Why the session ended ('' while it has not)."""
        self.disconnected = False
        self.closed = False

        self._regions: list[_GuestRegion] = []
        self._retired: list[_GuestRegion] = []
        self._memory = AddressSpace()
        self._was_ready = False
        self._backend_fd: int | None = None
        self._conn: socket.socket | None = None
        self._epoll = select.epoll()
        self._listener: socket.socket | None = None
        self._bound: tuple[int, int] | None = None
        try:
            self._listen()
        except BaseException:
            self._epoll.close()
            raise

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("connected" if self._conn else "listening")
        return f"VhostUserDevice({self.path!r}, id={self._device_id}, {state})"

    # -- connection ---------------------------------------------------------------------

    def _listen(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(self.path)
            if not stat.S_ISSOCK(st.st_mode):
                raise UsageError(f"{self.path} exists and is not a socket; not replacing it")
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(self.path)
            st = os.lstat(self.path)
            self._bound = (st.st_dev, st.st_ino)
            sock.listen(1)
        except BaseException:
            sock.close()
            self._unlink_path()
            raise
        self._listener = sock

    def _unlink_path(self) -> None:
        """Remove the socket path if it is still the one we bound."""
        if self._bound is None:
            return
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._bound:
                os.unlink(self.path)
        self._bound = None

    @property
    def connected(self) -> bool:
        """Whether a frontend is connected and has not gone away."""
        return self._conn is not None and not self.disconnected

    def accept(self, timeout: float | None = 10.0) -> None:
        """Wait for the frontend to connect (``timeout`` seconds, None = forever).

        The socket path is unlinked once it has connected.  Raises
        :class:`OpenAMPTimeoutError` if nobody connects in time.
        """
        if self.closed:
            raise InvalidStateError("the vhost-user device is closed")
        if self._conn is not None:
            return
        listener = self._listener
        assert listener is not None
        ms = None if timeout is None else max(0.0, timeout) * 1000.0
        p = select.poll()
        p.register(listener, select.POLLIN)
        if not p.poll(ms):
            raise OpenAMPTimeoutError(
                f"no vhost-user frontend connected to {self.path} within {timeout} s"
            )
        conn, _ = listener.accept()
        conn.settimeout(self.io_timeout)
        self._conn = conn
        self._epoll.register(conn.fileno(), select.EPOLLIN)
        listener.close()
        self._listener = None
        self._unlink_path()
        log.debug("vhost-user frontend connected on %s", self.path)

    def fileno(self) -> int:
        """An epoll descriptor: readable while a message or a kick is pending."""
        return self._epoll.fileno()

    # -- message loop -------------------------------------------------------------------

    def process(self, timeout: float | None = 0.0) -> int:
        """Handle every control message that has arrived; return how many.

        Waits up to ``timeout`` seconds (None = forever) for the first one.  Raises
        :class:`PeerGoneError` when the frontend has disconnected (after handling what
        it sent before), :class:`VhostUserError` for a message that breaks the protocol.
        """
        conn = self._conn
        if conn is None:
            if self.closed:
                raise InvalidStateError("the vhost-user device is closed")
            raise InvalidStateError("no frontend connected yet; call accept() first")
        if self.disconnected:
            raise PeerGoneError(f"the vhost-user frontend on {self.path} disconnected")
        n = 0
        wait_ms = None if timeout is None else max(0.0, timeout) * 1000.0
        p = select.poll()
        p.register(conn, select.POLLIN)
        while p.poll(wait_ms if n == 0 else 0):
            msg = self._recv()
            if msg is None:
                self._disconnect()
                if n:
                    return n
                raise PeerGoneError(f"the vhost-user frontend on {self.path} disconnected")
            self._dispatch(msg)
            n += 1
        return n

    def _recv(self) -> _Message | None:
        conn = self._conn
        assert conn is not None
        try:
            data, fds, msg_flags, _ = socket.recv_fds(
                conn, HEADER.size, MAX_FDS, socket.MSG_CMSG_CLOEXEC
            )
        except (ConnectionResetError, BrokenPipeError):
            return None
        msg = _Message(0, 0, b"", list(fds))
        try:
            if not data:
                return None
            if msg_flags & socket.MSG_CTRUNC:
                raise VhostUserError(f"more than {MAX_FDS} descriptors came with one message")
            head = data + self._recv_exact(HEADER.size - len(data))
            msg.request, msg.flags, size = HEADER.unpack(head)
            if msg.flags & FLAG_VERSION_MASK != VHOST_USER_VERSION:
                raise VhostUserError(f"{msg.name}: unsupported version in flags {msg.flags:#x}")
            if size > MAX_PAYLOAD:
                raise VhostUserError(f"{msg.name}: payload of {size} bytes is too large")
            msg.payload = self._recv_exact(size)
        except BaseException:
            msg.close_fds()
            raise
        return msg

    def _recv_exact(self, n: int) -> bytes:
        conn = self._conn
        assert conn is not None
        buf = bytearray()
        try:
            while len(buf) < n:
                chunk = conn.recv(n - len(buf))
                if not chunk:
                    raise VhostUserError(
                        "the frontend closed the socket in the middle of a message"
                    )
                buf += chunk
        except TimeoutError:
            raise VhostUserError(
                f"a message stayed incomplete for {self.io_timeout} s ({len(buf)} of {n} bytes)"
            ) from None
        return bytes(buf)

    def _dispatch(self, msg: _Message) -> None:
        self.received[msg.name] += 1
        handler = self._HANDLERS.get(msg.request)
        # Like libvhost-user, acknowledge whenever asked: UML asks already on the
        # SET_PROTOCOL_FEATURES that negotiates REPLY_ACK.
        ack = bool(msg.flags & FLAG_NEED_REPLY) and msg.request not in HAS_OWN_REPLY
        try:
            if handler is None:
                log.warning("ignoring unknown vhost-user %s", msg.name)
                if ack:
                    self._reply(msg.request, U64.pack(1))
                return
            log.debug("vhost-user %s (%d bytes, %d fds)", msg.name, len(msg.payload), len(msg.fds))
            handler(self, msg)
        except VhostUserError as exc:
            if not ack:
                raise
            log.warning("refusing vhost-user %s: %s", msg.name, exc)
            self._reply(msg.request, U64.pack(1))
            return
        finally:
            msg.close_fds()  # descriptors a handler did not take
        if ack:
            self._reply(msg.request, U64.pack(0))

    def _reply(self, request: int, payload: bytes) -> None:
        conn = self._conn
        assert conn is not None
        try:
            conn.sendall(
                HEADER.pack(request, VHOST_USER_VERSION | FLAG_REPLY, len(payload)) + payload
            )
        except (BrokenPipeError, ConnectionResetError):
            self._disconnect()
        except TimeoutError:
            raise VhostUserError(
                f"the frontend did not take a reply within {self.io_timeout} s"
            ) from None

    # -- handlers -----------------------------------------------------------------------

    def _get_features(self, msg: _Message) -> None:
        self._reply(
            msg.request, U64.pack(self._device_features | 1 << VHOST_USER_F_PROTOCOL_FEATURES)
        )

    def _set_features(self, msg: _Message) -> None:
        (features,) = _unpack(U64, msg)
        offered = self._device_features | 1 << VHOST_USER_F_PROTOCOL_FEATURES
        if features & ~offered:
            raise VhostUserError(
                f"the driver accepted features {features & ~offered:#x} that were not offered"
            )
        self._stop("the driver negotiated features again")
        self.acked_features = features
        self.features_set = True
        log.info("the frontend accepted features %#x (offered %#x)", features, offered)
        if self.capture is not None:
            self.capture(FeaturesEvent(offered, features, "seen"))

    def _set_owner(self, msg: _Message) -> None:
        self.owner = True

    def _reset_owner(self, msg: _Message) -> None:
        self._stop("the frontend reset the owner")
        for vr in self.vrings:
            vr.enabled = False

    def _reset_device(self, msg: _Message) -> None:
        self._stop("the frontend reset the device")
        for vr in self.vrings:
            vr.close_fds()
        self.vrings = [_Vring(i) for i in range(len(self.vrings))]
        self.status = 0
        self.features_set = False
        self.acked_features = 0
        if self.capture is not None:
            self.capture(StatusEvent(0, "seen"))

    def _get_protocol_features(self, msg: _Message) -> None:
        self._reply(msg.request, U64.pack(self._offered_protocol))

    def _set_protocol_features(self, msg: _Message) -> None:
        (features,) = _unpack(U64, msg)
        if features & ~self._offered_protocol:
            raise VhostUserError(
                f"the frontend accepted protocol features "
                f"{features & ~self._offered_protocol:#x} that were not offered"
            )
        self.protocol_features = features

    def _set_mem_table(self, msg: _Message) -> None:
        count, _padding = _unpack(MEMORY_HEADER, msg)
        if not 1 <= count <= MAX_REGIONS:
            raise VhostUserError(f"memory table with {count} regions (1..{MAX_REGIONS})")
        need = MEMORY_HEADER.size + count * MEMORY_REGION.size
        if len(msg.payload) < need:
            raise VhostUserError(f"memory table of {count} regions needs {need} bytes")
        if len(msg.fds) != count:
            raise VhostUserError(f"memory table of {count} regions came with {len(msg.fds)} fds")
        self._stop("the frontend replaced the memory table")
        regions: list[_GuestRegion] = []
        try:
            for i in range(count):
                guest, size, user, offset = MEMORY_REGION.unpack_from(
                    msg.payload, MEMORY_HEADER.size + i * MEMORY_REGION.size
                )
                regions.append(_map_region(msg.fds[i], guest, size, user, offset))
            space = AddressSpace()
            for r in regions:
                try:
                    space.add(r.region)
                except RegionBoundsError as exc:
                    raise VhostUserError(f"memory table: {exc}") from None
        except BaseException:
            for r in regions:
                r.close()
            raise
        # Old mappings may still be viewed by a device of the previous session.
        self._retired.extend(self._regions)
        self._regions = regions
        self._memory = space
        for r in regions:
            log.debug(
                "guest memory: guest %#x user %#x size %#x at file offset %#x",
                r.guest_addr,
                r.user_addr,
                r.size,
                r.mmap_offset,
            )

    def _ignore_with_fd(self, msg: _Message) -> None:
        log.debug("ignoring vhost-user %s", msg.name)

    def _vring_for(self, msg: _Message, index: int) -> _Vring:
        if not 0 <= index < len(self.vrings):
            raise VhostUserError(f"{msg.name}: vring {index} (the device has {len(self.vrings)})")
        return self.vrings[index]

    def _set_vring_num(self, msg: _Message) -> None:
        index, num = _unpack(VRING_STATE, msg)
        vr = self._vring_for(msg, index)
        if num <= 0 or num & (num - 1) or num > 32768:
            raise VhostUserError(f"vring {index}: size {num} is not a power of two in 1..32768")
        vr.num = num

    def _set_vring_addr(self, msg: _Message) -> None:
        index, flags, desc, used, avail, _log = _unpack(VRING_ADDR, msg)
        vr = self._vring_for(msg, index)
        vr.flags, vr.desc, vr.used, vr.avail = flags, desc, used, avail

    def _set_vring_base(self, msg: _Message) -> None:
        index, base = _unpack(VRING_STATE, msg)
        vr = self._vring_for(msg, index)
        vr.base = base  # where the device resumes taking buffers

    def _get_vring_base(self, msg: _Message) -> None:
        index, _ = _unpack(VRING_STATE, msg)
        vr = self._vring_for(msg, index)
        vr.stopped = True
        self._stop(f"the frontend stopped vring {index}")
        # Every buffer we took has been returned by the time the rings stop (rpmsg
        # returns receive buffers at once), so the used index is where we stand.
        base = 0
        with contextlib.suppress(OpenAMPError):
            self.check_memory()  # a shrunk file would fault on the read
            region, off = self._ring_location(vr.used, 4)
            base = region.read16(off + 2)
        self._reply(msg.request, VRING_STATE.pack(index, base))

    def _vring_fd(self, msg: _Message, *, read: bool) -> tuple[_Vring, int | None]:
        """The vring a SET_VRING_KICK/CALL/ERR names and its checked descriptor (None:
        the NOFD flag, polling).  The descriptor is the caller's to keep or close."""
        (value,) = _unpack(U64, msg)
        if value & ~(VRING_INDEX_MASK | VRING_NOFD_MASK):
            raise VhostUserError(f"{msg.name}: unknown bits in {value:#x}")
        vr = self._vring_for(msg, value & VRING_INDEX_MASK)
        if value & VRING_NOFD_MASK:
            return vr, None
        if len(msg.fds) != 1:
            raise VhostUserError(
                f"{msg.name} for vring {vr.index} came with {len(msg.fds)} descriptors, not 1"
            )
        _check_notify_fd(msg.fds[0], f"{msg.name} for vring {vr.index}", read=read)
        return vr, msg.take_fd()

    def _set_vring_kick(self, msg: _Message) -> None:
        vr, fd = self._vring_fd(msg, read=True)
        if fd is not None:
            try:
                os.set_blocking(fd, False)
                self._epoll.register(fd, select.EPOLLIN)
            except OSError as exc:
                os.close(fd)
                raise VhostUserError(
                    f"{msg.name} for vring {vr.index}: cannot wait on the descriptor "
                    f"({exc.strerror})"
                ) from None
        if vr.kick_fd is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(vr.kick_fd)
            with contextlib.suppress(OSError):
                os.close(vr.kick_fd)
        vr.kick_fd = fd
        vr.kick_polled = fd is None
        vr.stopped = False

    def _set_vring_call(self, msg: _Message) -> None:
        vr, fd = self._vring_fd(msg, read=False)
        if fd is not None:
            try:
                os.set_blocking(fd, False)
            except OSError as exc:
                os.close(fd)
                raise VhostUserError(f"{msg.name} for vring {vr.index}: {exc.strerror}") from None
        if vr.call_fd is not None:
            with contextlib.suppress(OSError):
                os.close(vr.call_fd)
        vr.call_fd = fd

    def _set_vring_err(self, msg: _Message) -> None:
        vr, fd = self._vring_fd(msg, read=False)
        if vr.err_fd is not None:
            with contextlib.suppress(OSError):
                os.close(vr.err_fd)
        vr.err_fd = fd  # kept so the frontend's end stays valid; we never report errors

    def _get_queue_num(self, msg: _Message) -> None:
        self._reply(msg.request, U64.pack(len(self.vrings)))

    def _set_vring_enable(self, msg: _Message) -> None:
        index, enable = _unpack(VRING_STATE, msg)
        vr = self._vring_for(msg, index)
        vr.enabled = bool(enable)
        if not enable:
            self._stop(f"the driver disabled vring {index}")

    def _set_slave_req_fd(self, msg: _Message) -> None:
        if len(msg.fds) != 1:
            raise VhostUserError(f"SET_SLAVE_REQ_FD came with {len(msg.fds)} descriptors, not 1")
        _flags, st = _fd_facts(msg.fds[0], "SET_SLAVE_REQ_FD")
        if not stat.S_ISSOCK(st.st_mode):
            raise VhostUserError(
                f"SET_SLAVE_REQ_FD: must be a socket, not {_describe_fd(msg.fds[0], st)}"
            )
        fd = msg.take_fd()
        assert fd is not None
        try:
            os.set_blocking(fd, False)  # a config-change notice never blocks the backend
        except OSError as exc:
            os.close(fd)
            raise VhostUserError(f"SET_SLAVE_REQ_FD: {exc.strerror}") from None
        if self._backend_fd is not None:
            os.close(self._backend_fd)
        # Keep it open even if unused: UML takes its end closing as the device vanishing.
        self._backend_fd = fd

    def _set_vring_endian(self, msg: _Message) -> None:
        index, big = _unpack(VRING_STATE, msg)
        self._vring_for(msg, index)
        if big:
            raise VhostUserError(f"vring {index}: big-endian rings are not supported")

    def _get_config(self, msg: _Message) -> None:
        offset, size, flags = _unpack(CONFIG_HEADER, msg)
        if offset + size > MAX_CONFIG_SIZE:
            # A zero-length payload is how a backend reports an error here.
            log.warning("GET_CONFIG [%d, +%d) outside the config space", offset, size)
            self._reply(msg.request, b"")
            return
        data = bytes(self.config[offset : offset + size]).ljust(size, b"\0")
        self._reply(msg.request, CONFIG_HEADER.pack(offset, size, flags) + data)

    def _set_config(self, msg: _Message) -> None:
        offset, size, _flags = _unpack(CONFIG_HEADER, msg)
        data = msg.payload[CONFIG_HEADER.size : CONFIG_HEADER.size + size]
        if len(data) != size or offset + size > len(self.config):
            raise VhostUserError(
                f"SET_CONFIG [{offset}, +{size}) outside the {len(self.config)}-byte config space"
            )
        self.config[offset : offset + size] = data
        if self.capture is not None:
            self.capture(ConfigEvent(bytes(self.config)))

    def _vring_kick(self, msg: _Message) -> None:
        index, _ = _unpack(VRING_STATE, msg)
        self._vring_for(msg, index).kicks += 1

    def _set_status(self, msg: _Message) -> None:
        (value,) = _unpack(U64, msg)
        if self._was_ready and not value & VIRTIO_CONFIG_STATUS_DRIVER_OK:
            self._stop(f"the driver set status {value:#04x}")
        self.status = value & 0xFF
        log.info("the frontend set status %#04x", self.status)
        if self.capture is not None:
            self.capture(StatusEvent(self.status, "seen"))

    def _get_status(self, msg: _Message) -> None:
        self._reply(msg.request, U64.pack(self.get_status()))

    def _get_max_mem_slots(self, msg: _Message) -> None:
        self._reply(msg.request, U64.pack(MAX_REGIONS))

    _HANDLERS: dict[int, Callable[[VhostUserDevice, _Message], None]] = {
        Request.GET_FEATURES: _get_features,
        Request.SET_FEATURES: _set_features,
        Request.SET_OWNER: _set_owner,
        Request.RESET_OWNER: _reset_owner,
        Request.SET_MEM_TABLE: _set_mem_table,
        Request.SET_LOG_BASE: _ignore_with_fd,
        Request.SET_LOG_FD: _ignore_with_fd,
        Request.SET_VRING_NUM: _set_vring_num,
        Request.SET_VRING_ADDR: _set_vring_addr,
        Request.SET_VRING_BASE: _set_vring_base,
        Request.GET_VRING_BASE: _get_vring_base,
        Request.SET_VRING_KICK: _set_vring_kick,
        Request.SET_VRING_CALL: _set_vring_call,
        Request.SET_VRING_ERR: _set_vring_err,
        Request.GET_PROTOCOL_FEATURES: _get_protocol_features,
        Request.SET_PROTOCOL_FEATURES: _set_protocol_features,
        Request.GET_QUEUE_NUM: _get_queue_num,
        Request.SET_VRING_ENABLE: _set_vring_enable,
        Request.SET_SLAVE_REQ_FD: _set_slave_req_fd,
        Request.SET_VRING_ENDIAN: _set_vring_endian,
        Request.GET_CONFIG: _get_config,
        Request.SET_CONFIG: _set_config,
        Request.RESET_DEVICE: _reset_device,
        Request.VRING_KICK: _vring_kick,
        Request.SET_STATUS: _set_status,
        Request.GET_STATUS: _get_status,
        Request.GET_MAX_MEM_SLOTS: _get_max_mem_slots,
    }
    """What each request does; requests not listed are logged and ignored."""

    # -- session state ------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether the rings can be used: memory mapped, every vring addressed, given a
        kick descriptor and enabled, at least one of them kicked, and the session not
        stopped.

        The kick matters: without the ``STATUS`` protocol feature it is the only sign of
        DRIVER_OK.  Linux enables the rings in ``find_vqs()``, then posts its receive
        buffers and registers its name-service endpoint, then sets DRIVER_OK and kicks
        the receive ring; a message sent before that kick would find no endpoint.
        With ``STATUS`` negotiated the frontend's DRIVER_OK says it and no kick is needed.
        """
        status_known = bool(self.protocol_features & (1 << ProtocolFeature.STATUS))
        if self.stopped or self.disconnected or not self._regions:
            return False
        protocol = bool(self.acked_features & (1 << VHOST_USER_F_PROTOCOL_FEATURES))
        kicked = status_known
        for vr in self.vrings:
            if not vr.num or vr.desc is None or vr.stopped:
                return False
            if vr.kick_fd is None and not vr.kick_polled:
                return False
            if protocol and not vr.enabled:
                return False
            kicked = kicked or vr.kicks > 0 or vr.kick_polled
        return kicked

    def _stop(self, reason: str, *, before_ready: bool = False) -> None:
        """The driver went away: fence the user of the rings, once per session.

        Before the driver was ever ready there is nobody to fence (set-up messages
        repeat), unless ``before_ready``: the memory itself is gone."""
        if self.stopped or not (self._was_ready or before_ready):
            return
        self.stopped = reason
        log.info("vhost-user device on %s stopped: %s", self.path, reason)
        if self.on_stop is not None:
            self.on_stop(reason)

    def _disconnect(self) -> None:
        if self.disconnected:
            return
        self.disconnected = True
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(conn.fileno())
        self._stop("the frontend disconnected")
        log.debug("vhost-user frontend on %s disconnected", self.path)

    def check_memory(self) -> None:
        """Raise :class:`VhostUserError` (and stop the session) if the frontend shrank a
        memory file below the region it described.

        A mapping that reaches past the end of its file kills the process with SIGBUS on
        the next access, so this runs before the rings are read on every wake-up (see
        :meth:`VhostUserDoorbell.drain`).  Files sealed against shrinking (QEMU's memfds)
        are not looked at.  One ``fstat`` per unsealed region.
        """
        for r in self._regions:
            size = r.shrunk()
            if size is not None:
                reason = (
                    f"the frontend shrank the memory file of guest {r.guest_addr:#x} to "
                    f"{size:#x} bytes, below the region [{r.mmap_offset:#x}, +{r.size:#x})"
                )
                self._stop(reason, before_ready=True)  # fence whoever uses the rings
                raise VhostUserError(reason)

    def _ring_location(self, addr: int | None, length: int) -> tuple[IoRegion, int]:
        if addr is None:
            raise InvalidStateError("the vring address is not set")
        for r in self._regions:
            if r.contains_user(addr, length):
                return r.region, addr - r.user_addr
        raise VhostUserError(f"vring address {addr:#x} (+{length:#x}) is in no memory region")

    # -- VirtioTransport ------------------------------------------------------------------

    @property
    def device_id(self) -> int:
        """Virtio device id (7 for rpmsg)."""
        return self._device_id

    @property
    def num_vrings(self) -> int:
        """How many vrings the device has."""
        return len(self.vrings)

    @property
    def notifyid(self) -> int:
        """The device's own notify id (:data:`CONFIG_NOTIFYID`)."""
        return CONFIG_NOTIFYID

    def get_status(self) -> int:
        """The status byte: the frontend's with ``STATUS``, else synthesised (see module)."""
        if self.protocol_features & (1 << ProtocolFeature.STATUS):
            status = self.status
            if status & VIRTIO_CONFIG_STATUS_DRIVER_OK and not self.ready:
                status &= ~VIRTIO_CONFIG_STATUS_DRIVER_OK
        else:
            status = 0
            if self.features_set and not self.stopped:
                status = VIRTIO_CONFIG_STATUS_ACK | VIRTIO_CONFIG_STATUS_DRIVER
                if self.acked_features & (1 << VIRTIO_F_VERSION_1):
                    status |= VIRTIO_CONFIG_STATUS_FEATURES_OK
                if self.ready:
                    status |= VIRTIO_CONFIG_STATUS_DRIVER_OK
        if status & VIRTIO_CONFIG_STATUS_DRIVER_OK and not self._was_ready:
            self._was_ready = True
        return status

    def set_status(self, status: int) -> None:
        """Device side: only a reset request (0) is meaningful; it is recorded locally."""
        if status:
            raise UsageError("the device side does not set the status byte")
        self.status = 0

    def device_features(self) -> int:
        """The virtio features offered (without vhost-user's bit 30)."""
        return self._device_features

    def driver_features(self) -> int:
        """The virtio features the driver accepted (without bit 30; 0 before it did)."""
        return self.acked_features & ~(1 << VHOST_USER_F_PROTOCOL_FEATURES)

    def set_driver_features(self, features: int) -> None:
        """Driver-side operation: refused."""
        raise UsageError("the device side does not set the driver features")

    def config_space(self) -> bytes:
        """The config space the frontend reads with ``GET_CONFIG``."""
        return bytes(self.config)

    def vring(self, index: int) -> VringInfo:
        """Vring ``index``: its memory region, part offsets and notify id (its index)."""
        if not 0 <= index < len(self.vrings):
            raise UsageError(f"vring {index} does not exist (the device has {len(self.vrings)})")
        vr = self.vrings[index]
        if not vr.num or vr.desc is None or vr.avail is None or vr.used is None:
            raise InvalidStateError(f"vring {index} has not been set up by the frontend")
        num = vr.num
        region, desc_off = self._ring_location(vr.desc, 16 * num)
        avail_region, avail_off = self._ring_location(vr.avail, 6 + 2 * num)
        used_region, used_off = self._ring_location(vr.used, 6 + 8 * num)
        if avail_region is not region or used_region is not region:
            raise VhostUserError(f"vring {index}: its parts lie in different memory regions")
        layout = VringLayout(
            num,
            align=RING_ALIGN,
            base=desc_off,
            pa=region.phys_base + desc_off,
            avail_at=avail_off,
            used_at=used_off,
        )
        return VringInfo(index=index, region=region, layout=layout, notifyid=index, base=vr.base)

    def notify(self, notifyid: int) -> None:
        """Signal the driver: vring ``notifyid``'s call descriptor, or a config change."""
        if notifyid == CONFIG_NOTIFYID:
            self._send_config_change()
            return
        if not 0 <= notifyid < len(self.vrings):
            raise UsageError(f"notify id {notifyid} names no vring")
        vr = self.vrings[notifyid]
        fd = vr.call_fd
        if fd is None or self.stopped:
            return
        try:
            os.write(fd, KICK_VALUE)
            vr.calls += 1
        except BlockingIOError:
            pass  # the frontend has unread calls; they wake it anyway
        except OSError as exc:  # closed by the frontend, or never writable (its problem)
            log.debug("vring %d: cannot signal the call descriptor: %s", notifyid, exc)

    def _send_config_change(self) -> None:
        fd = self._backend_fd
        if fd is None or not self.protocol_features & (1 << ProtocolFeature.CONFIG):
            return
        try:
            os.write(fd, HEADER.pack(BackendRequest.CONFIG_CHANGE_MSG, VHOST_USER_VERSION, 0))
        except OSError as exc:  # full, closed or never connected: the frontend's problem
            log.debug("cannot send a config-change notice: %s", exc)

    # -- memory -----------------------------------------------------------------------------

    @property
    def memory(self) -> AddressSpace:
        """The guest's memory, addressed by guest-physical address."""
        return self._memory

    @property
    def guest_memory(self) -> IoRegion:
        """The one memory region (the ``shm`` of an rpmsg device).

        Raises :class:`InvalidStateError` before the memory table arrived and
        :class:`UsageError` if the frontend gave more than one region (our rpmsg device
        addresses its buffers through a single region).
        """
        if not self._regions:
            raise InvalidStateError("the frontend has not sent its memory table yet")
        if len(self._regions) > 1:
            raise UsageError(
                f"the frontend's memory table has {len(self._regions)} regions; "
                "an rpmsg device needs its buffers in one"
            )
        return self._regions[0].region

    # -- kicks ------------------------------------------------------------------------------

    def drain_kicks(self) -> int:
        """Consume every pending kick of every vring without blocking; return how many."""
        n = 0
        for vr in self.vrings:
            fd = vr.kick_fd
            if fd is None:
                continue
            while True:
                try:
                    data = os.read(fd, 4096)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EINTR:
                        continue
                    # the frontend gave a descriptor that cannot be read (an unconnected
                    # socket...): the vring falls back to polling, the error is its own
                    with contextlib.suppress(OSError):
                        self._epoll.unregister(fd)
                    with contextlib.suppress(OSError):
                        os.close(fd)
                    vr.kick_fd = None
                    vr.kick_polled = True
                    raise VhostUserError(
                        f"vring {vr.index}: its kick descriptor cannot be read ({exc.strerror})"
                    ) from None
                if not data:  # a pipe whose writer is gone
                    with contextlib.suppress(OSError):
                        self._epoll.unregister(fd)
                    break
                got = max(1, len(data) // U64.size)
                vr.kicks += got
                n += got
        return n

    def doorbell(self) -> VhostUserDoorbell:
        """A :class:`~openamp.metal.doorbell.Doorbell` over this device's socket and kicks."""
        return VhostUserDoorbell(self)

    def driver_ok(self) -> bool:
        """Whether the status byte has DRIVER_OK (see :meth:`get_status`)."""
        return bool(self.get_status() & VIRTIO_CONFIG_STATUS_DRIVER_OK)

    def wait_ready(
        self, timeout: float | None = 10.0, *, waiter: DoorbellWaiter | None = None
    ) -> None:
        """Handle messages and kicks until the driver has set the device up (DRIVER_OK).

        ``timeout`` in seconds (None = forever); ``waiter`` defaults to blocking on
        :meth:`doorbell`.  Raises :class:`OpenAMPTimeoutError` if it is not in time,
        :class:`PeerGoneError` if the frontend goes away first.
        """
        if waiter is None:
            waiter = DoorbellWaiter(self.doorbell(), BlockingWait())
        if not waiter.wait(self.driver_ok, timeout):
            raise OpenAMPTimeoutError(
                f"the vhost-user driver on {self.path} did not set the device up within "
                f"{timeout} s (messages so far: {dict(self.received) or 'none'})"
            )

    # -- teardown ---------------------------------------------------------------------------

    def disconnect(self) -> None:
        """Drop the frontend abruptly, as a crashed backend would: close the socket and
        every descriptor it passed (no goodbye, no NS destroy), but keep the guest memory
        mapped for whoever still views it.  :meth:`close` unmaps.  Idempotent.
        """
        if self._conn is not None and not self.disconnected:
            self._disconnect()
        self._stop("the backend disconnected")
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._unlink_path()
        if self._conn is not None:
            self._conn.close()
        for vr in self.vrings:
            vr.close_fds()
        if self._backend_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._backend_fd)
            self._backend_fd = None

    def close(self) -> None:
        """Disconnect, close every descriptor, unmap the guest memory, unlink the path.

        Mappings that are still viewed (an rpmsg device that was not closed) cannot be
        unmapped now: a :class:`ResourceWarning` is issued and they go when the last
        view is released.  Idempotent.
        """
        if self.closed:
            return
        self.closed = True
        self.disconnect()
        self._epoll.close()
        stuck = [r for r in self._regions + self._retired if not r.close()]
        self._regions, self._retired = [], []
        self._memory = AddressSpace()
        if stuck:
            warnings.warn(
                f"vhost-user device {self.path}: guest memory closed while views of it are "
                "still alive; it stays mapped until they are released",
                ResourceWarning,
                stacklevel=2,
            )

    def __enter__(self) -> VhostUserDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VhostUserDoorbell:
    """The :class:`~openamp.metal.doorbell.Doorbell` of a :class:`VhostUserDevice`.

    Readable while a control message or a kick is pending.  :meth:`drain` handles the
    control messages and consumes the kicks; it raises :class:`PeerGoneError` once the
    frontend has disconnected or stopped the device.  :meth:`kick` signals every vring.
    """

    def __init__(self, device: VhostUserDevice) -> None:
        self.device = device
        self.kicks_sent = 0
        self.kicks_received = 0

    def _gone(self) -> str:
        dev = self.device
        if dev.stopped:
            return f"the vhost-user device on {dev.path} stopped: {dev.stopped}"
        if dev.disconnected or dev.closed:
            return f"the vhost-user frontend on {dev.path} disconnected"
        return ""

    def kick(self) -> None:
        """Signal the driver on every vring."""
        for vr in self.device.vrings:
            self.device.notify(vr.index)
        self.kicks_sent += 1

    def drain(self) -> int:
        """Handle pending control messages and consume pending kicks; return how many."""
        dev = self.device
        n = 0
        if not dev.closed and not dev.disconnected:
            with contextlib.suppress(PeerGoneError):
                n += dev.process(0)
        if not dev.closed:
            kicks = dev.drain_kicks()
            self.kicks_received += kicks
            n += kicks
            if not dev.stopped:
                dev.check_memory()  # before anyone reads the rings this wake-up
        reason = self._gone()
        if reason and not n:
            raise PeerGoneError(reason)
        return n

    def wait_readable(self, timeout: float | None) -> bool:
        """Block until a message or kick is pending (or the peer is gone); not consuming."""
        if self._gone():
            return True
        ms = None if timeout is None else max(0.0, timeout) * 1000.0
        p = select.poll()
        p.register(self.device.fileno(), select.POLLIN)
        return bool(p.poll(ms)) or bool(self._gone())

    def fileno(self) -> int:
        """The device's epoll descriptor."""
        return self.device.fileno()

    def close(self) -> None:
        """Nothing to release: the device owns every descriptor."""

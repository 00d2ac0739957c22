"""A shared-memory machine: two processes, one shm file, one socket doorbell.

This is the C reference's Linux "generic" machine in general form.  Two choices are
independent, as in the C demos:

* the **virtio role** (``driver`` = host, ``device`` = remote), and
* the **socket role**: the ``server`` creates the shared memory, writes the resource
  table into it (which also resets status and gfeatures), listens on the UNIX socket
  and accepts one peer; the ``client`` connects (retrying until the server listens) and
  then maps the memory the server prepared.  By default the device is the server, as
  in the C echo demo.

The server also cleans up: it unlinks the shared-memory file when it closes (the C
programs never do) and the socket path once the peer has connected.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any, Literal

from ..errors import (
    InvalidStateError,
    OpenAMPError,
    OpenAMPTimeoutError,
    ResourceTableError,
    UsageError,
)
from ..metal.deadline import Deadline
from ..metal.doorbell import UnixSocketDoorbell, UnixSocketServer, reap_stale_sockets
from ..metal.io import IoRegion
from ..metal.shm import SHM_DIR, SharedMemory, reap_stale, unlink_when_unheld
from ..metal.wait import DoorbellWaiter, wait_strategy
from ..remoteproc.core import VdevLink
from ..remoteproc.rsc_table import RSC_VDEV, ResourceTable
from ..remoteproc.virtio import RscVdevTransport
from ..rpmsg.core import NsCallback, RpmsgDevice, Waiter
from ..rpmsg.events import EventHook, TraceHook
from ..rpmsg.virtio import RpmsgVirtioConfig, RpmsgVirtioDevice, ShmPool
from ..virtio.virtqueue import Role
from .layout import LINUX_GENERIC, MachineLayout

log = logging.getLogger("openamp.platform")

RoleName = Literal["driver", "device"]
SocketRole = Literal["server", "client"]


def parse_role(role: Role | str) -> Role:
    """``"driver"``/``"host"`` or ``"device"``/``"remote"`` (or a :class:`Role`) as a Role."""
    if isinstance(role, Role):
        return role
    names = {
        "driver": Role.DRIVER,
        "host": Role.DRIVER,
        "device": Role.DEVICE,
        "remote": Role.DEVICE,
    }
    try:
        return names[role.lower()]
    except KeyError:
        raise UsageError(f"role must be one of driver, device (got {role!r})") from None


def rpmsg_on_link(
    link: VdevLink,
    *,
    waiter: Waiter | None,
    config: RpmsgVirtioConfig | None = None,
    ns_bind_cb: NsCallback | None = None,
    ready_timeout: float | None = 10.0,
    capture: EventHook | None = None,
) -> RpmsgVirtioDevice:
    """An rpmsg device on a vdev link that remoteproc handed out (remoteproc -> rpmsg).

    The driver (host) side takes its buffers from the link's ``vdev<N>buffer``
    carveout; the device side uses what the driver posts, and only inside that carveout
    when the table has one.  ``capture`` records the link's events
    (:mod:`openamp.rpmsg.events`).
    """
    carve = link.buffers
    if carve is None and link.transport.role is Role.DRIVER:
        raise ResourceTableError(
            f"no carveout named 'vdev{link.index}buffer' for the rpmsg buffers"
        )
    pool = None if carve is None else ShmPool(carve.offset, carve.size)
    return RpmsgVirtioDevice(
        link.transport,
        shm=link.ring_io,
        pool=pool,
        config=config,
        waiter=waiter,
        ns_bind_cb=ns_bind_cb,
        ready_timeout=ready_timeout,
        capture=capture,
    )


QUIESCE_TIMEOUT = 5.0
"""Seconds :func:`quiesced` waits for other threads to leave a device."""


def _threads_using(dev: RpmsgDevice) -> list[int]:
    """Ids of the other threads that have a frame in ``dev``'s code right now."""
    mine = {id(dev)}
    for name in ("_rvq", "_tvq"):
        queue = getattr(dev, name, None)
        if queue is not None:
            mine.add(id(queue))
    me = threading.get_ident()
    users = []
    for tid, frame in sys._current_frames().items():
        if tid == me:
            continue
        f: FrameType | None = frame
        while f is not None:
            module = f.f_globals.get("__name__", "")
            if module.startswith(("openamp.rpmsg.", "openamp.virtio.")):
                owner = f.f_locals.get("self")
                if id(owner) in mine or getattr(owner, "device", None) is dev:
                    users.append(tid)
                    break
            f = f.f_back
    return users


class _Gate:
    """Where other threads wait while one thread has a device to itself; that thread
    passes (it rebuilds the link through the device's own calls)."""

    def __init__(self) -> None:
        self._opened = threading.Event()
        self._owner = threading.get_ident()

    def wait(self, timeout: float | None = None) -> bool:
        return threading.get_ident() == self._owner or self._opened.wait(timeout)

    def open(self) -> None:
        self._opened.set()


@contextlib.contextmanager
def quiesced(dev: RpmsgDevice, timeout: float = QUIESCE_TIMEOUT) -> Iterator[None]:
    """Have ``dev`` to ourselves, from a platform thread (the one rebuilding a link).

    Bars the device (new calls wait at a gate, see :meth:`RpmsgDevice.bar`), then waits
    until no other thread is in its code — a thread parked in a wait is woken by the
    caller first, e.g. by hanging up the old doorbell, and leaves with
    :class:`~openamp.errors.PeerGoneError` — and unbars it at the end, whatever
    happened.  Raises :class:`~openamp.errors.OpenAMPTimeoutError` if a thread stays in
    the device for ``timeout`` seconds (a receive callback that never returns, say).
    """
    gate = _Gate()
    dev.bar(gate)
    try:
        deadline = Deadline(timeout)
        while (users := _threads_using(dev)) and not deadline.expired():
            time.sleep(0.001)
        if users:
            raise OpenAMPTimeoutError(
                f"thread(s) {users} stayed in the rpmsg device for {timeout} s; "
                "the link cannot be rebuilt under them"
            )
        yield
    finally:
        dev.unbar()
        gate.open()


def find_vdev(table_io: IoRegion, index: int = 0) -> int:
    """Offset in ``table_io`` of the ``index``-th vdev entry of the table at its start."""
    table = ResourceTable.parse(table_io.mem)
    found = table.find(RSC_VDEV, index)
    if found is None:
        raise ResourceTableError(f"the resource table has no vdev entry #{index}")
    return found[0]


class SharedMemoryMachine:
    """One side of a two-process machine over POSIX shared memory and a UNIX socket.

    ``role``: ``"driver"`` (host) or ``"device"`` (remote).  ``socket``: ``"server"`` or
    ``"client"``; default: the device serves.  ``wait``: how blocked calls wait —
    ``"spin-then-block"`` (default), ``"block"``, ``"spin"`` or ``"poll"``.
    ``capture`` is called with every event of the link (:mod:`openamp.rpmsg.events`),
    e.g. ``openamp.tools.capture.open_capture("run.pcapng")``; ``trace`` is the older
    message-only hook.  The other keywords go to :class:`RpmsgVirtioDevice`.  Use
    :meth:`start` (or ``with``) to connect, and :attr:`rpmsg` to talk.
    """

    survivor_cleans_up = False
    """Whether the client removes the memory when the server died without doing so
    (virtual machines, whose both sides are pyopenamp; not the C Linux machine)."""

    def __init__(
        self,
        *,
        role: Role | RoleName,
        shm_name: str,
        event_path: str,
        socket: SocketRole | None = None,
        layout: MachineLayout = LINUX_GENERIC,
        wait: str = "spin-then-block",
        wait_options: dict[str, Any] | None = None,
        config: RpmsgVirtioConfig | None = None,
        ns_bind_cb: NsCallback | None = None,
        ns_unbind_cb: NsCallback | None = None,
        trace: TraceHook | None = None,
        capture: EventHook | None = None,
    ) -> None:
        self.role = parse_role(role)
        if socket is None:
            socket = "server" if self.role is Role.DEVICE else "client"
        if socket not in ("server", "client"):
            raise UsageError(f"socket must be 'server' or 'client' (got {socket!r})")
        self.socket_role: SocketRole = socket
        self.shm_name = shm_name
        self.event_path = event_path
        self.layout = layout
        self.strategy = wait_strategy(wait, **(wait_options or {}))
        self.config = config
        self._ns_bind_cb = ns_bind_cb
        self._ns_unbind_cb = ns_unbind_cb
        self._trace = trace
        self.capture = capture
        self.shm: SharedMemory | None = None
        self.doorbell: UnixSocketDoorbell | None = None
        self._server: UnixSocketServer | None = None
        self._region: IoRegion | None = None
        self._rpmsg: RpmsgVirtioDevice | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(role={self.role.name.lower()}, socket={self.socket_role}, "
            f"shm={self.shm_name!r}, event={self.event_path!r})"
        )

    @property
    def rpmsg(self) -> RpmsgVirtioDevice:
        """The rpmsg device (after :meth:`start`)."""
        if self._rpmsg is None:
            raise InvalidStateError("the machine is not started; call start() first")
        return self._rpmsg

    def listen(self) -> None:
        """Server only: prepare the memory and the table and start listening.

        :meth:`start` does this itself; call it early when a client process is spawned
        right after, so that the client finds the socket at once.
        """
        if self.socket_role != "server" or self._server is not None:
            return
        # what killed machines left behind (their pids are in their names): see metal.shm
        reap_stale()
        reap_stale_sockets()
        self.shm = SharedMemory.open(self.shm_name, self.layout.shm_size, create=True)
        self._region = self.shm.region(self.layout.phys_base, name=self.shm_name)
        table = self.layout.resource_table().to_bytes()
        self._region.write_block(self.layout.rsc_offset, table)
        self._server = UnixSocketServer(self.event_path)

    def start(self, timeout: float | None = 10.0) -> RpmsgVirtioDevice:
        """Connect to the peer and bring the rpmsg device up.

        ``timeout``: seconds to wait for the peer to connect and, in the device role,
        for the driver's DRIVER_OK (None = forever).  On any failure everything opened
        so far is closed again.
        """
        if self._rpmsg is not None:
            return self._rpmsg
        try:
            if self.socket_role == "server":
                self.listen()
                assert self._server is not None
                self.doorbell = self._server.accept(timeout)
                self._server.close()
                self._server = None
            else:
                self.doorbell = UnixSocketDoorbell.connect(self.event_path, timeout)
                self._check_server_size()
                # the survivor of a killed server removes the memory it left behind; not
                # on the fixed C names, whose C server may still be using them
                self.shm = SharedMemory.open(
                    self.shm_name,
                    self.layout.shm_size,
                    create=False,
                    unlink_when_last=self.survivor_cleans_up,
                )
                self._region = self.shm.region(self.layout.phys_base, name=self.shm_name)
            region = self._region
            assert region is not None and self.doorbell is not None
            doorbell = self.doorbell
            table_io = region.subregion(
                self.layout.rsc_offset, region.size - self.layout.rsc_offset
            )
            transport = RscVdevTransport(
                table_io,
                find_vdev(table_io),
                ring_io=region,
                role=self.role,
                notify=lambda _notifyid: doorbell.kick(),
            )
            self._rpmsg = RpmsgVirtioDevice(
                transport,
                shm=region,
                pool=ShmPool(self.layout.pool_offset, self.layout.pool_size),
                config=self.config,
                waiter=DoorbellWaiter(doorbell, self.strategy),
                ns_bind_cb=self._ns_bind_cb,
                ns_unbind_cb=self._ns_unbind_cb,
                ready_timeout=timeout,
                trace=self._trace,
                capture=self.capture,
            )
        except BaseException:
            self.close()
            raise
        return self._rpmsg

    def _check_server_size(self) -> None:
        """Client: the server's memory must have our layout's size (never grow it)."""
        path = os.path.join(SHM_DIR, self.shm_name)
        try:
            size = os.path.getsize(path)
        except OSError:
            return  # SharedMemory.open says what is missing
        if size != self.layout.shm_size:
            raise UsageError(
                f"the server's memory {path} is {size:#x} bytes, but this side's layout "
                f"needs {self.layout.shm_size:#x}: the two sides use different buffer sizes; "
                "pass the same --buffer-size on both sides"
            )

    def close(self) -> None:
        """Destroy the endpoints (announcing it while the peer listens), disconnect, unmap.

        The socket server also unlinks the shared-memory file.  Idempotent.
        """
        if self._rpmsg is not None:
            with contextlib.suppress(OpenAMPError):
                self._rpmsg.close()
            self._rpmsg = None
        if self._server is not None:
            self._server.close()
            self._server = None
        peer_gone = False
        if self.doorbell is not None:
            peer_gone = self.doorbell.peer_closed()
            self.doorbell.close()
            self.doorbell = None
        self._region = None
        if self.shm is not None:
            self.shm.close()
            if self.socket_role == "server":
                self.shm.unlink()
            elif self.survivor_cleans_up and peer_gone and os.path.exists(self.shm.path):
                # the server died without removing it; the kernel drops a dead process's
                # hold a moment after its socket closed
                unlink_when_unheld(self.shm.path, wait=5.0)
            self.shm = None

    def __enter__(self) -> SharedMemoryMachine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

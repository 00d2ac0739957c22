"""A vhost-user frontend played in Python, as UML's ``virtio_uml`` does it.

:class:`FakeFrontend` connects, negotiates, hands over guest memory (a memfd) and sets
the vrings up.  Unlike UML it places the memory at a guest address that differs from its
user address and at a non-zero file offset, and puts the three parts of each vring
apart, so every translation the backend does is exercised.  :class:`DriverTransport`
lets our own rpmsg driver (``RpmsgVirtioDevice`` in the driver role) play the kernel's
``virtio_rpmsg_bus`` on the frontend's side.  Used by tests/test_vhost_user.py and the
message fuzzer in tests/reliability/test_vhost_fuzz.py.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import socket
from pathlib import Path

from openamp.metal.io import IoRegion
from openamp.platform.vhost_user import VhostUserMachine
from openamp.rpmsg.virtio import RpmsgVirtioDevice, ShmPool
from openamp.vhost.device import VhostUserDevice
from openamp.vhost.wire import (
    FLAG_REPLY,
    HEADER,
    MEMORY_HEADER,
    MEMORY_REGION,
    U64,
    VHOST_USER_F_PROTOCOL_FEATURES,
    VHOST_USER_VERSION,
    VRING_ADDR,
    VRING_STATE,
    ProtocolFeature,
    Request,
)
from openamp.virtio.ring import (
    VIRTIO_CONFIG_STATUS_DRIVER_OK,
    VIRTIO_F_VERSION_1,
    VIRTIO_ID_RPMSG,
    VringLayout,
)
from openamp.virtio.transport import VringInfo
from openamp.virtio.virtqueue import Role

GUEST_BASE = 0x4000_0000
USER_BASE = 0x7F00_0000_0000
FILE_OFFSET = 0x3000  # not a multiple of the mapping granularity on purpose
MEM_SIZE = 0x40000
NUM = 16
# (desc, avail, used) offsets in guest memory: the parts of each ring lie apart
RINGS = [(0x1000, 0x2000, 0x3000), (0x5000, 0x6400, 0x7800)]
POOL = (0x10000, 2 * NUM * 512)
PROTOCOL = 1 << ProtocolFeature.SLAVE_REQ | 1 << ProtocolFeature.CONFIG


class FakeFrontend:
    """The frontend side of vhost-user, as UML's virtio_uml does it (see module doc)."""

    def __init__(self, path: Path) -> None:
        self.memfd = os.memfd_create("openamp-test-guest", os.MFD_CLOEXEC)
        os.ftruncate(self.memfd, FILE_OFFSET + MEM_SIZE)
        self.mapping = mmap.mmap(self.memfd, FILE_OFFSET + MEM_SIZE)
        self.mem = IoRegion(
            self.mapping, offset=FILE_OFFSET, size=MEM_SIZE, phys_base=GUEST_BASE, name="guest"
        )
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5.0)
        self.sock.connect(str(path))
        self.kick = [os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK) for _ in RINGS]
        self.call = [socket.socketpair() for _ in RINGS]
        self.backend_channel = socket.socketpair()
        self.status = 0

    def send(
        self, request: int, payload: bytes = b"", fds: tuple[int, ...] = (), flags: int = 0
    ) -> None:
        data = HEADER.pack(request, VHOST_USER_VERSION | flags, len(payload)) + payload
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        else:
            self.sock.sendall(data)

    def reply(
        self, device: VhostUserDevice, request: int, payload: bytes = b"", flags: int = 0
    ) -> bytes:
        """Send ``request``, let the backend handle it, return the reply's payload."""
        self.send(request, payload, flags=flags)
        device.process(1.0)
        req, flags, size = HEADER.unpack(self.sock.recv(HEADER.size))
        assert (req, flags) == (request, VHOST_USER_VERSION | FLAG_REPLY)
        return self.sock.recv(size) if size else b""

    def negotiate(self, device: VhostUserDevice, protocol: int = PROTOCOL) -> int:
        """UML's vhost_user_init(): owner, features, protocol features, backend channel."""
        self.send(Request.SET_OWNER)
        (features,) = U64.unpack(self.reply(device, Request.GET_FEATURES))
        self.reply(device, Request.GET_PROTOCOL_FEATURES)
        self.send(Request.SET_PROTOCOL_FEATURES, U64.pack(protocol))
        self.send(Request.SET_SLAVE_REQ_FD, fds=(self.backend_channel[1].fileno(),))
        return int(features)

    def set_up_rings(self) -> None:
        """UML's vu_find_vqs(): memory table, then each vring, then kick fds and enable."""
        region = MEMORY_REGION.pack(GUEST_BASE, MEM_SIZE, USER_BASE, FILE_OFFSET)
        self.send(Request.SET_MEM_TABLE, MEMORY_HEADER.pack(1, 0) + region, fds=(self.memfd,))
        for i, (desc, avail, used) in enumerate(RINGS):
            self.send(Request.SET_VRING_CALL, U64.pack(i), fds=(self.call[i][1].fileno(),))
            self.send(Request.SET_VRING_NUM, VRING_STATE.pack(i, NUM))
            self.send(Request.SET_VRING_BASE, VRING_STATE.pack(i, 0))
            addrs = (USER_BASE + desc, USER_BASE + used, USER_BASE + avail)
            self.send(Request.SET_VRING_ADDR, VRING_ADDR.pack(i, 0, *addrs, 0))
        for i in range(len(RINGS)):
            self.send(Request.SET_VRING_KICK, U64.pack(i), fds=(self.kick[i],))
            self.send(Request.SET_VRING_ENABLE, VRING_STATE.pack(i, 1))

    def layout(self, index: int) -> VringLayout:
        desc, avail, used = RINGS[index]
        return VringLayout(NUM, 4096, base=desc, pa=GUEST_BASE + desc, avail_at=avail, used_at=used)

    def calls(self, index: int) -> int:
        """How many 8-byte calls the backend wrote on vring ``index`` (consumed)."""
        end = self.call[index][0]
        end.setblocking(False)
        n = 0
        with contextlib.suppress(BlockingIOError):
            while data := end.recv(4096):
                n += len(data) // 8
        return n

    def close(self) -> None:
        self.sock.close()
        for pair in [*self.call, self.backend_channel]:
            for end in pair:
                end.close()
        for fd in self.kick:
            os.close(fd)
        self.mem.release()
        self.mapping.close()
        os.close(self.memfd)


class DriverTransport:
    """The driver's view (``virtio_uml``'s config ops) for our own rpmsg driver."""

    role = Role.DRIVER
    device_id = VIRTIO_ID_RPMSG
    num_vrings = 2
    notifyid = 0x100

    def __init__(self, fe: FakeFrontend, offered: int) -> None:
        self.fe = fe
        self.offered = offered & ~(1 << VHOST_USER_F_PROTOCOL_FEATURES)
        self.accepted = 0

    def get_status(self) -> int:
        return self.fe.status

    def set_status(self, status: int) -> None:
        self.fe.status = status
        if status & VIRTIO_CONFIG_STATUS_DRIVER_OK:
            self.notify(0)  # Linux kicks the receive ring right after DRIVER_OK

    def device_features(self) -> int:
        return self.offered

    def driver_features(self) -> int:
        return self.accepted

    def set_driver_features(self, features: int) -> None:
        self.accepted = features | 1 << VIRTIO_F_VERSION_1
        self.fe.send(
            Request.SET_FEATURES, U64.pack(self.accepted | 1 << VHOST_USER_F_PROTOCOL_FEATURES)
        )
        self.fe.set_up_rings()  # virtio core: finalize features, then find_vqs()

    def vring(self, index: int) -> VringInfo:
        return VringInfo(index, self.fe.mem, self.fe.layout(index), index)

    def notify(self, notifyid: int) -> None:
        os.eventfd_write(self.fe.kick[notifyid], 1)


def start_pair(sock_path: Path) -> tuple[VhostUserMachine, FakeFrontend, RpmsgVirtioDevice]:
    """A machine and a frontend whose driver (our rpmsg driver) has set everything up."""
    machine = VhostUserMachine(sock_path, wait="block")
    fe = FakeFrontend(sock_path)
    machine.device.accept(1.0)
    offered = fe.negotiate(machine.device)
    driver = RpmsgVirtioDevice(
        DriverTransport(fe, offered), shm=fe.mem, pool=ShmPool(*POOL), ready_timeout=0
    )
    return machine, fe, driver

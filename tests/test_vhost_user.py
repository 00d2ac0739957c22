"""The vhost-user backend against a frontend played by this test (no kernel needed).

:class:`FakeFrontend` does what UML's ``virtio_uml`` does: it connects, negotiates,
hands over guest memory (a memfd) and sets the vrings up.  Unlike UML it places the
memory at a guest address that differs from its user address and at a non-zero file
offset, and puts the three parts of each vring apart, so every translation the backend
does is exercised.  Our own rpmsg driver (``RpmsgVirtioDevice`` in the driver role)
plays the kernel's ``virtio_rpmsg_bus`` on the frontend's side.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from openamp.errors import (
    InvalidStateError,
    OpenAMPTimeoutError,
    PeerGoneError,
    UsageError,
)
from openamp.metal.io import IoRegion
from openamp.metal.shm import unique_name
from openamp.platform.vhost_user import VhostUserMachine
from openamp.rpmsg.virtio import RpmsgVirtioDevice, ShmPool
from openamp.services.echo import EchoService
from openamp.vhost.device import VhostUserDevice
from openamp.vhost.wire import (
    CONFIG_HEADER,
    FLAG_NEED_REPLY,
    FLAG_REPLY,
    HEADER,
    MEMORY_HEADER,
    MEMORY_REGION,
    RPMSG_DEVICE_FEATURES,
    U64,
    VHOST_USER_F_PROTOCOL_FEATURES,
    VHOST_USER_VERSION,
    VRING_ADDR,
    VRING_STATE,
    ProtocolFeature,
    Request,
    VhostUserError,
    VringStoppedError,
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


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[Path]:
    path = Path("/tmp") / f"{unique_name('openamp-vu')}.sock"
    yield path
    assert not path.exists(), "the backend left its socket behind"


@pytest.fixture
def device(sock_path: Path) -> Iterator[VhostUserDevice]:
    dev = VhostUserDevice(sock_path, config=b"\x01\x02\x03\x04")
    yield dev
    dev.close()


@pytest.fixture
def frontend(device: VhostUserDevice, sock_path: Path) -> Iterator[FakeFrontend]:
    fe = FakeFrontend(sock_path)
    device.accept(1.0)
    yield fe
    fe.close()


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


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


# -- the whole path ----------------------------------------------------------------------------


def test_our_driver_and_the_backend_exchange_byte_exact_messages(sock_path: Path) -> None:
    machine, fe, driver = start_pair(sock_path)
    try:
        remote = machine.start(timeout=2.0)
        service = EchoService(remote, "rpmsg-raw")  # announces itself
        assert fe.calls(0) >= 1  # the announcement came with a call on vring 0
        driver.poll()
        assert driver.services == {"rpmsg-raw": service.endpoint.addr}
        ept = driver.endpoint("rpmsg-raw", timeout=0)
        for n in (0, 1, 17, 255, 496):
            data = bytes((7 * k + n) & 0xFF for k in range(n))
            ept.send(data, timeout=0)
            remote.poll()  # the echo goes out at once
            driver.poll()
            assert ept.recv(timeout=0) == data
        assert service.stats.messages == 5
    finally:
        driver.close()
        machine.close()
        fe.close()


def test_the_backend_translates_guest_and_user_addresses(sock_path: Path) -> None:
    machine, fe, driver = start_pair(sock_path)
    try:
        dev = machine.device
        machine.start(timeout=2.0)
        region = dev.guest_memory
        assert (region.phys_base, region.size) == (GUEST_BASE, MEM_SIZE)
        info = dev.vring(1)
        desc, avail, used = RINGS[1]
        assert (info.layout.desc, info.layout.avail, info.layout.used) == (desc, avail, used)
        assert info.layout.pa == GUEST_BASE + desc and info.notifyid == 1
        # the same bytes, seen through the frontend's mapping and ours
        fe.mem.write32(0x20000, 0xDEADBEEF)
        assert region.read32(0x20000) == 0xDEADBEEF
        # descriptors carry guest-physical buffer addresses, which the backend maps
        (addr,) = struct.unpack_from("<Q", fe.mem.view(RINGS[0][0], 8))
        assert addr == GUEST_BASE + POOL[0]
        assert region.read32(POOL[0]) == fe.mem.read32(POOL[0])
    finally:
        driver.close()
        machine.close()
        fe.close()


# -- protocol details --------------------------------------------------------------------------


def test_the_backend_offers_rpmsg_features_and_protocol_features(
    device: VhostUserDevice, frontend: FakeFrontend
) -> None:
    (features,) = U64.unpack(frontend.reply(device, Request.GET_FEATURES))
    assert features == RPMSG_DEVICE_FEATURES | 1 << VHOST_USER_F_PROTOCOL_FEATURES
    (protocol,) = U64.unpack(frontend.reply(device, Request.GET_PROTOCOL_FEATURES))
    assert protocol & 1 << ProtocolFeature.SLAVE_REQ  # UML's probe needs it
    assert U64.unpack(frontend.reply(device, Request.GET_QUEUE_NUM)) == (2,)


def test_config_space_reads_and_writes(device: VhostUserDevice, frontend: FakeFrontend) -> None:
    frontend.send(Request.SET_PROTOCOL_FEATURES, U64.pack(PROTOCOL))
    got = frontend.reply(device, Request.GET_CONFIG, CONFIG_HEADER.pack(0, 6, 0) + bytes(6))
    assert got == CONFIG_HEADER.pack(0, 6, 0) + b"\x01\x02\x03\x04\x00\x00"
    frontend.send(Request.SET_CONFIG, CONFIG_HEADER.pack(1, 2, 0) + b"\xaa\xbb")
    device.process(1.0)
    assert device.config == bytearray(b"\x01\xaa\xbb\x04")
    # outside the config space: an empty reply is how the protocol says "error"
    assert frontend.reply(device, Request.GET_CONFIG, CONFIG_HEADER.pack(250, 16, 0)) == b""


def test_reply_ack_acknowledges_requests_and_reports_failures(
    device: VhostUserDevice, frontend: FakeFrontend
) -> None:
    ok, failed = U64.pack(0), U64.pack(1)
    ack = U64.pack(1 << ProtocolFeature.REPLY_ACK)
    assert frontend.reply(device, Request.SET_PROTOCOL_FEATURES, ack, FLAG_NEED_REPLY) == ok
    assert frontend.reply(device, Request.SET_OWNER, flags=FLAG_NEED_REPLY) == ok
    bad = VRING_STATE.pack(7, NUM)  # there is no vring 7
    assert frontend.reply(device, Request.SET_VRING_NUM, bad, flags=FLAG_NEED_REPLY) == failed
    assert frontend.reply(device, 99, flags=FLAG_NEED_REPLY) == failed  # unknown request


def test_without_reply_ack_a_bad_message_is_a_protocol_error(
    device: VhostUserDevice, frontend: FakeFrontend
) -> None:
    frontend.send(Request.SET_VRING_NUM, VRING_STATE.pack(0, 3))  # not a power of two
    with pytest.raises(VhostUserError, match="power of two"):
        device.process(1.0)
    frontend.send(Request.SET_VRING_ADDR, b"\0" * 8)  # truncated payload
    with pytest.raises(VhostUserError, match="need at least 40"):
        device.process(1.0)


def test_a_memory_region_beyond_its_file_is_refused(
    device: VhostUserDevice, frontend: FakeFrontend
) -> None:
    region = MEMORY_REGION.pack(GUEST_BASE, MEM_SIZE * 2, USER_BASE, FILE_OFFSET)
    frontend.send(Request.SET_MEM_TABLE, MEMORY_HEADER.pack(1, 0) + region, fds=(frontend.memfd,))
    with pytest.raises(VhostUserError, match="beyond the end"):
        device.process(1.0)


def test_with_the_status_feature_the_drivers_status_byte_counts(
    device: VhostUserDevice, frontend: FakeFrontend
) -> None:
    status = 1 << ProtocolFeature.STATUS
    frontend.send(Request.SET_PROTOCOL_FEATURES, U64.pack(PROTOCOL | status))
    frontend.send(Request.SET_STATUS, U64.pack(0x0B))
    device.process(1.0)
    assert U64.unpack(frontend.reply(device, Request.GET_STATUS)) == (0x0B,)
    frontend.send(Request.SET_STATUS, U64.pack(0x0F))  # DRIVER_OK, but no rings yet
    device.process(1.0)
    assert device.get_status() == 0x0B


def test_driver_ok_needs_the_first_kick(sock_path: Path) -> None:
    """The rings are enabled before Linux posts its buffers and registers its name
    service; only the kick after DRIVER_OK says the driver is ready."""
    dev = VhostUserDevice(sock_path)
    fe = FakeFrontend(sock_path)
    try:
        dev.accept(1.0)
        fe.negotiate(dev)
        fe.send(Request.SET_FEATURES, U64.pack(RPMSG_DEVICE_FEATURES))
        fe.set_up_rings()
        dev.process(1.0)
        assert not dev.driver_ok()
        os.eventfd_write(fe.kick[0], 1)
        dev.wait_ready(1.0)
        assert dev.driver_ok()
    finally:
        dev.close()
        fe.close()


# -- the end of a session ---------------------------------------------------------------------


def test_disabling_a_ring_stops_the_device_and_fences_the_rpmsg_device(sock_path: Path) -> None:
    machine, fe, driver = start_pair(sock_path)
    try:
        remote = machine.start(timeout=2.0)
        ept = remote.create_endpoint("rpmsg-raw")
        # UML's vu_del_vqs(): disable both rings (reverse order), then GET_FEATURES
        fe.send(Request.SET_VRING_ENABLE, VRING_STATE.pack(1, 0))
        fe.send(Request.SET_VRING_ENABLE, VRING_STATE.pack(0, 0))
        assert U64.unpack(fe.reply(machine.device, Request.GET_FEATURES))
        assert machine.device.stopped == "the driver disabled vring 1"
        assert isinstance(remote.tx_queue.broken, VringStoppedError)
        with pytest.raises(PeerGoneError):
            ept.sendto(b"too late", 0x400)  # nothing is written into the guest any more
        with pytest.raises(PeerGoneError):
            remote.wait_until(lambda: False, 1.0)
        assert machine.device.get_status() == 0
    finally:
        driver.close()
        machine.close()
        fe.close()


def test_get_vring_base_stops_the_ring_and_reports_the_used_index(sock_path: Path) -> None:
    machine, fe, driver = start_pair(sock_path)
    try:
        remote = machine.start(timeout=2.0)
        remote.create_endpoint("rpmsg-raw")  # one announcement: used.idx of vring 0 is 1
        state = fe.reply(machine.device, Request.GET_VRING_BASE, VRING_STATE.pack(0, 0))
        assert VRING_STATE.unpack(state) == (0, 1)
        assert machine.device.stopped == "the frontend stopped vring 0"
    finally:
        driver.close()
        machine.close()
        fe.close()


def test_a_frontend_that_disconnects_ends_serving(sock_path: Path) -> None:
    machine, fe, driver = start_pair(sock_path)
    try:
        machine.start(timeout=2.0)
        fe.sock.close()
        assert "disconnected" in machine.serve(timeout=2.0)
        assert machine.device.disconnected
    finally:
        driver.close()
        machine.close()
        fe.close()


def test_close_leaves_no_socket_descriptor_or_mapping_behind(sock_path: Path) -> None:
    before = open_fds()
    machine, fe, driver = start_pair(sock_path)
    assert not sock_path.exists()  # unlinked once the frontend connected
    machine.start(timeout=2.0)
    driver.close()
    fe.close()
    machine.close()
    machine.close()  # idempotent
    assert open_fds() == before
    maps = Path("/proc/self/maps").read_text()
    assert "openamp-test-guest" not in maps


# -- local misuse -----------------------------------------------------------------------------


def test_a_file_at_the_socket_path_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "not-a-socket"
    path.write_text("keep me")
    with pytest.raises(UsageError, match="not a socket"):
        VhostUserDevice(path)
    assert path.read_text() == "keep me"


def test_a_stale_socket_is_replaced_and_removed_on_close(sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))
    stale.close()
    with VhostUserDevice(sock_path):
        assert sock_path.exists()
    assert not sock_path.exists()


def test_accept_times_out_when_no_frontend_comes(sock_path: Path) -> None:
    with VhostUserDevice(sock_path) as dev, pytest.raises(OpenAMPTimeoutError, match="no vhost"):
        dev.accept(0.05)


def test_the_device_side_refuses_driver_operations(device: VhostUserDevice) -> None:
    with pytest.raises(UsageError):
        device.set_driver_features(1)
    with pytest.raises(InvalidStateError):
        device.vring(0)
    with pytest.raises(InvalidStateError):
        _ = device.guest_memory
    with pytest.raises(UsageError):
        VhostUserDevice("/tmp/unused.sock", device_features=1 << VHOST_USER_F_PROTOCOL_FEATURES)

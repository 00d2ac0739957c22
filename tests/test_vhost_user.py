"""The vhost-user backend against a frontend played by this test (no kernel needed).

The frontend is :class:`vhost_frontend.FakeFrontend` (UML's ``virtio_uml`` in Python,
with our own rpmsg driver behind it); the randomized hostile frontend is
tests/reliability/test_vhost_fuzz.py.
"""

from __future__ import annotations

import fcntl
import os
import select
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
from openamp.metal.shm import unique_name
from openamp.services.echo import EchoService
from openamp.vhost.device import VhostUserDevice, _memory_fd
from openamp.vhost.wire import (
    CONFIG_HEADER,
    FLAG_NEED_REPLY,
    MEMORY_HEADER,
    MEMORY_REGION,
    RPMSG_DEVICE_FEATURES,
    U64,
    VHOST_USER_F_PROTOCOL_FEATURES,
    VRING_STATE,
    ProtocolFeature,
    Request,
    VhostUserError,
    VringStoppedError,
)
from vhost_frontend import (
    FILE_OFFSET,
    GUEST_BASE,
    MEM_SIZE,
    NUM,
    POOL,
    PROTOCOL,
    RINGS,
    USER_BASE,
    FakeFrontend,
    start_pair,
)


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


# -- what a hostile frontend passes (issue 11: family 1 and 2) ------------------------------


def _bad_descriptor(kind: str, tmp_path: Path) -> int:
    if kind == "regular file":
        return os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    if kind == "/dev/null":
        return os.open("/dev/null", os.O_RDWR)
    if kind == "directory":
        return os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    if kind == "O_PATH":
        (tmp_path / "p").write_bytes(b"")
        return os.open(tmp_path / "p", os.O_PATH)
    assert kind == "epoll"
    ep = select.epoll()
    fd = os.dup(ep.fileno())
    ep.close()
    return fd


@pytest.mark.parametrize("request_", [Request.SET_VRING_KICK, Request.SET_VRING_CALL])
@pytest.mark.parametrize("kind", ["regular file", "/dev/null", "directory", "O_PATH", "epoll"])
def test_a_vring_descriptor_that_is_no_eventfd_pipe_or_socket_is_refused(
    device: VhostUserDevice, frontend: FakeFrontend, tmp_path: Path, request_: int, kind: str
) -> None:
    before = open_fds()
    fd = _bad_descriptor(kind, tmp_path)
    try:
        frontend.send(request_, U64.pack(0), fds=(fd,))
        with pytest.raises(VhostUserError, match=f"{Request(request_).name} for vring 0: "):
            device.process(1.0)
    finally:
        os.close(fd)
    assert open_fds() == before  # the descriptor that came with it was closed
    assert device.vrings[0].kick_fd is None and device.vrings[0].call_fd is None


def test_a_memory_table_with_a_descriptor_that_is_no_memory_file_is_refused(
    device: VhostUserDevice, frontend: FakeFrontend, tmp_path: Path
) -> None:
    fd = _bad_descriptor("directory", tmp_path)
    try:
        region = MEMORY_REGION.pack(GUEST_BASE, MEM_SIZE, USER_BASE, 0)
        frontend.send(Request.SET_MEM_TABLE, MEMORY_HEADER.pack(1, 0) + region, fds=(fd,))
        with pytest.raises(VhostUserError, match=r"must be a memory file .* not a directory"):
            device.process(1.0)
    finally:
        os.close(fd)


def test_a_memory_file_sealed_against_shrinking_is_not_watched() -> None:
    fd = os.memfd_create("sealed", os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, 4096)
        assert _memory_fd(fd, "test")[1] is False
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
        assert _memory_fd(fd, "test")[1] is True
    finally:
        os.close(fd)


def test_a_memory_file_shrunk_under_a_running_link_ends_the_session_typed(
    sock_path: Path,
) -> None:
    machine, fe, driver = start_pair(sock_path)
    try:
        remote = machine.start(timeout=2.0)
        ept = remote.create_endpoint("rpmsg-raw")
        os.ftruncate(fe.memfd, FILE_OFFSET)  # every page of the guest memory is gone
        os.eventfd_write(fe.kick[0], 1)
        with pytest.raises(VhostUserError, match="shrank the memory file"):
            machine.serve(timeout=2.0)
        assert "shrank" in machine.device.stopped
        with pytest.raises(PeerGoneError):
            ept.sendto(b"after", 0x400)  # nothing more is written into that memory
        machine.close()  # no goodbye into memory that is not there: no SIGBUS
    finally:
        os.ftruncate(fe.memfd, FILE_OFFSET + MEM_SIZE)
        driver.close()
        machine.close()
        fe.close()

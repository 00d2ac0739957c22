"""The C echo firmware (``tests/firmware/echo_fw.c``) against our Python driver.

The firmware is an independent C implementation of the virtio device role and rpmsg,
so these tests cross-check our wire format.  Each test boots it by hand, doing what the
remoteproc process driver will do (see ``tests/firmware/README.md``): create the shared
memory, write the ELF's ``.resource_table`` at its device address, listen on a UNIX
socket, start the firmware with the ``OPENAMP_*`` environment, accept its connection,
then bring up our rpmsg driver on the table's vdev.
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

import firmware_build
from firmware_build import FIRMWARE_LAYOUT, build_echo_firmware
from openamp.metal import (
    SharedMemory,
    UnixSocketDoorbell,
    UnixSocketServer,
    unique_name,
    wait_strategy,
)
from openamp.metal.wait import DoorbellWaiter
from openamp.remoteproc.rsc_table import (
    RSC_VDEV,
    Carveout,
    ResourceTable,
    Trace,
    Vdev,
    VdevVring,
)
from openamp.remoteproc.virtio import RscVdevTransport
from openamp.rpmsg.virtio import MessageEvent, RpmsgVirtioDevice, ShmPool
from openamp.rpmsg.wire import RPMSG_HDR, RPMSG_NS_EPT_ADDR, SHUTDOWN_MSG
from openamp.services.echo import ECHO_SERVICE, run_ping
from openamp.virtio.ring import DESC, USED_ELEM, VringLayout
from openamp.virtio.virtqueue import Role

L = FIRMWARE_LAYOUT
SHM_SIZE = L["shm_size"]
RSC_DA = L["rsc_da"]
ECHO_ADDR = L["echo_addr"]
BOOT_LINE = f"echo_fw: booted, table at {RSC_DA:#x}"


@pytest.fixture(scope="session")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_echo_firmware(tmp_path_factory.mktemp("firmware"))


@pytest.fixture(scope="session")
def table_bytes(firmware: Path) -> bytes:
    addr, data = resource_table_section(firmware)
    assert addr == RSC_DA
    return data


def resource_table_section(path: Path) -> tuple[int, bytes]:
    """``(sh_addr, contents)`` of the ELF's ``.resource_table`` section."""
    with open(path, "rb") as f:
        section = ELFFile(f).get_section_by_name(".resource_table")
        assert section is not None, f"{path} has no .resource_table section"
        return section["sh_addr"], section.data()


def firmware_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAMP_")}
    env.update(values)
    return env


class Remote:
    """One boot of the firmware, done by hand as the process driver will do it."""

    def __init__(self, firmware: Path, table: bytes) -> None:
        self.name = unique_name("openamp-fwtest")
        self.event_path = f"/tmp/{self.name}.event"
        self.shm: SharedMemory | None = None
        self.server: UnixSocketServer | None = None
        self.doorbell: UnixSocketDoorbell | None = None
        self.device: RpmsgVirtioDevice | None = None
        self.proc: subprocess.Popen[str] | None = None
        self.events: list[MessageEvent] = []
        self.table_size = len(table)
        try:
            self.shm = SharedMemory.open(f"{self.name}.shm", SHM_SIZE, unlink_on_close=True)
            self.region = self.shm.region()
            self.region.write_block(RSC_DA, table)
            self.server = UnixSocketServer(self.event_path)
            env = firmware_env(
                OPENAMP_SHM=self.shm.path,
                OPENAMP_SHM_SIZE=str(SHM_SIZE),
                OPENAMP_EVENT=self.event_path,
                OPENAMP_RSC_DA=hex(RSC_DA),
            )
            self.proc = subprocess.Popen(
                [str(firmware)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        except BaseException:
            self.close()
            raise

    def accept(self) -> UnixSocketDoorbell:
        assert self.server is not None
        self.doorbell = self.server.accept(5.0)
        return self.doorbell

    def start_host(self) -> RpmsgVirtioDevice:
        """Accept the firmware's connection and bring up our rpmsg driver."""
        doorbell = self.accept()
        table = ResourceTable.parse(self.region.read_block(RSC_DA, self.table_size))
        found = table.find(RSC_VDEV)
        assert found is not None
        transport = RscVdevTransport(
            self.region.subregion(RSC_DA, self.table_size),
            found[0],
            ring_io=self.region,
            role=Role.DRIVER,
            notify=lambda _notifyid: doorbell.kick(),
        )
        self.device = RpmsgVirtioDevice(
            transport,
            shm=self.region,
            pool=ShmPool(L["pool_base"], L["pool_size"]),
            waiter=DoorbellWaiter(doorbell, wait_strategy("block")),
            trace=self.events.append,
        )
        return self.device

    def trace(self) -> str:
        """The firmware's trace buffer, up to its NUL."""
        raw = self.region.read_block(L["trace_da"], L["trace_len"])
        return raw.split(b"\0", 1)[0].decode("ascii", errors="replace")

    def wait(self, timeout: float = 5.0) -> tuple[int, str, str]:
        """Wait for the firmware to exit: (exit code, stdout, stderr)."""
        assert self.proc is not None
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.communicate()
        self.device = None  # drops the rings' views of the mapping
        if self.doorbell is not None:
            self.doorbell.close()
        if self.server is not None:
            self.server.close()  # removes the socket path if nobody connected
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.event_path)
        if self.shm is not None:
            self.__dict__.pop("region", None)
            gc.collect()
            self.shm.close()  # and unlinks it


@pytest.fixture
def boot(firmware: Path, table_bytes: bytes) -> Iterator[Callable[..., Remote]]:
    """``boot(table=None)`` starts the firmware; everything is cleaned up at test end."""
    remotes: list[Remote] = []

    def start(table: bytes | None = None) -> Remote:
        remote = Remote(firmware, table_bytes if table is None else table)
        remotes.append(remote)
        return remote

    try:
        yield start
    finally:
        for remote in remotes:
            remote.close()


def vring_layout(vring: int) -> VringLayout:
    """Where vring 0 or 1 lies in the memory file (device address == offset)."""
    da, align, num, _ = L["vrings"][vring]
    return VringLayout(num, align, base=da, pa=da)


def used_elements(remote: Remote, vring: int) -> list[tuple[int, int]]:
    """``(id, len)`` of every element the firmware has put into a vring's used ring."""
    layout = vring_layout(vring)
    num = layout.num
    used_idx = remote.region.read16(layout.used_idx)
    return [
        USED_ELEM.unpack_from(remote.region.mem, layout.used_ring + 8 * (i % num))
        for i in range(min(used_idx, num))
    ]


# -- the image -----------------------------------------------------------------------------


def test_the_resource_table_has_its_own_segment_at_0x70000(firmware: Path) -> None:
    with open(firmware, "rb") as f:
        elf = ELFFile(f)
        assert elf["e_type"] == "ET_EXEC"
        assert elf["e_machine"] == "EM_X86_64"
        section = elf.get_section_by_name(".resource_table")
        assert section["sh_addr"] == RSC_DA
        loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        inside = [s for s in loads if s["p_paddr"] < SHM_SIZE]
        assert len(inside) == 1, "only the resource table may be loaded into the memory file"
        (segment,) = inside
        assert segment.section_in_segment(section)
        assert segment["p_paddr"] == segment["p_vaddr"] == RSC_DA
        assert segment["p_filesz"] == section["sh_size"]
        assert RSC_DA + segment["p_memsz"] <= SHM_SIZE
        assert [s["p_vaddr"] for s in loads] == sorted(s["p_vaddr"] for s in loads)
    # a second build request in the same session reuses the first build
    assert build_echo_firmware(firmware.parent / "again") == firmware


def test_build_failures_raise_instead_of_skipping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.c"
    broken.write_text("int main(void) { return undeclared_thing; }\n")
    monkeypatch.setattr(firmware_build, "SOURCE", broken)
    with pytest.raises(RuntimeError, match="undeclared_thing"):
        build_echo_firmware(tmp_path / "out")
    monkeypatch.setattr(firmware_build.shutil, "which", lambda _name: None)
    with pytest.raises(RuntimeError, match="gcc is not installed"):
        build_echo_firmware(tmp_path / "out")


def test_the_resource_table_is_what_the_contract_says(table_bytes: bytes) -> None:
    vrings = [VdevVring(da, align, num, nid) for da, align, num, nid in L["vrings"]]
    expected = ResourceTable(
        [
            Carveout(L["pool_base"], L["pool_base"], L["pool_size"], name="vdev0buffer"),
            Trace(L["trace_da"], L["trace_len"], name="trace0"),
            Vdev(7, L["vdev_notifyid"], L["dfeatures"], vrings=vrings),
        ]
    )
    assert ResourceTable.parse(table_bytes) == expected
    assert table_bytes == expected.to_bytes()  # C struct layout == our builder, byte for byte
    assert ResourceTable.parse(table_bytes).check() == []


# -- talking to it -------------------------------------------------------------------------


def test_480_pings_of_every_size_then_the_destroy_stops_it(boot: Callable[..., Remote]) -> None:
    remote = boot()
    device = remote.start_host()
    assert device.tx_capacity == 496
    # run_ping's endpoint must exist before the announcement is processed: it is bound
    # by the announcement (a service already seen by wait_service() would not bind it).
    result = run_ping(device, count=480)  # data sizes 1..480: messages of 17..496 bytes
    assert result.ok, result.problems
    assert (result.sent, result.received, result.errors) == (480, 480, 0)
    assert result.remote_addr == ECHO_ADDR
    assert device.services == {ECHO_SERVICE: ECHO_ADDR}  # the firmware's announcement
    sizes = {e.length for e in remote.events if e.direction == "rx" and e.src == ECHO_ADDR}
    assert {16 + n for n in range(1, 481)} <= sizes
    # run_ping destroyed its endpoint at the end: the NS destroy stops the firmware
    code, out, err = remote.wait()
    assert code == 0, err
    assert "echoed 480 messages, exiting: the host destroyed its endpoint" in out
    trace = remote.trace()
    assert trace.startswith(BOOT_LINE + "\n")
    assert "echo_fw: DRIVER_OK seen, features 0x1\n" in trace
    assert trace.endswith(
        "echo_fw: echoed 480 messages, exiting: the host destroyed its endpoint\n"
    )


def test_the_announcement_and_binary_payloads_are_byte_exact(
    boot: Callable[..., Remote],
) -> None:
    remote = boot()
    device = remote.start_host()
    assert device.wait_service(ECHO_SERVICE, timeout=5.0) == ECHO_ADDR
    assert BOOT_LINE in remote.trace()

    # The announcement, as the firmware wrote it into our first receive buffer.
    pool = L["pool_base"]
    src, dst, _reserved, length, flags = RPMSG_HDR.unpack_from(remote.region.mem, pool)
    assert (src, dst, length, flags) == (ECHO_ADDR, RPMSG_NS_EPT_ADDR, 40, 0)
    name = ECHO_SERVICE.encode().ljust(32, b"\0")  # zero-padded, no stack garbage
    assert remote.region.read_block(pool + 16, 40) == name + struct.pack("<II", ECHO_ADDR, 0)
    assert used_elements(remote, 0) == [(0, 512)]  # used len = desc.len, not message len
    # vring 0: the firmware asked not to be kicked for returned buffers, as C does
    assert remote.region.read16(vring_layout(0).used_flags) == 1

    ept = device.endpoint(ECHO_SERVICE)  # bound to 0x400, no announcement of ours
    rng = random.Random(1234)
    payloads = [
        b"",
        b"\0",
        b"\0" * 496,
        bytes(range(256)) + bytes(range(240)),
        b"\xff" * 17,
        struct.pack("<I", SHUTDOWN_MSG)[:3],  # too short to be the shutdown message
        struct.pack("<II", 0x5AA556EF, SHUTDOWN_MSG),  # shutdown magic, but not first
        *(rng.randbytes(n) for n in (1, 2, 3, 15, 16, 17, 31, 255, 256, 495)),
    ]
    for payload in payloads:
        ept.send(payload)
        assert ept.recv_from(timeout=5.0) == (payload, ECHO_ADDR)

    # Three buffers reserved before any is sent get three different descriptors; the
    # firmware writes each one's descriptor head into its header's reserved field.
    trio = [b"first", b"second", b"third"]
    reserved = [ept.get_tx_buffer() for _ in trio]
    offsets = [buf.offset for buf in reserved]
    for buf, payload in zip(reserved, trio):
        buf.data[: len(payload)] = payload
        buf.send(len(payload))
    assert [ept.recv(timeout=5.0) for _ in trio] == trio
    layout = vring_layout(1)
    num = layout.num
    avail_idx = remote.region.read16(layout.avail_idx)
    heads = [
        remote.region.read16(layout.avail_ring + 2 * ((avail_idx - i) % num)) for i in (3, 2, 1)
    ]
    assert len(set(heads)) == 3
    for head, offset in zip(heads, offsets):
        assert DESC.unpack_from(remote.region.mem, layout.desc + 16 * head)[0] == offset
        assert remote.region.read32(offset + 8) == head

    ept.sendto(b"nobody lives here", 0x401)  # dropped by the firmware
    burst = [rng.randbytes(rng.randrange(0, 497)) for _ in range(64)]
    for payload in burst:  # 64 messages in flight before the first echo is read
        ept.send(payload)
    assert [ept.recv(timeout=5.0) for _ in burst] == burst

    # Every echo was a well-formed rpmsg message in a whole 512-byte buffer.
    echoes = [e for e in remote.events if e.direction == "rx" and e.dst == ept.addr]
    n = len(payloads) + len(trio) + len(burst)
    assert len(echoes) == n
    assert {(e.src, e.flags, e.buflen) for e in echoes} == {(ECHO_ADDR, 0, 512)}
    assert {length for _id, length in used_elements(remote, 0)} == {512}
    assert {length for _id, length in used_elements(remote, 1)} == {512}

    ept.destroy()  # announces the destroy: the firmware stops
    code, out, _ = remote.wait()
    assert code == 0
    assert f"echoed {n} messages, exiting: the host destroyed its endpoint" in out
    assert remote.trace().endswith(
        f"echo_fw: echoed {n} messages, exiting: the host destroyed its endpoint\n"
    )


def test_with_no_free_receive_buffer_of_ours_it_asks_for_a_kick_and_waits(
    boot: Callable[..., Remote],
) -> None:
    remote = boot()
    device = remote.start_host()
    ept = device.endpoint(ECHO_SERVICE, timeout=5.0)
    used_flags = vring_layout(0).used_flags
    assert remote.region.read16(used_flags) == 1  # VRING_USED_F_NO_NOTIFY, as C sets it
    # We do not process echoes while sending, so the firmware uses up our 256 receive
    # buffers; it then clears NO_NOTIFY so that re-posting buffers kicks it.
    messages = [struct.pack("<I", i) * 4 for i in range(300)]
    for message in messages:
        ept.send(message)
    deadline = time.monotonic() + 5.0
    while remote.region.read16(used_flags) != 0:
        assert time.monotonic() < deadline, "the firmware never asked for a kick"
        time.sleep(0.001)
    assert [ept.recv(timeout=5.0) for _ in messages] == messages
    assert remote.region.read16(used_flags) == 1  # set again once it had a buffer
    assert remote.proc is not None and remote.proc.poll() is None


def test_the_shutdown_message_stops_it_without_an_echo(boot: Callable[..., Remote]) -> None:
    remote = boot()
    device = remote.start_host()
    ept = device.endpoint(ECHO_SERVICE, timeout=5.0)
    ept.send(b"before")
    assert ept.recv(timeout=5.0) == b"before"
    ept.send(struct.pack("<I", SHUTDOWN_MSG) + b"trailing bytes")
    code, out, _ = remote.wait()
    assert code == 0
    assert "echoed 1 messages, exiting: shutdown message" in out
    device.poll()
    assert ept.pending == 0  # nothing came back
    assert remote.trace().endswith("echo_fw: echoed 1 messages, exiting: shutdown message\n")


def test_it_exits_when_the_host_goes_away(boot: Callable[..., Remote]) -> None:
    remote = boot()
    device = remote.start_host()
    device.wait_service(ECHO_SERVICE, timeout=5.0)  # so it is in its main loop
    assert remote.doorbell is not None
    start = time.monotonic()
    remote.doorbell.close()
    code, out, _ = remote.wait(timeout=2.0)
    assert time.monotonic() - start < 2.0
    assert code == 0
    assert "exiting: the host disconnected" in out
    assert remote.trace().endswith("exiting: the host disconnected\n")


def test_it_exits_when_the_host_goes_away_before_driver_ok(
    boot: Callable[..., Remote],
) -> None:
    remote = boot()
    remote.accept().close()
    code, out, _ = remote.wait(timeout=2.0)
    assert code == 0
    assert "echoed 0 messages, exiting: the host disconnected" in out
    assert "DRIVER_OK" not in remote.trace()


# -- refusing to start ---------------------------------------------------------------------


def test_a_table_of_version_2_makes_it_exit_3(
    boot: Callable[..., Remote], table_bytes: bytes
) -> None:
    remote = boot(table=struct.pack("<I", 2) + table_bytes[4:])
    code, _, err = remote.wait()
    assert code == 3
    assert f"bad resource table at {RSC_DA:#x}: version 2 (expected 1)" in err
    assert remote.trace() == (
        f"{BOOT_LINE}\necho_fw: echoed 0 messages, exiting: "
        f"bad resource table at {RSC_DA:#x}: version 2 (expected 1)\n"
    )


@pytest.mark.parametrize(
    ("drop", "override", "complaint"),
    [
        ("OPENAMP_SHM", {}, "OPENAMP_SHM (path of the shared-memory file) is not set"),
        ("OPENAMP_EVENT", {}, "OPENAMP_EVENT=(unset) is not a UNIX socket path"),
        ("", {"OPENAMP_SHM_SIZE": "512k"}, "OPENAMP_SHM_SIZE=512k is not a byte count"),
        ("", {"OPENAMP_RSC_DA": "0x80000"}, "OPENAMP_RSC_DA=0x80000 is not an address inside"),
        ("", {"OPENAMP_SHM": "/nonexistent/openamp.shm"}, "cannot open OPENAMP_SHM="),
    ],
)
def test_missing_or_invalid_environment_makes_it_exit_2(
    firmware: Path, tmp_path: Path, drop: str, override: dict[str, str], complaint: str
) -> None:
    shm = tmp_path / "memory"
    shm.write_bytes(bytes(SHM_SIZE))
    values = {
        "OPENAMP_SHM": str(shm),
        "OPENAMP_SHM_SIZE": str(SHM_SIZE),
        "OPENAMP_EVENT": str(tmp_path / "no-such-socket"),
        "OPENAMP_RSC_DA": hex(RSC_DA),
    }
    values.pop(drop, None)
    values.update(override)
    r = subprocess.run(
        [str(firmware)], env=firmware_env(**values), capture_output=True, text=True, timeout=10
    )
    assert r.returncode == 2
    assert complaint in r.stderr

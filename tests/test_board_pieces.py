"""The pieces of the board demos that run without a kernel: the ELF files of Python
firmware, glibc's ``rand()`` for ``mat_mul_demo``, the rpmsg-utils' argument rules,
the demo sessions, and the UML remoteproc machine's protocol driven by a stand-in
kernel over its socket (the real kernel is in ``test_uml_rproc.py``)."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from openamp.cli import demo_board
from openamp.errors import FirmwareImageError, UsageError
from openamp.linux import rpmsg_utils
from openamp.linux.programs import GlibcRand
from openamp.metal.shm import unique_name
from openamp.platform.uml_rproc import (
    HELLO,
    K2R_HEADER,
    LOAD,
    R2K_RECORD,
    START,
    TABLE_DA,
    UmlRprocMachine,
    firmware_image,
    firmware_table,
)
from openamp.remoteproc.elf import ElfImage
from openamp.remoteproc.elf_writer import (
    FIRMWARE_SECTION,
    LoadSegment,
    Section,
    build_elf,
    encode_firmware_section,
    read_firmware_section,
)
from openamp.tools.board_demos import (
    DEMOS,
    TOOLS,
    display,
    guest_files,
    missing_lines,
    multi_services_session,
)

# -- ELF files of Python firmware -----------------------------------------------------------


def test_a_python_firmware_image_carries_its_table_in_a_loadable_segment() -> None:
    image = firmware_image("multi-services", {"trailing": "stale"})
    with ElfImage(image) as elf:
        [seg] = elf.segments
        assert (seg.paddr, seg.filesz) == (TABLE_DA, len(firmware_table().to_bytes()))
        assert seg.memsz == 0x9000  # up to the end of the trace buffer, zero-filled
        assert elf.rsc_table is not None and elf.rsc_table.da == TABLE_DA
        assert elf.resource_table() == firmware_table()
        assert elf.entry == TABLE_DA
        section = elf.read_section(FIRMWARE_SECTION)
    assert section == b"multi-services\0trailing=stale\0"
    assert read_firmware_section(section) == ("multi-services", {"trailing": "stale"})


def test_an_alloc_section_must_lie_in_a_segment_and_match_its_bytes() -> None:
    with pytest.raises(UsageError, match="lies in no segment"):
        build_elf([LoadSegment(0x1000, b"abcd")], [Section(".x", b"cd", 0x2000, alloc=True)])
    with pytest.raises(UsageError, match="differ"):
        build_elf([LoadSegment(0x1000, b"abcd")], [Section(".x", b"xx", 0x1002, alloc=True)])
    with pytest.raises(UsageError, match="PT_LOAD"):
        build_elf([])


@pytest.mark.parametrize(
    "raw",
    [b"", b"echo", b"\0", b"echo\0novalue\0", b"\xff\xfe\0", b"x" * 5000 + b"\0"],
)
def test_a_bad_firmware_section_is_a_firmware_image_error(raw: bytes) -> None:
    with pytest.raises(FirmwareImageError):
        read_firmware_section(raw)


def test_option_words_cannot_smuggle_separators() -> None:
    with pytest.raises(UsageError):
        encode_firmware_section("echo", {"a=b": "c"})
    with pytest.raises(UsageError):
        encode_firmware_section("")


# -- glibc rand() ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 42, 1_700_000_000, 2**31 + 5, 2**32 - 1])
def test_glibc_rand_is_the_c_librarys_sequence(seed: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.srand(ctypes.c_uint(seed))
    gen = GlibcRand(seed)
    assert [gen.rand() for _ in range(500)] == [libc.rand() for _ in range(500)]


# -- the rpmsg-utils' arguments ---------------------------------------------------------------


def test_rpmsg_utils_print_their_usage_for_wrong_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert rpmsg_utils.export_dev(["/dev/rpmsg_ctrl0"]) == 1
    assert "rpmsg_export_dev <ctrl> [-d] <name> [<src> <dst>]" in capsys.readouterr().err
    assert rpmsg_utils.export_ept(["/dev/rpmsg_ctrl0", "n", "1"]) == 1
    assert rpmsg_utils.export_dev(["/dev/rpmsg_ctrl0", "rpmsg-tty", "x", "1"]) == 1
    assert rpmsg_utils.main(["nope"]) == 2


def test_rpmsg_utils_addresses_wrap_as_strtoul_does() -> None:
    assert rpmsg_utils._strtoul("-1") == 0xFFFFFFFF
    assert rpmsg_utils._strtoul("257") == 257
    assert rpmsg_utils._strtoul("0x10") is None  # base 10 only


def test_rpmsg_utils_report_a_missing_control_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rpmsg_utils.export_ept([str(tmp_path / "rpmsg_ctrl9"), "n", "1", "2"]) == 1
    assert "failed to open" in capsys.readouterr().err


# -- the demo sessions ------------------------------------------------------------------------


def test_the_command_lists_the_demos_the_tool_has() -> None:
    assert tuple(DEMOS) == demo_board.NAMES


def test_the_docker_scripts_are_written_as_the_image_ships_them() -> None:
    files = guest_files(DEMOS["echo"], "/src", "/usr/bin/python3")
    script = files["demo1A"]
    assert "echo image_echo_test_zcu102 >$R5_0/firmware\n" in script
    assert "echo start >$R5_0/state\n" in script and script.rstrip().endswith("echo_test")
    for name, (module, first) in TOOLS.items():
        assert files[f"bin/{name}"].endswith(f'-m {module} {first} "$@"\n')
    assert files["rpmsg_ping"] == files["bin/rpmsg_ping"]  # ./rpmsg_ping, as the seed types
    assert "dmesg -W" in files["session.sh"]
    assert "bin/sleep" not in files
    scaled = guest_files(DEMOS["split"], "/src", "python3", sleep_scale=0.1)
    assert "0.1" in scaled["bin/sleep"]


def test_without_remoteproc_the_stm32_session_skips_the_sysfs_steps() -> None:
    assert "remoteproc" not in multi_services_session(remoteproc=False)
    full = multi_services_session()
    assert full.startswith("run cat /sys/class/remoteproc/remoteproc0/state\n")
    assert "./rpmsg_export_dev /dev/rpmsg_ctrl0 rpmsg-tty 257 -1" in full


def test_expected_lines_may_follow_earlier_bytes_on_the_line() -> None:
    demo = DEMOS["multi-services"]
    assert display("a\0b\r\n") == "ab\n"
    transcript = "\n".join(demo.expect).replace("TTY 1: hello dev1", "bound\0TTY 1: hello dev1")
    assert missing_lines(demo, transcript) == []
    assert missing_lines(demo, "") == list(demo.expect)


# -- the UML remoteproc machine, with a stand-in kernel ---------------------------------------


class FakeKernel:
    """The kernel's side of ``uml_rproc.c``, enough to drive the machine: HELLO with a
    memory file, LOAD, START, STOP, and the records the machine sends back."""

    RAM_PA, RAM_SIZE, MEM_SIZE = 0x100000, 0x100000, 0x400000

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(os.fspath(path))
        self.sock.settimeout(15)
        self.mem = os.memfd_create("fake-physmem")
        os.ftruncate(self.mem, self.MEM_SIZE)
        table = firmware_table().to_bytes()
        os.pwrite(self.mem, table, self.RAM_PA + TABLE_DA)  # "loaded" into its RAM

    def hello(self) -> None:
        body = HELLO.pack(1, 3, self.MEM_SIZE, 0, self.RAM_PA, self.RAM_SIZE, b"fake")
        msg = K2R_HEADER.pack(1, len(body)) + body
        self.sock.sendmsg(
            [msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", self.mem))]
        )

    def request(self, mtype: int, body: bytes = b"") -> tuple[int, int, int, int]:
        self.sock.sendall(K2R_HEADER.pack(mtype, len(body)) + body)
        return self.record()

    def record(self) -> tuple[int, int, int, int]:
        data = b""
        while len(data) < R2K_RECORD.size:
            chunk = self.sock.recv(R2K_RECORD.size - len(data))
            assert chunk, "the machine closed the socket"
            data += chunk
        rtype, a, b, c = R2K_RECORD.unpack(data)
        return rtype, a, struct.unpack("<i", struct.pack("<I", b))[0], c

    def load(self, name: str, image: bytes) -> tuple[int, int, int, int]:
        raw = name.encode()
        return self.request(2, LOAD.pack(len(raw), len(image)) + raw + image)

    def start(self) -> tuple[int, int, int, int]:
        size = len(firmware_table().to_bytes())
        return self.request(3, START.pack(TABLE_DA, TABLE_DA, self.RAM_PA + TABLE_DA, size, 0))

    def close(self) -> None:
        self.sock.close()
        os.close(self.mem)


@pytest.fixture
def fake() -> Iterator[tuple[UmlRprocMachine, FakeKernel]]:
    directory = Path("/tmp") / unique_name("openamp-rproc")
    directory.mkdir()
    machine = UmlRprocMachine(directory, ["r5f_0"])
    machine.start()
    kernel = FakeKernel(machine.processors[0].socket_path)
    try:
        kernel.hello()
        assert machine.wait_for(lambda: machine.processors[0].state == "offline")
        yield machine, kernel
    finally:
        kernel.close()
        machine.close()
        for leftover in directory.iterdir():
            leftover.unlink()
        directory.rmdir()


def test_hello_gives_the_processor_its_memory_and_index(fake) -> None:
    machine, _ = fake
    p = machine.processors[0]
    assert machine.wait_for(lambda: p.state == "offline")
    assert (p.index, p.mem_size, p.ram) == (3, FakeKernel.MEM_SIZE, (0, 0x100000, 0x100000))
    assert machine.kernel_args() == [f"uml_rproc.device={p.socket_path}:r5f_0"]


def test_an_image_without_a_python_firmware_is_refused_with_enoexec(fake) -> None:
    machine, kernel = fake
    image = build_elf([LoadSegment(0x1000, b"\0" * 8)])
    assert kernel.load("plain.elf", image) == (1, 2, -errno.ENOEXEC, 0)
    assert kernel.start() == (1, 3, -errno.EINVAL, 0)  # nothing loaded


def test_start_runs_the_firmware_and_stop_halts_it(fake) -> None:
    machine, kernel = fake
    p = machine.processors[0]
    assert kernel.load("echo.elf", firmware_image("echo")) == (1, 2, 0, 0)
    began = time.monotonic()
    assert kernel.start() == (1, 3, 0, 0)  # once the firmware connected its doorbell
    pid = p.firmware_pid
    assert pid is not None and time.monotonic() - began < 10
    assert p.boots[0].spec == "echo" and p.boots[0].rsc_da == TABLE_DA
    assert kernel.request(4) == (1, 4, 0, 0)
    assert p.firmware_pid is None and p.boots[0].returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert kernel.request(4) == (1, 4, 0, 0)  # stopping a stopped processor is fine
    assert p.events.count("stop") == 1 and not p.boots[0].crashed


def test_a_firmware_that_dies_while_running_is_reported_as_a_crash(fake) -> None:
    machine, kernel = fake
    p = machine.processors[0]
    kernel.load("echo.elf", firmware_image("echo"))
    assert kernel.start() == (1, 3, 0, 0)
    pid = p.firmware_pid
    assert pid is not None
    os.kill(pid, 9)
    assert kernel.record() == (3, 2, 0, 0)  # CRASH, fatal error
    assert p.boots[0].crashed and p.boots[0].returncode == -9


def test_a_crash_can_be_reported_on_demand(fake) -> None:
    machine, kernel = fake
    machine.crash(0, "watchdog")
    assert kernel.record() == (3, 1, 0, 0)
    with pytest.raises(UsageError):
        machine.crash(0, "meltdown")

"""pyopenamp as the remote behind a real Linux kernel: User-mode Linux over vhost-user.

Each test boots a UML kernel (built once per machine by ``python3 -m openamp.tools.uml``;
the first build takes minutes) whose ``virtio_rpmsg_bus`` drives our
:class:`~openamp.platform.vhost_user.VhostUserMachine`, runs a program from
``uml_guest.py`` inside the guest (it writes a JSON result into ``tmp_path``, which the
guest sees through hostfs), and checks both sides.  The host side runs in this process.
If the kernel cannot be built the tests fail with the reason; they are never skipped.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from openamp.metal.shm import unique_name
from openamp.platform.vhost_user import VhostUserMachine
from openamp.rpmsg.core import Endpoint
from openamp.rpmsg.virtio import RpmsgVirtioDevice
from openamp.services.echo import EchoService
from openamp.services.sample import SAMPLE_COUNT, SAMPLE_SERVICE, SampleEcho
from openamp.tools.uml import UmlGuest, UmlResult

pytestmark = [pytest.mark.uml, pytest.mark.timeout(1800)]

GUEST = Path(__file__).with_name("uml_guest.py")
T = TypeVar("T")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory for the vhost-user socket (AF_UNIX paths are limited to 108
    bytes) and UML's working files; removed at the end."""
    path = Path("/tmp") / unique_name("openamp-uml")
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Boot:
    """What one boot produced."""

    host: Any
    """What the host function returned."""
    uml: UmlResult
    guest: dict[str, Any]
    """The guest program's JSON result."""
    serve_end: str
    """Why the host stopped serving (normally: the guest powered off)."""

    def describe(self) -> str:
        guest = json.dumps(self.guest, indent=1)[:4000]
        return f"guest result: {guest}\nserving ended: {self.serve_end}\n{self.uml.describe()}"


def boot(
    kernel: Path,
    short_dir: Path,
    tmp_path: Path,
    scenario: str,
    host: Callable[[VhostUserMachine, RpmsgVirtioDevice], T],
    *,
    timeout: float = 60.0,
    program: str | None = None,
) -> Boot:
    """Boot the guest running ``scenario`` while ``host`` plays the remote.

    ``host`` gets the machine and its started rpmsg device and returns when its part
    is done; then the machine keeps serving until the guest powers off.  ``program``:
    the shell command that runs the guest program, to which ``SCENARIO RESULT.json`` are
    appended (default: ``python3 -I -S uml_guest.py``).
    """
    sock = short_dir / "rpmsg.sock"
    out = tmp_path / "result.json"
    if program is None:
        program = f"{shlex.quote(sys.executable)} -I -S {shlex.quote(str(GUEST))}"
    script = f"exec {program} {scenario} {shlex.quote(str(out))}\n"
    with (
        VhostUserMachine(sock) as machine,
        UmlGuest(kernel, {str(sock): 7}, script, timeout=timeout, workdir=short_dir / "uml") as uml,
    ):
        uml.start()
        try:
            rpmsg = machine.start(timeout=30.0)
            value = host(machine, rpmsg)
            serve_end = machine.serve(timeout=timeout)
        except Exception as exc:
            result = uml.wait(timeout=0, check=False)
            raise AssertionError(f"the host side failed: {exc!r}\n{result.describe()}") from exc
        result = uml.wait()
    guest = json.loads(out.read_text()) if out.exists() else {}
    return Boot(value, result, guest, serve_end)


def echo_until(
    rpmsg: RpmsgVirtioDevice, name: str, stop_word: bytes, timeout: float = 30.0
) -> Endpoint:
    """Announce ``name`` and echo every message until ``stop_word`` arrives."""
    done = []

    def on_message(ept: Endpoint, data: memoryview, src: int) -> None:
        if data == stop_word:
            done.append(src)
        else:
            ept.sendto(data, src)

    ept = rpmsg.create_endpoint(name, callback=on_message)
    assert rpmsg.wait_until(lambda: bool(done), timeout), f"no {stop_word!r} within {timeout} s"
    return ept


# -- the tests -------------------------------------------------------------------------------


def test_the_kernels_client_sample_talks_to_our_remote(
    uml_kernel: Path, short_dir: Path, tmp_path: Path
) -> None:
    def host(machine: VhostUserMachine, rpmsg: RpmsgVirtioDevice) -> Any:
        return SampleEcho(rpmsg, SAMPLE_SERVICE).run(timeout=30.0)

    run = boot(uml_kernel, short_dir, tmp_path, "sample", host)
    stats, log = run.host, run.uml.kernel_log
    assert run.uml.ok and run.guest["ok"], run.describe()
    assert stats.messages == SAMPLE_COUNT and stats.destroyed, run.describe()
    assert run.guest["removed"] is True, run.describe()
    numbers = [int(n) for n in re.findall(r"rpmsg_client_sample \S+: incoming msg (\d+)", log)]
    assert numbers == list(range(1, SAMPLE_COUNT + 1)), run.describe()
    assert re.search(r"new channel: 0x[0-9a-f]+ -> 0x400!", log), run.describe()
    assert "goodbye!" in log
    assert "rpmsg sample client driver is removed" in log  # our NS destroy after message 100


def test_rpmsg_raw_datagrams_of_every_size_come_back_byte_exact(
    uml_kernel: Path, short_dir: Path, tmp_path: Path
) -> None:
    def host(machine: VhostUserMachine, rpmsg: RpmsgVirtioDevice) -> Any:
        service = EchoService(rpmsg, "rpmsg-raw")
        service.run(timeout=60.0)  # until the guest powers off
        return service.stats

    run = boot(uml_kernel, short_dir, tmp_path, "raw", host)
    guest = run.guest
    assert run.uml.ok and guest["ok"], run.describe()
    assert guest["echoed"] == 497 and guest["mismatches"] == [], run.describe()
    assert guest["nul_bytes_sent"] > 0
    assert guest["too_big"] == "EMSGSIZE"  # 497 bytes do not fit a 512-byte buffer
    assert run.host.messages == 497 and run.host.bytes == sum(range(497))
    assert re.fullmatch(r"rpmsg\d+", Path(guest["node"]).name)
    assert guest["dst"] == "0x400"  # our endpoint's address, as the kernel's sysfs shows it


def test_rpmsg_ctrl_creates_and_destroys_endpoints_that_reach_fixed_addresses(
    uml_kernel: Path, short_dir: Path, tmp_path: Path
) -> None:
    seen: list[tuple[int, int, bytes]] = []

    def host(machine: VhostUserMachine, rpmsg: RpmsgVirtioDevice) -> Any:
        def echo(ept: Endpoint, data: memoryview, src: int) -> None:
            seen.append((ept.addr, src, bytes(data)))
            ept.sendto(data, src)

        def info(ept: Endpoint, data: memoryview, src: int) -> None:
            seen.append((ept.addr, src, bytes(data)))
            ept.sendto(b"%d:" % src + bytes(data)[::-1], src)

        # No names: fixed addresses the guest targets directly, nothing is announced.
        rpmsg.create_endpoint("", src=0x2000, callback=echo)
        rpmsg.create_endpoint("", src=0x2001, callback=info)
        return None

    run = boot(uml_kernel, short_dir, tmp_path, "ctrl", host)
    assert run.uml.ok and run.guest["ok"], run.describe()
    echo, fixed, dynamic = run.guest["exchanges"]
    assert bytes.fromhex(echo["reply"]) == b"echo \x00 me"
    assert bytes.fromhex(fixed["reply"]) == b"12288:fed\x00cba"  # src 0x3000 as requested
    src = int(bytes.fromhex(dynamic["reply"]).split(b":")[0])
    assert src >= 1024 and bytes.fromhex(dynamic["reply"]).endswith(b":zyx")
    assert (fixed["src"], fixed["dst"]) == ("12288", "8193")  # class sysfs prints %d
    for exchange in run.guest["exchanges"]:
        assert exchange["node_removed"] and exchange["sysfs_removed"], run.describe()
    addresses = [(addr, source) for addr, source, _ in seen]
    assert addresses[1:] == [(0x2001, 0x3000), (0x2001, src)]
    assert addresses[0][0] == 0x2000 and addresses[0][1] >= 1024


def test_rpmsg_tty_carries_lines_both_ways(
    uml_kernel: Path, short_dir: Path, tmp_path: Path
) -> None:
    lines: list[bytes] = []

    def host(machine: VhostUserMachine, rpmsg: RpmsgVirtioDevice) -> Any:
        pending = bytearray()

        def on_bytes(ept: Endpoint, data: memoryview, src: int) -> None:
            pending.extend(data)
            while b"\n" in pending:
                line, _, rest = bytes(pending).partition(b"\n")
                pending[:] = rest
                lines.append(line)
                ept.sendto(b"ack %d: %s\n" % (len(lines), line), src)

        rpmsg.create_endpoint("rpmsg-tty", callback=on_bytes)
        return None

    run = boot(uml_kernel, short_dir, tmp_path, "tty", host)
    assert run.uml.ok and run.guest["ok"], run.describe()
    sent = run.guest["sent"]
    assert [line.decode() for line in lines] == sent
    assert run.guest["replies"] == [f"ack {i}: {line}" for i, line in enumerate(sent, 1)]
    assert re.fullmatch(r"/dev/ttyRPMSG\d+", run.guest["node"])


def test_ns_destroy_removes_the_device_and_a_vanished_remote_fails_reads(
    uml_kernel: Path, short_dir: Path, tmp_path: Path
) -> None:
    def host(machine: VhostUserMachine, rpmsg: RpmsgVirtioDevice) -> Any:
        first = echo_until(rpmsg, "rpmsg-raw", b"destroy")
        first.destroy()  # NS destroy: the kernel removes the channel
        echo_until(rpmsg, "rpmsg-raw", b"vanish")  # announced again, at a new address
        machine.device.disconnect()  # vanish: no NS destroy, the socket just closes
        return None

    run = boot(uml_kernel, short_dir, tmp_path, "vanish", host, timeout=90.0)
    steps = run.guest.get("steps", {})
    assert run.uml.ok and run.guest["ok"], run.describe()
    assert steps["echo1"] == "hello" and steps["echo2"] == "hello again"
    # NS destroy: a blocked reader is woken with EPIPE, sysfs entry and node disappear
    assert steps["read_after_destroy"] == "EPIPE", run.describe()
    assert steps["write_after_destroy"] == "EPIPE", run.describe()
    assert steps["sysfs1_removed"] and steps["node1_removed"], run.describe()
    assert steps["channel2"] != steps["channel1"]
    # vanished remote: the kernel drops the whole virtio device; reads fail, fast
    assert steps["read_after_vanish"] == "EPIPE", run.describe()
    assert steps["read_after_vanish_s"] < 5.0, run.describe()
    assert steps["sysfs2_removed"] and steps["node2_removed"], run.describe()
    assert steps["ctrl_removed"], run.describe()

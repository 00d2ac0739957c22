"""The board adapters (:mod:`openamp.linux`, ``openamp rpmsg``) against the real kernel.

``tests/test_linux_rpmsg.py`` tests the adapters on directory trees laid out like the
kernel's and with a faked ``fcntl.ioctl``; here they run where they are meant to run:
inside a User-mode Linux guest whose ``virtio_rpmsg_bus``, ``rpmsg_char``, ``rpmsg_ctrl``
and ``rpmsg_tty`` serve channels announced by our Python remote (the
:class:`~openamp.platform.vhost_user.VhostUserMachine` of ``tests/test_uml.py``).  The
guest program, ``uml_adapters_guest.py``, imports ``openamp.linux`` from this checkout
(``PYTHONPATH`` is its ``src``; the guest sees the host's files through hostfs) and
writes what it saw into a JSON file, which the tests check together with what the remote
received.  Three boots, about 12 s in all: the library (five tests share one boot), the
command (Python starts three times in the guest, the slow part), and a remote that goes
away.
"""

from __future__ import annotations

import errno
import re
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import openamp
from openamp.linux import RPMSG_ADDR_ANY
from openamp.metal.shm import unique_name
from openamp.platform.vhost_user import VhostUserMachine
from openamp.rpmsg.core import Endpoint
from openamp.rpmsg.virtio import RpmsgVirtioDevice
from test_uml import Boot, boot, echo_until, short_dir
from uml_adapters_guest import TTY_LINES
from uml_guest import payload

__all__ = ["short_dir"]  # a fixture, imported from test_uml

pytestmark = [pytest.mark.uml, pytest.mark.timeout(1800)]

GUEST = Path(__file__).with_name("uml_adapters_guest.py")
SRC = Path(openamp.__file__).resolve().parent.parent
"""This checkout's ``src``: what the guest imports."""
MTU = 496


def run_guest(
    kernel: Path,
    short: Path,
    tmp_path: Path,
    scenario: str,
    host: Callable[[VhostUserMachine, RpmsgVirtioDevice], Any],
    *,
    timeout: float = 60.0,
) -> Boot:
    """:func:`test_uml.boot` with the adapters' guest program: the guest's python3 with
    this checkout's ``src`` first on its path (``-s``: no user site; ``-I`` would ignore
    ``PYTHONPATH``, ``-S`` would hide the dependencies the command needs)."""
    program = (
        f"env PYTHONPATH={shlex.quote(str(SRC))} PYTHONDONTWRITEBYTECODE=1 "
        f"{shlex.quote(sys.executable)} -s {shlex.quote(str(GUEST))}"
    )
    return boot(kernel, short, tmp_path, scenario, host, timeout=timeout, program=program)


class Remote:
    """Our side's endpoint callbacks: echo, say who wrote, or ack tty lines; every
    message is recorded as ``(local address, source, payload)``."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, bytes]] = []
        self.lines: list[bytes] = []
        self._pending = bytearray()

    def _record(self, ept: Endpoint, data: memoryview, src: int) -> bytes:
        self.seen.append((ept.addr, src, bytes(data)))
        return bytes(data)

    def echo(self, ept: Endpoint, data: memoryview, src: int) -> None:
        ept.sendto(self._record(ept, data, src), src)

    def who(self, ept: Endpoint, data: memoryview, src: int) -> None:
        """Reply ``<source address>:<payload reversed>``."""
        ept.sendto(b"%d:" % src + self._record(ept, data, src)[::-1], src)

    def tty_lines(self, ept: Endpoint, data: memoryview, src: int) -> None:
        """Collect lines; answer each with ``ack N: <line>``, in MTU-sized messages."""
        self._pending += self._record(ept, data, src)
        while b"\n" in self._pending:
            line, _, rest = bytes(self._pending).partition(b"\n")
            self._pending[:] = rest
            self.lines.append(line)
            reply = b"ack %d: %s\n" % (len(self.lines), line)
            for i in range(0, len(reply), MTU):
                ept.sendto(reply[i : i + MTU], src)

    def to(self, addr: int) -> list[tuple[int, bytes]]:
        """What arrived at our address ``addr``: ``(source, payload)``."""
        return [(src, data) for a, src, data in self.seen if a == addr]


def check_error(err: dict[str, Any], cls: str, err_no: int | None, *fragments: str) -> None:
    """The guest saw exception ``cls`` (by name, anywhere in its MRO) with errno
    ``err_no`` (unless None) whose message holds every fragment."""
    assert err["type"] is not None, f"no exception: {err}"
    assert cls in err["classes"], err
    if err_no is not None:
        assert err["errno"] == err_no, err
    for fragment in fragments:
        assert fragment in err["message"], (fragment, err)


# -- the library: one boot, five tests --------------------------------------------------------


@dataclass
class Library:
    """The ``library`` boot and what our remote received during it."""

    run: Boot
    remote: Remote

    def part(self, check: str, key: str) -> Any:
        """The guest's result of ``check`` (failing with its traceback if it failed)."""
        run = self.run
        assert run.uml.ok, run.describe()
        assert run.guest.get("openamp", "").startswith(str(SRC)), run.describe()
        failed = run.guest.get("failed", {})
        assert check not in failed, f"{check} failed in the guest:\n{failed[check]}"
        assert key in run.guest, run.describe()
        return run.guest[key]


@pytest.fixture(scope="module")
def library(uml_kernel: Path, tmp_path_factory: pytest.TempPathFactory) -> Library:
    """One boot of the ``library`` scenario; the tests below check parts of it.

    Our remote announces ``rpmsg-raw`` (echo, 0x400), ``pyopenamp-svc`` (no driver wants
    it; answers ``<source>:<payload reversed>``, 0x401) and ``rpmsg-tty`` (acks lines,
    0x402), and serves two unannounced fixed addresses: 0x2000 (echo) and 0x2001 (like
    ``pyopenamp-svc``).
    """
    r = Remote()

    def host(machine: VhostUserMachine, rpmsg: RpmsgVirtioDevice) -> None:
        rpmsg.create_endpoint("rpmsg-raw", src=0x400, callback=r.echo)
        rpmsg.create_endpoint("pyopenamp-svc", src=0x401, callback=r.who)
        rpmsg.create_endpoint("rpmsg-tty", src=0x402, callback=r.tty_lines)
        rpmsg.create_endpoint("", src=0x2000, callback=r.echo)
        rpmsg.create_endpoint("", src=0x2001, callback=r.who)

    short = Path("/tmp") / unique_name("openamp-uml")
    short.mkdir()
    try:
        run = run_guest(uml_kernel, short, tmp_path_factory.mktemp("library"), "library", host)
    finally:
        shutil.rmtree(short, ignore_errors=True)
    return Library(run, r)


def test_channels_are_listed_and_found_as_the_remote_announced_them(library: Library) -> None:
    guest = library.run.guest
    channels = library.part("check_discovery", "channels")
    by_name = {c["name"]: c for c in channels}
    assert [c["name"] for c in channels] == ["rpmsg-raw", "pyopenamp-svc", "rpmsg-tty"]
    for name, addr in (("rpmsg-raw", 0x400), ("pyopenamp-svc", 0x401), ("rpmsg-tty", 0x402)):
        ch = by_name[name]
        assert ch["dst"] == addr, ch  # the remote's address, from its announcement
        assert re.fullmatch(rf"virtio\d+\.{name}\.-1\.{addr}", ch["device"]), ch
        assert f"creating channel {name} addr {addr:#x}" in library.run.uml.kernel_log
    raw, svc, tty = by_name["rpmsg-raw"], by_name["pyopenamp-svc"], by_name["rpmsg-tty"]
    # Linux's side: rpmsg_chrdev and rpmsg_tty bound by name, each with a local address
    assert raw["driver"] == "rpmsg_chrdev" and re.fullmatch(r"rpmsg\d+", raw["endpoints"][0])
    assert tty["driver"] == "rpmsg_tty" and re.fullmatch(r"ttyRPMSG\d+", tty["ttys"][0])
    assert raw["src"] >= 1024 and tty["src"] >= 1024
    assert (svc["driver"], svc["src"], svc["endpoints"]) == (None, RPMSG_ADDR_ANY, [])
    # what the remote saw on rpmsg-raw came from the channel's local address
    assert {src for src, _ in library.remote.to(0x400)} == {raw["src"]}
    assert {"rpmsg_ctrl", "rpmsg_ns"} <= set(guest["all_channels"])
    assert guest["find"] == svc and guest["find_by_device"] == "pyopenamp-svc"
    [ctrl] = guest["ctrls"]
    assert re.fullmatch(r"/dev/rpmsg_ctrl\d+", ctrl["node"])
    assert re.fullmatch(r"virtio\d+\.rpmsg_ctrl\.0\.0", ctrl["parent"])
    [ept] = guest["endpoint_devices"]
    assert (ept["name"], ept["channel"], ept["ctrl"]) == ("rpmsg-raw", raw["device"], None)
    assert (ept["src"], ept["dst"]) == (raw["src"], 0x400)
    [t] = guest["ttys"]
    assert (t["name"], t["channel"], t["dst"]) == ("rpmsg-tty", tty["device"], 0x402)


def test_open_endpoint_through_the_control_device_exchanges_exact_datagrams(
    library: Library,
) -> None:
    out = library.part("check_ctrl_endpoints", "ctrl_endpoints")
    assert re.fullmatch(r"/dev/rpmsg\d+", out["node"]) and out["made_by"].startswith("rpmsg_ctrl")
    assert out["info"] == ["pyopenamp-fixed", 0x3000, 0x2000]
    # every size from 0 to the MTU, binary, byte-exact both ways
    assert out["mismatches"] == [], out
    from_fixed = [data for src, data in library.remote.to(0x2000) if src == 0x3000]
    assert from_fixed[: MTU + 1] == [payload(n) for n in range(MTU + 1)]
    check_error(out["too_big"], "MessageTooLargeError", errno.EMSGSIZE, "497 bytes", "496")
    # nothing comes: the adapter's timeout, after the time asked for (0: at once)
    check_error(out["recv_timeout"], "OpenAMPTimeoutError", None, "within 0.2 s")
    assert 0.2 <= out["recv_timeout_s"] < 2.0
    check_error(out["recv_poll"], "OpenAMPTimeoutError", None, "within 0 s")
    # fileno() with select, and asyncio
    assert out["select_idle"] and out["select_ready"] and out["select_reply"] == "selected"
    assert out["gone_while_alive"] is False
    assert bytes.fromhex(out["async_reply"]) == b"\x00async\x00"
    # leaving `with` destroyed the endpoint: its node and sysfs entry are gone
    assert out["node_removed"] and out["sysfs_removed"]
    # a dynamic local address, which the remote saw
    reply = bytes.fromhex(out["dynamic_reply"])
    src = int(reply.split(b":")[0])
    assert src >= 1024 and reply.endswith(b":fed\x00cba")
    assert (src, b"abc\x00def") in library.remote.to(0x2001)
    assert out["dynamic_src"] == RPMSG_ADDR_ANY
    # without dst: the address of the announced channel
    assert out["by_name_dst"] == 0x401 and out["by_name_reply"].endswith(":eman yb")
    assert out["left"] == []


def test_open_channel_and_bind_channel_give_endpoints_that_talk_to_the_remote(
    library: Library,
) -> None:
    out = library.part("check_channels", "channel_endpoints")
    raw = {c["name"]: c for c in library.run.guest["channels"]}["rpmsg-raw"]
    # rpmsg-raw: the channel's own /dev/rpmsgN, made by the kernel
    assert out["raw_node"] == f"/dev/{raw['endpoints'][0]}"
    assert out["raw_info"] == ["rpmsg-raw", raw["src"], 0x400]
    assert bytes.fromhex(out["raw_reply"]) == b"raw \x00 hello"
    check_error(out["second_open"], "DeviceBusyError", errno.EBUSY, "already open", "fuser")
    for key, ioctl in (("get_flow", "RPMSG_GET_OUTGOING_FLOWCONTROL"), ("set_flow", "SET_INC")):
        check_error(out[key], "RequestRejectedError", errno.EINVAL, ioctl, "v6.6")
    assert out["raw_node_stays"] and out["raw_node_still_there"]
    check_error(
        out["destroy_channel_ept"], "RequestRejectedError", errno.EINVAL, "a channel's endpoint"
    )
    assert out["raw_after"]["driver"] == "rpmsg_chrdev"
    # pyopenamp-svc: no driver; open_channel binds rpmsg_chrdev through driver_override
    assert out["svc_before"]["driver"] is None
    bound = out["svc_bound"]
    assert (bound["driver"], bound["driver_override"]) == ("rpmsg_chrdev", "rpmsg_chrdev")
    assert bound["endpoints"] == [Path(out["svc_node"]).name]
    assert out["svc_info"] == ["pyopenamp-svc", bound["src"], 0x401]
    assert out["svc_reply"] == f"{bound['src']}:dnuob"  # the remote saw the bound address
    assert (bound["src"], b"bound") in library.remote.to(0x401)
    unbound = out["svc_unbound"]
    assert (unbound["driver"], unbound["driver_override"], unbound["endpoints"]) == (
        None,
        None,
        [],
    )
    assert out["svc_node_removed"]
    assert out["svc_rebound"]["driver"] == "rpmsg_chrdev"
    assert out["svc_reply2"].endswith(":niaga")
    check_error(out["bind_taken"], "DeviceBusyError", errno.EBUSY, "already bound to rpmsg_tty")
    check_error(
        out["bind_no_driver"], "DeviceNotFoundError", errno.ENOENT, "no driver no_such_driver"
    )
    # the failed bind changed nothing (it used to unbind the channel first)
    after = out["raw_after_bad_bind"]
    assert (after["driver"], after["driver_override"], after["endpoints"]) == (
        "rpmsg_chrdev",
        None,
        raw["endpoints"],
    )


def test_open_tty_carries_binary_lines_both_ways(library: Library) -> None:
    out = library.part("check_tty", "tty")
    assert re.fullmatch(r"/dev/ttyRPMSG\d+", out["node"])
    assert [bytes.fromhex(h) for h in out["sent"]] == TTY_LINES
    assert library.remote.lines == [*TTY_LINES, b"by index"]  # every byte as written
    expected = [b"ack %d: %s\n" % (i, line) for i, line in enumerate(TTY_LINES, 1)]
    assert [bytes.fromhex(h) for h in out["replies"]] == expected
    assert bytes.fromhex(out["by_index"]) == b"ack 5: by index\n"
    check_error(out["idle"], "OpenAMPTimeoutError", None, "within 0.1 s")


def test_kernel_errors_become_the_adapters_typed_errors(library: Library) -> None:
    out = library.part("check_errors", "errors")
    listing = "channels: 'rpmsg-raw' (0x400), 'pyopenamp-svc' (0x401), 'rpmsg-tty' (0x402)"
    for key in ("find_missing", "open_channel_missing", "open_endpoint_missing"):
        check_error(out[key], "DeviceNotFoundError", errno.ENODEV, "'no-such-service'", listing)
    check_error(out["tty_missing"], "DeviceNotFoundError", errno.ENODEV, "(rpmsg-tty)")
    check_error(
        out["ept_node_missing"], "DeviceNotFoundError", errno.ENOENT, "('rpmsg-raw' 0x400 -> 0x400)"
    )
    check_error(out["ctrl_missing"], "DeviceNotFoundError", errno.ENOENT, "/dev/rpmsg_ctrl0")
    # a local address a channel holds: refused before any node is made
    check_error(
        out["taken_by_channel"],
        "RequestRejectedError",
        errno.EADDRINUSE,
        "local address 0x400",
        "rpmsg-raw",
        "RPMSG_ADDR_ANY",
    )
    assert out["taken_by_channel_left"] == []
    # an address another open endpoint holds: the kernel's EINVAL, with the hint; the node
    # the kernel made cannot be destroyed while the address is taken, and the error says so
    check_error(
        out["in_use"],
        "RequestRejectedError",
        errno.EINVAL,
        "local address (0x3100) is probably taken",
        "stays until it can be opened",
        "openamp rpmsg ept destroy",
    )
    assert out["first_still_works"] == "still works"
    assert [e["name"] for e in out["in_use_left"]] == ["pyopenamp-second"]
    assert out["in_use_left_removed"] == [True]
    check_error(out["no_dst"], "RequestRejectedError", errno.EINVAL, "no destination address")
    check_error(
        out["release_missing"], "RequestRejectedError", errno.EINVAL, "no channel 'no-such-service'"
    )
    created = out["created_channel"]
    assert created["type"] is None and "'src': 12800, 'dst': 8192" in created["value"]
    check_error(out["released_channel"], "DeviceNotFoundError", errno.ENODEV, "pyopenamp-local")
    assert out["left"] == []


# -- the command ------------------------------------------------------------------------------


def test_the_openamp_rpmsg_command_in_the_guest(
    uml_kernel: Path, short_dir: Path, tmp_path: Path
) -> None:
    r = Remote()

    def host(machine: VhostUserMachine, rpmsg: RpmsgVirtioDevice) -> None:
        rpmsg.create_endpoint("rpmsg-raw", src=0x400, callback=r.echo)
        rpmsg.create_endpoint("rpmsg-openamp-demo-channel", src=0x401, callback=r.echo)
        rpmsg.create_endpoint("rpmsg-tty", src=0x402, callback=r.echo)
        rpmsg.create_endpoint("", src=0x2000, callback=r.echo)

    run = run_guest(uml_kernel, short_dir, tmp_path, "cli", host)
    g = run.guest
    assert run.uml.ok and g["ok"], run.describe()

    def ok(key: str) -> Any:
        assert g[key]["status"] == 0, (key, g[key])
        return g[key].get("json")

    # `python -m openamp rpmsg ls --json`
    ls = ok("ls")
    assert [(c["name"], c["dst"]) for c in ls["channels"]] == [
        ("rpmsg-raw", 0x400),
        ("rpmsg-openamp-demo-channel", 0x401),
        ("rpmsg-tty", 0x402),
    ]
    assert [c["node"] for c in ls["ctrls"]] == ["/dev/rpmsg_ctrl0"]
    assert [e["name"] for e in ls["endpoints"]] == ["rpmsg-raw"]
    assert [t["name"] for t in ls["ttys"]] == ["rpmsg-tty"]
    text = g["ls_text"]["stdout"]
    assert "rpmsg-openamp-demo-channel" in text and "/dev/rpmsg_ctrl0" in text
    # `python -m openamp rpmsg ping rpmsg-raw`: the channel's own endpoint device
    ping = ok("ping_raw")
    assert (ping["ok"], ping["replies"], ping["echoed"]) == (True, 3, 3)
    assert [d for _, d in r.to(0x400)] == [b"ping 1", b"ping 2", b"ping 3"]
    # a channel without endpoint device: a temporary one through rpmsg_ctrl, removed after
    ping = ok("ping_demo")
    assert (ping["ok"], ping["echoed"]) == (True, 3)
    assert [d for _, d in r.to(0x401)][:3] == [b"\xa5" * MTU] * 3
    assert g["left_after_ping"] == []
    assert g["ping_missing"]["status"] == 1
    assert (
        "no endpoint device, tty or channel 'no-such-service': channels: 'rpmsg-raw' (0x400)"
        in g["ping_missing"]["stderr"]
    )
    # ept create / ping / send / destroy, as the rpmsg-utils do
    created = ok("ept_create")
    assert (created["src"], created["dst"], created["ctrl"]) == (0x3000, 0x2000, "rpmsg_ctrl0")
    assert ok("ping_node")["ok"]
    assert ok("send_node")["sent"] == [3]
    assert r.to(0x2000) == [(0x3000, b"via node"), (0x3000, b"\x00\xff\x00")]
    assert ok("ept_destroy")["destroyed"] == [created["node"]] and g["node_removed"]
    # the tty, and a channel bound to rpmsg_chrdev by the command
    assert ok("ping_tty")["ok"]
    assert bytes.fromhex(g["ping_tty"]["json"]["results"][0]["data"]) == b"tty\x00ping"
    assert ok("bind")["driver"] == "rpmsg_chrdev"
    assert ok("ping_bound")["echoed"] == 2
    assert [d for _, d in r.to(0x401)][3:] == [b"ping 1", b"ping 2"]
    assert ok("unbind")["driver"] is None


# -- the doctor, inspect and capture behind the real kernel -------------------------------------


def test_the_board_doctor_and_inspect_see_the_real_kernel_and_the_link_is_captured(
    uml_kernel: Path, short_dir: Path, tmp_path: Path
) -> None:
    from openamp.tools.capture import open_capture, read_capture
    from openamp.tools.decode import decode_payload

    r = Remote()
    path = tmp_path / "vhost.pcapng"
    cap = open_capture(path)

    def host(machine: VhostUserMachine, rpmsg: RpmsgVirtioDevice) -> None:
        rpmsg.set_capture(cap.link("vhost-user remote", app="echo"))
        rpmsg.create_endpoint("rpmsg-raw", src=0x400, callback=r.echo)
        rpmsg.create_endpoint("rpmsg-openamp-demo-channel", src=0x401, callback=r.echo)

    try:
        run = run_guest(uml_kernel, short_dir, tmp_path, "doctor", host)
    finally:
        cap.close()
    g = run.guest
    assert run.uml.ok and g["ok"], run.describe()

    def last(key: str) -> dict[str, Any]:
        return dict(g[key]["json"]["steps"][-1])

    # no remoteproc under UML: the walk goes on with the rpmsg channels
    assert g["missing"]["status"] == 1
    assert last("missing")["step"] == "rpmsg channels"
    assert "'rpmsg-raw' (0x400)" in last("missing")["detail"]
    assert last("unbound")["step"].startswith("driver of virtio")
    assert "openamp rpmsg bind rpmsg-openamp-demo-channel" in last("unbound")["fix"]
    assert g["bind"]["json"]["driver"] == "rpmsg_chrdev"
    assert g["bound"]["status"] == 0 and g["bound"]["json"]["ok"]
    assert last("bound")["step"].startswith("/dev node rpmsg")
    assert g["raw"]["status"] == 0
    report = g["inspect"]["json"]
    assert report["remoteprocs"] == []
    names = {c["name"]: c for c in report["channels"]}
    assert names["rpmsg-raw"]["driver"] == "rpmsg_chrdev"
    assert {"rpmsg_ns", "rpmsg_ctrl"} <= set(names)
    assert "driver rpmsg_chrdev" in g["inspect_text"]["stdout"]
    assert g["modules"] == []
    # the remote's side of the link, recorded: Linux's messages decoded
    data = read_capture(path)
    sent = [ce for ce in data.messages() if ce.event.direction == "tx"]
    got = [ce for ce in data.messages() if ce.event.direction == "rx"]
    assert [decode_payload(ce.event.payload, ce.app, dst=0x35).summary for ce in sent[:2]] == [
        "NS create 'rpmsg-raw' at 0x400",
        "NS create 'rpmsg-openamp-demo-channel' at 0x401",
    ]
    assert any(ce.event.payload == b"bye" and ce.h2r for ce in got)


# -- a remote that goes away ------------------------------------------------------------------


def test_a_vanished_remote_raises_endpoint_gone_instead_of_hanging(
    uml_kernel: Path, short_dir: Path, tmp_path: Path
) -> None:
    r = Remote()

    def host(machine: VhostUserMachine, rpmsg: RpmsgVirtioDevice) -> None:
        rpmsg.create_endpoint("rpmsg-tty", src=0x402, callback=r.echo)
        rpmsg.create_endpoint("", src=0x2000, callback=r.echo)
        first = echo_until(rpmsg, "rpmsg-raw", b"destroy")
        first.destroy()  # NS destroy: the kernel removes the channel
        echo_until(rpmsg, "rpmsg-raw", b"vanish")  # announced again
        machine.device.disconnect()  # vanish: no NS destroy, the connection drops

    run = run_guest(uml_kernel, short_dir, tmp_path, "vanish", host, timeout=90.0)
    steps = run.guest.get("steps", {})
    # the guest powered off normally: closing the endpoints did not crash the kernel
    assert run.uml.ok and run.guest["ok"], run.describe()
    assert "Kernel panic" not in run.uml.console
    assert (steps["echo1"], steps["echo2"]) == ("hello", "hello again")
    assert (steps["ctrl_echo"], steps["tty_echo"]) == ("ctrl", "tty\n")
    gone = ("EndpointGoneError", "PeerGoneError")
    # the remote destroyed the channel: its endpoint fails at once, typed
    for key in ("recv_after_destroy", "send_after_destroy"):
        for cls in gone:
            check_error(steps[key], cls, errno.EPIPE, "is gone")
    assert steps["recv_after_destroy_s"] < 5.0 and steps["channel1_removed"]
    # the remote vanished: every endpoint fails within moments, typed
    for key in ("recv_after_vanish", "send_after_vanish", "ctrl_recv_after_vanish"):
        for cls in gone:
            check_error(steps[key], cls, errno.EPIPE, "is gone")
    check_error(steps["ctrl_send_after_vanish"], "EndpointGoneError", errno.EPIPE)
    assert steps["recv_after_vanish_s"] < 5.0 and steps["ctrl_recv_after_vanish_s"] < 5.0
    assert steps["gone"] == [True, True]
    # the tty hangs up: reading is end of file, writing the typed error
    assert steps["tty_read_after_vanish"] == {"type": None, "value": "b''"}
    assert steps["tty_read_after_vanish_s"] < 5.0
    for cls in gone:
        check_error(steps["tty_write_after_vanish"], cls, errno.EIO, "hung up")
    assert [c["type"] for c in steps["close"]] == [None, None, None]
    # `openamp rpmsg listen` on the tty and on a temporary endpoint: exit 1 with the reason
    assert steps["listen_tty_ready"].startswith("listening on /dev/ttyRPMSG")
    assert steps["listen_ctrl_ready"].startswith("listening on /dev/rpmsg")
    tty, ctrl = steps["listen_tty"], steps["listen_ctrl"]
    assert tty["status"] == 1 and "was hung up" in tty["stderr"], tty
    assert ctrl["status"] == 1 and "EPIPE receiving" in ctrl["stderr"], ctrl
    # nothing left; lookups say so
    assert steps["channels_after"] == []
    check_error(steps["find_after"], "DeviceNotFoundError", errno.ENODEV, "no channels")
    check_error(steps["open_endpoint_after"], "DeviceNotFoundError", None, "control devices: none")

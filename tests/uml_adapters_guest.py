"""Programs that run *inside* the UML guest for ``test_uml_adapters.py``.

Unlike ``uml_guest.py`` (plain ``os``/``fcntl`` calls), these use the board adapters,
:mod:`openamp.linux` and the ``openamp rpmsg`` command, against the real kernel's sysfs,
``/dev/rpmsg_ctrlN``, ``/dev/rpmsgN`` and ``/dev/ttyRPMSGn``.  The guest's init script runs
``python3 -s uml_adapters_guest.py SCENARIO RESULT.json`` with ``PYTHONPATH`` set to this
checkout's ``src`` (the host's file system is the guest's root, so the test reads the
result file and the guest imports the code under test).  Each check's outcome goes into
the JSON result; the test on the host side asserts on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import select
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openamp
import openamp.linux as L
from uml_guest import gone, payload, wait_for

MTU = 496
TTY_LINES = [
    b"plain text",
    b"controls \x00\x01\x03\x04\x08\x11\x13\x1a\x1b\x7f and a CR\r",
    bytes(range(0x80, 0x100)),
    bytes(b for b in range(256) if b != 0x0A) * 6,  # 1530 bytes: more than one message
]


def error(fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn``; describe the exception it raises (or that it raised none)."""
    try:
        value = fn()
    except Exception as exc:
        return {
            "type": type(exc).__name__,
            "classes": [c.__name__ for c in type(exc).__mro__],
            "errno": getattr(exc, "errno", None),
            "message": str(exc),
            "hint": getattr(exc, "hint", None),
        }
    return {"type": None, "value": repr(value)}


def channels_ready(names: set[str]) -> bool:
    """Whether every channel in ``names`` exists, ``rpmsg-raw`` and ``rpmsg-tty`` with the
    kernel's driver bound and its device node made, and the control device's node too."""
    found = {c.name: c for c in L.list_channels()}
    if not names <= set(found):
        return False
    nodes = {"rpmsg-raw": ("rpmsg_chrdev", "endpoints"), "rpmsg-tty": ("rpmsg_tty", "ttys")}
    for name, (driver, kind) in nodes.items():
        c = found.get(name)
        if c is not None:
            devices = getattr(c, kind)
            if c.driver != driver or not devices:
                return False
            if not all(os.path.exists(f"/dev/{d}") for d in devices):
                return False
    ctrls = L.list_ctrls()
    return bool(ctrls) and all(c.node.exists() for c in ctrls)


def wait_channels(names: set[str], timeout: float = 20.0) -> None:
    ok = wait_for(lambda: True if channels_ready(names) else None, timeout)
    assert ok, f"channels {sorted(names)} did not all appear: {L.list_channels()}"


def short(c: L.Channel) -> dict[str, Any]:
    return {
        "device": c.device,
        "name": c.name,
        "src": c.src,
        "dst": c.dst,
        "driver": c.driver,
        "driver_override": c.driver_override,
        "virtio": c.virtio,
        "endpoints": c.endpoints,
        "ttys": c.ttys,
    }


# -- the library ---------------------------------------------------------------------------


def check_discovery(result: dict[str, Any]) -> None:
    result["channels"] = [short(c) for c in L.list_channels()]
    result["all_channels"] = [c.name for c in L.list_channels(include_internal=True)]
    svc = L.find_channel("pyopenamp-svc")
    result["find"] = short(svc)
    result["find_by_device"] = L.find_channel(svc.device).name
    result["ctrls"] = [c.to_json() for c in L.list_ctrls()]
    result["endpoint_devices"] = [e.to_json() for e in L.list_endpoint_devices()]
    result["ttys"] = [t.to_json() for t in L.list_ttys()]


def check_ctrl_endpoints(result: dict[str, Any]) -> None:
    out: dict[str, Any] = {}
    result["ctrl_endpoints"] = out
    with L.open_endpoint("pyopenamp-fixed", src=0x3000, dst=0x2000) as ep:
        out["node"] = str(ep.path)
        out["info"] = [ep.name, ep.src, ep.dst]
        sysfs = Path("/sys/class/rpmsg") / ep.path.name
        out["made_by"] = os.path.realpath(sysfs).split("/")[-2]
        mismatches = []
        t0 = time.monotonic()
        for n in range(MTU + 1):
            ep.send(payload(n))
            if ep.recv(timeout=5.0) != payload(n):
                mismatches.append(n)
        out["echo_s"] = round(time.monotonic() - t0, 3)
        out["mismatches"] = mismatches
        out["too_big"] = error(lambda: ep.send(payload(MTU + 1)))
        t0 = time.monotonic()
        out["recv_timeout"] = error(lambda: ep.recv(timeout=0.2))
        out["recv_timeout_s"] = round(time.monotonic() - t0, 3)
        out["recv_poll"] = error(lambda: ep.recv(timeout=0))
        out["select_idle"] = select.select([ep], [], [], 0.05)[0] == []
        out["gone_while_alive"] = ep.gone()
        ep.send(b"selected")
        out["select_ready"] = select.select([ep], [], [], 5.0)[0] == [ep]
        out["select_reply"] = ep.recv(timeout=0).decode()

        async def talk() -> bytes:
            await ep.asend(b"\x00async\x00")
            return await asyncio.wait_for(ep.arecv(), 5.0)

        out["async_reply"] = asyncio.run(talk()).hex()
    out["node_removed"] = gone(out["node"], 5.0)
    out["sysfs_removed"] = gone(sysfs, 5.0)
    # a dynamic local address; the remote tells us which one it saw
    with L.open_endpoint("pyopenamp-any", dst=0x2001) as ep:
        ep.send(b"abc\x00def")
        out["dynamic_reply"] = ep.recv(timeout=5.0).hex()
        out["dynamic_src"] = ep.src
    # no dst: the address of the channel the remote announced, looked up in sysfs
    with L.open_endpoint("pyopenamp-svc") as ep:
        out["by_name_dst"] = ep.dst
        ep.send(b"by name")
        out["by_name_reply"] = ep.recv(timeout=5.0).decode()
    out["left"] = [e.device for e in L.list_endpoint_devices() if e.ctrl]


def check_channels(result: dict[str, Any]) -> None:
    out: dict[str, Any] = {}
    result["channel_endpoints"] = out
    raw = L.find_channel("rpmsg-raw")
    with L.open_channel("rpmsg-raw") as ep:
        out["raw_node"] = str(ep.path)
        out["raw_info"] = [ep.name, ep.src, ep.dst]
        ep.send(b"raw \x00 hello")
        out["raw_reply"] = ep.recv(timeout=5.0).hex()
        out["second_open"] = error(lambda: L.RpmsgEndpoint(ep.path))
        out["get_flow"] = error(ep.outgoing_flow_restricted)
        out["set_flow"] = error(lambda: ep.set_incoming_flow_control(True))
    out["raw_node_stays"] = os.path.exists(out["raw_node"])
    with L.RpmsgEndpoint(out["raw_node"]) as ep:
        out["destroy_channel_ept"] = error(ep.destroy)
    out["raw_node_still_there"] = os.path.exists(out["raw_node"])
    out["raw_after"] = short(L.find_channel(raw.device))
    # a channel no driver wants: open_channel binds rpmsg_chrdev through driver_override
    out["svc_before"] = short(L.find_channel("pyopenamp-svc"))
    with L.open_channel("pyopenamp-svc") as ep:
        out["svc_node"] = str(ep.path)
        out["svc_info"] = [ep.name, ep.src, ep.dst]
        ep.send(b"bound")
        out["svc_reply"] = ep.recv(timeout=5.0).decode()
    out["svc_bound"] = short(L.find_channel("pyopenamp-svc"))
    out["svc_unbound"] = short(L.unbind_channel("pyopenamp-svc"))
    out["svc_node_removed"] = gone(out["svc_node"], 5.0)
    # bind explicitly, then open without binding
    out["svc_rebound"] = short(L.bind_channel("pyopenamp-svc"))
    with L.open_channel("pyopenamp-svc", bind=False) as ep:
        ep.send(b"again")
        out["svc_reply2"] = ep.recv(timeout=5.0).decode()
    out["bind_taken"] = error(lambda: L.bind_channel("rpmsg-tty"))
    out["bind_no_driver"] = error(
        lambda: L.bind_channel("rpmsg-raw", "no_such_driver", rebind=True)
    )
    out["raw_after_bad_bind"] = short(L.find_channel("rpmsg-raw"))
    L.unbind_channel("pyopenamp-svc")


def check_tty(result: dict[str, Any]) -> None:
    out: dict[str, Any] = {}
    result["tty"] = out
    replies = []
    with L.open_tty(channel="rpmsg-tty") as tty:
        out["node"] = str(tty.path)
        for line in TTY_LINES:
            tty.write(line + b"\n")
            replies.append(tty.readline(timeout=5.0).hex())
        out["idle"] = error(lambda: tty.read(timeout=0.1))
    out["sent"] = [line.hex() for line in TTY_LINES]
    out["replies"] = replies
    with L.open_tty(0) as tty:  # by index, as a second opener after the first closed
        tty.write(b"by index\n")
        out["by_index"] = tty.readline(timeout=5.0).hex()


def check_errors(result: dict[str, Any]) -> None:
    out: dict[str, Any] = {}
    result["errors"] = out
    out["find_missing"] = error(lambda: L.find_channel("no-such-service"))
    out["open_channel_missing"] = error(lambda: L.open_channel("no-such-service"))
    out["open_endpoint_missing"] = error(lambda: L.open_endpoint("no-such-service"))
    out["tty_missing"] = error(lambda: L.open_tty(channel="no-such-service"))
    out["ept_node_missing"] = error(lambda: L.RpmsgEndpoint("/dev/rpmsg77"))
    out["ctrl_missing"] = error(lambda: L.RpmsgCtrl("rpmsg_ctrl7"))
    before = {e.device for e in L.list_endpoint_devices()}
    # a local address a channel's driver holds: refused before a node is made
    raw = L.find_channel("rpmsg-raw")
    out["taken_by_channel"] = error(
        lambda: L.open_endpoint("pyopenamp-taken", src=raw.src, dst=0x2000)
    )
    out["taken_by_channel_left"] = sorted({e.device for e in L.list_endpoint_devices()} - before)
    # a local address another open endpoint holds: the kernel makes the node, then
    # refuses to open it (EINVAL), and a node that cannot be opened cannot be destroyed
    with L.open_endpoint("pyopenamp-first", src=0x3100, dst=0x2000) as first:
        out["in_use"] = error(lambda: L.open_endpoint("pyopenamp-second", src=0x3100, dst=0x2000))
        first.send(b"still works")
        out["first_still_works"] = first.recv(timeout=5.0).decode()
    left = [e for e in L.list_endpoint_devices() if e.device not in before]
    out["in_use_left"] = [e.to_json() for e in left]
    for e in left:  # the address is free now: what the error said to do works
        L.RpmsgEndpoint(e.node).destroy()
        out.setdefault("in_use_left_removed", []).append(gone(e.node, 5.0))
    # an endpoint without a destination: the kernel refuses to send
    with L.open_endpoint("pyopenamp-nodst", dst=L.RPMSG_ADDR_ANY) as ep:
        out["no_dst"] = error(lambda: ep.send(b"where to?"))
    with L.RpmsgCtrl(L.list_ctrls()[0].node) as ctrl:
        out["release_missing"] = error(lambda: ctrl.release_channel("no-such-service"))
        ctrl.create_channel("pyopenamp-local", 0x3200, 0x2000)
        out["created_channel"] = error(lambda: short(L.find_channel("pyopenamp-local")))
        ctrl.release_channel("pyopenamp-local", 0x3200, 0x2000)
        out["released_channel"] = error(lambda: L.find_channel("pyopenamp-local"))
    out["left"] = sorted({e.device for e in L.list_endpoint_devices()} - before)


def scenario_library(result: dict[str, Any]) -> None:
    result["openamp"] = openamp.__file__
    wait_channels({"rpmsg-raw", "pyopenamp-svc", "rpmsg-tty"})
    failed: dict[str, str] = {}
    result["failed"] = failed  # each check on its own: one failure does not hide the rest
    for check in (check_discovery, check_ctrl_endpoints, check_channels, check_tty, check_errors):
        t0 = time.monotonic()
        try:
            check(result)
        except Exception:
            failed[check.__name__] = traceback.format_exc()
        result.setdefault("timings", {})[check.__name__] = round(time.monotonic() - t0, 3)


# -- the command ---------------------------------------------------------------------------


def run_cli(*args: str) -> dict[str, Any]:
    """``python -m openamp rpmsg ARGS`` as a separate process, as a user would run it."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "openamp", "rpmsg", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out: dict[str, Any] = {
        "status": proc.returncode,
        "stderr": proc.stderr,
        "seconds": round(time.monotonic() - t0, 3),
    }
    try:
        out["json"] = json.loads(proc.stdout)
    except ValueError:
        out["stdout"] = proc.stdout
    return out


def start_cli(*args: str) -> subprocess.Popen[str]:
    """``python -m openamp rpmsg ARGS`` in the background (stdout and stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "openamp", "rpmsg", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cli_in_process(*args: str) -> dict[str, Any]:
    """The same command through ``openamp.cli.main`` in this process (no start-up cost)."""
    from openamp.cli import main as openamp_main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = openamp_main(["rpmsg", *args])
    out: dict[str, Any] = {"status": status, "stderr": stderr.getvalue()}
    try:
        out["json"] = json.loads(stdout.getvalue())
    except ValueError:
        out["stdout"] = stdout.getvalue()
    return out


def scenario_cli(result: dict[str, Any]) -> None:
    wait_channels({"rpmsg-raw", "rpmsg-openamp-demo-channel", "rpmsg-tty"})
    result["ls"] = run_cli("ls", "--json")
    result["ping_raw"] = run_cli("ping", "rpmsg-raw", "--count", "3", "--echo", "--json")
    # the rest in this process, through the command's main(): same code, no start-up cost
    result["ls_text"] = cli_in_process("ls")
    result["ping_demo"] = cli_in_process(
        "ping", "rpmsg-openamp-demo-channel", "--count", "3", "--size", "496", "--echo", "--json"
    )
    result["ping_missing"] = cli_in_process("ping", "no-such-service")
    result["left_after_ping"] = [e.device for e in L.list_endpoint_devices() if e.ctrl]
    created = cli_in_process(
        "ept", "create", "pyopenamp-cli", "--src", "0x3000", "--dst", "0x2000", "--json"
    )
    result["ept_create"] = created
    node = created["json"]["node"]
    result["ping_node"] = cli_in_process("ping", node, "--message", "via node", "--echo", "--json")
    result["send_node"] = cli_in_process("send", node, "--hex", "00ff00", "--json")
    result["ept_destroy"] = cli_in_process("ept", "destroy", node, "--json")
    result["node_removed"] = gone(node, 5.0)
    result["ping_tty"] = cli_in_process(
        "ping", "ttyRPMSG0", "--message", "tty\x00ping", "--echo", "--json"
    )
    result["bind"] = cli_in_process("bind", "rpmsg-openamp-demo-channel", "--json")
    result["ping_bound"] = cli_in_process(
        "ping", "rpmsg-openamp-demo-channel", "--count", "2", "--echo", "--json"
    )
    result["unbind"] = cli_in_process("unbind", "rpmsg-openamp-demo-channel", "--json")


# -- a remote that goes away ---------------------------------------------------------------


def scenario_vanish(result: dict[str, Any]) -> None:
    steps: dict[str, Any] = {}
    result["steps"] = steps
    wait_channels({"rpmsg-raw", "rpmsg-tty"})
    first = L.find_channel("rpmsg-raw")
    ep1 = L.open_channel("rpmsg-raw")
    ep1.send(b"hello")
    steps["echo1"] = ep1.recv(timeout=5.0).decode()
    # the remote destroys its endpoint (NS destroy): the channel goes, so does the node
    ep1.send(b"destroy")
    t0 = time.monotonic()
    steps["recv_after_destroy"] = error(lambda: ep1.recv(timeout=10.0))
    steps["recv_after_destroy_s"] = round(time.monotonic() - t0, 3)
    steps["send_after_destroy"] = error(lambda: ep1.send(b"more"))
    ep1.close()
    steps["channel1_removed"] = gone(first.path, 10.0)
    # announced again: a new channel; plus a ctrl endpoint and the tty
    second = wait_for(
        lambda: next(
            (c for c in L.list_channels() if c.name == "rpmsg-raw" and c.device != first.device),
            None,
        ),
        10.0,
    )
    assert second is not None, "the second rpmsg-raw channel did not appear"
    wait_channels({"rpmsg-raw", "rpmsg-tty"})
    steps["channel2"] = second.device
    ep2 = L.open_channel(second.device)
    ctrl_ep = L.open_endpoint("pyopenamp-vanish", src=0x3000, dst=0x2000)
    tty = L.open_tty(channel="rpmsg-tty")
    ctrl_ep.send(b"ctrl")
    steps["ctrl_echo"] = ctrl_ep.recv(timeout=5.0).decode()
    tty.write(b"tty\n")
    steps["tty_echo"] = tty.readline(timeout=5.0).decode()
    ep2.send(b"hello again")
    steps["echo2"] = ep2.recv(timeout=5.0).decode()
    # the command, listening on the tty and on a temporary endpoint when the remote goes
    listeners = {
        "tty": start_cli("listen", "ttyRPMSG0"),
        "ctrl": start_cli("listen", "pyopenamp-listen", "--dst", "0x2000"),
    }
    for name, proc in listeners.items():
        assert proc.stdout is not None
        steps[f"listen_{name}_ready"] = proc.stdout.readline()
    # the remote vanishes (the backend drops the connection): errors, not hangs
    ep2.send(b"vanish")
    t0 = time.monotonic()
    steps["recv_after_vanish"] = error(lambda: ep2.recv(timeout=10.0))
    steps["recv_after_vanish_s"] = round(time.monotonic() - t0, 3)
    steps["send_after_vanish"] = error(lambda: ep2.send(b"anyone?", timeout=2.0))
    t0 = time.monotonic()
    steps["ctrl_recv_after_vanish"] = error(lambda: ctrl_ep.recv(timeout=10.0))
    steps["ctrl_recv_after_vanish_s"] = round(time.monotonic() - t0, 3)
    steps["ctrl_send_after_vanish"] = error(lambda: ctrl_ep.send(b"anyone?", timeout=2.0))
    t0 = time.monotonic()
    steps["tty_read_after_vanish"] = error(lambda: tty.read(timeout=10.0))
    steps["tty_read_after_vanish_s"] = round(time.monotonic() - t0, 3)
    steps["tty_write_after_vanish"] = error(lambda: tty.write(b"anyone?\n", timeout=2.0))
    steps["gone"] = [ep2.gone(), ctrl_ep.gone()]
    # closing destroys the ctrl endpoint: not again (a second removal crashes Linux 6.1)
    steps["close"] = [error(ep2.close), error(ctrl_ep.close), error(tty.close)]
    for name, proc in listeners.items():
        try:
            out, err = proc.communicate(timeout=10.0)
            status: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            status = None
        steps[f"listen_{name}"] = {"status": status, "stdout": out[-2000:], "stderr": err[-2000:]}
    steps["channels_after"] = wait_for(lambda: [] if not L.list_channels() else None, 10.0)
    steps["find_after"] = error(lambda: L.find_channel("rpmsg-raw"))
    steps["open_endpoint_after"] = error(lambda: L.open_endpoint("rpmsg-raw", dst=0x2000))


# -- the doctor and inspect on the real kernel ---------------------------------------------


def openamp_in_process(*args: str) -> dict[str, Any]:
    """``openamp ARGS`` through ``openamp.cli.main`` in this process."""
    from openamp.cli import main as openamp_main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = openamp_main(list(args))
    out: dict[str, Any] = {"status": status, "stderr": stderr.getvalue()}
    try:
        out["json"] = json.loads(stdout.getvalue())
    except ValueError:
        out["stdout"] = stdout.getvalue()
    return out


def scenario_doctor(result: dict[str, Any]) -> None:
    wait_channels({"rpmsg-raw", "rpmsg-openamp-demo-channel"})
    demo = "rpmsg-openamp-demo-channel"
    result["missing"] = openamp_in_process("doctor", "--board", "--service", "no-such", "--json")
    result["unbound"] = openamp_in_process("doctor", "--board", "--service", demo, "--json")
    result["bind"] = cli_in_process("bind", demo, "--json")
    result["bound"] = openamp_in_process("doctor", "--board", "--service", demo, "--json")
    result["raw"] = openamp_in_process("doctor", "--board", "--service", "rpmsg-raw", "--json")
    result["inspect"] = openamp_in_process("inspect", "--board", "--json")
    result["inspect_text"] = openamp_in_process("inspect", "--board")
    result["unbind"] = cli_in_process("unbind", demo, "--json")
    # the board commands load no simulation, even here
    result["modules"] = sorted(
        m for m in sys.modules if m.startswith(("openamp.platform", "openamp.services"))
    )
    # say goodbye on rpmsg-raw, so the remote can stop recording
    with L.open_endpoint("rpmsg-raw") as ept:
        ept.send(b"bye")


SCENARIOS: dict[str, Callable[[dict[str, Any]], None]] = {
    "library": scenario_library,
    "cli": scenario_cli,
    "vanish": scenario_vanish,
    "doctor": scenario_doctor,
}


def main() -> int:
    scenario, out = sys.argv[1], Path(sys.argv[2])
    result: dict[str, Any] = {"scenario": scenario, "ok": False}
    try:
        SCENARIOS[scenario](result)
        result["ok"] = True
    except BaseException as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

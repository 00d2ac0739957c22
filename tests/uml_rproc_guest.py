"""Programs that run *inside* the UML guest for ``test_uml_rproc.py``.

The ``adapter`` scenario drives remoteproc0 -- our ``uml_rproc`` processor -- with the
board adapter (:class:`openamp.linux.RemoteProc`) and the ``openamp rproc`` command, as
a user on a board would: firmware, start, trace, the resource table, an endpoint to the
firmware, a crash the kernel is told about through debugfs, a crash of the firmware
itself (it dies on the message ``crash``), recovery on and off, coredumps, stop, and
the character device.  What it saw goes into the JSON result.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openamp.linux as L
from openamp.cli import main as openamp_main

CHANNEL = "rpmsg-openamp-demo-channel"


def wait(probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def dmesg() -> str:
    return subprocess.run(["dmesg"], capture_output=True, text=True).stdout


def channel_addr() -> int | None:
    for c in L.list_channels():
        if c.name == CHANNEL:
            return c.dst
    return None


def echo_once(payload: bytes) -> bytes:
    with L.open_endpoint(CHANNEL, timeout=5) as ep:
        ep.send(payload)
        return ep.recv(timeout=5)


def error_of(fn: Callable[[], Any]) -> dict[str, Any]:
    try:
        fn()
    except Exception as exc:
        return {
            "type": type(exc).__name__,
            "errno": getattr(exc, "errno", None),
            "message": str(exc),
        }
    return {"type": None}


def cli(*args: str) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = openamp_main(list(args))
    return {"code": code, "out": out.getvalue(), "err": err.getvalue()}


def coredumps() -> list[Path]:
    return sorted(Path("/sys/class/devcoredump").glob("devcd*"))


def scenario_adapter(result: dict[str, Any]) -> None:
    s: dict[str, Any] = {}
    result["steps"] = s
    os.system(
        "grep -q ' /sys/kernel/debug ' /proc/mounts || mount -t debugfs none /sys/kernel/debug"
    )
    rp = L.RemoteProc("remoteproc0")
    s["name"] = rp.name
    s["initial"] = {
        "state": str(rp.state),
        "firmware": rp.firmware,
        "recovery": rp.recovery,
        "coredump": rp.coredump,
    }
    s["search_path"] = [str(p) for p in rp.firmware_path[:1]]
    s["ls"] = cli("rproc", "ls", "--json")
    rp.firmware = "crashy.elf"
    s["start"] = str(rp.start(timeout=10))
    s["addr"] = wait(channel_addr)
    s["echo"] = echo_once(b"hello remote").decode()
    s["trace"] = rp.trace(0)
    s["trace_names"] = rp.trace_names()
    table = rp.resource_table() or []
    s["rsc"] = [e.to_json() for e in table]
    s["firmware_while_running"] = error_of(lambda: setattr(rp, "firmware", "echo.elf"))
    s["status"] = cli("rproc", "status", "remoteproc0", "--json")

    # a crash the kernel hears of through debugfs, with a coredump
    rp.coredump = "enabled"
    before = len(coredumps())
    rp.trigger_crash("watchdog")
    s["after_kernel_crash"] = str(rp.wait_state("running", timeout=15))
    wait(lambda: len(coredumps()) > before, 10)
    dumps = coredumps()
    s["coredumps"] = len(dumps) - before
    if dumps:
        data = (dumps[-1] / "data").read_bytes()
        s["coredump_head"] = data[:4].hex()
        s["coredump_size"] = len(data)
        (dumps[-1] / "data").write_text("1")  # free it, as a user done with it does
    s["addr_after_kernel_crash"] = wait(channel_addr)
    s["echo_after_kernel_crash"] = echo_once(b"again").decode()

    # the firmware itself dies: the processor reports the crash
    rp.coredump = "disabled"
    with contextlib.suppress(Exception), L.open_endpoint(CHANNEL, timeout=5) as ep:
        ep.send(b"crash")
        time.sleep(0.5)
    s["crashes_seen"] = wait(lambda: dmesg().count("crash detected in") >= 2, 15) and True
    s["after_firmware_crash"] = str(rp.wait_state("running", timeout=15))
    s["addr_after_firmware_crash"] = wait(channel_addr)
    s["echo_after_firmware_crash"] = echo_once(b"still here").decode()

    # recovery off: the processor stays crashed until asked
    rp.recovery = False
    rp.trigger_crash("mmufault")
    s["crashed_state"] = str(rp.wait_state("crashed", timeout=10))
    s["stop_while_crashed"] = error_of(rp.stop)
    rp.recover()
    s["recovered_state"] = str(rp.wait_state("running", timeout=15))
    rp.recovery = True

    s["stop"] = str(rp.stop(timeout=10))
    s["channels_after_stop"] = [c.name for c in L.list_channels()]
    s["traces_after_stop"] = rp.trace_names()

    # the command, as a user types it
    s["cli_start"] = cli("rproc", "start", "remoteproc0")
    s["cli_state"] = str(rp.state)
    s["cli_trace"] = cli("rproc", "trace", "remoteproc0")
    s["cli_stop"] = cli("rproc", "stop", "remoteproc0")
    s["cli_stopped"] = str(rp.state)

    # the character device: start and stop without sysfs
    with rp.open_cdev() as cdev:
        cdev.command("start")
        s["cdev_started"] = str(rp.wait_state("running", timeout=10))
        cdev.command("stop")
        s["cdev_stopped"] = str(rp.wait_state("offline", timeout=10))
    s["dmesg"] = [line for line in dmesg().splitlines() if "remoteproc" in line]


def main() -> int:
    scenario, out = sys.argv[1], Path(sys.argv[2])
    result: dict[str, Any] = {"scenario": scenario, "ok": False}
    try:
        {"adapter": scenario_adapter}[scenario](result)
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

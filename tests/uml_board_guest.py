"""Programs that run *inside* the UML guest for ``test_uml_board.py``.

``python3 -s uml_board_guest.py SCENARIO RESULT.json`` (``PYTHONPATH`` = this checkout's
``src``).  The ``programs`` scenario runs the Linux host programs of
:mod:`openamp.linux.programs` in this process, one after the other, each against the
service our remote announces for it (the test's host side serves them in the same
order): ``echo_test --signed-char``, ``echo_test``, ``mat_mul_demo -n 2 --seed 42`` and
``proxy_app``.  Their output and results go into the JSON file.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import openamp.linux as L
from openamp.linux.programs import DEMO_CHANNEL, echo_test, mat_mul_demo, proxy_app

PROXY_INPUT = b"Alice\n"


def fresh_channel(timeout: float = 20.0) -> L.Channel:
    """Wait for a ``rpmsg-openamp-demo-channel`` no driver has taken yet (the remote's
    next service: the previous channel was bound to rpmsg_chrdev by its program)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in L.list_channels():
            if c.name == DEMO_CHANNEL and c.driver is None:
                return c
        time.sleep(0.02)
    raise AssertionError(f"no fresh {DEMO_CHANNEL} within {timeout} s: {L.list_channels()}")


def destroy_ctrl_endpoints() -> list[str]:
    """What a careful user does after a program (the C programs leave their endpoint
    device behind, and the next one would find it first): ``rpmsg_destroy_ept``."""
    gone = []
    for ep in L.list_endpoint_devices():
        if ep.ctrl is not None and ep.node.exists():
            with L.RpmsgEndpoint(ep.node, info=ep) as e:
                e.destroy()
            gone.append(ep.node.name)
    return gone


def run(program: Callable[..., Any], **kw: Any) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    result = program(out=out, err=err, **kw)
    return {"output": out.getvalue(), "errors": err.getvalue(), "result": asdict(result)}


def scenario_programs(result: dict[str, Any], workdir: Path) -> None:
    steps: dict[str, Any] = {}
    result["steps"] = steps
    fresh_channel()
    steps["echo_signed"] = run(echo_test, signed_char=True)
    steps["cleanup1"] = destroy_ctrl_endpoints()
    fresh_channel()
    steps["echo"] = run(echo_test)
    steps["cleanup2"] = destroy_ctrl_endpoints()
    fresh_channel()
    steps["matrix"] = run(mat_mul_demo, rounds=2, seed=42)
    steps["cleanup3"] = destroy_ctrl_endpoints()
    fresh_channel()
    r, w = os.pipe()
    os.write(w, PROXY_INPUT)
    os.close(w)
    console_r, console_w = os.pipe()  # the remote's console output (its fd 1)
    os.chdir(workdir)
    try:
        steps["proxy"] = run(proxy_app, stdin=r, stdout=console_w, start_delay=0.1, timeout=20.0)
    finally:
        os.close(r)
        os.close(console_w)
    with os.fdopen(console_r, "rb") as console:
        steps["proxy_console"] = console.read().decode()
    remote_file = workdir / "remote.file"
    steps["remote_file"] = remote_file.read_text() if remote_file.exists() else None


def read_until(tty: L.TtyStream, want: bytes, timeout: float = 5.0) -> bytes:
    """Bytes from ``tty`` until they end with ``want`` (or ``timeout`` s)."""
    got = b""
    deadline = time.monotonic() + timeout
    while not got.endswith(want) and time.monotonic() < deadline:
        try:
            got += tty.read(timeout=max(0.01, deadline - time.monotonic()))
        except Exception:
            break
    return got


def write_when_bound(tty: L.TtyStream, data: bytes, timeout: float = 5.0) -> None:
    """Write once the channel knows the remote's address (EINVAL until then)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            tty.write(data)
            return
        except L.RequestRejectedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def wait_path(path: str, present: bool, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while os.path.exists(path) != present and time.monotonic() < deadline:
        time.sleep(0.02)
    return os.path.exists(path) == present


def scenario_multi(result: dict[str, Any], workdir: Path) -> None:
    """The STM32MP1 demos 1-5 with the board adapter instead of the shell tools."""
    steps: dict[str, Any] = {}
    result["steps"] = steps
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # demo 1 runs by itself: wait for its end
        names = {c.name for c in L.list_channels()}
        if {"rpmsg-tty", "rpmsg-raw"} <= names and "rpmsg-client-sample" not in names:
            break
        time.sleep(0.05)
    steps["channels"] = sorted(c.name for c in L.list_channels())
    assert wait_path("/dev/ttyRPMSG0", True), "no /dev/ttyRPMSG0"
    # demo 2
    with L.open_tty("/dev/ttyRPMSG0") as tty0:
        tty0.write(b"Hello Zephyr\n")
        steps["tty0"] = read_until(tty0, b"Hello Zephyr\n\0").hex()
        # demo 3: a tty channel Linux announces (rpmsg_export_dev rpmsg-tty 257 -1)
        with L.RpmsgCtrl("/dev/rpmsg_ctrl0") as ctrl:
            ctrl.create_channel("rpmsg-tty", 257, L.RPMSG_ADDR_ANY)
            steps["tty1_made"] = wait_path("/dev/ttyRPMSG1", True)
            with L.open_tty("/dev/ttyRPMSG1") as tty1:
                # The channel learns the remote's address from its first message
                # ("bound"); a write before that is refused with EINVAL, as on a board.
                # "bound" itself reaches the tty only if it was open when it came.
                write_when_bound(tty1, b"hello dev1\n")
                steps["tty1"] = read_until(tty1, b"hello dev1\n\0").hex()
            tty0.write(b"hello dev0\n")
            steps["tty0_again"] = read_until(tty0, b"hello dev0\n\0").hex()
            ctrl.release_channel("rpmsg-tty", 257, L.RPMSG_ADDR_ANY)
            steps["tty1_gone"] = wait_path("/dev/ttyRPMSG1", False)
            # demo 4: the raw channel's own endpoint device
            with L.open_channel("rpmsg-raw") as raw:
                raw.send(b"ping " + str(raw.path).encode())
                steps["raw"] = raw.recv(timeout=5).hex()
            # demo 5: endpoints to the fixed address 0x1
            replies = []
            for src in (100, 101, 103):
                ep = ctrl.create_endpoint(f"my_endpoint{src}", src, 1)
                with L.RpmsgEndpoint(ep.node, info=ep, destroy_on_close=True) as e:
                    e.send(b"ping " + str(ep.node).encode())
                    replies.append(e.recv(timeout=5).hex())
            steps["fixed"] = replies


def main() -> int:
    scenario, out = sys.argv[1], Path(sys.argv[2])
    result: dict[str, Any] = {"scenario": scenario, "ok": False}
    try:
        {"programs": scenario_programs, "multi": scenario_multi}[scenario](result, out.parent)
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

"""The debugging commands as a user runs them: --capture everywhere, monitor, the help."""

from __future__ import annotations

import json

import pytest

from conftest import run_openamp as openamp
from openamp.cli.commands import COMMANDS


@pytest.mark.parametrize(
    "command",
    [
        ["echo"],
        ["ping"],
        ["matrix"],
        ["proxy"],
        ["rpc"],
        ["sample"],
        ["bench"],
        ["demo"],
        ["rproc", "run"],
    ],
    ids=" ".join,
)
def test_every_command_that_runs_a_link_takes_capture(command: list[str]) -> None:
    r = openamp(*command, "--help")
    assert r.returncode == 0
    assert "--capture FILE" in r.stdout


def test_the_debugging_commands_are_listed() -> None:
    for name in ("capture", "inspect", "doctor", "monitor"):
        assert name in COMMANDS
    r = openamp("--help")
    assert "monitor" in r.stdout and "doctor" in r.stdout


def test_monitor_counts_a_live_link(vm_name: str, children) -> None:  # type: ignore[no-untyped-def]
    machine = ("--machine", "virtual", "--name", vm_name)
    mon = children.openamp("monitor", *machine, "--json", "--for", "20")
    assert "monitor: waiting for" in mon.stderr.readline()
    echo = children.openamp("echo", *machine, "--wait", "block")
    ping = openamp("ping", *machine, "--count", "50", "--wait", "block")
    assert ping.returncode == 0
    out, err = mon.communicate(timeout=30)
    echo.communicate(timeout=10)
    doc = json.loads(out)
    assert "removed" in doc["stopped"] or "no process" in doc["stopped"]
    echoed = [f for f in doc["flows"] if f["direction"] == "r2h" and f["dst"] == 0x400]
    assert echoed and echoed[0]["service"] == "rpmsg-openamp-demo-channel"
    seen = sum(f["messages"] for f in doc["flows"])
    assert seen + doc["missed"] >= 2 * 50  # seen or counted as missed
    assert [r["vring"] for r in doc["rings"]] == [0, 1]

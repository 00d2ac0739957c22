"""Every example in every ``openamp ... --help`` runs.

The examples are read from the parsers themselves (the lines of an epilog's "examples"
section that start with ``openamp``), so a new example is tested the day it is written.
Lines separated by a blank line are one session, run in order in a folder holding the
files the examples name (``firmware.elf``, ``table.yaml``, ``table.bin``); a line ending
in ``&`` runs in the background until the session's other lines are done (then it is
waited for, or interrupted as Ctrl-C would). Every machine name (``--name vm1``) is
replaced by a fresh unique one. Board examples run against a directory tree laid out
like a board's sysfs, with a stand-in kernel that answers the state file; ``--board``
examples of the debugging commands against one with a running remote and its channel.
Sessions on the C names (no ``--machine``, or ``linux-generic``) hold the fixed-names
lock.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from openamp.cli import build_parser
from openamp.cli.commands import COMMANDS
from openamp.metal.shm import unique_name

if TYPE_CHECKING:
    from test_linux_remoteproc import Board

ROOT = Path(__file__).resolve().parents[1]

BOARD = ("rproc ls", "rproc firmware", "rproc start", "rproc status", "rproc trace", "rproc stop")
"""Board examples this test runs against the fake board (``--sysfs``... added)."""
RUN_ELSEWHERE = {
    "sdt": "they name Lopper's inputs and a matching firmware: tests/test_sdt.py runs "
    "generate and check on Lopper's own files",
    "echo_test": "the Linux host programs need a board's kernel: tests/test_uml_board.py "
    "runs them inside the real kernel",
    "mat_mul_demo": "as echo_test",
    "proxy_app": "as echo_test",
}
"""Commands whose examples need inputs this test cannot make, and where they run."""
BOARD_IOCTL = "rpmsg "
"""``openamp rpmsg`` examples need the kernel's rpmsg ioctls and a remote behind them:
tests/test_linux_rpmsg.py runs each of those commands against a stand-in kernel, in
process (a subprocess cannot share its fake ioctl); here only ``rpmsg ls`` runs."""


@dataclass
class Session:
    command: str
    lines: list[str]

    @property
    def id(self) -> str:
        return f"{self.command}: {self.lines[0][:50]}"


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                out += _parsers(child)
    return out


def sessions() -> list[Session]:
    found: dict[tuple[str, ...], Session] = {}
    for command in COMMANDS:
        parser = build_parser([command])
        for p in _parsers(parser):
            epilog = p.epilog or ""
            if "examples" not in epilog:
                continue
            section = epilog.split("examples", 1)[1]
            block: list[str] = []
            groups: list[list[str]] = []
            for raw in section.splitlines()[1:]:
                line = raw.strip()
                if line.startswith("openamp "):
                    block.append(line.split("  #", 1)[0].strip())
                elif not line and block:
                    groups.append(block)
                    block = []
                elif line and not raw.startswith("  "):
                    break  # prose after the examples
            if block:
                groups.append(block)
            for group in groups:
                found.setdefault(tuple(group), Session(command, group))
    return list(found.values())


SESSIONS = [s for s in sessions() if s.command not in RUN_ELSEWHERE]


def test_the_commands_run_elsewhere_exist() -> None:
    assert set(RUN_ELSEWHERE) <= set(COMMANDS)


def test_every_command_has_examples_in_its_help() -> None:
    without = [
        command
        for command in COMMANDS
        if not any("\n  openamp " in (p.epilog or "") for p in _parsers(build_parser([command])))
    ]
    assert without == []


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from firmware_build import build_echo_firmware

    d = tmp_path_factory.mktemp("examples")
    shutil.copy(build_echo_firmware(tmp_path_factory.mktemp("fw")), d / "firmware.elf")
    (d / "table.yaml").write_text(
        "entries:\n"
        "  - carveout: {name: text, da: 0x10000000, pa: 0x10000000, len: 0x100000}\n"
        "  - trace: {name: trace0, da: 0x20000000, len: 0x1000}\n"
    )
    (d / "tests" / "conformance").mkdir(parents=True)
    shutil.copy(ROOT / "tests/conformance/e_final.bin.gz", d / "tests/conformance")
    subprocess.run(
        [sys.executable, "-m", "openamp", "rsc", "build", "table.yaml", "-o", "table.bin"],
        cwd=d,
        check=True,
        capture_output=True,
    )
    return d


def _board(root: Path) -> tuple[dict[str, str], object]:
    from test_linux_remoteproc import Board, FakeKernel

    board = Board(root / "board")
    board.add_remoteproc(0, name="m4", traces={0: "m4: booted\n"})
    (root / "build").mkdir(exist_ok=True)
    (root / "build" / "rproc-echo.elf").write_bytes(b"\x7fELF" + bytes(60))
    return _roots(board), FakeKernel(board)


def _roots(board: Board) -> dict[str, str]:
    """The command-line roots of ``board``'s trees, by option."""
    return {
        "--sysfs": str(board.sysfs),
        "--dev": str(board.dev),
        "--debugfs": str(board.debugfs),
        "--firmware-path": str(board.firmware),
    }


def _running_board(root: Path) -> dict[str, str]:
    """A board whose remote runs and announced rpmsg-client-sample, bound to its driver."""
    from test_linux_remoteproc import Board

    board = Board(root / "running-board")
    board.add_remoteproc(0, name="m4", state="running", firmware="rproc-echo.elf")
    (board.firmware / "rproc-echo.elf").write_bytes(b"\x7fELF" + bytes(60))
    v = board.add_virtio()
    board.add_channel(v, "rpmsg-client-sample", 0x400, 0x400, driver="rpmsg_client_sample")
    return _roots(board)


def _on_c_names(line: str) -> bool:
    words = line.split()
    if "--machine" in words:
        return words[words.index("--machine") + 1] == "linux-generic"
    return words[1] in ("echo", "ping") and "--shm" not in words


UNTIL_CTRL_C = ("--follow", "openamp monitor ")
"""Lines that run until interrupted (unless they have ``--for``): Ctrl-C after 1.5 s."""


def _argv(line: str, names: dict[str, str], roots: dict[str, str]) -> list[str]:
    words = shlex.split(line)
    assert words[0] == "openamp"
    for i, word in enumerate(words[:-1]):
        if word == "--name":
            words[i + 1] = names.setdefault(words[i + 1], unique_name("openamp-vm"))
    argv = [sys.executable, "-m", "openamp", *words[1:]]
    if "--board" in words:
        return argv + [
            a for option in ("--sysfs", "--debugfs", "--dev") for a in (option, roots[option])
        ]
    if roots:
        # the roots each board command takes (see add_board_options)
        wanted = ["--sysfs", "--dev"]
        if words[1] == "rproc":
            wanted.append("--debugfs")
            if words[2] in ("firmware", "start", "status"):
                wanted.append("--firmware-path")
        for option in wanted:
            argv += [option, roots[option]]
    return argv


@pytest.mark.parametrize("session", SESSIONS, ids=lambda s: s.id)
def test_the_help_example_runs(
    session: Session, sandbox: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    lines = [line.removesuffix("&").strip() for line in session.lines]
    background = [line.endswith("&") for line in session.lines]
    board = any(line.removeprefix("openamp ").startswith(BOARD) for line in lines)
    if any(line.removeprefix("openamp ").startswith(BOARD_IOCTL) for line in lines):
        lines = [line for line in lines if line == "openamp rpmsg ls"]
        background = [False] * len(lines)
        board = True
    cwd = tmp_path
    for f in sandbox.iterdir():
        if f.is_dir():
            shutil.copytree(f, cwd / f.name)
        else:
            shutil.copy(f, cwd / f.name)
    roots: dict[str, str] = {}
    kernel = None
    if board:
        roots, kernel = _board(cwd)
        kernel.__enter__()  # type: ignore[attr-defined]
    elif any(" --board" in line for line in lines):
        roots = _running_board(cwd)
    if any(_on_c_names(line) for line in lines):
        request.getfixturevalue("fixed_names")
    names: dict[str, str] = {}
    started: list[tuple[str, subprocess.Popen[str]]] = []
    try:
        for line, bg in zip(lines, background):
            argv = _argv(line, names, roots)
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            if bg:
                started.append((line, proc))
                time.sleep(0.3)  # as a person would: start it, then type the next line
                continue
            if any(u in line for u in UNTIL_CTRL_C) and "--for" not in line:
                time.sleep(1.5)
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
            out, err = proc.communicate(timeout=180)
            assert proc.returncode in (0, 130), f"$ {line}\n{out}\n{err}"
        for line, proc in started:
            try:
                out, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGINT)  # it serves until stopped: Ctrl-C
                out, err = proc.communicate(timeout=20)
            assert proc.returncode in (0, 130), f"$ {line} &\n{out}\n{err}"
    finally:
        for _line, proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        if kernel is not None:
            kernel.__exit__(None, None, None)  # type: ignore[attr-defined]
        for name in names.values():
            for path in (f"/dev/shm/{name}.shm", f"/tmp/{name}.event", f"/tmp/{name}.ctl"):
                if os.path.exists(path):
                    os.unlink(path)
                    pytest.fail(f"{session.id} left {path} behind")


def test_the_examples_are_found() -> None:
    lines = [line for s in SESSIONS for line in s.lines]
    assert "openamp ping --machine virtual --name vm1 --count 1000 --size 496" in lines
    assert any(re.match(r"openamp rproc run echo --name lab &", line) for line in lines)

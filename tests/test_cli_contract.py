"""One contract for every ``openamp`` command: usage errors exit 2 before anything
connects, ``-v``/``-q`` anywhere, ``--json`` on every command that reports, Ctrl-C in
``rproc run`` is a clean stop, and a firmware of your own boots from where you are."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run_openamp as openamp
from openamp.cli import global_flags

# -- usage errors: exit 2, a message, no traceback, nothing started --------------------

BAD_INPUT = [
    (["demo", "nosuch"], "no demo nosuch"),
    (["demo", "echo", "--count", "-5"], "must be at least 1"),
    (["echo", "--machine", "virtual"], "--machine virtual needs --name NAME"),
    (["ping", "--name", "vm1"], "--name only applies to --machine virtual"),
    (["proxy", "--root", "/nonexistent"], "--root /nonexistent: no such directory"),
    (["rpc", "--root", "/nonexistent"], "--root /nonexistent: no such directory"),
    (["echo", "--timeout", "1e400"], "finite number >= 0"),
    (["echo", "--timeout", "-1"], "finite number >= 0"),
    (["ping", "--timeout", "nan"], "finite number >= 0"),
    (["echo", "--count", "many"], "not a whole number"),
    (["echo", "--buffer-size", "8"], "buffer size must be 32.."),
    (["ping", "--size", "496", "--buffer-size", "256"], "17..240 bytes"),
    (["ping", "--size", "16"], "17..496 bytes"),
    (["matrix", "--count", "0"], "must be at least 1"),
    (["sample", "--count", "-1"], "must be at least 1"),
    (["bench", "rtt", "--runs", "0"], "must be at least 1"),
    (["bench", "idle", "--idle-seconds", "0"], "more than 0"),
    (["rproc", "run", "python:"], "python: needs a module or a file"),
    (["rproc", "run", "python:not a module"], "neither a module path"),
    (["rproc", "run", "python:no_such_firmware_module"], "no module 'no_such_firmware_module'"),
    (["rproc", "run", "my_firmware.py"], "boot it as python:my_firmware.py"),
    (["rproc", "run", "no/such/file.elf"], "no such file"),
    (["rproc", "run", "echo", "--memory-size", "12"], "memory size must be"),
    (["rproc", "run", "echo", "--for", "0"], "more than 0"),
    (["rproc", "trace", "0", "--interval", "0"], "more than 0"),
    (["rpmsg", "listen", "rpmsg0", "--for", "-3"], "finite number >= 0"),
    (["rpmsg", "ping", "rpmsg0", "--count", "0"], "must be at least 1"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT, ids=lambda v: " ".join(v)[:40])
def test_a_usage_error_exits_2_with_a_message_and_no_traceback(
    argv: list[str], message: str
) -> None:
    r = openamp(*argv)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""  # nothing ran: no status line, no machine


def test_a_usage_error_does_not_touch_the_peer_waiting_on_the_machine(children, vm_name) -> None:
    echo = children.openamp("echo", "--machine", "virtual", "--name", vm_name, "--count", "3")
    bad = openamp("ping", "--machine", "virtual", "--name", vm_name, "--size", "9999")
    assert bad.returncode == 2
    good = openamp("ping", "--machine", "virtual", "--name", vm_name, "--count", "3")
    assert good.returncode == 0, good.stdout + good.stderr
    rc, out, _ = children.result(echo)
    assert rc == 0 and "3 messages" in out


# -- -v and -q anywhere -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "verbosity", "rest"),
    [
        (["-v", "demo"], 1, ["demo"]),
        (["demo", "-vv", "echo"], 2, ["demo", "echo"]),
        (["echo", "--count", "2", "-q"], -1, ["echo", "--count", "2"]),
        (["echo", "--quiet", "--verbose", "--verbose"], 1, ["echo"]),
        (["rpmsg", "send", "rpmsg0", "--", "-v"], 0, ["rpmsg", "send", "rpmsg0", "--", "-v"]),
    ],
)
def test_verbosity_flags_are_taken_from_anywhere_before_a_double_dash(
    argv: list[str], verbosity: int, rest: list[str]
) -> None:
    assert global_flags(argv) == (verbosity, rest)


def test_quiet_after_the_options_silences_the_status_lines(children, vm_name) -> None:
    echo = children.openamp("echo", "--machine", "virtual", "--name", vm_name, "-q")
    r = openamp("ping", "--machine", "virtual", "--name", vm_name, "--count", "5", "-q")
    assert r.returncode == 0, r.stderr
    assert "waiting for" not in r.stdout and "Error count = 0" in r.stdout
    rc, out, _ = children.result(echo)
    assert out.splitlines() == [line for line in out.splitlines() if "echoed" in line]


def test_every_help_lists_the_options_that_go_anywhere() -> None:
    for argv in (["--help"], ["echo", "--help"], ["rproc", "run", "--help"]):
        out = openamp(*argv).stdout
        assert "-v, --verbose" in out and "-q, --quiet" in out, argv


# -- --json on every command that reports -------------------------------------------------


def test_demo_count_means_the_same_for_every_demo() -> None:
    # the sample's remote is told the count too, so it destroys its endpoint on time
    r = openamp("demo", "sample", "echo", "--count", "20")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "20 of 20 messages echoed, 0 errors; the remote destroyed its endpoint" in r.stdout


def test_demo_json_reports_each_demo() -> None:
    r = openamp("demo", "echo", "matrix", "--count", "5", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert [d["name"] for d in data["demos"]] == ["echo", "matrix"]
    assert data["ok"] and data["passed"] == 2


@pytest.mark.parametrize("command", ["echo", "matrix", "sample"])
def test_a_host_and_its_remote_both_print_json(children, vm_name, command: str) -> None:
    remote_cmd = "echo" if command == "echo" else command
    host_cmd = "ping" if command == "echo" else command
    role = [] if command == "echo" else ["--role", "device"]
    remote = children.openamp(
        remote_cmd, *role, "--machine", "virtual", "--name", vm_name, "--count", "5", "--json"
    )
    r = openamp(host_cmd, "--machine", "virtual", "--name", vm_name, "--count", "5", "--json")
    assert r.returncode == 0, r.stderr
    host = json.loads(r.stdout)
    assert host["ok"] and host["sent"] == 5
    rc, out, err = children.result(remote)
    assert rc == 0, err
    assert "stop_reason" in json.loads(out)


def json_after_status_lines(text: str) -> dict[str, object]:
    start = 0 if text.startswith("{") else text.index("\n{") + 1
    value = json.loads(text[start:])
    assert isinstance(value, dict)
    return value


def test_proxy_prints_its_summary_as_json_on_stderr(children, vm_name, tmp_path: Path) -> None:
    remote = children.openamp(
        "proxy", "--role", "device", "--machine", "virtual", "--name", vm_name, "--json"
    )
    host = openamp(
        "proxy", "--machine", "virtual", "--name", vm_name, "--root", str(tmp_path), "--json"
    )
    assert host.returncode == 0, host.stderr
    assert json_after_status_lines(host.stderr)["ok"] is True  # stdout: the remote's console
    rc, out, err = children.result(remote)
    assert rc == 0 and json.loads(out)["ok"] is True, err


def test_rpc_client_prints_json(children, vm_name, tmp_path: Path) -> None:
    server = children.openamp(
        "rpc", "--machine", "virtual", "--name", vm_name, "--root", str(tmp_path), "--json"
    )
    client = openamp("rpc", "--machine", "virtual", "--name", vm_name, "--role", "device", "--json")
    assert client.returncode == 0, client.stdout + client.stderr
    assert json.loads(client.stdout)["terminated"] is True
    rc, out, err = children.result(server)
    summary = json_after_status_lines(err)  # stdout is the client's console
    assert rc == 0 and summary["errors"] == 0 and "terminate" in summary["stop_reason"]


def test_rproc_run_prints_json_lines() -> None:
    r = openamp("rproc", "run", "echo", "--for", "0.5", "--json")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "machine" and kinds[-1] == "finished"
    assert {"state", "service", "trace"} <= set(kinds)
    assert events[-1]["exit_status"] == 0 and events[-1]["crashes"] == 0


def test_rsc_check_and_build_print_json(tmp_path: Path) -> None:
    spec = tmp_path / "table.yaml"
    spec.write_text("entries:\n  - trace: {name: trace0, da: 0x20000000, len: 0x1000}\n")
    out = tmp_path / "table.bin"
    built = openamp("rsc", "build", str(spec), "-o", str(out), "--json")
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["entries"] == 1
    checked = openamp("rsc", "check", str(out), "--json")
    assert checked.returncode == 0
    assert json.loads(checked.stdout)["verdict"] == "sound"


# -- rproc run: Ctrl-C, crashes, your own firmware ----------------------------------------


def run_until(proc: subprocess.Popen[str], text: str) -> str:
    assert proc.stdout is not None
    seen = ""
    while text not in seen:
        line = proc.stdout.readline()
        assert line, f"{proc.args} ended before printing {text!r}:\n{seen}"
        seen += line
    return seen


def test_ctrl_c_in_rproc_run_stops_the_firmware_cleanly(tmp_path: Path) -> None:
    # A terminal sends SIGINT to its whole foreground process group.
    proc = subprocess.Popen(
        [sys.executable, "-m", "openamp", "rproc", "run", "echo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        seen = run_until(proc, "announced")
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    out = seen + out
    assert proc.returncode == 0, out + err
    assert "interrupted: stopping the firmware" in out
    assert "crashed" not in out and "Traceback" not in err and "KeyboardInterrupt" not in err


FIRMWARE = """\
from openamp.firmware.context import FirmwareContext
from openamp.services.echo import EchoService

import helper  # a module next to the firmware


def main(ctx: FirmwareContext) -> int:
    print(helper.GREETING)
    EchoService(ctx.rpmsg).run()
    return 0
"""

CRASHING = """\
def main(ctx):
    print("about to fail", flush=True)
    raise RuntimeError("boom in the firmware")
"""


@pytest.fixture
def firmware_dir(tmp_path: Path) -> Path:
    d = tmp_path / "fw"
    d.mkdir()
    (d / "my_firmware.py").write_text(FIRMWARE)
    (d / "helper.py").write_text('GREETING = "hello from my firmware"\n')
    (d / "crashing.py").write_text(CRASHING)
    return d


def test_your_own_firmware_boots_by_module_name_from_its_folder(firmware_dir: Path) -> None:
    r = openamp("rproc", "run", "python:my_firmware", "--for", "1", cwd=firmware_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "firmware: hello from my firmware" in r.stdout
    assert "service 'rpmsg-openamp-demo-channel' announced" in r.stdout


def test_your_own_firmware_boots_by_file_path_from_another_folder(firmware_dir: Path) -> None:
    path = os.path.relpath(firmware_dir / "my_firmware.py", firmware_dir.parent)
    r = openamp("rproc", "run", f"python:{path}", "--for", "1", cwd=firmware_dir.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "firmware: hello from my firmware" in r.stdout


def test_your_own_firmware_boots_as_a_module_of_a_package(firmware_dir: Path) -> None:
    package = firmware_dir / "fwpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "upper.py").write_text(FIRMWARE.replace("import helper", "from .. import helper"))
    (firmware_dir / "__init__.py").write_text("")  # so that `..` reaches helper
    r = openamp("rproc", "run", "python:fw.fwpkg.upper", "--for", "1", cwd=firmware_dir.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "firmware: hello from my firmware" in r.stdout


def test_the_console_script_finds_the_firmware_in_the_current_folder(firmware_dir: Path) -> None:
    # the installed `openamp` script has no current directory on its sys.path
    code = "import sys\nfrom openamp.cli import main\nsys.exit(main())"
    script = firmware_dir.parent / "bin" / "openamp"
    script.parent.mkdir()
    script.write_text(code)
    r = subprocess.run(
        [sys.executable, str(script), "rproc", "run", "python:my_firmware", "--for", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=firmware_dir,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "firmware: hello from my firmware" in r.stdout


def test_a_crash_shows_its_traceback_as_it_happens_and_exits_1(firmware_dir: Path) -> None:
    r = openamp("rproc", "run", "python:crashing", "--for", "10", cwd=firmware_dir)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    boom = lines.index("firmware: RuntimeError: boom in the firmware")
    crashed = next(i for i, line in enumerate(lines) if "-> crashed" in line)
    assert "firmware: Traceback (most recent call last):" in lines[:boom]
    assert boom < crashed  # shown when it happened, not in a summary at the end
    assert lines[-1].startswith("rproc: finished") and "1 crash(es)" in lines[-1]


def test_a_recovered_crash_still_exits_1(firmware_dir: Path) -> None:
    r = openamp("rproc", "run", "python:crashing", "--recovery", "--for", "1", cwd=firmware_dir)
    assert r.returncode == 1
    assert r.stdout.count("firmware: RuntimeError: boom in the firmware") >= 1


def test_the_console_streams_every_line_live(tmp_path: Path) -> None:
    (tmp_path / "chatty.py").write_text(
        textwrap.dedent(
            """\
            import time

            def main(ctx):
                for i in range(300):
                    print(f"line {i}")
                time.sleep(30)
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "openamp", "rproc", "run", "python:chatty"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        seen = run_until(proc, "firmware: line 299")  # while the firmware still runs
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=30)
    printed = [line for line in seen.splitlines() if line.startswith("firmware: line ")]
    assert printed == [f"firmware: line {i}" for i in range(300)]


C_OUTPUT = ("openamp echo_test", "openamp mat_mul_demo", "openamp proxy_app")
"""The Linux host programs of the OpenAMP demos print what the C programs print, byte
for byte (scripts written for those keep working): no --json."""


def test_every_command_has_json() -> None:
    import argparse

    from openamp.cli import build_parser

    def leaves(
        parser: argparse.ArgumentParser, path: str
    ) -> list[tuple[str, argparse.ArgumentParser]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [(path, parser)]
        out = []
        for name, child in subs[0].choices.items():
            out += leaves(child, f"{path} {name}")
        return out

    without = [
        path
        for path, parser in leaves(build_parser(), "openamp")
        if not any("--json" in a.option_strings for a in parser._actions)
    ]
    assert sorted(without) == sorted(C_OUTPUT)


def test_sdt_generate_and_check_print_json(tmp_path: Path) -> None:
    sdt = Path(__file__).parent / "sdt"
    out = tmp_path / "out"
    yaml, dts = str(sdt / "openamp-overlay-zynqmp.yaml"), str(sdt / "openamp_zu.dts")
    r = openamp("sdt", "generate", yaml, dts, "-o", str(out), "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    written = json.loads(r.stdout)["files"]
    assert any(f["path"].endswith("linux-boot.dts") for f in written)
    files = [str(p) for p in sorted(out.iterdir()) if p.suffix != ".c"]
    r = openamp("sdt", "check", yaml, dts, *files, "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] is True and report["findings"] == [] and report["compared"] > 0

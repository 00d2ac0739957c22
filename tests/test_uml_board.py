"""The seed's board demos against the real kernel (User-mode Linux).

Two ways in: over vhost-user (``VhostUserMachine``, as ``test_uml.py``), where the
multi-services remote and the remotes of the Linux host programs run in this process
behind the kernel's ``virtio_rpmsg_bus``; and through the kernel's remoteproc core with
our ``uml_rproc`` driver (:mod:`openamp.platform.uml_rproc`), where the guest runs the
demos' own shell -- ``echo start > .../state``, ``echo_test``, ``cat /dev/ttyRPMSG0 &``
-- exactly as ``openamp demo board`` does.  Remoteproc itself (sysfs, debugfs, crash,
recovery, coredump) is tested in ``test_uml_rproc.py``.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

import openamp
from openamp.linux.programs import GlibcRand
from openamp.platform.vhost_user import VhostUserMachine
from openamp.rpmsg.virtio import RpmsgVirtioDevice
from openamp.services.echo import EchoService
from openamp.services.matrix import Matrix, MatrixService, multiply
from openamp.services.multi import MultiServices
from openamp.services.proxy import run_proxy_demo
from openamp.tools.board_demos import (
    DEMOS,
    display,
    run_board_demo,
)
from test_uml import boot, short_dir
from uml_board_guest import PROXY_INPUT

__all__ = ["short_dir"]  # a fixture, imported from test_uml

pytestmark = [pytest.mark.uml, pytest.mark.timeout(1800)]

GUEST = Path(__file__).with_name("uml_board_guest.py")
SRC = Path(openamp.__file__).resolve().parent.parent


def text_of(run: Any) -> str:
    return display(run.transcript)


# -- over vhost-user: the remotes in this process ----------------------------------------------


def guest_program() -> str:
    return (
        f"env PYTHONPATH={shlex.quote(str(SRC))} PYTHONDONTWRITEBYTECODE=1 "
        f"{shlex.quote(sys.executable)} -s {shlex.quote(str(GUEST))}"
    )


def test_the_multi_services_remote_answers_the_seeds_demos_1_to_5(
    uml_kernel: Path, short_dir: Path, tmp_path: Path
) -> None:
    """STM32MP1 demos 1-5 with the board adapter in the guest (the shell session, with
    the seed's tools, runs through remoteproc below)."""
    lines: list[str] = []
    services: list[MultiServices] = []

    def host(machine: VhostUserMachine, rpmsg: RpmsgVirtioDevice) -> None:
        services.append(MultiServices(rpmsg, report=lines.append))

    run = boot(uml_kernel, short_dir, tmp_path, "multi", host, timeout=60, program=guest_program())
    assert run.uml.ok and run.guest["ok"], run.describe()
    steps = run.guest["steps"]
    assert steps["channels"] == ["rpmsg-raw", "rpmsg-tty"]  # the sample's is gone
    assert bytes.fromhex(steps["tty0"]) == b"TTY 0: Hello Zephyr\n\0"
    assert steps["tty1_made"] and steps["tty1_gone"]
    # "bound" (with its NUL) reaches the tty if it was open when it came
    assert bytes.fromhex(steps["tty1"]) in (
        b"bound\0TTY 1: hello dev1\n\0",
        b"TTY 1: hello dev1\n\0",
    )
    assert bytes.fromhex(steps["tty0_again"]) == b"TTY 0: hello dev0\n\0"
    raw = bytes.fromhex(steps["raw"])
    assert re.fullmatch(rb"from ept 0x0402: ping /dev/rpmsg\d+\0", raw), raw
    fixed = [bytes.fromhex(r) for r in steps["fixed"]]
    assert all(re.fullmatch(rb"from ept 0x0001: ping /dev/rpmsg\d+\0", r) for r in fixed)
    [service] = services
    stats = service.stats
    assert stats.sample_answers == 100 and stats.sample_ended
    assert stats.tty_bound == [0x400]  # the seed: lowest free, the sample's old address
    assert stats.tty_answers == [2, 1] and stats.tty_unbound == 1
    assert stats.raw_answers == {0x402: 1, 0x1: 3}
    assert lines[-1] == "OpenAMP Linux sample client responder ended"
    log = run.uml.kernel_log
    numbers = [int(n) for n in re.findall(r"rpmsg_client_sample \S+: incoming msg (\d+)", log)]
    assert numbers == list(range(1, 101))
    assert "destroying channel rpmsg-client-sample addr 0x400" in log


def test_the_linux_host_programs_against_our_remotes(
    uml_kernel: Path, short_dir: Path, tmp_path: Path
) -> None:
    """echo_test (both char signednesses), mat_mul_demo and proxy_app in the guest."""
    served: dict[str, Any] = {}

    def host(machine: VhostUserMachine, rpmsg: RpmsgVirtioDevice) -> None:
        served["echo_signed"] = EchoService(rpmsg).run(timeout=60)
        served["echo"] = EchoService(rpmsg).run(timeout=60)
        served["matrix"] = MatrixService(rpmsg).run(timeout=60)
        served["proxy"] = run_proxy_demo(rpmsg, report=lambda line: None, timeout=20)

    run = boot(
        uml_kernel, short_dir, tmp_path, "programs", host, timeout=120, program=guest_program()
    )
    assert run.uml.ok and run.guest["ok"], run.describe()
    steps = run.guest["steps"]

    signed, plain = steps["echo_signed"], steps["echo"]
    assert "Echo Test Round 0 Test Results: Error count = 0\r\n" in plain["output"]
    assert plain["result"]["errors"] == 0 and plain["result"]["received"] == 472
    # x86's signed char: every message is "corrupt" at index 0, as the C build reports
    assert "Echo Test Round 0 Test Results: Error count = 472\r\n" in signed["output"]
    assert signed["output"].count(" \r\n Data corruption at index 0 \r\n") == 472
    # the second echo service got the next address round-robin: 0x401
    assert (
        "main():143 app_rpmsg_create_ept: rpmsg-openamp-demo-channel[src=0,dst=0x401]\n"
        in (plain["output"])
    )
    assert "current drv override = (null)\n\n" in plain["output"]
    for name in ("echo_signed", "echo"):
        stats = served[name]
        assert stats.messages == 472 and stats.stop_reason == "shutdown message"
        assert stats.bytes == sum(16 + n for n in range(1, 473))

    matrix = steps["matrix"]
    assert matrix["result"]["rounds"] == 2 and served["matrix"].requests == 2
    gen = GlibcRand(42)  # the same seed each round, as C re-seeds with the time
    expected = []
    for _ in range(2):
        a = [[(gen.rand() & 0x7F) % 10 for _ in range(6)] for _ in range(6)]
        b = [[(gen.rand() & 0x7F) % 10 for _ in range(6)] for _ in range(6)]
        expected.append([list(row) for row in multiply(Matrix(a), Matrix(b)).elements])
        gen = GlibcRand(42)
    assert matrix["result"]["products"] == expected
    assert matrix["output"].count("Received RPMSG: 148 bytes\n") == 2
    assert matrix["output"].endswith(
        "\r\n Quitting application .. \r\n Matrix multiply application end \r\n"
    )

    proxy = steps["proxy"]
    assert proxy["result"]["terminated"] and proxy["result"]["status"] == 0, proxy
    assert "\r\nHost>RPC service started !!\r\n" in proxy["output"]
    assert "proxy demo: you typed 'Alice'" in steps["proxy_console"]
    assert "handle_read: 4, 6\n" in proxy["output"]  # the typed line, 6 bytes
    assert served["proxy"].echoed == PROXY_INPUT.decode().strip()
    assert steps["remote_file"] and steps["remote_file"].endswith("\n")


# -- through the kernel's remoteproc core: `openamp demo board` ------------------------------


def board(uml_kernel: Path, name: str, **kw: Any) -> Any:
    run = run_board_demo(DEMOS[name], kernel=uml_kernel, timeout=150, **kw)
    assert run.uml.completed, run.uml.failure()
    return run


def test_docker_demo1a_echo_test_reports_no_errors(uml_kernel: Path) -> None:
    run = board(uml_kernel, "echo")
    text = text_of(run)
    assert run.ok, text
    assert "Echo Test Round 0 Test Results: Error count = 0" in text
    assert "remoteproc remoteproc0: Booting fw image image_echo_test_zcu102" in text
    assert "creating channel rpmsg-openamp-demo-channel addr 0x400" in text
    [proc] = run.processors
    assert [b.firmware for b in proc.boots] == ["image_echo_test_zcu102"]
    assert proc.boots[0].spec == "echo" and proc.boots[0].returncode == 0  # shutdown message


def test_docker_demo1b_matrix_and_1c_proxy(uml_kernel: Path) -> None:
    matrix = board(uml_kernel, "matrix")
    assert matrix.ok, text_of(matrix)
    proxy = board(uml_kernel, "proxy")
    text = text_of(proxy)
    assert proxy.ok, text
    assert "proxy demo: you typed 'pyopenamp'" in text
    assert "Host>RPC service exiting !!" in text


def test_docker_demo2_starts_and_stops_two_processors(uml_kernel: Path) -> None:
    run = board(uml_kernel, "split", sleep_scale=0.1)
    text = text_of(run)
    assert run.ok, text
    r5_0, r5_1 = run.processors
    assert len(r5_0.boots) == 1 and len(r5_1.boots) == 4  # started, then 3 stop/start
    assert r5_1.console == ["Hello World from R5_1!"] * 4
    assert text.count("remoteproc remoteproc1: stopped remote processor r5f_1") == 4
    assert "remoteproc remoteproc0: stopped remote processor r5f_0" in text


def test_stm32mp1_demos_1_to_5_through_remoteproc(uml_kernel: Path) -> None:
    run = board(uml_kernel, "multi-services")
    text = text_of(run)
    assert run.ok, text
    assert "running" in text.split("echo start >/sys/class/remoteproc/remoteproc0/state")[1]
    trace = text.split("trace0\n", 1)[1]
    assert trace.startswith("multi-services: booted, table at 0x1000\n")
    assert "OpenAMP[remote]  linux responder demo started" in trace
    assert "OpenAMP Linux sample client responder ended" in trace
    assert "ls: cannot access '/dev/ttyRPMSG*'" in text  # both ttys released
    assert "stopped remote processor m4" in text

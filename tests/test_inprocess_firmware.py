"""A firmware's ``main(ctx)`` runs unchanged on the in-process pair, in a thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from openamp.platform import InProcessPair
from openamp.services.echo import ECHO_SERVICE

UPPER = """\
from openamp.services import Service


class Upper(Service):
    SERVICE_NAME = "upper"

    def on_message(self, ept, data, src):
        ept.sendto(bytes(data).upper(), src)


def main(ctx):
    ctx.trace("upper: ready")
    Upper(ctx.rpmsg).serve()
    return 0
"""


def test_a_builtin_firmware_runs_in_process_and_stops_when_the_host_leaves() -> None:
    with InProcessPair().boot("echo") as fw:
        ept = fw.rpmsg.endpoint(ECHO_SERVICE, timeout=5.0)
        ept.send(b"in a thread")
        assert ept.recv(timeout=5.0) == b"in a thread"
    assert fw.exit_code == 0 and not fw.running
    assert fw.trace_lines[-1].endswith("stopped: the host destroyed its endpoint")


def test_a_firmware_file_runs_in_process(tmp_path: Path) -> None:
    path = tmp_path / "upper_fw.py"
    path.write_text(UPPER)
    with InProcessPair().boot(f"python:{path}") as fw:
        ept = fw.rpmsg.endpoint("upper", timeout=5.0)
        ept.send(b"shout")
        assert ept.recv(timeout=5.0) == b"SHOUT"
    assert "upper: ready" in fw.trace_lines


def test_a_main_that_raises_is_reported_with_its_traceback() -> None:
    def main(ctx: object) -> int:
        raise RuntimeError("broken firmware")

    fw = InProcessPair().boot(main)
    assert fw.wait(5.0) == 1
    assert isinstance(fw.error, RuntimeError)
    assert "RuntimeError: broken firmware" in "".join(fw.console)
    fw.stop()


def test_a_firmware_that_never_waits_is_reported_by_stop() -> None:
    import threading

    release = threading.Event()

    def main(ctx: object) -> int:
        release.wait(10.0)  # ignores the host: a busy firmware
        return 0

    fw = InProcessPair().boot(main)
    assert fw.stop(timeout=0.2) is None and fw.running
    release.set()
    assert fw.wait(5.0) == 0


def test_a_firmware_that_is_not_there_is_a_usage_error() -> None:
    from openamp.errors import UsageError

    with pytest.raises(UsageError, match="no Python firmware 'no_such_fw_module'"):
        InProcessPair().boot("python:no_such_fw_module")

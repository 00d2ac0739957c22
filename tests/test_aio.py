"""asyncio on simulated endpoints: ``await ept.arecv()``, ``await ept.asend()`` and
``async for``, on the doorbell's descriptor, under a real event loop, on both sides."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from openamp.errors import OpenAMPTimeoutError
from openamp.platform import InProcessPair, VirtualMachine
from openamp.platform.process import ProcessMachine
from openamp.remoteproc import RprocState
from openamp.services.echo import ECHO_SERVICE


def test_a_host_awaits_the_echo_of_a_remote_process(children, vm_name) -> None:
    children.openamp("echo", "--machine", "virtual", "--name", vm_name, "-q")

    async def talk(host: VirtualMachine) -> list[bytes]:
        ept = host.rpmsg.endpoint(ECHO_SERVICE, timeout=10.0)
        out: list[bytes] = []
        for n in range(20):
            await ept.asend(b"async %d" % n)
            out.append(await ept.arecv(timeout=5.0))
        return out

    with VirtualMachine(role="driver", name=vm_name) as host:
        echoed = asyncio.run(talk(host))
    assert echoed == [b"async %d" % n for n in range(20)]


def test_waiting_for_a_message_lets_other_tasks_run(children, vm_name) -> None:
    children.openamp("echo", "--machine", "virtual", "--name", vm_name, "-q")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def wait_in_vain(host: VirtualMachine) -> float:
        ept = host.rpmsg.endpoint(ECHO_SERVICE, timeout=10.0)
        task = asyncio.create_task(ticker())
        t0 = time.monotonic()
        with pytest.raises(OpenAMPTimeoutError):
            await ept.arecv(timeout=0.3)
        task.cancel()
        return time.monotonic() - t0

    with VirtualMachine(role="driver", name=vm_name) as host:
        waited = asyncio.run(wait_in_vain(host))
    assert waited >= 0.3
    assert ticks >= 10  # the loop ran the ticker while arecv waited on the doorbell


def test_async_for_yields_every_message_until_the_endpoint_is_destroyed() -> None:
    pair = InProcessPair()
    host, remote = pair.driver(), pair.device()
    sink = remote.create_endpoint("", src=0x400)
    ept = host.create_endpoint("", dst=0x400)

    async def collect() -> list[bytes]:
        for n in range(5):
            await ept.asend(b"m%d" % n)
        got: list[bytes] = []
        async for data in sink:
            got.append(data)
            if len(got) == 5:
                sink.destroy()
        return got

    assert asyncio.run(collect()) == [b"m0", b"m1", b"m2", b"m3", b"m4"]


FIRMWARE = """\
import asyncio

from openamp.firmware.context import FirmwareContext


async def serve(ctx: FirmwareContext) -> None:
    ept = ctx.rpmsg.create_endpoint("upper")
    async for data in ept:
        if data == b"bye":
            break
        await ept.asend(data.upper())


def main(ctx: FirmwareContext) -> int:
    asyncio.run(serve(ctx))
    return 0
"""


def test_a_firmware_serves_with_asyncio_and_the_host_awaits_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "upper_fw.py").write_text(FIRMWARE)
    monkeypatch.chdir(tmp_path)

    async def exchange(machine: ProcessMachine) -> list[bytes]:
        rproc = machine.remoteproc("python:upper_fw")
        rproc.start()
        ept = rproc.rpmsg.endpoint("upper", timeout=10.0)
        replies: list[bytes] = []
        for word in (b"hello", b"asyncio"):
            await ept.asend(word)
            replies.append(await ept.arecv(timeout=5.0))
        await ept.asend(b"bye")
        rproc.wait_state(RprocState.STOPPED, timeout=5.0)
        return replies

    with ProcessMachine() as machine:
        assert asyncio.run(exchange(machine)) == [b"HELLO", b"ASYNCIO"]
        assert not machine.rproc.crash_count, machine.console


def test_the_sans_io_core_loads_no_event_loop() -> None:
    code = textwrap.dedent(
        """\
        import sys
        import openamp.rpmsg.virtio, openamp.virtio.virtqueue, openamp.metal.wait
        print("asyncio" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    for module in ("rpmsg/core.py", "rpmsg/virtio.py", "virtio/virtqueue.py"):
        source = (Path(__file__).parents[1] / "src/openamp" / module).read_text()
        assert "import asyncio" not in source, module

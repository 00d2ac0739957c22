"""A test firmware for the UML remoteproc machine: the echo service, and a crash on demand.

It echoes every message on ``rpmsg-openamp-demo-channel``; the message ``crash`` kills
it at once (exit status 3, no clean-up), which the machine reports to the kernel as a
crash -- what a watchdog does for a firmware that died.
"""

from __future__ import annotations

import os

from openamp.firmware.context import FirmwareContext
from openamp.rpmsg.core import Endpoint
from openamp.services.echo import EchoService


class CrashyEcho(EchoService):
    def on_message(self, ept: Endpoint, data: memoryview, src: int) -> None:
        if bytes(data) == b"crash":
            os._exit(3)
        super().on_message(ept, data, src)


def main(ctx: FirmwareContext) -> int:
    service = CrashyEcho(ctx.rpmsg)
    ctx.trace(f"crashy: serving {service.endpoint.name!r} at {service.endpoint.addr:#x}")
    service.run()
    return 0

"""The echo firmware: the C ``rpmsg-echo`` remote as a Python firmware."""

from __future__ import annotations

from ..services.echo import EchoService
from .context import FirmwareContext


def main(ctx: FirmwareContext) -> int:
    """Serve the echo service until the host stops it."""
    service = EchoService(ctx.rpmsg)
    ctx.trace(f"echo: serving {service.endpoint.name!r} at {service.endpoint.addr:#x}")
    stats = service.run()
    ctx.trace(f"echo: {stats.messages} messages echoed; stopped: {stats.stop_reason}")
    return 0

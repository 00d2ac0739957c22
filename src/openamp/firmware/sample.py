"""The sample firmware: the C ``rpmsg-sample-echo`` remote as a Python firmware.

Boot it with ``ProcessMachine().remoteproc("python:openamp.firmware.sample")``.  It
announces ``rpmsg-client-sample``, echoes 100 messages, destroys its endpoint (NS
destroy) and exits; the steps go to the firmware's trace buffer.
"""

from __future__ import annotations

from ..services.sample import SampleEcho, log as service_log
from .context import FirmwareContext


def main(ctx: FirmwareContext) -> int:
    """Echo the host's messages until the 100th, then destroy the endpoint."""
    with ctx.log_to_trace(service_log, "sample"):
        service = SampleEcho(ctx.rpmsg)
        ctx.trace(f"sample: serving {service.endpoint.name!r} at {service.endpoint.addr:#x}")
        stats = service.run()
    ctx.trace(f"sample: {stats.messages} messages echoed; stopped: {stats.stop_reason}")
    return 0

"""The sample firmware: the C ``rpmsg-sample-echo`` remote as a Python firmware.

Boot it with ``ProcessMachine().remoteproc("python:openamp.firmware.sample")``.  It
announces ``rpmsg-client-sample``, echoes 100 messages (the option ``count``, e.g.
``remoteproc(..., options={"count": "20"})``, changes that), destroys its endpoint (NS
destroy) and exits; the steps go to the firmware's trace buffer.
"""

from __future__ import annotations

from ..errors import UsageError
from ..services.sample import SAMPLE_COUNT, SampleEcho, log as service_log
from .context import FirmwareContext


def main(ctx: FirmwareContext) -> int:
    """Echo the host's messages until the 100th (or ``count``), then destroy the endpoint."""
    try:
        count = int(ctx.options.get("count", SAMPLE_COUNT))
    except ValueError:
        raise UsageError(f"option count={ctx.options['count']!r} is not a number") from None
    with ctx.log_to_trace(service_log, "sample"):
        service = SampleEcho(ctx.rpmsg, limit=count)
        ctx.trace(f"sample: serving {service.endpoint.name!r} at {service.endpoint.addr:#x}")
        stats = service.run()
    ctx.trace(f"sample: {stats.messages} messages echoed; stopped: {stats.stop_reason}")
    return 0

"""The matrix firmware: the C ``matrix_multiplyd`` remote as a Python firmware.

Boot it with ``ProcessMachine().remoteproc("python:openamp.firmware.matrix")``.  The
service's steps (first request, malformed requests, shutdown, the host's NS destroy)
are written to the firmware's trace buffer; per-request lines are not, they would fill it.
"""

from __future__ import annotations

from ..services.matrix import MatrixService, log as service_log
from .context import FirmwareContext


def main(ctx: FirmwareContext) -> int:
    """Multiply what the host sends until it stops the service."""
    with ctx.log_to_trace(service_log, "matrix"):
        service = MatrixService(ctx.rpmsg)
        ctx.trace(f"matrix: serving {service.endpoint.name!r} at {service.endpoint.addr:#x}")
        stats = service.run()
    ctx.trace(
        f"matrix: {stats.requests} requests answered, {stats.rejected} rejected; "
        f"stopped: {stats.stop_reason}"
    )
    return 0

"""The multi-services firmware: the STM32MP1 Zephyr "rpmsg multi services" sample.

Boot it with ``ProcessMachine().remoteproc("multi-services")``, or from an ELF on the
UML remoteproc machine (``openamp demo board multi-services``).  It creates the client
sample, tty and raw endpoints and the fixed endpoint 0x1 of
:class:`openamp.services.multi.MultiServices` and serves them until the host stops it;
what the Zephyr sample prints goes to the trace buffer, as the seed shows it in
``trace0``.

Options (``OPENAMP_FIRMWARE_OPTIONS``): ``trailing=zero|stale`` and
``address_policy=lowest-free|round-robin`` (see the service).
"""

from __future__ import annotations

from typing import cast

from ..services.multi import AddressPolicy, MultiServices, Trailing, log as service_log
from .context import FirmwareContext


def main(ctx: FirmwareContext) -> int:
    """Serve the four endpoints until the host goes away."""
    options = ctx.options
    with ctx.log_to_trace(service_log, "multi-services"):
        service = MultiServices(
            ctx.rpmsg,
            report=ctx.trace,
            trailing=cast(Trailing, options.get("trailing", "zero")),
            address_policy=cast(AddressPolicy, options.get("address_policy", "lowest-free")),
        )
        stats = service.run()
    ctx.trace(f"multi-services: stopped: {stats.stop_reason}")
    return 0

"""The proxy demo firmware: the C ``rpc_demo`` remote as a Python firmware.

It asks the host's proxy (:class:`openamp.services.proxy.ProxyServer`, or the C
``rpc_demod``) to create, write, read back and close ``remote.file``, prints a line on
the host's console, reads a line from it and prints it back, checks that ``../escape``
and ``/etc/passwd`` are refused, and sends the terminate request.  Every step goes to
the trace buffer.  The exit status is 0 when every step did what it should.
"""

from __future__ import annotations

from ..services.proxy import run_proxy_demo
from .context import FirmwareContext


def main(ctx: FirmwareContext) -> int:
    """Run the demo against the host's proxy; 0 when every step succeeded."""
    result = run_proxy_demo(ctx.rpmsg, report=ctx.trace)
    ctx.trace(f"proxy demo: {'PASS' if result.ok else 'FAIL'}")
    return 0 if result.ok else 1

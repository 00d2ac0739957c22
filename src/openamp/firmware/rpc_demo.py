"""The RPC demo firmware: the C ``linux_rpc_demo`` client as a Python firmware.

It plays the virtio device and the RPC client, as the C program does: it creates
``remote.file`` on the host's file server, writes a line, reads it back, asks the host
for three lines of input (name, age, a value for pi) and sends the termination request.
Every step goes to the trace buffer.  The host side is an
:class:`~openamp.services.rpc.RpcFileServer` on ``rproc.rpmsg`` (or the C
``linux_rpc_demod``, which loses the file descriptors; see ``docs/services/rpc.md``).

Exit status 0 when every step worked.
"""

from __future__ import annotations

from ..services.rpc import run_file_demo
from .context import FirmwareContext

TIMEOUT = 10.0
"""Seconds to wait for the server to bind and for each answer."""


def main(ctx: FirmwareContext) -> int:
    """Run the linux_rpc_demo sequence against the host's file server."""
    result = run_file_demo(ctx.rpmsg, timeout=TIMEOUT, report=ctx.trace)
    for problem in result.problems:
        ctx.trace(f"rpc: problem: {problem}")
    ctx.trace(f"rpc: {'PASS' if result.ok else 'FAIL'} in {result.elapsed * 1e3:.0f} ms")
    return 0 if result.ok else 1

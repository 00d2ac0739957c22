"""The hello firmware: a core that prints a greeting on its console and idles.

What the docker demo2 runs on each R5 of a split ZynqMP (``split_rpu0.elf``,
``split_rpu1.elf``: "bare-metal Hello World"): it prints ``Hello World`` with its name
(option ``name``, default ``hello``) on its console -- the process's stdout, the UART
of a UML remoteproc processor -- and in its trace buffer, then waits until the
processor is stopped.
"""

from __future__ import annotations

from ..services.base import serve_until
from .context import FirmwareContext


def main(ctx: FirmwareContext) -> int:
    """Greet, then idle until the host stops the processor."""
    name = ctx.options.get("name", "hello")
    line = f"Hello World from {name}!"
    print(line, flush=True)
    ctx.trace(line)
    serve_until(ctx.rpmsg, lambda: "", None)
    return 0

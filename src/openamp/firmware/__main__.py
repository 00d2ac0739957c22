"""``python -m openamp.firmware NAME``: run a Python firmware under the process driver."""

from __future__ import annotations

import sys
import traceback

from ..errors import OpenAMPError
from . import load_module
from .context import FirmwareContext


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(
            "usage: python -m openamp.firmware NAME   (started by the process driver)",
            file=sys.stderr,
        )
        return 2
    try:
        module = load_module(argv[0])
        ctx = FirmwareContext.from_env()
    except OpenAMPError as exc:
        print(f"firmware {argv[0]}: {exc}", file=sys.stderr)
        return 2
    try:
        ctx.trace(f"{argv[0]}: booted, table at {ctx.table_da:#x}")
        code = int(module.main(ctx) or 0)
    except OpenAMPError as exc:
        ctx.trace(f"{argv[0]}: error: {exc}")
        print(f"firmware {argv[0]}: {exc}", file=sys.stderr)
        code = 1
    except Exception as exc:
        # a bug in the firmware: the whole traceback, now, on the console the host shows
        ctx.trace(f"{argv[0]}: crashed: {type(exc).__name__}: {exc}")
        traceback.print_exc()
        sys.stderr.flush()
        code = 1
    finally:
        ctx.close()
    return code


sys.exit(main(sys.argv[1:]))

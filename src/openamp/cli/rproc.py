"""``openamp rproc``: remote processors — ``run`` boots a firmware on a virtual machine."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType

from ..platform.process import ProcessMachine
from ..remoteproc.core import StateEvent
from ..remoteproc.state import RprocState

EPILOG = """\
examples:
  openamp rproc run echo                      # the built-in Python echo firmware
  openamp rproc run ./build/echo_fw           # an ELF executable with a .resource_table
  openamp rproc run echo --recovery --for 30  # restart it if it crashes; stop after 30 s

FIRMWARE is a built-in Python firmware (echo), python:MODULE for your own Python
firmware module (it needs a main(ctx) function), or the path of an ELF executable for
this PC with a .resource_table section (see docs/remoteproc.md for the contract).
"""


def add_rproc_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp rproc``."""
    p = sub.add_parser("rproc", help="boot and manage remote processors")
    rsub = p.add_subparsers(dest="rproc_command", metavar="ACTION", required=True)
    run = rsub.add_parser(
        "run",
        help="boot a firmware on a virtual machine and stream its trace",
        description="Load FIRMWARE into a new virtual machine, start it as a process, "
        "print every state change, the services it announces and its trace buffer, "
        "until it stops, Ctrl-C, or --for SECONDS.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("firmware", metavar="FIRMWARE")
    run.add_argument("--recovery", action="store_true", help="restart the firmware if it crashes")
    run.add_argument("--for", dest="duration", type=float, metavar="SECONDS", help="stop after")
    run.add_argument("--memory-size", type=lambda s: int(s, 0), default=0x80000, metavar="BYTES")
    run.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long the firmware may take to connect (%(default)s)",
    )
    run.set_defaults(func=cmd_rproc_run)


def cmd_rproc_run(args: argparse.Namespace) -> int:
    """``openamp rproc run``."""
    stop = False

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    machine = ProcessMachine(memory_size=args.memory_size, start_timeout=args.timeout)
    rproc = machine.rproc

    def show(ev: StateEvent) -> None:
        print(f"rproc: {ev.old} -> {ev.new}" + (f" ({ev.reason})" if ev.reason else ""), flush=True)

    rproc.subscribe(show)
    printed = 0
    try:
        print(f"rproc: virtual machine {machine.name!r}, memory {args.memory_size:#x} bytes")
        machine.remoteproc(args.firmware, recovery=args.recovery)
        if rproc.table is not None:
            print(
                f"rproc: resource table at {rproc.table_da:#x}: "
                f"{len(rproc.table.entries)} entries, {len(rproc.vdevs)} vdev(s), "
                f"{len(rproc.traces)} trace buffer(s)"
            )
        rproc.start()
        deadline = None if args.duration is None else time.monotonic() + args.duration
        announced: set[str] = set()
        while not stop and (deadline is None or time.monotonic() < deadline):
            dev = rproc.rpmsg
            if dev is not None and rproc.state is RprocState.RUNNING:
                try:
                    dev.wait_until(lambda: False, 0.05)
                except Exception as exc:  # the remote went away; the watcher reports it
                    print(f"rproc: rpmsg: {exc}", flush=True)
                    time.sleep(0.05)
                for name, addr in dev.services.items():
                    if name not in announced:
                        announced.add(name)
                        print(f"rproc: service {name!r} announced at {addr:#x}", flush=True)
            else:
                time.sleep(0.05)
            if rproc.traces:
                text = rproc.trace()
                if len(text) > printed:
                    sys.stdout.write(text[printed:])
                    sys.stdout.flush()
                    printed = len(text)
            if rproc.state in (RprocState.STOPPED, RprocState.ERROR):
                break
            if rproc.state is RprocState.CRASHED and not args.recovery:
                break
    finally:
        signal.signal(signal.SIGINT, previous)
        final = rproc.state
        machine.close()
    for line in machine.console[-10:]:
        print(f"rproc: console: {line}")
    print(f"rproc: finished, last state {final}")
    return 1 if final in (RprocState.CRASHED, RprocState.ERROR) else 0

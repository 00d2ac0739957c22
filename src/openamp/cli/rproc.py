"""``openamp rproc``: remote processors.

``run`` boots a firmware on a virtual machine (a process on this PC).  The other actions
drive a real board's processors through the kernel's sysfs (:mod:`openamp.linux`):
``ls``, ``status``, ``start``, ``stop``, ``detach``, ``firmware``, ``recovery``,
``coredump`` and ``trace``.  Each takes ``--sysfs``/``--debugfs``/``--dev`` roots, so it
can be tried on a directory tree laid out like the kernel's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..linux.remoteproc import (
    COREDUMP_MODES,
    RemoteProc,
    describe_remoteprocs,
    list_remoteprocs,
)
from ..linux.rpmsg import format_addr, list_channels
from ..metal.deadline import Deadline
from ..tools.output import json_text, table
from .commands import help_for
from .common import add_capture_option, capture_from_args
from .values import byte_size, limit, positive_seconds, seconds

if TYPE_CHECKING:
    from ..remoteproc.core import StateEvent
    from ..tools.capture import Capture


def _app_of(firmware: str) -> str | None:
    """The protocol a built-in firmware's demo channel speaks (for the capture)."""
    name = firmware.removeprefix("python:")
    return name if name in ("echo", "matrix", "proxy", "rpc", "sample") else None


EPILOG = """\
examples:
  openamp rproc run echo --for 1              # the built-in Python echo firmware
  openamp rproc run echo --recovery --for 1   # restart it if it crashes; stop after 1 s
  openamp rproc run sample --for 1 --json     # events as JSON Lines
  openamp rproc run echo --name lab --for 1   # others reach it: openamp send --name lab ...

FIRMWARE is a built-in Python firmware (echo, matrix, proxy, rpc, sample),
python:MODULE or python:path/to/file.py for your own Python firmware (a main(ctx)
function; MODULE is found on the Python path or in the current directory, e.g.
`openamp rproc run python:my_firmware` next to my_firmware.py), or the path of an ELF
executable for this PC: with a .resource_table section (see docs/remoteproc.md), or a C
program for the Linux generic machine (./rpmsg-echo).  The firmware's output is shown
as it is printed, prefixed with "firmware:"; a crash shows its traceback at once.
Ctrl-C stops the firmware and ends the command as --for does.  The virtual machine is
named (--name, else a new name, printed): while it runs, `openamp send`, `listen` and
`console --machine virtual --name NAME` reach the firmware from other shells.
exit status: 0 when the firmware stopped or was stopped without crashing, 1 after a
crash (even one recovered from) or an error, 2 for a usage error.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp rproc``."""
    p = sub.add_parser("rproc", help=help_for("rproc"))
    rsub = p.add_subparsers(dest="rproc_command", metavar="ACTION", required=True)
    run = rsub.add_parser(
        "run",
        help="boot a firmware on a virtual machine and stream its trace",
        description="Load FIRMWARE into a new virtual machine, start it as a process, "
        "print every state change, the services it announces, its console and its trace "
        "buffer, until it stops, Ctrl-C, or --for SECONDS.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("firmware", metavar="FIRMWARE")
    run.add_argument("--recovery", action="store_true", help="restart the firmware if it crashes")
    run.add_argument(
        "--for", dest="duration", type=positive_seconds, metavar="SECONDS", help="stop after"
    )
    run.add_argument(
        "--memory-size",
        type=byte_size,
        default=0x80000,
        metavar="BYTES",
        help="the remote's memory (%(default)#x)",
    )
    run.add_argument(
        "--timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long the firmware may take to connect (%(default)s)",
    )
    run.add_argument(
        "--name",
        metavar="NAME",
        help="name of the virtual machine, for `openamp send/listen/console --name NAME` "
        "(default: a new unique one)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print events as JSON Lines: state, service, console, trace, finished",
    )
    add_capture_option(run)
    run.set_defaults(func=cmd_rproc_run, _validate=check_rproc_run)
    add_board_actions(rsub)


def check_rproc_run(args: argparse.Namespace) -> None:
    """The FIRMWARE argument names something bootable (before any machine exists)."""
    from ..errors import UsageError
    from ..firmware import BUILTIN, find_firmware

    if args.name is not None and (not args.name or "/" in args.name or args.name[0] == "."):
        raise UsageError(f"--name {args.name!r}: a machine name has no '/' and no leading '.'")
    fw: str = args.firmware
    if fw.startswith("python:"):
        find_firmware(fw.removeprefix("python:"))
    elif fw.endswith(".py"):
        raise UsageError(f"{fw!r} is Python source, not an ELF image: boot it as python:{fw}")
    elif fw not in BUILTIN and not os.path.exists(fw):
        raise UsageError(
            f"no firmware {fw!r}: no such file, and not a built-in Python firmware "
            f"({', '.join(sorted(BUILTIN))}); your own Python firmware is python:MODULE or "
            "python:path/to/file.py"
        )


class _Printer:
    """Lines for people or JSON Lines for scripts, whole lines from any thread."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._lock = threading.Lock()

    def emit(self, line_text: str, event: str, **fields: object) -> None:
        line = json.dumps({"event": event, **fields}) if self.as_json else line_text
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


def cmd_rproc_run(args: argparse.Namespace) -> int:
    """``openamp rproc run``."""
    with capture_from_args(args, None) as cap:
        return _run(args, cap)


def _run(args: argparse.Namespace, cap: Capture | None) -> int:
    """``openamp rproc run``, recording the host's link to ``cap`` if given."""
    import queue

    from ..platform.process import ProcessMachine
    from ..remoteproc.state import RprocState
    from ..rpmsg.core import RpmsgDevice
    from ..tools.relay import RelayServer

    out = _Printer(args.json)
    stop = False
    # lines and states for the relay's clients, from the reader and watcher threads
    for_relay: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    def console(line: str) -> None:
        out.emit(f"firmware: {line}", "console", line=line)
        for_relay.put(("console", line))

    hook = None if cap is None else cap.link(f"rproc {args.firmware}", app=_app_of(args.firmware))
    machine = ProcessMachine(
        name=args.name,
        memory_size=args.memory_size,
        start_timeout=args.timeout,
        console=console,
        capture=hook,
    )
    rproc = machine.rproc

    def device() -> RpmsgDevice | None:
        dev = rproc.vdev_devices.get(0)
        running = isinstance(dev, RpmsgDevice) and rproc.state is RprocState.RUNNING
        return dev if running and isinstance(dev, RpmsgDevice) else None

    relay = RelayServer(machine.name, device)
    previous = signal.signal(signal.SIGINT, on_sigint)

    def show(ev: StateEvent) -> None:
        text = f"rproc: {ev.old} -> {ev.new}" + (f" ({ev.reason})" if ev.reason else "")
        out.emit(text, "state", old=str(ev.old), new=str(ev.new), reason=ev.reason or None)
        for_relay.put(("state", str(ev.new)))

    def pass_on() -> None:
        while not for_relay.empty():
            kind, text = for_relay.get()
            if kind == "state":
                relay.state(text)
            else:
                relay.console(text, kind)
        relay.serve_once()

    rproc.subscribe(show)
    printed = 0
    try:
        out.emit(
            f"rproc: virtual machine {machine.name!r}, memory {args.memory_size:#x} bytes",
            "machine",
            name=machine.name,
            memory_size=args.memory_size,
        )
        machine.remoteproc(args.firmware, recovery=args.recovery)
        if rproc.has_table:
            out.emit(
                f"rproc: resource table at {rproc.table_da:#x}: "
                f"{len(rproc.table.entries)} entries, {len(rproc.vdevs)} vdev(s), "
                f"{len(rproc.traces)} trace buffer(s)",
                "table",
                address=rproc.table_da,
                entries=len(rproc.table.entries),
                vdevs=len(rproc.vdevs),
                traces=len(rproc.traces),
            )
        rproc.start()
        deadline = Deadline(args.duration)
        announced: set[str] = set()
        while not stop and not deadline.expired():
            dev = rproc.vdev_devices.get(0)
            if isinstance(dev, RpmsgDevice) and rproc.state is RprocState.RUNNING:
                try:
                    dev.wait_until(lambda: stop, 0.05)
                except Exception as exc:  # the remote went away; the watcher reports it
                    out.emit(f"rproc: rpmsg: {exc}", "rpmsg", error=str(exc))
                    time.sleep(0.05)
                for name, addr in dev.services.items():
                    if name not in announced:
                        announced.add(name)
                        out.emit(
                            f"rproc: service {name!r} announced at {addr:#x}",
                            "service",
                            name=name,
                            addr=addr,
                        )
            else:
                time.sleep(0.05)
            if rproc.traces:
                text = rproc.trace()
                if len(text) > printed:
                    new = text[printed:]
                    for line in new.splitlines():
                        out.emit(f"trace: {line}", "trace", line=line)
                        for_relay.put(("trace", line))
                    printed = len(text)
            pass_on()
            if rproc.state in (RprocState.STOPPED, RprocState.ERROR):
                break
            if rproc.state is RprocState.CRASHED and not args.recovery:
                break
        if stop:
            out.emit("rproc: interrupted: stopping the firmware", "interrupted")
        elif deadline.expired():
            out.emit(f"rproc: {args.duration} s passed: stopping the firmware", "expired")
    finally:
        final = rproc.state
        relay.close()
        machine.close()
        signal.signal(signal.SIGINT, previous)
    crashed = rproc.crash_count > 0 or final in (RprocState.CRASHED, RprocState.ERROR)
    status = 1 if crashed else 0
    crashes = f", {rproc.crash_count} crash(es)" if rproc.crash_count else ""
    out.emit(
        f"rproc: finished, last state {final}{crashes}",
        "finished",
        state=str(final),
        crashes=rproc.crash_count,
        interrupted=stop,
        exit_status=status,
    )
    return status


# -- a real board, through the kernel -----------------------------------------------------

EPILOG_BOARD = """\
examples (on a board, as root):
  openamp rproc ls
  openamp rproc firmware remoteproc0 ./build/rproc-echo.elf --install
  openamp rproc start remoteproc0
  openamp rproc status remoteproc0 --json
  openamp rproc trace remoteproc0 --follow
  openamp rproc stop remoteproc0
RPROC is an index (0), a device (remoteproc0) or the processor's name (m4).
"""


def add_board_options(p: argparse.ArgumentParser, *, firmware: bool = False) -> None:
    """The roots every board command reads, and ``--json``."""
    g = p.add_argument_group("where the kernel's files are")
    g.add_argument("--sysfs", default="/sys", metavar="ROOT", help="sysfs root (%(default)s)")
    g.add_argument("--debugfs", metavar="ROOT", help="debugfs root (default: SYSFS/kernel/debug)")
    g.add_argument("--dev", default="/dev", metavar="ROOT", help="device root (%(default)s)")
    if firmware:
        g.add_argument(
            "--firmware-path",
            action="append",
            metavar="DIR",
            help="firmware search directory, repeatable; the first one is where --install "
            "copies (default: firmware_class.path if set, then /lib/firmware)",
        )
    p.add_argument("--json", action="store_true", help="print JSON")


def _board_parser(
    rsub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    func: Callable[[argparse.Namespace], int],
    help_: str,
    description: str,
    *,
    rproc: str = "required",
    firmware: bool = False,
) -> argparse.ArgumentParser:
    p = rsub.add_parser(
        name,
        help=help_,
        description=description,
        epilog=EPILOG_BOARD,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if rproc == "required":
        p.add_argument("rproc", metavar="RPROC", help="remoteproc0, 0, or the processor's name")
    elif rproc == "optional":
        p.add_argument("rproc", metavar="RPROC", nargs="?", help="default: every processor")
    add_board_options(p, firmware=firmware)
    p.set_defaults(func=func)
    return p


def _firmware_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--install",
        action="store_true",
        help="copy a FIRMWARE file that is not in the search path into it",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="with --install: replace a different file"
    )
    p.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="do not check that the file exists in the search path and is an ELF image",
    )


def add_board_actions(rsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``ls``, ``status``, ``start``, ``stop``, ``detach``, ``firmware``,
    ``recovery``, ``coredump`` and ``trace``."""
    _board_parser(
        rsub,
        "ls",
        cmd_rproc_ls,
        "list the board's remote processors",
        "List /sys/class/remoteproc: device, name, state and firmware of each processor.",
        rproc="none",
    )
    _board_parser(
        rsub,
        "status",
        cmd_rproc_status,
        "everything about one processor (or all)",
        "State, firmware (and where the kernel finds it), recovery, coredump, trace "
        "buffers, the /dev/remoteprocN device and the rpmsg channels of the processor.",
        rproc="optional",
        firmware=True,
    )
    p = _board_parser(
        rsub,
        "start",
        cmd_rproc_start,
        "boot a processor (or attach to it)",
        "Write 'start' to the state file and wait until the processor runs. A processor "
        "that already runs is refused (the kernel would count a second start), unless "
        "--restart.",
        firmware=True,
    )
    p.add_argument("--firmware", metavar="FIRMWARE", help="set the firmware first")
    _firmware_options(p)
    p.add_argument("--restart", action="store_true", help="stop it first if it runs")
    p.add_argument(
        "--timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="wait for running (%(default)s; 0: don't wait)",
    )
    p = _board_parser(
        rsub,
        "stop",
        cmd_rproc_stop,
        "shut a processor down",
        "Write 'stop' to the state file and wait until it is offline.",
    )
    p.add_argument(
        "--timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="wait for offline (%(default)s; 0: don't wait)",
    )
    p = _board_parser(
        rsub,
        "detach",
        cmd_rproc_detach,
        "leave an attached processor running on its own",
        "Write 'detach': an attached processor (started by the bootloader) keeps running "
        "without Linux.",
    )
    p.add_argument("--timeout", type=seconds, default=10.0, metavar="SECONDS")
    p = _board_parser(
        rsub,
        "firmware",
        cmd_rproc_firmware,
        "show or set the firmware to boot",
        "Without FIRMWARE: show the firmware name and where the kernel finds it. With "
        "FIRMWARE (a name in the search path, or a file with --install): set it. The "
        "processor must be offline.",
        firmware=True,
    )
    p.add_argument("firmware", metavar="FIRMWARE", nargs="?")
    _firmware_options(p)
    p = _board_parser(
        rsub,
        "recovery",
        cmd_rproc_recovery,
        "show or set crash recovery",
        "enabled: the kernel reboots the processor after a crash; disabled: it stays "
        "crashed; recover: recover it once now.",
    )
    p.add_argument("setting", nargs="?", choices=["enabled", "disabled", "recover"])
    p = _board_parser(
        rsub,
        "coredump",
        cmd_rproc_coredump,
        "show or set the coredump mode",
        "disabled, enabled (a dump in /sys/class/devcoredump after a crash) or inline "
        "(recovery waits until the dump was read).",
    )
    p.add_argument("mode", nargs="?", choices=list(COREDUMP_MODES))
    p = _board_parser(
        rsub,
        "trace",
        cmd_rproc_trace,
        "print a trace buffer (debugfs)",
        "Print debugfs remoteproc/remoteprocN/traceI, the firmware's log (needs debugfs "
        "mounted and root).",
    )
    p.add_argument("--index", type=limit, default=0, help="trace buffer (%(default)s)")
    p.add_argument("--follow", action="store_true", help="keep printing new text (Ctrl-C)")
    p.add_argument("--interval", type=positive_seconds, default=0.5, metavar="SECONDS")
    p.add_argument(
        "--for",
        dest="duration",
        type=positive_seconds,
        metavar="SECONDS",
        help="with --follow: stop after",
    )


def _roots(args: argparse.Namespace) -> dict[str, Any]:
    debugfs = args.debugfs or str(Path(args.sysfs) / "kernel" / "debug")
    roots: dict[str, Any] = {"sysfs": args.sysfs, "debugfs": debugfs, "dev": args.dev}
    if getattr(args, "firmware_path", None):
        roots["firmware_path"] = args.firmware_path
    return roots


def _rproc(args: argparse.Namespace) -> RemoteProc:
    return RemoteProc(args.rproc, **_roots(args))


def _print_json(value: object) -> None:
    print(json_text(value))


def cmd_rproc_ls(args: argparse.Namespace) -> int:
    """``openamp rproc ls``."""
    procs = list_remoteprocs(**_roots(args))
    infos = [p.info() for p in procs]
    if args.json:
        _print_json(infos)
        return 0
    if not infos:
        print(f"no remote processors: {describe_remoteprocs(args.sysfs)}")
        return 0
    rows = [["DEVICE", "NAME", "STATE", "FIRMWARE"]]
    rows += [
        [i["device"], i["name"] or "?", i["state"] or "?", i["firmware"] or "?"] for i in infos
    ]
    print(table(rows))
    return 0


def _status(proc: RemoteProc, sysfs: str) -> dict[str, Any]:
    info = proc.info()
    fw = info["firmware"]
    found = proc.find_firmware(fw) if fw and fw != "unknown" else None
    info["firmware_file"] = str(found) if found else None
    info["channels"] = [
        c.to_json() for c in list_channels(sysfs=sysfs) if c.remoteproc == proc.device
    ]
    return info


def cmd_rproc_status(args: argparse.Namespace) -> int:
    """``openamp rproc status [RPROC]``."""
    procs = [_rproc(args)] if args.rproc else list_remoteprocs(**_roots(args))
    if not procs and not args.json:
        print(f"no remote processors: {describe_remoteprocs(args.sysfs)}")
        return 0
    infos = [_status(p, args.sysfs) for p in procs]
    if args.json:
        _print_json(infos[0] if args.rproc else infos)
        return 0
    for n, info in enumerate(infos):
        if n:
            print()
        where = info["firmware_file"] or "not found in " + ", ".join(info["firmware_path"])
        fw = info["firmware"] or "?"
        print(f"{info['device']} ({info['name'] or '?'}): {info['state'] or '?'}")
        print(f"  firmware   {fw}" + ("" if fw == "unknown" else f" ({where})"))
        print(f"  recovery   {info['recovery'] or '?'}")
        print(f"  coredump   {info['coredump'] or '?'}")
        traces = info["traces"]
        shown = "? (debugfs not readable)" if traces is None else ", ".join(traces) or "none"
        print(f"  traces     {shown}")
        print(f"  cdev       {info['cdev'] or 'none'}")
        print(f"  sysfs      {info['sysfs']}")
        for c in info["channels"]:
            print(
                f"  channel    {c['name']}  {format_addr(c['src'])} -> {format_addr(c['dst'])}"
                f"  driver {c['driver'] or 'none'}"
            )
    return 0


def cmd_rproc_start(args: argparse.Namespace) -> int:
    """``openamp rproc start RPROC``."""
    proc = _rproc(args)
    before = proc.state
    if args.firmware:
        proc.set_firmware(
            args.firmware, install=args.install, overwrite=args.overwrite, check=args.check
        )
    after = proc.start(timeout=args.timeout, restart=args.restart)
    if args.json:
        _print_json({**proc.info(), "previous_state": str(before)})
    else:
        print(f"{proc.device} ({proc.name}): {before} -> {after}, firmware {proc.firmware}")
    return 0 if after.value in ("running", "attached") or args.timeout == 0 else 1


def cmd_rproc_stop(args: argparse.Namespace) -> int:
    """``openamp rproc stop RPROC``."""
    proc = _rproc(args)
    before = proc.state
    after = proc.stop(timeout=args.timeout)
    if args.json:
        _print_json({**proc.info(), "previous_state": str(before)})
    else:
        note = " (it was not running)" if before == after else ""
        print(f"{proc.device} ({proc.name}): {before} -> {after}{note}")
    return 0


def cmd_rproc_detach(args: argparse.Namespace) -> int:
    """``openamp rproc detach RPROC``."""
    proc = _rproc(args)
    before = proc.state
    after = proc.detach(timeout=args.timeout)
    if args.json:
        _print_json({**proc.info(), "previous_state": str(before)})
    else:
        print(f"{proc.device} ({proc.name}): {before} -> {after}")
    return 0


def cmd_rproc_firmware(args: argparse.Namespace) -> int:
    """``openamp rproc firmware RPROC [FIRMWARE]``."""
    proc = _rproc(args)
    if args.firmware:
        proc.set_firmware(
            args.firmware, install=args.install, overwrite=args.overwrite, check=args.check
        )
    name = proc.firmware
    found = proc.find_firmware(name) if name != "unknown" else None
    if args.json:
        _print_json(
            {
                "device": proc.device,
                "firmware": name,
                "file": str(found) if found else None,
                "firmware_path": [str(p) for p in proc.firmware_path],
            }
        )
    else:
        where = (
            f" ({found})"
            if found
            else " (not in " + ", ".join(str(p) for p in proc.firmware_path) + ")"
        )
        print(f"{proc.device}: firmware {name}{'' if name == 'unknown' else where}")
    return 0


def cmd_rproc_recovery(args: argparse.Namespace) -> int:
    """``openamp rproc recovery RPROC [enabled|disabled|recover]``."""
    proc = _rproc(args)
    if args.setting == "recover":
        proc.recover()
    elif args.setting:
        proc.recovery = args.setting == "enabled"
    value = "enabled" if proc.recovery else "disabled"
    if args.json:
        _print_json({"device": proc.device, "recovery": value, "state": str(proc.state)})
    else:
        print(f"{proc.device}: recovery {value} (state {proc.state})")
    return 0


def cmd_rproc_coredump(args: argparse.Namespace) -> int:
    """``openamp rproc coredump RPROC [disabled|enabled|inline]``."""
    proc = _rproc(args)
    if args.mode:
        proc.coredump = args.mode
    if args.json:
        _print_json({"device": proc.device, "coredump": proc.coredump})
    else:
        print(f"{proc.device}: coredump {proc.coredump}")
    return 0


def cmd_rproc_trace(args: argparse.Namespace) -> int:
    """``openamp rproc trace RPROC``."""
    proc = _rproc(args)
    text = proc.trace(args.index)
    if args.json and not args.follow:
        _print_json({"device": proc.device, "trace": f"trace{args.index}", "text": text})
        return 0
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    if not args.follow:
        return 0
    shown = text
    deadline = Deadline(args.duration)
    while not deadline.expired():
        time.sleep(args.interval)
        text = proc.trace(args.index)
        # the buffer is a ring: print what was appended, or all of it after a wrap
        new = text[len(shown) :] if text.startswith(shown) else text
        if new:
            sys.stdout.write(new)
            sys.stdout.flush()
        shown = text
    return 0

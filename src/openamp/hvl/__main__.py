"""``python -m openamp.hvl monitor|remote``: run one side of a hypervisorless system.

examples (the two sides on one PC; ``openamp demo hvl`` does all of this for you)::

    python -m openamp.hvl monitor --shm hvl-lab --socket /tmp/hvl-lab.sock &
    python -m openamp.hvl remote --shm hvl-lab --socket /tmp/hvl-lab.sock

on the seed's ZynqMP, in place of ``lkvm`` (the R5 runs the remote)::

    python -m openamp.hvl monitor --uio /dev/uio0 --ipi /dev/umb --tap tap0 --devices rng,net
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from ..errors import OpenAMPError, PeerGoneError, UsageError
from ..metal.doorbell import Doorbell, UnixSocketDoorbell, UnixSocketServer
from ..metal.shm import SharedMemory
from ..metal.wait import wait_strategy, wait_strategy_names
from .layout import DEVICE_KINDS, SEED_PHYS_BASE, SEED_SHM_SIZE, HvlLayout


def _int(text: str) -> int:
    return int(text, 0)


def _shm_options(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--shm", metavar="NAME", help="POSIX shared memory /dev/shm/NAME")
    where.add_argument("--shm-file", metavar="PATH", help="a file to map instead")
    p.add_argument("--size", type=_int, default=SEED_SHM_SIZE, help="bytes to map (%(default)#x)")
    p.add_argument(
        "--phys-base", type=_int, default=SEED_PHYS_BASE, help="physical address (%(default)#x)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m openamp.hvl``."""
    parser = argparse.ArgumentParser(
        prog="python -m openamp.hvl",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=__doc__.split("\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="side", required=True)

    m = sub.add_parser("monitor", help="emulate the devices (kvmtool's PMM)")
    where = m.add_mutually_exclusive_group(required=True)
    where.add_argument("--shm", metavar="NAME", help="POSIX shared memory /dev/shm/NAME (created)")
    where.add_argument("--shm-file", metavar="PATH", help="a file to map instead")
    where.add_argument(
        "--uio", metavar="DEVICE", help="a UIO device's map 0 (/dev/uio0 on a board)"
    )
    m.add_argument("--size", type=_int, default=SEED_SHM_SIZE, help="bytes to map (%(default)#x)")
    m.add_argument(
        "--phys-base", type=_int, default=SEED_PHYS_BASE, help="physical address (%(default)#x)"
    )
    m.add_argument("--devices", default=",".join(DEVICE_KINDS), help="window order (%(default)s)")
    m.add_argument(
        "--pools-at", type=_int, default=None, help="offset of the first pool (0: as lkvm)"
    )
    ipi = m.add_mutually_exclusive_group(required=True)
    ipi.add_argument("--socket", metavar="PATH", help="listen here for the remote's IPI line")
    ipi.add_argument("--ipi", metavar="DEVICE", help="a mailbox device (/dev/umb of user-mbox.ko)")
    m.add_argument(
        "--tap", metavar="IFNAME", help="back the network device with this TAP interface"
    )
    m.add_argument("--no-console", action="store_true", help="drop console output, send no input")
    m.add_argument("--timeout", type=float, default=None, help="seconds to wait for the remote")

    r = sub.add_parser("remote", help="run the demo remote (the Zephyr image of demo4)")
    _shm_options(r)
    r.add_argument("--socket", required=True, metavar="PATH", help="the monitor's IPI socket")
    r.add_argument("--ip", default="192.168.200.2/24", help="the remote's address (%(default)s)")
    r.add_argument("--no-shell", action="store_true", help="boot, test, and exit")
    r.add_argument("--bench", metavar="WHAT", help="measure: comma-separated rng,console,ping")
    r.add_argument("--count", type=int, default=1000, help="bench: samples (%(default)s)")
    r.add_argument("--bytes", type=int, default=4096, help="bench: rng request size (%(default)s)")
    r.add_argument("--target", default="192.168.200.254", help="bench/ping target (%(default)s)")
    r.add_argument("--wait", choices=wait_strategy_names(), default="spin-then-block")
    r.add_argument("--timeout", type=float, default=10.0, help="seconds for start-up (%(default)s)")
    return parser


def _open_shm(args: argparse.Namespace, *, create: bool) -> SharedMemory:
    if getattr(args, "uio", None):
        from .board import open_uio

        return open_uio(args.uio, args.size)
    if args.shm:
        return SharedMemory.open(args.shm, args.size, create=create)
    return SharedMemory.open_file(args.shm_file, args.size, create=create)


def run_monitor(args: argparse.Namespace) -> int:
    """The monitor side, until the remote goes away (or Ctrl-C)."""
    from .monitor import ConsoleBackend, Monitor
    from .tap import TapBackend

    devices = tuple(d for d in args.devices.split(",") if d)
    layout = HvlLayout(
        devices=devices, phys_base=args.phys_base, shm_size=args.size, pools_at=args.pools_at
    )
    with contextlib.ExitStack() as stack:
        shm = stack.enter_context(_open_shm(args, create=True))
        if args.shm:
            shm.unlink_on_close = True
        net = stack.enter_context(contextlib.closing(TapBackend(args.tap))) if args.tap else None

        def out(data: bytes) -> None:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()

        console = None
        if not args.no_console:
            stdin = sys.stdin.fileno() if not sys.stdin.closed else None
            console = ConsoleBackend(out, stdin)
            stack.callback(console.close)
        monitor = Monitor(shm.region(phys_base=args.phys_base), layout, console=console, net=net)
        stack.callback(monitor.close)
        for line in monitor.banner():
            print(f"  Info: (hvl monitor) {line}", file=sys.stderr, flush=True)
        doorbell: Doorbell
        if args.ipi:
            from .board import UserMboxDoorbell

            doorbell = stack.enter_context(contextlib.closing(UserMboxDoorbell.open(args.ipi)))
        else:
            server = stack.enter_context(UnixSocketServer(args.socket))
            doorbell = stack.enter_context(server.accept(args.timeout))
        with contextlib.suppress(KeyboardInterrupt):
            monitor.serve(doorbell)
        print(f"  Info: (hvl monitor) stopped: {monitor.stats()}", file=sys.stderr, flush=True)
    return 0


def run_remote(args: argparse.Namespace) -> int:
    """The demo remote: boot log, entropy test, then the shell or the benchmarks."""
    from .firmware import RemoteFirmware, bench_line, run_benchmarks
    from .remote import HvlRemote

    with contextlib.ExitStack() as stack:
        # the monitor listens only once the memory and its windows exist
        doorbell = stack.enter_context(UnixSocketDoorbell.connect(args.socket, args.timeout))
        shm = stack.enter_context(_open_shm(args, create=False))
        remote = HvlRemote(
            shm.region(phys_base=args.phys_base), doorbell, wait=wait_strategy(args.wait)
        )
        stack.callback(remote.close)
        try:
            remote.start(probe_timeout=args.timeout)
            firmware = RemoteFirmware(remote, ip=args.ip)
            if args.bench:
                which = [w for w in args.bench.split(",") if w]
                run_benchmarks(
                    firmware,
                    which,
                    count=args.count,
                    size=args.bytes,
                    target=args.target,
                    report=lambda figures: print(bench_line(figures), flush=True),
                )
                return 0
            firmware.boot_log()
            ok = firmware.entropy_test()
            if args.no_shell:
                if remote.console is not None:
                    remote.console.flush()
                return 0 if ok else 1
            firmware.serve()
        except PeerGoneError:
            print("remote: the monitor went away", file=sys.stderr)
            return 0
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m openamp.hvl``."""
    args = build_parser().parse_args(argv)
    try:
        if args.side == "monitor":
            return run_monitor(args)
        return run_remote(args)
    except UsageError as exc:
        print(f"python -m openamp.hvl: error: {exc}", file=sys.stderr)
        return 2
    except (OpenAMPError, OSError) as exc:
        print(f"python -m openamp.hvl {args.side}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

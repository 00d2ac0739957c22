"""Options and helpers shared by the ``openamp`` subcommands.

The machine a command talks over is chosen by name from :data:`MACHINES` and the wait
strategy from :mod:`openamp.metal.wait`'s registry; both build their objects lazily, so
parsing a command line loads no machine.  Adding a machine is one row in
:data:`MACHINES`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import RingError, UsageError
from ..metal.shm import SHM_DIR, unique_name
from ..metal.wait import wait_strategy_names
from .values import buffer_size, seconds

if TYPE_CHECKING:
    from ..platform.layout import MachineLayout
    from ..platform.machine import SharedMemoryMachine
    from ..rpmsg.virtio import RpmsgVirtioDevice
    from ..tools.capture import Capture


def _linux_generic(args: argparse.Namespace, kw: dict[str, Any]) -> SharedMemoryMachine:
    from ..platform.linux_generic import LinuxGenericMachine

    check_machine(args)
    return LinuxGenericMachine(**kw)


def _virtual(args: argparse.Namespace, kw: dict[str, Any]) -> SharedMemoryMachine:
    from ..platform.virtual import VirtualMachine

    check_machine(args)
    return VirtualMachine(name=args.name, **kw)


def check_machine(args: argparse.Namespace) -> None:
    """The machine options together: ``--name`` goes with ``--machine virtual`` only."""
    if args.machine == "virtual" and not args.name:
        raise UsageError("--machine virtual needs --name NAME (the same on both sides)")
    if args.machine != "virtual" and args.name:
        raise UsageError("--name only applies to --machine virtual")
    if args.name and ("/" in args.name or args.name.startswith(".")):
        raise UsageError(f"--name {args.name!r}: a machine name has no '/' and no leading '.'")


def add_json_option(p: argparse.ArgumentParser) -> None:
    """``--json``: the result as one JSON document on stdout (status lines to stderr)."""
    p.add_argument(
        "--json",
        action="store_true",
        help="print the result as JSON on stdout; status lines go to stderr",
    )


def status_printer(args: argparse.Namespace) -> Callable[[str], None]:
    """Where a command's status lines go: nowhere with ``-q``, stderr with ``--json``
    (stdout is the JSON document), else stdout."""
    if getattr(args, "quiet", False):
        return lambda _line: None
    if getattr(args, "json", False):
        return lambda line: print(line, file=sys.stderr, flush=True)
    return print_status


def print_json(value: object) -> None:
    """Print ``value`` as the command's JSON document."""
    from ..tools.output import json_text

    print(json_text(value), flush=True)


MACHINES: dict[str, Callable[[argparse.Namespace, dict[str, Any]], SharedMemoryMachine]] = {
    "linux-generic": _linux_generic,
    "virtual": _virtual,
}
"""``--machine`` name -> factory(options, machine keywords); the factory imports the
platform when it runs."""


def print_status(line: str) -> None:
    """Print a status line at once (the default for :func:`connected`)."""
    print(line, flush=True)


def add_wait_option(g: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--wait``: how a blocked call waits (the strategies :mod:`openamp.metal.wait` knows)."""
    g.add_argument(
        "--wait",
        choices=wait_strategy_names(),
        default="spin-then-block",
        help="how a blocked call waits for the peer (default: %(default)s)",
    )


def add_machine_options(p: argparse.ArgumentParser, *, role: str) -> None:
    """The options every command that talks over a machine takes."""
    g = p.add_argument_group("machine")
    g.add_argument(
        "--machine",
        choices=list(MACHINES),
        default="linux-generic",
        help="linux-generic: the C reference's fixed /dev/shm/openamp.shm and "
        "/tmp/openamp.event.0 (pairs with the C demos); virtual: the same machine under "
        "--name, so several can run at once (default: %(default)s)",
    )
    g.add_argument("--name", help="name of the virtual machine (both sides must use the same)")
    g.add_argument(
        "--role",
        choices=["driver", "device"],
        default=role,
        help="virtio role: driver = host, device = remote (default: %(default)s)",
    )
    g.add_argument(
        "--socket",
        choices=["server", "client"],
        help="doorbell socket role; the server writes the resource table "
        "(default: the device is the server)",
    )
    g.add_argument(
        "--timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the peer to connect, bind and answer (default: %(default)s)",
    )
    add_wait_option(g)
    g.add_argument(
        "--event-idx",
        action="store_true",
        help="offer VIRTIO_RING_F_EVENT_IDX in the resource table (socket server): fewer "
        "notifications, for pyopenamp peers only; a C driver accepts it without using it",
    )
    g.add_argument(
        "--buffer-size",
        type=buffer_size,
        default=512,
        metavar="BYTES",
        help="driver role: rpmsg buffer size per direction, header included; "
        "the machine's memory grows to fit (default: %(default)s, as in C). "
        "Pass the same size on both sides",
    )
    g.add_argument(
        "--layout",
        metavar="MACHINE.json",
        help="the machine's memory map from a file (`openamp sdt generate` writes one per "
        "remote core, at the device tree's physical addresses) instead of the C layout",
    )
    add_capture_option(g)
    p.set_defaults(_validate=check_machine)


def add_capture_option(g: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--capture FILE``: record the link's events (pcapng, or JSON Lines for ``.jsonl``)."""
    g.add_argument(
        "--capture",
        metavar="FILE",
        help="record every message and event of the link to FILE: pcapng for Wireshark "
        "(with the dissector, docs/debugging.md), JSON Lines if FILE ends in .jsonl; "
        "`openamp capture show FILE` prints it",
    )


APP_OF_COMMAND = {
    "echo": "echo",
    "ping": "echo",
    "matrix": "matrix",
    "proxy": "proxy",
    "rpc": "rpc",
    "sample": "sample",
}
"""Which protocol the demo channel speaks for each command (the capture's hint)."""


@contextlib.contextmanager
def capture_from_args(
    args: argparse.Namespace, app: str | None, say: Callable[[str], None] = print_status
) -> Iterator[Capture | None]:
    """The :class:`~openamp.tools.capture.Capture` that ``--capture FILE`` asks for
    (None without it); closed, and its size reported through ``say``, at the end."""
    path = getattr(args, "capture", None)
    if not path:
        yield None
        return
    from ..tools.capture import open_capture

    cap = open_capture(path, app=app)
    try:
        yield cap
    finally:
        cap.close()
        say(f"capture: {cap.count} events written to {path}")


def layout_for(buffer_size: int) -> MachineLayout:
    """The C layout for 512-byte buffers, otherwise one sized for ``buffer_size``."""
    from ..platform.layout import LINUX_GENERIC, MachineLayout

    return LINUX_GENERIC if buffer_size <= 512 else MachineLayout.for_buffers(buffer_size)


def machine_from_args(
    args: argparse.Namespace, capture: Capture | None = None
) -> SharedMemoryMachine:
    """Build (not start) the machine the options describe; ``capture`` records its link."""
    from ..rpmsg.virtio import RpmsgVirtioConfig
    from ..virtio.ring import VIRTIO_RING_F_EVENT_IDX

    config = RpmsgVirtioConfig(args.buffer_size, args.buffer_size)
    layout = layout_for(args.buffer_size)
    if getattr(args, "layout", None):
        from ..platform.layout import load_layout

        layout = load_layout(args.layout)
    if getattr(args, "event_idx", False):
        layout = dataclasses.replace(
            layout, dfeatures=layout.dfeatures | 1 << VIRTIO_RING_F_EVENT_IDX
        )
    kw: dict[str, Any] = dict(
        role=args.role, socket=args.socket, wait=args.wait, config=config, layout=layout
    )
    if capture is not None:
        kw["capture"] = capture.link(f"{args.role} {args.name or args.machine}")
    return MACHINES[args.machine](args, kw)


@contextlib.contextmanager
def connected(
    args: argparse.Namespace, label: str, say: Callable[[str], None] | None = None
) -> Iterator[RpmsgVirtioDevice]:
    """Start the machine the options describe and yield its rpmsg device; close it at the end.

    ``say`` gets the status lines (where the machine is, that we wait for the peer);
    default: :func:`status_printer`.  With ``--capture FILE`` the link's events are
    recorded there.
    """
    say = say or status_printer(args)
    with capture_from_args(args, APP_OF_COMMAND.get(label), say) as cap:
        machine = machine_from_args(args, cap)
        try:
            say(f"{label}: {args.role}, socket {machine.socket_role}, {describe_machine(machine)}")
            say(f"{label}: waiting for the {'host' if args.role == 'device' else 'remote'} ...")
            yield machine.start(timeout=args.timeout)
        except RingError as exc:
            if "outside the shared buffers" in str(exc):
                raise RingError(
                    f"{exc}: the host's buffers lie outside this machine's memory, so the two "
                    "sides use different layouts; pass the same --buffer-size on both sides"
                ) from None
            raise
        finally:
            machine.close()


def describe_machine(m: SharedMemoryMachine) -> str:
    """One line naming the machine's memory and doorbell."""
    kib = m.layout.shm_size // 1024
    return f"{SHM_DIR}/{m.shm_name} ({kib} KiB), doorbell {m.event_path}"


@dataclass
class Remote:
    """A remote started as a child process (our echo service or a peer command)."""

    proc: subprocess.Popen[str]
    command: list[str]
    machine_name: str | None

    def finish(self, timeout: float = 5.0) -> tuple[int, str]:
        """Wait for the child (kill it after ``timeout`` s); return (exit code, output)."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return self.proc.returncode, out or ""

    def kill(self) -> None:
        """Stop the child now if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def python_echo_command(
    name: str,
    *,
    timeout: float,
    wait: str,
    count: int = 0,
    buffer_size: int = 512,
    sink: bool = False,
) -> list[str]:
    """The command line of a Python echo (or sink) remote on virtual machine ``name``."""
    cmd = [sys.executable, "-m", "openamp", "echo", "--machine", "virtual", "--name", name]
    cmd += ["--role", "device", "--socket", "server", "--timeout", str(timeout), "--wait", wait]
    cmd += ["--buffer-size", str(buffer_size)]
    if count:
        cmd += ["--count", str(count)]
    if sink:
        cmd.append("--sink")
    return cmd


@contextlib.contextmanager
def spawn_remote(
    *,
    peer: str | None,
    timeout: float,
    wait: str,
    buffer_size: int = 512,
    sink: bool = False,
    capture: Any = None,
) -> Iterator[tuple[Remote, SharedMemoryMachine]]:
    """Start a remote (``peer`` command, or our echo on a new virtual machine) and a host.

    Yields the child and the (not yet started) host machine, a virtio driver and socket
    client.  With ``peer`` the machine is the linux-generic one the C demos use.  On
    exit the host is closed, the child waited for or killed, and leftovers removed.
    ``capture`` (an event hook) records the host's link.
    """
    from ..platform.linux_generic import LinuxGenericMachine
    from ..platform.virtual import VirtualMachine
    from ..rpmsg.virtio import RpmsgVirtioConfig

    name: str | None
    if peer:
        command = shlex.split(peer)
        name = None
        host: SharedMemoryMachine = LinuxGenericMachine(
            role="driver", socket="client", wait=wait, capture=capture
        )
    else:
        name = unique_name("openamp-vm")
        command = python_echo_command(
            name, timeout=timeout, wait=wait, buffer_size=buffer_size, sink=sink
        )
        host = VirtualMachine(
            role="driver",
            name=name,
            socket="client",
            wait=wait,
            layout=layout_for(buffer_size),
            config=RpmsgVirtioConfig(buffer_size, buffer_size),
            capture=capture,
        )
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    remote = Remote(proc, command, name)
    try:
        yield remote, host
    finally:
        host.close()
        remote.finish(timeout=5.0)
        if name is not None:
            remove_virtual_leftovers(name)


def remove_virtual_leftovers(name: str) -> None:
    """Delete the shm file and socket of virtual machine ``name`` if a crash left them."""
    from ..platform.virtual import virtual_paths

    shm_name, event_path = virtual_paths(name)
    for path in (os.path.join(SHM_DIR, shm_name), event_path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def command_line(cmd: list[str]) -> str:
    """A command list as a shell-quoted string."""
    return " ".join(shlex.quote(c) for c in cmd)

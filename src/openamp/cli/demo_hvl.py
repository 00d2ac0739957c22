"""``openamp demo hvl``: the seed's demo4 — hypervisorless virtio — on this PC.

The monitor (the seed's ``lkvm --rsld --pmm``) runs here, the remote (the seed's Zephyr
on the R5) as a separate process, on one POSIX shared memory at the seed's physical
address, with a UNIX socket as the IPI line.  The remote's console is virtio-console
and is printed as it arrives.  Steps: the entropy test (``get_entropy test passed``),
``net iface``, the Linux side pings the remote at 192.168.200.2 with the real
``ping -c 3`` from a TAP interface in a network namespace of its own (as root; without
root a Python stand-in on a socket pair answers and pings instead, and the demo says
so), and the remote pings 192.168.200.254.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import UsageError


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """Options of ``openamp demo hvl`` (``--count`` is the number of pings each way)."""
    group.add_argument(
        "--no-tap",
        action="store_true",
        help="hvl: back the network device with a socket pair even as root",
    )


class _Console:
    """Prints the remote's console as it arrives and keeps our own lines apart from it."""

    def __init__(self) -> None:
        self.at_line_start = True

    def remote(self, data: bytes) -> None:
        text = data.decode(errors="replace")
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            self.at_line_start = text.endswith("\n")

    def say(self, line: str) -> None:
        if not self.at_line_start:
            sys.stdout.write("\n")
        print(f"== {line}", flush=True)
        self.at_line_start = True


def run(args: argparse.Namespace, names: list[str]) -> int:
    """Run the demo; 0 when every step that ran passed."""
    if names:
        raise UsageError(f"openamp demo hvl takes no demo names, got {' '.join(names)}")
    from ..errors import OpenAMPError
    from ..hvl.firmware import PROMPT
    from ..hvl.layout import HvlLayout
    from ..hvl.system import HvlSystem
    from ..tools.hvl import LINUX_IP, REMOTE_IP, linux_side

    count = args.count or 3
    timeout = args.timeout
    out = _Console()
    results: list[tuple[str, bool, str]] = []
    skipped: list[str] = []
    layout = HvlLayout()
    print("pyopenamp demo hvl: hypervisorless virtio (the seed's demo4) on this PC", flush=True)
    side = linux_side(prefer_tap=not args.no_tap)
    try:
        out.say(f"network: {side.describe()}")
        if side.skipped:
            skipped.append(
                f"the real `ping -c {count} {REMOTE_IP}` and the kernel answering the remote's "
                f"pings: {side.skipped}; a Python stand-in host did both instead"
            )
        system = HvlSystem(layout=layout, net=side.backend, on_output=out.remote, timeout=timeout)
        with system:
            assert system.shm is not None and system.remote is not None
            out.say(
                f"shared memory /dev/shm/{system.name}: {layout.shm_size:#x} bytes at "
                f"physical {layout.phys_base:#x}"
            )
            for line in layout.describe():
                out.say(f"monitor: {line}")
            out.say(f"remote: pid {system.remote.pid} (python -m openamp.hvl remote)")
            out.say("remote console (virtio-console):")
            step: dict[str, Any] = {"mark": 0}

            def expect(text: str, what: str, wait: float = timeout) -> bool:
                try:
                    step["mark"] = system.wait_output(text, wait, start=step["mark"])
                    return True
                except OpenAMPError as exc:
                    results.append((what, False, str(exc)))
                    return False

            if expect("get_entropy test passed", "entropy test"):
                results.append(("entropy test", True, "get_entropy test passed"))
            if expect(PROMPT, "remote shell"):
                system.send("net iface\n")
                expect(PROMPT, "net iface")
                # Linux -> remote
                out.say(f"Linux side: ping -c {count} {REMOTE_IP}")
                ok, transcript, rtts = side.ping_remote(count, timeout)
                for line in transcript.splitlines():
                    out.say(f"  {line}")
                what = "ping from Linux" if side.real else "ping from the stand-in host"
                results.append((what, ok, f"{len(rtts)} of {count} replies"))
                # remote -> Linux
                mark = step["mark"]
                system.send(f"net ping -c {count} {LINUX_IP}\n")
                if expect(PROMPT, "ping from the remote", timeout + count * 2):
                    text = system.output[mark : step["mark"]].decode(errors="replace")
                    replies = text.count(f"bytes from {LINUX_IP}")
                    results.append(
                        ("ping from the remote", replies == count, f"{replies} of {count} replies")
                    )
                system.send("exit\n")
                status, _stdout, stderr = system.wait_remote(timeout)
                results.append(("remote exit", status == 0, f"status {status} {stderr.strip()}"))
    except OpenAMPError as exc:
        results.append(("demo", False, f"error: {exc}"))
    finally:
        side.close()
    out.say("results")
    for what, ok, detail in results:
        print(f"  {'PASS' if ok else 'FAIL'}  {what}: {detail}")
    for line in skipped:
        print(f"  skipped: {line}")
    ok = bool(results) and all(r[1] for r in results)
    print(f"result: {'PASS' if ok else 'FAIL'}", flush=True)
    return 0 if ok else 1

"""The demo's remote: what demo4's Zephyr image does, as a Python program on an :class:`HvlRemote`.

At boot it logs each device (``VIRTIO 4d564b4c:00000004``), runs the entropy test of
the Zephyr sample (nine random bytes, then ``get_entropy test passed``) and brings its
network interface up at ``192.168.200.2/24``, answering ARP and ICMP echo.  Then it
is a small shell on the virtio console, with the commands the seed types at Zephyr's
``uart:~$`` prompt::

    device list
    net iface
    net ping [-c COUNT] ADDRESS
    entropy [BYTES]
    exit

Everything it prints goes out through the virtio console (to stdout when the monitor
has no console).  :func:`run_benchmarks` is the same program measuring instead.
"""

from __future__ import annotations

import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from ..errors import OpenAMPError, OpenAMPTimeoutError
from ..metal.deadline import Deadline
from .netstack import NetStack, format_mac
from .remote import DEVICE_NAMES, HvlRemote

DEMO_IP = "192.168.200.2/24"
"""The remote's address in the seed's demo4."""
LINUX_IP = "192.168.200.254"
"""The Linux side's address (``tap0``) in the seed's demo4."""
PROMPT = "uart:~$ "
ENTROPY_TEST_BYTES = 9
"""The Zephyr sample asks for ``BUFFER_LENGTH - 1`` = 9 bytes."""


class RemoteFirmware:
    """The demo remote on a started :class:`HvlRemote`."""

    def __init__(self, remote: HvlRemote, *, ip: str = DEMO_IP) -> None:
        self.remote = remote
        self.stack: NetStack | None = None
        if remote.net is not None:
            self.stack = NetStack(remote.net.mac, ip, remote.net.send)
        self.done = False

    # -- console ----------------------------------------------------------------------------

    def write(self, text: str) -> None:
        """Print on the virtio console (or stdout without one)."""
        console = self.remote.console
        if console is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            console.write(text.encode())

    def println(self, line: str = "") -> None:
        """Print one line."""
        self.write(line + "\n")

    # -- boot -------------------------------------------------------------------------------

    def boot_log(self) -> None:
        """What the Zephyr image logs while its devices come up."""
        for driver in self.remote.drivers:
            self.println(f"VIRTIO {driver.vendor_id:08x}:{driver.device_id:08x}")
            if DEVICE_NAMES.get(driver.device_id) == "rng":
                self.println("virtio_rng_init()")
        self.println("*** Booting pyopenamp hypervisorless remote ***")

    def entropy_test(self) -> bool:
        """The Zephyr entropy sample's check: nine bytes from the device, printed."""
        rng = self.remote.rng
        if rng is None:
            self.println("no entropy device")
            return False
        self.println("random device is virt-rng")
        buffer = bytearray(ENTROPY_TEST_BYTES + 1)
        data = rng.get_entropy(ENTROPY_TEST_BYTES)
        buffer[: len(data)] = data
        for byte in buffer[:ENTROPY_TEST_BYTES]:
            self.println(f"  0x{byte:02x}")
        # the sample's rule: exactly the bytes asked for, nothing past them
        if len(data) != ENTROPY_TEST_BYTES or buffer[ENTROPY_TEST_BYTES] != 0:
            self.println("get_entropy test failed")
            return False
        self.println("get_entropy test passed")
        return True

    # -- network ----------------------------------------------------------------------------

    def net_step(self) -> bool:
        """Handle every received frame; return whether there were any."""
        net, stack = self.remote.net, self.stack
        if net is None or stack is None:
            return False
        seen = False
        while (frame := net.receive()) is not None:
            stack.handle(frame)
            seen = True
        return seen

    def resolve(self, target: str, timeout: float = 1.0, tries: int = 3) -> bool:
        """ARP for ``target`` until it answers (``tries`` requests ``timeout`` s apart)."""
        stack = self.stack
        assert stack is not None
        for _ in range(tries):
            if stack.resolved(target):
                return True
            stack.arp_request(target)
            self.remote.wait(
                lambda: (self.net_step(), stack.resolved(target))[1] is not None, timeout
            )
        return stack.resolved(target) is not None

    def ping(
        self,
        target: str,
        count: int = 3,
        timeout: float = 1.0,
        interval: float = 0.0,
        *,
        quiet: bool = False,
    ) -> list[float]:
        """``net ping -c COUNT TARGET`` as Zephyr prints it (nothing if ``quiet``);
        return the round trips in seconds."""
        stack = self.stack
        say = (lambda _line: None) if quiet else self.println
        if stack is None:
            say("no network device")
            return []
        say(f"PING {target}")
        if not self.resolve(target):
            say(f"Ping timeout (no ARP reply from {target})")
            return []
        rtts = []
        for seq in range(count):
            if seq and interval:
                self.remote.wait(self.net_step, interval)
            t0 = time.perf_counter()
            stack.echo_request(target, seq)
            got: list[Any] = []

            def replied(seq: int = seq, got: list[Any] = got) -> bool:
                self.net_step()
                reply = stack.take_reply(seq)
                if reply is not None:
                    got.append(reply)
                return bool(got)

            if not self.remote.wait(replied, timeout):
                say("Ping timeout")
                continue
            reply = got[0]
            rtt = reply.received_at - t0
            rtts.append(rtt)
            say(
                f"{reply.size + 20} bytes from {reply.source} to {stack.ip}: "
                f"icmp_seq={reply.sequence} ttl={reply.ttl} time={rtt * 1000:.2f} ms"
            )
        return rtts

    # -- the shell ----------------------------------------------------------------------------

    def command(self, line: str) -> None:
        """Run one shell command line."""
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            self.println(f"parse error: {exc}")
            return
        if not argv:
            return
        try:
            if argv == ["exit"]:
                self.println("bye")
                self.done = True
            elif argv == ["device", "list"]:
                self.println("devices:")
                for i, driver in enumerate(self.remote.drivers):
                    self.println(f"- virtio{i} (READY)")
                    kind = DEVICE_NAMES.get(driver.device_id, "unknown")
                    self.println(f"- virt-{kind} (READY)")
                    self.println(f"  requires: virtio{i}")
            elif argv == ["net", "iface"]:
                self._iface()
            elif argv[:2] == ["net", "ping"]:
                count, rest = 3, argv[2:]
                if len(rest) == 3 and rest[0] == "-c":
                    count, rest = int(rest[1]), rest[2:]
                if len(rest) != 1:
                    self.println("usage: net ping [-c COUNT] ADDRESS")
                    return
                self.ping(rest[0], count)
            elif argv[0] == "entropy" and len(argv) <= 2:
                assert self.remote.rng is not None
                n = int(argv[1]) if len(argv) == 2 else 16
                self.println(self.remote.rng.get_entropy(n).hex())
            else:
                self.println(f"{argv[0]}: command not found")
        except (ValueError, AssertionError):
            self.println(f"{line.strip()}: bad arguments")
        except OpenAMPError as exc:
            self.println(f"{line.strip()}: {exc}")

    def _iface(self) -> None:
        net, stack = self.remote.net, self.stack
        if net is None or stack is None:
            self.println("no network interface")
            return
        self.println("")
        self.println("Interface virtio-net (Ethernet) [1]")
        self.println("===================================")
        self.println(f"Link addr : {format_mac(net.mac)}")
        self.println(f"MTU       : {net.buffer_size - 14}")
        self.println("IPv4 unicast addresses (max 1):")
        self.println(f"        {stack.ip} manual preferred infinite")
        self.println(f"IPv4 netmask : {stack.network.netmask}")

    def serve(self, timeout: float | None = None) -> None:
        """The shell: prompt, read a line from the console, run it, while answering the
        network; until ``exit`` (or ``timeout`` seconds without input)."""
        console = self.remote.console
        if console is None:
            raise OpenAMPError("the shell needs a virtio console")
        self.write(PROMPT)
        while not self.done:
            line: list[bytes] = []

            def work(line: list[bytes] = line) -> bool:
                self.net_step()
                got = console.readline(timeout=0)
                if got is not None:
                    line.append(got)
                return bool(line)

            if not self.remote.wait(work, timeout):
                return
            text = line[0].decode(errors="replace").strip()
            self.println(text)  # a shell echoes what was typed
            self.command(text)
            if not self.done:
                self.write(PROMPT)
        console.flush()


def run_benchmarks(
    firmware: RemoteFirmware,
    which: list[str],
    *,
    count: int,
    size: int,
    target: str,
    report: Callable[[dict[str, Any]], None],
) -> None:
    """Measure from the remote: rng MB/s, console round trip (the monitor echoes the
    console back), ping round trip to ``target``; ``report`` gets one dict per figure."""
    remote = firmware.remote
    if "rng" in which and remote.rng is not None:
        rng = remote.rng
        rng.get_entropy(size)
        t0 = time.perf_counter()
        total = 0
        for _ in range(count):
            total += len(rng.get_entropy(size))
        elapsed = time.perf_counter() - t0
        report(
            {
                "scenario": "rng",
                "bytes": total,
                "elapsed_s": elapsed,
                "mb_per_s": total / elapsed / 1e6,
                "request_bytes": size,
            }
        )
    if "console" in which and remote.console is not None:
        console = remote.console
        console.read(timeout=0.1)  # whatever is still in flight
        samples = []
        for i in range(count + 10):
            line = f"rtt {i}\n".encode()
            t0 = time.perf_counter()
            console.write(line)
            deadline = Deadline(5.0)
            got = console.readline(timeout=deadline.remaining())
            while got is not None and got != line:
                got = console.readline(timeout=deadline.remaining())
            if got is None:
                raise OpenAMPTimeoutError("the console echo did not come back")
            if i >= 10:
                samples.append(time.perf_counter() - t0)
        report(_rtt("console", samples))
    if "ping" in which and firmware.stack is not None:
        rtts = firmware.ping(target, count + 5, timeout=1.0, quiet=True)[5:]
        if len(rtts) < count:
            raise OpenAMPTimeoutError(f"only {len(rtts)} of {count} echo replies from {target}")
        report(_rtt("ping", rtts))


def _rtt(name: str, samples: list[float]) -> dict[str, Any]:
    samples = sorted(samples)
    return {
        "scenario": name,
        "count": len(samples),
        "rtt_median_us": statistics.median(samples) * 1e6,
        "rtt_min_us": samples[0] * 1e6,
        "rtt_p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e6,
    }


def bench_line(figures: dict[str, Any]) -> str:
    """How a benchmark figure leaves the remote: ``BENCH {json}`` on stdout."""
    return "BENCH " + json.dumps(figures)

"""The demos behind ``openamp demo``: each boots a Python firmware through RemoteProc on
a fresh virtual machine, runs the host side in this process, and reports what happened.

A demo is a function ``(options) -> DemoResult``; :data:`DEMOS` lists them in the order
``openamp demo`` runs them.  The firmware side of each is a built-in Python firmware
(:data:`openamp.firmware.BUILTIN`), so every demo is also a firmware you can boot with
``openamp rproc run NAME``.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import OpenAMPError
from ..platform.process import ProcessMachine
from ..remoteproc.core import RemoteProc
from ..remoteproc.state import RprocState
from ..rpmsg.virtio import RpmsgVirtioDevice
from .capture import Capture
from .output import table


@dataclass
class DemoOptions:
    """What every demo may be told."""

    timeout: float = 10.0
    count: int | None = None
    """Messages or rounds; None = the demo's C default."""
    workdir: str | None = None
    """Directory a demo may write into (the proxy's and RPC's root); None = a temporary one."""
    capture: Capture | None = None
    """Records each demo's link (one interface per demo), or None."""


@dataclass
class DemoResult:
    """The outcome of one demo."""

    name: str
    ok: bool
    summary: str
    """One line for the results table."""
    details: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    states: str = ""
    trace: list[str] = field(default_factory=list)


def run_on_machine(
    name: str,
    firmware: str,
    host: Callable[[RemoteProc, RpmsgVirtioDevice], tuple[bool, str, list[str]]],
    options: DemoOptions,
    firmware_options: dict[str, str] | None = None,
) -> DemoResult:
    """Boot ``firmware``, run ``host(rproc, rpmsg)``, let the firmware finish, shut down."""
    t0 = time.perf_counter()
    hook = None
    if options.capture is not None:
        hook = options.capture.link(name, f"openamp demo {name}: the host's side", app=name)
    with ProcessMachine(start_timeout=options.timeout, capture=hook) as machine:
        rproc = machine.remoteproc(firmware, options=firmware_options)
        try:
            rproc.start()
            ok, summary, details = host(rproc, rproc.rpmsg)
            try:
                rproc.wait_state(RprocState.STOPPED, timeout=options.timeout)
            except OpenAMPError:
                details.append("the firmware did not finish by itself; stopped it")
                rproc.stop()
        except OpenAMPError as exc:
            ok, summary, details = False, f"error: {exc}", list(machine.console[-5:])
        trace = rproc.trace().strip().splitlines() if rproc.traces else []
    states = " -> ".join([str(rproc.history[0].old)] + [str(e.new) for e in rproc.history])
    if rproc.crash_count:
        ok = False
        details.append("the firmware crashed")
    return DemoResult(name, ok, summary, details, time.perf_counter() - t0, states, trace)


def demo_echo(options: DemoOptions) -> DemoResult:
    """The echo test: 480 growing payloads echoed and checked."""
    from ..services.echo import run_ping

    def host(rproc: RemoteProc, rpmsg: RpmsgVirtioDevice) -> tuple[bool, str, list[str]]:
        count = 480 if options.count is None else options.count
        r = run_ping(rpmsg, count=count, timeout=options.timeout)
        rtt = statistics.median(r.rtts) * 1e6 if r.rtts else 0.0
        summary = f"{r.sent} sent, {r.received} echoed, {r.errors} errors, median rtt {rtt:.1f} µs"
        return r.ok, summary, list(r.problems)

    return run_on_machine("echo", "echo", host, options)


def demo_matrix(options: DemoOptions) -> DemoResult:
    """Matrix multiply: random 6x6 pairs multiplied by the remote and checked."""
    from ..services.matrix import run_matrix

    def host(rproc: RemoteProc, rpmsg: RpmsgVirtioDevice) -> tuple[bool, str, list[str]]:
        rounds = 200 if options.count is None else options.count
        r = run_matrix(rpmsg, rounds=rounds, timeout=options.timeout)
        summary = f"{r.received} of {r.sent} products correct ({r.errors} errors), seed {r.seed}"
        return r.ok, summary, list(r.problems)

    return run_on_machine("matrix", "matrix", host, options)


def demo_proxy(options: DemoOptions) -> DemoResult:
    """The retarget proxy: the remote creates, writes and reads back a file on the host."""
    import io
    import tempfile
    from pathlib import Path

    from ..services.proxy import DEMO_FILE, ProxyServer

    def host(rproc: RemoteProc, rpmsg: RpmsgVirtioDevice) -> tuple[bool, str, list[str]]:
        with tempfile.TemporaryDirectory(prefix="openamp-proxy-") as tmp:
            root = Path(options.workdir or tmp)
            console = io.StringIO()
            server = ProxyServer(
                rpmsg,
                root,
                stdin=io.StringIO("typed on the host\n"),
                stdout=console,
                stderr=console,
            )
            quiet = logging.getLogger("openamp.services.proxy")
            level = quiet.level
            quiet.setLevel(logging.ERROR)  # the refusals are expected; they are listed below
            try:
                stats = server.run(timeout=options.timeout)
            finally:
                quiet.setLevel(level)
            written = root / DEMO_FILE
            content = written.read_text(errors="replace") if written.exists() else ""
        lines = [f"file {DEMO_FILE}: {content.strip()!r}"]
        lines += [f"console: {ln}" for ln in console.getvalue().splitlines()]
        lines += [f"refused: {p}" for p in stats.problems]
        calls = ", ".join(f"{n} {k}" for k, n in sorted(stats.calls.items()))
        ok = bool(content) and "terminate" in stats.stop_reason and not stats.dropped
        return ok, f"{calls}; stopped: {stats.stop_reason}", lines

    return run_on_machine("proxy", "proxy", host, options)


def demo_rpc(options: DemoOptions) -> DemoResult:
    """RPC on rpmsg-rpc: the remote opens, writes, reads back and closes a host file."""
    import io
    import tempfile
    from pathlib import Path

    from ..services.rpc import DEMO_FILE, RpcFileServer

    def host(rproc: RemoteProc, rpmsg: RpmsgVirtioDevice) -> tuple[bool, str, list[str]]:
        with tempfile.TemporaryDirectory(prefix="openamp-rpc-") as tmp:
            root = Path(options.workdir or tmp)
            console = io.BytesIO()
            server = RpcFileServer(
                rpmsg,
                root,
                stdin=io.BytesIO(b"Ada\n36\n3.14\n"),
                stdout=console,
                stderr=console,
            )
            stats = server.run(timeout=options.timeout)
            written = root / DEMO_FILE
            content = written.read_bytes().decode(errors="replace") if written.exists() else ""
        lines = [f"file {DEMO_FILE}: {content.strip()!r}"]
        lines += [
            f"console: {ln}" for ln in console.getvalue().decode(errors="replace").splitlines()
        ]
        ok = bool(content) and stats.errors == 0 and "terminate" in stats.stop_reason
        summary = (
            f"{stats.requests} requests, {stats.answers} answered, {stats.errors} errors; "
            f"stopped: {stats.stop_reason}"
        )
        return ok, summary, lines

    return run_on_machine("rpc", "rpc", host, options)


def demo_sample(options: DemoOptions) -> DemoResult:
    """The Linux rpmsg-client-sample: hello world! x 99, goodbye!, the remote's NS destroy."""
    from ..services.sample import run_sample

    def host(rproc: RemoteProc, rpmsg: RpmsgVirtioDevice) -> tuple[bool, str, list[str]]:
        count = 100 if options.count is None else options.count
        r = run_sample(rpmsg, count=count, timeout=options.timeout)
        end = "the remote destroyed its endpoint" if r.remote_destroyed else "no NS destroy"
        summary = f"{r.received} of {r.sent} messages echoed, {r.errors} errors; {end}"
        return r.ok, summary, list(r.problems)

    # the remote echoes as many as the host sends: --count means the same on both sides
    count = {} if options.count is None else {"count": str(options.count)}
    return run_on_machine("sample", "sample", host, options, count)


DEMOS: dict[str, Callable[[DemoOptions], DemoResult]] = {
    "echo": demo_echo,
    "matrix": demo_matrix,
    "proxy": demo_proxy,
    "rpc": demo_rpc,
    "sample": demo_sample,
}
"""Every demo, in the order ``openamp demo`` runs them."""


def results_table(results: list[DemoResult]) -> str:
    """A small table of demo results."""
    rows = [["demo", "result", "time", "what happened"]]
    rows += [[r.name, "PASS" if r.ok else "FAIL", f"{r.elapsed:.2f} s", r.summary] for r in results]
    return table(rows, indent="  ", align="<<>")

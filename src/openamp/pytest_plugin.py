"""The pytest plugin: fixtures that boot your firmware and clean up after it.

Installed with pyopenamp and registered under the ``pytest11`` entry point, so every
pytest run on a machine with pyopenamp has these fixtures:

* ``openamp_pair`` — an :class:`~openamp.platform.InProcessPair`: both sides in this
  process, deterministic; ``openamp_pair.boot(firmware)`` runs a Python firmware's
  ``main(ctx)`` in a thread of its own.
* ``openamp_vm`` — a two-process virtual machine under a unique name:
  ``openamp_vm.remote("openamp", "echo", ...)`` starts the remote as a child process (the
  name options are added for you), ``openamp_vm.host()`` connects this process as host.
* ``openamp_rproc`` — ``openamp_rproc(firmware=...)`` boots a firmware through
  :class:`~openamp.remoteproc.RemoteProc` and the process driver: a Python firmware
  (``"echo"``, ``"python:my_firmware"``, ``"python:path/to/fw.py"``), an ELF executable
  with a ``.resource_table``, or a C Linux-generic program (``./rpmsg-echo``, which uses
  the machine-wide C names, so such tests take a lock and run one at a time).
* ``openamp_linux`` — the real Linux kernel (User-mode Linux) as the host of your
  Python remote, when a UML kernel has been built (``python3 -m openamp.tools.uml``);
  otherwise the test is skipped with that advice.

The rules every fixture keeps:

* **Nothing is left behind.**  At teardown each fixture stops what it started and then
  checks: no shared-memory file or doorbell socket of its machine remains, no child
  process runs on.  A leftover is removed and the test errors, naming it.  A firmware
  that crashed during the test fails it too (``openamp_rproc(..., crashes_ok=True)``
  when the crash is the point).
* **A failure explains itself.**  When a test fails, the firmware's console (all of it),
  its trace buffer, the remote's output and the kernel's console are attached to the
  report as sections.  Other plugins add their own sections (a capture of the link, for
  instance) by implementing :func:`pytest_openamp_report_sections`.
* **Safe in parallel.**  Every machine has a unique name (pid and random), so
  ``pytest -n auto`` (pytest-xdist) spreads a firmware test suite over the cores; only
  the C-name machine is serialised, by a lock file shared with every process.
* **Free for others.**  This module imports nothing of pyopenamp until a fixture runs,
  so a pytest run that uses none of them does not pay for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from .platform.inprocess import InProcessFirmware, InProcessPair
    from .platform.process import ProcessMachine, ProcessRemoteProc
    from .platform.virtual import VirtualMachine
    from .rpmsg.virtio import RpmsgVirtioDevice
    from .tools.uml import UmlResult

FIXED_NAMES_LOCK = "/tmp/pyopenamp-fixed-names.lock"
"""The lock every process takes before using the C names (/dev/shm/openamp.shm,
/tmp/openamp.event.0); pyopenamp's own test suite takes the same one."""


class Resource(Protocol):
    """Something a fixture started: it can say what to attach to a failed test."""

    def report_sections(self) -> list[tuple[str, str]]:
        """``(title, text)`` pairs for the report of a failed test."""
        ...


_RESOURCES = pytest.StashKey[list[Resource]]()


class _Hooks:
    """The hooks this plugin adds to pytest (see :func:`pytest_openamp_report_sections`)."""

    @pytest.hookspec
    def pytest_openamp_report_sections(
        self, item: pytest.Item, resource: object
    ) -> list[tuple[str, str]]:
        """More sections for the report of a failed test that used ``resource``.

        ``resource`` is the fixture's object (an ``openamp_rproc`` remoteproc, the
        ``openamp_vm`` machine, ...).  Return ``(title, text)`` pairs; a capture of the
        link is the intended use.
        """
        return []


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(_Hooks)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed:
        return
    for resource in item.stash.get(_RESOURCES, []):
        try:
            sections = list(resource.report_sections())
            for more in item.config.hook.pytest_openamp_report_sections(
                item=item, resource=resource
            ):
                sections += more
        except Exception as exc:  # a report must never hide the failure it reports
            sections = [("openamp", f"could not collect the report sections: {exc!r}")]
        for title, text in sections:
            if text:
                report.sections.append((f"openamp: {title}", text))


def _register(request: pytest.FixtureRequest, resource: Resource) -> None:
    request.node.stash.setdefault(_RESOURCES, []).append(resource)


def _leftovers(paths: list[str]) -> list[str]:
    found = [p for p in paths if os.path.lexists(p)]
    for path in found:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return found


def _machine_paths(name: str) -> list[str]:
    return [f"/dev/shm/{name}.shm", f"/tmp/{name}.event"]


def _tail(lines: list[str], limit: int = 400) -> str:
    shown = lines[-limit:]
    cut = f"... {len(lines) - limit} earlier lines\n" if len(lines) > limit else ""
    return cut + "\n".join(shown)


# -- the in-process pair ---------------------------------------------------------------


class _PairResource:
    def __init__(self, pair: InProcessPair) -> None:
        self.pair = pair
        self.firmware: list[InProcessFirmware] = []

    def report_sections(self) -> list[tuple[str, str]]:
        out = []
        for fw in self.firmware:
            out.append((f"{fw.name} trace", "\n".join(fw.trace_lines)))
            out.append((f"{fw.name} console", "".join(fw.console)))
        return out


@pytest.fixture
def openamp_pair(request: pytest.FixtureRequest) -> Iterator[InProcessPair]:
    """Both sides of a machine in this process (:class:`~openamp.platform.InProcessPair`).

    ``openamp_pair.driver()``/``.device()`` give the two rpmsg devices;
    ``openamp_pair.boot(firmware)`` runs a firmware's ``main(ctx)`` in a thread and
    returns it (``.rpmsg`` is the host side).  At teardown every booted firmware is
    stopped and must have ended.
    """
    from .platform.inprocess import InProcessPair

    resource: _PairResource

    class TrackedPair(InProcessPair):
        def boot(self, *args: Any, **kw: Any) -> InProcessFirmware:
            fw = super().boot(*args, **kw)
            resource.firmware.append(fw)
            return fw

    pair = TrackedPair()
    resource = _PairResource(pair)
    _register(request, resource)
    yield pair
    still = [fw.name for fw in resource.firmware if fw.stop() is None and fw.running]
    if still:
        pytest.fail(f"firmware still running after the test and a stop: {still}", pytrace=False)


# -- the two-process virtual machine ------------------------------------------------------


class VirtualMachineFixture:
    """``openamp_vm``: one virtual machine name, a remote child process and a host.

    :meth:`remote` starts the remote: ``remote("openamp", "echo")`` runs this Python's
    ``openamp echo --machine virtual --name NAME`` (the machine options are added to
    every ``openamp`` command); any other command gets the name in ``$OPENAMP_VM``.
    :meth:`host` connects this process as the host (virtio driver, socket client) and
    returns its rpmsg device.  Everything is stopped and checked at teardown.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[subprocess.Popen[str]] = []
        self.outputs: list[str] = []
        self.machines: list[VirtualMachine] = []

    def remote(self, *command: str, role: str | None = None) -> subprocess.Popen[str]:
        """Start the remote (see the class docstring); its output is kept for reports."""
        argv = list(command)
        if argv and argv[0] == "openamp":
            argv = [sys.executable, "-m", "openamp", *argv[1:]]
            argv += ["--machine", "virtual", "--name", self.name]
            if role is not None:
                argv += ["--role", role]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "OPENAMP_VM": self.name},
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def host(self, *, timeout: float = 10.0, **kw: Any) -> RpmsgVirtioDevice:
        """Connect as the host; keywords go to :class:`~openamp.platform.VirtualMachine`."""
        from .platform.virtual import VirtualMachine

        machine = VirtualMachine(role="driver", name=self.name, **kw)
        self.machines.append(machine)
        return machine.start(timeout=timeout)

    def finish(self, timeout: float = 10.0) -> list[tuple[int, str]]:
        """Close the hosts, wait for the remotes (kill them after ``timeout`` s);
        ``(exit code, output)`` of each remote."""
        for machine in self.machines:
            machine.close()
        results = []
        for proc in self.procs:
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            self.outputs.append(out or "")
            results.append((proc.returncode, out or ""))
        self.procs.clear()
        return results

    def report_sections(self) -> list[tuple[str, str]]:
        live = [f"(still running: pid {p.pid})" for p in self.procs if p.poll() is None]
        return [(f"remote output {n}", out) for n, out in enumerate(self.outputs)] + [
            ("remotes", "\n".join(live))
        ]


@pytest.fixture
def openamp_vm(request: pytest.FixtureRequest) -> Iterator[VirtualMachineFixture]:
    """A two-process virtual machine under a unique name (see :class:`VirtualMachineFixture`)."""
    from .metal.shm import unique_name

    vm = VirtualMachineFixture(unique_name("openamp-vm"))
    _register(request, vm)
    yield vm
    vm.finish()
    left = _leftovers(_machine_paths(vm.name))
    if left:
        pytest.fail(f"the virtual machine left these behind: {left}", pytrace=False)


# -- a booted remoteproc ------------------------------------------------------------------


class _RprocResource:
    def __init__(self, machine: ProcessMachine, console: list[str], crashes_ok: bool) -> None:
        self.machine = machine
        self.console = console
        self.crashes_ok = crashes_ok
        self.lock: Any = None

    def report_sections(self) -> list[tuple[str, str]]:
        rproc = self.machine.rproc
        states = " -> ".join(
            [str(rproc.history[0].old)] + [str(e.new) for e in rproc.history]
            if rproc.history
            else [str(rproc.state)]
        )
        trace = ""
        with contextlib.suppress(Exception):
            trace = rproc.trace() if rproc.traces else ""
        return [
            ("firmware console", _tail(self.console)),
            ("firmware trace", trace),
            ("remoteproc states", states),
        ]


RprocFactory = Callable[..., "ProcessRemoteProc"]


@pytest.fixture
def openamp_rproc(request: pytest.FixtureRequest) -> Iterator[RprocFactory]:
    """``openamp_rproc(firmware, *, recovery=False, start=True, timeout=10.0,
    memory_size=0x80000, crashes_ok=False)``: a remoteproc booted on a fresh virtual
    machine, as ``openamp rproc run`` boots it.

    Returns the started :class:`~openamp.platform.process.ProcessRemoteProc` (``start=
    False``: loaded, not started): talk through ``.rpmsg``, read ``.trace()``.  The
    firmware's whole console goes into the report of a failed test.  May be called
    several times in one test, for several machines.
    """
    from .platform.process import ProcessMachine
    from .remoteproc.firmware import ElfFirmware

    resources: list[_RprocResource] = []

    def boot(
        firmware: Any,
        *,
        recovery: bool = False,
        start: bool = True,
        timeout: float = 10.0,
        memory_size: int = 0x80000,
        crashes_ok: bool = False,
    ) -> ProcessRemoteProc:
        console: list[str] = []
        machine = ProcessMachine(
            memory_size=memory_size, start_timeout=timeout, console=console.append
        )
        resource = _RprocResource(machine, console, crashes_ok)
        resources.append(resource)
        _register(request, resource)
        rproc = machine.remoteproc(firmware, recovery=recovery)
        if isinstance(rproc.firmware, ElfFirmware) and not rproc.has_table:
            # a C Linux-generic program: the machine-wide C names, one user at a time
            resource.lock = open(FIXED_NAMES_LOCK, "w")  # noqa: SIM115 (closed at teardown)
            fcntl.flock(resource.lock, fcntl.LOCK_EX)
        if start:
            rproc.start()
        return rproc

    yield boot
    problems = []
    for resource in resources:
        machine = resource.machine
        rproc = machine.rproc
        crashes = rproc.crash_count
        machine.close()
        proc = machine.ops.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
            problems.append(f"{machine.name}: the firmware process was still running")
        paths = _machine_paths(machine.name)
        if resource.lock is not None:
            paths += ["/dev/shm/openamp.shm", "/tmp/openamp.event.0"]
        left = _leftovers(paths)
        if resource.lock is not None:
            resource.lock.close()
        if left:
            problems.append(f"{machine.name} left these behind: {left}")
        if crashes and not resource.crashes_ok:
            problems.append(
                f"{machine.name}: the firmware crashed {crashes} time(s) during the test:\n"
                + _tail(resource.console, 40)
            )
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# -- the real Linux kernel as host --------------------------------------------------------


def _built_kernel() -> Path | None:
    """The UML kernel if one is built (never builds: that takes minutes)."""
    from .tools.uml import KERNEL_ENV, default_cache_dir, find_or_build_kernel

    if not os.environ.get(KERNEL_ENV) and not (default_cache_dir() / "linux").is_file():
        return None
    return find_or_build_kernel(progress=lambda line: None)


class LinuxBoot:
    """What one boot of ``openamp_linux`` produced: the guest's result and the value
    ``serve`` returned."""

    def __init__(self, result: UmlResult, value: object, serve_end: str) -> None:
        self.result = result
        self.value = value
        self.serve_end = serve_end


class LinuxFixture:
    """``openamp_linux.boot(script, serve=None, timeout=60.0)``: boot the Linux kernel
    with ``script`` (shell, as init; the guest sees the host's files) while this process
    is its rpmsg remote; ``serve(rpmsg)`` runs once the kernel's virtio driver is up."""

    def __init__(self, kernel: Path, workdir: Path) -> None:
        self.kernel = kernel
        self.workdir = workdir
        self.consoles: list[str] = []

    def boot(
        self,
        script: str,
        serve: Callable[[RpmsgVirtioDevice], object] | None = None,
        *,
        timeout: float = 60.0,
    ) -> LinuxBoot:
        from .platform.vhost_user import VhostUserMachine
        from .tools.uml import UmlGuest

        n = len(self.consoles)
        sock = self.workdir / f"rpmsg{n}.sock"
        with (
            VhostUserMachine(sock) as machine,
            UmlGuest(
                self.kernel,
                {str(sock): 7},
                script,
                timeout=timeout,
                workdir=self.workdir / f"uml{n}",
            ) as uml,
        ):
            self.consoles.append("")
            uml.start()
            try:
                rpmsg = machine.start(timeout=30.0)
                value = serve(rpmsg) if serve is not None else None
                serve_end = machine.serve(timeout=timeout)
                result = uml.wait()
            finally:
                self.consoles[n] = uml.console
        return LinuxBoot(result, value, serve_end)

    def report_sections(self) -> list[tuple[str, str]]:
        return [(f"linux console {n}", text) for n, text in enumerate(self.consoles)]


@pytest.fixture
def openamp_linux(request: pytest.FixtureRequest) -> Iterator[LinuxFixture]:
    """The real Linux kernel as the host of this process (see :class:`LinuxFixture`);
    skipped, with the command that builds it, when no UML kernel is built."""
    import shutil

    from .metal.shm import unique_name

    kernel = _built_kernel()
    if kernel is None:
        pytest.skip("no User-mode Linux kernel is built: `python3 -m openamp.tools.uml` builds it")
    workdir = Path("/tmp") / unique_name("openamp-uml")  # AF_UNIX paths are short
    workdir.mkdir()
    linux = LinuxFixture(kernel, workdir)
    _register(request, linux)
    try:
        yield linux
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


__all__ = [
    "FIXED_NAMES_LOCK",
    "LinuxBoot",
    "LinuxFixture",
    "VirtualMachineFixture",
    "openamp_linux",
    "openamp_pair",
    "openamp_rproc",
    "openamp_vm",
]

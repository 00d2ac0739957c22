"""A real Linux kernel on this PC: User-mode Linux with rpmsg, for tests and experiments.

:func:`find_or_build_kernel` gives the path of a UML kernel built with virtio-uml and the
rpmsg drivers (char, ctrl, name service, tty and the client sample), building it on
first use with the build script shipped in the package (``uml_kernel/build-kernel.sh``,
with its kernel patches).  :class:`UmlGuest` boots it with the host's root file system
(hostfs, read-write: the guest sees and writes the host's files), one vhost-user device
per socket (``virtio_uml.device=PATH:ID``), and a shell script of yours as PID 1 after
``/proc``, ``/sys`` and ``/dev`` are mounted.
When the script ends the guest saves its kernel log and powers off.

Output: the console (boot messages, kernel log lines) goes to a file, the script's own
stdout/stderr to another, and ``dmesg`` is saved at the end; :meth:`UmlGuest.wait`
returns all three in a :class:`UmlResult`.  UML is started in a process group of its
own and the whole group is killed when the guest is closed, so no helper process
survives a test, whatever happened.  The working directory (init script, logs, UML's
pid/mconsole directory) is removed at the end unless you passed your own.

This module only starts and watches processes; the vhost-user backends the guest
connects to are yours (:class:`openamp.platform.vhost_user.VhostUserMachine`), and must
be listening before :meth:`UmlGuest.start`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidStateError, OpenAMPError, UsageError

__all__ = [
    "BUILD_SCRIPT",
    "KERNEL_ENV",
    "UmlBuildError",
    "UmlGuest",
    "UmlKernelError",
    "UmlResult",
    "UmlScriptError",
    "default_cache_dir",
    "find_or_build_kernel",
]

KERNEL_ENV = "PYOPENAMP_UML_KERNEL"
"""Environment variable naming a ready kernel binary (skips the build)."""
CACHE_ENV = "PYOPENAMP_UML_CACHE"
"""Environment variable naming the build cache directory."""
ARGS_ENV = "PYOPENAMP_UML_ARGS"
"""Environment variable with more kernel command-line words for every boot (e.g.
``xstate_bounce`` to run the real-kernel tests through the AMX restore path)."""
BUILD_SCRIPT = Path(__file__).resolve().parent / "uml_kernel" / "build-kernel.sh"
"""The build script, shipped inside the package with its kernel patches."""
BUILD_TIMEOUT = 3600.0


class UmlBuildError(OpenAMPError):
    """The UML kernel is not there and could not be built; the message says why."""


class UmlKernelError(OpenAMPError):
    """The guest kernel did not run the script to its end: it panicked, crashed, was
    killed or timed out.

    The message starts with the panic (or the last error line of the kernel), then the
    last lines of the console; :attr:`result` holds everything the run produced.
    """

    def __init__(self, result: UmlResult) -> None:
        super().__init__(result.failure())
        self.result = result


class UmlScriptError(OpenAMPError):
    """The guest ran the script to its end, but it exited with a non-zero status."""

    def __init__(self, result: UmlResult) -> None:
        super().__init__(
            f"the guest script exited with status {result.script_status}\n"
            f"--- script output ---\n{result.output.rstrip()}"
        )
        self.result = result


def default_cache_dir() -> Path:
    """``$PYOPENAMP_UML_CACHE``, else ``~/.cache/pyopenamp/uml``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "pyopenamp" / "uml"


def find_or_build_kernel(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    progress: Callable[[str], object] | None = None,
) -> Path:
    """The path of a UML kernel with rpmsg, building it if needed.

    ``$PYOPENAMP_UML_KERNEL`` wins if set.  Otherwise the build script shipped in the
    package (:data:`BUILD_SCRIPT`, with its kernel patches) builds into ``cache_dir``
    (default :func:`default_cache_dir`) or reuses a finished build.  The first build
    installs Debian's ``linux-source-6.1`` and the compiler tools with ``apt-get``,
    which **needs root**, and takes about 6 minutes on 2 cores; later calls return at
    once.  Concurrent callers wait for one build (a lock file in the cache directory).

    ``progress`` receives one line per build stage (fetching, configuring, "compiling
    N of about M objects" every 20 s, each with the elapsed seconds); ``None`` writes
    them to stderr.  Nothing is reported when the kernel is already built.

    Raises :class:`UmlBuildError` with the reason (and the end of the build log).
    """
    env = os.environ.get(KERNEL_ENV)
    if env:
        kernel = Path(env)
        if not (kernel.is_file() and os.access(kernel, os.X_OK)):
            raise UmlBuildError(f"${KERNEL_ENV} names {kernel}, which is not an executable file")
        return kernel
    if not BUILD_SCRIPT.is_file():
        raise UmlBuildError(
            f"the build script {BUILD_SCRIPT} is missing from the installed package; "
            f"reinstall pyopenamp, or point ${KERNEL_ENV} at a UML kernel"
        )
    report: Callable[[str], object] = progress if progress is not None else _to_stderr
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UmlBuildError(f"cannot create the kernel cache directory {cache}: {exc}") from None
    with open(cache / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        returncode, stdout, stderr = _run_build(cache, report)
    lines = stdout.strip().splitlines()
    if returncode != 0 or not lines:
        raise UmlBuildError(
            f"{BUILD_SCRIPT.name} exited with status {returncode}"
            + (f": {stderr.strip()}" if stderr.strip() else "")
            + _log_tail(cache)
        )
    kernel = Path(lines[-1])
    if not kernel.is_file():
        raise UmlBuildError(f"{BUILD_SCRIPT.name} reported {kernel}, which does not exist")
    return kernel


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _run_build(cache: Path, report: Callable[[str], object]) -> tuple[int, str, str]:
    """Run the build script, passing its progress lines (stderr) on as they come."""
    proc = subprocess.Popen(
        ["bash", str(BUILD_SCRIPT), str(cache)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + BUILD_TIMEOUT
    other: list[str] = []
    try:
        for line in proc.stderr:  # ends when the script exits (or closes its stderr)
            line = line.rstrip("\n")
            if line.startswith("uml kernel build ["):
                report(line)
            else:
                other.append(line)
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(proc.args, BUILD_TIMEOUT)
        stdout = proc.stdout.read()
        proc.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise UmlBuildError(
            f"the kernel build did not finish within {BUILD_TIMEOUT:.0f} s" + _log_tail(cache)
        ) from None
    finally:
        proc.stdout.close()
        proc.stderr.close()
    return proc.returncode, stdout, "\n".join(other)


def _log_tail(cache: Path, lines: int = 30) -> str:
    try:
        text = (cache / "build.log").read_text(errors="replace")
    except OSError:
        return ""
    tail = "\n".join(text.splitlines()[-lines:])
    return f"\n--- last lines of {cache / 'build.log'} ---\n{tail}"


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


@dataclass
class UmlResult:
    """What a guest run produced."""

    returncode: int | None
    """UML's exit status (None if it had to be killed)."""
    script_status: int | None
    """Exit status of your script (None if it did not finish)."""
    output: str
    """Your script's stdout and stderr."""
    console: str
    """Everything UML printed: boot messages and kernel log lines."""
    kernel_log: str
    """``dmesg`` taken after your script ended ('' if it did not end)."""
    elapsed: float
    """Seconds from start to the end of UML."""
    timed_out: bool

    @property
    def ok(self) -> bool:
        """The script ended with status 0 and UML powered off by itself."""
        return self.script_status == 0 and not self.timed_out

    @property
    def completed(self) -> bool:
        """The kernel ran the script to its end (whatever the script's status)."""
        return self.script_status is not None and not self.timed_out

    def panic_line(self) -> str | None:
        """The kernel's panic line (or, failing that, its last fatal-looking line)."""
        lines = self.console.splitlines()
        for line in lines:
            if "Kernel panic" in line:
                return line.strip()
        for line in reversed(lines):
            low = line.lower()
            if any(word in low for word in ("panic", "failed", "fatal", "segfault", "oops")):
                return line.strip()
        return None

    def failure(self, lines: int = 25) -> str:
        """Why the kernel did not complete: panic line first, then the console's end."""
        if self.timed_out:
            head = f"the UML guest did not power off within its time limit ({self.elapsed:.1f} s)"
        elif self.returncode is not None and self.returncode < 0:
            head = f"UML was killed by signal {-self.returncode} before the script ended"
        else:
            head = f"UML exited with status {self.returncode} before the script ended"
        panic = self.panic_line()
        tail = "\n".join(self.console.splitlines()[-lines:])
        first = f"{panic} ({head})" if panic else head
        return f"{first}\n--- last {lines} lines of the kernel console ---\n{tail}"

    def check(self) -> UmlResult:
        """Raise unless the script ran to its end with status 0; return self.

        :class:`UmlKernelError` if the kernel did not complete the script (panic,
        crash, kill, time-out), :class:`UmlScriptError` if the script failed.
        """
        if not self.completed:
            raise UmlKernelError(self)
        if self.script_status != 0:
            raise UmlScriptError(self)
        return self

    def describe(self, lines: int = 40) -> str:
        """A summary for assertion messages: statuses, script output, console tail."""
        tail = "\n".join(self.console.splitlines()[-lines:])
        return (
            f"UML exit {self.returncode}, script status {self.script_status}, "
            f"timed out: {self.timed_out}, {self.elapsed:.1f} s\n"
            f"--- script output ---\n{self.output}\n--- console (last {lines} lines) ---\n{tail}"
        )


_INIT = """#!/bin/sh
# Written by openamp.tools.uml: PID 1 of the guest.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sysfs /sys
grep -q ' /dev devtmpfs ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
cd {workdir}
/bin/sh {script} > {output} 2>&1
echo $? > {status}
dmesg > {kernel_log} 2>&1
sync
echo o > /proc/sysrq-trigger
sleep 30
"""


class UmlGuest:
    """One boot of a UML kernel with vhost-user devices and your script as init.

    ``kernel``: the UML binary.  ``sockets``: vhost-user socket path -> virtio device id
    (7 for rpmsg); each backend must be listening before :meth:`start`.  ``script``: a
    shell script (the text) run by ``/bin/sh`` in the guest.  ``mem``: guest memory.
    ``timeout``: seconds the whole boot may take before UML is killed.  ``workdir``:
    where the init script and logs go (default: a fresh directory under /tmp, removed
    by :meth:`close`).  ``extra_args``: more kernel command-line words.

    Use as a context manager (or call :meth:`close`): it always kills UML's process
    group.  ``python`` is this interpreter's path, which the guest can run too (its
    root file system is the host's).
    """

    python = sys.executable

    def __init__(
        self,
        kernel: str | os.PathLike[str],
        sockets: Mapping[str | os.PathLike[str], int],
        script: str,
        *,
        mem: str = "128M",
        timeout: float = 60.0,
        workdir: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.kernel = Path(kernel)
        if not self.kernel.is_file():
            raise UsageError(f"UML kernel {self.kernel} does not exist")
        paths = {os.fspath(path): dev_id for path, dev_id in sockets.items()}
        for path, dev_id in paths.items():
            if not path or any(c in path for c in ": \t\n,") or not os.path.isabs(path):
                raise UsageError(
                    f"vhost-user socket path {path!r} must be absolute, without ':' or spaces "
                    "(it goes on the kernel command line)"
                )
            if not 0 < dev_id < 0x10000:
                raise UsageError(f"virtio device id {dev_id} is out of range")
        self.sockets = paths
        self.script = script
        self.mem = mem
        self.timeout = timeout
        self.extra_args = list(extra_args)
        self._own_workdir = workdir is None
        self.workdir = (
            Path(workdir)
            if workdir is not None
            else Path(tempfile.mkdtemp(prefix="openamp-uml-", dir="/tmp"))
        )
        if any(c.isspace() or c == "'" for c in str(self.workdir)):
            raise UsageError(f"work directory {self.workdir} must not contain spaces or quotes")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self._result: UmlResult | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "not started" if self._proc is None else f"pid {self._proc.pid}"
        return f"UmlGuest({self.kernel.name}, {state})"

    # -- files --------------------------------------------------------------------------------

    def _file(self, name: str) -> Path:
        return self.workdir / name

    @property
    def command(self) -> list[str]:
        """The UML command line."""
        args = [
            str(self.kernel),
            f"mem={self.mem}",
            "root=/dev/root",
            "rootfstype=hostfs",
            "rootflags=/",
            "rw",
            f"init={self._file('init.sh')}",
            "con=null",
            "con0=fd:0,fd:1",
            f"uml_dir={self.workdir}",
            "log_buf_len=1M",
        ]
        args += [f"virtio_uml.device={path}:{dev_id}" for path, dev_id in self.sockets.items()]
        return args + self.extra_args + shlex.split(os.environ.get(ARGS_ENV, ""))

    def _read(self, name: str) -> str:
        try:
            return self._file(name).read_text(errors="replace")
        except OSError:
            return ""

    @property
    def console(self) -> str:
        """What UML has printed so far."""
        return self._read("console.log")

    # -- running ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether UML is still running."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Write the init script and boot UML (returns at once)."""
        if self._closed:
            raise InvalidStateError("the guest is closed")
        if self._proc is not None:
            raise InvalidStateError("the guest was already started")
        for path in self.sockets:
            if not _is_socket(path):
                raise UsageError(f"no socket at {path}: start the vhost-user backend first")
        q = shlex.quote
        self._file("script.sh").write_text(self.script)
        init = self._file("init.sh")
        init.write_text(
            _INIT.format(
                workdir=q(str(self.workdir)),
                script=q(str(self._file("script.sh"))),
                output=q(str(self._file("script.log"))),
                status=q(str(self._file("script.status"))),
                kernel_log=q(str(self._file("kernel.log"))),
            )
        )
        init.chmod(0o755)
        with open(self._file("console.log"), "wb") as console:
            self._proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        self._started = time.monotonic()

    def wait(self, timeout: float | None = None, *, check: bool = True) -> UmlResult:
        """Wait for UML to power off (``timeout`` seconds, default: the rest of the
        guest's ``timeout``), killing it if it does not; return what it produced.

        With ``check`` (the default) a kernel that did not run the script to its end
        raises :class:`UmlKernelError` (its message starts with the panic line); the
        script's own exit status is in the result (:meth:`UmlResult.check` raises on
        it too).  ``check=False`` returns the result whatever happened.
        """
        if self._result is not None:
            return self._checked(self._result, check)
        proc = self._proc
        if proc is None:
            raise InvalidStateError("the guest was not started")
        if timeout is None:
            timeout = max(0.0, self.timeout - (time.monotonic() - self._started))
        timed_out = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        self._kill()
        elapsed = time.monotonic() - self._started
        status_text = self._read("script.status").strip()
        self._result = UmlResult(
            returncode=None if timed_out else proc.returncode,
            script_status=int(status_text) if status_text.lstrip("-").isdigit() else None,
            output=self._read("script.log"),
            console=self.console,
            kernel_log=self._read("kernel.log"),
            elapsed=elapsed,
            timed_out=timed_out,
        )
        return self._checked(self._result, check)

    @staticmethod
    def _checked(result: UmlResult, check: bool) -> UmlResult:
        if check and not result.completed:
            raise UmlKernelError(result)
        return result

    def run(self, *, check: bool = True) -> UmlResult:
        """:meth:`start`, then :meth:`wait` (which raises if the kernel failed)."""
        self.start()
        return self.wait(check=check)

    def _kill(self) -> None:
        """Kill UML's whole process group (its helpers too) and reap UML."""
        proc = self._proc
        if proc is None:
            return
        # The group id stays reserved while any member lives, so this cannot hit a
        # stranger even after UML itself was reaped.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10.0)

    def close(self) -> None:
        """Kill UML if it still runs and remove the working directory if we made it."""
        if self._closed:
            return
        self._closed = True
        self._kill()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> UmlGuest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m openamp.tools.uml``: build (or find) the kernel and print its path."""
    del argv
    try:
        print(find_or_build_kernel())
    except UmlBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared fixtures: unique machine names, child processes that never outlive a test,
a lock for the C-compatible fixed names, and a check that nothing is left behind."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import importlib.metadata
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from openamp.metal.shm import unique_name
from openamp.platform import EVENT_PATH, SHM_NAME

OURS = ["/dev/shm/openamp-*", "/tmp/openamp-*"]

# Our own pytest plugin, as users get it: through its pytest11 entry point once
# pyopenamp is installed from this tree; loaded here by name until then (loading it
# both ways would register it twice).
if not any(
    ep.value == "openamp.pytest_plugin" for ep in importlib.metadata.entry_points(group="pytest11")
):
    pytest_plugins = ["openamp.pytest_plugin"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mypyc",
        action="store_true",
        help="also compile the hot modules with mypyc and run the rpmsg tests on them (35 s)",
    )
    parser.addoption(
        "--hostile-iterations",
        type=int,
        default=0,
        metavar="N",
        help="inputs per randomized family in tests/reliability (default: each test's own "
        "small count, a few seconds); e.g. 10000 for a full hostile run",
    )


@pytest.fixture
def hostile_iterations(request: pytest.FixtureRequest) -> Callable[[int], int]:
    """``n(default)``: the --hostile-iterations count, or ``default`` when not given."""

    def count(default: int) -> int:
        given = int(request.config.getoption("--hostile-iterations"))
        return given if given > 0 else default

    return count


FIXED = [f"/dev/shm/{SHM_NAME}", EVENT_PATH]
LOCK = "/tmp/pyopenamp-fixed-names.lock"


def _children() -> set[int]:
    me = str(os.getpid())
    kids = set()
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            text = Path(status).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("PPid:") and line.split()[1] == me:
                kids.add(int(status.split("/")[2]))
                break
    return kids


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """After the whole session: no shm files, sockets or child processes of ours remain."""
    before = {p for pattern in OURS for p in glob.glob(pattern)}
    yield
    after = {p for pattern in OURS for p in glob.glob(pattern)} - before
    leftovers = sorted(p for p in after if _owned_by_us_or_dead(p))
    zombies = [pid for pid in _children() if _is_alive(pid)]
    for pid in zombies:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"the test session left these behind: {leftovers}"
    assert not zombies, f"child processes still running after the session: {zombies}"


_PID_IN_NAME = re.compile(r"openamp(?:-[a-z]+)*-(\d+)-[0-9a-f]{8}")


def _owned_by_us_or_dead(path: str) -> bool:
    """Names embed their creator's pid; another live process's files are not ours."""
    m = _PID_IN_NAME.search(os.path.basename(path))
    if m is None:
        return True
    pid = int(m.group(1))
    return pid == os.getpid() or not _is_alive(pid)


def _is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="session")
def uml_kernel(request: pytest.FixtureRequest) -> Path:
    """The UML kernel, built on first use (about 6 minutes); a failed build fails the tests.

    The build's progress lines go to the terminal while it runs, past pytest's output
    capture, so the first run of the suite does not sit silent for minutes.
    """
    from openamp.tools.uml import UmlBuildError, find_or_build_kernel

    capture = request.config.pluginmanager.getplugin("capturemanager")
    reporter = request.config.pluginmanager.getplugin("terminalreporter")

    def progress(line: str) -> None:
        if capture is None or reporter is None:
            print(line, file=sys.stderr, flush=True)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    try:
        return find_or_build_kernel(progress=progress)
    except UmlBuildError as exc:
        pytest.fail(f"the UML kernel could not be built: {exc}", pytrace=False)


@pytest.fixture
def vm_name() -> Iterator[str]:
    """A unique virtual machine name; its files are removed even if the test fails."""
    name = unique_name("openamp-vm")
    yield name
    for path in (f"/dev/shm/{name}.shm", f"/tmp/{name}.event"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@pytest.fixture
def fixed_names() -> Iterator[None]:
    """Serialise tests that use /dev/shm/openamp.shm and /tmp/openamp.event.0.

    They must not run in parallel with each other (also across pytest processes): the
    C-compatible names are global on the machine.
    """
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            for path in FIXED:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            fcntl.flock(lock, fcntl.LOCK_UN)


class Children:
    """Starts ``openamp`` (or python) child processes and reaps them at test end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def openamp(self, *args: str) -> subprocess.Popen[str]:
        """Start ``python -m openamp ARGS`` with output captured."""
        return self.start([sys.executable, "-m", "openamp", *args])

    def start(self, cmd: list[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
        )
        self.procs.append(proc)
        return proc

    @staticmethod
    def result(proc: subprocess.Popen[str], timeout: float = 60.0) -> tuple[int, str, str]:
        """Wait for ``proc``; return (exit code, stdout, stderr).  Kills it on timeout."""
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(
                f"{proc.args} did not finish in {timeout} s:\n{out}\n{err}"
            ) from None
        return proc.returncode, out, err

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def children() -> Iterator[Children]:
    """Child processes that are killed and reaped when the test ends, pass or fail."""
    kids = Children()
    try:
        yield kids
    finally:
        kids.close()


def run_openamp(
    *args: str | os.PathLike[str], cwd: Path | str | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m openamp ARGS`` to the end, as a user types it: no stdin, output
    captured as text, ``timeout`` seconds at most."""
    return subprocess.run(
        [sys.executable, "-m", "openamp", *map(os.fspath, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        check=False,
    )

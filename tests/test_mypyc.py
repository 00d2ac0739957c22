"""The hot modules compile with mypyc, and the compiled build passes the rpmsg tests.

An optional compiled build halves the instructions of a round trip (docs/performance.md),
so it must stay one step away: this compiles the eight modules of the per-message path
into a scratch copy of the package and runs the ring, rpmsg and byte-for-byte tests
against it.  Compiling takes about 35 s on two cores, so it runs only with ``--mypyc``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HOT_MODULES = [
    "openamp/rpmsg/core.py",
    "openamp/rpmsg/virtio.py",
    "openamp/rpmsg/wire.py",
    "openamp/rpmsg/buffers.py",
    "openamp/virtio/virtqueue.py",
    "openamp/virtio/ring.py",
    "openamp/metal/io.py",
    "openamp/metal/wait.py",
]
# (not test_reference_rpmsg.py: its twin subclasses the device, and compiled classes
# cannot be subclassed from interpreted code)
TESTS = ["test_rpmsg.py", "test_conformance.py", "test_virtqueue.py", "test_bufsz.py"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_hot_modules_compile_with_mypyc_and_pass_the_rpmsg_tests(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if not request.config.getoption("--mypyc"):
        pytest.skip("compiling takes about 35 s: run with --mypyc")
    build = tmp_path / "build"
    shutil.copytree(ROOT / "src" / "openamp", build / "openamp")
    mypyc = shutil.which("mypyc")
    assert mypyc, "mypyc comes with mypy (pip install -e '.[test]')"
    compiled = subprocess.run(
        [mypyc, *HOT_MODULES], cwd=build, capture_output=True, text=True, check=False
    )
    assert compiled.returncode == 0, compiled.stdout[-3000:] + compiled.stderr[-3000:]
    assert len(list(build.glob("openamp/*/*.so"))) == len(HOT_MODULES)
    env = dict(os.environ, PYTHONPATH=str(build))
    probe = "import openamp.rpmsg.virtio as v; print(v.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert where.stdout.strip().endswith(".so")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
        cwd=ROOT / "tests",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:]

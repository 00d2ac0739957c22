"""Build the C echo firmware (``tests/firmware/echo_fw.c``) for tests, once per session.

``build_echo_firmware(out_dir)`` compiles it with gcc into an x86-64 Linux executable
and returns its path; the result is cached by the hash of the sources and the command,
so every test of a session reuses one build.  ``FIRMWARE_LAYOUT`` is the memory map the
firmware's resource table describes (see ``tests/firmware/README.md``).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from types import MappingProxyType

__all__ = ["FIRMWARE_DIR", "FIRMWARE_LAYOUT", "GCC_FLAGS", "build_echo_firmware", "gcc_command"]

FIRMWARE_DIR = Path(__file__).resolve().parent / "firmware"
SOURCE = FIRMWARE_DIR / "echo_fw.c"
LINKER_SCRIPT = FIRMWARE_DIR / "echo_fw.ld"

FIRMWARE_LAYOUT = MappingProxyType(
    {
        "shm_size": 0x80000,
        "rsc_da": 0x70000,
        "pool_base": 0x10000,
        "pool_size": 0x40000,
        "trace_da": 0x60000,
        "trace_len": 0x1000,
        "vdev_id": 7,
        "vdev_notifyid": 0,
        "dfeatures": 1,
        # (da, align, num, notifyid) of vring 0 (device -> driver) and vring 1
        "vrings": ((0x4000, 0x1000, 256, 1), (0x8000, 0x1000, 256, 2)),
        "echo_addr": 0x400,
    }
)
"""The memory map of ``echo_fw``'s resource table: device address == offset in the file."""

GCC_FLAGS = (
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wl,--fatal-warnings",
    "-O2",
    "-ffreestanding",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fno-pie",
    "-no-pie",
    "-static",
    "-nostdlib",
    "-Wl,--build-id=none",
)

_built: dict[str, Path] = {}


def gcc_command(output: Path) -> list[str]:
    """The gcc command line that builds the firmware into ``output``."""
    return ["gcc", *GCC_FLAGS, f"-Wl,-T,{LINKER_SCRIPT}", "-o", str(output), str(SOURCE)]


def _key() -> str:
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), LINKER_SCRIPT.read_bytes(), " ".join(GCC_FLAGS).encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:16]


def build_echo_firmware(out_dir: Path) -> Path:
    """Compile ``echo_fw.c`` into ``out_dir`` (once per session and source hash).

    Raises :class:`RuntimeError` with gcc's output if gcc is missing or the build fails:
    the firmware tests must fail loudly, not skip.
    """
    key = _key()
    cached = _built.get(key)
    if cached is not None and cached.is_file():
        return cached
    if shutil.which("gcc") is None:
        raise RuntimeError("gcc is not installed: it is needed to build tests/firmware/echo_fw.c")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"echo_fw-{key}"
    cmd = gcc_command(output)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or not output.is_file():
        raise RuntimeError(
            f"building the echo firmware failed (exit {result.returncode}):\n"
            f"$ {' '.join(cmd)}\n{result.stdout}{result.stderr}"
        )
    _built[key] = output
    return output

"""System tools a feature or a test needs (``dtc``, ``tshark``...), installed on demand.

pyopenamp's own tests must pass on a fresh machine from the README's command alone, so a
test that needs a Debian package asks :func:`ensure_tool` for it: the tool's path when it
is there; otherwise, as root, it installs the package with ``apt-get`` (``apt-get update``
once per process); otherwise :class:`SystemDependencyError` says what to install.
The UML kernel build (``tools/uml_kernel/build-kernel.sh``) follows the same rule.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import threading

from ..errors import OpenAMPError

__all__ = ["SystemDependencyError", "ensure_tool"]

_LOCK_PATH = "/tmp/pyopenamp-apt.lock"
_updated = False
_lock = threading.Lock()


class SystemDependencyError(OpenAMPError):
    """A system tool is missing and could not be installed; the message says how to."""


def ensure_tool(command: str, package: str, *, install: bool = True) -> str:
    """The path of ``command``, installing Debian ``package`` first if it is missing.

    ``install=False`` only looks.  Installing needs root and ``apt-get``; concurrent
    callers (pytest workers, other sessions) wait for each other on a lock file.
    """
    path = shutil.which(command)
    if path:
        return path
    how = f"install the Debian package {package!r} (apt-get install {package})"
    if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemDependencyError(f"{command} is not installed: {how}")
    global _updated
    with _lock, open(_LOCK_PATH, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = shutil.which(command)
        if path:  # another process installed it meanwhile
            return path
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        steps = [["apt-get", "install", "-y", "-qq", package]]
        if not _updated:
            steps.insert(0, ["apt-get", "update", "-qq"])
        for step in steps:
            proc = subprocess.run(step, capture_output=True, text=True, env=env, check=False)
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-10:])
                raise SystemDependencyError(
                    f"{' '.join(step)} failed (status {proc.returncode}); {how}\n{tail}"
                )
            if step[1] == "update":
                _updated = True
    path = shutil.which(command)
    if not path:
        raise SystemDependencyError(f"{package} was installed but {command} is not on PATH")
    return path

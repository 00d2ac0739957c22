"""Programs that run *inside* the UML guest for ``test_uml.py``.

Run as ``python3 -I -S uml_guest.py SCENARIO RESULT.json`` by the guest's init script;
the host's file system is the guest's root, so the result file lands where the test
reads it.  Only the standard library is used, on purpose through plain ``os``,
``fcntl``, ``select`` and ``termios`` calls (no pyopenamp), so these programs show what
any Linux user-space program sees.  Devices are found through sysfs, never guessed.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import struct
import sys
import termios
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

BUS = Path("/sys/bus/rpmsg/devices")
RPMSG_CLASS = Path("/sys/class/rpmsg")
TTY_CLASS = Path("/sys/class/tty")
RPMSG_ADDR_ANY = 0xFFFFFFFF
EPT_INFO = struct.Struct("=32sII")
RPMSG_CREATE_EPT_IOCTL = 0x4028B501
RPMSG_DESTROY_EPT_IOCTL = 0x0000B502
MTU = 496


def payload(n: int) -> bytes:
    """``n`` binary bytes that include NULs and never start like a shutdown message."""
    return bytes((31 * k + n) & 0xFF for k in range(n))


def wait_for(probe: Callable[[], T | None], timeout: float, interval: float = 0.01) -> T | None:
    """Call ``probe`` until it returns something other than None, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def channels(name: str) -> list[Path]:
    """The rpmsg bus devices whose channel name is ``name``."""
    if not BUS.is_dir():
        return []
    return sorted(d for d in BUS.iterdir() if read_text(d / "name") == name)


def find_channel(name: str, timeout: float, exclude: tuple[str, ...] = ()) -> Path | None:
    def probe() -> Path | None:
        found = [d for d in channels(name) if d.name not in exclude]
        return found[0] if found else None

    return wait_for(probe, timeout)


def node_of(sysfs_parent: Path, prefix: str, timeout: float) -> str | None:
    """``/dev/<child>`` for the class device named ``<prefix>N`` under ``sysfs_parent``,
    once both the sysfs entry and the device node exist."""

    def probe() -> str | None:
        if not sysfs_parent.is_dir():
            return None
        for child in sorted(sysfs_parent.iterdir()):
            if child.name.startswith(prefix) and child.name[len(prefix) :].isdigit():
                node = f"/dev/{child.name}"
                if os.path.exists(node):
                    return node
        return None

    return wait_for(probe, timeout)


def chrdev_of(channel: Path, timeout: float = 5.0) -> str | None:
    """The ``/dev/rpmsgN`` that rpmsg_char created on ``channel``."""
    return node_of(channel / "rpmsg", "rpmsg", timeout)


def ctrl_device(timeout: float = 5.0) -> str | None:
    """The ``/dev/rpmsg_ctrlN`` of the (only) virtio rpmsg device."""
    return node_of(RPMSG_CLASS, "rpmsg_ctrl", timeout)


def read_message(fd: int, timeout: float, size: int = 512) -> bytes:
    """One message; raises TimeoutError, or the OSError the kernel returns."""
    p = select.poll()
    p.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    if not p.poll(timeout * 1000):
        raise TimeoutError(f"nothing to read within {timeout} s")
    return os.read(fd, size)


def errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def gone(path: Path | str, timeout: float) -> bool:
    """Whether ``path`` disappears within ``timeout`` seconds."""
    return wait_for(lambda: True if not os.path.exists(path) else None, timeout) is True


# -- scenarios -------------------------------------------------------------------------------


def scenario_sample(result: dict[str, Any]) -> None:
    # The whole exchange usually happens while the kernel boots, before we run; what is
    # left to see is that the channel went away when the remote destroyed its endpoint.
    result["removed"] = wait_for(lambda: True if not channels("rpmsg-client-sample") else None, 20)
    result["devices"] = sorted(d.name for d in BUS.iterdir())


def scenario_raw(result: dict[str, Any]) -> None:
    channel = find_channel("rpmsg-raw", 20)
    assert channel is not None, "no rpmsg-raw channel appeared"
    node = chrdev_of(channel)
    assert node is not None, f"no /dev/rpmsgN for {channel}"
    result.update(channel=channel.name, node=node, dst=read_text(channel / "dst"))
    fd = os.open(node, os.O_RDWR)
    mismatches: list[int] = []
    t0 = time.monotonic()
    for n in range(MTU + 1):
        data = payload(n)
        assert os.write(fd, data) == n
        if read_message(fd, 5.0) != data:
            mismatches.append(n)
    result["elapsed"] = time.monotonic() - t0
    result["echoed"] = MTU + 1
    result["mismatches"] = mismatches
    result["nul_bytes_sent"] = sum(payload(n).count(0) for n in range(MTU + 1))
    try:
        os.write(fd, payload(MTU + 1))
        result["too_big"] = "accepted"
    except OSError as exc:
        result["too_big"] = errno_name(exc)
    os.close(fd)


def create_ept(ctrl_fd: int, ctrl_name: str, name: str, src: int, dst: int) -> str:
    """CREATE_EPT on the ctrl device; return the new /dev/rpmsgN."""
    before = {p.name for p in (RPMSG_CLASS / ctrl_name).glob("rpmsg[0-9]*")}
    fcntl.ioctl(ctrl_fd, RPMSG_CREATE_EPT_IOCTL, EPT_INFO.pack(name.encode(), src, dst))

    def probe() -> str | None:
        for p in sorted((RPMSG_CLASS / ctrl_name).glob("rpmsg[0-9]*")):
            if p.name not in before and read_text(p / "name") == name:
                node = f"/dev/{p.name}"
                return node if os.path.exists(node) else None
        return None

    node = wait_for(probe, 5.0)
    assert node is not None, f"CREATE_EPT {name!r} made no /dev/rpmsgN"
    return node


def scenario_ctrl(result: dict[str, Any]) -> None:
    ctrl = ctrl_device()
    assert ctrl is not None, "no /dev/rpmsg_ctrlN"
    ctrl_name = os.path.basename(ctrl)
    result["ctrl"] = ctrl
    ctrl_fd = os.open(ctrl, os.O_RDWR)
    endpoints = [
        ("pyopenamp-echo", RPMSG_ADDR_ANY, 0x2000, b"echo \x00 me"),
        ("pyopenamp-info", 0x3000, 0x2001, b"abc\x00def"),
        ("pyopenamp-any", RPMSG_ADDR_ANY, 0x2001, b"xyz"),
    ]
    exchanges = []
    for name, src, dst, data in endpoints:
        node = create_ept(ctrl_fd, ctrl_name, name, src, dst)
        sysfs = RPMSG_CLASS / ctrl_name / os.path.basename(node)
        fd = os.open(node, os.O_RDWR)
        os.write(fd, data)
        reply = read_message(fd, 5.0)
        exchanges.append(
            {
                "name": name,
                "node": node,
                "src": read_text(sysfs / "src"),
                "dst": read_text(sysfs / "dst"),
                "sent": data.hex(),
                "reply": reply.hex(),
            }
        )
        fcntl.ioctl(fd, RPMSG_DESTROY_EPT_IOCTL)
        os.close(fd)
        exchanges[-1]["node_removed"] = gone(node, 5.0)
        exchanges[-1]["sysfs_removed"] = gone(sysfs, 5.0)
    os.close(ctrl_fd)
    result["exchanges"] = exchanges


def make_raw(fd: int) -> None:
    """termios ``cfmakeraw``: no echo, no line editing, no CR/LF translation."""
    attrs = termios.tcgetattr(fd)
    iflag, oflag, cflag, lflag = attrs[0], attrs[1], attrs[2], attrs[3]
    iflag &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
    )
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag &= ~(termios.CSIZE | termios.PARENB)
    cflag |= termios.CS8
    attrs[0:4] = [iflag, oflag, cflag, lflag]
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def read_line(fd: int, pending: bytearray, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    while b"\n" not in pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete line within {timeout} s (have {bytes(pending)!r})")
        pending += read_message(fd, remaining, 4096)
    line, _, rest = bytes(pending).partition(b"\n")
    pending[:] = rest
    return line


def scenario_tty(result: dict[str, Any]) -> None:
    def probe() -> str | None:
        ttys = sorted(TTY_CLASS.glob("ttyRPMSG*")) if TTY_CLASS.is_dir() else []
        for t in ttys:
            if os.path.exists(f"/dev/{t.name}"):
                return f"/dev/{t.name}"
        return None

    node = wait_for(probe, 20)
    assert node is not None, "no ttyRPMSG device appeared"
    result["node"] = node
    fd = os.open(node, os.O_RDWR | os.O_NOCTTY)
    make_raw(fd)
    lines = ["hello from the guest", "line two \t with a tab", "third: ✓ utf-8"]
    replies = []
    pending = bytearray()
    for line in lines:
        os.write(fd, line.encode() + b"\n")
        replies.append(read_line(fd, pending, 5.0).decode())
    result["sent"] = lines
    result["replies"] = replies
    os.close(fd)


def scenario_vanish(result: dict[str, Any]) -> None:
    steps: dict[str, Any] = {}
    result["steps"] = steps
    t0 = time.monotonic()
    # 1. a channel, an echo through it
    first = find_channel("rpmsg-raw", 20)
    assert first is not None, "no rpmsg-raw channel appeared"
    node1 = chrdev_of(first)
    assert node1 is not None
    fd1 = os.open(node1, os.O_RDWR)
    os.write(fd1, b"hello")
    steps["echo1"] = read_message(fd1, 5.0).decode()
    # 2. the remote destroys the endpoint (NS destroy): our read fails, the device goes
    os.write(fd1, b"destroy")
    try:
        steps["read_after_destroy"] = read_message(fd1, 10.0).hex()
    except OSError as exc:
        steps["read_after_destroy"] = errno_name(exc)
    try:
        os.write(fd1, b"more")
        steps["write_after_destroy"] = "accepted"
    except OSError as exc:
        steps["write_after_destroy"] = errno_name(exc)
    os.close(fd1)
    steps["channel1"] = first.name
    steps["sysfs1_removed"] = gone(first, 10.0)
    steps["node1_removed"] = gone(node1, 10.0)
    # 3. the remote announces again; a new channel, an echo through it
    second = find_channel("rpmsg-raw", 10, exclude=(first.name,))
    assert second is not None, "the remote's second rpmsg-raw channel did not appear"
    node2 = chrdev_of(second)
    assert node2 is not None
    steps["channel2"] = second.name
    fd2 = os.open(node2, os.O_RDWR)
    os.write(fd2, b"hello again")
    steps["echo2"] = read_message(fd2, 5.0).decode()
    # 4. the remote vanishes (the backend closes its socket): reads fail, nothing hangs
    os.write(fd2, b"vanish")
    t1 = time.monotonic()
    try:
        steps["read_after_vanish"] = read_message(fd2, 10.0).hex()
    except OSError as exc:
        steps["read_after_vanish"] = errno_name(exc)
    steps["read_after_vanish_s"] = round(time.monotonic() - t1, 3)
    try:
        os.write(fd2, b"anyone?")
        steps["write_after_vanish"] = "accepted"
    except OSError as exc:
        steps["write_after_vanish"] = errno_name(exc)
    os.close(fd2)
    steps["sysfs2_removed"] = gone(second, 10.0)
    steps["node2_removed"] = gone(node2, 10.0)
    steps["ctrl_removed"] = wait_for(
        lambda: True if not list(RPMSG_CLASS.glob("rpmsg_ctrl*")) else None, 10.0
    )
    steps["elapsed"] = round(time.monotonic() - t0, 3)


SCENARIOS: dict[str, Callable[[dict[str, Any]], None]] = {
    "sample": scenario_sample,
    "raw": scenario_raw,
    "ctrl": scenario_ctrl,
    "tty": scenario_tty,
    "vanish": scenario_vanish,
}


def main() -> int:
    scenario, out = sys.argv[1], Path(sys.argv[2])
    result: dict[str, Any] = {"scenario": scenario, "ok": False}
    try:
        SCENARIOS[scenario](result)
        result["ok"] = True
    except BaseException as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

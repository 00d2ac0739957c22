"""Inspect and doctor a board: the kernel's remoteproc and rpmsg, through sysfs and debugfs.

:func:`inspect_board` gathers what ``openamp inspect --board`` shows: every remote
processor (state, firmware, resource table and trace buffers from debugfs), the rpmsg
channels with the driver bound to each, control and endpoint devices with their
``/dev`` nodes.  :func:`doctor_board` walks the bring-up of a board's link step by step
and stops at the first broken one (``openamp doctor --board``).

Rules: this module reads only through :mod:`openamp.linux` and the file system (the
``sysfs``/``debugfs``/``dev`` roots can point at a copy of a board's trees); it imports
no simulation, service or ELF code -- a board pays for every import, and
``tests/test_layers.py`` checks it.  It changes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OpenAMPError
from ..linux.remoteproc import RemoteProc, list_remoteprocs
from ..linux.rpmsg import (
    Channel,
    format_addr,
    list_channels,
    list_ctrls,
    list_endpoint_devices,
    list_ttys,
)

__all__ = [
    "BoardRoots",
    "Step",
    "doctor_board",
    "inspect_board",
    "render_board",
    "render_steps",
]


@dataclass(frozen=True)
class BoardRoots:
    """Where the kernel's trees are (a board's, or a copy of them)."""

    sysfs: str = "/sys"
    debugfs: str = "/sys/kernel/debug"
    dev: str = "/dev"
    firmware_path: tuple[str, ...] | None = None
    """Directories searched for firmware (None: the kernel's search path)."""


@dataclass
class Step:
    """One step of a doctor's walk: what was checked, whether it holds, what to do."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "step": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix,
            "facts": self.facts,
        }


def render_steps(steps: list[Step]) -> str:
    """The walk for people: one line per step, the fix under a broken one."""
    lines = []
    for s in steps:
        lines.append(f"{'ok  ' if s.ok else 'FAIL'}  {s.name}: {s.detail}")
        if not s.ok and s.fix:
            lines.append(f"      -> {s.fix}")
    if steps and all(s.ok for s in steps):
        lines.append("the link looks healthy")
    return "\n".join(lines) + "\n"


def _rprocs(roots: BoardRoots) -> list[RemoteProc]:
    return list_remoteprocs(
        sysfs=roots.sysfs,
        debugfs=roots.debugfs,
        dev=roots.dev,
        firmware_path=list(roots.firmware_path) if roots.firmware_path else None,
    )


def _attempt(fn: Any) -> Any:
    try:
        return fn()
    except (OpenAMPError, OSError) as exc:
        return {"error": str(exc)}


def inspect_board(roots: BoardRoots) -> dict[str, Any]:
    """Everything readable about the board's remote processors and rpmsg devices."""
    procs = []
    for rp in _rprocs(roots):
        info = rp.info()
        table = _attempt(rp.resource_table)
        if isinstance(table, list):
            info["resource_table"] = [e.to_json() for e in table]
        else:
            info["resource_table"] = table
        traces: dict[str, Any] = {}
        for name in info.get("traces") or []:
            traces[name] = _attempt(lambda n=name, r=rp: r.trace(int(n.removeprefix("trace"))))
        info["trace_text"] = traces
        procs.append(info)
    return {
        "remoteprocs": procs,
        "channels": [c.to_json() for c in list_channels(sysfs=roots.sysfs, include_internal=True)],
        "ctrls": [c.to_json() for c in list_ctrls(sysfs=roots.sysfs, dev=roots.dev)],
        "endpoints": [e.to_json() for e in list_endpoint_devices(sysfs=roots.sysfs, dev=roots.dev)],
        "ttys": [t.to_json() for t in list_ttys(sysfs=roots.sysfs, dev=roots.dev)],
    }


def render_board(report: dict[str, Any]) -> str:
    """:func:`inspect_board`'s report for people."""
    lines = []
    procs = report["remoteprocs"]
    if not procs:
        lines.append("remote processors: none (no /sys/class/remoteproc entries)")
    for p in procs:
        lines.append(
            f"{p['device']} ({p.get('name')}): {p.get('state')}, firmware {p.get('firmware')!r}"
        )
        table = p.get("resource_table")
        if isinstance(table, dict):
            lines.append(f"  resource table: {table['error']}")
        elif not table:
            lines.append("  resource table: none loaded")
        else:
            lines.append("  resource table (debugfs):")
            for e in table:
                rest = ", ".join(
                    f"{k} {format_addr(v) if isinstance(v, int) and v > 9 else v}"
                    for k, v in e.items()
                    if k not in ("index", "type", "vrings")
                )
                lines.append(f"    [{e['index']}] {e['type']}: {rest}")
                for i, vr in enumerate(e.get("vrings", [])):
                    vr_text = ", ".join(f"{k} {v:#x}" for k, v in vr.items())
                    lines.append(f"        vring{i}: {vr_text}")
        for name, text in (p.get("trace_text") or {}).items():
            lines.append(f"  {name}:")
            body = text["error"] if isinstance(text, dict) else text
            lines += [f"    | {ln}" for ln in str(body).rstrip("\n").splitlines()[-20:]]
    lines.append("")
    chans = report["channels"]
    lines.append(f"rpmsg channels: {len(chans)}")
    for c in chans:
        lines.append(
            f"  {c['device']}: {c['name']!r} {format_addr(c['src'])} -> {format_addr(c['dst'])}"
            f", driver {c['driver'] or 'NONE'}"
            + (f", endpoint devices {', '.join(c['endpoints'])}" if c["endpoints"] else "")
            + (f", ttys {', '.join(c['ttys'])}" if c["ttys"] else "")
        )
    for c in report["ctrls"]:
        lines.append(f"  control device {c['device']}: {c['node']}")
    for e in report["endpoints"]:
        lines.append(
            f"  endpoint device {e['device']}: {e['node']} {e['name']!r} "
            f"{format_addr(e['src'])} -> {format_addr(e['dst'])}"
        )
    for t in report["ttys"]:
        lines.append(f"  tty {t.get('device')}: {t.get('node')}")
    return "\n".join(lines) + "\n"


def _node_access(node: Path) -> str:
    """'' if we may read and write ``node``, else what is wrong."""
    if not node.exists():
        return f"{node} does not exist (is devtmpfs mounted, or udev running?)"
    if not os.access(node, os.R_OK | os.W_OK):
        st = node.stat()
        return (
            f"{node} is not readable and writable for uid {os.geteuid()} "
            f"(mode {st.st_mode & 0o777:o}, owner {st.st_uid}:{st.st_gid})"
        )
    return ""


def doctor_board(
    roots: BoardRoots, *, rproc: str | None = None, service: str | None = None
) -> list[Step]:
    """Walk a board's link bring-up; the last step is the first broken one (if any).

    Steps: a remote processor exists (a virtio-only link without one, as under UML,
    goes on), it is running, its firmware file is in the search path, channels were
    announced (``service`` among them), a driver is bound to the channel, its ``/dev``
    nodes exist and we may open them.
    """
    steps: list[Step] = []

    def step(name: str, ok: bool, detail: str, fix: str = "", **facts: Any) -> bool:
        steps.append(Step(name, ok, detail, fix, facts))
        return ok

    channels = list_channels(sysfs=roots.sysfs)
    procs = _rprocs(roots)
    proc: RemoteProc | None = None
    if not procs:
        if not channels:
            step(
                "remote processor",
                False,
                f"no remote processor in {roots.sysfs}/class/remoteproc and no rpmsg channel",
                "load the remoteproc driver of your SoC (lsmod | grep rproc; check the "
                "device tree node is 'okay'), or the virtio transport your link uses",
            )
            return steps
        step(
            "remote processor",
            True,
            "no remote processor, but rpmsg channels exist (a virtio link without "
            "remoteproc, e.g. vhost-user under UML)",
        )
    else:
        if rproc is None:
            proc = procs[0]
        else:
            matches = [p for p in procs if rproc in (p.device, str(p.index), p.name)]
            if not matches:
                names = ", ".join(f"{p.device} ({p.name})" for p in procs)
                step("remote processor", False, f"no remote processor {rproc!r}", f"use {names}")
                return steps
            proc = matches[0]
        info = proc.info()
        step(
            "remote processor",
            True,
            f"{proc.device} ({info.get('name')})",
            device=proc.device,
        )
        state = str(info.get("state"))
        fw = info.get("firmware") or ""
        found = proc.find_firmware(fw) if fw else None
        dirs = [str(p) for p in proc.firmware_path]
        if state not in ("running", "attached"):
            if fw and found is None:
                step(
                    "firmware",
                    False,
                    f"{proc.device} is {state} and its firmware {fw!r} is not in the search "
                    f"path ({', '.join(dirs)})",
                    f"copy the firmware into {dirs[-1] if dirs else '/lib/firmware'}, or "
                    f"`openamp rproc firmware {proc.device} PATH` to install and select it",
                    searched=dirs,
                )
                return steps
            if state == "crashed":
                step(
                    "state",
                    False,
                    f"{proc.device} crashed",
                    f"read its trace (`openamp rproc trace {proc.device}`); with recovery "
                    f"enabled the kernel restarts it, else `openamp rproc stop` then start",
                )
                return steps
            step(
                "state",
                False,
                f"{proc.device} is {state}; firmware {fw!r} is at {found}",
                f"start it: `openamp rproc start {proc.device}`",
                state=state,
            )
            return steps
        step("state", True, f"{proc.device} is {state}", state=state)
        if fw:
            step(
                "firmware",
                True,
                f"{fw!r} found at {found}"
                if found
                else f"{fw!r} is not in the search path (fine while it runs; a restart will fail)",
            )
        channels = [c for c in channels if c.remoteproc in (None, proc.device)]
    if not channels:
        step(
            "rpmsg channels",
            False,
            "the remote announced no rpmsg channel",
            "check that the firmware has an rpmsg vdev in its resource table and creates an "
            "endpoint with a name (NS announcement); its trace may say more",
        )
        return steps
    names = ", ".join(f"{c.name!r} ({format_addr(c.dst)})" for c in channels)
    chosen: list[Channel] = channels
    if service is not None:
        chosen = [c for c in channels if c.name == service]
        if not chosen:
            step(
                "rpmsg channels",
                False,
                f"no channel {service!r}; the remote announced {names}",
                "ask for one of these, or check the service name in the firmware",
                announced=[c.name for c in channels],
            )
            return steps
    step("rpmsg channels", True, f"announced: {names}", announced=[c.name for c in channels])
    for c in chosen:
        if c.driver is None:
            step(
                f"driver of {c.device}",
                False,
                f"no driver is bound to {c.device} ({c.name!r})",
                f"bind the char driver: `openamp rpmsg bind {c.name}` (or write "
                f"rpmsg_chrdev to {c.path}/driver_override and bind it)",
            )
            return steps
        step(f"driver of {c.device}", True, f"{c.driver} is bound", driver=c.driver)
        nodes = [Path(roots.dev) / n for n in c.endpoints] + [Path(roots.dev) / n for n in c.ttys]
        if c.driver in ("rpmsg_chrdev", "rpmsg_tty") and not nodes:
            step(
                f"/dev nodes of {c.device}",
                False,
                f"{c.driver} is bound but made no device below {c.path}",
                "rebind the driver (`openamp rpmsg unbind`, then `bind`)",
            )
            return steps
        for node in nodes:
            problem = _node_access(node)
            if problem:
                step(
                    f"/dev node {node.name}",
                    False,
                    problem,
                    "run as root, or give your user access with a udev rule "
                    '(SUBSYSTEM=="rpmsg", MODE="0660", GROUP="dialout")',
                )
                return steps
            step(f"/dev node {node.name}", True, f"{node} can be opened for reading and writing")
    return steps

"""The link doctor: walk a shared-memory link's bring-up and stop at the first broken step.

:func:`doctor_link` looks at a linux-generic or virtual machine from the outside -- its
shared-memory file (read-only), the doorbell socket in ``/proc/net/unix``, the processes
that map the memory -- and checks, in the order a link comes up:

1. the shared memory exists and has the size the layout needs;
2. the resource table is sound and has an rpmsg vdev;
3. the vdev's status (DRIVER_OK, stuck at 0, NEEDS_RESET, FAILED);
4. the features (the driver accepted only what the device offered);
5. the vrings lie inside the memory;
6. the buffers can hold a message and have the size both sides expect;
7. the doorbell socket (listening, or connected and removed by its server);
8. both processes are alive;
9. the remote announced the service asked for (and what it did announce);
10. the host bound an endpoint to it.

Each step is a :class:`~openamp.tools.board.Step` with what was found and, when it
fails, what to do.  Nothing here writes to the memory or connects to the socket (its
server accepts exactly one peer).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

from ..platform.layout import MachineLayout
from ..rpmsg.events import describe_features, describe_status
from ..rpmsg.wire import RPMSG_HDR_SIZE, VIRTIO_RPMSG_F_BUFSZ, VIRTIO_RPMSG_F_NS, RpmsgConfigSpace
from ..virtio.ring import (
    VIRTIO_CONFIG_STATUS_DRIVER_OK,
    VIRTIO_CONFIG_STATUS_FAILED,
    VIRTIO_CONFIG_STATUS_NEEDS_RESET,
    VIRTIO_ID_RPMSG,
)
from .board import Step, render_steps
from .linkmem import LinkMemory, find_table, read_link_memory, snapshot
from .procscan import process_name, processes_mapping, unix_sockets

__all__ = ["doctor_link", "render_steps"]


def doctor_link(
    shm_path: str,
    event_path: str,
    *,
    layout: MachineLayout,
    buffer_size: int = 512,
    service: str | None = None,
    server_hint: str = "",
    client_hint: str = "",
) -> list[Step]:
    """Walk the link in ``shm_path`` / ``event_path`` (see the module docstring).

    ``layout`` and ``buffer_size`` are what the caller expects (``--buffer-size``);
    ``server_hint``/``client_hint`` are command lines to suggest for starting a side.
    Returns the steps up to and including the first broken one.
    """
    steps: list[Step] = []

    def step(name: str, ok: bool, detail: str, fix: str = "", **facts: Any) -> bool:
        steps.append(Step(name, ok, detail, fix, facts))
        return ok

    def fail(name: str, detail: str, fix: str, **facts: Any) -> list[Step]:
        step(name, False, detail, fix, **facts)
        return steps

    pids = processes_mapping(shm_path) if os.path.exists(shm_path) else []
    sockets = unix_sockets(event_path)
    listening = [s for s in sockets if s.listening]
    connected = [s for s in sockets if not s.listening and s.state == 3]
    who = ", ".join(f"{p} ({process_name(p)})" for p in pids) or "none"
    start_server = server_hint or "the socket server side (by default the remote)"
    start_client = client_hint or "the other side (by default the host)"

    # 1. the memory
    if not os.path.exists(shm_path):
        if os.path.exists(event_path):
            return fail(
                "shared memory",
                f"{shm_path} does not exist, but the socket {event_path} does",
                f"a server that died left its socket: remove {event_path} and start {start_server}",
            )
        return fail(
            "shared memory",
            f"{shm_path} does not exist: nothing runs on this machine",
            f"start {start_server} first, then {start_client}",
        )
    st = os.stat(shm_path)
    if not stat.S_ISREG(st.st_mode):
        return fail(
            "shared memory",
            f"{shm_path} is not a regular file: it cannot be a shared-memory segment",
            "name the segment itself (/dev/shm/NAME.shm) or a file the two sides map",
        )
    size = st.st_size
    if size != layout.shm_size:
        return fail(
            "shared memory",
            f"{shm_path} is {size:#x} bytes, but a link with {buffer_size}-byte buffers needs "
            f"{layout.shm_size:#x}: the two sides were started with different --buffer-size",
            "pass the same --buffer-size on both sides (and here)",
            size=size,
            expected=layout.shm_size,
        )
    step("shared memory", True, f"{shm_path}, {size // 1024} KiB", size=size, mapped_by=pids)

    # 2. the table
    mem = snapshot(shm_path)
    lm = read_link_memory(mem, source=shm_path, rsc_offset=layout.rsc_offset)
    if lm.table is None and (found := find_table(mem)) is not None:
        # laid out by a remoteproc host (`openamp rproc run`): the table is where the
        # firmware's ELF put it, not at the socket server's offset
        lm = read_link_memory(mem, source=shm_path, rsc_offset=found)
    if lm.table is None:
        return fail(
            "resource table",
            f"no sound resource table at {layout.rsc_offset:#x}: {lm.table_error}",
            "the socket server writes the table when it starts; something overwrote it or "
            "the server is not pyopenamp/OpenAMP: restart the server side",
        )
    rpmsg = [v for v in lm.vdevs if v.id == VIRTIO_ID_RPMSG]
    if not rpmsg or len(rpmsg[0].vrings) < 2:
        return fail(
            "resource table",
            "the table has no rpmsg vdev (virtio id 7) with two vrings",
            "the server's table is not an rpmsg link's; check which program created it",
        )
    vdev = rpmsg[0]
    step(
        "resource table",
        True,
        f"version {lm.table.version}, {len(lm.table.entries)} entries, rpmsg vdev at "
        f"{vdev.offset:#x}",
    )

    # 3. status
    status = vdev.status
    if status & VIRTIO_CONFIG_STATUS_FAILED:
        return fail(
            "vdev status",
            f"status {describe_status(status)}: the driver gave up on the device",
            "restart both sides; the driver's log says why it failed",
        )
    if status & VIRTIO_CONFIG_STATUS_NEEDS_RESET:
        return fail(
            "vdev status",
            f"status {describe_status(status)}: the device asks the driver to reset it",
            "restart the host (driver) side",
        )
    if not status & VIRTIO_CONFIG_STATUS_DRIVER_OK:
        if listening and len(pids) <= 1:
            fix = f"the server waits on {event_path} for its peer: start {start_client}"
        elif len(pids) >= 2:
            fix = (
                "both sides map the memory but the driver has not finished its set-up: is "
                "one side the virtio driver (--role driver) and the other the device? a "
                "driver that cannot fit its buffers in the pool stops before DRIVER_OK"
            )
        elif not pids:
            fix = (
                f"no process maps the memory: a crashed run left it; remove {shm_path} "
                "and start again"
            )
        else:
            fix = (
                f"only {who} maps the memory and nothing listens on {event_path}: its peer "
                "never came or died before the set-up ended; restart both sides"
            )
        return fail(
            "vdev status",
            f"status {describe_status(status)}: the driver has not set DRIVER_OK",
            fix,
            status=status,
            mapped_by=pids,
        )
    step("vdev status", True, describe_status(status), status=status)

    # 4. features
    extra = vdev.gfeatures & ~vdev.dfeatures
    if extra:
        return fail(
            "features",
            f"the driver accepted {describe_features(extra)}, which the device does not offer "
            f"(offered {describe_features(vdev.dfeatures)})",
            "the driver must accept a subset of the offer: restart the host side; a driver "
            "that writes its own features regardless is not virtio-conformant",
        )
    step(
        "features",
        True,
        f"offered {describe_features(vdev.dfeatures)}, "
        f"accepted {describe_features(vdev.gfeatures)}",
    )

    # 5. vrings inside the memory
    problems = [p for r in vdev.vrings for p in r.problems if "outside" in p and "vring" in p]
    ring_problems = [p for p in problems if "desc" not in p]
    if ring_problems:
        return fail(
            "vrings",
            "; ".join(ring_problems),
            "the table's vring addresses must lie in the shared memory: the table was "
            "written for another memory layout",
        )
    step(
        "vrings",
        True,
        ", ".join(f"vring{r.index} at {r.da:#x} ({r.num} entries)" for r in vdev.vrings),
    )

    # 6. buffers
    if not _buffers_ok(step, lm, vdev, buffer_size, layout):
        return steps

    # 7. doorbell
    if os.path.exists(event_path) and not listening:
        return fail(
            "doorbell",
            f"{event_path} exists but nothing listens on it",
            f"a server that died left it; remove {event_path} and restart both sides",
        )
    if listening:
        step(
            "doorbell",
            True,
            f"the server listens on {event_path} (it removes the path once a peer connects)",
        )
    elif connected:
        step("doorbell", True, f"{event_path}: the server accepted its peer and removed the path")
    else:
        return fail(
            "doorbell",
            f"no socket on {event_path}: the side that served it is gone",
            "restart both sides, the socket server first",
        )

    # 8. both processes
    if len(pids) < 2:
        return fail(
            "processes",
            f"the link is up but only {who} maps the memory: the other side is gone",
            "restart the side that ended (a remote stops after the host's NS destroy or its "
            "--count; a host after its run)",
            mapped_by=pids,
        )
    step("processes", True, f"mapped by {who}", mapped_by=pids)

    # 9. name service
    remote = [a for a in lm.announcements if a.from_remote]
    if not vdev.gfeatures & (1 << VIRTIO_RPMSG_F_NS):
        step(
            "name service",
            service is None,
            "the name service is not negotiated: nothing is announced, endpoints must use "
            "known addresses",
            "offer VIRTIO_RPMSG_F_NS in the table (dfeatures bit 0) or use fixed addresses",
        )
        return steps
    announced = sorted({a.name for a in remote if not a.destroy})
    destroyed = sorted({a.name for a in remote if a.destroy})
    if service is None:
        step("name service", True, f"the remote announced {announced or 'nothing seen'}")
        return steps
    if service not in announced:
        what = ", ".join(repr(n) for n in announced) or "nothing the buffers still show"
        fix = "check the service name on both sides"
        if service in destroyed:
            fix = f"the remote destroyed {service!r} (its endpoint ended): restart it"
        elif not announced:
            fix = (
                "a remote announces right after DRIVER_OK; later messages may have reused "
                "that buffer. Record a run with --capture to see the announcements"
            )
        return fail(
            "name service",
            f"the remote did not announce {service!r}; it announced {what}",
            fix,
            announced=announced,
        )
    addr = next(a.addr for a in remote if a.name == service and not a.destroy)
    step("name service", True, f"the remote announced {service!r} at {addr:#x}", addr=addr)

    # 10. endpoint bound
    host_ns = [a for a in lm.announcements if not a.from_remote and a.name == service]
    sent_to = [
        d
        for d in vdev.vrings[1].descriptors
        if d.header is not None and not d.header.empty and d.header.dst == addr
    ]
    if not host_ns and not sent_to:
        return fail(
            "endpoint",
            f"the host has neither announced {service!r} nor sent anything to {addr:#x}: "
            "it has no endpoint for the service, or one that has not sent yet (a "
            "listening endpoint cannot be seen from here)",
            f"create an endpoint for {service!r} on the host (rpmsg.endpoint(name) or "
            "create_endpoint(name)) and send; a host that waits for another name never binds",
        )
    how = "announced the same name" if host_ns else f"sent to {addr:#x}"
    step("endpoint", True, f"the host {how}: the endpoint is bound")
    return steps


def _buffers_ok(
    step: Callable[..., bool],
    lm: LinkMemory,
    vdev: Any,
    buffer_size: int,
    layout: MachineLayout,
) -> bool:
    rx = vdev.vrings[0]
    outside = [p for r in vdev.vrings for p in r.problems if "desc" in p]
    if outside:
        step(
            "buffers",
            False,
            "; ".join(outside[:3]),
            "the buffers must lie in the shared memory and hold a header: the sides disagree "
            "on the layout; pass the same --buffer-size on both sides",
        )
        return False
    sizes = sorted({d.length for d in rx.descriptors if d.state == "posted" and d.addr})
    if vdev.gfeatures & (1 << VIRTIO_RPMSG_F_BUFSZ):
        try:
            cfg = RpmsgConfigSpace.parse(vdev.config)
        except Exception as exc:
            step("buffers", False, f"F_BUFSZ negotiated but the config space is bad: {exc}")
            return False
        expected = cfg.txbuf_size
    else:
        expected = buffer_size
    if sizes and any(s <= RPMSG_HDR_SIZE for s in sizes):
        step("buffers", False, f"receive buffers of {sizes} bytes cannot hold a message")
        return False
    if sizes and sizes != [expected]:
        step(
            "buffers",
            False,
            f"the driver posts {', '.join(map(str, sizes))}-byte receive buffers, "
            f"{expected} expected",
            "pass the same --buffer-size on both sides",
            sizes=sizes,
        )
        return False
    step(
        "buffers",
        True,
        f"{rx.count('posted')} receive buffers of {sizes[0] if sizes else '?'} bytes posted",
    )
    return True

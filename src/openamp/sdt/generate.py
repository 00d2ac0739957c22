"""Everything one system description implies: the Linux tree, the firmware's header and
resource table, the channel info, and a pyopenamp machine with the same memory map.

Each output is a pure function of a :class:`~.system.System`; :func:`generate` collects
them as :class:`Outputs` (file name -> text or bytes, plus the tables and layouts as
values).  Rules:

* one rule per value, used by every output, so that the outputs agree by construction
  (``sdt check`` then proves it on the files);
* where Lopper's output was wrong or inconsistent we write what is correct, and the
  docs (docs/sdt.md) say where we differ;
* the seed-era inputs produce the seed's ``reserved-memory`` listing and
  ``openamp-channel-info.txt`` exactly.

Derivation rules (docs/sdt.md explains each):

* vring ``num``: 256 (``VRING_SIZE`` of the AMD firmware) if both vring carveouts hold
  ``PAGE_ALIGN(vring_size(256, 0x1000))`` bytes, as Linux's ``rproc_alloc_vring()``
  requires, else the largest power of two that fits both;
* ``SHARED_MEM_PA`` / ``SHARED_MEM_SIZE``: the smallest window holding vring0, vring1
  and the buffer carveout (everything the remote's shared-memory I/O region must reach);
  ``SHARED_BUF_OFFSET``: the buffer carveout's start minus ``SHARED_MEM_PA``;
* the resource table: a carveout entry per ELF-load DDR carveout (named like its
  reserved-memory node, so Linux ties the two), then the rpmsg vdev with the vring
  carveouts' addresses (not ``FW_RSC_ADDR_ANY``: Linux then refuses to boot a
  firmware whose rings are not where the tree reserves them), notify ids 1 and 2;
* the machine: one shared memory from the lowest ELF-load carveout to the end of the
  rings and buffer, the table at the start of the ELF carveout (where a firmware linked
  there carries it), the rings and the buffer pool at their physical addresses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import UsageError
from ..platform.layout import MachineLayout
from ..remoteproc.rsc_table import Carveout as RscCarveout, ResourceTable
from ..rpmsg.wire import VIRTIO_RPMSG_F_NS
from ..virtio.ring import align_up, vring_size
from .fdt import DeviceTree, Node, parse_dtb
from .model import Carveout, DescriptionError
from .system import Channel, System

__all__ = [
    "MAX_MACHINE_SPAN",
    "PAGE_SIZE",
    "VRING_ALIGN",
    "VRING_NUM",
    "Outputs",
    "channel_info",
    "generate",
    "linux_tree",
    "machine_layout",
    "platform_header",
    "resource_table",
    "shared_window",
    "vring_num",
]

VRING_ALIGN = 0x1000
VRING_NUM = 256
"""``VRING_SIZE`` of the AMD firmware headers: the ring size we aim for."""
PAGE_SIZE = 0x1000
MAX_MACHINE_SPAN = 0x4000000
"""The simulated machine's memory spans the ELF carveout and the rings: at most 64 MiB."""
_IPI_REGION = 0x20
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def vring_num(ch: Channel) -> int:
    """Entries per vring: 256, or the largest power of two both ring carveouts hold."""
    assert ch.vring0 is not None and ch.vring1 is not None
    room = min(ch.vring0.size, ch.vring1.size)
    num = VRING_NUM
    while num >= 2:
        if align_up(vring_size(num, VRING_ALIGN), PAGE_SIZE) <= room:
            return num
        num //= 2
    raise DescriptionError(
        f"vring carveouts of {ch.spec.remote!r} ({room:#x} bytes) cannot hold even a "
        f"2-entry ring aligned to {VRING_ALIGN:#x}",
        file=str(ch.spec.at),
    )


def shared_window(ch: Channel) -> tuple[int, int]:
    """(SHARED_MEM_PA, SHARED_MEM_SIZE): the window holding both rings and the buffer."""
    parts = [c for c in (ch.vring0, ch.vring1, ch.buffer) if c is not None]
    lo = min(c.start for c in parts)
    return lo, max(c.end for c in parts) - lo


def label_for(name: str) -> str:
    """A valid DTS label for a description name (``0vdev0vring0`` -> ``_0vdev0vring0``):
    Lopper writes such names as labels as they are, and ``dtc`` rejects them."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return cleaned if _LABEL.match(cleaned) else "_" + cleaned


# -- the resource table and the machine ----------------------------------------------------


def resource_table(ch: Channel) -> ResourceTable:
    """The firmware's table for channel ``ch``: the one its simulated machine serves."""
    assert ch.vring0 is not None and ch.vring1 is not None and ch.buffer is not None
    return MachineLayout.resource_table(_fields_only(ch))  # type: ignore[arg-type]


class _fields_only:
    """The fields :meth:`MachineLayout.resource_table` reads, without placing memory."""

    def __init__(self, ch: Channel) -> None:
        assert ch.vring0 is not None and ch.vring1 is not None
        self.dfeatures = 1 << VIRTIO_RPMSG_F_NS
        self.buffer_sizes = None
        self.carveouts = _rsc_carveouts(ch)
        self.vring0_da = ch.vring0.start
        self.vring1_da = ch.vring1.start
        self.vring_align = VRING_ALIGN
        self.vring_num = vring_num(ch)


def _rsc_carveouts(ch: Channel) -> tuple[RscCarveout, ...]:
    return tuple(RscCarveout(da=c.start, pa=c.start, len=c.size, name=c.name[:31]) for c in ch.elf)


def machine_layout(ch: Channel) -> MachineLayout:
    """The pyopenamp machine for channel ``ch``: the same addresses as the device tree.

    Raises :class:`DescriptionError` when the carveouts are too far apart to simulate.
    """
    assert ch.vring0 is not None and ch.vring1 is not None and ch.buffer is not None
    window_lo, _ = shared_window(ch)
    if ch.elf:
        lo = min(ch.elf[0].start, window_lo)
        rsc_offset = ch.elf[0].start - lo
    else:
        lo = max(window_lo - PAGE_SIZE, 0)
        rsc_offset = 0
    hi = max(c.end for c in (ch.vring0, ch.vring1, ch.buffer, *ch.elf))
    if hi - lo > MAX_MACHINE_SPAN:
        raise DescriptionError(
            f"cannot simulate {ch.spec.remote!r}: its carveouts span {lo:#x}..{hi:#x}, more "
            f"than the {MAX_MACHINE_SPAN >> 20} MiB one simulated memory may cover"
        )
    try:
        return MachineLayout(
            shm_size=hi - lo,
            rsc_offset=rsc_offset,
            phys_base=lo,
            vring0_da=ch.vring0.start,
            vring1_da=ch.vring1.start,
            vring_num=vring_num(ch),
            vring_align=VRING_ALIGN,
            pool_base=ch.buffer.start,
            pool_size=ch.buffer.size,
            dfeatures=1 << VIRTIO_RPMSG_F_NS,
            carveouts=_rsc_carveouts(ch),
        )
    except UsageError as exc:
        raise DescriptionError(f"cannot simulate {ch.spec.remote!r}: {exc}") from None


# -- the Linux device tree -----------------------------------------------------------------


def _ensure_reserved_memory(tree: DeviceTree) -> Node:
    rm = tree.root.child("reserved-memory")
    if rm is None:
        rm = tree.root.add(Node("reserved-memory"))
        rm.set_cells("#address-cells", [tree.root.cell("#address-cells") or 2])
        rm.set_cells("#size-cells", [tree.root.cell("#size-cells") or 2])
        rm.set_flag("ranges")
    return rm


def _reg_cells(tree: DeviceTree, address: int, size: int) -> list[int]:
    ac = tree.root.cell("#address-cells") or 2
    sc = tree.root.cell("#size-cells") or 2
    out = [(address >> (32 * i)) & 0xFFFFFFFF for i in reversed(range(ac))]
    out += [(size >> (32 * i)) & 0xFFFFFFFF for i in reversed(range(sc))]
    return out


def _carveout_node_name(system: System, ch: Channel, c: Carveout, role: str) -> str:
    if system.binding == "xlnx-2022":
        return c.name
    if role in ("vring0", "vring1", "buffer"):
        # Linux's zynqmp_r5 driver registers these by node name, unit address dropped.
        return f"vdev0{role}@{c.start:x}" if role != "buffer" else f"vdev0buffer@{c.start:x}"
    if c.node_name:
        return c.node_name
    return f"{c.name}@{c.start:x}"


def linux_tree(system: System) -> tuple[DeviceTree, list[str]]:
    """The Linux domain's tree: the system tree plus the carveouts, the remoteproc
    cluster and the IPI mailbox, with the IPI agents the mailbox now drives disabled.
    Returns the tree and notes about where we differ from Lopper."""
    tree = parse_dtb(system.tree.to_dtb(), system.tree.source)
    notes: list[str] = []
    rm = _ensure_reserved_memory(tree)
    phandles: dict[tuple[int, str], int] = {}
    used_labels = set(tree.labels())
    lockstep = any(ch.lockstep for ch in system.channels)
    for ch in system.channels:
        roles = [("elf", c) for c in ch.elf]
        roles += [
            (r, c)
            for r, c in (("vring0", ch.vring0), ("vring1", ch.vring1), ("buffer", ch.buffer))
            if c
        ]
        for role, c in roles:
            name = _carveout_node_name(system, ch, c, role)
            existing = rm.child(name)
            if existing is not None and existing.cells("reg") == _reg_cells(tree, c.start, c.size):
                phandles[(ch.core, c.name)] = tree.ensure_phandle(existing)
                continue
            if existing is not None:
                raise DescriptionError(
                    f"reserved-memory already has a node {name!r} with other addresses",
                    file=tree.source,
                    where=existing.path,
                )
            node = rm.add(Node(name))
            label = label_for(c.name)
            if label in used_labels:
                label = f"{label}_{ch.core}"
            used_labels.add(label)
            node.labels.append(label)
            if c.no_map:
                node.set_flag("no-map")
            node.set_cells("reg", _reg_cells(tree, c.start, c.size))
            if role == "buffer":
                node.set_strings("compatible", "shared-dma-pool")
            phandles[(ch.core, c.name)] = tree.ensure_phandle(node)
            if not _LABEL.match(c.name):
                notes.append(
                    f"carveout {c.name!r}: label {label!r} (Lopper writes {c.name!r}, "
                    "which dtc rejects)"
                )
    if system.binding == "xlnx-2022":
        _remoteproc_2022(system, tree, phandles, notes)
    else:
        _remoteproc_upstream(system, tree, phandles, notes, lockstep)
    for ch in system.channels:
        for agent in (ch.host_ipi, ch.remote_ipi):
            if agent is None:
                continue
            ipi = tree.find(agent.path)
            if ipi is not None and ipi.string("status") != "disabled":
                ipi.set_strings("status", "disabled")
                notes.append(
                    f"{agent.path}: disabled (the mailbox node drives it now; Lopper deletes "
                    "it, which leaves the references to it dangling)"
                )
    return tree, [n for n in dict.fromkeys(notes) if n]


def _mailbox_parent(
    system: System, tree: DeviceTree, ch: Channel, index: int, upstream: bool
) -> Node:
    assert ch.host_ipi is not None
    name = f"zynqmp_ipi{index}"
    parent = tree.root.child(name)
    if parent is not None:
        return parent
    parent = tree.root.add(Node(name))
    parent.set_strings("compatible", "xlnx,zynqmp-ipi-mailbox")
    if system.gic is not None and system.gic.phandle is not None:
        parent.set_cells("interrupt-parent", [system.gic.phandle])
    parent.set_cells("interrupts", list(ch.host_ipi.interrupts))
    parent.set_cells("xlnx,ipi-id", [ch.host_ipi.ipi_id])
    # Two cells, as the root: Lopper 2022 wrote 1 with an empty ranges (dtc warns).
    parent.set_cells("#address-cells", [2])
    parent.set_cells("#size-cells", [2])
    parent.set_flag("ranges")
    tree.ensure_phandle(parent)
    return parent


def _mailbox(system: System, tree: DeviceTree, ch: Channel, upstream: bool) -> int:
    """Create the mailbox towards ``ch``'s remote; return its phandle."""
    assert ch.host_ipi and ch.remote_ipi and ch.host_to_remote and ch.remote_to_host
    hosts = list(dict.fromkeys(c.host_ipi.ipi_id for c in system.rpmsg_channels if c.host_ipi))
    parent = _mailbox_parent(system, tree, ch, hosts.index(ch.host_ipi.ipi_id) + 1, upstream)
    local_req, local_rsp = ch.host_to_remote
    remote_req, remote_rsp = ch.remote_to_host
    regions = (local_req, local_rsp, remote_req, remote_rsp)
    label = f"ipi_mailbox_rpu{ch.core}"
    node = parent.add(Node(f"mailbox@{local_req:x}"))
    node.labels.append(label)
    if upstream:
        node.set_strings("compatible", "xlnx,zynqmp-ipi-dest-mailbox")
    node.set_cells("reg", [v for r in regions for v in (0, r, 0, _IPI_REGION)])
    node.set_strings(
        "reg-names",
        "local_request_region",
        "local_response_region",
        "remote_request_region",
        "remote_response_region",
    )
    node.set_cells("#mbox-cells", [1])
    node.set_cells("xlnx,ipi-id", [ch.remote_ipi.ipi_id])
    return tree.ensure_phandle(node)


def _remoteproc_2022(
    system: System, tree: DeviceTree, phandles: dict[tuple[int, str], int], notes: list[str]
) -> None:
    lockstep = any(ch.lockstep for ch in system.channels)
    cluster = tree.root.add(Node("rf5ss@ff9a0000"))
    cluster.set_strings("compatible", "xlnx,zynqmp-r5-remoteproc")
    cluster.set_cells("#address-cells", [2])
    cluster.set_cells("#size-cells", [2])
    cluster.set_flag("ranges")
    # The 2022 binding: 0 = lockstep, 1 = split.
    cluster.set_cells("xlnx,cluster-mode", [0 if lockstep else 1])
    cluster.set_cells("reg", [0, 0xFF9A0000, 0, 0x10000])
    for ch in system.channels:
        core = cluster.add(Node(f"r5f_{ch.core}"))
        core.set_strings("compatible", "xilinx,r5f")
        core.set_cells("#address-cells", [2])
        core.set_cells("#size-cells", [2])
        core.set_flag("ranges")
        core.set_cells("power-domain", list(ch.power_domain))
        core.set_strings("mbox-names", "tx", "rx")
        core.set_cells("memory-region", [phandles[(ch.core, c.name)] for c in ch.carveouts])
        srams = []
        for t in ch.tcm:
            bank = tree.find(t.phandle_node)
            if bank is None:
                continue
            srams.append(tree.ensure_phandle(bank))
            if t.power_domain and not bank.has("power-domain"):
                bank.set_cells("power-domain", list(t.power_domain))
        core.set_cells("sram", srams)
        if ch.rpmsg:
            mbox = _mailbox(system, tree, ch, upstream=False)
            core.set_cells("mboxes", [mbox, 0, mbox, 1])
    del notes


def _remoteproc_upstream(
    system: System,
    tree: DeviceTree,
    phandles: dict[tuple[int, str], int],
    notes: list[str],
    lockstep: bool,
) -> None:
    cluster = tree.root.add(Node("remoteproc@ffe00000"))
    cluster.set_strings("compatible", "xlnx,zynqmp-r5fss")
    # The upstream binding: 0 = split, 1 = lockstep (the reverse of the 2022 one).
    cluster.set_cells("xlnx,cluster-mode", [1 if lockstep else 0])
    cluster.set_cells("xlnx,tcm-mode", [1 if lockstep else 0])
    cluster.set_cells("#address-cells", [2])
    cluster.set_cells("#size-cells", [2])
    ranges: list[int] = []
    for ch in system.channels:
        if lockstep and ch.core != 0:
            notes.append(
                f"{ch.spec.remote}: no r5f@{ch.core} node in lockstep mode (core 1 runs in "
                "step with core 0; Lopper writes one with an empty memory-region)"
            )
            continue
        core = cluster.add(Node(f"r5f@{ch.core}"))
        core.set_strings("compatible", "xlnx,zynqmp-r5f")
        reg: list[int] = []
        names = []
        counts = {"atcm": 0, "btcm": 0}
        domains = list(ch.power_domain)
        for t in ch.tcm:
            reg += [ch.core, t.local, 0, t.size]
            ranges += [ch.core, t.local, t.base >> 32, t.base & 0xFFFFFFFF, 0, t.size]
            names.append(f"{t.kind}{counts[t.kind]}")
            counts[t.kind] += 1
            domains += list(t.power_domain)
        if reg:
            core.set_cells("reg", reg)
            core.set_strings("reg-names", *names)
        core.set_cells("power-domains", domains)
        order = list(ch.elf) + [c for c in (ch.buffer, ch.vring0, ch.vring1) if c is not None]
        core.set_cells("memory-region", [phandles[(ch.core, c.name)] for c in order])
        if ch.rpmsg:
            mbox = _mailbox(system, tree, ch, upstream=True)
            core.set_cells("mboxes", [mbox, 0, mbox, 1])
            core.set_strings("mbox-names", "tx", "rx")
    if ranges:
        cluster.set_cells("ranges", ranges)
    else:
        cluster.set_flag("ranges")


# -- the firmware's files ------------------------------------------------------------------


def channel_info(system: System) -> str:
    """``openamp-channel-info.txt`` in the seed's key format, every rpmsg channel.

    Kept from the seed, because the firmware builds that read the file look keys up by
    these names: the ``VDEV0BUFFER`` prefix of the RX/TX keys (the last carveout's name),
    lower-case hex in quotes, ``FW_RSC_U32_ADDR_ANY`` for RX/TX (vring1/vring0 bases in
    native mode).  Not kept: Lopper opened the file once per channel, so only the last
    channel survived; we write every channel.
    """
    lines: list[str] = []
    for ch in system.rpmsg_channels:
        assert ch.host_ipi is not None and ch.remote_ipi is not None
        pre = f"CHANNEL{ch.spec.index}"
        name = ""
        tx = rx = "FW_RSC_U32_ADDR_ANY"
        for cname in ch.spec.rpmsg:
            c = system.domain.carveout(cname)
            assert c is not None
            name = (
                "VRING0" if "vring0" in cname else "VRING1" if "vring1" in cname else "VDEV0BUFFER"
            )
            lines.append(f'{pre}{name}BASE="{c.start:#x}"')
            lines.append(f'{pre}{name}SIZE="{c.size:#x}"')
            if ch.spec.native and name == "VRING0":
                tx = f"{c.start:#x}"
            if ch.spec.native and name == "VRING1":
                rx = f"{c.start:#x}"
        lines.append(f'{pre}{name}RX="{rx}"')
        lines.append(f'{pre}{name}TX="{tx}"')
        if ch.elf:
            lines.append(f'{pre}ELFBASE="{ch.elf[0].start:#x}"')
            lines.append(f'{pre}ELFSIZE="{ch.elf[0].size:#x}"')
        for side, agent in (("TO_HOST", ch.host_ipi), ("TO_REMOTE", ch.remote_ipi)):
            lines.append(f'{pre}{side}="{agent.base:#x}"')
            lines.append(f'{pre}{side}-BITMASK="{agent.bitmask:#x}"')
            lines.append(f'{pre}{side}-IPIIRQVECTID="{agent.vector:#x}"')
    return "\n".join(lines) + "\n" if lines else ""


def platform_header(ch: Channel) -> str:
    """``amd_platform_info.h`` for one remote core (the keys of Lopper's template)."""
    assert ch.host_ipi and ch.remote_ipi and ch.vring0 and ch.vring1 and ch.buffer
    pa, size = shared_window(ch)
    elf = ch.elf[0].start if ch.elf else pa
    vector = ch.remote_ipi.vector
    rows = [
        "/*",
        f" * Generated by `openamp sdt generate` for {ch.spec.remote} (R5 core {ch.core}).",
        " * SHARED_MEM_PA/SIZE: the smallest window holding vring0, vring1 and the buffer",
        " * carveout; SHARED_BUF_OFFSET: the buffer's start minus SHARED_MEM_PA (docs/sdt.md).",
        " */",
        "",
        f"#ifndef AMD_PLATFORM_INFO_R5_{ch.core}_H_",
        f"#define AMD_PLATFORM_INFO_R5_{ch.core}_H_",
        "",
        "/* Interrupt vectors */",
        "#if defined (FREERTOS_BSP) || defined (USE_FREERTOS)",
        f"#define IPI_IRQ_VECT_ID         {vector - 32:#x}",
        "#else",
        f"#define IPI_IRQ_VECT_ID         {vector:#x}",
        "#endif",
        f"#define POLL_BASE_ADDR          {ch.remote_ipi.base:#x}",
        f"#define IPI_CHN_BITMASK         {ch.host_ipi.bitmask:#x}",
        "",
        "#define NUM_VRINGS              0x02",
        f"#define VRING_ALIGN             {VRING_ALIGN:#x}",
        f"#define VRING_SIZE              {vring_num(ch)}",
        "",
        f"#define RING_TX                 {ch.vring0.start:#x}",
        f"#define RING_RX                 {ch.vring1.start:#x}",
        "",
        f"#define SHARED_MEM_PA           {pa:#x}",
        f"#define SHARED_MEM_SIZE         {size:#x}UL",
        f"#define SHARED_BUF_OFFSET       {ch.buffer.start - pa:#x}",
        f"#define SHARED_BUF_PA           {ch.buffer.start:#x}",
        f"#define SHARED_BUF_SIZE         {ch.buffer.size:#x}",
        "",
        f'#define SHM_DEV_NAME            "{elf:x}.shm"',
        '#define DEV_BUS_NAME            "generic"',
        f'#define IPI_DEV_NAME            "{ch.host_ipi.base:x}.ipi"',
        "",
        f"#endif /* AMD_PLATFORM_INFO_R5_{ch.core}_H_ */",
        "",
    ]
    return "\n".join(rows)


@dataclass
class Outputs:
    """What :func:`generate` produced: file name -> contents, and the values behind them."""

    files: dict[str, str | bytes] = field(default_factory=dict)
    tables: dict[int, ResourceTable] = field(default_factory=dict)
    """Core -> its firmware's resource table."""
    layouts: dict[int, MachineLayout] = field(default_factory=dict)
    """Core -> the simulated machine's layout."""
    notes: list[str] = field(default_factory=list)
    """Where the outputs differ from what Lopper writes, and what was skipped."""


def header_name(ch: Channel) -> str:
    """``amd_platform_info_r5_<core>.h``."""
    return f"amd_platform_info_r5_{ch.core}.h"


def generate(system: System) -> Outputs:
    """Every output for ``system`` (see the module's rules).  Table C sources are not
    made here: the command line renders them with ``openamp rsc build``'s writer."""
    out = Outputs()
    for ch in system.channels:
        if ch.spec.native:
            raise ch.spec.at.error(
                "openamp-xlnx-native (OpenAMP in Linux user space over UIO) is not supported "
                "by this generator; describe the channel for the kernel's remoteproc"
            )
    tree, notes = linux_tree(system)
    out.notes += notes
    header = (
        f"/*\n * Linux device tree generated by `openamp sdt generate` from\n"
        f" * {system.domain.file} and {system.tree.source}.\n */"
    )
    out.files["linux-boot.dts"] = tree.to_dts(header)
    out.files["openamp-channel-info.txt"] = channel_info(system)
    for ch in system.rpmsg_channels:
        out.files[header_name(ch)] = platform_header(ch)
        table = resource_table(ch)
        out.tables[ch.core] = table
        out.files[f"rsc_table_r5_{ch.core}.bin"] = table.to_bytes()
        try:
            out.layouts[ch.core] = machine_layout(ch)
        except DescriptionError as exc:
            out.notes.append(f"no machine for R5 core {ch.core}: {exc.reason}")
    return out

"""Join a domain YAML to its system device tree: which core, which IPIs, which memories.

:func:`resolve` looks up every name the YAML uses (clusters, TCM banks, mailboxes) in
the tree and returns a :class:`System`: per remote core, its carveouts (ELF load, vring0,
vring1, buffer), its TCM banks with system and local addresses, and both IPI agents of
its channel with their bitmasks, vector ids and message buffers.  The generators
(:mod:`.generate`) need nothing else.

Supported SoC family: AMD/Xilinx ZynqMP (Cortex-R5 remotes, IPI mailboxes), as in the
inputs of the Lopper demo.  A name the tree does not have, a carveout list without a
vring0/vring1/buffer, or an IPI without the properties we need is a
:class:`~.model.DescriptionError` naming the YAML line (or the tree node).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .fdt import DeviceTree, Node
from .model import Carveout, ChannelSpec, DescriptionError, DomainSpec, Located

__all__ = [
    "LOPPER_2022_VECTORS",
    "Channel",
    "IpiAgent",
    "System",
    "Tcm",
    "ipi_message_buffers",
    "resolve",
]

LOPPER_2022_VECTORS = {
    0xFF330000: 62,
    0xFF340000: 63,
    0xFF350000: 64,
    0xFF310000: 65,
    0xFF320000: 66,
    0xFF380000: 67,
}
"""Lopper 2022's table of ZynqMP IPI base -> IRQ vector id (``openamp_xlnx_common.py``),
used only for an IPI node without ``xlnx,int-id``.  It is what the seed's
``openamp-channel-info.txt`` shows; note that it says 63 for 0xff340000, whose node's
``interrupts`` (SPI 29) and the current tree's ``xlnx,int-id`` say 61."""

_IPI_BUFFER_BASE = 0xFF990000
_IPI_AGENT_STRIDE = 0x200
_IPI_DEST_STRIDE = 0x40
_IPI_RESPONSE = 0x20
_SPI_BASE = 32
_ATCM_LOCAL = 0x0
_BTCM_LOCAL = 0x20000
_SECOND_BANK = 0x10000


@dataclass(frozen=True)
class IpiAgent:
    """One IPI channel (agent) of the ZynqMP: a ``xlnx,zynqmp-ipi-mailbox`` node."""

    path: str
    name: str
    """The node's label, else its name."""
    base: int
    ipi_id: int
    bitmask: int
    buf_index: int | None
    vector: int
    vector_from: str
    """Where ``vector`` came from: ``xlnx,int-id``, ``Lopper 2022 table`` or
    ``interrupts`` (SPI + 32)."""
    interrupts: tuple[int, ...]
    interrupt_parent: int | None


@dataclass(frozen=True)
class Tcm:
    """A TCM bank a remote loads its ELF into."""

    name: str
    path: str
    phandle_node: str
    """Path of the node whose phandle ``sram`` refers to."""
    base: int
    """System (global) address."""
    size: int
    local: int
    """Address in the R5's own view (0 for ATCM, 0x20000 for BTCM...)."""
    power_domain: tuple[int, ...]
    kind: str
    """``atcm`` or ``btcm``."""


@dataclass(frozen=True)
class Channel:
    """One remote core, resolved: what it loads, where its rings are, how it is kicked."""

    spec: ChannelSpec
    core: int
    lockstep: bool
    cpu_path: str
    power_domain: tuple[int, ...]
    elf: tuple[Carveout, ...]
    tcm: tuple[Tcm, ...]
    vring0: Carveout | None
    vring1: Carveout | None
    buffer: Carveout | None
    host_ipi: IpiAgent | None
    remote_ipi: IpiAgent | None
    host_to_remote: tuple[int, int] | None
    """(request, response) message buffers the host uses towards the remote."""
    remote_to_host: tuple[int, int] | None

    @property
    def rpmsg(self) -> bool:
        """Whether the channel carries rpmsg (has rings and mailboxes)."""
        return self.vring0 is not None

    @property
    def carveouts(self) -> tuple[Carveout, ...]:
        """ELF load carveouts then vring0, vring1, buffer (the seed's order)."""
        rings = tuple(c for c in (self.vring0, self.vring1, self.buffer) if c is not None)
        return self.elf + rings


@dataclass
class System:
    """A domain YAML joined to its system device tree."""

    domain: DomainSpec
    tree: DeviceTree
    channels: list[Channel]
    gic: Node | None
    binding: str
    """``xlnx-2022`` (the seed's ``xlnx,zynqmp-r5-remoteproc`` nodes) or ``upstream``
    (Linux's ``xlnx,zynqmp-r5fss`` binding)."""

    @property
    def rpmsg_channels(self) -> list[Channel]:
        """The channels that carry rpmsg, in channel-number order."""
        return sorted((c for c in self.channels if c.rpmsg), key=lambda c: c.spec.index)


def _reg(node: Node) -> tuple[int, int]:
    """(address, size) of the first ``reg`` entry, using the parent's cell counts."""
    cells = node.cells("reg") or []
    parent = node.parent
    ac = (parent.cell("#address-cells") if parent is not None else None) or 2
    sc = parent.cell("#size-cells") if parent is not None else None
    sc = 1 if sc is None else sc
    if len(cells) < ac + sc:
        raise DescriptionError(f"reg has {len(cells)} cells, expected {ac + sc}", where=node.path)
    address = 0
    for c in cells[:ac]:
        address = (address << 32) | c
    size = 0
    for c in cells[ac : ac + sc]:
        size = (size << 32) | c
    return address, size


def _ipi(tree: DeviceTree, node: Node) -> IpiAgent:
    ipi_id = node.cell("xlnx,ipi-id")
    bitmask = node.cell("xlnx,ipi-bitmask")
    if ipi_id is None or bitmask is None or not node.has("reg"):
        raise DescriptionError(
            "an IPI agent needs reg, xlnx,ipi-id and xlnx,ipi-bitmask",
            file=tree.source,
            where=node.path,
        )
    base, _ = _reg(node)
    interrupts = tuple(node.cells("interrupts") or ())
    int_id = node.cell("xlnx,int-id")
    if int_id is not None:
        vector, source = int_id, "xlnx,int-id"
    elif base in LOPPER_2022_VECTORS:
        vector, source = LOPPER_2022_VECTORS[base], "Lopper 2022 table"
    elif len(interrupts) >= 2:
        vector, source = interrupts[1] + _SPI_BASE, "interrupts"
    else:
        raise DescriptionError(
            "cannot tell the IPI's interrupt vector: no xlnx,int-id and no interrupts",
            file=tree.source,
            where=node.path,
        )
    return IpiAgent(
        path=node.path,
        name=node.labels[0] if node.labels else node.name,
        base=base,
        ipi_id=ipi_id,
        bitmask=bitmask,
        buf_index=node.cell("xlnx,ipi-buf-index"),
        vector=vector,
        vector_from=source,
        interrupts=interrupts,
        interrupt_parent=node.cell("interrupt-parent"),
    )


def _ipi_node(
    tree: DeviceTree, name: str, spec: ChannelSpec, at: Located | None
) -> tuple[Node, Node | None]:
    """(controller, destination child or None) for a mailbox named in the YAML."""
    where = at or spec.at
    node = tree.resolve(name)
    if node is None:
        raise where.error(f"mbox {name!r} names no label, path or unique node in {tree.source}")
    if node.has("reg") and node.has("xlnx,ipi-bitmask") and node.cell("xlnx,ipi-id") is not None:
        return node, None
    parent = node.parent
    if (
        parent is not None
        and node.cell("xlnx,ipi-id") is not None
        and parent.has("reg")
        and parent.has("xlnx,ipi-bitmask")
    ):
        return parent, node
    raise where.error(
        f"mbox {name!r} is {node.path} in {tree.source}, which is neither an IPI agent "
        "(reg, xlnx,ipi-id, xlnx,ipi-bitmask) nor one of its destination children"
    )


def ipi_message_buffers(src: Node, dest_id: int, dest: Node) -> tuple[int, int]:
    """(request, response) buffers agent ``src`` uses towards agent ``dest``: from its
    destination child's ``xlnx,ipi-req-msg-buf``/``rsp``, else computed from the two
    agents' buffer indexes (ZynqMP TRM: 0xff990000 + 0x200 * src + 0x40 * dest)."""
    for child in src.children:
        if child.cell("xlnx,ipi-id") == dest_id:
            req = child.cell("xlnx,ipi-req-msg-buf")
            rsp = child.cell("xlnx,ipi-rsp-msg-buf")
            if req is not None and rsp is not None:
                return req, rsp
    s = src.cell("xlnx,ipi-buf-index")
    d = dest.cell("xlnx,ipi-buf-index")
    if s is None or d is None:
        raise DescriptionError(
            f"no message buffers towards IPI {dest_id} and no xlnx,ipi-buf-index to compute them",
            where=src.path,
        )
    req = _IPI_BUFFER_BASE + _IPI_AGENT_STRIDE * s + _IPI_DEST_STRIDE * d
    return req, req + _IPI_RESPONSE


def _cluster_core(tree: DeviceTree, spec: ChannelSpec) -> tuple[int, Node]:
    cluster = tree.resolve(spec.remote_cluster)
    if cluster is None:
        raise spec.at.error(
            f"remote {spec.remote!r}: cluster {spec.remote_cluster!r} is not in {tree.source}"
        )
    cpus = {c.unit_address: c for c in cluster.children if c.basename == "cpu"}
    bits = [b for b in range(32) if spec.remote_cpumask >> b & 1]
    if not bits:
        raise spec.at.error(f"remote {spec.remote!r}: cpumask selects no cpu")
    core = bits[0]
    cpu = cpus.get(f"{core:x}") or cpus.get(str(core))
    if cpu is None and len(cpus) == 1:
        cpu = next(iter(cpus.values()))
    if cpu is None:
        raise spec.at.error(
            f"remote {spec.remote!r}: cpumask {spec.remote_cpumask:#x} selects cpu@{core}, "
            f"which {cluster.path} in {tree.source} does not have"
        )
    return core, cpu


def _tcm(tree: DeviceTree, name: str, spec: ChannelSpec, core: int, order: int) -> Tcm:
    node = tree.resolve(name)
    if node is None:
        raise spec.at.error(
            f"elfload {name!r} is neither a carveout of the YAML nor a node of {tree.source}"
        )
    label = node.labels[0] if node.labels else node.name
    ident = label.lower()
    kind = "btcm" if "btcm" in ident else "atcm" if "atcm" in ident else ""
    if not kind:
        raise spec.at.error(
            f"elfload {name!r} ({node.path}) is not a carveout and not an ATCM/BTCM bank"
        )
    glob = node
    if "global" not in ident:
        match = re.sub(r"@.*", "", label) + "_global"
        glob = tree.resolve(match) or node
    base, size = _reg(glob)
    bank = re.search(r"r5_(\d)", ident)
    own = int(bank.group(1)) if bank else core
    local = _ATCM_LOCAL if kind == "atcm" else _BTCM_LOCAL
    if own != core:
        local += _SECOND_BANK
    del order
    return Tcm(
        name=name,
        path=glob.path,
        phandle_node=node.path,
        base=base,
        size=size,
        local=local,
        power_domain=tuple(glob.cells("power-domains") or node.cells("power-domains") or ()),
        kind=kind,
    )


def _rings(domain: DomainSpec, spec: ChannelSpec) -> tuple[Carveout, Carveout, Carveout] | None:
    if not spec.rpmsg:
        return None
    found: dict[str, Carveout] = {}
    for name in spec.rpmsg:
        carve = domain.carveout(name)
        if carve is None:
            raise spec.at.error(f"rpmsg carveout {name!r} is not defined")
        key = (
            "vring0"
            if "vring0" in name
            else "vring1"
            if "vring1" in name
            else "buffer"
            if "buf" in name
            else None
        )
        if key is None or key in found:
            raise spec.at.error(
                f"rpmsg carveouts of {spec.remote!r} must be one *vring0, one *vring1 and one "
                f"*buffer (by name, as Lopper tells them apart); {name!r} is not"
            )
        found[key] = carve
    return found["vring0"], found["vring1"], found["buffer"]


def _gic(tree: DeviceTree, host_ipi: Node | None, domain: DomainSpec) -> Node | None:
    if host_ipi is None:
        return None
    parent_ph = host_ipi.cell("interrupt-parent")
    parent = tree.by_phandle(parent_ph) if parent_ph is not None else None
    if parent is None or "interrupt-multiplex" not in parent.compatible():
        return parent
    candidates = [tree.by_phandle(p) for p in parent.cells("interrupt-parent") or []]
    cluster = tree.resolve(domain.host_cluster)
    amap = set(cluster.cells("address-map") or []) if cluster is not None else set()
    for c in candidates:
        if c is not None and c.phandle in amap:
            return c
    return candidates[0] if candidates else None


def resolve(domain: DomainSpec, tree: DeviceTree, *, binding: str | None = None) -> System:
    """Look up every name of ``domain`` in ``tree``.

    ``binding`` chooses the Linux remoteproc binding of the outputs: ``xlnx-2022`` (the
    seed's, for ``openamp,remoteproc-v1`` descriptions) or ``upstream``; None picks by
    the YAML's layout.
    """
    if binding is None:
        binding = "xlnx-2022" if domain.layout == "2022" else "upstream"
    if binding not in ("xlnx-2022", "upstream"):
        raise DescriptionError(f"binding must be xlnx-2022 or upstream, not {binding!r}")
    channels = []
    host_ipi_node: Node | None = None
    for spec in domain.channels:
        core, cpu = _cluster_core(tree, spec)
        elf: list[Carveout] = []
        tcm: list[Tcm] = []
        for name in spec.elfload:
            carve = domain.carveout(name)
            if carve is not None:
                elf.append(carve)
            else:
                tcm.append(_tcm(tree, name, spec, core, len(tcm)))
        rings = _rings(domain, spec)
        host_ipi = remote_ipi = None
        h2r = r2h = None
        if rings is not None:
            if spec.host_mbox is None or spec.remote_mbox is None:
                raise spec.at.error(
                    f"rpmsg to {spec.remote!r} needs an mbox on both sides: the host's "
                    "rpmsg-relation and the remote domain's (with host: ...)"
                )
            h_ctl, h_dest = _ipi_node(tree, spec.host_mbox, spec, spec.host_mbox_at)
            r_ctl, _ = _ipi_node(tree, spec.remote_mbox, spec, spec.remote_mbox_at)
            if h_dest is not None and h_dest.cell("xlnx,ipi-id") != r_ctl.cell("xlnx,ipi-id"):
                raise spec.at.error(
                    f"host mbox {spec.host_mbox!r} points at IPI {h_dest.cell('xlnx,ipi-id')}, "
                    f"but the remote's IPI is {r_ctl.cell('xlnx,ipi-id')} ({r_ctl.path})"
                )
            host_ipi, remote_ipi = _ipi(tree, h_ctl), _ipi(tree, r_ctl)
            h2r = ipi_message_buffers(h_ctl, remote_ipi.ipi_id, r_ctl)
            r2h = ipi_message_buffers(r_ctl, host_ipi.ipi_id, h_ctl)
            host_ipi_node = host_ipi_node or h_ctl
        channels.append(
            Channel(
                spec=spec,
                core=core,
                lockstep=spec.lockstep,
                cpu_path=cpu.path,
                power_domain=tuple(cpu.cells("power-domains") or ()),
                elf=tuple(elf),
                tcm=tuple(tcm),
                vring0=rings[0] if rings else None,
                vring1=rings[1] if rings else None,
                buffer=rings[2] if rings else None,
                host_ipi=host_ipi,
                remote_ipi=remote_ipi,
                host_to_remote=h2r,
                remote_to_host=r2h,
            )
        )
    return System(domain, tree, channels, _gic(tree, host_ipi_node, domain), binding)

"""``sdt check``: do the files of one AMP system agree?

Every input says something about each remote core: where its ELF-load carveout, vring0,
vring1 and buffer are, how many entries a ring has, which IPI it is kicked through.
:func:`check_files` reads each file (kind told by content), turns what it says into
*claims* keyed by (core, quantity), and reports:

* every quantity on which two files disagree, with both values and the file to change:
  the file furthest from the source of truth (domain YAML and system tree first, then
  the Linux tree, then the generated headers, channel info and machine, then the
  firmware), with how to fix it;
* what is wrong inside the description itself: carveouts that overlap, vring carveouts
  that are not page aligned or cannot hold the rings, a firmware table whose vrings or
  carveouts are not reserved, a header whose shared-memory window misses a ring,
  duplicate notify ids, a remoteproc node without its tx/rx mailboxes.

Rules: reading a file that is not what it claims to be raises
:class:`~.model.DescriptionError` (the command exits 2); findings are values, never
exceptions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FirmwareImageError, OpenAMPError, ResourceTableError
from ..remoteproc.rsc_table import FW_RSC_ADDR_ANY, Carveout as RscCarveout, ResourceTable, Vdev
from ..virtio.ring import align_up, vring_size
from .domain import parse_domain
from .fdt import FDT_MAGIC, DeviceTree, Node, load_tree
from .generate import PAGE_SIZE
from .model import Carveout, ChannelSpec, DescriptionError, DomainSpec
from .system import Channel, resolve

__all__ = ["Finding", "Report", "check_files"]

_RANK_DESCRIPTION = 0
_RANK_LINUX = 1
_RANK_GENERATED = 2
_RANK_FIRMWARE = 3
_REMOTEPROC = ("xlnx,zynqmp-r5fss", "xlnx,zynqmp-r5-remoteproc")
_WHAT = {
    "elf.start": "ELF-load carveout address",
    "elf.size": "ELF-load carveout size",
    "vring0.start": "vring0 address",
    "vring0.size": "vring0 carveout size",
    "vring1.start": "vring1 address",
    "vring1.size": "vring1 carveout size",
    "buffer.start": "buffer carveout address",
    "buffer.size": "buffer carveout size",
    "vring.num": "vring size (entries)",
    "remote_ipi.base": "remote IPI base address",
    "remote_ipi.bitmask": "remote IPI bitmask",
    "remote_ipi.vector": "remote IPI interrupt vector",
    "remote_ipi.id": "remote IPI id",
    "host_ipi.base": "host IPI base address",
    "host_ipi.bitmask": "host IPI bitmask",
    "host_ipi.id": "host IPI id",
}


@dataclass(frozen=True)
class Finding:
    """One disagreement or defect: what, and which file to change (and how)."""

    message: str
    change: str

    def __str__(self) -> str:
        return f"{self.message}\n    change: {self.change}"


@dataclass(frozen=True)
class _Claim:
    rank: int
    file: str
    value: int
    how: str
    """Where in the file the value is (a node, a key, an entry)."""


@dataclass
class Report:
    """What :func:`check_files` found."""

    files: list[tuple[str, str]] = field(default_factory=list)
    """(file, kind) in the order given."""
    findings: list[Finding] = field(default_factory=list)
    cores: list[int] = field(default_factory=list)
    compared: int = 0
    """How many (core, quantity) values more than one file stated."""

    @property
    def ok(self) -> bool:
        """Whether the files agree."""
        return not self.findings


@dataclass
class _Input:
    path: str
    kind: str
    rank: int
    fix: str
    domain: DomainSpec | None = None
    tree: DeviceTree | None = None
    table: ResourceTable | None = None
    text: str = ""
    layout: object | None = None


class _Claims:
    def __init__(self) -> None:
        self.by_key: dict[tuple[int, str], list[_Claim]] = {}
        self.fix: dict[str, str] = {}

    def add(self, core: int, key: str, claim: _Claim) -> None:
        self.by_key.setdefault((core, key), []).append(claim)

    def get(self, core: int, key: str) -> int | None:
        claims = self.by_key.get((core, key))
        if not claims:
            return None
        return min(claims, key=lambda c: c.rank).value

    def reference_cores(self, max_rank: int) -> list[int]:
        return sorted(
            {core for (core, _), cl in self.by_key.items() if min(c.rank for c in cl) <= max_rank}
        )


# -- reading the inputs --------------------------------------------------------------------


def _sniff(path: str, dtc: str | None) -> _Input:
    p = Path(path)
    if p.is_dir():
        tree = load_tree(p, dtc=dtc)
        return _tree_input(path, tree)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DescriptionError(f"cannot read: {exc.strerror}", file=path) from None
    if data[:4] == FDT_MAGIC.to_bytes(4, "big"):
        return _tree_input(path, load_tree(p, dtc=dtc))
    if data[:4] == b"\x7fELF":
        from ..remoteproc.elf import ElfImage

        try:
            with ElfImage(path) as image:
                table = image.resource_table()
        except (FirmwareImageError, ResourceTableError) as exc:
            raise DescriptionError(
                f"firmware without a usable resource table: {exc}", file=path
            ) from None
        return _Input(
            path,
            "firmware",
            _RANK_FIRMWARE,
            "rebuild the firmware with the regenerated "
            "rsc_table_r5_<core>.c (openamp sdt generate)",
            table=table,
        )
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = ""
    if not text:
        try:
            table = ResourceTable.parse(data)
        except ResourceTableError as exc:
            raise DescriptionError(
                f"not a device tree, ELF, resource table or text description ({exc})", file=path
            ) from None
        return _Input(
            path,
            "resource table",
            _RANK_FIRMWARE,
            "regenerate it (openamp sdt generate)",
            table=table,
        )
    stripped = text.lstrip()
    if stripped.startswith("{"):
        from ..platform.layout import load_layout

        try:
            json.loads(text)
        except ValueError as exc:
            raise DescriptionError(f"looks like JSON but is not: {exc}", file=path) from None
        try:
            layout = load_layout(path)
        except OpenAMPError as exc:
            raise DescriptionError(str(exc)) from None
        return _Input(
            path, "machine", _RANK_GENERATED, "regenerate it (openamp sdt generate)", layout=layout
        )
    if re.search(r"^\s*#define\s+(SHARED_MEM_PA|POLL_BASE_ADDR)\b", text, re.M):
        return _Input(
            path, "header", _RANK_GENERATED, "regenerate it (openamp sdt generate)", text=text
        )
    if re.search(r"^CHANNEL\d+\w*=", text, re.M):
        return _Input(
            path, "channel info", _RANK_GENERATED, "regenerate it (openamp sdt generate)", text=text
        )
    if "/dts-v1/" in text or p.suffix in (".dts", ".dtsi"):
        return _tree_input(path, load_tree(p, dtc=dtc))
    domain = parse_domain(text, path)
    return _Input(path, "domain YAML", _RANK_DESCRIPTION, "fix the description", domain=domain)


def _tree_input(path: str, tree: DeviceTree) -> _Input:
    linux = any(set(n.compatible()) & set(_REMOTEPROC) for n in tree.root.walk())
    if linux:
        return _Input(
            path,
            "Linux device tree",
            _RANK_LINUX,
            "regenerate it from the YAML (openamp sdt generate DOMAIN.yaml SYSTEM.dts -o DIR)",
            tree=tree,
        )
    return _Input(
        path, "system device tree", _RANK_DESCRIPTION, "fix the system device tree", tree=tree
    )


# -- claims from each kind -------------------------------------------------------------------


def _carveout_claims(
    claims: _Claims, core: int, role: str, c: Carveout | tuple[int, int], inp: _Input, how: str
) -> None:
    start, size = (c.start, c.size) if isinstance(c, Carveout) else c
    claims.add(core, f"{role}.start", _Claim(inp.rank, inp.path, start, how))
    claims.add(core, f"{role}.size", _Claim(inp.rank, inp.path, size, how))


def _description_claims(
    claims: _Claims, inp: _Input, system_tree: DeviceTree | None, findings: list[Finding]
) -> dict[int, int]:
    """Claims of the YAML (resolved against the system tree when given); channel -> core."""
    domain = inp.domain
    assert domain is not None
    channel_core: dict[int, int] = {}
    channels: list[tuple[ChannelSpec, int, Channel | None]] = []
    if system_tree is not None:
        system = resolve(domain, system_tree)
        channels = [(ch.spec, ch.core, ch) for ch in system.channels]
    else:
        for spec in domain.channels:
            bits = [b for b in range(32) if spec.remote_cpumask >> b & 1]
            channels.append((spec, bits[0] if bits else 0, None))
    for spec, core, resolved in channels:
        if spec.index >= 0:
            channel_core[spec.index] = core
        elf = [domain.carveout(n) for n in spec.elfload]
        elf_c = [c for c in elf if c is not None]
        if elf_c:
            _carveout_claims(claims, core, "elf", elf_c[0], inp, f"carveout {elf_c[0].name!r}")
        for name in spec.rpmsg:
            c = domain.carveout(name)
            if c is None:
                continue
            role = "vring0" if "vring0" in name else "vring1" if "vring1" in name else "buffer"
            _carveout_claims(claims, core, role, c, inp, f"carveout {name!r}")
        if resolved is not None and resolved.host_ipi and resolved.remote_ipi:
            for side, agent in (
                ("remote_ipi", resolved.remote_ipi),
                ("host_ipi", resolved.host_ipi),
            ):
                where = f"mbox {agent.name} ({agent.path})"
                for key, value in (
                    ("base", agent.base),
                    ("bitmask", agent.bitmask),
                    ("id", agent.ipi_id),
                ):
                    claims.add(core, f"{side}.{key}", _Claim(inp.rank, inp.path, value, where))
            claims.add(
                core,
                "remote_ipi.vector",
                _Claim(
                    inp.rank,
                    inp.path,
                    resolved.remote_ipi.vector,
                    f"{resolved.remote_ipi.path} {resolved.remote_ipi.vector_from}",
                ),
            )
    findings += _overlaps(
        list(domain.carveouts.values()), inp.path, "fix the description (the YAML)"
    )
    for spec, core, _ in channels:
        for name in spec.rpmsg:
            c = domain.carveout(name)
            if c is not None and "buf" not in name and c.start % PAGE_SIZE:
                findings.append(
                    Finding(
                        f"R5 core {core}: {inp.path}: carveout {name!r} at {c.start:#x} is "
                        f"not page aligned ({PAGE_SIZE:#x}); Linux reserves memory by pages "
                        "and a ring needs an aligned start",
                        f"{inp.path}: move {name!r} to a multiple of {PAGE_SIZE:#x}",
                    )
                )
    return channel_core


def _overlaps(carveouts: list[Carveout], file: str, change: str) -> list[Finding]:
    out = []
    ordered = sorted(carveouts, key=lambda c: c.start)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if b.start >= a.end:
                break
            out.append(
                Finding(
                    f"{file}: carveout {a.name!r} [{a.start:#x}, {a.end:#x}) overlaps "
                    f"{b.name!r} [{b.start:#x}, {b.end:#x})",
                    f"{file}: {change}",
                )
            )
    return out


def _reg(node: Node) -> tuple[int, int] | None:
    cells = node.cells("reg")
    parent = node.parent
    ac = (parent.cell("#address-cells") if parent else None) or 2
    sc = (parent.cell("#size-cells") if parent else None) or 2
    if not cells or len(cells) < ac + sc:
        return None
    a = 0
    for c in cells[:ac]:
        a = a << 32 | c
    s = 0
    for c in cells[ac : ac + sc]:
        s = s << 32 | c
    return a, s


def _linux_claims(
    claims: _Claims, inp: _Input, findings: list[Finding]
) -> list[tuple[str, int, int]]:
    """Claims of a Linux tree; returns its reserved regions (name, start, size)."""
    tree = inp.tree
    assert tree is not None
    reserved: list[tuple[str, int, int]] = []
    rm = tree.root.child("reserved-memory")
    if rm is not None:
        for n in rm.children:
            r = _reg(n)
            if r is not None:
                reserved.append((n.name, r[0], r[1]))
    findings += _overlaps([Carveout(name, s, z) for name, s, z in reserved], inp.path, inp.fix)
    for cluster in tree.root.walk():
        if not set(cluster.compatible()) & set(_REMOTEPROC):
            continue
        for core_node in cluster.children:
            m = re.search(r"(\d+)$", core_node.basename) or re.search(r"@(\d+)$", core_node.name)
            if m is None:
                continue
            core = int(m.group(1))
            elf_seen = False
            for ph in core_node.cells("memory-region") or []:
                node = tree.by_phandle(ph)
                r = _reg(node) if node is not None else None
                if node is None or r is None:
                    findings.append(
                        Finding(
                            f"{inp.path}: {core_node.path}: memory-region names phandle {ph:#x}, "
                            "which is no reserved-memory node with a reg",
                            f"{inp.path}: {inp.fix}",
                        )
                    )
                    continue
                base = node.basename
                role = (
                    "vring0"
                    if "vring0" in base
                    else "vring1"
                    if "vring1" in base
                    else ("buffer" if "buffer" in base else "elf")
                )
                if role == "elf":
                    if elf_seen:
                        continue
                    elf_seen = True
                _carveout_claims(claims, core, role, r, inp, f"{node.path}")
            mboxes = core_node.cells("mboxes")
            names = core_node.strings("mbox-names") or []
            has_rings = any(
                claims.by_key.get((core, "vring0.start"), []) and c.file == inp.path
                for c in claims.by_key.get((core, "vring0.start"), [])
            )
            if has_rings and (not mboxes or len(mboxes) != 4 or names != ["tx", "rx"]):
                findings.append(
                    Finding(
                        f"{inp.path}: {core_node.path}: an rpmsg core needs mboxes = <&mbox 0>, "
                        f'<&mbox 1> with mbox-names "tx", "rx" (has {mboxes}, {names})',
                        f"{inp.path}: {inp.fix}",
                    )
                )
            if mboxes:
                mbox = tree.by_phandle(mboxes[0])
                if mbox is not None:
                    rid = mbox.cell("xlnx,ipi-id")
                    hid = mbox.parent.cell("xlnx,ipi-id") if mbox.parent else None
                    if rid is not None:
                        claims.add(
                            core, "remote_ipi.id", _Claim(inp.rank, inp.path, rid, mbox.path)
                        )
                    if hid is not None and mbox.parent is not None:
                        claims.add(
                            core, "host_ipi.id", _Claim(inp.rank, inp.path, hid, mbox.parent.path)
                        )
    return reserved


_DEFINE = re.compile(r"^\s*#define\s+(\w+)\s+(\S+)", re.M)


def _number(text: str) -> int | None:
    text = text.rstrip("uUlL")
    try:
        return int(text, 0)
    except ValueError:
        return None


def _header_values(text: str) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for key, value in _DEFINE.findall(text):
        if key == "IPI_IRQ_VECT_ID" and key in out:
            continue  # the first one is the FreeRTOS variant's; keep the bare-metal one
        out[key] = _number(value)
    # The bare-metal IPI_IRQ_VECT_ID is the one in the #else branch.
    m = re.search(r"#else\s*\n\s*#define\s+IPI_IRQ_VECT_ID\s+(\S+)", text)
    if m:
        out["IPI_IRQ_VECT_ID"] = _number(m.group(1))
    return out


def _header_claims(claims: _Claims, inp: _Input, core: int, findings: list[Finding]) -> None:
    v = _header_values(inp.text)

    def add(key: str, name: str) -> None:
        value = v.get(name)
        if value is not None:
            claims.add(core, key, _Claim(inp.rank, inp.path, value, name))

    add("vring0.start", "RING_TX")
    add("vring1.start", "RING_RX")
    add("buffer.start", "SHARED_BUF_PA")
    add("buffer.size", "SHARED_BUF_SIZE")
    add("remote_ipi.base", "POLL_BASE_ADDR")
    add("host_ipi.bitmask", "IPI_CHN_BITMASK")
    add("remote_ipi.vector", "IPI_IRQ_VECT_ID")
    add("vring.num", "VRING_SIZE")
    pa, size, off = v.get("SHARED_MEM_PA"), v.get("SHARED_MEM_SIZE"), v.get("SHARED_BUF_OFFSET")
    if pa is not None and size is not None:
        for role in ("vring0", "vring1", "buffer"):
            s, z = claims.get(core, f"{role}.start"), claims.get(core, f"{role}.size")
            if s is not None and z is not None and not (pa <= s and s + z <= pa + size):
                findings.append(
                    Finding(
                        f"R5 core {core}: {inp.path}: SHARED_MEM_PA/SIZE [{pa:#x}, "
                        f"{pa + size:#x}) does not hold {role} [{s:#x}, {s + z:#x})",
                        f"{inp.path}: {inp.fix}",
                    )
                )
    buf_pa = v.get("SHARED_BUF_PA")
    if pa is not None and off is not None and buf_pa is not None and pa + off != buf_pa:
        findings.append(
            Finding(
                f"{inp.path}: SHARED_MEM_PA {pa:#x} + SHARED_BUF_OFFSET {off:#x} is not "
                f"SHARED_BUF_PA {buf_pa:#x}",
                f"{inp.path}: {inp.fix}",
            )
        )


def _channel_info_claims(claims: _Claims, inp: _Input, channel_core: dict[int, int]) -> None:
    values: dict[int, dict[str, int]] = {}
    for m in re.finditer(r'^CHANNEL(\d+)([\w-]+)="([^"]*)"', inp.text, re.M):
        n = _number(m.group(3))
        if n is not None:
            values.setdefault(int(m.group(1)), {})[m.group(2)] = n
    keys = {
        "VRING0BASE": "vring0.start",
        "VRING0SIZE": "vring0.size",
        "VRING1BASE": "vring1.start",
        "VRING1SIZE": "vring1.size",
        "VDEV0BUFFERBASE": "buffer.start",
        "VDEV0BUFFERSIZE": "buffer.size",
        "ELFBASE": "elf.start",
        "ELFSIZE": "elf.size",
        "TO_HOST": "host_ipi.base",
        "TO_HOST-BITMASK": "host_ipi.bitmask",
        "TO_REMOTE": "remote_ipi.base",
        "TO_REMOTE-BITMASK": "remote_ipi.bitmask",
        "TO_REMOTE-IPIIRQVECTID": "remote_ipi.vector",
    }
    for channel, kv in values.items():
        core = channel_core.get(channel)
        if core is None:
            core = _match_core(claims, kv.get("VRING0BASE"), channel)
        for k, key in keys.items():
            if k in kv:
                claims.add(core, key, _Claim(inp.rank, inp.path, kv[k], f"CHANNEL{channel}{k}"))


def _match_core(claims: _Claims, vring0: int | None, fallback: int) -> int:
    if vring0 is not None:
        for core in claims.reference_cores(_RANK_LINUX):
            if claims.get(core, "vring0.start") == vring0:
                return core
    cores = claims.reference_cores(_RANK_LINUX)
    if len(cores) == 1:
        return cores[0]
    return fallback


def _core_hint(path: str) -> int | None:
    m = re.search(r"r5_?(\d+)|rpu(\d+)", Path(path).name)
    if m is None:
        return None
    return int(m.group(1) or m.group(2))


def _table_claims(
    claims: _Claims, inp: _Input, findings: list[Finding], reserved: list[tuple[str, int, int]]
) -> int:
    table = inp.table
    assert table is not None
    vdev = next((e for e in table.entries if isinstance(e, Vdev)), None)
    hint = _core_hint(inp.path)
    vring0 = (
        vdev.vrings[0].da if vdev and vdev.vrings and vdev.vrings[0].da != FW_RSC_ADDR_ANY else None
    )
    core = hint if hint is not None else _match_core(claims, vring0, 0)
    carves = [e for e in table.entries if isinstance(e, RscCarveout)]
    if carves:
        c = carves[0]
        if c.da != FW_RSC_ADDR_ANY:
            claims.add(
                core, "elf.start", _Claim(inp.rank, inp.path, c.da, f"carveout entry {c.name!r} da")
            )
    if vdev is None:
        findings.append(
            Finding(
                f"{inp.path}: the resource table has no vdev entry (no rpmsg)",
                f"{inp.path}: {inp.fix}",
            )
        )
        return core
    if len(vdev.vrings) != 2:
        findings.append(
            Finding(
                f"{inp.path}: the rpmsg vdev has {len(vdev.vrings)} vrings, not 2",
                f"{inp.path}: {inp.fix}",
            )
        )
    ids = [vdev.notifyid] + [v.notifyid for v in vdev.vrings]
    ring_ids = [v.notifyid for v in vdev.vrings if v.notifyid != FW_RSC_ADDR_ANY]
    if len(set(ring_ids)) != len(ring_ids):
        findings.append(
            Finding(
                f"{inp.path}: vring notify ids {ring_ids} are not distinct: a kick could not tell "
                "the rings apart",
                f"{inp.path}: {inp.fix}",
            )
        )
    del ids
    for i, ring in enumerate(vdev.vrings[:2]):
        role = f"vring{i}"
        if ring.da != FW_RSC_ADDR_ANY:
            claims.add(
                core, f"{role}.start", _Claim(inp.rank, inp.path, ring.da, f"vdev vring {i} da")
            )
        claims.add(core, "vring.num", _Claim(inp.rank, inp.path, ring.num, f"vdev vring {i} num"))
        need = align_up(vring_size(ring.num, ring.align), PAGE_SIZE) if ring.align else 0
        size = _ref(claims, core, f"{role}.size", inp.rank)
        if size is not None and need > size[0]:
            findings.append(
                Finding(
                    f"R5 core {core}: vring {i} of {ring.num} entries aligned {ring.align:#x} "
                    f"needs {need:#x} bytes (PAGE_ALIGN(vring_size)), {size[1]} reserves "
                    f"{size[0]:#x}",
                    f"{inp.path}: {inp.fix}",
                )
            )
    if reserved:
        for e in carves:
            if e.da == FW_RSC_ADDR_ANY:
                continue
            if not any(s <= e.da and e.da + e.len <= s + z for _, s, z in reserved):
                findings.append(
                    Finding(
                        f"R5 core {core}: {inp.path}: carveout entry {e.name!r} [{e.da:#x}, "
                        f"{e.da + e.len:#x}) is not reserved in the Linux device tree",
                        f"{inp.path}: {inp.fix}",
                    )
                )
    return core


def _ref(claims: _Claims, core: int, key: str, below: int) -> tuple[int, str] | None:
    found = [c for c in claims.by_key.get((core, key), []) if c.rank < below]
    if not found:
        return None
    best = min(found, key=lambda c: c.rank)
    return best.value, best.file


def _machine_claims(claims: _Claims, inp: _Input) -> None:
    from ..platform.layout import MachineLayout

    layout = inp.layout
    assert isinstance(layout, MachineLayout)
    hint = _core_hint(inp.path)
    core = hint if hint is not None else _match_core(claims, layout.vring0_da, 0)
    pairs = [
        ("vring0.start", layout.vring0_da, "vring0_da"),
        ("vring1.start", layout.vring1_da, "vring1_da"),
        ("buffer.start", layout.pool_base, "pool_base"),
        ("buffer.size", layout.pool_size, "pool_size"),
        ("vring.num", layout.vring_num, "vring_num"),
    ]
    if layout.carveouts:
        pairs.append(("elf.start", layout.carveouts[0].da, "carveouts[0].da"))
        pairs.append(("elf.size", layout.carveouts[0].len, "carveouts[0].len"))
    for key, value, how in pairs:
        claims.add(core, key, _Claim(inp.rank, inp.path, value, how))


# -- comparing -----------------------------------------------------------------------------


def _compare(claims: _Claims, fixes: dict[str, str], report: Report) -> None:
    for (core, key), found in sorted(claims.by_key.items()):
        if len(found) < 2:
            continue
        report.compared += 1
        ref = min(found, key=lambda c: c.rank)
        for c in found:
            if c is ref or c.value == ref.value:
                continue
            what = _WHAT.get(key, key)
            report.findings.append(
                Finding(
                    f"R5 core {core} {what}: {ref.file} says {ref.value:#x} ({ref.how}), "
                    f"{c.file} says {c.value:#x} ({c.how})",
                    f"{c.file}: {fixes[c.file].replace('<core>', str(core))}",
                )
            )


def check_files(paths: Iterable[str], *, dtc: str | None = None) -> Report:
    """Read every file of ``paths`` and compare what they say (see the module's doc)."""
    inputs = [_sniff(str(p), dtc) for p in paths]
    report = Report(files=[(i.path, i.kind) for i in inputs])
    domains = [i for i in inputs if i.domain is not None]
    if len(domains) > 1:
        raise DescriptionError(
            "give one domain YAML at a time: " + ", ".join(i.path for i in domains)
        )
    systems = [i for i in inputs if i.kind == "system device tree"]
    claims = _Claims()
    fixes = {i.path: i.fix for i in inputs}
    findings: list[Finding] = []
    channel_core: dict[int, int] = {}
    for d in domains:
        tree = systems[0].tree if systems else None
        channel_core = _description_claims(claims, d, tree, findings)
    reserved: list[tuple[str, int, int]] = []
    for i in inputs:
        if i.kind == "Linux device tree":
            reserved += _linux_claims(claims, i, findings)
    if not reserved and domains:
        assert domains[0].domain is not None
        reserved = [(c.name, c.start, c.size) for c in domains[0].domain.carveouts.values()]
    for i in inputs:
        if i.kind == "header":
            hint = _core_hint(i.path)
            base = _header_values(i.text).get("POLL_BASE_ADDR")
            core = hint
            if core is None:
                core = next(
                    (
                        c
                        for c in claims.reference_cores(_RANK_LINUX)
                        if claims.get(c, "remote_ipi.base") == base
                    ),
                    None,
                )
            if core is None:
                core = _match_core(claims, _header_values(i.text).get("RING_TX"), 0)
            _header_claims(claims, i, core, findings)
        elif i.kind == "channel info":
            _channel_info_claims(claims, i, channel_core)
        elif i.kind == "machine":
            _machine_claims(claims, i)
    for i in inputs:
        if i.table is not None:
            _table_claims(claims, i, findings, reserved)
    _compare(claims, fixes, report)
    report.findings = list(dict.fromkeys(findings)) + report.findings
    report.cores = sorted({core for core, _ in claims.by_key})
    return report

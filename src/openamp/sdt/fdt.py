"""Device trees in memory: read a DTB (or ``/proc/device-tree``), change it, write it back.

DTS text is never parsed here: :func:`load_tree` hands a ``.dts`` to the real ``dtc``
(after ``cpp`` when it uses ``#include``, as the kernel's build does) and reads the
flattened blob that comes out.  Why our own blob reader rather than a library: the one
maintained binding, ``pylibfdt``, is published on PyPI as a source package that needs
SWIG to build, so it cannot be a plain dependency; Debian's ``python3-libfdt`` belongs to
Debian's Python, not to the interpreter a user installs us into; the pure-Python ``fdt``
and ``pyfdt`` packages have been dormant for years.  The flattened format itself is
small and frozen (Devicetree Specification v0.4, chapter 5): a header, a memory
reservation map, a block of tokens and a string table.  It is defined once below, as
``struct.Struct`` objects -- big-endian, because the format is (every other wire format in
pyopenamp is little-endian).

Rules of this module:

* a blob is untrusted input: every offset and length is checked, and a bad blob raises
  :class:`~openamp.sdt.model.DescriptionError` naming the file and the byte offset, never
  ``struct.error`` or ``IndexError``;
* :meth:`DeviceTree.to_dts` writes DTS *text* (labels, strings, cells, bytes, as ``dtc``
  decompiles), and :meth:`DeviceTree.to_dtb` writes a blob; what we write is checked by
  compiling it with ``dtc`` again (:func:`validate_dts`);
* no knowledge of OpenAMP or of any binding lives here.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .model import DescriptionError

__all__ = [
    "FDT_HEADER",
    "FDT_MAGIC",
    "DeviceTree",
    "Node",
    "compile_dts",
    "find_dtc",
    "load_tree",
    "validate_dts",
]

FDT_MAGIC = 0xD00DFEED
FDT_HEADER = struct.Struct(">10I")
"""magic, totalsize, off_dt_struct, off_dt_strings, off_mem_rsvmap, version,
last_comp_version, boot_cpuid_phys, size_dt_strings, size_dt_struct."""
_RSV_ENTRY = struct.Struct(">QQ")
_U32 = struct.Struct(">I")
_PROP = struct.Struct(">II")
"""len, nameoff: follows an FDT_PROP token."""

FDT_BEGIN_NODE = 1
FDT_END_NODE = 2
FDT_PROP = 3
FDT_NOP = 4
FDT_END = 9
_VERSION = 17
_LAST_COMP_VERSION = 16
_MAX_DEPTH = 64

_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PRINTABLE = re.compile(rb"[\x20-\x7e]+\Z")
_GENERATED = frozenset({"__symbols__", "__fixups__", "__local_fixups__"})
_REFERENCES = {
    "interrupt-parent": None,
    "memory-region": None,
    "sram": None,
    "mboxes": "#mbox-cells",
    "power-domains": "#power-domain-cells",
    "power-domain": "#power-domain-cells",
    "clocks": "#clock-cells",
    "resets": "#reset-cells",
    "iommus": "#iommu-cells",
    "phys": "#phy-cells",
}
"""Properties whose cells start with phandles, and the target's cell-count property for
the arguments that follow each (None: a plain list of phandles).  :meth:`to_dts`
writes those phandles as references, so that ``dtc``'s checks see them as such."""


def _align4(n: int) -> int:
    return (n + 3) & ~3


@dataclass(eq=False)
class Node:
    """One device-tree node: its name (``name@unit``), properties and children.

    Property values are the raw bytes of the blob (big-endian cells, NUL-terminated
    strings); the helpers decode them.  ``labels`` come from ``/__symbols__``.
    """

    name: str
    props: dict[str, bytes] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    parent: Node | None = field(default=None, repr=False)

    @property
    def path(self) -> str:
        """The absolute path (``/`` for the root)."""
        if self.parent is None:
            return "/"
        up = self.parent.path
        return f"{up}{self.name}" if up == "/" else f"{up}/{self.name}"

    @property
    def basename(self) -> str:
        """The name without its unit address (``ipi`` for ``ipi@ff340000``)."""
        return self.name.split("@", 1)[0]

    @property
    def unit_address(self) -> str | None:
        """The part after ``@``, or None."""
        return self.name.split("@", 1)[1] if "@" in self.name else None

    def child(self, name: str) -> Node | None:
        """The child called ``name`` (with or without its unit address), if any."""
        for c in self.children:
            if c.name == name:
                return c
        matches = [c for c in self.children if c.basename == name]
        return matches[0] if len(matches) == 1 else None

    def add(self, node: Node, *, first: bool = False) -> Node:
        """Append (or prepend) ``node`` as a child and return it."""
        node.parent = self
        if first:
            self.children.insert(0, node)
        else:
            self.children.append(node)
        return node

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, depth first, in order."""
        yield self
        for c in self.children:
            yield from c.walk()

    # -- property helpers ---------------------------------------------------------------

    def has(self, name: str) -> bool:
        """Whether the node has property ``name``."""
        return name in self.props

    def cells(self, name: str) -> list[int] | None:
        """Property ``name`` as 32-bit cells, or None if absent; a length that is not a
        multiple of 4 raises :class:`DescriptionError`."""
        raw = self.props.get(name)
        if raw is None:
            return None
        if len(raw) % 4:
            raise DescriptionError(
                f"property {name!r} is {len(raw)} bytes, not a list of 32-bit cells",
                where=self.path,
            )
        return [v for (v,) in _U32.iter_unpack(raw)]

    def cell(self, name: str) -> int | None:
        """Property ``name`` as one 32-bit cell (the first), or None if absent or empty."""
        values = self.cells(name)
        return values[0] if values else None

    def strings(self, name: str) -> list[str] | None:
        """Property ``name`` as a string list, or None if absent or not strings."""
        raw = self.props.get(name)
        if raw is None or not raw.endswith(b"\0"):
            return None
        parts = raw[:-1].split(b"\0")
        try:
            return [p.decode("ascii") for p in parts]
        except UnicodeDecodeError:
            return None

    def string(self, name: str) -> str | None:
        """The first string of property ``name``, or None."""
        values = self.strings(name)
        return values[0] if values else None

    def set_cells(self, name: str, values: list[int]) -> None:
        """Set ``name`` to 32-bit cells."""
        self.props[name] = b"".join(_U32.pack(v & 0xFFFFFFFF) for v in values)

    def set_strings(self, name: str, *values: str) -> None:
        """Set ``name`` to a string list."""
        self.props[name] = b"".join(v.encode("ascii") + b"\0" for v in values)

    def set_flag(self, name: str) -> None:
        """Set an empty (boolean) property."""
        self.props[name] = b""

    @property
    def phandle(self) -> int | None:
        """The node's phandle, if it has one."""
        value = self.cell("phandle")
        return value if value is not None else self.cell("linux,phandle")

    def compatible(self) -> list[str]:
        """The ``compatible`` strings (empty when absent)."""
        return self.strings("compatible") or []


class DeviceTree:
    """A whole device tree: the root node, the memory reservations, labels and phandles.

    ``source`` names the file it came from (for messages).  Labels are read from
    ``/__symbols__`` (``dtc -@`` writes it) and attached to their nodes.
    """

    def __init__(
        self, root: Node, *, source: str = "", reservations: list[tuple[int, int]] | None = None
    ) -> None:
        self.root = root
        self.source = source
        self.reservations = list(reservations or [])
        self._phandles: dict[int, Node] = {}
        self._attach_labels()

    def _attach_labels(self) -> None:
        symbols = self.root.child("__symbols__")
        if symbols is None:
            return
        for label in symbols.props:
            path = symbols.string(label)
            node = self.find(path) if path else None
            if node is not None and label not in node.labels:
                node.labels.append(label)

    # -- lookup -------------------------------------------------------------------------

    def find(self, path: str) -> Node | None:
        """The node at absolute ``path`` (unit addresses may be left out when unique)."""
        if not path.startswith("/"):
            return None
        node: Node | None = self.root
        for part in (p for p in path.split("/") if p):
            node = node.child(part) if node is not None else None
            if node is None:
                return None
        return node

    def labels(self) -> dict[str, Node]:
        """Every label and its node."""
        return {label: n for n in self.root.walk() for label in n.labels}

    def by_label(self, label: str) -> Node | None:
        """The node carrying ``label``."""
        return self.labels().get(label)

    def by_phandle(self, phandle: int) -> Node | None:
        """The node whose ``phandle`` is ``phandle``."""
        for n in self.root.walk():
            if n.phandle == phandle:
                return n
        return None

    def resolve(self, name: str) -> Node | None:
        """A node named in a description: a label, an absolute path, or a node name
        (``ipi@ff340000``, or ``ipi7`` when only one node is called that) that is unique
        in the tree; None when nothing or more than one node matches."""
        node = self.by_label(name)
        if node is not None:
            return node
        if name.startswith("/"):
            return self.find(name)
        exact = [n for n in self.root.walk() if n.name == name and not _in_generated(n)]
        if len(exact) == 1:
            return exact[0]
        loose = [n for n in self.root.walk() if n.basename == name and not _in_generated(n)]
        return loose[0] if len(loose) == 1 else None

    def max_phandle(self) -> int:
        """The highest phandle in use (0 when none)."""
        return max((n.phandle or 0 for n in self.root.walk()), default=0)

    def ensure_phandle(self, node: Node) -> int:
        """The node's phandle, giving it the next free one if it has none."""
        if node.phandle is None:
            node.set_cells("phandle", [self.max_phandle() + 1])
        phandle = node.phandle
        assert phandle is not None
        return phandle

    # -- writing ------------------------------------------------------------------------

    def to_dtb(self) -> bytes:
        """The tree as a flattened blob (version 17), labels dropped unless a
        ``/__symbols__`` node carries them."""
        strings: dict[str, int] = {}
        table = bytearray()
        struct_block = bytearray()

        def name_offset(name: str) -> int:
            if name not in strings:
                strings[name] = len(table)
                table.extend(name.encode("ascii") + b"\0")
            return strings[name]

        def emit(node: Node) -> None:
            struct_block.extend(_U32.pack(FDT_BEGIN_NODE))
            raw = node.name.encode("ascii") + b"\0"
            struct_block.extend(raw.ljust(_align4(len(raw)), b"\0"))
            for key, value in node.props.items():
                struct_block.extend(_U32.pack(FDT_PROP))
                struct_block.extend(_PROP.pack(len(value), name_offset(key)))
                struct_block.extend(value.ljust(_align4(len(value)), b"\0"))
            for c in node.children:
                emit(c)
            struct_block.extend(_U32.pack(FDT_END_NODE))

        emit(self.root)
        struct_block.extend(_U32.pack(FDT_END))
        rsvmap = b"".join(_RSV_ENTRY.pack(a, s) for a, s in self.reservations)
        rsvmap += _RSV_ENTRY.pack(0, 0)
        off_rsv = _align4(FDT_HEADER.size)
        off_rsv = (off_rsv + 7) & ~7
        off_struct = off_rsv + len(rsvmap)
        off_strings = off_struct + len(struct_block)
        total = off_strings + len(table)
        header = FDT_HEADER.pack(
            FDT_MAGIC,
            total,
            off_struct,
            off_strings,
            off_rsv,
            _VERSION,
            _LAST_COMP_VERSION,
            0,
            len(table),
            len(struct_block),
        )
        out = bytearray(header.ljust(off_rsv, b"\0"))
        out += rsvmap + struct_block + table
        return bytes(out)

    def to_dts(self, header: str = "") -> str:
        """The tree as DTS text that ``dtc`` compiles back into the same tree.

        Values are written the way ``dtc`` decompiles them: a string list when every
        part is printable, 32-bit cells when the length is a multiple of 4, bytes
        otherwise.  References stay numeric (every node keeps its ``phandle``);
        labels are written on their nodes and the generated ``/__symbols__`` node is
        left out (``dtc -@`` makes it again).
        """
        lines = ["/dts-v1/;", ""]
        if header:
            lines[1:1] = [header.rstrip("\n")]
            lines.append("")
        for address, size in self.reservations:
            lines.append(f"/memreserve/ {address:#x} {size:#x};")
        if self.reservations:
            lines.append("")
        self._phandles = {n.phandle: n for n in self.root.walk() if n.phandle is not None}
        self._dts_node(self.root, 0, lines)
        return "\n".join(lines) + "\n"

    def _references(self, key: str, raw: bytes) -> str | None:
        """`` = <&a 0x1 &b>`` for a property of :data:`_REFERENCES`, or None."""
        if key not in _REFERENCES or not raw or len(raw) % 4:
            return None
        count_prop = _REFERENCES[key]
        cells = [v for (v,) in _U32.iter_unpack(raw)]
        out: list[str] = []
        i = 0
        while i < len(cells):
            target = self._phandles.get(cells[i])
            if target is None:
                return None
            valid = [label for label in target.labels if _LABEL.match(label)]
            out.append(f"&{valid[0]}" if valid else f"&{{{target.path}}}")
            args = (target.cell(count_prop) or 0) if count_prop else 0
            if i + 1 + args > len(cells):
                return None
            out += [f"{v:#x}" for v in cells[i + 1 : i + 1 + args]]
            i += 1 + args
        return " = <" + " ".join(out) + ">"

    def _dts_node(self, node: Node, depth: int, out: list[str]) -> None:
        pad = "\t" * depth
        labels = "".join(f"{label}: " for label in node.labels if _LABEL.match(label))
        out.append(f"{pad}{labels}{node.name or '/'} {{")
        for key, value in node.props.items():
            rendered = self._references(key, value) or _dts_value(value)
            out.append(f"{pad}\t{key}{rendered};")
        for c in node.children:
            if depth == 0 and c.name in _GENERATED:
                continue
            out.append("")
            self._dts_node(c, depth + 1, out)
        out.append(f"{pad}}};")


def _in_generated(node: Node) -> bool:
    n: Node | None = node
    while n is not None:
        if n.name in _GENERATED:
            return True
        n = n.parent
    return False


def _dts_value(raw: bytes) -> str:
    if not raw:
        return ""
    if raw.endswith(b"\0") and len(raw) > 1:
        parts = raw[:-1].split(b"\0")
        if all(p and _PRINTABLE.match(p) for p in parts):
            quoted = ", ".join(
                '"' + p.decode("ascii").replace("\\", "\\\\").replace('"', '\\"') + '"'
                for p in parts
            )
            return f" = {quoted}"
    if len(raw) % 4 == 0:
        return " = <" + " ".join(f"{v:#x}" for (v,) in _U32.iter_unpack(raw)) + ">"
    return " = [" + " ".join(f"{b:02x}" for b in raw) + "]"


# -- reading -----------------------------------------------------------------------------


def parse_dtb(data: bytes, source: str = "<dtb>") -> DeviceTree:
    """Read a flattened device tree blob.  Raises :class:`DescriptionError` (naming
    ``source`` and the byte offset) for anything malformed."""

    def bad(offset: int, why: str) -> DescriptionError:
        return DescriptionError(
            f"not a valid device tree blob: {why}", file=source, where=f"byte {offset:#x}"
        )

    if len(data) < FDT_HEADER.size:
        raise bad(0, f"{len(data)} bytes is shorter than the {FDT_HEADER.size}-byte header")
    (
        magic,
        total,
        off_struct,
        off_strings,
        off_rsv,
        version,
        _last_comp,
        _boot_cpu,
        size_strings,
        size_struct,
    ) = FDT_HEADER.unpack_from(data, 0)
    if magic != FDT_MAGIC:
        raise bad(0, f"magic {magic:#010x} is not {FDT_MAGIC:#010x}")
    if version < _LAST_COMP_VERSION:
        raise bad(0x14, f"version {version} is older than {_LAST_COMP_VERSION}")
    if total > len(data):
        raise bad(4, f"totalsize {total:#x} is larger than the {len(data):#x}-byte file")
    for what, off, size in (
        ("structure block", off_struct, size_struct),
        ("strings block", off_strings, size_strings),
    ):
        if off + size > total:
            raise bad(off, f"the {what} ({size:#x} bytes at {off:#x}) ends past totalsize")
    strings = data[off_strings : off_strings + size_strings]

    reservations: list[tuple[int, int]] = []
    pos = off_rsv
    while True:
        if pos + _RSV_ENTRY.size > total:
            raise bad(pos, "the memory reservation map has no terminating entry")
        address, size = _RSV_ENTRY.unpack_from(data, pos)
        pos += _RSV_ENTRY.size
        if address == 0 and size == 0:
            break
        reservations.append((address, size))

    end = off_struct + size_struct
    pos = off_struct
    stack: list[Node] = []
    root: Node | None = None

    def u32(at: int) -> int:
        if at + 4 > end:
            raise bad(at, "the structure block ends in the middle of a token")
        return int(_U32.unpack_from(data, at)[0])

    def cstring(block: bytes, at: int, base: int) -> str:
        stop = block.find(b"\0", at)
        if stop < 0:
            raise bad(base + at, "a name has no terminating NUL")
        try:
            return block[at:stop].decode("ascii")
        except UnicodeDecodeError:
            raise bad(base + at, "a name is not ASCII") from None

    while True:
        token = u32(pos)
        at = pos
        pos += 4
        if token == FDT_BEGIN_NODE:
            name = cstring(data[:end], pos, 0)
            pos = _align4(pos + len(name) + 1)
            node = Node(name)
            if stack:
                stack[-1].add(node)
            elif root is None:
                root = node
            else:
                raise bad(at, "a second root node")
            stack.append(node)
            if len(stack) > _MAX_DEPTH:
                raise bad(at, f"nodes nested deeper than {_MAX_DEPTH}")
        elif token == FDT_END_NODE:
            if not stack:
                raise bad(at, "FDT_END_NODE without an open node")
            stack.pop()
        elif token == FDT_PROP:
            if not stack:
                raise bad(at, "a property outside any node")
            length = u32(pos)
            nameoff = u32(pos + 4)
            pos += _PROP.size
            if pos + length > end:
                raise bad(at, f"property value of {length:#x} bytes runs past the block")
            if nameoff >= len(strings):
                raise bad(at, f"property name offset {nameoff:#x} outside the strings block")
            key = cstring(strings, nameoff, off_strings)
            stack[-1].props[key] = bytes(data[pos : pos + length])
            pos = _align4(pos + length)
        elif token == FDT_NOP:
            continue
        elif token == FDT_END:
            break
        else:
            raise bad(at, f"unknown token {token:#x}")
    if stack:
        raise bad(pos, f"{len(stack)} node(s) not closed before FDT_END")
    if root is None:
        raise bad(off_struct, "no root node")
    return DeviceTree(root, source=source, reservations=reservations)


def read_directory(path: str | Path) -> DeviceTree:
    """Read a live tree from a directory laid out as ``/proc/device-tree``: one
    directory per node, one file per property holding its raw bytes."""
    base = Path(path)

    def build(directory: Path, name: str) -> Node:
        node = Node(name)
        try:
            entries = sorted(directory.iterdir(), key=lambda p: p.name)
        except OSError as exc:
            raise DescriptionError(f"cannot read: {exc.strerror}", file=str(directory)) from None
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                node.add(build(entry, entry.name))
            elif entry.is_file():
                node.props[entry.name] = entry.read_bytes()
        return node

    return DeviceTree(build(base, ""), source=str(base))


# -- dtc ---------------------------------------------------------------------------------

_INCLUDE = re.compile(r"^\s*#\s*include\b", re.MULTILINE)


def find_dtc(dtc: str | None = None) -> str:
    """The ``dtc`` to run: ``dtc`` itself when given, else the one on PATH.

    Raises :class:`DescriptionError` saying how to install it (the command line installs
    it on demand with :func:`openamp.tools.sysdeps.ensure_tool`).
    """
    found = dtc or shutil.which("dtc")
    if not found:
        raise DescriptionError(
            "dtc is not installed: install the Debian package 'device-tree-compiler'"
        )
    return found


def _run(cmd: list[str], what: str, source: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(cmd, capture_output=True, check=False, timeout=120)
    except OSError as exc:
        raise DescriptionError(f"cannot run {cmd[0]}: {exc.strerror}", file=source) from None
    except subprocess.TimeoutExpired:
        raise DescriptionError(f"{what} did not finish in 120 s", file=source) from None


def compile_dts(
    path: str | Path,
    *,
    dtc: str | None = None,
    include_dirs: tuple[str, ...] = (),
) -> bytes:
    """Compile a DTS file with ``dtc`` (``-@``, so labels survive) and return the blob.

    A source that uses ``#include`` is run through ``cpp`` first, as the kernel's build
    does, with the file's folder and its ``include/`` subfolder on the include path;
    ``cpp`` keeps line markers, so ``dtc``'s messages name the original file and line.
    A failure raises :class:`DescriptionError` with ``dtc``'s own message.
    """
    source = str(path)
    tool = find_dtc(dtc)
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        raise DescriptionError(f"cannot read: {exc.strerror}", file=source) from None
    folder = os.path.dirname(os.path.abspath(source))
    with tempfile.TemporaryDirectory(prefix="openamp-sdt-") as tmp:
        to_compile = source
        if _INCLUDE.search(text):
            cpp = shutil.which("cpp")
            if cpp is None:
                raise DescriptionError(
                    "uses #include, which needs the C preprocessor 'cpp' (Debian package cpp)",
                    file=source,
                )
            to_compile = os.path.join(tmp, "preprocessed.dts")
            dirs = [folder, os.path.join(folder, "include"), *include_dirs]
            cmd = [cpp, "-nostdinc", "-undef", "-x", "assembler-with-cpp", "-D__DTS__"]
            cmd += [f"-I{d}" for d in dirs] + [source, "-o", to_compile]
            proc = _run(cmd, "cpp", source)
            if proc.returncode != 0:
                raise DescriptionError(
                    "the C preprocessor failed:\n" + proc.stderr.decode(errors="replace").strip(),
                    file=source,
                )
        out = os.path.join(tmp, "out.dtb")
        cmd = [tool, "-q", "-@", "-I", "dts", "-O", "dtb", "-o", out, to_compile]
        cmd += [f"-i{d}" for d in (folder, *include_dirs)]
        proc = _run(cmd, "dtc", source)
        if proc.returncode != 0:
            raise DescriptionError(
                "dtc rejects it:\n" + proc.stderr.decode(errors="replace").strip(), file=source
            )
        return Path(out).read_bytes()


def validate_dts(text: str, *, dtc: str | None = None, name: str = "generated.dts") -> list[str]:
    """Compile DTS ``text`` with ``dtc``; return its warnings, raise on an error."""
    tool = find_dtc(dtc)
    with tempfile.TemporaryDirectory(prefix="openamp-sdt-") as tmp:
        src = os.path.join(tmp, name)
        Path(src).write_text(text)
        proc = _run([tool, "-@", "-I", "dts", "-O", "dtb", "-o", os.devnull, src], "dtc", name)
        messages = proc.stderr.decode(errors="replace").replace(src, name).strip()
        if proc.returncode != 0:
            raise DescriptionError("dtc rejects the generated tree:\n" + messages, file=name)
        return [line for line in messages.splitlines() if line]


def load_tree(
    path: str | Path, *, dtc: str | None = None, include_dirs: tuple[str, ...] = ()
) -> DeviceTree:
    """Read a device tree: a DTB, a ``/proc/device-tree``-style directory, or DTS source
    (through ``dtc``).  The kind is told by content (the DTB magic), not by name."""
    source = str(path)
    p = Path(path)
    if p.is_dir():
        return read_directory(p)
    try:
        head = p.read_bytes()[:4]
    except OSError as exc:
        raise DescriptionError(f"cannot read: {exc.strerror}", file=source) from None
    if len(head) == 4 and _U32.unpack(head)[0] == FDT_MAGIC:
        return parse_dtb(p.read_bytes(), source)
    return parse_dtb(compile_dts(p, dtc=dtc, include_dirs=include_dirs), source)

"""Read an OpenAMP domain YAML (Lopper's format) into a :class:`~.model.DomainSpec`.

Three layouts are read, told apart by their content:

* **2022** (the seed's ``systemdt-linaro-demo`` inputs): carveouts are anchors under
  ``definitions: OpenAMP:``; each domain's ``reserved-memory`` merges them with
  ``<<+``; relations are ``openamp,remoteproc-v1`` / ``openamp,rpmsg-v1`` maps with one
  ``remote`` and a ``mbox``;
* **2024** (the current demo inputs): the same anchors, but ``remote``, ``elfload``,
  ``mbox`` and ``openamp-xlnx-native`` are lists, one item per remote, and the rpmsg
  ``carveouts`` are three per remote, in order;
* **2025** (Lopper 1.6.0): carveouts are nodes of a top-level ``reserved-memory:`` map
  (``vdev0vring0@9880000: {label, start, size, no-map}``), domains list them by name,
  and each relation holds ``relation0``, ``relation1``... children.

Lopper's ``<<+`` merge extension (not standard YAML) is implemented as Lopper does it:
``<<+: [*a, *b]`` in a map adds each anchored one-item list as a child named after the
key it was defined under, or merges an anchored map's keys; ``- <<+: *list`` in a list
splices the anchored list in.  Plain YAML anchors, aliases and ``<<`` merges work as in
any YAML reader.

Rules: every error is a :class:`~.model.DescriptionError` with the file, the line and
what was expected; this module reads YAML and nothing else (no device tree).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import Carveout, ChannelSpec, DescriptionError, DomainSpec, Located

__all__ = ["load_domain", "parse_domain"]

MERGE_PLUS = "<<+"
_REMOTEPROC = "openamp,remoteproc"
_RPMSG = "openamp,rpmsg"


# -- a YAML tree that remembers where each value was written ------------------------------


@dataclass
class Y:
    """A YAML value with its location; ``value`` is a scalar, a list of Y, or a dict
    of str -> Y (insertion ordered)."""

    value: Any
    at: Located
    anchor_key: str | None = None
    """For an anchored value: the map key it was defined under (Lopper names merged
    children after it)."""
    items: list[tuple[str, Y]] = field(default_factory=list)
    """For a map: its (key, value) pairs in order, merges applied."""

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_list(self) -> bool:
        return isinstance(self.value, list)

    def get(self, key: str) -> Y | None:
        if not self.is_map:
            return None
        found: Y | None = self.value.get(key)
        return found


def _load_yaml(text: str, file: str) -> Y:
    try:
        import yaml
    except ImportError:  # pragma: no cover - the yaml extra is part of the test install
        raise DescriptionError(
            "reading a domain YAML needs PyYAML: pip install 'pyopenamp[yaml]'", file=file
        ) from None

    anchors: dict[int, str] = {}

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()  # type: ignore[no-untyped-call]
            anchor = None if isinstance(event, yaml.AliasEvent) else getattr(event, "anchor", None)
            node = super().compose_node(parent, index)
            if anchor is not None:
                anchors[id(node)] = anchor
            return node

    loader = Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        where = f"{mark.line + 1}:{mark.column + 1}" if mark is not None else None
        raise DescriptionError(f"not valid YAML: {reason}", file=file, where=where) from None
    finally:
        loader.dispose()
    if root is None:
        raise DescriptionError("the file is empty", file=file)

    defined_at: dict[int, str] = {}
    converted: dict[int, Y] = {}

    def at(node: Any) -> Located:
        return Located(file, node.start_mark.line + 1, node.start_mark.column + 1)

    def convert(node: Any) -> Y:
        if id(node) in converted:
            return converted[id(node)]
        if isinstance(node, yaml.ScalarNode):
            try:
                value = loader.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                raise at(node).error(f"cannot read this value: {exc}") from None
            y = Y(value, at(node))
        elif isinstance(node, yaml.SequenceNode):
            y = Y([], at(node))
            converted[id(node)] = y
            y.value.extend(convert(item) for item in node.value)
        else:
            y = Y({}, at(node))
            converted[id(node)] = y
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise at(key_node).error("a map key must be a plain name")
                key = str(key_node.value)
                if id(value_node) in anchors and id(value_node) not in defined_at:
                    defined_at[id(value_node)] = key
                y.items.append((key, convert(value_node)))
        converted[id(node)] = y
        if id(node) in anchors:
            y.anchor_key = defined_at.get(id(node), anchors[id(node)])
        return y

    top = convert(root)
    _finish(top, set())
    return top


def _finish(y: Y, seen: set[int]) -> None:
    """Apply ``<<``/``<<+`` merges and build the dicts, once per node."""
    if id(y) in seen:
        return
    seen.add(id(y))
    if y.is_list:
        spliced: list[Y] = []
        for item in y.value:
            merged = item.items[0][1] if item.is_map and len(item.items) == 1 else None
            if merged is not None and item.items[0][0] == MERGE_PLUS and merged.is_list:
                _finish(merged, seen)
                spliced.extend(merged.value)
            else:
                _finish(item, seen)
                spliced.append(item)
        y.value[:] = spliced
        return
    if not y.is_map:
        return
    out: dict[str, Y] = {}
    for key, value in y.items:
        _finish(value, seen)
        if key == "<<":
            for source in value.value if value.is_list else [value]:
                if not source.is_map:
                    raise source.at.error("'<<' merges a map (or a list of maps) into this map")
                for k, v in source.value.items():
                    out.setdefault(k, v)
        elif key == MERGE_PLUS:
            for child in value.value if value.is_list else [value]:
                _merge_plus(out, child, value)
        elif key in out:
            raise value.at.error(f"key {key!r} appears twice in this map")
        else:
            out[key] = value
    y.value = out


def _merge_plus(out: dict[str, Y], child: Y, whole: Y) -> None:
    if child.is_map:
        for k, v in child.value.items():
            out.setdefault(k, v)
        return
    if child.is_list and len(child.value) == 1 and child.value[0].is_map:
        name = child.anchor_key
        if name is None:
            raise child.at.error(
                "'<<+' adds an anchored one-item list as a child node named after its "
                "anchor; this value has no anchor"
            )
        if name in out:
            raise child.at.error(f"'<<+' adds {name!r}, which this map already has")
        out[name] = child.value[0]
        return
    raise whole.at.error(
        "'<<+' expects anchored maps or anchored one-item lists of maps (Lopper's merge)"
    )


# -- reading the description ---------------------------------------------------------------


def _int(y: Y, what: str) -> int:
    v = y.value
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, str):
            try:
                return int(v, 0)
            except ValueError:
                pass
        raise y.at.error(f"{what} must be a number (like 0x3ed40000), got {v!r}")
    if v < 0:
        raise y.at.error(f"{what} must not be negative, got {v}")
    return v


def _str(y: Y, what: str) -> str:
    if not isinstance(y.value, (str, int)) or isinstance(y.value, bool):
        raise y.at.error(f"{what} must be a name, got {_show(y)}")
    return str(y.value)


def _names(y: Y | None, what: str) -> list[str]:
    if y is None:
        return []
    if y.is_list:
        out: list[str] = []
        for item in y.value:
            out += _names(item, what)
        return out
    return [_str(y, what)]


def _show(y: Y) -> str:
    if y.is_map:
        return "a map"
    if y.is_list:
        return "a list"
    return repr(y.value)


def _need(parent: Y, key: str, what: str) -> Y:
    found = parent.get(key)
    if found is None:
        raise parent.at.error(f"{what}: expected a {key!r} key here")
    return found


def _truthy(y: Y | None) -> bool:
    if y is None or y.value is None:
        return False
    if isinstance(y.value, bool):
        return y.value
    if isinstance(y.value, int):
        return y.value != 0
    if isinstance(y.value, str):
        return y.value.lower() in ("true", "yes", "1", "okay")
    return bool(y.value)


def _carveout_from(name: str, y: Y, node_name: str | None = None) -> Carveout:
    if not y.is_map:
        raise y.at.error(f"carveout {name!r}: expected a map with start and size, got {_show(y)}")
    start = _int(_need(y, "start", f"carveout {name!r}"), f"carveout {name!r} start")
    size = _int(_need(y, "size", f"carveout {name!r}"), f"carveout {name!r} size")
    if size == 0:
        raise y.at.error(f"carveout {name!r}: size must not be 0")
    return Carveout(name, start, size, _truthy(y.get("no-map")), y.at, node_name)


def _definitions(top: Y) -> dict[str, Carveout]:
    found: dict[str, Carveout] = {}
    defs = top.get("definitions")
    if defs is None or not defs.is_map:
        return found
    for group in defs.value.values():
        if not group.is_map:
            continue
        for key, value in group.value.items():
            if (
                value.is_list
                and len(value.value) == 1
                and value.value[0].is_map
                and value.value[0].get("start") is not None
            ):
                found[key] = _carveout_from(key, value.value[0])
    return found


def _top_reserved(top: Y) -> dict[str, Carveout]:
    found: dict[str, Carveout] = {}
    rm = top.get("reserved-memory")
    if rm is None:
        return found
    if not rm.is_map:
        raise rm.at.error("top-level reserved-memory must be a map of carveout nodes")
    for key, value in rm.value.items():
        if not value.is_map:
            continue
        label = value.get("label")
        name = _str(label, "label") if label is not None else key.split("@", 1)[0]
        if name in found:
            raise value.at.error(f"carveout name {name!r} is used twice in reserved-memory")
        found[name] = _carveout_from(name, value, node_name=key)
    return found


@dataclass
class _Relation:
    remote: str
    at: Located
    elfload: list[str] = field(default_factory=list)
    carveouts: list[str] = field(default_factory=list)
    mbox: str | None = None
    mbox_at: Located | None = None
    native: bool = False


def _relation_items(rel: Y, role_key: str) -> Iterator[tuple[Y, str]]:
    """(relation map, peer name) for each relation child (2025) or list position."""
    children = [v for k, v in rel.value.items() if k.startswith("relation") and v.is_map]
    if children:
        for child in children:
            for peer in _names(child.get(role_key), role_key):
                yield child, peer
        return
    peers = _names(rel.get(role_key), role_key)
    for peer in peers:
        yield rel, peer


def _pick(y: Y | None, index: int, count: int, what: str) -> Y | None:
    """Item ``index`` of a per-remote list, or the value itself when it is one value."""
    if y is None:
        return None
    if y.is_list and count > 1:
        if len(y.value) != count:
            raise y.at.error(f"{what}: expected {count} items, one per remote, got {len(y.value)}")
        return y.value[index]  # type: ignore[no-any-return]
    if y.is_list and count == 1 and len(y.value) == 1 and not _is_name_list(y, what):
        return y.value[0]  # type: ignore[no-any-return]
    return y


def _is_name_list(y: Y, what: str) -> bool:
    return what in ("elfload", "carveouts")


def _remoteproc_relations(rel: Y) -> list[_Relation]:
    out: list[_Relation] = []
    items = list(_relation_items(rel, "remote"))
    per_remote = len(items)
    for i, (node, remote) in enumerate(items):
        if node is rel:
            elf = rel.get("elfload")
            if elf is not None and elf.is_list and any(e.is_list for e in elf.value):
                picked = _pick(elf, i, per_remote, "elfload")
                names = _names(picked, "elfload")
            else:
                names = _split(_names(elf, "elfload"), i, per_remote, elf)
        else:
            names = _names(node.get("elfload"), "elfload")
        out.append(_Relation(remote, node.at, elfload=names))
    return out


def _split(names: list[str], index: int, count: int, y: Y | None) -> list[str]:
    if count <= 1:
        return names
    if y is None or len(names) % count:
        where = y.at if y is not None else None
        msg = f"{len(names)} names cannot be shared out evenly among {count} remotes"
        raise where.error(msg) if where else DescriptionError(msg)
    chunk = len(names) // count
    return names[index * chunk : (index + 1) * chunk]


def _rpmsg_relations(rel: Y, role_key: str) -> list[_Relation]:
    out: list[_Relation] = []
    items = list(_relation_items(rel, role_key))
    count = len(items)
    for i, (node, peer) in enumerate(items):
        if node is rel:
            carve = _split(
                _names(rel.get("carveouts"), "carveouts"), i, count, rel.get("carveouts")
            )
            mbox_y = _pick(rel.get("mbox"), i, count, "mbox")
            native_y = _pick(rel.get("openamp-xlnx-native"), i, count, "openamp-xlnx-native")
        else:
            carve = _names(node.get("carveouts"), "carveouts")
            mbox_y = node.get("mbox")
            native_y = node.get("openamp-xlnx-native")
        mbox = _str(mbox_y, "mbox") if mbox_y is not None else None
        out.append(
            _Relation(
                peer,
                node.at,
                carveouts=carve,
                mbox=mbox,
                mbox_at=mbox_y.at if mbox_y is not None else None,
                native=_truthy(native_y),
            )
        )
    return out


def _relations(domain: Y, kind: str, role_key: str) -> list[_Relation]:
    d2d = domain.get("domain-to-domain")
    if d2d is None or not d2d.is_map:
        return []
    found: list[_Relation] = []
    for key, rel in d2d.value.items():
        if not rel.is_map:
            continue
        compat = rel.get("compatible")
        names = _names(compat, "compatible") if compat is not None else []
        if not any(n.startswith(kind) for n in names):
            continue
        if kind == _REMOTEPROC:
            if role_key == "remote":
                found += _remoteproc_relations(rel)
        else:
            found += _rpmsg_relations(rel, role_key)
        del key
    return found


def _cpus(domain: Y, name: str) -> tuple[str, int, bool]:
    cpus = _need(domain, "cpus", f"domain {name!r}")
    first = cpus.value[0] if cpus.is_list and cpus.value else cpus
    if not first.is_map:
        raise cpus.at.error(f"domain {name!r}: cpus must list maps with cluster and cpumask")
    cluster = _str(_need(first, "cluster", f"domain {name!r} cpus"), "cluster")
    mask_y = first.get("cpumask")
    mask = _int(mask_y, "cpumask") if mask_y is not None else 1
    mode = first.get("mode")
    lockstep = bool(mode is not None and mode.is_map and _truthy(mode.get("lockstep")))
    return cluster, mask, lockstep


def parse_domain(text: str, file: str = "<yaml>") -> DomainSpec:
    """Read domain YAML ``text`` (``file`` names it in messages)."""
    top = _load_yaml(text, file)
    if not top.is_map:
        raise top.at.error("a domain description is a map with a 'domains' key")
    domains = _need(top, "domains", "domain description")
    if not domains.is_map:
        raise domains.at.error("domains must be a map of domain name -> domain")

    carveouts = _definitions(top)
    top_reserved = _top_reserved(top)
    for name, c in top_reserved.items():
        if name in carveouts:
            raise c.at.error(f"carveout {name!r} is defined twice")
        carveouts[name] = c
    # Domain-level reserved-memory children (2022/2024 layouts) are carveouts too.
    for dom in domains.value.values():
        rm = dom.get("reserved-memory") if dom.is_map else None
        if rm is not None and rm.is_map:
            for key, value in rm.value.items():
                if value.is_map and value.get("start") is not None and key not in carveouts:
                    carveouts[key] = _carveout_from(key, value)

    hosts = []
    for dname, dom in domains.value.items():
        if not dom.is_map:
            raise dom.at.error(f"domain {dname!r} must be a map")
        if _relations(dom, _REMOTEPROC, "remote") or _relations(dom, _RPMSG, "remote"):
            hosts.append(dname)
    if len(hosts) != 1:
        raise domains.at.error(
            "expected exactly one host domain (one with a remoteproc-relation or an "
            f"rpmsg-relation naming a remote), found {len(hosts)}: {', '.join(hosts) or 'none'}"
        )
    host = hosts[0]
    host_dom = domains.value[host]
    host_cluster, host_mask, _ = _cpus(host_dom, host)

    rproc = {r.remote: r for r in _relations(host_dom, _REMOTEPROC, "remote")}
    rpmsg = {r.remote: r for r in _relations(host_dom, _RPMSG, "remote")}
    order = list(dict.fromkeys([*rproc, *rpmsg]))
    channels = []
    index = 0
    for remote in order:
        rdom = domains.get(remote)
        rel = rproc.get(remote) or rpmsg[remote]
        if rdom is None:
            raise rel.at.error(
                f"relation names remote domain {remote!r}, which is not under 'domains' "
                f"(domains: {', '.join(domains.value)})"
            )
        cluster, mask, lockstep = _cpus(rdom, remote)
        back = [r for r in _relations(rdom, _RPMSG, "host") if r.remote == host]
        msg = rpmsg.get(remote)
        if msg is not None and len(msg.carveouts) != 3:
            raise msg.at.error(
                f"rpmsg relation to {remote!r}: expected 3 carveouts (vring0, vring1, "
                f"buffer), got {len(msg.carveouts)}: {', '.join(msg.carveouts) or 'none'}"
            )
        elf = rproc[remote].elfload if remote in rproc else []
        channels.append(
            ChannelSpec(
                index=index if msg is not None else -1,
                host=host,
                remote=remote,
                remote_cluster=cluster,
                remote_cpumask=mask,
                lockstep=lockstep,
                elfload=tuple(elf),
                rpmsg=tuple(msg.carveouts) if msg is not None else (),
                host_mbox=msg.mbox if msg is not None else None,
                remote_mbox=back[0].mbox if back else None,
                host_mbox_at=msg.mbox_at if msg is not None else None,
                remote_mbox_at=back[0].mbox_at if back else None,
                native=msg.native if msg is not None else False,
                at=rel.at,
            )
        )
        if msg is not None:
            index += 1
    for ch in channels:
        for name in ch.rpmsg:
            if name not in carveouts and not any(c.node_name == name for c in carveouts.values()):
                raise ch.at.error(
                    f"rpmsg carveout {name!r} is not defined (known carveouts: "
                    f"{', '.join(carveouts) or 'none'})"
                )
    if top_reserved:
        layout = "2025"
    elif any(len(c.rpmsg) and _is_v2(host_dom) for c in channels) or _is_v2(host_dom):
        layout = "2024"
    else:
        layout = "2022"
    return DomainSpec(
        file=file,
        layout=layout,
        carveouts=carveouts,
        channels=tuple(channels),
        host=host,
        host_cluster=host_cluster,
        host_cpumask=host_mask,
    )


def _is_v2(domain: Y) -> bool:
    d2d = domain.get("domain-to-domain")
    if d2d is None or not d2d.is_map:
        return False
    for rel in d2d.value.values():
        if rel.is_map:
            compat = rel.get("compatible")
            if compat is not None and "openamp,remoteproc-v2" in _names(compat, "compatible"):
                return True
    return False


def load_domain(path: str | Path) -> DomainSpec:
    """Read the domain YAML at ``path``."""
    name = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise DescriptionError(f"cannot read: {exc.strerror}", file=name) from None
    except UnicodeDecodeError:
        raise DescriptionError("not a text file", file=name) from None
    return parse_domain(text, name)

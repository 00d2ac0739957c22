"""Capture files: a link's events (:mod:`openamp.rpmsg.events`) as pcapng or JSON Lines.

A :class:`Capture` is the recorder: each link gets a hook (:meth:`Capture.link`) to hand
to a device or machine as ``capture=``; the hook stamps every event with the time
(nanoseconds since the epoch) and keeps it, and the capture writes what it kept in
batches (every :data:`FLUSH_EVERY` events and at :meth:`Capture.close`), so the link
pays for a list append per event while it runs.

The pcapng files have one interface per link, link-layer type :data:`LINKTYPE_OPENAMP`
(``LINKTYPE_USER0``), nanosecond timestamps and direction flags; each packet is one
*capture record*: the 28-byte head :data:`RECORD` and a body that depends on the kind.
A message's body is the rpmsg header as it was in the buffer (16 bytes) and its
payload.  The record layout is defined here once; the Wireshark dissector
(``tools/wireshark/openamp.lua``, :func:`dissector_path`) reads the same bytes, and a
test runs ``tshark`` over our files to prove the two agree.  JSON Lines files hold the
same events, one object per line (payloads in hex).

Each message record also carries an *application* hint (:data:`APPS`), so that a
decoder knows which protocol the payload speaks: the recorder learns the service name
of each address from the name-service records it sees, and maps names to protocols
(:data:`DEFAULT_SERVICES`; the echo, matrix and proxy demos share one name, so a
command says which one it runs).
"""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from .. import __version__
from ..errors import MessageError, UsageError
from ..rpmsg.events import (
    ConfigEvent,
    EndpointEvent,
    ErrorEvent,
    Event,
    EventHook,
    FeaturesEvent,
    KickEvent,
    LinkEvent,
    MessageEvent,
    MissedEvent,
    NsEvent,
    StatusEvent,
    VringLocation,
)
from ..rpmsg.wire import RPMSG_ADDR_ANY, RPMSG_HDR, RPMSG_HDR_SIZE, RPMSG_NS_EPT_ADDR
from .pcapng import (
    FLAG_INBOUND,
    FLAG_OUTBOUND,
    LINKTYPE_USER0,
    PcapngReader,
    PcapngWriter,
)

__all__ = [
    "APPS",
    "DEFAULT_SERVICES",
    "LINKTYPE_OPENAMP",
    "RECORD",
    "Capture",
    "CaptureData",
    "CapturedEvent",
    "decode_record",
    "dissector_path",
    "encode_record",
    "event_from_json",
    "event_to_json",
    "open_capture",
    "read_capture",
]

LINKTYPE_OPENAMP = LINKTYPE_USER0
"""The link-layer type of our pcapng interfaces (``LINKTYPE_USER0`` = 147)."""

RECORD = struct.Struct("<BBBBHHiIQI")
"""A capture record's head: version, kind, direction, app, head length, vring, slot,
buffer length, buffer address, aux (kind-specific: status byte, notify id, count)."""
RECORD_VERSION = 1
MESSAGE_HEAD = struct.Struct(RECORD.format + RPMSG_HDR.format[1:])
"""A message record's head and its rpmsg header in one (the record is head + header +
payload; derived from the two definitions, not a third)."""

FEATURES_BODY = struct.Struct("<QQ")
"""features record: device features, driver features."""
ENDPOINT_BODY = struct.Struct("<B3xII")
"""endpoint record: action, our address, the peer's; the name follows (UTF-8)."""
LINK_BODY = struct.Struct("<BB2xQII")
"""link record: role, vring count, features, rx size, tx size; then the vrings."""
VRING_BODY = struct.Struct("<IQIII")
"""one vring of a link record: index, address, num, align, notify id."""

KINDS = {
    "message": 1,
    "status": 2,
    "features": 3,
    "config": 4,
    "kick": 5,
    "endpoint": 6,
    "error": 7,
    "link": 8,
    "missed": 9,
}
"""Record kind codes.  ``ns`` events are not written to pcapng: the message they were
decoded from is."""
KIND_NAMES = {v: k for k, v in KINDS.items()}

APPS = {"": 0, "ns": 1, "echo": 2, "matrix": 3, "proxy": 4, "rpc": 5, "sample": 6}
"""Application hints: which protocol a message's payload speaks (0: unknown)."""
APP_NAMES = {v: k for k, v in APPS.items()}

ROLES = {"driver": 0, "device": 1, "tap": 2}
ROLE_NAMES = {v: k for k, v in ROLES.items()}
ENDPOINT_ACTIONS = {"announce": 0, "bind": 1, "unbind": 2, "destroy": 3}
ENDPOINT_ACTION_NAMES = {v: k for k, v in ENDPOINT_ACTIONS.items()}

DIR_TX = 1
DIR_RX = 2
DIR_H2R = 4
"""Direction bit: the message went from the host (driver) to the remote (device)."""
DIR_KNOWN = 8
"""Direction bit: the recorder knew its role, so :data:`DIR_H2R` means something."""

DEMO_CHANNEL = "rpmsg-openamp-demo-channel"
"""The service name the echo, matrix and proxy demos share."""

DEFAULT_SERVICES: dict[str, str] = {
    DEMO_CHANNEL: "echo",
    "rpmsg-rpc": "rpc",
    "rpmsg-client-sample": "sample",
}
"""Service name -> the protocol its messages speak, unless told otherwise."""

FLUSH_EVERY = 4096
"""Events kept before a capture writes them out."""


def dissector_path() -> Path:
    """The Wireshark Lua dissector shipped in the package (``tools/wireshark/openamp.lua``)."""
    return Path(__file__).resolve().parent / "wireshark" / "openamp.lua"


# -- one record: event <-> bytes -------------------------------------------------------


def _h2r(direction: str, role: str | None) -> int:
    if role is None:
        return 0
    tx = direction == "tx"
    return DIR_KNOWN | (DIR_H2R if tx == (role != "device") else 0)


def encode_record(event: Event, app: str = "", role: str | None = None) -> bytes | None:
    """The capture record of ``event`` (None for an ``ns`` event, whose message is
    recorded instead).  ``role`` is the recording side's (``driver``, ``device``,
    ``tap``), known after its :class:`LinkEvent`; it decides the host-to-remote bit."""
    kind = type(event)
    head = RECORD.pack
    if kind is MessageEvent:
        assert isinstance(event, MessageEvent)
        direction, vring, buffer, slot, buflen, src, dst, length, flags, payload = event
        rx = direction == "rx"
        d = (DIR_RX if rx else DIR_TX) | _h2r(direction, role)
        # the header as it lay in the buffer: the receiver wrote its index into reserved
        return (
            MESSAGE_HEAD.pack(
                RECORD_VERSION,
                1,
                d,
                APPS.get(app, 0),
                RECORD.size,
                vring & 0xFFFF,
                slot,
                buflen,
                buffer,
                0,
                src,
                dst,
                slot & 0xFFFFFFFF if rx else 0,
                length & 0xFFFF,
                flags,
            )
            + payload
        )
    if kind is NsEvent:
        return None
    if isinstance(event, StatusEvent):
        d = DIR_TX if event.action == "write" else DIR_RX
        return head(RECORD_VERSION, 2, d, 0, RECORD.size, 0xFFFF, -1, 0, 0, event.status)
    if isinstance(event, FeaturesEvent):
        d = DIR_TX if event.action == "write" else DIR_RX
        body = FEATURES_BODY.pack(event.device_features, event.driver_features)
        return head(RECORD_VERSION, 3, d, 0, RECORD.size, 0xFFFF, -1, 0, 0, 0) + body
    if isinstance(event, ConfigEvent):
        return head(RECORD_VERSION, 4, DIR_RX, 0, RECORD.size, 0xFFFF, -1, 0, 0, 0) + bytes(
            event.config
        )
    if isinstance(event, KickEvent):
        return head(
            RECORD_VERSION,
            5,
            DIR_TX,
            0,
            RECORD.size,
            event.vring & 0xFFFF,
            -1,
            0,
            0,
            event.notifyid,
        )
    if isinstance(event, EndpointEvent):
        body = ENDPOINT_BODY.pack(ENDPOINT_ACTIONS.get(event.action, 255), event.addr, event.dest)
        return (
            head(RECORD_VERSION, 6, 0, 0, RECORD.size, 0xFFFF, -1, 0, 0, 0)
            + body
            + event.name.encode()
        )
    if isinstance(event, ErrorEvent):
        text = f"{event.error}\0{event.message}".encode()
        return head(RECORD_VERSION, 7, DIR_RX, 0, RECORD.size, 0xFFFF, -1, 0, 0, 0) + text
    if isinstance(event, LinkEvent):
        body = LINK_BODY.pack(
            ROLES.get(event.role, 255),
            len(event.vrings),
            event.features,
            event.rx_size,
            event.tx_size,
        )
        body += b"".join(VRING_BODY.pack(*v) for v in event.vrings)
        return head(RECORD_VERSION, 8, 0, 0, RECORD.size, 0xFFFF, -1, 0, 0, 0) + body
    if isinstance(event, MissedEvent):
        return (
            head(RECORD_VERSION, 9, 0, 0, RECORD.size, event.vring & 0xFFFF, -1, 0, 0, event.missed)
            + event.reason.encode()
        )
    raise UsageError(f"cannot record {event!r}")


@dataclass(frozen=True)
class Decoded:
    """A record read back: the event, its application hint and host-to-remote bit."""

    event: Event
    app: str = ""
    h2r: bool | None = None
    """True: host -> remote; False: remote -> host; None: the recorder did not know."""


def _vring(v: int) -> int:
    return -1 if v == 0xFFFF else v


def decode_record(data: bytes) -> Decoded:
    """Read a capture record; :class:`MessageError` if it is not one we can read."""
    if len(data) < RECORD.size:
        raise MessageError(f"a capture record of {len(data)} bytes is shorter than its head")
    version, kind, d, app, head_len, vring, slot, buflen, buffer, aux = RECORD.unpack_from(data)
    if version != RECORD_VERSION or not RECORD.size <= head_len <= len(data):
        raise MessageError(f"capture record version {version}, head {head_len}: not ours")
    body = data[head_len:]
    h2r = bool(d & DIR_H2R) if d & DIR_KNOWN else None
    direction = "rx" if d & DIR_RX else "tx"
    name = KIND_NAMES.get(kind)
    try:
        if name == "message":
            src, dst, _reserved, length, flags = RPMSG_HDR.unpack_from(body)
            payload = body[RPMSG_HDR_SIZE:]
            ev: Event = MessageEvent(
                direction, _vring(vring), buffer, slot, buflen, src, dst, length, flags, payload
            )
            return Decoded(ev, APP_NAMES.get(app, ""), h2r)
        if name == "status":
            return Decoded(StatusEvent(aux, "write" if d & DIR_TX else "seen"))
        if name == "features":
            dev, drv = FEATURES_BODY.unpack_from(body)
            return Decoded(FeaturesEvent(dev, drv, "write" if d & DIR_TX else "seen"))
        if name == "config":
            return Decoded(ConfigEvent(bytes(body)))
        if name == "kick":
            return Decoded(KickEvent(_vring(vring), aux))
        if name == "endpoint":
            action, addr, dest = ENDPOINT_BODY.unpack_from(body)
            text = body[ENDPOINT_BODY.size :].decode(errors="replace")
            return Decoded(EndpointEvent(ENDPOINT_ACTION_NAMES.get(action, "?"), text, addr, dest))
        if name == "error":
            error, _, message = body.decode(errors="replace").partition("\0")
            return Decoded(ErrorEvent(error, message))
        if name == "link":
            role, count, features, rx, tx = LINK_BODY.unpack_from(body)
            vrings = tuple(
                VringLocation(*VRING_BODY.unpack_from(body, LINK_BODY.size + VRING_BODY.size * i))
                for i in range(count)
            )
            return Decoded(LinkEvent(ROLE_NAMES.get(role, "?"), features, rx, tx, vrings))
        if name == "missed":
            return Decoded(MissedEvent(_vring(vring), aux, body.decode(errors="replace")))
    except struct.error:
        raise MessageError(f"a {name} record of {len(data)} bytes is cut short") from None
    raise MessageError(f"unknown capture record kind {kind}")


# -- JSON ------------------------------------------------------------------------------


def event_to_json(event: Event) -> dict[str, Any]:
    """``event`` as a JSON-ready dict: ``{"kind": ..., fields...}``; bytes as hex."""
    out: dict[str, Any] = {"kind": event.kind}
    for key, value in event._asdict().items():
        if isinstance(value, bytes):
            value = value.hex()
        elif key == "vrings":
            value = [v._asdict() for v in value]
        out[key] = value
    return out


def event_from_json(obj: Mapping[str, Any]) -> Event:
    """The event :func:`event_to_json` wrote; :class:`MessageError` for anything else."""
    from ..rpmsg.events import EVENT_TYPES

    cls = EVENT_TYPES.get(str(obj.get("kind")))
    if cls is None:
        raise MessageError(f"unknown event kind {obj.get('kind')!r}")
    try:
        values = {}
        for name in cls._fields:  # type: ignore[attr-defined]
            value = obj[name]
            if name in ("payload", "config"):
                value = bytes.fromhex(value)
            elif name == "vrings":
                value = tuple(VringLocation(**v) for v in value)
            values[name] = value
        return cast(Event, cls(**values))
    except (KeyError, TypeError, ValueError) as exc:
        raise MessageError(f"a {obj.get('kind')} event without its fields: {exc}") from None


# -- recording -------------------------------------------------------------------------


@dataclass
class _Link:
    index: int
    name: str
    description: str
    services: dict[str, str]
    role: str | None = None
    names: dict[int, str] = field(default_factory=dict)
    """Address -> service name, learnt from name-service records."""


class _Sink:
    """Where a capture's records go (pcapng or JSON Lines)."""

    def add_link(self, link: _Link) -> None:
        raise NotImplementedError

    def write(self, batch: list[tuple[int, _Link, Event, str]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _PcapngSink(_Sink):
    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._w = PcapngWriter(f, application=f"pyopenamp {__version__}")

    def add_link(self, link: _Link) -> None:
        self._w.add_interface(LINKTYPE_OPENAMP, name=link.name, description=link.description)

    def write(self, batch: list[tuple[int, _Link, Event, str]]) -> None:
        block = self._w.packet_block
        out = []
        for ts, link, ev, app in batch:
            data = encode_record(ev, app, link.role)
            if data is None:
                continue
            flags = None
            if type(ev) is MessageEvent:
                flags = FLAG_INBOUND if ev.direction == "rx" else FLAG_OUTBOUND
            out.append(block(link.index, ts, data, flags))
        self._w.write_blocks(b"".join(out))

    def close(self) -> None:
        self._f.close()


class _JsonlSink(_Sink):
    def __init__(self, f: IO[str]) -> None:
        self._f = f
        f.write(json.dumps({"format": "openamp-capture", "version": 1, "tool": __version__}))
        f.write("\n")

    def add_link(self, link: _Link) -> None:
        line = {"kind": "interface", "link": link.index, "name": link.name}
        self._f.write(json.dumps(line | {"description": link.description}) + "\n")

    def write(self, batch: list[tuple[int, _Link, Event, str]]) -> None:
        lines = []
        for ts, link, ev, app in batch:
            obj = {"t": ts, "link": link.index} | event_to_json(ev)
            if app:
                obj["app"] = app
            lines.append(json.dumps(obj))
        if lines:
            self._f.write("\n".join(lines) + "\n")

    def close(self) -> None:
        self._f.close()


class Capture:
    """Record the events of one or more links into a capture file (see the module doc).

    Make one with :func:`open_capture`.  ``services`` maps service names to the
    protocol their payloads speak (``echo``, ``matrix``, ``proxy``, ``rpc``,
    ``sample``), on top of :data:`DEFAULT_SERVICES`.  The capture itself is the hook of
    a link called ``link0``; :meth:`link` makes a hook per link (one pcapng interface
    each).  Use it from one thread at a time, and :meth:`close` it (or ``with``) to
    write what is kept.
    """

    def __init__(
        self, sink: _Sink, *, path: str = "", services: Mapping[str, str] | None = None
    ) -> None:
        self.path = path
        self.services = dict(DEFAULT_SERVICES)
        self.services.update(services or {})
        for name, app in self.services.items():
            if app not in APPS:
                raise UsageError(f"service {name!r}: unknown protocol {app!r} ({', '.join(APPS)})")
        self.count = 0
        """Events recorded so far."""
        self._sink = sink
        self._links: list[_Link] = []
        self._pending: list[tuple[int, int, Event]] = []
        self._default: EventHook | None = None
        self.closed = False

    def link(self, name: str = "", description: str = "", *, app: str | None = None) -> EventHook:
        """A hook that records one link's events (a new pcapng interface).

        ``name`` (default ``linkN``) and ``description`` label the interface; ``app``
        says which protocol this link's demo channel speaks (see :func:`open_capture`)."""
        if self.closed:
            raise UsageError("the capture is closed")
        services = dict(self.services)
        if app:
            if app not in APPS:
                raise UsageError(f"unknown protocol {app!r} ({', '.join(a for a in APPS if a)})")
            services[DEMO_CHANNEL] = app
        link = _Link(len(self._links), name or f"link{len(self._links)}", description, services)
        link.description = description or f"pyopenamp rpmsg link {link.name!r}"
        self._links.append(link)
        self._sink.add_link(link)
        pending = self._pending
        append = pending.append
        now = time.time_ns
        index = link.index
        flush = self.flush

        def record(event: Event) -> None:
            append((now(), index, event))
            if len(pending) >= FLUSH_EVERY:
                flush()

        return record

    def __call__(self, event: Event) -> None:
        """Record ``event`` on the default link (``link0``)."""
        if self._default is None:
            self._default = self.link("link0")
        self._default(event)

    def flush(self) -> None:
        """Write the events kept so far."""
        pending = self._pending
        if not pending:
            return
        batch = []
        links = self._links
        for ts, index, ev in pending:
            link = links[index]
            batch.append((ts, link, ev, self._app_of(link, ev)))
        self.count += len(pending)
        pending.clear()
        self._sink.write(batch)

    def _app_of(self, link: _Link, ev: Event) -> str:
        """The application hint of ``ev`` (and learn from it): see the module doc."""
        kind = type(ev)
        if kind is MessageEvent:
            assert isinstance(ev, MessageEvent)
            if ev.dst == RPMSG_NS_EPT_ADDR:
                ns = ev.ns()
                if ns is not None:
                    link.names[ns.addr] = ns.name
                return "ns"
            name = link.names.get(ev.dst) or link.names.get(ev.src)
            return link.services.get(name, "") if name else ""
        if kind is LinkEvent:
            assert isinstance(ev, LinkEvent)
            link.role = ev.role
        elif kind is EndpointEvent:
            assert isinstance(ev, EndpointEvent)
            if ev.name and ev.action in ("announce", "bind"):
                link.names[ev.addr] = ev.name
                if ev.dest != RPMSG_ADDR_ANY:
                    link.names[ev.dest] = ev.name
        return ""

    def close(self) -> None:
        """Write what is kept and close the file.  Idempotent."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        self._sink.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_capture(
    path: str | os.PathLike[str],
    *,
    services: Mapping[str, str] | None = None,
    app: str | None = None,
) -> Capture:
    """A :class:`Capture` writing to ``path``: JSON Lines if it ends in ``.jsonl``,
    pcapng otherwise.  ``app`` says which protocol the demo channel
    (``rpmsg-openamp-demo-channel``) speaks, for the echo, matrix and proxy demos."""
    p = os.fspath(path)
    merged = dict(services or {})
    if app:
        merged.setdefault(DEMO_CHANNEL, app)
    sink: _Sink
    if p.endswith(".jsonl"):
        sink = _JsonlSink(open(p, "w", encoding="utf-8"))  # noqa: SIM115 - closed by the sink
    else:
        sink = _PcapngSink(open(p, "wb"))  # noqa: SIM115 - closed by the sink
    return Capture(sink, path=p, services=merged)


# -- reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CapturedEvent:
    """One event of a capture file as read back."""

    timestamp_ns: int
    link: int
    event: Event
    app: str = ""
    h2r: bool | None = None


@dataclass
class CaptureData:
    """A capture file read back: its links (name, description) and its events in order."""

    path: str
    format: str
    """``"pcapng"`` or ``"jsonl"``."""
    links: list[tuple[str, str]] = field(default_factory=list)
    events: list[CapturedEvent] = field(default_factory=list)
    skipped: int = 0
    """Packets that were not ours (another link-layer type) or could not be read."""

    def messages(self, link: int | None = None) -> Iterator[CapturedEvent]:
        """The message events (of one link, or all)."""
        for ce in self.events:
            if type(ce.event) is MessageEvent and (link is None or ce.link == link):
                yield ce


CAPTURE_LIMIT = 1024 * 1024 * 1024
"""The largest capture file :func:`read_capture` reads (1 GiB)."""


def read_capture(path: str | os.PathLike[str]) -> CaptureData:
    """Read a capture file written by :class:`Capture` (pcapng or JSON Lines).

    Raises :class:`UsageError` for what is not a regular file (a device, a FIFO, a
    directory), is empty or larger than :data:`CAPTURE_LIMIT`, and
    :class:`~openamp.errors.MessageError` / ``PcapngError`` for a file that is not a
    capture or is broken.
    """
    from .._files import read_regular_file

    p = os.fspath(path)
    data = read_regular_file(p, limit=CAPTURE_LIMIT, what="capture")
    if not data:
        raise UsageError(f"{p}: the file is empty, not a capture")
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        return _read_pcapng(p, data)
    return _read_jsonl(p, data.decode("utf-8", errors="replace"))


def _read_pcapng(path: str, data: bytes) -> CaptureData:
    reader = PcapngReader(data)
    out = CaptureData(path, "pcapng")
    for packet in reader:
        iface = reader.interfaces[packet.interface]
        while len(out.links) < len(reader.interfaces):
            i = reader.interfaces[len(out.links)]
            out.links.append((i.name, i.description))
        if iface.linktype != LINKTYPE_OPENAMP:
            out.skipped += 1
            continue
        try:
            rec = decode_record(packet.data)
        except MessageError:
            out.skipped += 1
            continue
        out.events.append(
            CapturedEvent(packet.timestamp_ns, packet.interface, rec.event, rec.app, rec.h2r)
        )
    for i in reader.interfaces[len(out.links) :]:
        out.links.append((i.name, i.description))
    return out


def _read_jsonl(path: str, text: str) -> CaptureData:
    out = CaptureData(path, "jsonl")
    roles: dict[int, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise MessageError(f"{path}:{n}: not JSON: {line[:60]!r}") from None
        if not isinstance(obj, dict):
            raise MessageError(f"{path}:{n}: not a JSON object")
        if n == 1:
            if obj.get("format") != "openamp-capture":
                raise MessageError(f"{path}: not a pyopenamp capture (no format line)")
            continue
        if obj.get("kind") == "interface":
            out.links.append((str(obj.get("name", "")), str(obj.get("description", ""))))
            continue
        ev = event_from_json(obj)
        link = int(obj.get("link", 0))
        if type(ev) is LinkEvent:
            roles[link] = ev.role
        h2r = None
        if type(ev) is MessageEvent and link in roles:
            h2r = bool(_h2r(ev.direction, roles[link]) & DIR_H2R)
        out.events.append(CapturedEvent(int(obj.get("t", 0)), link, ev, obj.get("app", ""), h2r))
    return out

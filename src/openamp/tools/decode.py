"""Readable decodes of rpmsg messages: the name service and the demos' payloads.

:func:`decode_payload` turns a message's payload into a :class:`Decoded`: the protocol
it speaks, a one-line summary and its fields, named as the Wireshark dissector names
them (``rpmsg.ns.name``, ``echo.num``, ``proxy.call``...), so that a test can compare
what ``tshark`` shows with what we show.  Which protocol a payload speaks comes from
the capture's application hint; without one a few safe guesses are made (the same in
the dissector): a 40-byte message to 0x35 is a name-service record, the shutdown word
is the echo demo's, a ``{u64 num, u64 size, size bytes}`` payload is an echo, 296 and
148 bytes are the matrix demo's request and product, a 16-byte syscall head whose
length matches is the proxy's, printable text is the client sample's.

Every payload is untrusted: a decoder that does not fit says so in the summary and
gives no fields; nothing here raises for bad bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..rpmsg.events import (
    ConfigEvent,
    EndpointEvent,
    ErrorEvent,
    Event,
    FeaturesEvent,
    KickEvent,
    LinkEvent,
    MessageEvent,
    MissedEvent,
    StatusEvent,
    describe_features,
    describe_status,
)
from ..rpmsg.wire import (
    RPMSG_ADDR_ANY,
    RPMSG_NS_EPT_ADDR,
    RPMSG_NS_MSG,
    RPMSG_NS_MSG_SIZE,
    SHUTDOWN_MSG,
    decode_name,
)
from ..services.echo import PING_HEAD
from ..services.matrix import MATRIX, MATRIX_BYTES, MAX_SIZE, REQUEST_BYTES
from ..services.proxy import CALL_NAMES, SYSCALL
from ..services.rpc import (
    CLOSE_ID,
    INPUT_ID,
    OPEN_ID,
    READ_ID,
    RPC_ANSWER,
    RPC_ID,
    TERM_ID,
    WRITE_ID,
)

__all__ = ["Decoded", "decode_payload", "describe_event", "format_addr", "guess_app"]

U32 = struct.Struct("<I")

RPC_CALLS = {
    OPEN_ID: "open",
    CLOSE_ID: "close",
    WRITE_ID: "write",
    READ_ID: "read",
    5: "ack",
    TERM_ID: "terminate",
    INPUT_ID: "input",
}
"""The ids of the ``linux_rpc_demo`` file service."""


@dataclass
class Decoded:
    """What a payload says: its protocol, a one-line summary, its named fields."""

    protocol: str
    summary: str
    fields: list[tuple[str, object]] = field(default_factory=list)

    def get(self, name: str) -> object:
        """The first value of field ``name`` (None if absent)."""
        for key, value in self.fields:
            if key == name:
                return value
        return None

    def all(self, name: str) -> list[object]:
        """Every value of field ``name``, in order."""
        return [value for key, value in self.fields if key == name]


def format_addr(addr: int) -> str:
    """``0x400``, or ``ANY`` for 0xFFFFFFFF."""
    return "ANY" if addr == RPMSG_ADDR_ANY else f"{addr:#x}"


def _text(data: bytes, limit: int = 40) -> str:
    s = data[:limit].decode("utf-8", errors="replace")
    shown = "".join(c if c.isprintable() else "." for c in s)
    return repr(shown) + ("..." if len(data) > limit else "")


def _printable(data: bytes) -> bool:
    """Non-empty ASCII text (what the dissector also calls printable)."""
    return bool(data) and all(0x20 <= b < 0x7F or b in (9, 10, 13) for b in data)


def guess_app(payload: bytes, dst: int) -> str:
    """The protocol a payload without an application hint most likely speaks ('' if none
    fits); the dissector makes the same guesses."""
    n = len(payload)
    if dst == RPMSG_NS_EPT_ADDR and n == RPMSG_NS_MSG_SIZE:
        return "ns"
    if n >= 4 and U32.unpack_from(payload)[0] == SHUTDOWN_MSG:
        return "echo"
    if n >= PING_HEAD.size and PING_HEAD.unpack_from(payload)[1] == n - PING_HEAD.size:
        return "echo"
    if n in (REQUEST_BYTES, MATRIX_BYTES):
        return "matrix"
    if n >= SYSCALL.size:
        call, _a, _b, length = SYSCALL.unpack_from(payload)
        if call in CALL_NAMES and length == n - SYSCALL.size:
            return "proxy"
    if _printable(payload):
        return "sample"
    return ""


def decode_payload(
    payload: bytes, app: str = "", *, dst: int = 0, h2r: bool | None = None
) -> Decoded:
    """Decode a message's payload as ``app`` (guessed when empty; see the module doc).

    ``h2r`` says whether the message went from the host to the remote (None: not
    known); it tells requests from answers (the host serves the proxy and RPC demos).
    """
    if not app:
        app = guess_app(payload, dst)
    decoder = _DECODERS.get(app)
    if decoder is None:
        return Decoded("", f"{len(payload)} bytes {payload[:16].hex()}")
    return decoder(payload, h2r)


def _ns(p: bytes, h2r: bool | None) -> Decoded:
    if len(p) != RPMSG_NS_MSG_SIZE:
        return Decoded("ns", f"malformed name-service message ({len(p)} bytes, must be 40)")
    raw, addr, flags = RPMSG_NS_MSG.unpack(p)
    name = decode_name(raw)
    what = "destroy" if flags & 1 else "create"
    return Decoded(
        "ns",
        f"NS {what} {name!r} at {format_addr(addr)}",
        [("rpmsg.ns.name", name), ("rpmsg.ns.addr", addr), ("rpmsg.ns.flags", flags)],
    )


def _echo(p: bytes, h2r: bool | None) -> Decoded:
    n = len(p)
    if n >= 4 and U32.unpack_from(p)[0] == SHUTDOWN_MSG:
        return Decoded("echo", "shutdown message (0xEF56A55A)", [("rpmsg_echo.shutdown", True)])
    if n >= PING_HEAD.size:
        num, size = PING_HEAD.unpack_from(p)
        if size == n - PING_HEAD.size:
            intact = p[PING_HEAD.size :] == b"\xa5" * size
            return Decoded(
                "echo",
                f"echo #{num}, {size} data bytes" + ("" if intact else " (not all 0xA5)"),
                [("rpmsg_echo.num", num), ("rpmsg_echo.size", size), ("rpmsg_echo.intact", intact)],
            )
    return Decoded("echo", f"{n} bytes {_text(p)}")


def _matrix(p: bytes, h2r: bool | None) -> Decoded:
    n = len(p)
    if n == REQUEST_BYTES:
        kind, count = "request", 2
    elif n == MATRIX_BYTES:
        kind, count = "product", 1
    else:
        return Decoded("matrix", f"{n} bytes: not a matrix request (296) or product (148)")
    fields: list[tuple[str, object]] = [("rpmsg_matrix.kind", kind)]
    sizes = []
    for i in range(count):
        size, *flat = MATRIX.unpack_from(p, i * MATRIX_BYTES)
        sizes.append(size)
        fields.append(("rpmsg_matrix.size", size))
        for r in range(MAX_SIZE):
            row = flat[r * MAX_SIZE : (r + 1) * MAX_SIZE]
            fields.append(("rpmsg_matrix.row", " ".join(str(v) for v in row)))
    shape = ", ".join(f"{s}x{s}" for s in sizes)
    return Decoded("matrix", f"matrix {kind} ({shape})", fields)


def _proxy(p: bytes, h2r: bool | None) -> Decoded:
    if len(p) < SYSCALL.size:
        return Decoded("proxy", f"{len(p)} bytes: shorter than a syscall record (16)")
    call, a, b, length = SYSCALL.unpack_from(p)
    data = p[SYSCALL.size : SYSCALL.size + length]
    name = CALL_NAMES.get(call, f"id {call}")
    kind = "request" if h2r is not True else "answer"
    fields: list[tuple[str, object]] = [
        ("rpmsg_proxy.kind", kind),
        ("rpmsg_proxy.id", call),
        ("rpmsg_proxy.call", name),
        ("rpmsg_proxy.int1", a),
        ("rpmsg_proxy.int2", b),
        ("rpmsg_proxy.data_len", length),
    ]
    text = f" {_text(data)}" if data else ""
    if len(data) != length:
        text += f" (claims {length} data bytes, has {len(data)})"
    return Decoded("proxy", f"proxy {name} {kind} ({a}, {b}){text}", fields)


def _rpc(p: bytes, h2r: bool | None) -> Decoded:
    if len(p) < RPC_ID.size:
        return Decoded("rpc", f"{len(p)} bytes: shorter than an RPC id")
    # the host serves the demo's file service: host -> remote are answers
    answer = h2r is True
    (rpc_id,) = RPC_ID.unpack_from(p)
    name = RPC_CALLS.get(rpc_id, f"id {rpc_id}")
    fields: list[tuple[str, object]] = [
        ("rpmsg_rpc.kind", "answer" if answer else "request"),
        ("rpmsg_rpc.id", rpc_id),
        ("rpmsg_rpc.call", name),
    ]
    if answer and len(p) >= RPC_ANSWER.size:
        status = RPC_ANSWER.unpack_from(p)[1]
        fields.append(("rpmsg_rpc.status", status))
        fields.append(("rpmsg_rpc.length", len(p) - RPC_ANSWER.size))
        return Decoded("rpc", f"rpc {name} answer, status {status}", fields)
    fields.append(("rpmsg_rpc.length", len(p) - RPC_ID.size))
    kind = "answer (cut short)" if answer else "request"
    return Decoded("rpc", f"rpc {name} {kind}, {len(p) - RPC_ID.size} bytes", fields)


def _sample(p: bytes, h2r: bool | None) -> Decoded:
    text = p.decode("utf-8", errors="replace")
    return Decoded("sample", f"sample {_text(p)}", [("rpmsg_sample.text", text)])


_DECODERS = {
    "ns": _ns,
    "echo": _echo,
    "matrix": _matrix,
    "proxy": _proxy,
    "rpc": _rpc,
    "sample": _sample,
}


def describe_event(event: Event, app: str = "", h2r: bool | None = None) -> str:
    """One line for any event (a message decoded with :func:`decode_payload`)."""
    if isinstance(event, MessageEvent):
        arrow = ""
        if h2r is not None:
            arrow = " host->remote" if h2r else " remote->host"
        d = decode_payload(event.payload, app, dst=event.dst, h2r=h2r)
        return (
            f"{event.direction}{arrow} {format_addr(event.src)} -> {format_addr(event.dst)} "
            f"len {event.length}: {d.summary}"
        )
    if isinstance(event, StatusEvent):
        verb = "wrote" if event.action == "write" else "saw"
        return f"status: {verb} {describe_status(event.status)}"
    if isinstance(event, FeaturesEvent):
        return (
            f"features: device offers {describe_features(event.device_features)}, "
            f"driver accepted {describe_features(event.driver_features)}"
        )
    if isinstance(event, KickEvent):
        return f"kick: vring {event.vring} (notify id {event.notifyid})"
    if isinstance(event, EndpointEvent):
        return (
            f"endpoint {event.action}: {event.name!r} at {format_addr(event.addr)}, "
            f"peer {format_addr(event.dest)}"
        )
    if isinstance(event, LinkEvent):
        rings = ", ".join(f"vring{v.vring} at {v.pa:#x} ({v.num} entries)" for v in event.vrings)
        return (
            f"link up: {event.role} side, features {describe_features(event.features)}, "
            f"buffers rx {event.rx_size} tx {event.tx_size}; {rings}"
        )
    if isinstance(event, ConfigEvent):
        return f"config space: {event.config.hex()}"
    if isinstance(event, ErrorEvent):
        return f"error: {event.error}: {event.message}"
    if isinstance(event, MissedEvent):
        return f"MISSED {event.missed} on vring {event.vring}: {event.reason}"
    what = "destroy" if event.destroy else "create"
    return f"ns {event.direction}: {what} {event.name!r} at {format_addr(event.addr)}"

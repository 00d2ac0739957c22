"""RPC over rpmsg: the C library's ``rpmsg_rpc_client_server`` and the ``linux_rpc_demo``
file service on top of it.

Theory of operation
-------------------
Two layers, both role-neutral (either side of an rpmsg device may serve):

* **Generic RPC** (C ``rpmsg_rpc_client.c`` / ``rpmsg_rpc_server.c``), on the service
  ``rpmsg-rpc``.  A request is ``u32 id`` + params (at most 488 bytes in all); an answer
  is ``u32 id, i32 status`` + result.  There is no sequence number: a client matches an
  answer to its call by the id alone, so it has one call per id in flight.
  :class:`RpcServer` maps ids to handlers ``handler(params) -> (status, result)``
  (or ``None``: no answer); :class:`RpcClient` sends requests and waits for answers
  (:meth:`RpcClient.call`) or hands them to per-id callbacks, as the C client does.
* **The file service** of the C ``linux_rpc_demod`` (server, virtio driver) and
  ``linux_rpc_demo`` (client, virtio device): ids OPEN=1 CLOSE=2 WRITE=3 READ=4 ACK=5
  TERM=6 INPUT=7 with the demo's C structs, byte for byte.  :class:`RpcFileServer`
  serves the files under one root directory plus stdin/stdout; :class:`RpcFileClient`
  calls it; :func:`run_file_demo` is the C client's sequence.

Quirks of the C peers, and what we do (``docs/services/rpc.md`` has the reasons):

1. The C server sends ``4 + result_size`` bytes, so the last 4 result bytes never leave
   it (a C client reads stale shared memory there: for open, write and close the whole
   result).  No C client *depends* on that, so our server sends the full answer
   (``8 + result_size``); ``c_truncation=True`` reproduces the C length exactly.  Our
   client recognises a truncated answer (4 bytes short, status OK) and never returns the
   missing bytes: :class:`RpcResultLostError`, or, for read/input, the intact part.
2. The C server dispatches on the first byte of the id.  We dispatch on the full u32
   (the C client's ids are all below 256, so it sees no difference).
3. For an unknown id the C server answers ``(id, -1)`` cut to 4 bytes, losing the
   status.  We answer 8 bytes; our client takes a 4-byte answer as that C answer.
4. A request under 4 or over 488 bytes makes the C server abort (its callback returns
   -EINVAL and the assert is live).  We drop the former (there is no id to answer) and
   answer the latter with :data:`RPC_BAD_REQUEST`, logging both, and keep serving.
5. ``linux_rpc_demo`` writes the 12 bytes ``"remote.file\\0"`` into ``char
   filename[10]`` and the 2 padding bytes after it; ``linux_rpc_demod`` passes that
   field to ``open()`` as a C string.  The name field is therefore the 12 bytes before
   ``flags``: names of up to 11 bytes, NUL-terminated inside them.

This module must not spawn, sleep or start threads: progress comes from the rpmsg
device's ``poll()``/``wait_until()``, as everywhere else.  The file server touches the
file system only under its root, and blocks only to read its stdin (as the C one does).
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import IO, Final

from ..errors import (
    MessageError,
    OpenAMPError,
    OpenAMPTimeoutError,
    PayloadTooLargeError,
    PeerGoneError,
    PeerProtocolError,
    UsageError,
)
from ..metal.deadline import Deadline
from ..rpmsg.core import Endpoint, RpmsgDevice
from ._confine import Refused, open_beneath, resolve_beneath
from .base import serve_until

log = logging.getLogger("openamp.services.rpc")

# -- the generic protocol (rpmsg_rpc_client_server.h) -------------------------------------

RPC_SERVICE = "rpmsg-rpc"
"""C ``RPMSG_RPC_SERVICE_NAME``."""
RPMSG_RPC_OK = 0
RPMSG_RPC_INVALID_ID = -1
"""Status of the answer to an id the server does not know (C)."""
RPC_BAD_REQUEST = -22
"""Status of the answer to a malformed request (pyopenamp; -EINVAL).  C has no such
answer: its server aborts or runs the handler on zero bytes."""
MAX_BUF_LEN = 488
"""Largest request (id included) and largest answer, in bytes (C ``MAX_BUF_LEN``)."""
MAX_FUNC_ID_LEN = 4
MAX_PARAMS = MAX_BUF_LEN - MAX_FUNC_ID_LEN
"""Largest request params: 484 bytes."""
MAX_RESULT = MAX_BUF_LEN - 8
"""Largest result our server sends, so that a full answer fits ``MAX_BUF_LEN``: 480."""
C_TRUNCATED = 4
"""Bytes the C server cuts off the end of every answer."""

RPC_ID = struct.Struct("<I")
"""Request head: ``u32 id``; params follow."""
RPC_ANSWER = struct.Struct("<Ii")
"""Answer head (``struct rpmsg_rpc_answer``, packed): ``u32 id, i32 status``; result follows."""

DEFAULT_TIMEOUT = 5.0
"""Seconds a client waits for binding and for each answer unless told otherwise."""


class RpcError(OpenAMPError):
    """The server answered a call with a status other than ``RPMSG_RPC_OK``."""

    def __init__(self, rpc_id: int, status: int, what: str = "") -> None:
        meaning = {
            RPMSG_RPC_INVALID_ID: "the server has no such RPC id",
            RPC_BAD_REQUEST: "the server refused the request as malformed",
        }.get(status, "the server reported a failure")
        super().__init__(f"RPC id {rpc_id}{what}: status {status} ({meaning})")
        self.rpc_id = rpc_id
        self.status = status


class RpcRequestError(MessageError):
    """Raised by a server handler for malformed params: the server answers
    :data:`RPC_BAD_REQUEST`, logs the message and keeps serving."""


class RpcAnswerError(MessageError):
    """An answer that cannot be right (too short, wrong result size)."""


class RpcResultLostError(PeerProtocolError):
    """The server cut off the result the caller needs (the C server's 4-byte truncation).

    ``status`` is what the server answered (the operation did run on the server), and
    ``partial`` the result bytes that arrived.
    """

    def __init__(self, rpc_id: int, what: str, status: int, partial: bytes) -> None:
        super().__init__(
            f"RPC id {rpc_id} ({what}): the server answered status {status} but cut off the "
            f"last {C_TRUNCATED} result bytes, which carried what was asked for; the C "
            "linux_rpc_demod cuts every answer short like this, so the result is lost"
        )
        self.rpc_id = rpc_id
        self.status = status
        self.partial = partial


def encode_request(rpc_id: int, params: bytes | bytearray | memoryview = b"") -> bytes:
    """``u32 id`` + params; :class:`PayloadTooLargeError` beyond :data:`MAX_BUF_LEN`."""
    if not 0 <= rpc_id <= 0xFFFFFFFF:
        raise UsageError(f"RPC id {rpc_id} is not a u32")
    if len(params) > MAX_PARAMS:
        raise PayloadTooLargeError(RPC_ID.size + len(params), MAX_BUF_LEN)
    return RPC_ID.pack(rpc_id) + bytes(params)


def encode_answer(
    rpc_id: int, status: int, result: bytes | bytearray = b"", *, c_truncation: bool = False
) -> bytes:
    """``u32 id, i32 status`` + result; with ``c_truncation`` cut to ``4 + len(result)``
    bytes as the C server sends it."""
    if len(result) > MAX_RESULT:
        raise PayloadTooLargeError(RPC_ANSWER.size + len(result), MAX_BUF_LEN)
    msg = RPC_ANSWER.pack(rpc_id & 0xFFFFFFFF, status) + bytes(result)
    return msg[: MAX_FUNC_ID_LEN + len(result)] if c_truncation else msg


@dataclass(frozen=True)
class RpcReply:
    """One answer: its id, status and result bytes.

    ``truncated`` says the server cut bytes off (the C server's quirk): set by
    :meth:`RpcClient.call` when the result is 4 bytes shorter than ``result_size`` with
    status OK, and for a 4-byte answer (the C server's unknown-id answer, whose status
    -1 was cut off; ``status`` is then :data:`RPMSG_RPC_INVALID_ID`).
    """

    rpc_id: int
    status: int
    result: bytes
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """Whether the status is ``RPMSG_RPC_OK``."""
        return self.status == RPMSG_RPC_OK


def decode_answer(data: bytes | bytearray | memoryview) -> RpcReply:
    """Parse an answer; :class:`RpcAnswerError` when it cannot be one."""
    n = len(data)
    if n == MAX_FUNC_ID_LEN:
        return RpcReply(RPC_ID.unpack_from(data)[0], RPMSG_RPC_INVALID_ID, b"", truncated=True)
    if n < RPC_ANSWER.size:
        raise RpcAnswerError(f"a {n}-byte answer is shorter than its 8-byte id and status")
    rpc_id, status = RPC_ANSWER.unpack_from(data)
    return RpcReply(rpc_id, status, bytes(data[RPC_ANSWER.size :]))


# -- server ---------------------------------------------------------------------------------

Handler = Callable[[bytes], tuple[int, bytes] | None]
"""``handler(params) -> (status, result)``, or ``None`` to send no answer."""


@dataclass
class RpcServerStats:
    """What a server did."""

    requests: int = 0
    answers: int = 0
    errors: int = 0
    """Requests answered with an error status (unknown id, malformed, too long)."""
    dropped: int = 0
    """Requests dropped without an answer (shorter than the id)."""
    stop_reason: str = ""


class RpcServer:
    """Serve RPC ids on the service ``name`` (C ``rpmsg_rpc_server_init``).

    The endpoint is created (and announced) at once; requests are handled inside the
    device's ``poll()``, so any blocking call on the device serves, and so does
    :meth:`run`.  Answers go to the requester's address.  ``c_truncation`` sends every
    answer 4 bytes short, exactly as the C server does (see the module docstring).
    """

    def __init__(
        self,
        rpmsg: RpmsgDevice,
        services: Mapping[int, Handler],
        *,
        name: str = RPC_SERVICE,
        c_truncation: bool = False,
    ) -> None:
        self.rpmsg = rpmsg
        self.services = dict(services)
        self.c_truncation = c_truncation
        self.stats = RpcServerStats()
        self._stop = ""
        self.endpoint: Endpoint = rpmsg.create_endpoint(
            name, callback=self._on_request, on_unbind=self._on_unbind
        )

    def _on_request(self, ept: Endpoint, data: memoryview, src: int) -> None:
        n = len(data)
        if n < MAX_FUNC_ID_LEN:
            self.stats.dropped += 1
            log.warning(
                "dropping a %d-byte request from %#x: shorter than the 4-byte RPC id", n, src
            )
            return
        self.stats.requests += 1
        rpc_id = RPC_ID.unpack_from(data)[0]
        if n > MAX_BUF_LEN:
            log.warning(
                "refusing RPC id %d from %#x: %d bytes exceed the %d-byte request limit",
                rpc_id,
                src,
                n,
                MAX_BUF_LEN,
            )
            self._answer(ept, src, rpc_id, RPC_BAD_REQUEST)
            return
        handler = self.services.get(rpc_id)
        if handler is None:
            log.warning("answering RPC id %d from %#x: no such service", rpc_id, src)
            self._answer(ept, src, rpc_id, RPMSG_RPC_INVALID_ID)
            return
        try:
            out = handler(bytes(data[MAX_FUNC_ID_LEN:]))
        except RpcRequestError as exc:
            log.warning("refusing RPC id %d from %#x: %s", rpc_id, src, exc)
            self._answer(ept, src, rpc_id, RPC_BAD_REQUEST)
            return
        if out is not None:
            self._answer(ept, src, rpc_id, out[0], out[1])

    def _answer(
        self, ept: Endpoint, dst: int, rpc_id: int, status: int, result: bytes = b""
    ) -> None:
        ept.sendto(encode_answer(rpc_id, status, result, c_truncation=self.c_truncation), dst)
        self.stats.answers += 1
        if status != RPMSG_RPC_OK:
            self.stats.errors += 1

    def _on_unbind(self, ept: Endpoint) -> None:
        self._stop = self._stop or "the client destroyed its endpoint"

    @property
    def stopped(self) -> bool:
        """Whether a stop condition was met (see :meth:`run`)."""
        return bool(self._stop)

    def stop(self, reason: str = "stopped") -> None:
        """Ask :meth:`run` to return (handlers may call it, e.g. on a terminate request)."""
        self._stop = self._stop or reason

    def run(self, timeout: float | None = None) -> RpcServerStats:
        """Serve until :meth:`stop`, the client's NS destroy, a disconnect, or ``timeout``
        seconds (None = no limit); then destroy the endpoint and return the statistics."""
        self.stop(
            serve_until(self.rpmsg, lambda: self._stop, timeout, gone="the client disconnected")
        )
        self.stats.stop_reason = self._stop
        self.close()
        return self.stats

    def close(self) -> None:
        """Destroy the endpoint (announcing it).  Idempotent."""
        self.endpoint.destroy()


# -- client ---------------------------------------------------------------------------------

AnswerCallback = Callable[[RpcReply], object]
"""``callback(reply)`` for answers nobody waits for in :meth:`RpcClient.call`."""


class _ClientDefault:
    def __repr__(self) -> str:
        return "the client's timeout"


CLIENT_TIMEOUT: Final = _ClientDefault()
"""Marker: use the ``timeout`` the client was created with."""


class RpcClient:
    """Call RPC ids on the service ``name`` (C ``rpmsg_rpc_client_init``).

    The endpoint is created (and announced) at once and bound when the server announces
    the same name or answers.  :meth:`call` sends and waits for the answer with that id;
    :meth:`send` only sends, and the answer goes to ``callbacks[id]`` (as in C), or is
    logged and dropped.  ``timeout``: default seconds for binding and for each answer
    (None = forever).  ``on_shutdown`` is called when the server destroys its endpoint.
    """

    def __init__(
        self,
        rpmsg: RpmsgDevice,
        *,
        name: str = RPC_SERVICE,
        timeout: float | None = DEFAULT_TIMEOUT,
        callbacks: Mapping[int, AnswerCallback] | None = None,
        on_shutdown: Callable[[], None] | None = None,
    ) -> None:
        self.rpmsg = rpmsg
        self.timeout = timeout
        self.callbacks = dict(callbacks or {})
        self.on_shutdown = on_shutdown
        self.peer_truncates: bool | None = None
        """Whether the server cuts 4 bytes off its answers (learned from calls that
        give ``result_size``; None until known)."""
        self.dropped = 0
        """Answers nobody waited for and no callback took."""
        self.shut_down = False
        """True once the server destroyed its endpoint (NS destroy), until bound again."""
        self._waiting: set[int] = set()
        self._replies: dict[int, RpcReply] = {}
        self.endpoint: Endpoint = rpmsg.create_endpoint(
            name, callback=self._on_answer, on_unbind=self._on_unbind
        )

    def _timeout(self, timeout: float | _ClientDefault | None) -> float | None:
        return self.timeout if isinstance(timeout, _ClientDefault) else timeout

    def wait_ready(self, timeout: float | _ClientDefault | None = CLIENT_TIMEOUT) -> None:
        """Wait until the server is known (bound); :class:`OpenAMPTimeoutError` if not."""
        self.endpoint.wait_bound(self._timeout(timeout))

    def send(
        self,
        rpc_id: int,
        params: bytes | bytearray | memoryview = b"",
        *,
        timeout: float | _ClientDefault | None = CLIENT_TIMEOUT,
    ) -> None:
        """Send a request without waiting for its answer (C ``rpmsg_rpc_client_send``).

        Waits (up to ``timeout`` s) for the endpoint to be bound first.  Requests over
        488 bytes raise :class:`PayloadTooLargeError` (the C client would overflow its
        stack buffer).
        """
        msg = encode_request(rpc_id, params)
        t = self._timeout(timeout)
        if not self.endpoint.is_bound:
            self.endpoint.wait_bound(t)
        self.endpoint.send(msg, timeout=t)

    def call(
        self,
        rpc_id: int,
        params: bytes | bytearray | memoryview = b"",
        *,
        result_size: int | None = None,
        timeout: float | _ClientDefault | None = CLIENT_TIMEOUT,
    ) -> RpcReply:
        """Send a request and wait for the answer with the same id.

        ``result_size``: the size of the result the server should send with status OK.
        A result 4 bytes shorter is marked ``truncated`` (the C server's quirk); any
        other size raises :class:`RpcAnswerError`.  A non-OK status is returned, not
        raised.  ``timeout``: seconds for binding and for the answer (None = forever);
        :class:`OpenAMPTimeoutError` when no answer comes, :class:`PeerGoneError` when
        the server destroys its endpoint meanwhile.
        """
        t = self._timeout(timeout)
        deadline = Deadline(t)
        msg = encode_request(rpc_id, params)
        if not self.endpoint.is_bound:
            self.endpoint.wait_bound(t)
        self.shut_down = False  # bound (again): a server is there
        # Without sequence numbers a late answer to an earlier, timed-out call with this
        # id would be taken for ours; forget any such answer before asking again.
        self._replies.pop(rpc_id, None)
        self._waiting.add(rpc_id)
        try:
            self.endpoint.send(msg, timeout=deadline.remaining())
            got = self.rpmsg.wait_until(
                lambda: rpc_id in self._replies or self.shut_down, deadline.remaining()
            )
        finally:
            self._waiting.discard(rpc_id)
        reply = self._replies.pop(rpc_id, None)
        if reply is None:
            if got and self.shut_down:
                raise PeerGoneError(
                    f"the RPC server destroyed its endpoint before answering RPC id {rpc_id}"
                )
            raise OpenAMPTimeoutError(f"no answer to RPC id {rpc_id} within {t} s")
        return self._check_size(reply, result_size)

    def _check_size(self, reply: RpcReply, result_size: int | None) -> RpcReply:
        if result_size is None or not reply.ok:
            return reply
        got = len(reply.result)
        if got == result_size:
            self.peer_truncates = False
            return reply
        if got == result_size - C_TRUNCATED:
            self.peer_truncates = True
            return replace(reply, truncated=True)
        raise RpcAnswerError(
            f"the answer to RPC id {reply.rpc_id} carries {got} result bytes; "
            f"expected {result_size} (or {result_size - C_TRUNCATED} from a C server)"
        )

    def _on_answer(self, ept: Endpoint, data: memoryview, src: int) -> None:
        try:
            reply = decode_answer(data)
        except RpcAnswerError as exc:
            self.dropped += 1
            log.warning("dropping an answer from %#x: %s", src, exc)
            return
        if reply.rpc_id in self._waiting:
            self._replies[reply.rpc_id] = reply
            return
        callback = self.callbacks.get(reply.rpc_id)
        if callback is not None:
            callback(reply)
            return
        self.dropped += 1
        log.warning(
            "dropping an answer to RPC id %d (status %d) from %#x: nobody waits for it",
            reply.rpc_id,
            reply.status,
            src,
        )

    def _on_unbind(self, ept: Endpoint) -> None:
        self.shut_down = True
        if self.on_shutdown is not None:
            self.on_shutdown()

    def release(self) -> None:
        """Destroy the endpoint, announcing it (C ``rpmsg_rpc_client_release``).  Idempotent."""
        self.endpoint.destroy()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# -- the linux_rpc_demo file service (linux-rpmsg-rpc-demo.h) ------------------------------

OPEN_ID = 1
CLOSE_ID = 2
WRITE_ID = 3
READ_ID = 4
ACK_STATUS_ID = 5
"""Defined by the demo header, used by neither side (our server answers it as unknown)."""
TERM_ID = 6
INPUT_ID = 7
MAX_STRING_LEN = 300
MAX_FILE_NAME_LEN = 10
"""``char filename[10]``; see :data:`FILE_NAME_FIELD` for what is really used."""
FILE_NAME_FIELD = 12
"""The name field as used: ``filename[10]`` plus the 2 padding bytes before ``flags``."""
MAX_FILE_NAME = FILE_NAME_FIELD - 1
"""Longest file name (bytes) the protocol carries: 11, NUL-terminated in the field."""

# Requests and responses are plain C structs with natural alignment (ints and u32 only,
# so LP64 and ILP32 agree).  Sizes: 20, 8, 308, 4, 4, 4 and 4, 304.
OPEN_REQ = struct.Struct("<12sii")
"""``char filename[10]; /* 2 padding */ int flags @12; int mode @16``."""
READ_REQ = struct.Struct("<iI")
"""``int fd; uint32_t buflen``."""
WRITE_REQ = struct.Struct(f"<iI{MAX_STRING_LEN}s")
"""``int fd; uint32_t len; char ptr[300]``."""
WRITE_REQ_HEAD = struct.Struct("<iI")
CLOSE_REQ = struct.Struct("<i")
"""``int fd``."""
INPUT_REQ = struct.Struct("<I")
"""``uint32_t buflen``."""
TERM_REQ = struct.Struct("<i")
"""``int id`` (the C client puts TERM_ID there)."""
INT_RESP = struct.Struct("<i")
"""open ``int fd``, write ``int bytes_written``, close ``int close_ret``."""
BUF_RESP = struct.Struct(f"<i{MAX_STRING_LEN}s")
"""read and input: ``int bytes_read; char buf[300]``."""

# open() flags travel as Linux values (the C demo's REDEF_O_* constants).
LINUX_O_RDONLY = 0o0
LINUX_O_WRONLY = 0o1
LINUX_O_RDWR = 0o2
LINUX_O_ACCMODE = 0o3
LINUX_O_CREAT = 0o100
LINUX_O_EXCL = 0o200
LINUX_O_TRUNC = 0o1000
LINUX_O_APPEND = 0o2000
_FLAG_MAP = (
    (LINUX_O_CREAT, os.O_CREAT),
    (LINUX_O_EXCL, os.O_EXCL),
    (LINUX_O_TRUNC, os.O_TRUNC),
    (LINUX_O_APPEND, os.O_APPEND),
)
_ACCESS = {LINUX_O_RDONLY: os.O_RDONLY, LINUX_O_WRONLY: os.O_WRONLY, LINUX_O_RDWR: os.O_RDWR}
_KNOWN_FLAGS = LINUX_O_ACCMODE | LINUX_O_CREAT | LINUX_O_EXCL | LINUX_O_TRUNC | LINUX_O_APPEND

STDIN_FD, STDOUT_FD, STDERR_FD = 0, 1, 2
FIRST_FILE_FD = 3


def encode_file_name(name: str | bytes) -> bytes:
    """The 12-byte name field: up to 11 bytes, NUL-terminated, zero-padded.

    :class:`UsageError` for longer names or names containing NUL.
    """
    raw = os.fsencode(name)
    if not raw or b"\0" in raw or len(raw) > MAX_FILE_NAME:
        raise UsageError(
            f"file name {name!r} does not fit the demo protocol: 1..{MAX_FILE_NAME} bytes, "
            "no NUL (char filename[10] plus the 2 padding bytes the C demo writes into)"
        )
    return raw.ljust(FILE_NAME_FIELD, b"\0")


def to_host_flags(flags: int) -> int:
    """Linux ``open()`` flags from the wire as this host's ``os.O_*`` (unknown bits
    ignored); :class:`UsageError` for an invalid access mode."""
    access = _ACCESS.get(flags & LINUX_O_ACCMODE)
    if access is None:
        raise UsageError(f"open flags {flags:#o}: access mode 3 is not valid")
    out = access
    for linux, host in _FLAG_MAP:
        if flags & linux:
            out |= host
    return out


class RemoteFileError(OpenAMPError):
    """A file operation failed on the server (it returned -1, as the C calls do)."""

    def __init__(self, op: str, result: int) -> None:
        super().__init__(f"remote {op} failed (the server returned {result})")
        self.op = op
        self.result = result


class RpcFileServer:
    """What ``linux_rpc_demod`` does, confined to one directory.

    Serves the file service on ``name``: OPEN/READ/WRITE/CLOSE on files under ``root``,
    fd 0 reads ``stdin``, fds 1 and 2 write ``stdout``/``stderr``, INPUT answers the next
    line of ``stdin``, TERM stops :meth:`run` (without an answer, as in C).

    A path must be relative and without ``..``; symbolic links are followed only while
    they stay inside ``root`` (the proxy's rule); only regular files are opened.  A
    refused or failed operation answers -1 in the result, with status OK, like the C
    server's ``open()``/``read()``/... results; a malformed request answers
    :data:`RPC_BAD_REQUEST`.  Every refusal is logged.

    ``prompt(buflen)`` is called before a line is read for INPUT (a CLI prints a prompt).
    ``max_files``: open files at a time.  ``c_truncation``: see :class:`RpcServer`.
    """

    def __init__(
        self,
        rpmsg: RpmsgDevice,
        root: str | os.PathLike[str],
        *,
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
        prompt: Callable[[int], object] | None = None,
        name: str = RPC_SERVICE,
        c_truncation: bool = False,
        max_files: int = 64,
    ) -> None:
        self.root = os.path.realpath(os.fspath(root))
        if not os.path.isdir(self.root):
            raise UsageError(f"the file server's root {self.root!r} is not a directory")
        self.stdin = stdin
        self.streams: dict[int, IO[bytes] | None] = {STDOUT_FD: stdout, STDERR_FD: stderr}
        self.prompt = prompt
        self.max_files = max_files
        self.files: dict[int, int] = {}
        """Open files: the fd the client sees -> our OS file descriptor."""
        self.inputs: list[bytes] = []
        """Every line handed out for INPUT, in order."""
        if not os.path.isdir(self.root):
            raise UsageError(f"the RPC server's root {self.root!r} is not a directory")
        self.rpc = RpcServer(
            rpmsg,
            {
                OPEN_ID: self._open,
                CLOSE_ID: self._close,
                WRITE_ID: self._write,
                READ_ID: self._read,
                INPUT_ID: self._input,
                TERM_ID: self._term,
            },
            name=name,
            c_truncation=c_truncation,
        )

    @property
    def endpoint(self) -> Endpoint:
        """The server's endpoint."""
        return self.rpc.endpoint

    @property
    def stats(self) -> RpcServerStats:
        """The RPC server's statistics."""
        return self.rpc.stats

    def run(self, timeout: float | None = None) -> RpcServerStats:
        """Serve until TERM, the client's NS destroy, a disconnect or ``timeout`` s
        (None = no limit); then close every file and the endpoint."""
        try:
            return self.rpc.run(timeout)
        finally:
            self.close()

    def close(self) -> None:
        """Close the open files and the endpoint.  Idempotent."""
        for fd in list(self.files):
            os.close(self.files.pop(fd))
        self.rpc.close()

    def __enter__(self) -> RpcFileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- handlers ---------------------------------------------------------------------------

    @staticmethod
    def _need(params: bytes, size: int, what: str) -> None:
        if len(params) < size:
            raise RpcRequestError(
                f"{what} request carries {len(params)} params bytes; its struct has {size}"
            )

    def _open(self, params: bytes) -> tuple[int, bytes]:
        self._need(params, OPEN_REQ.size, "open")
        raw, flags, mode = OPEN_REQ.unpack_from(params)
        if b"\0" not in raw:
            raise RpcRequestError(
                f"open: the file name is not NUL-terminated within its {FILE_NAME_FIELD} bytes"
            )
        path = raw.split(b"\0", 1)[0]
        fd = self._open_file(path, flags, mode)
        return RPMSG_RPC_OK, INT_RESP.pack(fd)

    def _open_file(self, path: bytes, flags: int, mode: int) -> int:
        shown = path.decode("utf-8", "backslashreplace")
        parts = path.split(b"/")
        if not path or path.startswith(b"/") or b".." in parts or not parts[-1]:
            log.warning("open %r: refused (absolute, empty, '..' or a directory)", shown)
            return -1
        if len(self.files) >= self.max_files:
            log.warning("open %r: refused, %d files are open already", shown, self.max_files)
            return -1
        try:
            host_flags = to_host_flags(flags)
        except UsageError as exc:
            log.warning("open %r: refused: %s", shown, exc)
            return -1
        if flags & ~_KNOWN_FLAGS:
            log.info("open %r: ignoring flags %#o", shown, flags & ~_KNOWN_FLAGS)
        try:
            rel = resolve_beneath(self.root, os.fsdecode(path))
            fd = open_beneath(self.root, rel, host_flags, mode)
        except Refused as exc:
            log.warning("%s: refused", exc.reason)
            return -1
        except OSError as exc:
            log.warning("open %r: %s", shown, exc.strerror or exc)
            return -1
        remote_fd = FIRST_FILE_FD
        while remote_fd in self.files:
            remote_fd += 1
        self.files[remote_fd] = fd
        log.info("open %r (flags %#o, mode %#o) -> fd %d", shown, flags, mode, remote_fd)
        return remote_fd

    def _close(self, params: bytes) -> tuple[int, bytes]:
        self._need(params, CLOSE_REQ.size, "close")
        (fd,) = CLOSE_REQ.unpack_from(params)
        os_fd = self.files.pop(fd, None)
        if os_fd is None:
            log.warning("close fd %d: no such open file", fd)
            return RPMSG_RPC_OK, INT_RESP.pack(-1)
        os.close(os_fd)
        return RPMSG_RPC_OK, INT_RESP.pack(0)

    def _write(self, params: bytes) -> tuple[int, bytes]:
        self._need(params, WRITE_REQ_HEAD.size, "write")
        fd, length = WRITE_REQ_HEAD.unpack_from(params)
        if length > MAX_STRING_LEN:
            raise RpcRequestError(f"write: len {length} exceeds ptr[{MAX_STRING_LEN}]")
        if WRITE_REQ_HEAD.size + length > len(params):
            raise RpcRequestError(
                f"write: len {length} reaches beyond the message "
                f"({len(params) - WRITE_REQ_HEAD.size} data bytes follow fd and len)"
            )
        data = params[WRITE_REQ_HEAD.size : WRITE_REQ_HEAD.size + length]
        return RPMSG_RPC_OK, INT_RESP.pack(self._write_fd(fd, data))

    def _write_fd(self, fd: int, data: bytes) -> int:
        if fd == STDIN_FD:
            log.warning("write fd 0: stdin cannot be written")
            return -1
        if fd in self.streams:
            stream = self.streams[fd]
            if stream is None:
                log.warning("write fd %d: this server has no such stream", fd)
                return -1
            try:
                stream.write(data)
                stream.flush()
            except (OSError, ValueError) as exc:  # a closed or broken stream
                log.warning("write fd %d: %s", fd, exc)
                return -1
            return len(data)
        os_fd = self.files.get(fd)
        if os_fd is None:
            log.warning("write fd %d: no such open file", fd)
            return -1
        try:
            return os.write(os_fd, data)
        except OSError as exc:
            log.warning("write fd %d: %s", fd, exc.strerror or exc)
            return -1

    def _read(self, params: bytes) -> tuple[int, bytes]:
        self._need(params, READ_REQ.size, "read")
        fd, buflen = READ_REQ.unpack_from(params)
        # The C server reads buflen bytes into its 300-byte buffer unchecked.
        limit = min(buflen, MAX_STRING_LEN)
        data: bytes | None
        if fd == STDIN_FD:
            data = self._stdin_line(limit) if limit else b""
        elif fd in self.files:
            try:
                data = os.read(self.files[fd], limit)
            except OSError as exc:
                log.warning("read fd %d: %s", fd, exc.strerror or exc)
                data = None
        else:
            log.warning("read fd %d: no such open file", fd)
            data = None
        if data is None:
            return RPMSG_RPC_OK, BUF_RESP.pack(-1, b"")
        return RPMSG_RPC_OK, BUF_RESP.pack(len(data), data)

    def _stdin_line(self, limit: int) -> bytes | None:
        """A line of stdin (at most ``limit`` bytes); b"" at its end, None on an error."""
        if self.stdin is None:
            return b""
        try:
            return self.stdin.readline(limit)
        except (OSError, ValueError) as exc:  # a closed or broken stream
            log.warning("reading stdin: %s", exc)
            return None

    def _input(self, params: bytes) -> tuple[int, bytes]:
        self._need(params, INPUT_REQ.size, "input")
        (buflen,) = INPUT_REQ.unpack_from(params)
        # Leave room for the NUL the client's buffer needs (the C server ignores buflen).
        limit = max(0, min(buflen, MAX_STRING_LEN) - 1)
        if self.prompt is not None:
            self.prompt(limit)
        line = self._stdin_line(4096) or b""
        text = line.rstrip(b"\r\n")[:limit]
        self.inputs.append(text)
        return RPMSG_RPC_OK, BUF_RESP.pack(len(text), text)

    def _term(self, params: bytes) -> None:
        self._need(params, TERM_REQ.size, "terminate")
        (term_id,) = TERM_REQ.unpack_from(params)
        log.info("termination request (id %d)", term_id)
        self.rpc.stop("terminate request")
        # No answer: the C client has no callback for TERM; an answer would make it fail.
        return None


class RpcFileClient:
    """What ``linux_rpc_demo`` calls: the file service of an :class:`RpcFileServer` or of
    the C ``linux_rpc_demod``.

    Requests have exactly the C lengths (open 24, write 312, read 12, close 8, input 8,
    terminate 8 bytes).  A non-OK status raises :class:`RpcError`, a -1 result
    :class:`RemoteFileError`, a result the server cut off :class:`RpcResultLostError`.
    Against a truncating server read and input still work: reads are capped at 296 bytes
    once the truncation has been seen, so no data is lost.

    ``timeout``: seconds for binding and for each answer (None = forever).
    """

    def __init__(
        self,
        rpmsg: RpmsgDevice,
        *,
        name: str = RPC_SERVICE,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.rpc = RpcClient(rpmsg, name=name, timeout=timeout)

    @property
    def endpoint(self) -> Endpoint:
        """The client's endpoint."""
        return self.rpc.endpoint

    def wait_ready(self, timeout: float | _ClientDefault | None = CLIENT_TIMEOUT) -> None:
        """Wait until the server is known."""
        self.rpc.wait_ready(timeout)

    def _int_call(self, rpc_id: int, what: str, params: bytes) -> int:
        reply = self.rpc.call(rpc_id, params, result_size=INT_RESP.size)
        if not reply.ok:
            raise RpcError(rpc_id, reply.status, f" ({what})")
        if reply.truncated:
            raise RpcResultLostError(rpc_id, what, reply.status, reply.result)
        (value,) = INT_RESP.unpack(reply.result)
        if value < 0:
            raise RemoteFileError(what, value)
        return int(value)

    def open(self, path: str | bytes, flags: int = LINUX_O_RDONLY, mode: int = 0o600) -> int:
        """Open ``path`` (at most 11 bytes) on the server; return its fd.

        ``flags`` are Linux values (``LINUX_O_*``, as the C demo sends them).
        """
        params = OPEN_REQ.pack(encode_file_name(path), flags, mode)
        return self._int_call(OPEN_ID, f"open {os.fsdecode(path)!r}", params)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        """Write up to 300 bytes to ``fd``; return the count the server wrote."""
        data = bytes(data)
        if len(data) > MAX_STRING_LEN:
            raise PayloadTooLargeError(len(data), MAX_STRING_LEN)
        # The struct always travels whole (312 bytes), like the C client's sizeof.
        params = WRITE_REQ.pack(fd, len(data), data)
        return self._int_call(WRITE_ID, f"write fd {fd}", params)

    def close(self, fd: int) -> None:
        """Close ``fd`` on the server."""
        self._int_call(CLOSE_ID, f"close fd {fd}", CLOSE_REQ.pack(fd))

    def _buf_call(self, rpc_id: int, what: str, params: bytes) -> tuple[int, bytes]:
        reply = self.rpc.call(rpc_id, params, result_size=BUF_RESP.size)
        if not reply.ok:
            raise RpcError(rpc_id, reply.status, f" ({what})")
        count = INT_RESP.unpack_from(reply.result)[0]
        buf = reply.result[INT_RESP.size :]
        if count < 0:
            raise RemoteFileError(what, count)
        return count, buf

    def read(self, fd: int, size: int = MAX_STRING_LEN) -> bytes:
        """Read up to ``size`` (<= 300) bytes from ``fd``; ``b""`` at the end of the file."""
        if not 0 < size <= MAX_STRING_LEN:
            raise UsageError(f"read size must be 1..{MAX_STRING_LEN}, got {size}")
        if self.rpc.peer_truncates is not False:
            # Until a full answer proves otherwise, ask no more than a truncated answer
            # can carry, so that nothing read on the server is lost on the way.
            size = min(size, MAX_STRING_LEN - C_TRUNCATED)
        count, buf = self._buf_call(READ_ID, f"read fd {fd}", READ_REQ.pack(fd, size))
        if count > len(buf):
            if len(buf) == MAX_STRING_LEN - C_TRUNCATED:
                raise RpcResultLostError(READ_ID, f"read fd {fd}", RPMSG_RPC_OK, buf)
            raise RpcAnswerError(f"read fd {fd}: the server claims {count} bytes of {len(buf)}")
        if count > size:
            raise RpcAnswerError(f"read fd {fd}: the server sent {count} bytes for {size}")
        return buf[:count]

    def input(self, size: int = 50) -> bytes:
        """A line of the server's input, at most ``size - 1`` bytes (the C demo asks 50).

        ``b""`` for an empty line or the end of the server's input.
        """
        if not 0 < size <= MAX_STRING_LEN:
            raise UsageError(f"input size must be 1..{MAX_STRING_LEN}, got {size}")
        count, buf = self._buf_call(INPUT_ID, "input", INPUT_REQ.pack(size))
        # The C server answers count 300 whatever it read; its text is NUL-terminated.
        return buf[: min(count, len(buf))].split(b"\0", 1)[0][: size - 1]

    def terminate(self) -> None:
        """Tell the server to stop (TERM; there is no answer)."""
        self.rpc.send(TERM_ID, TERM_REQ.pack(TERM_ID))

    def release(self) -> None:
        """Destroy the client's endpoint (announcing it).  Idempotent."""
        self.rpc.release()

    def __enter__(self) -> RpcFileClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# -- the linux_rpc_demo sequence -----------------------------------------------------------

DEMO_FILE = "remote.file"
DEMO_TEXT = b"This is a test string being written to file.."
DEMO_PROMPTS = ("name", "age", "value for pi")
DEMO_INPUT_SIZE = 50
"""The C demo's input buffers are ``char[50]``."""


@dataclass
class DemoResult:
    """The outcome of :func:`run_file_demo`."""

    written: int = 0
    read_back: bytes = b""
    inputs: list[bytes] = field(default_factory=list)
    terminated: bool = False
    problems: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every step worked and the file read back holds what was written."""
        return not self.problems and self.terminated


def run_file_demo(
    rpmsg: RpmsgDevice,
    *,
    timeout: float | None = 10.0,
    report: Callable[[str], object] = lambda line: None,
    name: str = RPC_SERVICE,
    prompts: tuple[str, ...] = DEMO_PROMPTS,
) -> DemoResult:
    """Run what ``linux_rpc_demo`` does against a file server; ``report`` gets each step.

    Create ``remote.file`` (O_CREAT|O_WRONLY|O_APPEND, 0600), write one line, close,
    reopen read-only, read it back and check it, close; ask the server for one line of
    input per prompt; send TERM.  A server that truncates its answers (the C
    ``linux_rpc_demod``) loses the fd of every open: the file steps are then reported
    as a problem and skipped, input and TERM still run.  ``timeout`` in seconds applies
    to binding and to each answer.
    """
    result = DemoResult()
    t0 = time.perf_counter()
    client = RpcFileClient(rpmsg, name=name, timeout=timeout)
    try:
        client.wait_ready()
        report(f"rpc: bound to the server at {client.endpoint.dest_addr:#x}")
        try:
            _demo_files(client, result, report)
        except RpcResultLostError as exc:
            result.problems.append(str(exc))
            report(f"rpc: file I/O skipped: {exc}")
        for prompt in prompts:
            report(f"rpc: Enter {prompt}")
            value = client.input(DEMO_INPUT_SIZE)
            result.inputs.append(value)
            report(f"rpc: {prompt} = {value.decode('utf-8', 'replace')!r}")
        client.terminate()
        result.terminated = True
        report("rpc: sent the termination request")
    except OpenAMPError as exc:
        result.problems.append(str(exc))
        report(f"rpc: error: {exc}")
    finally:
        client.release()
        result.elapsed = time.perf_counter() - t0
    return result


def _demo_files(client: RpcFileClient, result: DemoResult, report: Callable[[str], object]) -> None:
    fd = client.open(DEMO_FILE, LINUX_O_CREAT | LINUX_O_WRONLY | LINUX_O_APPEND, 0o600)
    report(f"rpc: opened {DEMO_FILE!r} for writing, fd {fd}")
    result.written = client.write(fd, DEMO_TEXT)
    report(f"rpc: wrote {result.written} bytes: {DEMO_TEXT.decode()!r}")
    if result.written != len(DEMO_TEXT):
        result.problems.append(f"wrote {result.written} of {len(DEMO_TEXT)} bytes")
    client.close(fd)
    report(f"rpc: closed fd {fd}")
    fd = client.open(DEMO_FILE, LINUX_O_RDONLY, 0o600)
    report(f"rpc: opened {DEMO_FILE!r} for reading, fd {fd}")
    result.read_back = client.read(fd, MAX_STRING_LEN)
    text = result.read_back.decode("utf-8", "replace")
    report(f"rpc: read {len(result.read_back)} bytes: {text!r}")
    if DEMO_TEXT not in result.read_back:
        result.problems.append(f"{DEMO_FILE} does not hold what was written")
    client.close(fd)
    report(f"rpc: closed fd {fd}")


__all__ = [
    "ACK_STATUS_ID",
    "BUF_RESP",
    "CLIENT_TIMEOUT",
    "CLOSE_ID",
    "CLOSE_REQ",
    "C_TRUNCATED",
    "DEMO_FILE",
    "DEMO_PROMPTS",
    "DEMO_TEXT",
    "FILE_NAME_FIELD",
    "INPUT_ID",
    "INPUT_REQ",
    "INT_RESP",
    "LINUX_O_APPEND",
    "LINUX_O_CREAT",
    "LINUX_O_EXCL",
    "LINUX_O_RDONLY",
    "LINUX_O_RDWR",
    "LINUX_O_TRUNC",
    "LINUX_O_WRONLY",
    "MAX_BUF_LEN",
    "MAX_FILE_NAME",
    "MAX_PARAMS",
    "MAX_RESULT",
    "MAX_STRING_LEN",
    "OPEN_ID",
    "OPEN_REQ",
    "READ_ID",
    "READ_REQ",
    "RPC_ANSWER",
    "RPC_BAD_REQUEST",
    "RPC_ID",
    "RPC_SERVICE",
    "RPMSG_RPC_INVALID_ID",
    "RPMSG_RPC_OK",
    "TERM_ID",
    "TERM_REQ",
    "WRITE_ID",
    "WRITE_REQ",
    "DemoResult",
    "RemoteFileError",
    "RpcAnswerError",
    "RpcClient",
    "RpcError",
    "RpcFileClient",
    "RpcFileServer",
    "RpcReply",
    "RpcRequestError",
    "RpcResultLostError",
    "RpcServer",
    "RpcServerStats",
    "decode_answer",
    "encode_answer",
    "encode_file_name",
    "encode_request",
    "run_file_demo",
    "to_host_flags",
]

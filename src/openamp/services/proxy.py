"""The retarget proxy: a remote's file and console I/O served by the host, over RPMsg.

Both sides of the C ``rpc_demo`` pair (OpenAMP ``lib/proxy/rpmsg_retarget.c`` on the
remote, the system reference's ``rpc_demod.c`` on the host), on the service
``rpmsg-openamp-demo-channel``:

* :class:`ProxyServer` is the host (what ``rpc_demod`` does): it serves open, close,
  read and write requests against one directory the user chooses, passes fd 0/1/2
  through to its stdin/stdout/stderr, and stops on the terminate request or when the
  remote destroys its endpoint.  The remote cannot leave the directory: absolute paths,
  ``..`` components and symbolic links that resolve outside it are refused.
* :class:`ProxyClient` is the remote (what ``rpmsg_retarget.c`` gives newlib): a
  file-like :meth:`~ProxyClient.open`, :meth:`~ProxyClient.print` and
  :meth:`~ProxyClient.input` that travel over RPMsg, and :meth:`~ProxyClient.terminate`.
* :func:`run_proxy_demo` is the remote's demo program (the C ``rpc_demo``'s steps).

Every record is ``struct rpmsg_rpc_syscall`` (:data:`SYSCALL`, 16 bytes: u32 id, i32
int_field1, i32 int_field2, u32 data_len) followed by ``data_len`` bytes.  A request is
answered by one record with the same id; the terminate request is not answered.  This
module is the one definition of that format; see ``docs/services/proxy.md``.

Where the C programs are fragile we differ, and say so in the docs: the host answers a
failure with ``int_field1 = -1`` as C does, and puts the errno in ``int_field2`` (C
sends 0 there, and C remotes ignore it); a malformed request is answered with an error
or dropped with a logged reason, and serving goes on (``rpc_demod`` exits); a read is
capped so that its answer fits one buffer (``rpc_demod`` reads up to 1008 bytes and
``rpmsg_send`` silently drops what does not fit).

This module must not create threads: everything runs inside the rpmsg device's
``poll()``, as the rest of the rpmsg layer does.
"""

from __future__ import annotations

import builtins
import codecs
import contextlib
import errno as errno_mod
import io
import logging
import os
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple, TextIO, cast

from ..errors import (
    EndpointClosedError,
    MessageError,
    OpenAMPError,
    OpenAMPTimeoutError,
    PeerGoneError,
    UsageError,
)
from ..rpmsg.core import Endpoint, RpmsgDevice
from ._confine import Refused, open_beneath, resolve_beneath
from .base import serve_until

log = logging.getLogger("openamp.services.proxy")

PROXY_SERVICE = "rpmsg-openamp-demo-channel"
"""The service name of the C ``rpc_demo`` pair (``RPMSG_SERVICE_NAME``)."""

SYSCALL = struct.Struct("<IiiI")
"""``struct rpmsg_rpc_syscall``: u32 id, i32 int_field1, i32 int_field2, u32 data_len."""

OPEN_SYSCALL_ID = 1
CLOSE_SYSCALL_ID = 2
WRITE_SYSCALL_ID = 3
READ_SYSCALL_ID = 4
ACK_STATUS_ID = 5
"""Defined by the C header and used by nobody; the host drops it like an unknown id."""
TERM_SYSCALL_ID = 6
LINUX_INIT_MSG = b"init_msg\0"
"""What Linux's ``proxy_app`` sends first so that the remote learns its address."""

CALL_NAMES = {
    OPEN_SYSCALL_ID: "open",
    CLOSE_SYSCALL_ID: "close",
    WRITE_SYSCALL_ID: "write",
    READ_SYSCALL_ID: "read",
    TERM_SYSCALL_ID: "terminate",
}

# Open flags travel as Linux values: rpc_demo spells them out (REDEF_O_*) because
# newlib's own values differ, and rpc_demod hands them to the host's open() unchanged.
LINUX_O_RDONLY = 0o0
LINUX_O_WRONLY = 0o1
LINUX_O_RDWR = 0o2
LINUX_O_ACCMODE = 0o3
LINUX_O_CREAT = 0o100
LINUX_O_EXCL = 0o200
LINUX_O_TRUNC = 0o1000
LINUX_O_APPEND = 0o2000

DEFAULT_MODE = 0o600
"""Permissions a remote asks for when it creates a file (rpc_demo's S_IRUSR|S_IWUSR)."""

STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO = 0, 1, 2
FIRST_FILE_FD = 3
"""Host files get remote fds from 3 up, the lowest free one first (as POSIX does)."""

_O_PATH = getattr(os, "O_PATH", 0)
_PROBLEMS_KEPT = 20


# -- the wire format ----------------------------------------------------------------------


class ProxyRecord(NamedTuple):
    """One decoded record: the 16-byte head and the bytes after it."""

    id: int
    int_field1: int
    int_field2: int
    data_len: int
    data: bytes
    """Everything after the head (may be longer or shorter than ``data_len``)."""


def encode_record(call_id: int, f1: int = 0, f2: int = 0, data: bytes = b"") -> bytes:
    """A record: the head with ``data_len = len(data)``, then ``data``."""
    return SYSCALL.pack(call_id, f1, f2, len(data)) + data


def decode_record(message: bytes | bytearray | memoryview) -> ProxyRecord:
    """Split a message into head and data; :class:`MessageError` if it has no full head."""
    if len(message) < SYSCALL.size:
        raise MessageError(f"a proxy record is at least {SYSCALL.size} bytes; got {len(message)}")
    call_id, f1, f2, data_len = SYSCALL.unpack_from(message)
    return ProxyRecord(call_id, f1, f2, data_len, bytes(message[SYSCALL.size :]))


def encode_open(path: bytes, flags: int, mode: int = DEFAULT_MODE) -> bytes:
    """``_open``: id 1, f1 = flags (Linux values), f2 = mode, data = path and its NUL."""
    if b"\0" in path:
        raise UsageError(f"a path cannot contain a NUL byte: {path!r}")
    return encode_record(OPEN_SYSCALL_ID, flags, mode, path + b"\0")


def encode_close(fd: int) -> bytes:
    """``_close``: id 2, f1 = fd."""
    return encode_record(CLOSE_SYSCALL_ID, fd)


def encode_write(fd: int, data: bytes) -> bytes:
    """``_write``: id 3, f1 = fd, f2 = count, data = the bytes.

    Unlike C ``_write`` for fd 1 we send no extra byte: data_len equals the count.
    """
    return encode_record(WRITE_SYSCALL_ID, fd, len(data), data)


def encode_read(fd: int, count: int) -> bytes:
    """``_read``: id 4, f1 = fd, f2 = the most bytes wanted."""
    return encode_record(READ_SYSCALL_ID, fd, count)


def encode_term() -> bytes:
    """The terminate request: id 6 (C leaves the other fields uninitialised; we send 0)."""
    return encode_record(TERM_SYSCALL_ID)


def open_flags(mode: str) -> tuple[int, bool, bool, bool]:
    """Linux open flags for a Python ``mode`` string; also (readable, writable, binary).

    ``"r"`` -> O_RDONLY; ``"w"`` -> O_WRONLY|O_CREAT|O_TRUNC; ``"a"`` ->
    O_WRONLY|O_CREAT|O_APPEND (0x441, what rpc_demo sends); ``"x"`` ->
    O_WRONLY|O_CREAT|O_EXCL; ``"+"`` makes it O_RDWR; ``"b"``/``"t"`` choose bytes/text.
    """
    kinds = [c for c in mode if c in "rwax"]
    if (
        len(kinds) != 1
        or any(c not in "rwax+bt" for c in mode)
        or len(set(mode)) != len(mode)
        or ("b" in mode and "t" in mode)
    ):
        raise UsageError(f"invalid mode {mode!r}")
    kind, plus = kinds[0], "+" in mode
    flags = {
        "r": LINUX_O_RDONLY,
        "w": LINUX_O_WRONLY | LINUX_O_CREAT | LINUX_O_TRUNC,
        "a": LINUX_O_WRONLY | LINUX_O_CREAT | LINUX_O_APPEND,
        "x": LINUX_O_WRONLY | LINUX_O_CREAT | LINUX_O_EXCL,
    }[kind]
    if plus:
        flags = (flags & ~LINUX_O_ACCMODE) | LINUX_O_RDWR
    return flags, kind == "r" or plus, kind != "r" or plus, "b" in mode


def host_open_flags(linux_flags: int) -> int:
    """The host's ``os.open`` flags for the Linux flags a remote sent.

    Only the access mode, O_CREAT, O_EXCL, O_TRUNC and O_APPEND are kept; anything else
    the remote asks for (O_NOCTTY, O_CLOEXEC, O_NONBLOCK, ...) is ignored.  Raises
    :class:`ValueError` for access mode 3.
    """
    acc = linux_flags & LINUX_O_ACCMODE
    if acc == LINUX_O_ACCMODE:
        raise ValueError("access mode 3 is not a valid open mode")
    flags = {LINUX_O_RDONLY: os.O_RDONLY, LINUX_O_WRONLY: os.O_WRONLY, LINUX_O_RDWR: os.O_RDWR}[acc]
    for linux_bit, host_bit in (
        (LINUX_O_CREAT, os.O_CREAT),
        (LINUX_O_EXCL, os.O_EXCL),
        (LINUX_O_TRUNC, os.O_TRUNC),
        (LINUX_O_APPEND, os.O_APPEND),
    ):
        if linux_flags & linux_bit:
            flags |= host_bit
    return flags


# -- errors ---------------------------------------------------------------------------------


class ProxyError(OpenAMPError, OSError):
    """A proxied call failed on the host (the answer carried a negative result).

    ``call`` names the request (``"open"``...), ``result`` is the answer's
    int_field1 (-1 from a C or pyopenamp host) and ``errno`` the host's errno when it
    sent one (pyopenamp hosts do, C ``rpc_demod`` does not: then None).  Being an
    :class:`OSError`, it is what file-like code expects.
    """

    def __init__(self, call: str, result: int, err: int | None, what: str = "") -> None:
        reason = os.strerror(err) if err else "the host gave no reason"
        text = f"proxy {call}{f' {what}' if what else ''} failed on the host: {reason}"
        super().__init__(err, text)
        self.call = call
        self.result = result
        self.text = text

    def __str__(self) -> str:
        return self.text


_Refused = Refused


# -- the host side --------------------------------------------------------------------------


@dataclass
class ProxyStats:
    """What a :class:`ProxyServer` did."""

    calls: dict[str, int] = field(default_factory=dict)
    """Requests served, by kind (``"open"``, ``"close"``, ``"read"``, ``"write"``...)."""
    bytes_written: int = 0
    """Bytes the remote wrote into host files."""
    bytes_read: int = 0
    """Bytes the remote read from host files."""
    console_out: int = 0
    """Bytes the remote wrote to fd 1 and 2."""
    console_in: int = 0
    """Bytes the remote read from fd 0."""
    errors: int = 0
    """Requests answered with an error."""
    dropped: int = 0
    """Messages dropped without an answer (too short, unknown id, after stopping)."""
    problems: list[str] = field(default_factory=list)
    """Why requests were refused or dropped (the first 20)."""
    stop_reason: str = ""


@dataclass
class _HostFile:
    fd: int
    """The host's file descriptor."""
    path: str
    """Relative to the root."""


TextOrBinary = IO[Any]
"""A text stream (``str``) or a binary one (``bytes``)."""


class ProxyServer:
    """Serve a remote's file and console requests against the directory ``root``.

    ``rpmsg``: the host's rpmsg device.  ``root``: the directory the remote's paths are
    relative to; it cannot leave it.  ``stdin``/``stdout``/``stderr``: text or binary
    streams for fd 0/1/2 (None: this process's ``sys.stdin``... at the time of the
    call).  ``name``: the service.  ``max_files``: how many files the remote may keep
    open at once.

    The endpoint is created (and announced, as ``rpc_demod`` does) at once; requests
    are served inside the device's ``poll()``, i.e. during :meth:`run` or any blocking
    call on the device.  :meth:`handle_request` is the protocol core without rpmsg.
    """

    def __init__(
        self,
        rpmsg: RpmsgDevice,
        root: str | os.PathLike[str],
        *,
        stdin: TextOrBinary | None = None,
        stdout: TextOrBinary | None = None,
        stderr: TextOrBinary | None = None,
        name: str = PROXY_SERVICE,
        max_files: int = 64,
    ) -> None:
        real = os.path.realpath(os.fspath(root))
        if not os.path.isdir(real):
            raise UsageError(f"the proxy root {os.fspath(root)!r} is not a directory")
        self.root = Path(real)
        self.rpmsg = rpmsg
        self.max_files = max_files
        self.stats = ProxyStats()
        self._stdin = stdin
        self._stdout = stdout
        self._stderr = stderr
        self._stdin_pending = b""
        self._decoders = {
            STDOUT_FILENO: codecs.getincrementaldecoder("utf-8")(errors="replace"),
            STDERR_FILENO: codecs.getincrementaldecoder("utf-8")(errors="replace"),
        }
        self._files: dict[int, _HostFile] = {}
        self._stop = ""
        self.endpoint: Endpoint = rpmsg.create_endpoint(
            name, callback=self._on_message, on_unbind=self._on_unbind
        )

    # -- rpmsg glue -------------------------------------------------------------------------

    def _on_message(self, ept: Endpoint, data: memoryview, src: int) -> None:
        answer = self.handle_request(data)
        if answer is not None:
            ept.sendto(answer, src)

    def _on_unbind(self, ept: Endpoint) -> None:
        if not self._stop:
            self._stop = "the remote destroyed its endpoint"

    @property
    def stopped(self) -> bool:
        """Whether a stop condition was met (terminate request, unbind, :meth:`stop`)."""
        return bool(self._stop)

    def stop(self, reason: str = "stopped") -> None:
        """Ask :meth:`run` to return; the first reason given is kept."""
        self._stop = self._stop or reason

    def run(self, timeout: float | None = None) -> ProxyStats:
        """Serve until the remote terminates or leaves, or ``timeout`` seconds pass.

        ``timeout``: None serves without a time limit.  At the end the remote's files
        are closed and the endpoint destroyed; ``stats.stop_reason`` says why it ended.
        """
        try:
            self.stop(
                serve_until(self.rpmsg, lambda: self._stop, timeout, gone="the remote disconnected")
            )
        finally:
            self.stats.stop_reason = self._stop
            self.close()
        return self.stats

    def close(self) -> None:
        """Close every file the remote left open and destroy the endpoint.  Idempotent."""
        for f in list(self._files.values()):
            with contextlib.suppress(OSError):
                os.close(f.fd)
        self._files.clear()
        self.endpoint.destroy()

    def __enter__(self) -> ProxyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def open_files(self) -> dict[int, str]:
        """The remote's open files: remote fd -> path relative to the root."""
        return {fd: f.path for fd, f in self._files.items()}

    # -- the protocol core ------------------------------------------------------------------

    @property
    def max_read(self) -> int:
        """The most data bytes one read answer carries (the answer must fit a buffer)."""
        return max(0, self.endpoint.tx_capacity - SYSCALL.size)

    def handle_request(self, message: bytes | bytearray | memoryview) -> bytes | None:
        """Serve one request; return the answer to send, or None (no answer).

        Never raises for anything the remote sends: malformed requests are answered
        with ``int_field1 = -1`` (and the errno in int_field2) when their id says what
        answer the remote waits for, and dropped with a logged reason otherwise.
        """
        if len(message) < SYSCALL.size:
            self._drop(f"a {len(message)}-byte message is shorter than a request head")
            return None
        call_id, f1, f2, data_len = SYSCALL.unpack_from(message)
        name = CALL_NAMES.get(call_id)
        if name is None:
            # rpc_demod logs this and exits.  We cannot answer: a C remote takes any
            # message as the answer to its pending call.
            self._drop(f"unknown request id {call_id}")
            return None
        if self._stop:
            self._drop(f"{name} request after the service stopped ({self._stop})")
            return None
        self.stats.calls[name] = self.stats.calls.get(name, 0) + 1
        if call_id == TERM_SYSCALL_ID:
            # The C remote leaves the other fields uninitialised: ignore them.
            self._stop = "the remote sent the terminate request"
            log.info("terminate request received")
            return None
        try:
            body = len(message) - SYSCALL.size
            if data_len > body:
                raise _Refused(
                    errno_mod.EINVAL,
                    f"{name}: data_len {data_len} is beyond the message ({body} data bytes)",
                )
            data = bytes(message[SYSCALL.size : SYSCALL.size + data_len])
            if call_id == OPEN_SYSCALL_ID:
                return encode_record(OPEN_SYSCALL_ID, self._open(data, f1, f2))
            if call_id == CLOSE_SYSCALL_ID:
                return encode_record(CLOSE_SYSCALL_ID, self._close(f1))
            if call_id == WRITE_SYSCALL_ID:
                return encode_record(WRITE_SYSCALL_ID, self._write(f1, f2, data))
            got = self._read(f1, f2)
            return encode_record(READ_SYSCALL_ID, len(got), 0, got)
        except _Refused as exc:
            self._note(exc.reason)
            return self._error(call_id, exc.errno)
        except OSError as exc:
            err = exc.errno or errno_mod.EIO
            what = f" {exc.filename!r}" if exc.filename else ""
            self._note(f"{name}{what}: {os.strerror(err)}", level=logging.INFO)
            return self._error(call_id, err)

    def _error(self, call_id: int, err: int) -> bytes:
        self.stats.errors += 1
        return encode_record(call_id, -1, err)

    def _drop(self, reason: str) -> None:
        self.stats.dropped += 1
        self._note(f"dropped: {reason}")

    def _note(self, reason: str, level: int = logging.WARNING) -> None:
        log.log(level, "%s", reason)
        if len(self.stats.problems) < _PROBLEMS_KEPT:
            self.stats.problems.append(reason)

    # -- calls ------------------------------------------------------------------------------

    def _open(self, data: bytes, flags: int, mode: int) -> int:
        nul = data.find(b"\0")
        if nul < 0:
            raise _Refused(errno_mod.EINVAL, "open: the file name is not NUL-terminated")
        raw = data[:nul]
        try:
            host_flags = host_open_flags(flags)
        except ValueError as exc:
            raise _Refused(errno_mod.EINVAL, f"open {raw!r}: {exc}") from None
        if len(self._files) >= self.max_files:
            raise _Refused(
                errno_mod.EMFILE, f"open {raw!r}: the remote has {self.max_files} files open"
            )
        rel = self._resolve(os.fsdecode(raw))
        try:
            fd = self._open_beneath(rel, host_flags, mode)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, rel) from None
        remote_fd = FIRST_FILE_FD
        while remote_fd in self._files:
            remote_fd += 1
        self._files[remote_fd] = _HostFile(fd, rel)
        log.info("open %r (flags %#x) -> fd %d", rel, flags, remote_fd)
        return remote_fd

    def resolve(self, name: str) -> str:
        """The path, relative to the root, that a remote's file name refers to.

        What an open request is checked with: empty names, absolute paths, any ``..``
        component, and names that resolve -- through symbolic links -- to the root
        itself or outside it are refused with :class:`PermissionError` (the escapes) or
        :class:`ValueError` (the rest).
        """
        try:
            return self._resolve(name)
        except _Refused as exc:
            if exc.errno == errno_mod.EACCES:
                raise PermissionError(exc.errno, exc.reason) from None
            raise ValueError(exc.reason) from None

    def _resolve(self, name: str) -> str:
        return resolve_beneath(str(self.root), name)

    def _open_beneath(self, rel: str, flags: int, mode: int) -> int:
        return open_beneath(str(self.root), rel, flags, mode)

    def _file(self, call: str, fd: int) -> _HostFile:
        f = self._files.get(fd)
        if f is None:
            raise _Refused(errno_mod.EBADF, f"{call}: unknown file handle {fd}")
        return f

    def _close(self, fd: int) -> int:
        if fd in (STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO):
            # rpc_demod would close its own console; the host's streams stay open.
            return 0
        f = self._file("close", fd)
        del self._files[fd]
        os.close(f.fd)
        log.info("close fd %d (%r)", fd, f.path)
        return 0

    def _write(self, fd: int, count: int, data: bytes) -> int:
        # Like rpc_demod, write int_field2 bytes: the extra byte C's _write(1, ...)
        # adds to data_len is not part of the text.
        if count < 0 or count > len(data):
            raise _Refused(
                errno_mod.EINVAL,
                f"write: count {count} does not fit the {len(data)} data bytes",
            )
        chunk = data[:count]
        if fd in (STDOUT_FILENO, STDERR_FILENO):
            self._console_write(fd, chunk)
            self.stats.console_out += count
            return count
        if fd == STDIN_FILENO:
            raise _Refused(errno_mod.EBADF, "write: fd 0 is the host's stdin")
        n = os.write(self._file("write", fd).fd, chunk)
        self.stats.bytes_written += n
        return n

    def _read(self, fd: int, count: int) -> bytes:
        if count < 0:
            raise _Refused(errno_mod.EINVAL, f"read: negative count {count}")
        count = min(count, self.max_read)
        if fd == STDIN_FILENO:
            got = self._console_read(count)
            self.stats.console_in += len(got)
            return got
        if fd in (STDOUT_FILENO, STDERR_FILENO):
            raise _Refused(errno_mod.EBADF, f"read: fd {fd} is the host's output")
        got = os.read(self._file("read", fd).fd, count)
        self.stats.bytes_read += len(got)
        return got

    # -- the console ------------------------------------------------------------------------

    def _console_write(self, fd: int, data: bytes) -> None:
        try:
            self._console_write_to(fd, data)
        except (OSError, ValueError) as exc:
            # The host's console is broken (closed, a pipe nobody reads, an encoding
            # that cannot show the text): the remote gets an error, serving goes on.
            raise _Refused(errno_mod.EIO, f"write to fd {fd}: the console failed: {exc}") from None

    def _console_write_to(self, fd: int, data: bytes) -> None:
        stream = self._stdout if fd == STDOUT_FILENO else self._stderr
        if stream is None:
            stream = sys.stdout if fd == STDOUT_FILENO else sys.stderr
        if stream is None:
            return
        if isinstance(stream, io.TextIOBase) or hasattr(stream, "encoding"):
            stream.write(self._decoders[fd].decode(data))
        else:
            stream.write(data)
        stream.flush()

    def _console_read(self, count: int) -> bytes:
        try:
            return self._console_read_line(count)
        except (OSError, ValueError) as exc:
            raise _Refused(errno_mod.EIO, f"read from fd 0: the console failed: {exc}") from None

    def _console_read_line(self, count: int) -> bytes:
        # One line at a time, as a terminal gives it: the remote's scanf/input()
        # must not block while a whole buffer fills.
        if not self._stdin_pending and count:
            stream = self._stdin if self._stdin is not None else sys.stdin
            line = stream.readline() if stream is not None else b""
            self._stdin_pending = line.encode() if isinstance(line, str) else bytes(line)
        got, self._stdin_pending = self._stdin_pending[:count], self._stdin_pending[count:]
        return bytes(got)


# -- the remote side ------------------------------------------------------------------------


class ProxyFile(io.RawIOBase):
    """A file on the host, seen from the remote: unbuffered reads and writes by request.

    Made by :meth:`ProxyClient.open` (usually wrapped in a buffered or text layer).
    Not seekable: the protocol has no lseek.
    """

    def __init__(
        self, client: ProxyClient, fd: int, name: str, mode: str, *, owned: bool = True
    ) -> None:
        super().__init__()
        self._client = client
        self._fd = fd
        self._owned = owned
        self._readable = "r" in mode or "+" in mode
        self._writable = not ("r" in mode and "+" not in mode)
        self.name = name
        self.mode = mode

    @property
    def fd(self) -> int:
        """The descriptor the host gave (not a descriptor of this process)."""
        return self._fd

    def readable(self) -> bool:
        return self._readable

    def writable(self) -> bool:
        return self._writable

    def readinto(self, buffer: Any) -> int:
        """Read at most one answer's worth of bytes into ``buffer``; 0 at end of file."""
        self._check_open()
        if not self._readable:
            raise io.UnsupportedOperation("not readable")
        view = memoryview(buffer).cast("B")
        got = self._client.sys_read(self._fd, len(view))
        view[: len(got)] = got
        return len(got)

    def write(self, data: Any) -> int:
        """Write at most one request's worth of ``data``; return how much was written."""
        self._check_open()
        if not self._writable:
            raise io.UnsupportedOperation("not writable")
        view = memoryview(data).cast("B")
        if not view:
            return 0
        n = self._client.sys_write(self._fd, bytes(view[: self._client.max_write]))
        if n == 0:
            # A buffered writer would ask again forever.
            raise ProxyError("write", 0, errno_mod.EIO, f"to {self.name!r} (nothing written)")
        return n

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def close(self) -> None:
        """Close the host file (a CLOSE request) unless the client is gone."""
        if self.closed:
            return
        try:
            if self._owned:
                self._client._close_file(self._fd)
        finally:
            super().close()

    def __repr__(self) -> str:
        return f"<ProxyFile name={self.name!r} fd={self._fd} mode={self.mode!r}>"


class ProxyClient:
    """The remote side: file, console and terminate requests to a proxy host.

    ``rpmsg``: the remote's rpmsg device.  ``name``: the service.  ``timeout``: seconds
    to wait to be bound and for each answer (None = forever); a read from the console
    waits ``input_timeout`` (default None: a person may take their time).

    The endpoint is announced and the constructor waits until the host is known, as C
    ``rpmsg_rpc_init`` does; when the host announced the service before, the endpoint
    binds to it at once.  Calls must come from one thread at a time.
    """

    def __init__(
        self,
        rpmsg: RpmsgDevice,
        *,
        name: str = PROXY_SERVICE,
        timeout: float | None = 10.0,
        input_timeout: float | None = None,
    ) -> None:
        self.rpmsg = rpmsg
        self.timeout = timeout
        self.input_timeout = input_timeout
        self._gone = ""
        self._closed = False
        self._busy = False
        self._deferred_close: list[int] = []
        known = rpmsg.services.get(name)
        if known is not None:
            # The host's announcement came before our endpoint: bind to it now (what a
            # C ns_bind_cb would do); our first request tells the host our address.
            self.endpoint = rpmsg.create_endpoint(name, dst=known, on_unbind=self._on_unbind)
        else:
            self.endpoint = rpmsg.create_endpoint(name, on_unbind=self._on_unbind)
        try:
            self.endpoint.wait_bound(timeout)
        except BaseException:
            self.endpoint.destroy()
            raise
        self.stdout: TextIO = io.TextIOWrapper(
            io.BufferedWriter(ProxyFile(self, STDOUT_FILENO, "<stdout>", "w", owned=False)),
            encoding="utf-8",
            errors="replace",
            line_buffering=True,
        )
        """The host's console output (fd 1) as a text stream."""
        self.stderr: TextIO = io.TextIOWrapper(
            io.BufferedWriter(ProxyFile(self, STDERR_FILENO, "<stderr>", "w", owned=False)),
            encoding="utf-8",
            errors="replace",
            line_buffering=True,
        )
        """The host's error output (fd 2) as a text stream."""
        self.stdin: TextIO = io.TextIOWrapper(
            io.BufferedReader(ProxyFile(self, STDIN_FILENO, "<stdin>", "r", owned=False)),
            encoding="utf-8",
            errors="replace",
        )
        """The host's console input (fd 0) as a text stream."""

    def _on_unbind(self, ept: Endpoint) -> None:
        self._gone = "the proxy host destroyed its endpoint"

    # -- limits -----------------------------------------------------------------------------

    @property
    def max_write(self) -> int:
        """The most data bytes one write request carries."""
        return max(1, self.endpoint.tx_capacity - SYSCALL.size)

    @property
    def max_read(self) -> int:
        """The most data bytes asked for in one read (the answer must fit a buffer)."""
        capacity = int(getattr(self.rpmsg, "rx_capacity", self.endpoint.tx_capacity))
        return max(1, capacity - SYSCALL.size)

    # -- the calls, one record each -----------------------------------------------------------

    def sys_open(self, path: str | bytes, flags: int, mode: int = DEFAULT_MODE) -> int:
        """``_open``: open ``path`` (relative to the host's root) with Linux ``flags``.

        Returns the host's fd; raises :class:`ProxyError` when the host refuses.
        """
        raw = os.fsencode(path)
        request = encode_open(raw, flags, mode)
        if len(request) > self.endpoint.tx_capacity:
            raise UsageError(
                f"a {len(raw)}-byte path does not fit one request "
                f"({self.endpoint.tx_capacity - SYSCALL.size - 1} bytes at most)"
            )
        answer = self._call(request)
        if answer.int_field1 < 0:
            raise ProxyError("open", answer.int_field1, answer.int_field2 or None, repr(path))
        return answer.int_field1

    def sys_close(self, fd: int) -> None:
        """``_close``: close the host's ``fd``."""
        answer = self._call(encode_close(fd))
        if answer.int_field1 < 0:
            raise ProxyError("close", answer.int_field1, answer.int_field2 or None, f"fd {fd}")

    def sys_write(self, fd: int, data: bytes) -> int:
        """``_write``: one request; returns how many bytes the host wrote."""
        if len(data) > self.max_write:
            raise UsageError(f"{len(data)} bytes exceed one write request ({self.max_write})")
        answer = self._call(encode_write(fd, bytes(data)))
        if answer.int_field1 < 0:
            raise ProxyError("write", answer.int_field1, answer.int_field2 or None, f"fd {fd}")
        if answer.int_field1 > len(data):
            raise MessageError(f"the host says it wrote {answer.int_field1} of {len(data)} bytes")
        return answer.int_field1

    def sys_read(self, fd: int, count: int) -> bytes:
        """``_read``: one request for at most ``count`` bytes (fewer if the answer would
        not fit a buffer); returns what the host read, empty at end of file."""
        if count <= 0:
            return b""
        count = min(count, self.max_read)
        timeout = self.input_timeout if fd == STDIN_FILENO else self.timeout
        answer = self._call(encode_read(fd, count), timeout)
        n = answer.int_field1
        if n < 0:
            raise ProxyError("read", n, answer.int_field2 or None, f"fd {fd}")
        if n > count or answer.data_len != n or len(answer.data) < n:
            # C rpc_demod reads up to 1008 bytes whatever was asked, and rpmsg_send
            # drops what does not fit: the host's file position has moved past data
            # we never got.  C _read returns the count anyway; we say so.
            raise MessageError(
                f"a read answer for at most {count} bytes says {n} bytes were read, "
                f"data_len {answer.data_len}, and carries {len(answer.data)}: "
                "data was lost on the way"
            )
        return answer.data[:n]

    def _call(self, request: bytes, timeout: float | None = None) -> ProxyRecord:
        if self._busy:
            raise UsageError("a proxy call is already in progress (calls cannot nest)")
        self._busy = True
        try:
            self._check_usable()
            self._flush_deferred()
            return self._exchange(request, self.timeout if timeout is None else timeout)
        finally:
            self._busy = False

    def _exchange(self, request: bytes, timeout: float | None) -> ProxyRecord:
        ept = self.endpoint
        while ept.pending:
            stale = ept.recv(timeout=0)
            if stale == LINUX_INIT_MSG:
                log.debug("the host's proxy_app introduced itself (init_msg)")
                continue
            log.warning("discarding a late %d-byte answer from the proxy host", len(stale))
        call_id = SYSCALL.unpack_from(request)[0]
        ept.send(request)
        if not self.rpmsg.wait_until(lambda: bool(ept.pending or self._gone), timeout):
            raise OpenAMPTimeoutError(
                f"the proxy host did not answer the {CALL_NAMES[call_id]} request "
                f"within {timeout} s"
            )
        if not ept.pending:
            self._check_usable()
        answer = decode_record(ept.recv(timeout=0))
        if answer.id == TERM_SYSCALL_ID:
            # rpmsg_retarget.c destroys its endpoint when the host sends TERM.
            self._gone = "the proxy host sent the terminate request"
            ept.destroy()
            raise PeerGoneError(self._gone)
        if answer.id != call_id:
            raise MessageError(f"the answer to a {CALL_NAMES[call_id]} request has id {answer.id}")
        return answer

    def _check_usable(self) -> None:
        if self._closed:
            raise EndpointClosedError("the proxy client is closed")
        if self._gone:
            raise PeerGoneError(self._gone)
        if self.endpoint.closed:
            raise EndpointClosedError("the proxy client's endpoint was destroyed")

    def _close_file(self, fd: int) -> None:
        if self._closed or self._gone or self.endpoint.closed:
            return
        if self._busy:
            # Garbage collection closed a file in the middle of a call: do it next time.
            self._deferred_close.append(fd)
            return
        self.sys_close(fd)

    def _flush_deferred(self) -> None:
        while self._deferred_close:
            fd = self._deferred_close.pop()
            with contextlib.suppress(ProxyError):
                self._exchange(encode_close(fd), self.timeout)

    # -- file-like API ------------------------------------------------------------------------

    def open(
        self,
        path: str | bytes,
        mode: str = "r",
        buffering: int = -1,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
        *,
        perm: int = DEFAULT_MODE,
    ) -> IO[Any]:
        """Open a file in the host's directory, like the built-in :func:`open`.

        ``mode``: ``r``, ``w``, ``a``, ``x``, with ``+`` and ``b``/``t`` (see
        :func:`open_flags`).  ``perm``: permissions of a created file (0o600, as
        rpc_demo).  Returns a text stream (UTF-8 unless ``encoding``), a buffered binary
        one, or with ``buffering=0`` the raw :class:`ProxyFile`.  Not seekable.
        Raises :class:`ProxyError` (an :class:`OSError`) when the host refuses.
        """
        flags, readable, writable, binary = open_flags(mode)
        if buffering == 0 and not binary:
            raise UsageError("an unbuffered file must be binary")
        fd = self.sys_open(path, flags, perm)
        raw_mode = mode.replace("t", "").replace("b", "") + "b"
        raw = ProxyFile(self, fd, os.fsdecode(path), raw_mode)
        if buffering == 0:
            return cast(IO[Any], raw)
        size = buffering if buffering > 1 else io.DEFAULT_BUFFER_SIZE
        buffered: Any
        if readable and writable:
            buffered = io.BufferedRWPair(raw, raw, size)
        elif readable:
            buffered = io.BufferedReader(raw, size)
        else:
            buffered = io.BufferedWriter(raw, size)
        if binary:
            return cast(IO[Any], buffered)
        return io.TextIOWrapper(
            buffered,
            encoding=encoding or "utf-8",
            errors=errors,
            newline=newline,
            line_buffering=buffering == 1,
        )

    def print(self, *values: object, sep: str = " ", end: str = "\n", err: bool = False) -> None:
        """Print on the host's console (stdout; stderr with ``err=True``), flushed."""
        self._check_usable()
        builtins.print(*values, sep=sep, end=end, file=self.stderr if err else self.stdout)
        (self.stderr if err else self.stdout).flush()

    def input(self, prompt: str = "") -> str:
        """Print ``prompt``, read one line from the host's console, without its newline.

        Raises :class:`EOFError` when the host's input has ended, as :func:`input` does.
        """
        self._check_usable()
        if prompt:
            self.print(prompt, end="")
        line = self.stdin.readline()
        if not line:
            raise EOFError("the host's console input has ended")
        return line.removesuffix("\n").removesuffix("\r")

    def terminate(self) -> None:
        """Send the terminate request (no answer), then leave as C ``rpc_demo`` does.

        The host stops serving; our endpoint is destroyed, which announces it.
        """
        self._check_usable()
        for stream in (self.stdout, self.stderr):
            with contextlib.suppress(OpenAMPError, ValueError, OSError):
                stream.flush()
        self.endpoint.send(encode_term())
        self.close()

    def close(self) -> None:
        """Destroy the endpoint (the host stops when it sees it go).  Idempotent."""
        for stream in (self.stdout, self.stderr):
            with contextlib.suppress(OpenAMPError, ValueError, OSError):
                stream.flush()
        self._closed = True
        for stream in (self.stdout, self.stderr, self.stdin):
            with contextlib.suppress(Exception):
                stream.close()
        self.endpoint.destroy()

    def __enter__(self) -> ProxyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the demo -------------------------------------------------------------------------------

DEMO_FILE = "remote.file"
DEMO_LINE = "This is a test string being written to file..\n"
"""What rpc_demo writes (with a newline, so the file reads as a line)."""
DEMO_ESCAPES = ("../escape", "/etc/passwd")


@dataclass
class ProxyDemoResult:
    """What :func:`run_proxy_demo` saw."""

    steps: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """Things a correct host may do but should not: serving paths outside its root (the
    C ``rpc_demod`` serves any path)."""
    echoed: str | None = None
    """The console line the host typed (None at end of input)."""

    @property
    def ok(self) -> bool:
        """True when every step did what it should (warnings do not count)."""
        return not self.problems


def run_proxy_demo(
    rpmsg: RpmsgDevice,
    *,
    report: Callable[[str], object] = print,
    timeout: float | None = 10.0,
    name: str = PROXY_SERVICE,
    file_name: str = DEMO_FILE,
    escapes: Sequence[str] = DEMO_ESCAPES,
) -> ProxyDemoResult:
    """The remote's demo, the steps of C ``rpc_demo``: file I/O, console, terminate.

    Opens ``file_name`` for appending (the flags 0x441 and mode 0600 rpc_demo sends),
    writes a line, closes it, reads it back and checks it; prints a line on the host's
    console, reads one line and prints it back; tries to open each of ``escapes`` and
    warns if the host does not refuse (the C ``rpc_demod`` never does: that is a
    property of the host, not a failure of the exchange); then sends the terminate
    request.  Every step is passed to ``report``.
    """
    result = ProxyDemoResult()

    def step(line: str) -> None:
        result.steps.append(line)
        report(f"proxy demo: {line}")

    def problem(line: str) -> None:
        result.problems.append(line)
        report(f"proxy demo: FAILED: {line}")

    client = ProxyClient(rpmsg, name=name, timeout=timeout)
    try:
        step(f"bound to the proxy host at {client.endpoint.dest_addr:#x}")
        with client.open(file_name, "a") as f:
            f.write(DEMO_LINE)
        step(f"wrote {len(DEMO_LINE)} bytes to {file_name!r}")
        with client.open(file_name, "r") as f:
            content = f.read()
        step(f"read {len(content)} bytes back from {file_name!r}")
        if not content.endswith(DEMO_LINE):
            problem(f"{file_name!r} holds {content[-80:]!r}, not the line written")
        client.print(f"proxy demo: {file_name!r} written and read back on the host")
        client.print("proxy demo: type a line")
        try:
            result.echoed = client.input()
            client.print(f"proxy demo: you typed {result.echoed!r}")
            step(f"read {result.echoed!r} from the host's console")
        except EOFError:
            client.print("proxy demo: no input (end of file)")
            step("the host's console input has ended")
        for path in escapes:
            try:
                client.open(path, "r").close()
            except ProxyError as exc:
                why = errno_mod.errorcode.get(exc.errno, "no errno") if exc.errno else "no errno"
                step(f"opening {path!r} was refused ({why})")
            else:
                line = f"the host let the remote open {path!r} (outside any root)"
                result.warnings.append(line)
                report(f"proxy demo: WARNING: {line}")
        client.print(
            "proxy demo: done" + ("" if result.ok else f", {len(result.problems)} problems")
        )
        client.terminate()
        step("sent the terminate request")
    except OpenAMPError as exc:
        problem(str(exc))
    finally:
        client.close()
    return result


__all__ = [
    "ACK_STATUS_ID",
    "CLOSE_SYSCALL_ID",
    "DEFAULT_MODE",
    "OPEN_SYSCALL_ID",
    "PROXY_SERVICE",
    "READ_SYSCALL_ID",
    "SYSCALL",
    "TERM_SYSCALL_ID",
    "WRITE_SYSCALL_ID",
    "ProxyClient",
    "ProxyDemoResult",
    "ProxyError",
    "ProxyFile",
    "ProxyRecord",
    "ProxyServer",
    "ProxyStats",
    "decode_record",
    "encode_close",
    "encode_open",
    "encode_read",
    "encode_record",
    "encode_term",
    "encode_write",
    "host_open_flags",
    "open_flags",
    "run_proxy_demo",
]

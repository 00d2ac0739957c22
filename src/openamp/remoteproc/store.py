"""Image stores: where a firmware image's bytes come from (the C library's ``image_store_ops``).

A loader never opens a file itself.  It asks an :class:`ImageStore` for byte ranges --
``read(offset, length)`` -- and the store fetches exactly those bytes from wherever the
image lives:

* :class:`FileImageStore` -- a file on disk, opened on first use and read with
  ``os.pread`` (no shared file position, so no seek races);
* :class:`BytesImageStore` -- an image already in memory;
* :class:`StreamingImageStore` -- a binary file object or an iterator of chunks (a
  download, a pipe, a decompressor).  It fetches only the ranges asked for and counts
  what it fetched (``bytes_read``, ``requests``), so a test can show that loading an
  image does not touch its debug sections.

:func:`open_image` turns a path, bytes or a store into a store.

What this module must not do: interpret the bytes (that is :mod:`openamp.remoteproc.elf`'s
job), hand back fewer bytes than asked for (a short image raises
:class:`~openamp.errors.FirmwareImageError` with ``truncated: ...``), or read ahead of
what it is asked for from a seekable source.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Protocol, runtime_checkable

from ..errors import FirmwareImageError, InvalidStateError, UsageError

__all__ = [
    "STREAM_BACKLOG",
    "BytesImageStore",
    "FileImageStore",
    "ImageStore",
    "ImageStoreBase",
    "StreamingImageStore",
    "open_image",
]

STREAM_BACKLOG = 64 * 1024
"""Bytes a forward-only :class:`StreamingImageStore` keeps behind its read position."""

_FORWARD_STEP = 1 << 20  # largest single read from a forward-only source


@runtime_checkable
class ImageStore(Protocol):
    """The bytes of one firmware image, read by range.

    ``name`` labels the image in error messages; ``size`` is its length in bytes.
    ``read(offset, length)`` returns exactly ``length`` bytes or raises
    :class:`~openamp.errors.FirmwareImageError` (``truncated: <name> has N bytes, wanted
    [off, end)``).  ``close()`` releases whatever the store holds; a store is a context
    manager that closes itself on exit.
    """

    @property
    def name(self) -> str:
        """A label for error messages (a path, ``<memory>``, ...)."""
        ...

    @property
    def size(self) -> int:
        """Length of the image in bytes."""
        ...

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes starting at ``offset``."""
        ...

    def close(self) -> None:
        """Release the store's resources; reading afterwards is an error."""
        ...

    def __enter__(self) -> ImageStore: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def _truncated(name: str, size: int, offset: int, length: int) -> FirmwareImageError:
    return FirmwareImageError(
        f"truncated: {name} has {size} bytes, wanted [{offset:#x}, {offset + length:#x})"
    )


def _check_args(offset: int, length: int) -> None:
    if offset < 0 or length < 0:
        raise UsageError(f"read({offset}, {length}): offset and length must not be negative")


class ImageStoreBase:
    """Shared behaviour of the stores here: ``name``, context management, closed state.

    Subclass it to write your own store: implement ``size``, ``_read`` (exactly
    ``length`` bytes, bounds already checked against ``size``) and, if needed, ``close``.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._closed = False

    @property
    def name(self) -> str:
        """A label for error messages."""
        return self._name

    @property
    def size(self) -> int:
        """Length of the image in bytes."""
        raise NotImplementedError

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``, or :class:`FirmwareImageError` (truncated)."""
        _check_args(offset, length)
        self._check_open()
        size = self.size
        if offset + length > size:
            raise _truncated(self._name, size, offset, length)
        return self._read(offset, length)

    def _read(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        """Mark the store closed; reading afterwards raises :class:`InvalidStateError`."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidStateError(f"image store {self._name!r} is closed")

    def __enter__(self) -> ImageStoreBase:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r})"


class FileImageStore(ImageStoreBase):
    """An image in a file.  The file is opened on first use and read with ``os.pread``.

    ``size`` is the file's size when it was opened.  If the file shrinks afterwards, a
    read that comes up short raises ``truncated: ...``.  Opening errors (no such file, no
    permission) propagate as :class:`OSError`: they are not a malformed image.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(os.fspath(path))
        self.path = os.fspath(path)
        self._fd: int | None = None
        self._size = 0

    def _open(self) -> int:
        self._check_open()
        if self._fd is None:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                self._size = os.fstat(fd).st_size
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    @property
    def size(self) -> int:
        """Length of the file in bytes (opens it if needed)."""
        self._open()
        return self._size

    def _read(self, offset: int, length: int) -> bytes:
        fd = self._open()
        parts: list[bytes] = []
        got = 0
        while got < length:
            part = os.pread(fd, length - got, offset + got)
            if not part:
                raise _truncated(self._name, offset + got, offset, length)
            parts.append(part)
            got += len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Close the file descriptor (if it was opened)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        super().close()


class BytesImageStore(ImageStoreBase):
    """An image held in memory (a copy of ``data`` is taken unless it is ``bytes``)."""

    def __init__(self, data: bytes | bytearray | memoryview, name: str = "<memory>") -> None:
        super().__init__(name)
        self._data = data if isinstance(data, bytes) else bytes(data)

    @property
    def size(self) -> int:
        """Length of the image in bytes."""
        return len(self._data)

    def _read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]

    def close(self) -> None:
        """Drop the image's bytes."""
        self._data = b""
        super().close()


@dataclass
class _Kept:
    """Bytes ``[start, start + len(data))`` kept from a forward-only source.

    ``end`` is where keeping stops (``None``: keep everything to the end of the source).
    """

    start: int
    end: int | None
    data: bytearray


class StreamingImageStore(ImageStoreBase):
    """An image read from a file object or an iterator of chunks, only where asked.

    ``source`` is either a binary file object (``read(n)``; ``seek``/``tell`` optional)
    or an iterable of ``bytes`` chunks.  The image starts at the file object's current
    position.  ``size`` is the image length if known; otherwise a seekable source is
    measured by seeking to its end.

    Counters: ``requests`` is the number of :meth:`read` calls served, ``bytes_read`` the
    number of bytes fetched from the source, ``bytes_kept`` what a forward-only source
    holds in memory right now.

    **Seekable source** (``seekable()`` is true): every request seeks and reads exactly
    the range asked for.  Nothing is cached and nothing else is read, so an image with 2
    MiB of debug information costs only the header, table and segment bytes.

    **Forward-only source** (a pipe, a socket file, an iterator of chunks): the store
    reads forward to the end of each request.  Bytes it passes over are dropped, except

    * the last ``backlog`` bytes (:data:`STREAM_BACKLOG` by default), so a small step
      back -- an ELF section-name table just before the section headers -- still works;
    * ranges announced with :meth:`retain` before the stream passed them.  The ELF
      loader retains the file ranges of the loadable segments after reading the
      program headers, so it can read the section headers at the end of the file and
      still copy the segments afterwards; debug sections are read past and dropped.

    Retained bytes are kept until :meth:`close`.  A request for bytes that were passed
    over and not kept raises :class:`FirmwareImageError` saying so.  If ``size`` is not
    given for a forward-only source, asking for it reads the rest of the source and keeps
    all of it (there is no other way to learn the length): pass ``size`` to stream.
    """

    def __init__(
        self,
        source: BinaryIO | Iterable[bytes],
        *,
        size: int | None = None,
        name: str | None = None,
        backlog: int = STREAM_BACKLOG,
    ) -> None:
        if isinstance(source, (bytes, bytearray, memoryview, str)):
            raise UsageError(
                "StreamingImageStore needs a file object or an iterator of chunks; "
                "use BytesImageStore for bytes"
            )
        if size is not None and size < 0:
            raise UsageError(f"size {size} must not be negative")
        if backlog < 0:
            raise UsageError(f"backlog {backlog} must not be negative")
        label = name or getattr(source, "name", None)
        super().__init__(label if isinstance(label, str) else "<stream>")
        self.requests = 0
        self.bytes_read = 0
        self._size = size
        self._backlog_limit = backlog
        self._file: BinaryIO | None = None
        self._chunks: Iterator[bytes] | None = None
        self._base = 0
        self._seekable = False
        if hasattr(source, "read"):
            self._file = source  # type: ignore[assignment]
            self._seekable = _is_seekable(source)
            if self._seekable:
                assert self._file is not None
                self._base = self._file.tell()
        else:
            self._chunks = iter(source)
        # forward-only state
        self._pos = 0  # bytes consumed from the source
        self._pending = b""  # consumed from an iterator but not yet handed on
        self._eof = False
        self._kept: list[_Kept] = []
        self._backlog = bytearray()  # the bytes [pos - len(backlog), pos)

    # -- public ---------------------------------------------------------------------------

    @property
    def seekable(self) -> bool:
        """Whether ranges are fetched by seeking (True) or by reading forward (False)."""
        return self._seekable

    @property
    def size(self) -> int:
        """Length of the image in bytes (may read the rest of a forward-only source)."""
        if self._size is None:
            self._check_open()
            if self._seekable:
                assert self._file is not None
                end = self._file.seek(0, os.SEEK_END)
                self._size = end - self._base
            else:
                start = self._pos - len(self._backlog)
                self._kept.append(_Kept(start, None, bytearray(self._backlog)))
                self._advance(None, None, self._pos)
                self._size = self._pos
        return self._size

    @property
    def bytes_kept(self) -> int:
        """Bytes a forward-only source holds in memory (retained ranges and backlog)."""
        return len(self._backlog) + sum(len(k.data) for k in self._kept)

    def retain(self, offset: int, length: int) -> None:
        """Announce that ``[offset, offset+length)`` will be read later.

        Only matters for a forward-only source: the bytes are kept when the stream passes
        them.  Bytes already passed are kept only if the backlog still holds them.
        """
        _check_args(offset, length)
        if self._seekable or length == 0:
            return
        end = offset + length
        if end <= self._pos:
            start = self._pos - len(self._backlog)
            if offset >= start:
                seed = self._backlog[offset - start : end - start]
                self._kept.append(_Kept(offset, end, bytearray(seed)))
            return
        if offset >= self._pos:
            self._kept.append(_Kept(offset, end, bytearray()))
            return
        start = self._pos - len(self._backlog)
        first = max(offset, start)
        self._kept.append(_Kept(first, end, bytearray(self._backlog[first - start :])))

    def close(self) -> None:
        """Drop everything kept.  The source itself is left open: it belongs to the caller."""
        self._kept.clear()
        self._backlog = bytearray()
        self._pending = b""
        self._chunks = None
        super().close()

    # -- reading --------------------------------------------------------------------------

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``, or :class:`FirmwareImageError`."""
        _check_args(offset, length)
        self._check_open()
        if self._size is not None and offset + length > self._size:
            raise _truncated(self._name, self._size, offset, length)
        self.requests += 1
        if length == 0:
            return b""
        if self._seekable:
            return self._read_seek(offset, length)
        return self._read_forward(offset, length)

    def _read_seek(self, offset: int, length: int) -> bytes:
        assert self._file is not None
        self._file.seek(self._base + offset)
        parts: list[bytes] = []
        got = 0
        while got < length:
            part = self._file.read(length - got)
            if not part:
                raise _truncated(self._name, offset + got, offset, length)
            parts.append(part)
            got += len(part)
        self.bytes_read += got
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_forward(self, offset: int, length: int) -> bytes:
        end = offset + length
        parts: list[bytes] = []
        if offset < self._pos:
            parts.append(self._from_memory(offset, min(end, self._pos)))
        if end > self._pos:
            fresh = bytearray()
            self._advance(end, (max(offset, self._pos), fresh), offset)
            parts.append(bytes(fresh))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _from_memory(self, offset: int, end: int) -> bytes:
        """Bytes ``[offset, end)`` (all behind the read position) from backlog or kept ranges."""
        out = bytearray()
        p = offset
        back_start = self._pos - len(self._backlog)
        while p < end:
            if p >= back_start:
                out += self._backlog[p - back_start : end - back_start]
                p = end
                break
            for kept in self._kept:
                have = kept.start + len(kept.data)
                if kept.start <= p < have:
                    take = min(end, have)
                    out += kept.data[p - kept.start : take - kept.start]
                    p = take
                    break
            else:
                raise FirmwareImageError(
                    f"{self._name}: cannot read [{offset:#x}, {end:#x}) again: the "
                    f"forward-only stream is at {self._pos:#x} and byte {p:#x} was not "
                    "retained (announce it with retain() before the stream passes it)"
                )
        return bytes(out)

    def _advance(
        self, target: int | None, collect: tuple[int, bytearray] | None, wanted_from: int
    ) -> None:
        """Consume the source up to ``target`` (``None``: to its end).

        Bytes at or after ``collect[0]`` are appended to ``collect[1]``; ``wanted_from``
        is where the request started, for the error message if the source ends early.
        """
        while target is None or self._pos < target:
            want = _FORWARD_STEP if target is None else min(target - self._pos, _FORWARD_STEP)
            chunk = self._next_chunk(want)
            if not chunk:
                self._eof = True
                if target is None:
                    return
                if self._size is None:
                    self._size = self._pos
                raise _truncated(self._name, self._pos, wanted_from, target - wanted_from)
            self._feed(chunk, collect)

    def _next_chunk(self, want: int) -> bytes:
        if self._eof:
            return b""
        if self._file is not None:
            data = self._file.read(want)
            self.bytes_read += len(data)
            return data
        while not self._pending:
            if self._chunks is None:
                return b""
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._chunks = None
                return b""
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise UsageError(
                    f"{self._name}: the chunk iterator yielded {type(chunk).__name__}, not bytes"
                )
            self._pending = bytes(chunk)
            self.bytes_read += len(self._pending)
        data, self._pending = self._pending[:want], self._pending[want:]
        return data

    def _feed(self, chunk: bytes, collect: tuple[int, bytearray] | None) -> None:
        start = self._pos
        stop = start + len(chunk)
        for kept in self._kept:
            if kept.start < stop and (kept.end is None or kept.end > start):
                lo = max(kept.start, start)
                hi = stop if kept.end is None else min(kept.end, stop)
                kept.data += chunk[lo - start : hi - start]
        if collect is not None and collect[0] < stop:
            collect[1].extend(chunk[max(collect[0], start) - start :])
        if self._backlog_limit:
            self._backlog += chunk[-self._backlog_limit :]
            excess = len(self._backlog) - self._backlog_limit
            if excess > 0:
                del self._backlog[:excess]
        self._pos = stop


def _is_seekable(source: object) -> bool:
    probe = getattr(source, "seekable", None)
    if not callable(probe) or not hasattr(source, "seek") or not hasattr(source, "tell"):
        return False
    try:
        return bool(probe())
    except (OSError, ValueError):
        return False


def open_image(firmware: str | os.PathLike[str] | bytes | bytearray | ImageStore) -> ImageStore:
    """A store for ``firmware``: a path (:class:`FileImageStore`), bytes
    (:class:`BytesImageStore`) or a store (returned as it is)."""
    if isinstance(firmware, (bytes, bytearray, memoryview)):
        return BytesImageStore(firmware)
    if isinstance(firmware, (str, os.PathLike)):
        return FileImageStore(firmware)
    if isinstance(firmware, ImageStore):
        return firmware
    raise UsageError(
        f"cannot open a firmware image from {type(firmware).__name__}: "
        "give a path, bytes or an ImageStore"
    )

"""The matrix-multiply service and its host: both sides of the C ``matrix_multiply`` demo.

* :class:`MatrixService` plays the C ``matrix_multiplyd`` remote: it announces
  ``rpmsg-openamp-demo-channel``; each request is two matrices (296 bytes), the answer is
  their product (148 bytes) sent back to the requester.  It stops on the shutdown
  message (first u32 ``0xEF56A55A``, not answered), on the host's NS destroy, or when
  the host disconnects.
* :func:`run_matrix` plays the C ``matrix_multiply`` host: it announces the same
  service, waits to be bound, sends ``rounds`` pairs of random 6x6 matrices (elements
  0..9, as the C ``(rand() & 0x7F) % 10``), checks every product, and finally destroys its
  endpoint, which tells the remote to stop.

The wire format is C's ``struct _matrix {u32 size; u32 elements[6][6];}``, little-endian,
row-major: :data:`MATRIX` is its only definition.

Where we differ from ``matrix_multiplyd``: it copies any request into a 296-byte stack
array without looking at the length and trusts the ``size`` fields.  We answer only
requests of exactly 296 bytes whose sizes are at most 6; anything else is logged as a
warning, counted in :attr:`MatrixStats.rejected` and *not* answered (the protocol has
no error reply, and a product of stack garbage would only look like a wrong result).
The service keeps serving.  Valid requests get byte-identical answers, including the C
arithmetic for sizes below 6 (see :func:`multiply`).

This module must not wait on its own: blocking happens in the rpmsg device's waiter.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ..errors import (
    MessageError,
    OpenAMPError,
    OpenAMPTimeoutError,
    PeerGoneError,
    UsageError,
)
from ..rpmsg.core import Endpoint, RpmsgDevice
from ..rpmsg.wire import SHUTDOWN_MSG
from .base import Service
from .echo import is_shutdown

log = logging.getLogger("openamp.services.matrix")

MATRIX_SERVICE = "rpmsg-openamp-demo-channel"
"""The service name of the C matrix demo (the same as the echo demo's)."""
MATRIX_ROUNDS = 200
"""Rounds the C ``matrix_multiply`` host runs."""
MAX_SIZE = 6
"""Rows and columns of the C ``struct _matrix`` (``MAX_SIZE``)."""
U32_MASK = 0xFFFFFFFF

MATRIX = struct.Struct(f"<I{MAX_SIZE * MAX_SIZE}I")
"""``struct _matrix {u32 size; u32 elements[6][6];}``: size @0, element [i][j] @4+4*(6i+j)."""
MATRIX_BYTES = MATRIX.size  # 148
REQUEST_BYTES = 2 * MATRIX_BYTES  # 296
_U32 = struct.Struct("<I")


class Matrix:
    """One ``struct _matrix``: a ``size`` field and 6x6 u32 elements, row-major.

    ``rows``: 6 rows of 6 integers 0..2**32-1.  ``size`` is the value of the size
    field (6 for every matrix the C demos send); it is kept as sent, so a decoded
    matrix can carry an invalid one.
    """

    __slots__ = ("elements", "size")

    def __init__(self, rows: Sequence[Sequence[int]], size: int = MAX_SIZE) -> None:
        if len(rows) != MAX_SIZE or any(len(r) != MAX_SIZE for r in rows):
            raise UsageError(f"a matrix has {MAX_SIZE}x{MAX_SIZE} elements")
        elements = tuple(tuple(int(v) for v in row) for row in rows)
        if any(not 0 <= v <= U32_MASK for row in elements for v in row):
            raise UsageError("matrix elements are u32 values, 0..0xFFFFFFFF")
        if not 0 <= size <= U32_MASK:
            raise UsageError(f"the size field is a u32, got {size}")
        self.elements: tuple[tuple[int, ...], ...] = elements
        self.size = size

    @classmethod
    def random(cls, rng: random.Random) -> Matrix:
        """A 6x6 matrix of elements 0..9, drawn like C ``(rand() & 0x7F) % 10``."""
        return cls(
            [[(rng.getrandbits(31) & 0x7F) % 10 for _ in range(MAX_SIZE)] for _ in range(MAX_SIZE)]
        )

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> Matrix:
        """Decode the 148 bytes at ``offset``."""
        size, *flat = MATRIX.unpack_from(data, offset)
        return cls([flat[i : i + MAX_SIZE] for i in range(0, len(flat), MAX_SIZE)], size)

    def pack(self) -> bytes:
        """The 148-byte wire form."""
        return MATRIX.pack(self.size, *self.flat())

    def flat(self) -> Iterator[int]:
        """The 36 elements in wire (row-major) order."""
        for row in self.elements:
            yield from row

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Matrix):
            return NotImplemented
        return self.size == other.size and self.elements == other.elements

    def __hash__(self) -> int:
        return hash((self.size, self.elements))

    def __repr__(self) -> str:
        return f"Matrix({[list(r) for r in self.elements]!r}, size={self.size})"

    def __str__(self) -> str:
        n = min(self.size, MAX_SIZE)
        return "\n".join(" ".join(f"{v:3d}" for v in row[:n]) for row in self.elements[:n])


def multiply(a: Matrix, b: Matrix) -> Matrix:
    """``a x b`` as ``matrix_multiplyd`` computes it: u32 arithmetic, wrapping mod 2**32.

    For the 6x6 matrices of the demos this is the ordinary product.  For smaller size
    fields the C loops are kept: the result's size is ``a.size``, element [i][j] for
    ``i < a.size, j < b.size`` is ``sum(a[i][k] * b[k][j] for k < a.size)``, the rest 0.
    Sizes above 6 would make C read past its arrays; they raise :class:`UsageError`.
    """
    if a.size > MAX_SIZE or b.size > MAX_SIZE:
        raise UsageError(f"matrix sizes {a.size} and {b.size}: at most {MAX_SIZE}")
    n, m = a.size, b.size
    ae, be = a.elements, b.elements
    rows = [[0] * MAX_SIZE for _ in range(MAX_SIZE)]
    for i in range(n):
        for j in range(m):
            rows[i][j] = sum(ae[i][k] * be[k][j] for k in range(n)) & U32_MASK
    return Matrix(rows, n)


def encode_request(a: Matrix, b: Matrix) -> bytes:
    """A request: ``a`` then ``b``, 296 bytes."""
    return a.pack() + b.pack()


def decode_request(data: bytes | bytearray | memoryview) -> tuple[Matrix, Matrix]:
    """The two matrices of a request; :class:`MessageError` unless it is 296 bytes."""
    if len(data) != REQUEST_BYTES:
        raise MessageError(
            f"a matrix request is two {MATRIX_BYTES}-byte matrices ({REQUEST_BYTES} bytes), "
            f"got {len(data)} bytes"
        )
    return Matrix.unpack(data, 0), Matrix.unpack(data, MATRIX_BYTES)


def decode_reply(data: bytes | bytearray | memoryview) -> Matrix:
    """The product in a reply; :class:`MessageError` unless it is 148 bytes."""
    if len(data) != MATRIX_BYTES:
        raise MessageError(f"a matrix reply is {MATRIX_BYTES} bytes, got {len(data)}")
    return Matrix.unpack(data)


# -- the remote -------------------------------------------------------------------------


@dataclass
class MatrixStats:
    """What a matrix service did."""

    requests: int = 0
    """Requests answered with a product."""
    rejected: int = 0
    """Malformed requests (wrong length, size field over 6): logged, not answered."""
    stop_reason: str = ""


class MatrixService(Service):
    """Multiply the matrix pairs sent to ``name`` (see the module docstring)."""

    SERVICE_NAME = MATRIX_SERVICE

    def __init__(self, rpmsg: RpmsgDevice, name: str = MATRIX_SERVICE) -> None:
        self.stats = MatrixStats()
        super().__init__(rpmsg, name)

    def on_message(self, ept: Endpoint, data: memoryview, src: int) -> None:
        """Answer a request with the product; stop on the shutdown message."""
        if is_shutdown(data):
            log.info("shutdown message received from %#x", src)
            self.stop("shutdown message")
            return
        try:
            a, b = decode_request(data)
            product = multiply(a, b)
        except (MessageError, UsageError) as exc:
            self.stats.rejected += 1
            log.warning("not answering a %d-byte request from %#x: %s", len(data), src, exc)
            return
        try:
            ept.sendto(product.pack(), src)
        except PeerGoneError:
            raise
        except OpenAMPError as exc:
            log.error("could not answer a request from %#x: %s", src, exc)
            return
        self.stats.requests += 1
        if self.stats.requests == 1:
            log.info("first request from %#x answered", src)
        log.debug("request %d from %#x answered", self.stats.requests, src)

    def on_unbind(self, ept: Endpoint) -> None:
        """The host destroyed its endpoint: stop (C ``rpmsg_service_unbind``)."""
        log.info("the host destroyed its endpoint")
        super().on_unbind(ept)

    def run(self, timeout: float | None = None) -> MatrixStats:
        """Serve until a stop condition or ``timeout`` seconds (None = no limit).

        The endpoint is destroyed on return (an NS destroy to the host).
        """
        self.stats.stop_reason = self.serve(timeout)
        return self.stats


# -- the host ---------------------------------------------------------------------------


@dataclass
class MatrixResult:
    """The outcome of :func:`run_matrix`."""

    rounds: int = 0
    """Rounds asked for."""
    seed: int = 0
    """The random seed used: pass it again to repeat the same matrices."""
    sent: int = 0
    received: int = 0
    errors: int = 0
    elapsed: float = 0.0
    rtts: list[float] = field(default_factory=list)
    """Round-trip time of each round, seconds."""
    local_addr: int = 0
    remote_addr: int = 0
    last: tuple[Matrix, Matrix, Matrix] | None = None
    """The last round's ``(a, b, product received)``; None if that answer was missing or
    not 148 bytes."""
    problems: list[str] = field(default_factory=list)
    """What went wrong, one line per error (at most 20 kept)."""

    @property
    def ok(self) -> bool:
        """True when every round came back with the right product."""
        return self.errors == 0 and self.received == self.sent == self.rounds


def run_matrix(
    rpmsg: RpmsgDevice,
    *,
    rounds: int = MATRIX_ROUNDS,
    seed: int | None = None,
    timeout: float = 5.0,
    name: str = MATRIX_SERVICE,
    shutdown: bool = False,
) -> MatrixResult:
    """Send ``rounds`` pairs of random 6x6 matrices and check every product.

    ``seed``: seed of the matrices (None: a fresh one, reported in the result).
    ``timeout``: seconds to wait for binding and for each answer.  ``shutdown``: also
    send the 4-byte shutdown message at the end, as Linux's ``mat_mul_demo`` does.  A
    wrong answer is counted and the rounds go on; a missing one ends the run.  The
    endpoint is destroyed at the end, which stops a C or Python matrix remote.
    """
    if rounds < 0:
        raise UsageError(f"rounds must be >= 0, got {rounds}")
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    result = MatrixResult(rounds=rounds, seed=seed)
    ept = rpmsg.create_endpoint(name)  # announced; bound by the remote's announcement
    try:
        ept.wait_bound(timeout)
    except BaseException:
        ept.destroy()
        raise
    result.local_addr = ept.addr
    result.remote_addr = remote = ept.dest_addr

    def answered_or_gone() -> bool:
        return ept.pending > 0 or rpmsg.services.get(name) != remote

    try:
        start = time.perf_counter()
        for r in range(rounds):
            a, b = Matrix.random(rng), Matrix.random(rng)
            want = multiply(a, b)
            t0 = time.perf_counter()
            ept.send(encode_request(a, b), timeout=timeout)
            result.sent += 1
            if not rpmsg.wait_until(answered_or_gone, timeout):
                result.errors += 1
                _note(result, f"round {r}: no answer within {timeout} s")
                break
            if not ept.pending:
                result.errors += 1
                _note(result, f"round {r}: the remote destroyed its endpoint")
                break
            reply = ept.recv(timeout=0)
            result.rtts.append(time.perf_counter() - t0)
            result.received += 1
            problem = _check(reply, want)
            if problem:
                result.errors += 1
                _note(result, f"round {r}: {problem}")
            if r == rounds - 1 and len(reply) == MATRIX_BYTES:
                result.last = (a, b, Matrix.unpack(reply))
        result.elapsed = time.perf_counter() - start
        if shutdown and rpmsg.services.get(name) == remote:
            ept.send(_U32.pack(SHUTDOWN_MSG), timeout=timeout)
    except OpenAMPTimeoutError as exc:
        result.errors += 1
        _note(result, str(exc))
    finally:
        ept.destroy()  # announces the destroy; never raises for a vanished peer
    return result


def _check(reply: bytes, want: Matrix) -> str:
    """Why ``reply`` is not the 148-byte encoding of ``want`` ('' when it is)."""
    if len(reply) != MATRIX_BYTES:
        return f"the answer is {len(reply)} bytes, want {MATRIX_BYTES}"
    got = Matrix.unpack(reply)
    if got.size != want.size:
        return f"size field {got.size}, want {want.size}"
    for i, (grow, wrow) in enumerate(zip(got.elements, want.elements)):
        for j, (g, w) in enumerate(zip(grow, wrow)):
            if g != w:
                bad = sum(1 for x, y in zip(got.flat(), want.flat()) if x != y)
                return f"element [{i}][{j}] is {g}, want {w} ({bad} of 36 elements differ)"
    return ""


def _note(result: MatrixResult, line: str) -> None:
    if len(result.problems) < 20:
        result.problems.append(line)


__all__ = [
    "MATRIX",
    "MATRIX_BYTES",
    "MATRIX_ROUNDS",
    "MATRIX_SERVICE",
    "MAX_SIZE",
    "REQUEST_BYTES",
    "Matrix",
    "MatrixResult",
    "MatrixService",
    "MatrixStats",
    "decode_reply",
    "decode_request",
    "encode_request",
    "multiply",
    "run_matrix",
]

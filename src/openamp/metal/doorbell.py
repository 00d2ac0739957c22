"""Doorbells: how one side wakes the other ("kick"), as libmetal's IPI does.

A kick carries no data; it only says "look at shared memory".  Kicks may coalesce: two
kicks the receiver has not consumed yet wake it once, which is enough because the
receiver re-reads shared memory after every wake-up.  Every doorbell implements the
:class:`Doorbell` protocol:

* :meth:`~Doorbell.kick` never blocks;
* :meth:`~Doorbell.drain` consumes every pending kick without blocking;
* :meth:`~Doorbell.wait_readable` blocks until a kick is pending *without* consuming it,
  which is what lets a waiter use the race-free order drain, check shared memory, block
  (see :mod:`openamp.metal.wait`);
* :meth:`~Doorbell.fileno` gives a descriptor for ``select``/``asyncio`` where one exists.

Implementations:

* :class:`UnixSocketDoorbell` (with :class:`UnixSocketServer`) — wire-compatible with the C
  libmetal Linux "generic" machine: one byte ``0x01`` per kick on a connected UNIX
  stream socket (``/tmp/openamp.event.0`` there), every pending byte discarded on
  receive.  It notices a peer that went away.
* :class:`EventFdDoorbell` — two eventfds, for two processes of ours (the fds pass to a
  child with ``subprocess``'s ``pass_fds``).  It cannot notice a peer that went away.
* :class:`InProcessDoorbell` — two sides in one process (threads, deterministic tests);
  it has no file descriptor.

A doorbell has one consumer: if two threads drain the same doorbell, one of them can
consume the kick the other one was waiting for.  Dispatching work to several waiters is
the job of the layer above (the C library likewise runs every vring callback on a
single notification).

This module knows nothing about what the peer put into shared memory and never looks
at it; it does not start threads either.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import stat
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, TypeVar

from ..errors import InvalidStateError, OpenAMPTimeoutError, PeerGoneError, UsageError
from .deadline import Deadline

__all__ = [
    "KICK_BYTE",
    "Doorbell",
    "EventFdDoorbell",
    "InProcessDoorbell",
    "UnixSocketDoorbell",
    "UnixSocketServer",
]

#: What the C Linux machine sends for one kick (``send(fd, &b, 1, MSG_NOSIGNAL)``, b = 1).
KICK_BYTE = b"\x01"

_RECV_CHUNK = 4096
_CONNECT_RETRY_STEP_S = 0.005
_CONNECT_RETRY_MAX_S = 0.1


class Doorbell(Protocol):
    """What the layers above need from a doorbell.

    ``kicks_sent`` counts kicks handed to the peer, ``kicks_received`` kicks consumed
    by :meth:`drain` (for a UNIX socket: bytes).
    """

    kicks_sent: int
    kicks_received: int

    def kick(self) -> None:
        """Wake the peer.  Never blocks.

        If the peer already has a kick pending that it has not consumed, this one may be
        dropped (coalesced): the pending one wakes the peer anyway.
        """
        ...

    def drain(self) -> int:
        """Consume every pending kick without blocking and return how many there were.

        Raises :class:`~openamp.errors.PeerGoneError` when the peer has closed its end
        and no kick is left.
        """
        ...

    def wait_readable(self, timeout: float | None) -> bool:
        """Block until a kick is pending, without consuming it.

        ``timeout`` is in seconds; ``None`` waits forever, 0 (or less) only checks.
        Returns True if a kick is pending (or the peer has gone, so that the next
        :meth:`drain` raises), False at the timeout.
        """
        ...

    def fileno(self) -> int:
        """A descriptor that polls readable while a kick is pending (for select/asyncio)."""
        ...

    def close(self) -> None:
        """Release the doorbell's resources.  Idempotent."""
        ...


_D = TypeVar("_D", bound="_ContextManaged")


class _ContextManaged:
    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _D) -> _D:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _poll_readable(fd: int, timeout: float | None) -> bool:
    """Whether ``fd`` becomes readable (or hung up) within ``timeout`` seconds (None: ever)."""
    # A fresh poll object per call: one poll object must not be polled by two threads.
    p = select.poll()
    p.register(fd, select.POLLIN)
    ms = None if timeout is None else max(0.0, timeout) * 1000.0
    return bool(p.poll(ms))


# -- UNIX stream socket (C libmetal Linux machine) -----------------------------------------


class UnixSocketDoorbell(_ContextManaged):
    """A doorbell over a connected UNIX stream socket, compatible with the C Linux machine.

    A kick is one byte ``0x01`` sent with ``MSG_NOSIGNAL``; :meth:`drain` reads and
    discards every pending byte.  The socket is non-blocking: a kick that finds the
    socket buffer full is dropped and counted in ``kicks_coalesced`` (the bytes already
    queued wake the peer).  ``kicks_sent`` counts bytes actually written, so once the
    peer has drained everything its ``kicks_received`` equals our ``kicks_sent``.

    Get one from :meth:`UnixSocketServer.accept` (the C machine's process 0 side),
    :meth:`connect` (process 1 side), :meth:`pair` or :meth:`from_fd`.  ``path`` is the
    socket path it was made from (None for a socketpair), for messages.

    The peer closing its end is noticed: :meth:`wait_readable` returns True,
    :meth:`drain` raises :class:`~openamp.errors.PeerGoneError` (after returning any
    kicks the peer sent before closing) and so does :meth:`kick`.
    """

    def __init__(self, sock: socket.socket, path: str | None = None) -> None:
        """Take over the connected UNIX stream socket ``sock`` (made non-blocking)."""
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise UsageError(
                f"UnixSocketDoorbell needs an AF_UNIX SOCK_STREAM socket, got {sock!r}"
            )
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self.path = path
        self.kicks_sent = 0
        self.kicks_received = 0
        self.kicks_coalesced = 0
        self._closed = False

    @classmethod
    def connect(
        cls, path: str | os.PathLike[str], timeout: float | None = 10.0
    ) -> UnixSocketDoorbell:
        """Connect to the doorbell server listening on ``path`` (the C machine's client side).

        While the path does not exist or nobody listens on it yet, retries with short
        growing sleeps (5 ms more each time, at most 100 ms), as the C client retries
        with ``i * 10 ms``.  ``timeout`` is in seconds; ``None`` retries forever, 0 tries
        once.  Gives up with :class:`~openamp.errors.OpenAMPTimeoutError` naming the path.
        """
        p = os.fspath(path)
        deadline = Deadline(timeout)
        attempt = 0
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                left = deadline.remaining()
                if left is not None:
                    # a full listen backlog makes connect() block
                    sock.settimeout(max(left, 0.001))
                sock.connect(p)
            except (FileNotFoundError, ConnectionRefusedError, BlockingIOError, TimeoutError) as e:
                sock.close()
                last_error = e
            except BaseException:
                sock.close()
                raise
            else:
                return cls(sock, p)
            attempt += 1
            delay = min(_CONNECT_RETRY_STEP_S * attempt, _CONNECT_RETRY_MAX_S)
            remaining = deadline.remaining()
            if remaining is not None:
                if remaining == 0.0:
                    reason = last_error.strerror or type(last_error).__name__
                    raise OpenAMPTimeoutError(
                        f"could not connect to doorbell socket {p} within {timeout} s "
                        f"({attempt} attempts; last error: {reason}); is the server side running?"
                    ) from last_error
                delay = min(delay, remaining)
            time.sleep(delay)

    @classmethod
    def pair(cls) -> tuple[UnixSocketDoorbell, UnixSocketDoorbell]:
        """Two connected doorbells from ``socketpair()`` (no path involved)."""
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return cls(a), cls(b)

    @classmethod
    def from_fd(cls, fd: int, path: str | None = None) -> UnixSocketDoorbell:
        """Take over an inherited descriptor of a connected UNIX stream socket."""
        return cls(socket.socket(fileno=fd), path)

    def _where(self) -> str:
        return f"doorbell socket {self.path}" if self.path else "doorbell socket"

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidStateError(f"{self._where()} is closed")

    def kick(self) -> None:
        """Send one byte ``0x01``.  Never blocks; see the class docstring for a full buffer.

        Raises :class:`~openamp.errors.PeerGoneError` when the peer has closed its end.
        """
        self._check_open()
        try:
            self._sock.send(KICK_BYTE, socket.MSG_NOSIGNAL)
        except BlockingIOError:
            self.kicks_coalesced += 1
            return
        except (BrokenPipeError, ConnectionResetError) as e:
            raise PeerGoneError(f"peer closed {self._where()}") from e
        self.kicks_sent += 1

    def drain(self) -> int:
        """Read and discard every pending byte; return how many.

        Raises :class:`~openamp.errors.PeerGoneError` when the peer has closed its end
        and nothing is left to read.  Bytes the peer sent before closing are returned
        first; the call after that raises.
        """
        self._check_open()
        n = 0
        while True:
            try:
                data = self._sock.recv(_RECV_CHUNK)
            except BlockingIOError:
                break
            except ConnectionResetError as e:
                self.kicks_received += n
                raise PeerGoneError(f"peer reset {self._where()}") from e
            if not data:
                if n:
                    break
                raise PeerGoneError(f"peer closed {self._where()}")
            n += len(data)
        self.kicks_received += n
        return n

    def wait_readable(self, timeout: float | None) -> bool:
        """Block until a byte is pending or the peer has closed, without reading.

        ``timeout`` is in seconds; ``None`` waits forever, 0 (or less) only checks.
        Returns False at the timeout.
        """
        self._check_open()
        return _poll_readable(self._fd, timeout)

    def fileno(self) -> int:
        """The socket's descriptor (readable while a kick is pending or the peer is gone)."""
        self._check_open()
        return self._fd

    def peer_closed(self) -> bool:
        """Whether the peer has closed its end (or reset it), without consuming a kick."""
        if self._closed:
            return True
        try:
            data = self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return not data

    def hang_up(self) -> None:
        """End the connection without closing our descriptor.  Idempotent.

        Every thread blocked in :meth:`wait_readable` wakes, and every later
        :meth:`drain` or :meth:`kick` raises :class:`~openamp.errors.PeerGoneError`;
        the descriptor stays valid (so nothing blocked on it reads a reused number) until
        :meth:`close`.  A platform uses this to take a link down under another thread.
        """
        if not self._closed:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def shutdown(self) -> None:
        """End the connection for every holder of the socket, then :meth:`close`.

        Unlike :meth:`close`, this also ends the connection for copies of the descriptor
        held elsewhere (a child that inherited it), and it wakes a thread of ours blocked
        in :meth:`wait_readable` on this doorbell.  Idempotent.
        """
        if not self._closed:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        self.close()

    def close(self) -> None:
        """Close our descriptor.  Idempotent.

        The peer sees end-of-file once no process holds the socket any more, so closing
        the parent's copy of a socket passed to a child leaves the child's connection
        intact.  Closing does not wake another thread blocked in :meth:`wait_readable`;
        use :meth:`shutdown` for that.
        """
        if self._closed:
            return
        self._closed = True
        self._sock.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd}"
        return f"UnixSocketDoorbell({self.path!r}, {state})"


class UnixSocketServer(_ContextManaged):
    """The listening side of the C Linux machine's doorbell socket (its process 0).

    The constructor does what the C server does: unlink ``path``, bind, ``listen(5)``.
    Because it already listens, a client may connect before :meth:`accept` is called.
    :meth:`accept` takes exactly one peer, then closes the listener and removes the path,
    so nothing is left behind.  :meth:`close` (also on leaving a ``with`` block) closes
    the listener and removes the path if :meth:`accept` never succeeded.
    """

    def __init__(self, path: str | os.PathLike[str], *, backlog: int = 5) -> None:
        """Listen on the UNIX socket ``path``, replacing whatever file is there."""
        self.path = os.fspath(path)
        if not self.path:
            raise UsageError("doorbell socket path must not be empty")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            sock.listen(backlog)
            sock.setblocking(False)
            st = os.stat(self.path)
        except BaseException:
            sock.close()
            raise
        self._listener: socket.socket | None = sock
        # Remember which file we created, so we never unlink someone else's socket that
        # replaced ours at the same path.
        self._inode = (st.st_dev, st.st_ino)

    def accept(self, timeout: float | None) -> UnixSocketDoorbell:
        """Wait for one peer to connect and return the doorbell to it.

        ``timeout`` is in seconds; ``None`` waits forever, 0 only checks for a peer that
        already connected.  At the timeout raises
        :class:`~openamp.errors.OpenAMPTimeoutError` naming the path; the server keeps
        listening then, so ``accept`` may be called again.  After a successful accept
        the listener is closed and the path removed.
        """
        listener = self._listener
        if listener is None:
            raise InvalidStateError(
                f"doorbell server on {self.path} is closed (accept takes one peer)"
            )
        deadline = Deadline(timeout)
        while True:
            if not _poll_readable(listener.fileno(), deadline.remaining()):
                raise OpenAMPTimeoutError(
                    f"no peer connected to doorbell socket {self.path} within {timeout} s"
                )
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                continue
            break
        self.close()
        return UnixSocketDoorbell(conn, self.path)

    def fileno(self) -> int:
        """The listener's descriptor (readable when a peer is waiting to be accepted)."""
        if self._listener is None:
            raise InvalidStateError(f"doorbell server on {self.path} is closed")
        return self._listener.fileno()

    def close(self) -> None:
        """Stop listening and remove the socket file.  Idempotent."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.close()
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._listener is None else "listening"
        return f"UnixSocketServer({self.path!r}, {state})"


# -- eventfd ---------------------------------------------------------------------------------


class EventFdDoorbell(_ContextManaged):
    """A doorbell made of two eventfds: one we read (``rx_fd``), one the peer reads (``tx_fd``).

    A kick adds 1 to the peer's eventfd counter and :meth:`drain` reads and resets ours,
    so counts are exact (no coalescing short of a 2**64 - 2 overflow).  Both sides can
    live in different processes of ours: build them with :meth:`pair`, start the child
    with ``subprocess.Popen(..., pass_fds=child_side.fds)``, rebuild the child's side
    there with :meth:`from_fds`, and close the child's side in the parent.

    An eventfd cannot tell that the other side went away: :meth:`drain` never raises
    :class:`~openamp.errors.PeerGoneError` and a waiter only wakes at its timeout.
    Watch the peer process separately.
    """

    def __init__(self, rx_fd: int, tx_fd: int) -> None:
        """Use (and own: :meth:`close` closes them) the eventfds ``rx_fd`` and ``tx_fd``."""
        self.rx_fd = rx_fd
        self.tx_fd = tx_fd
        self.kicks_sent = 0
        self.kicks_received = 0
        self.kicks_coalesced = 0
        self._closed = False

    @classmethod
    def pair(cls, *, inheritable: bool = False) -> tuple[EventFdDoorbell, EventFdDoorbell]:
        """Two connected sides, each owning its own two descriptors.

        ``inheritable=True`` creates them without close-on-exec, for ``os.exec*`` or
        ``subprocess`` with ``close_fds=False``; ``pass_fds`` works either way.
        """
        flags = os.EFD_NONBLOCK | (0 if inheritable else os.EFD_CLOEXEC)
        fds: list[int] = []
        try:
            a = os.eventfd(0, flags)
            fds.append(a)
            b = os.eventfd(0, flags)
            fds.append(b)
            # each side gets its own descriptors so that closing one side (e.g. the
            # child's copy in the parent) leaves the other intact
            a2 = os.dup(a)
            fds.append(a2)
            b2 = os.dup(b)
            fds.append(b2)
            if inheritable:
                os.set_inheritable(a2, True)
                os.set_inheritable(b2, True)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return cls(rx_fd=a, tx_fd=b2), cls(rx_fd=b, tx_fd=a2)

    @classmethod
    def from_fds(cls, rx_fd: int, tx_fd: int) -> EventFdDoorbell:
        """One side from two inherited eventfd numbers (the ``fds`` of a side of :meth:`pair`).

        The descriptors are made non-blocking; the new object owns them.
        """
        os.set_blocking(rx_fd, False)
        os.set_blocking(tx_fd, False)
        return cls(rx_fd, tx_fd)

    @property
    def fds(self) -> tuple[int, int]:
        """``(rx_fd, tx_fd)``: what to pass to a child and to :meth:`from_fds` there."""
        return self.rx_fd, self.tx_fd

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidStateError("eventfd doorbell is closed")

    def kick(self) -> None:
        """Add 1 to the peer's counter.  Never blocks."""
        self._check_open()
        try:
            os.eventfd_write(self.tx_fd, 1)
        except BlockingIOError:
            self.kicks_coalesced += 1
            return
        self.kicks_sent += 1

    def drain(self) -> int:
        """Read and reset our counter; return the number of kicks it held (0 if none)."""
        self._check_open()
        try:
            n = os.eventfd_read(self.rx_fd)
        except BlockingIOError:
            return 0
        self.kicks_received += n
        return n

    def wait_readable(self, timeout: float | None) -> bool:
        """Block until a kick is pending, without consuming it.

        ``timeout`` is in seconds; ``None`` waits forever (even if the peer has died:
        an eventfd cannot tell), 0 (or less) only checks.  Returns False at the timeout.
        """
        self._check_open()
        return _poll_readable(self.rx_fd, timeout)

    def fileno(self) -> int:
        """``rx_fd``: readable while a kick is pending."""
        self._check_open()
        return self.rx_fd

    def close(self) -> None:
        """Close both descriptors.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        os.close(self.rx_fd)
        os.close(self.tx_fd)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"rx_fd={self.rx_fd}, tx_fd={self.tx_fd}"
        return f"EventFdDoorbell({state})"


# -- in one process ------------------------------------------------------------------------


class InProcessDoorbell(_ContextManaged):
    """One side of a doorbell whose two sides live in the same process.

    Made with :meth:`pair`.  A kick adds to the peer's pending count under the peer's
    :class:`threading.Condition` (so a thread blocked in :meth:`wait_readable` wakes) and
    then calls the peer's ``on_kick`` callback, if set, in the *kicking* thread; the
    callback must be quick and must not block.  Closing one side is seen by the other
    as a peer that went away.  There is no file descriptor: :meth:`fileno` raises
    :class:`~openamp.errors.UsageError`.
    """

    def __init__(self) -> None:
        """An unconnected side; use :meth:`pair`."""
        self._cond = threading.Condition()
        self._pending = 0
        self._peer: InProcessDoorbell | None = None
        self._peer_gone = False
        self._closed = False
        self.kicks_sent = 0
        self.kicks_received = 0
        self.kicks_coalesced = 0
        #: Called (with no arguments, in the kicker's thread) after each kick we receive.
        self.on_kick: Callable[[], None] | None = None

    @classmethod
    def pair(cls) -> tuple[InProcessDoorbell, InProcessDoorbell]:
        """Two connected sides."""
        a, b = cls(), cls()
        a._peer, b._peer = b, a
        return a, b

    def _connected_peer(self) -> InProcessDoorbell:
        if self._closed:
            raise InvalidStateError("in-process doorbell is closed")
        if self._peer is None:
            raise InvalidStateError(
                "in-process doorbell is not connected; use InProcessDoorbell.pair()"
            )
        return self._peer

    def kick(self) -> None:
        """Mark a kick pending on the peer and call its ``on_kick``.  Never blocks.

        Raises :class:`~openamp.errors.PeerGoneError` if the peer side was closed.
        """
        peer = self._connected_peer()
        with peer._cond:
            if peer._closed:
                raise PeerGoneError("peer side of the in-process doorbell is closed")
            peer._pending += 1
            peer._cond.notify_all()
        self.kicks_sent += 1
        callback = peer.on_kick
        if callback is not None:
            callback()

    def drain(self) -> int:
        """Consume the pending kicks and return how many there were.

        Raises :class:`~openamp.errors.PeerGoneError` if none is pending and the peer
        side was closed.
        """
        self._connected_peer()
        with self._cond:
            n, self._pending = self._pending, 0
            if n == 0 and self._peer_gone:
                raise PeerGoneError("peer side of the in-process doorbell is closed")
        self.kicks_received += n
        return n

    def wait_readable(self, timeout: float | None) -> bool:
        """Block until a kick is pending (or the peer side is closed), without consuming it.

        ``timeout`` is in seconds; ``None`` waits forever, 0 (or less) only checks.
        Returns False at the timeout.  Closing this side wakes a waiting thread (True).
        """
        self._connected_peer()
        with self._cond:
            return self._cond.wait_for(
                lambda: self._pending > 0 or self._peer_gone or self._closed,
                None if timeout is None else max(0.0, timeout),
            )

    def fileno(self) -> int:
        """Always raises :class:`~openamp.errors.UsageError`: there is no descriptor."""
        raise UsageError(
            "InProcessDoorbell has no file descriptor; use UnixSocketDoorbell or "
            "EventFdDoorbell to wait with select/asyncio"
        )

    def close(self) -> None:
        """Close this side; the peer sees it gone.  Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        peer = self._peer
        if peer is not None:
            with peer._cond:
                peer._peer_gone = True
                peer._cond.notify_all()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"pending={self._pending}"
        return f"InProcessDoorbell({state})"


def reap_stale_sockets(
    directory: str = "/tmp", pattern: str = "openamp-*.event", *, min_age: float | None = None
) -> list[str]:
    """Remove doorbell socket paths in ``directory`` that nobody listens on any more.

    Only names that embed their creator's pid (:func:`openamp.metal.shm.unique_name`)
    qualify, when that process is gone, nothing accepts on the socket and it is older
    than ``min_age`` seconds; the fixed C name ``/tmp/openamp.event.0`` never does.
    Returns the paths removed.
    """
    import fnmatch

    from . import shm

    removed: list[str] = []
    now = time.time()
    if min_age is None:
        min_age = shm.STALE_AGE_S
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        found = shm._PID_IN_NAME.search(name)
        if (
            not fnmatch.fnmatchcase(name, pattern)
            or found is None
            or shm._alive(int(found.group(1)))
        ):
            continue
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISSOCK(st.st_mode) or now - st.st_mtime < min_age:
            continue
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.setblocking(False)
            probe.connect(path)
        except ConnectionRefusedError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed.append(path)
        except OSError:
            pass  # a full backlog or anything else: someone may be there, leave it
        finally:
            probe.close()
    return removed

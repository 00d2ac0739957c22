"""Doorbells: UNIX-socket kicks compatible with the C Linux machine, eventfd, in-process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from openamp.errors import (
    InvalidStateError,
    OpenAMPTimeoutError,
    PeerGoneError,
    UsageError,
)
from openamp.metal import (
    KICK_BYTE,
    Doorbell,
    EventFdDoorbell,
    InProcessDoorbell,
    UnixSocketDoorbell,
    UnixSocketServer,
    unique_name,
)

CHILD_TIMEOUT_S = 30


@pytest.fixture
def sock_path() -> Iterator[str]:
    """A fresh socket path (short enough for sun_path); removed afterwards if left."""
    path = f"/tmp/{unique_name('openamp-test')}.sock"
    try:
        yield path
    finally:
        if os.path.lexists(path):
            os.unlink(path)


def _socket_pair(path: str) -> tuple[UnixSocketDoorbell, UnixSocketDoorbell]:
    with UnixSocketServer(path) as server:
        client = UnixSocketDoorbell.connect(path, timeout=5.0)
        return server.accept(timeout=5.0), client


@pytest.fixture(params=["unix-socket", "eventfd", "in-process"])
def pair(request: pytest.FixtureRequest, sock_path: str) -> Iterator[tuple[Doorbell, Doorbell]]:
    """Two connected doorbells of each kind, closed afterwards."""
    a: Doorbell
    b: Doorbell
    if request.param == "unix-socket":
        a, b = _socket_pair(sock_path)
    elif request.param == "eventfd":
        a, b = EventFdDoorbell.pair()
    else:
        a, b = InProcessDoorbell.pair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


class Child:
    """A Python child process running ``code``; killed and reaped however the test ends."""

    def __init__(self, code: str, pass_fds: tuple[int, ...] = ()) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=pass_fds,
        )

    def readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self) -> str:
        """Wait for a clean exit and return the rest of stdout."""
        out, err = self.proc.communicate(timeout=CHILD_TIMEOUT_S)
        assert self.proc.returncode == 0, err
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=CHILD_TIMEOUT_S)


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    children: list[Child] = []

    def start(code: str, pass_fds: tuple[int, ...] = ()) -> Child:
        child = Child(code, pass_fds)
        children.append(child)
        return child

    try:
        yield start
    finally:
        for child in children:
            child.kill()


# -- behaviour shared by every doorbell ------------------------------------------------------


def test_nothing_pending_initially(pair: tuple[Doorbell, Doorbell]) -> None:
    _, b = pair
    assert b.wait_readable(0) is False
    assert b.drain() == 0


def test_kick_makes_peer_readable_and_drain_consumes_all(pair: tuple[Doorbell, Doorbell]) -> None:
    a, b = pair
    for _ in range(3):
        a.kick()
    assert a.kicks_sent == 3
    assert b.wait_readable(5.0) is True
    assert b.drain() == 3
    assert b.kicks_received == 3
    assert b.wait_readable(0) is False
    assert b.drain() == 0


def test_kicks_go_both_ways(pair: tuple[Doorbell, Doorbell]) -> None:
    a, b = pair
    b.kick()
    assert a.wait_readable(5.0) is True
    assert b.wait_readable(0) is False
    assert a.drain() == 1


def test_wait_readable_times_out_with_false(pair: tuple[Doorbell, Doorbell]) -> None:
    _, b = pair
    assert b.wait_readable(0.02) is False


def test_wait_readable_wakes_on_a_kick_from_another_thread(
    pair: tuple[Doorbell, Doorbell],
) -> None:
    a, b = pair
    kicker = threading.Timer(0.05, a.kick)
    kicker.start()
    try:
        assert b.wait_readable(None) is True
    finally:
        kicker.join()
    assert b.drain() == 1


def test_closed_doorbell_refuses_use(pair: tuple[Doorbell, Doorbell]) -> None:
    a, _ = pair
    a.close()
    a.close()
    with pytest.raises(InvalidStateError):
        a.kick()
    with pytest.raises(InvalidStateError):
        a.drain()


# -- UNIX socket (C Linux machine) -----------------------------------------------------------


def test_socket_kick_is_one_byte_0x01_on_the_wire(sock_path: str) -> None:
    with UnixSocketServer(sock_path) as server:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            raw.connect(sock_path)
            with server.accept(timeout=5.0) as bell:
                bell.kick()
                bell.kick()
                raw.settimeout(5.0)
                data = b""
                while len(data) < 2:
                    data += raw.recv(16)
                assert data == KICK_BYTE * 2
                raw.sendall(b"\x01\x01\x01")  # what the C peer sends, possibly coalesced
                assert bell.wait_readable(5.0)
                assert bell.drain() == 3
        finally:
            raw.close()


def test_socket_doorbell_counts_kicks_between_two_processes(
    sock_path: str, spawn: Callable[..., Child]
) -> None:
    server = UnixSocketServer(sock_path)
    try:
        child = spawn(
            f"""
            import sys
            from openamp.metal import UnixSocketDoorbell
            with UnixSocketDoorbell.connect({sock_path!r}, timeout=10.0) as bell:
                for _ in range(100):
                    bell.kick()
                print("sent", bell.kicks_sent, bell.kicks_coalesced, flush=True)
                assert bell.wait_readable(10.0)
                print("got", bell.drain(), flush=True)
                sys.stdin.readline()
            """
        )
        with server.accept(timeout=10.0) as bell:
            word, sent, coalesced = child.readline().split()
            assert word == "sent"
            assert int(sent) + int(coalesced) == 100
            assert bell.wait_readable(10.0) is True
            total = bell.drain()
            assert total >= 1
            # the child wrote everything before printing: one drain took it all
            assert total == int(sent)
            assert bell.wait_readable(0) is False
            bell.kick()
            assert child.readline() == "got 1"
            child.tell("bye")
            child.finish()
    finally:
        server.close()


def test_client_may_connect_before_accept_is_called(sock_path: str) -> None:
    with UnixSocketServer(sock_path) as server:
        client = UnixSocketDoorbell.connect(sock_path, timeout=0)
        with client, server.accept(timeout=0) as bell:
            client.kick()
            assert bell.wait_readable(5.0)


def test_client_retries_until_the_server_appears(sock_path: str) -> None:
    servers: list[UnixSocketServer] = []
    starter = threading.Timer(0.15, lambda: servers.append(UnixSocketServer(sock_path)))
    starter.start()
    try:
        with UnixSocketDoorbell.connect(sock_path, timeout=10.0) as client:
            starter.join()
            with servers[0].accept(timeout=5.0) as bell:
                bell.kick()
                assert client.wait_readable(5.0)
    finally:
        starter.join()
        for s in servers:
            s.close()


def test_client_connect_timeout_names_the_path(sock_path: str) -> None:
    with pytest.raises(OpenAMPTimeoutError, match=sock_path):
        UnixSocketDoorbell.connect(sock_path, timeout=0.05)


def test_client_connect_timeout_on_a_stale_socket_file(sock_path: str) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock_path)
    stale.close()  # the file stays, nobody listens: ECONNREFUSED
    with pytest.raises(OpenAMPTimeoutError, match=sock_path):
        UnixSocketDoorbell.connect(sock_path, timeout=0.05)


def test_server_accept_timeout_names_the_path_and_keeps_listening(sock_path: str) -> None:
    with UnixSocketServer(sock_path) as server:
        with pytest.raises(OpenAMPTimeoutError, match=sock_path):
            server.accept(timeout=0.05)
        with UnixSocketDoorbell.connect(sock_path, timeout=1.0), server.accept(timeout=5.0):
            pass


def test_server_replaces_a_stale_file_at_its_path(sock_path: str) -> None:
    with open(sock_path, "w") as f:
        f.write("stale")
    with (
        UnixSocketServer(sock_path) as server,
        UnixSocketDoorbell.connect(sock_path, timeout=1.0),
        server.accept(timeout=5.0),
    ):
        pass


def test_path_is_removed_after_accept(sock_path: str) -> None:
    server = UnixSocketServer(sock_path)
    try:
        assert os.path.exists(sock_path)
        with UnixSocketDoorbell.connect(sock_path, timeout=1.0) as client:
            with server.accept(timeout=5.0) as bell:
                assert not os.path.exists(sock_path)
                bell.kick()  # the connection outlives the path
                assert client.wait_readable(5.0)
            with pytest.raises(InvalidStateError):
                server.accept(timeout=0)
    finally:
        server.close()


def test_path_is_removed_on_close_without_accept(sock_path: str) -> None:
    server = UnixSocketServer(sock_path)
    assert os.path.exists(sock_path)
    server.close()
    server.close()
    assert not os.path.exists(sock_path)


def test_closing_a_server_leaves_a_newer_server_at_the_same_path_alone(sock_path: str) -> None:
    old = UnixSocketServer(sock_path)
    new = UnixSocketServer(sock_path)
    try:
        old.close()
        assert os.path.exists(sock_path)
    finally:
        new.close()
        old.close()
    assert not os.path.exists(sock_path)


def test_dead_peer_process_gives_peer_gone_on_drain_and_kick(
    sock_path: str, spawn: Callable[..., Child]
) -> None:
    with UnixSocketServer(sock_path) as server:
        child = spawn(
            f"""
            import os
            from openamp.metal import UnixSocketDoorbell
            bell = UnixSocketDoorbell.connect({sock_path!r}, timeout=10.0)
            bell.kick()
            os._exit(0)  # no orderly close: the kernel closes the socket
            """
        )
        with server.accept(timeout=10.0) as bell:
            child.finish()
            assert bell.wait_readable(5.0) is True
            assert bell.drain() == 1  # the kick sent before dying still counts
            assert bell.wait_readable(5.0) is True  # EOF wakes a waiter promptly
            with pytest.raises(PeerGoneError, match=sock_path):
                bell.drain()
            with pytest.raises(PeerGoneError):
                bell.kick()


def test_killed_peer_process_gives_peer_gone(sock_path: str, spawn: Callable[..., Child]) -> None:
    with UnixSocketServer(sock_path) as server:
        child = spawn(
            f"""
            import sys
            from openamp.metal import UnixSocketDoorbell
            bell = UnixSocketDoorbell.connect({sock_path!r}, timeout=10.0)
            print("connected", flush=True)
            sys.stdin.readline()
            """
        )
        with server.accept(timeout=10.0) as bell:
            assert child.readline() == "connected"
            child.kill()
            assert bell.wait_readable(5.0) is True
            with pytest.raises(PeerGoneError):
                bell.drain()


def test_kick_never_blocks_when_the_peer_does_not_drain() -> None:
    a, b = UnixSocketDoorbell.pair()
    with a, b:
        for _ in range(20000):
            a.kick()
        assert a.kicks_coalesced > 0
        assert a.kicks_sent + a.kicks_coalesced == 20000
        total = 0
        while b.wait_readable(0):
            total += b.drain()
        assert total == a.kicks_sent


def test_shutdown_wakes_a_thread_waiting_on_the_same_socket() -> None:
    a, b = UnixSocketDoorbell.pair()
    with a, b:
        result: list[bool] = []
        waiting = threading.Event()

        def wait() -> None:
            waiting.set()
            result.append(b.wait_readable(10.0))

        waiter = threading.Thread(target=wait)
        waiter.start()
        assert waiting.wait(5.0)
        time.sleep(0.05)  # let it enter poll()
        b.shutdown()
        waiter.join(5.0)
        assert not waiter.is_alive()
        assert result == [True]
        assert a.wait_readable(5.0) is True
        with pytest.raises(PeerGoneError):
            a.drain()


def test_socket_doorbell_rejects_a_datagram_socket() -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        with pytest.raises(UsageError):
            UnixSocketDoorbell(s)
    finally:
        s.close()


def test_socketpair_end_passed_to_a_child_by_fd(spawn: Callable[..., Child]) -> None:
    a, b = UnixSocketDoorbell.pair()
    with a:
        with b:
            child = spawn(
                f"""
                from openamp.metal import UnixSocketDoorbell
                with UnixSocketDoorbell.from_fd({b.fileno()}) as bell:
                    bell.kick()
                """,
                pass_fds=(b.fileno(),),
            )
        child.finish()
        assert a.wait_readable(5.0)
        assert a.drain() == 1


# -- eventfd ---------------------------------------------------------------------------------


def test_eventfd_pair_works_across_a_child_process(spawn: Callable[..., Child]) -> None:
    parent, child_side = EventFdDoorbell.pair()
    with parent:
        with child_side:
            rx, tx = child_side.fds
            for _ in range(5):
                parent.kick()
            child = spawn(
                f"""
                from openamp.metal import EventFdDoorbell
                with EventFdDoorbell.from_fds({rx}, {tx}) as bell:
                    assert bell.wait_readable(10.0)
                    print(bell.drain(), flush=True)
                    for _ in range(3):
                        bell.kick()
                """,
                pass_fds=child_side.fds,
            )
        assert child.finish().strip() == "5"
        assert parent.wait_readable(5.0)
        assert parent.drain() == 3


def test_eventfd_sides_own_separate_descriptors() -> None:
    a, b = EventFdDoorbell.pair()
    with a:
        assert len(set(a.fds + b.fds)) == 4
        b.close()  # closing one side leaves the other usable
        a.kick()
        assert a.wait_readable(0) is False


def test_eventfd_pair_is_close_on_exec_unless_asked() -> None:
    a, b = EventFdDoorbell.pair()
    with a, b:
        assert not any(os.get_inheritable(fd) for fd in a.fds + b.fds)
    c, d = EventFdDoorbell.pair(inheritable=True)
    with c, d:
        assert all(os.get_inheritable(fd) for fd in c.fds + d.fds)


def test_eventfd_fileno_is_the_rx_descriptor() -> None:
    a, b = EventFdDoorbell.pair()
    with a, b:
        assert a.fileno() == a.rx_fd


# -- in-process ------------------------------------------------------------------------------


def test_in_process_kick_calls_on_kick_of_the_receiving_side() -> None:
    a, b = InProcessDoorbell.pair()
    calls: list[str] = []
    b.on_kick = lambda: calls.append("b")
    a.kick()
    a.kick()
    assert calls == ["b", "b"]
    b.kick()  # a has no callback
    assert calls == ["b", "b"]
    assert b.drain() == 2
    assert a.drain() == 1


def test_in_process_has_no_fileno() -> None:
    a, _ = InProcessDoorbell.pair()
    with pytest.raises(UsageError, match="no file descriptor"):
        a.fileno()


def test_in_process_peer_close_gives_peer_gone() -> None:
    a, b = InProcessDoorbell.pair()
    a.kick()
    a.close()
    assert b.wait_readable(0) is True
    assert b.drain() == 1  # the kick sent before closing still counts
    assert b.wait_readable(None) is True
    with pytest.raises(PeerGoneError):
        b.drain()
    with pytest.raises(PeerGoneError):
        b.kick()


def test_in_process_peer_close_wakes_a_waiting_thread() -> None:
    a, b = InProcessDoorbell.pair()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(b.wait_readable(None)))
    waiter.start()
    time.sleep(0.05)
    a.close()
    waiter.join(5.0)
    assert not waiter.is_alive()
    assert result == [True]


def test_unpaired_in_process_doorbell_is_unusable() -> None:
    with pytest.raises(InvalidStateError, match="pair"):
        InProcessDoorbell().kick()

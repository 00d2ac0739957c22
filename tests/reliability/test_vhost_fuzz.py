"""The vhost-user message fuzzer: a hostile frontend against a backend in its own process.

One backend process (``vhost_fuzz_backend.py``) serves session after session; this
test plays the frontend with a fixed seed.  Each session is one attack, drawn from the
families a frontend can mount (docs/linux-kernel.md, "Trust model of vhost-user"):

- ``shrink``: set the link up, then shrink the guest-memory file and kick (before the
  fix the backend died of SIGBUS);
- ``notify-fd``: a SET_VRING_KICK/CALL/ERR whose descriptor is a regular file,
  ``/dev/null``, a directory, an ``O_PATH`` or an epoll descriptor, a pipe's wrong end,
  a memfd (before the fix: ``PermissionError``/``OSError`` out of ``start()``);
- ``memory``: SET_MEM_TABLE with such descriptors, sizes past the file, zero sizes,
  wrong region counts, overlapping or huge offsets;
- ``random``: a valid negotiation, then random requests with random payloads, flags and
  descriptors;
- ``cut``: a valid set-up cut off at a random message, or in the middle of one.

Every session must end with a typed outcome (an ``OpenAMPError``, or the frontend's
leaving), the backend must stay alive, remove its socket, and hold no more descriptors
or mappings than after the first session.  ``--hostile-iterations N`` runs N sessions.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from openamp.errors import OpenAMPError
from openamp.metal import sigbus
from openamp.metal.shm import unique_name
from openamp.rpmsg.virtio import RpmsgVirtioDevice, ShmPool
from openamp.vhost.wire import (
    HEADER,
    MEMORY_HEADER,
    MEMORY_REGION,
    U64,
    VHOST_USER_VERSION,
    VRING_ADDR,
    VRING_NOFD_MASK,
    VRING_STATE,
    Request,
)
from vhost_frontend import (
    FILE_OFFSET,
    GUEST_BASE,
    MEM_SIZE,
    POOL,
    RINGS,
    USER_BASE,
    DriverTransport,
    FakeFrontend,
)

BACKEND = Path(__file__).with_name("vhost_fuzz_backend.py")
ATTACKS = ("shrink", "notify-fd", "memory", "random", "cut")
TYPED = {"VhostUserError", "PeerGoneError", "TransportStoppedError", "RingError"}
"""What a session may end with: the frontend broke the protocol or went away."""


class Backend:
    """The backend process and its line protocol (see vhost_fuzz_backend.py)."""

    def __init__(self, base: str, sessions: int, log: Path) -> None:
        self.base = base
        self.log = log
        with open(log, "w") as err:  # a file: a pipe nobody reads would fill and block it
            self.proc = subprocess.Popen(
                [sys.executable, str(BACKEND), base, str(sessions)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
            )
        self.pending = ""
        self.context = ""
        """The session under way, for failure messages."""

    def line(self, timeout: float = 10.0) -> str:
        """The backend's next line; fails the test if it died or hung."""
        assert self.proc.stdout is not None
        end = time.monotonic() + timeout
        while True:
            if "\n" in self.pending:
                line, self.pending = self.pending.split("\n", 1)
                return line
            left = end - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, left))
            if not ready:
                self.proc.kill()
                err = self.log.read_text()
                pytest.fail(
                    f"the backend said nothing for {timeout} s (a hang) in {self.context}:\n"
                    f"{err[-3000:]}"
                )
            chunk = os.read(self.proc.stdout.fileno(), 65536).decode()
            if not chunk:
                code = self.proc.wait(5)
                err = self.log.read_text()
                name = signal.Signals(-code).name if code < 0 else f"exit {code}"
                pytest.fail(f"the backend process died ({name}) in {self.context}:\n{err[-3000:]}")
            self.pending += chunk

    def expect(self, word: str) -> None:
        line = self.line()
        assert line == word, line

    def report(self) -> dict[str, object]:
        """The session's JSON report (skipping an ``up`` the attack did not wait for)."""
        line = self.line()
        while line in ("up",):
            line = self.line()
        return dict(json.loads(line))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


# -- descriptors a hostile frontend can pass ---------------------------------------------------


def bad_fds(tmp: Path) -> dict[str, Callable[[], int]]:
    """Descriptors that are not what a vhost-user message may carry, by name."""

    def regular() -> int:
        return os.open(tmp / "regular", os.O_RDWR | os.O_CREAT, 0o600)

    def o_path() -> int:
        return os.open(tmp / "regular", os.O_PATH)

    def epoll() -> int:
        ep = select.epoll()
        fd = os.dup(ep.fileno())
        ep.close()
        return fd

    def pipe_read_end() -> int:
        r, w = os.pipe()
        os.close(w)
        return r

    def pipe_write_end() -> int:
        r, w = os.pipe()
        os.close(r)
        return w

    def memfd() -> int:
        fd = os.memfd_create("fuzz")
        os.ftruncate(fd, 4096)
        return fd

    def eventfd_o_path() -> int:
        efd = os.eventfd(0)
        try:
            return os.open(f"/proc/self/fd/{efd}", os.O_PATH)
        finally:
            os.close(efd)

    (tmp / "regular").write_bytes(bytes(MEM_SIZE + FILE_OFFSET))
    return {
        "regular file": regular,
        "/dev/null": lambda: os.open("/dev/null", os.O_RDWR),
        "/dev/zero": lambda: os.open("/dev/zero", os.O_RDWR),
        "directory": lambda: os.open(tmp, os.O_RDONLY | os.O_DIRECTORY),
        "O_PATH file": o_path,
        "O_PATH eventfd": eventfd_o_path,
        "epoll": epoll,
        "pipe read end": pipe_read_end,
        "pipe write end": pipe_write_end,
        "memfd": memfd,
        "read-only regular file": lambda: os.open(tmp / "regular", os.O_RDONLY),
        "listening socket": _listening_socket,
    }


def _listening_socket() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s.detach()


# -- the attacks -------------------------------------------------------------------------------


class Session:
    """One frontend connection and the driver behind it."""

    def __init__(self, path: str, rng: random.Random, fds: dict[str, Callable[[], int]]) -> None:
        deadline = time.monotonic() + 5
        while not os.path.exists(path):
            assert time.monotonic() < deadline, f"the backend never listened on {path}"
            time.sleep(0.001)
        self.fe = FakeFrontend(Path(path))
        # our own driver touches the memory this frontend shrinks: the same guard
        sigbus.guard(id(self.fe.mapping), self.fe.mapping)
        self.rng = rng
        self.fds = fds
        self.driver: RpmsgVirtioDevice | None = None
        self.opened: list[int] = []

    def fd(self, name: str | None = None) -> tuple[str, int]:
        name = name or self.rng.choice(sorted(self.fds))
        fd = self.fds[name]()
        self.opened.append(fd)
        return name, fd

    def send_raw(self, data: bytes, fds: tuple[int, ...] = ()) -> None:
        try:
            if fds:
                socket.send_fds(self.fe.sock, [data], list(fds))
            else:
                self.fe.sock.sendall(data)
        except OSError:
            pass  # the backend has already hung up on us: that is an outcome too

    def send(
        self, request: int, payload: bytes = b"", fds: tuple[int, ...] = (), flags: int = 0
    ) -> None:
        self.send_raw(HEADER.pack(request, VHOST_USER_VERSION | flags, len(payload)) + payload, fds)

    def negotiate(self) -> int:
        """SET_OWNER and GET_FEATURES (waiting for its reply); returns the features."""
        self.send(Request.SET_OWNER)
        self.send(Request.GET_FEATURES)
        (features,) = U64.unpack(self._reply())
        return int(features)

    def _reply(self) -> bytes:
        head = self._recv(HEADER.size)
        _req, _flags, size = HEADER.unpack(head)
        return self._recv(size)

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.fe.sock.recv(n - len(buf))
            assert chunk, "the backend closed the connection"
            buf += chunk
        return buf

    def bring_up(self) -> None:
        """What a well-behaved frontend does, with our rpmsg driver behind it."""
        offered = self.negotiate()
        self.driver = RpmsgVirtioDevice(
            DriverTransport(self.fe, offered), shm=self.fe.mem, pool=ShmPool(*POOL), ready_timeout=0
        )

    def close(self) -> None:
        os.ftruncate(self.fe.memfd, FILE_OFFSET + MEM_SIZE)  # whatever an attack did to it
        if self.driver is not None:
            with contextlib.suppress(OpenAMPError):  # the driver of a broken link
                self.driver.close()
        sigbus.unguard(id(self.fe.mapping))
        self.fe.close()
        for fd in self.opened:
            with contextlib.suppress(OSError):
                os.close(fd)


def attack_shrink(s: Session, backend: Backend) -> str:
    s.bring_up()
    backend.expect("up")
    busy = s.rng.random() < 0.5
    if busy:  # the backend is echoing a burst when the memory goes
        assert s.driver is not None
        ept = s.driver.create_endpoint(dst=0x400)
        for _ in range(s.rng.randrange(1, 16)):  # 16 buffers; the driver does not wait
            ept.send(s.rng.randbytes(s.rng.randrange(1, 400)))
    size = s.rng.choice([0, FILE_OFFSET, FILE_OFFSET + s.rng.randrange(MEM_SIZE)])
    size -= size % mmap.PAGESIZE
    os.ftruncate(s.fe.memfd, size)
    os.eventfd_write(s.fe.kick[s.rng.randrange(len(RINGS))], 1)
    return f"shrink to {size:#x}{' while busy' if busy else ''}"


def attack_notify_fd(s: Session, backend: Backend) -> str:
    s.negotiate()
    region = MEMORY_REGION.pack(GUEST_BASE, MEM_SIZE, USER_BASE, FILE_OFFSET)
    s.send(Request.SET_MEM_TABLE, MEMORY_HEADER.pack(1, 0) + region, fds=(s.fe.memfd,))
    request = s.rng.choice([Request.SET_VRING_KICK, Request.SET_VRING_CALL, Request.SET_VRING_ERR])
    name, fd = s.fd()
    index = s.rng.randrange(len(RINGS))
    fds = (fd,) * s.rng.choice([1, 1, 1, 2])
    if s.rng.random() < 0.1:
        fds = ()
    s.send(request, U64.pack(index), fds=fds, flags=s.rng.choice([0, 1 << 3]))
    return f"{Request(request).name} with {name} x{len(fds)}"


def attack_memory(s: Session, backend: Backend) -> str:
    s.negotiate()
    count = s.rng.choice([0, 1, 1, 1, 2, 9])
    regions = b""
    fds: list[int] = []
    names = []
    for _ in range(max(count, 1)):
        size = s.rng.choice([0, MEM_SIZE, MEM_SIZE * 2, 1 << 63, s.rng.randrange(1 << 20)])
        offset = s.rng.choice([0, FILE_OFFSET, 1 << 40, (1 << 64) - 4096, s.rng.randrange(1 << 16)])
        regions += MEMORY_REGION.pack(GUEST_BASE, size, USER_BASE, offset)
        if s.rng.random() < 0.5:
            name, fd = s.fd()
        else:
            name, fd = "guest memfd", s.fe.memfd
        names.append(name)
        fds.append(fd)
    if s.rng.random() < 0.2:
        fds = fds[:-1]
    s.send(Request.SET_MEM_TABLE, MEMORY_HEADER.pack(count, 0) + regions, fds=tuple(fds))
    return f"memory table of {count} ({', '.join(names)})"


def attack_random(s: Session, backend: Backend) -> str:
    s.negotiate()
    done = []
    for _ in range(s.rng.randrange(1, 20)):
        request = s.rng.randrange(0, 48)
        kind = s.rng.random()
        if kind < 0.3:
            payload = s.rng.randbytes(s.rng.randrange(0, 64))
        elif kind < 0.6:
            payload = VRING_STATE.pack(s.rng.randrange(4), s.rng.choice([0, 1, 16, 3, 1 << 31]))
        elif kind < 0.8:
            payload = U64.pack(
                s.rng.choice([0, 1, VRING_NOFD_MASK, 1 << 63, s.rng.getrandbits(64)])
            )
        else:
            payload = VRING_ADDR.pack(
                s.rng.randrange(3), 0, *(s.rng.getrandbits(64) for _ in range(4))
            )
        fds = tuple(s.fd()[1] for _ in range(s.rng.choice([0, 0, 0, 1, 2])))
        flags = s.rng.choice([0, 0, 1 << 3, 1 << 2, 0xFFFFFFFC])
        if s.rng.random() < 0.05:
            s.send_raw(HEADER.pack(request, VHOST_USER_VERSION | flags, 1 << 20))  # huge size
        else:
            s.send(request, payload, fds=fds, flags=flags)
        done.append(request)
    return f"random requests {done}"


def attack_cut(s: Session, backend: Backend) -> str:
    s.negotiate()
    region = MEMORY_REGION.pack(GUEST_BASE, MEM_SIZE, USER_BASE, FILE_OFFSET)
    messages: list[tuple[int, bytes, tuple[int, ...]]] = [
        (Request.SET_MEM_TABLE, MEMORY_HEADER.pack(1, 0) + region, (s.fe.memfd,))
    ]
    for i, (desc, avail, used) in enumerate(RINGS):
        messages += [
            (Request.SET_VRING_CALL, U64.pack(i), (s.fe.call[i][1].fileno(),)),
            (Request.SET_VRING_NUM, VRING_STATE.pack(i, 16), ()),
            (
                Request.SET_VRING_ADDR,
                VRING_ADDR.pack(i, 0, USER_BASE + desc, USER_BASE + used, USER_BASE + avail, 0),
                (),
            ),
            (Request.SET_VRING_KICK, U64.pack(i), (s.fe.kick[i],)),
        ]
    cut = s.rng.randrange(len(messages))
    for request, payload, fds in messages[:cut]:
        s.send(request, payload, fds=fds)
    request, payload, fds = messages[cut]
    data = HEADER.pack(request, VHOST_USER_VERSION, len(payload)) + payload
    s.send_raw(data[: s.rng.randrange(1, len(data))], fds)
    return f"cut in {Request(request).name}"


ATTACK: dict[str, Callable[[Session, Backend], str]] = {
    "shrink": attack_shrink,
    "notify-fd": attack_notify_fd,
    "memory": attack_memory,
    "random": attack_random,
    "cut": attack_cut,
}


@pytest.fixture
def base() -> Iterator[str]:
    name = f"/tmp/{unique_name('openamp-vufuzz')}"
    yield name


def test_a_hostile_frontend_gets_typed_errors_and_leaves_the_backend_whole(
    base: str, tmp_path: Path, hostile_iterations: Callable[[int], int]
) -> None:
    sessions = hostile_iterations(150)
    rng = random.Random(11)
    fds = bad_fds(tmp_path)
    backend = Backend(base, sessions, tmp_path / "backend.log")
    outcomes: Counter[str] = Counter()
    per_attack: Counter[str] = Counter()
    baseline: tuple[int, int] | None = None
    try:
        for i in range(sessions):
            backend.expect("listening")
            attack = ATTACKS[i % len(ATTACKS)]
            s = Session(f"{base}-{i}.sock", rng, fds)
            backend.context = f"session {i} ({attack})"
            try:
                what = ATTACK[attack](s, backend)
                backend.context = f"session {i} ({attack}: {what})"
                if attack == "shrink":
                    report = backend.report()  # the backend ends this session itself
                else:
                    time.sleep(0.002)
                    s.fe.sock.shutdown(socket.SHUT_RDWR)  # the frontend leaves
                    report = backend.report()
            finally:
                s.close()
            outcome = str(report["outcome"])
            assert outcome != "untyped", f"session {i} ({attack}: {what}):\n{report['detail']}"
            # the frontend's fault is a peer error (VhostUserError) or its leaving
            assert outcome in TYPED, f"session {i} ({attack}: {what}): {report}"
            assert not report["socket_left"], f"session {i} left its socket behind"
            if attack == "shrink":
                assert outcome == "VhostUserError" and "shrank" in str(report["detail"]), report
            held = (int(report["fds"]), int(report["mappings"]))  # type: ignore[call-overload]
            if baseline is None:
                baseline = held
            assert held <= baseline, f"session {i} ({attack}: {what}) held {held}, first {baseline}"
            outcomes[f"{attack}: {outcome}"] += 1
            per_attack[attack] += 1
        assert backend.proc.wait(10) == 0
        absorbed = int(report["absorbed"])  # type: ignore[call-overload]
    finally:
        backend.close()
    print(
        f"\nvhost-user fuzzer: {sessions} sessions, backend alive; SIGBUS faults absorbed "
        f"by the guard: {absorbed}; outcomes:"
    )
    for key, n in sorted(outcomes.items()):
        print(f"  {key}: {n}")
    assert set(per_attack) == set(ATTACKS) or sessions < len(ATTACKS)

"""The matrix-multiply demo: wire layout, arithmetic, both sides in one process, the Python
firmware in a second process, and the command (run through its parser)."""

from __future__ import annotations

import logging
import random
import struct
import sys

import pytest
from hypothesis import given, settings, strategies as st

from openamp import MessageError, UsageError
from openamp.platform import InProcessPair
from openamp.platform.process import ProcessMachine
from openamp.remoteproc.state import RprocState
from openamp.rpmsg.wire import RPMSG_NS_EPT_ADDR
from openamp.services.echo import EchoService
from openamp.services.matrix import (
    MATRIX_BYTES,
    MATRIX_SERVICE,
    REQUEST_BYTES,
    Matrix,
    MatrixService,
    decode_reply,
    decode_request,
    encode_request,
    multiply,
    run_matrix,
)

U32 = 0xFFFFFFFF
SHUTDOWN = struct.pack("<I", 0xEF56A55A)  # what Linux's mat_mul_demo sends


def hand_packed(size: int, rows: list[list[int]]) -> bytes:
    """struct _matrix {u32 size; u32 elements[6][6];}, written out field by field."""
    out = struct.pack("<I", size)
    for row in rows:
        for value in row:
            out += struct.pack("<I", value)
    return out


def numbered() -> list[list[int]]:
    return [[10 * i + j for j in range(6)] for i in range(6)]


def identity() -> list[list[int]]:
    return [[int(i == j) for j in range(6)] for i in range(6)]


def textbook_product(a: list[list[int]], b: list[list[int]]) -> list[list[int]]:
    return [[sum(a[i][k] * b[k][j] for k in range(6)) % 2**32 for j in range(6)] for i in range(6)]


@pytest.fixture
def pair():
    p = InProcessPair()
    events = []
    host = p.driver(trace=events.append)
    remote = p.device()
    return host, remote, events


# -- wire layout ------------------------------------------------------------------------


def test_a_matrix_is_148_bytes_size_first_then_elements_row_major() -> None:
    m = Matrix(numbered())
    data = m.pack()
    assert len(data) == MATRIX_BYTES == 148
    assert data == hand_packed(6, numbered())
    assert data[:4] == b"\x06\x00\x00\x00"
    assert struct.unpack_from("<I", data, 4 + 4 * (6 * 1 + 2))[0] == 12  # element [1][2]
    assert Matrix.unpack(data) == m


def test_a_request_is_two_matrices_296_bytes_and_a_reply_one() -> None:
    a, b = Matrix(numbered()), Matrix(identity())
    data = encode_request(a, b)
    assert len(data) == REQUEST_BYTES == 296
    assert data == hand_packed(6, numbered()) + hand_packed(6, identity())
    assert decode_request(data) == (a, b)
    assert decode_reply(hand_packed(6, numbered())) == a


@pytest.mark.parametrize("length", [0, 4, 148, 295, 297, 496])
def test_a_request_of_any_other_length_is_a_message_error(length: int) -> None:
    with pytest.raises(MessageError, match="296 bytes"):
        decode_request(bytes(length))


def test_a_matrix_refuses_a_wrong_shape_or_values_over_u32() -> None:
    with pytest.raises(UsageError):
        Matrix([[0] * 6] * 5)
    with pytest.raises(UsageError):
        Matrix([[0] * 5] * 6)
    with pytest.raises(UsageError):
        Matrix([[2**32] * 6] * 6)


# -- arithmetic -------------------------------------------------------------------------


def test_multiply_is_the_ordinary_product_of_6x6_matrices() -> None:
    rng = random.Random(7)
    a = [[rng.randrange(10) for _ in range(6)] for _ in range(6)]
    b = [[rng.randrange(10) for _ in range(6)] for _ in range(6)]
    assert multiply(Matrix(a), Matrix(b)) == Matrix(textbook_product(a, b))
    assert multiply(Matrix(a), Matrix(identity())) == Matrix(a)


def test_multiply_wraps_modulo_2_to_the_32_like_c_unsigned_int() -> None:
    big = Matrix([[U32] * 6] * 6)
    twos = Matrix([[2] * 6] * 6)
    # each element: 6 * (2**32 - 1) * 2 = 12 * 2**32 - 12, i.e. -12 mod 2**32
    assert multiply(big, twos) == Matrix([[0xFFFFFFF4] * 6] * 6)
    assert multiply(Matrix([[0x10000] * 6] * 6), Matrix(identity())).elements[0][0] == 0x10000
    assert multiply(Matrix([[0x10000] * 6] * 6), Matrix([[0x10000] * 6] * 6)).elements[0][0] == 0


def test_multiply_keeps_the_c_loops_for_smaller_size_fields() -> None:
    # matrix_multiplyd: r.size = a.size; i, k < a.size; j < b.size; the rest stays 0
    a, b = Matrix(numbered(), size=2), Matrix(numbered(), size=3)
    r = multiply(a, b)
    assert r.size == 2
    assert r.elements[0][:4] == (0 * 0 + 1 * 10, 0 * 1 + 1 * 11, 0 * 2 + 1 * 12, 0)
    assert r.elements[1][:3] == (10 * 0 + 11 * 10, 10 * 1 + 11 * 11, 10 * 2 + 11 * 12)
    assert all(v == 0 for row in r.elements[2:] for v in row)


def test_multiply_refuses_size_fields_over_6() -> None:
    with pytest.raises(UsageError, match="at most 6"):
        multiply(Matrix(numbered(), size=7), Matrix(numbered()))


def test_random_matrices_hold_0_to_9_and_repeat_with_the_same_seed() -> None:
    m = Matrix.random(random.Random(1))
    assert m.size == 6 and all(0 <= v <= 9 for v in m.flat())
    assert Matrix.random(random.Random(1)) == m
    assert Matrix.random(random.Random(2)) != m


# -- the service and the host, in one process ------------------------------------------


def test_the_service_answers_a_hand_packed_request_with_the_exact_product(pair) -> None:
    host, remote, events = pair
    MatrixService(remote)
    ept = host.endpoint(MATRIX_SERVICE, timeout=1)
    a = [[(i + j) % 10 for j in range(6)] for i in range(6)]
    ept.send(hand_packed(6, a) + hand_packed(6, numbered()))
    assert ept.recv(timeout=1) == hand_packed(6, textbook_product(a, numbered()))
    tx = [e for e in events if e.direction == "tx"]
    rx = [e for e in events if e.direction == "rx" and e.src != RPMSG_NS_EPT_ADDR]
    assert (tx[-1].length, tx[-1].dst) == (296, 0x400)
    assert (rx[-1].length, rx[-1].src, rx[-1].dst) == (148, 0x400, ept.addr)


def test_200_rounds_are_checked_and_the_host_destroy_stops_the_service(pair) -> None:
    host, remote, events = pair
    service = MatrixService(remote)
    result = run_matrix(host, seed=5)
    assert result.ok, result.problems
    assert (result.rounds, result.sent, result.received, result.errors) == (200, 200, 200, 0)
    assert (result.local_addr, result.remote_addr) == (0x400, 0x400)
    assert len(result.rtts) == 200
    a, b, got = result.last
    assert got == multiply(a, b)
    stats = service.run(timeout=1)
    assert (stats.requests, stats.rejected) == (200, 0)
    assert stats.stop_reason == "the host destroyed its endpoint"
    # the host's last message is its NS destroy
    assert events[-1].dst == RPMSG_NS_EPT_ADDR and events[-1].payload[-4:] == b"\x01\0\0\0"


def test_the_same_seed_sends_the_same_matrices() -> None:
    def requests(seed: int) -> list[bytes]:
        p = InProcessPair()
        events = []
        host = p.driver(trace=events.append)
        MatrixService(p.device())
        assert run_matrix(host, rounds=5, seed=seed).seed == seed
        return [e.payload for e in events if e.direction == "tx" and e.length == 296]

    first = requests(11)
    assert len(first) == 5 and first == requests(11) and first != requests(12)
    for payload in first:
        a, b = decode_request(payload)
        assert a.size == b.size == 6
        assert all(0 <= v <= 9 for v in (*a.flat(), *b.flat()))


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"", "got 0 bytes"),
        (b"\x06\0", "got 2 bytes"),
        (hand_packed(6, numbered()), "got 148 bytes"),
        (encode_request(Matrix(numbered()), Matrix(identity())) + b"\0", "got 297 bytes"),
        (bytes(496), "got 496 bytes"),
        (hand_packed(7, numbered()) + hand_packed(6, identity()), "at most 6"),
        (hand_packed(6, numbered()) + hand_packed(0xFFFFFFFF, identity()), "at most 6"),
    ],
    ids=["empty", "2-bytes", "one-matrix", "297-bytes", "full-buffer", "size-7", "size-u32-max"],
)
def test_a_malformed_request_is_logged_not_answered_and_serving_goes_on(
    pair, caplog, payload: bytes, why: str
) -> None:
    host, remote, _ = pair
    service = MatrixService(remote)
    ept = host.endpoint(MATRIX_SERVICE, timeout=1)
    with caplog.at_level(logging.WARNING, logger="openamp.services.matrix"):
        ept.send(payload)
        remote.poll()
    host.poll()
    assert ept.pending == 0
    assert service.stats.rejected == 1
    assert f"not answering a {len(payload)}-byte request from 0x400" in caplog.text
    assert why in caplog.text
    ept.send(encode_request(Matrix(numbered()), Matrix(identity())))
    assert ept.recv(timeout=1) == hand_packed(6, numbered())
    assert service.stats.requests == 1


def test_the_shutdown_message_stops_the_service_without_an_answer(pair) -> None:
    host, remote, events = pair
    service = MatrixService(remote)
    ept = host.endpoint(MATRIX_SERVICE, timeout=1)
    ept.send(SHUTDOWN)
    stats = service.run(timeout=1)
    assert stats.stop_reason == "shutdown message"
    assert stats.requests == stats.rejected == 0
    host.poll()
    assert ept.pending == 0
    assert MATRIX_SERVICE not in host.services  # the service announced its destroy


def test_run_matrix_can_end_with_the_shutdown_message(pair) -> None:
    host, remote, events = pair
    service = MatrixService(remote)
    assert run_matrix(host, rounds=3, shutdown=True).ok
    sent = [e.payload for e in events if e.direction == "tx" and e.dst == 0x400]
    assert sent[-1] == SHUTDOWN
    assert service.run(timeout=1).stop_reason == "shutdown message"


def test_a_wrong_product_is_reported_per_round_and_the_rounds_go_on(pair) -> None:
    host, remote, _ = pair

    def off_by_one(ept, data, src):
        a, b = decode_request(data)
        rows = [list(r) for r in multiply(a, b).elements]
        rows[2][3] = (rows[2][3] + 1) & U32
        ept.sendto(Matrix(rows).pack(), src)

    remote.create_endpoint(MATRIX_SERVICE, callback=off_by_one)
    result = run_matrix(host, rounds=4, seed=1)
    assert not result.ok
    assert (result.sent, result.received, result.errors) == (4, 4, 4)
    assert result.problems[0].startswith("round 0: element [2][3] is ")
    assert "(1 of 36 elements differ)" in result.problems[0]


def test_an_echo_remote_is_caught_by_the_length_check(pair) -> None:
    host, remote, _ = pair
    EchoService(remote)  # the same service name as the matrix demo
    result = run_matrix(host, rounds=2)
    assert result.errors == 2
    assert result.problems == [f"round {r}: the answer is 296 bytes, want 148" for r in (0, 1)]


def test_a_silent_remote_ends_the_run_after_the_timeout(pair) -> None:
    host, remote, _ = pair
    remote.create_endpoint(MATRIX_SERVICE, callback=lambda ept, data, src: None)
    result = run_matrix(host, rounds=3, timeout=0.05)
    assert (result.sent, result.received, result.errors) == (1, 0, 1)
    assert result.problems == ["round 0: no answer within 0.05 s"]


def test_a_remote_that_destroys_its_endpoint_ends_the_run(pair) -> None:
    host, remote, _ = pair
    remote.create_endpoint(MATRIX_SERVICE, callback=lambda ept, data, src: ept.destroy())
    result = run_matrix(host, rounds=3, timeout=1)
    assert (result.sent, result.received, result.errors) == (1, 0, 1)
    assert result.problems == ["round 0: the remote destroyed its endpoint"]


def test_rounds_must_not_be_negative(pair) -> None:
    host, _, _ = pair
    with pytest.raises(UsageError):
        run_matrix(host, rounds=-1)


def c_product(request: bytes) -> bytes:
    """matrix_multiplyd's loops, transcribed: r.size = a.size; i, k < a.size; j < b.size."""
    a_size, *a = struct.unpack_from("<I36I", request, 0)
    b_size, *b = struct.unpack_from("<I36I", request, 148)
    r = [0] * 36
    for i in range(a_size):
        for j in range(b_size):
            for k in range(a_size):
                r[6 * i + j] = (r[6 * i + j] + a[6 * i + k] * b[6 * k + j]) % 2**32
    return struct.pack("<I36I", a_size, *r)


u32s = st.integers(0, U32)
requests = st.builds(
    lambda sa, ea, sb, eb: struct.pack("<I36I", sa, *ea) + struct.pack("<I36I", sb, *eb),
    st.integers(0, 8),
    st.lists(u32s, min_size=36, max_size=36),
    st.integers(0, 8),
    st.lists(u32s, min_size=36, max_size=36),
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(requests, st.binary(max_size=496)))
def test_any_message_gets_the_c_answer_or_none_and_the_service_goes_on(payload: bytes) -> None:
    p = InProcessPair()
    host, remote = p.driver(), p.device()
    service = MatrixService(remote)
    ept = host.endpoint(MATRIX_SERVICE, timeout=1)
    ept.send(payload)
    remote.poll()
    host.poll()
    if payload[:4] == SHUTDOWN:
        assert ept.pending == 0 and service.run(timeout=0).stop_reason == "shutdown message"
        return
    valid = (
        len(payload) == 296 and max(struct.unpack_from("<I", payload, o)[0] for o in (0, 148)) <= 6
    )
    if valid:
        assert ept.recv(timeout=0) == c_product(payload)
        assert service.stats.requests == 1
    else:
        assert ept.pending == 0 and service.stats.rejected == 1
    ept.send(encode_request(Matrix(numbered()), Matrix(identity())))
    assert ept.recv(timeout=1) == hand_packed(6, numbered())


@settings(max_examples=100, deadline=None)
@given(st.lists(u32s, min_size=36, max_size=36), st.lists(u32s, min_size=36, max_size=36))
def test_multiply_matches_the_c_loops_for_any_u32_elements(a: list[int], b: list[int]) -> None:
    ma = Matrix([a[i : i + 6] for i in range(0, 36, 6)])
    mb = Matrix([b[i : i + 6] for i in range(0, 36, 6)])
    assert multiply(ma, mb).pack() == c_product(ma.pack() + mb.pack())


# -- the Python firmware in another process ---------------------------------------------


@pytest.fixture
def machine():
    m = ProcessMachine()
    try:
        yield m
    finally:
        m.close()


def test_the_matrix_firmware_answers_200_rounds_and_stops_when_the_host_is_done(machine):
    rproc = machine.remoteproc("python:openamp.firmware.matrix")
    rproc.start()
    result = run_matrix(rproc.rpmsg, timeout=5)
    assert result.ok, result.problems
    rproc.wait_state(RprocState.STOPPED, timeout=5)
    assert "exited with status 0" in rproc.history[-1].reason
    trace = rproc.trace()
    assert "matrix: serving 'rpmsg-openamp-demo-channel' at 0x400" in trace
    assert "matrix: 200 requests answered, 0 rejected; stopped: the host destroyed" in trace


def test_the_matrix_firmware_traces_a_malformed_request_and_the_shutdown(machine):
    rproc = machine.remoteproc("python:openamp.firmware.matrix")
    rproc.start()
    ept = rproc.rpmsg.endpoint(MATRIX_SERVICE, timeout=5)
    ept.send(b"\x06\0\0\0")  # a size field and nothing else
    ept.send(encode_request(Matrix(numbered()), Matrix(identity())))
    assert ept.recv(timeout=5) == hand_packed(6, numbered())  # the short one got no answer
    ept.send(SHUTDOWN)
    rproc.wait_state(RprocState.STOPPED, timeout=5)
    trace = rproc.trace()
    assert "matrix: warning: not answering a 4-byte request from 0x400" in trace
    assert "matrix: shutdown message received from 0x400" in trace
    assert "1 requests answered, 1 rejected; stopped: shutdown message" in trace


# -- the command ------------------------------------------------------------------------

CLI = """\
import argparse, sys
from openamp.cli.matrix import add_parser as add_matrix_parser
parser = argparse.ArgumentParser(prog="openamp")
add_matrix_parser(parser.add_subparsers(dest="command"))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def matrix_command(*args: str) -> list[str]:
    return [sys.executable, "-c", CLI, "matrix", *args]


def test_the_command_pairs_its_host_and_remote_on_a_virtual_machine(children, vm_name) -> None:
    vm = ["--machine", "virtual", "--name", vm_name, "--timeout", "20"]
    remote = children.start(matrix_command("--role", "device", *vm))
    host = children.start(matrix_command(*vm, "--rounds", "50", "--seed", "9", "--show"))
    rc, out, err = children.result(host)
    assert rc == 0, out + err
    assert "matrix: driver, socket client" in out
    assert "50 sent, 50 answered, 0 errors (seed 9," in out
    assert "Test Results: Error count = 0" in out
    assert "matrix: a x b (received)" in out
    rc, out, _ = children.result(remote)
    assert rc == 0
    assert "matrix: device, socket server" in out
    assert "50 requests answered; stopped: the host destroyed its endpoint" in out


def test_the_command_exits_1_when_the_answers_are_wrong(children, vm_name) -> None:
    vm = ["--machine", "virtual", "--name", vm_name, "--timeout", "20"]
    echo = children.openamp("echo", *vm)
    rc, out, err = children.result(children.start(matrix_command(*vm, "--rounds", "3")))
    assert rc == 1, out + err
    assert "round 0: the answer is 296 bytes, want 148" in out
    assert "Test Results: Error count = 3" in out
    children.result(echo)


def test_the_help_explains_both_roles_with_examples() -> None:
    import argparse

    from openamp.cli.matrix import add_parser as add_matrix_parser

    parser = argparse.ArgumentParser(prog="openamp")
    sub = parser.add_subparsers()
    add_matrix_parser(sub)
    text = sub.choices["matrix"].format_help()
    for word in ("--count", "--seed", "--role", "--machine", "matrix_multiplyd", "examples:"):
        assert word in text
    defaults = parser.parse_args(["matrix"])
    assert (defaults.role, defaults.count, defaults.seed) == ("driver", 200, None)
    # --rounds, the old spelling, still means --count
    assert parser.parse_args(["matrix", "--rounds", "7"]).count == 7

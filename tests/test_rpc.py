"""The RPC service: the C rpmsg_rpc_client_server wire format, the linux_rpc_demo file
service on it, the C quirks (answer truncation, dispatch, unknown ids), malformed input,
and our client and server in one process, in two processes and through the CLI."""

from __future__ import annotations

import argparse
import io
import logging
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from openamp import OpenAMPTimeoutError, PayloadTooLargeError, UsageError
from openamp.cli.rpc import add_parser as add_rpc_parser
from openamp.platform import InProcessPair, VirtualMachine
from openamp.platform.process import ProcessMachine
from openamp.remoteproc.state import RprocState
from openamp.rpmsg.core import Endpoint
from openamp.rpmsg.virtio import RpmsgVirtioDevice
from openamp.services.rpc import (
    BUF_RESP,
    CLOSE_REQ,
    DEMO_TEXT,
    INPUT_REQ,
    INT_RESP,
    LINUX_O_APPEND,
    LINUX_O_CREAT,
    LINUX_O_RDONLY,
    LINUX_O_WRONLY,
    OPEN_REQ,
    READ_REQ,
    RPC_ANSWER,
    RPC_BAD_REQUEST,
    RPC_SERVICE,
    RPMSG_RPC_INVALID_ID,
    TERM_REQ,
    WRITE_REQ,
    RemoteFileError,
    RpcAnswerError,
    RpcClient,
    RpcError,
    RpcFileClient,
    RpcFileServer,
    RpcResultLostError,
    RpcServer,
    encode_answer,
    run_file_demo,
)

LOGGER = "openamp.services.rpc"

# Requests exactly as linux_rpc_demo builds them: u32 id, then its struct, with the
# uninitialised stack bytes the C client leaves (here 0xCC) where it leaves them.
C_OPEN_WRITE = struct.pack("<I12sii", 1, b"remote.file\0", 0x441, 0x180)
C_OPEN_READ = struct.pack("<I12sii", 1, b"remote.file\0", 0, 0x180)
C_WRITE = struct.pack("<IiI", 3, 3, len(DEMO_TEXT)) + (DEMO_TEXT + b"\0").ljust(300, b"\xcc")
C_READ = struct.pack("<IiI", 4, 3, 300)
C_CLOSE = struct.pack("<Ii", 2, 3)
C_INPUT = struct.pack("<II", 7, 50)
C_TERM = bytes.fromhex("06000000 06000000")


def c_client_view(answer: bytes) -> tuple[int, int, bytes]:
    """What the C client reads: id @0, status @4, params @8 (whatever the length)."""
    rpc_id, status = RPC_ANSWER.unpack_from(answer.ljust(8, b"\0"))
    return rpc_id, status, answer[8:]


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def pair() -> tuple[RpmsgVirtioDevice, RpmsgVirtioDevice]:
    """(host = virtio driver, remote = virtio device), in one process."""
    p = InProcessPair()
    return p.driver(), p.device()


def make_server(host: RpmsgVirtioDevice, root: Path, **kw: Any) -> RpcFileServer:
    """A file server over ``root`` whose stdin holds the demo's three answers."""
    return RpcFileServer(host, root, stdin=io.BytesIO(b"Ada\n36\n3.14\n"), **kw)


@pytest.fixture
def served(pair, tmp_path):
    """A file server on the host over tmp_path, and a raw endpoint on the remote."""
    host, remote = pair
    server = make_server(host, tmp_path, stdout=io.BytesIO())
    raw = remote.create_endpoint("", dst=server.endpoint.addr)
    yield server, raw, remote
    server.close()


def ask(raw: Endpoint, request: bytes) -> bytes | None:
    """Send a raw request; the answer, or None when none comes."""
    raw.send(request)
    try:
        return raw.recv(timeout=0.05)
    except OpenAMPTimeoutError:
        return None


def scripted_server(
    host: RpmsgVirtioDevice, answer: Callable[[bytes], bytes | None]
) -> list[bytes]:
    """A host endpoint on rpmsg-rpc that answers each request with answer(request)."""
    seen: list[bytes] = []

    def cb(ept: Endpoint, data: memoryview, src: int) -> None:
        seen.append(bytes(data))
        out = answer(bytes(data))
        if out is not None:
            ept.sendto(out, src)

    host.create_endpoint(RPC_SERVICE, callback=cb)
    return seen


def as_c_server(request: bytes) -> bytes | None:
    """linux_rpc_demod's answers for the demo's requests: first-byte dispatch, fd 3,
    every answer 4 + sizeof(response) bytes, no answer to TERM."""
    rid = request[0]
    if rid in (1, 2, 3):
        return encode_answer(rid, 0, INT_RESP.pack(3 if rid == 1 else 45), c_truncation=True)
    if rid == 4:
        return encode_answer(4, 0, BUF_RESP.pack(45, DEMO_TEXT), c_truncation=True)
    if rid == 7:  # scanf("%s") into buf; bytes_read = sizeof(buf), always
        return encode_answer(7, 0, BUF_RESP.pack(300, b"Ada"), c_truncation=True)
    if rid == 6:
        return None
    return RPC_ANSWER.pack(rid, RPMSG_RPC_INVALID_ID)[:4]


# -- wire layout ----------------------------------------------------------------------------


def test_the_demo_structs_have_the_c_sizes():
    sizes = [s.size for s in (OPEN_REQ, READ_REQ, WRITE_REQ, CLOSE_REQ, INPUT_REQ, TERM_REQ)]
    assert sizes == [20, 8, 308, 4, 4, 4]
    assert (INT_RESP.size, BUF_RESP.size, RPC_ANSWER.size) == (4, 304, 8)


def test_our_client_sends_the_bytes_linux_rpc_demo_sends(pair):
    host, remote = pair
    seen = scripted_server(host, lambda req: encode_answer(req[0], 0, INT_RESP.pack(3)))
    client = RpcFileClient(remote, timeout=1.0)
    fd = client.open("remote.file", LINUX_O_CREAT | LINUX_O_WRONLY | LINUX_O_APPEND, 0o600)
    assert fd == 3
    assert seen[-1] == C_OPEN_WRITE
    with pytest.raises(RpcAnswerError):  # the scripted server answers 4 bytes, not 304
        client.read(3)
    assert seen[-1] == C_READ
    client.write(3, DEMO_TEXT)
    # the C client leaves stack bytes after the string's NUL; we send zeros there
    assert seen[-1] == C_WRITE[:57] + bytes(312 - 57)
    client.close(3)
    assert seen[-1] == C_CLOSE
    client.terminate()
    host.poll()
    assert seen[-1] == C_TERM
    assert [len(r) for r in seen] == [24, 12, 312, 8, 8]


def test_the_input_request_is_eight_bytes_with_the_buffer_size(pair):
    host, remote = pair
    seen = scripted_server(host, lambda req: encode_answer(7, 0, BUF_RESP.pack(2, b"hi")))
    assert RpcFileClient(remote, timeout=1.0).input(50) == b"hi"
    assert seen == [C_INPUT]


def test_file_names_longer_than_eleven_bytes_are_refused_by_the_client(pair):
    _, remote = pair
    client = RpcFileClient(remote, timeout=0.1)
    with pytest.raises(UsageError, match=r"1\.\.11 bytes"):
        client.open("remote.files")
    with pytest.raises(UsageError):
        client.open("")


def test_requests_over_488_bytes_are_refused_by_the_client(pair):
    _, remote = pair
    client = RpcClient(remote, timeout=0.1)
    with pytest.raises(PayloadTooLargeError):
        client.call(1, bytes(485))
    with pytest.raises(PayloadTooLargeError):
        RpcFileClient(remote, timeout=0.1).write(3, bytes(301))


# -- our server, as a C client sees it ------------------------------------------------------


def test_our_server_answers_the_c_client_in_full(served, tmp_path):
    server, raw, _ = served
    assert c_client_view(ask(raw, C_OPEN_WRITE)) == (1, 0, INT_RESP.pack(3))
    answer = ask(raw, C_WRITE)
    assert len(answer) == 12 and c_client_view(answer) == (3, 0, INT_RESP.pack(45))
    assert c_client_view(ask(raw, C_CLOSE)) == (2, 0, INT_RESP.pack(0))
    ask(raw, C_OPEN_READ)
    answer = ask(raw, C_READ)
    assert len(answer) == 8 + 304
    assert c_client_view(answer) == (4, 0, BUF_RESP.pack(45, DEMO_TEXT))
    answer = ask(raw, C_INPUT)
    assert len(answer) == 312 and c_client_view(answer)[2][:8] == INT_RESP.pack(3) + b"Ada\0"
    assert ask(raw, C_TERM) is None  # no answer: the C client has no callback for TERM
    assert server.rpc.stopped
    assert (tmp_path / "remote.file").read_bytes() == DEMO_TEXT


def test_c_truncation_mode_answers_byte_for_byte_like_linux_rpc_demod(pair, tmp_path):
    host, remote = pair
    server = make_server(host, tmp_path, c_truncation=True)
    raw = remote.create_endpoint("", dst=server.endpoint.addr)
    assert ask(raw, C_OPEN_WRITE) == bytes.fromhex("01000000 00000000")  # the fd is cut off
    assert ask(raw, C_WRITE) == bytes.fromhex("03000000 00000000")
    assert len(ask(raw, C_READ)) == 4 + 304
    assert ask(raw, struct.pack("<I", 9)) == bytes.fromhex("09000000")  # unknown id: 4 bytes
    server.close()


def test_an_unknown_id_is_answered_minus_one_in_eight_bytes(served, caplog):
    _, raw, _ = served
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert ask(raw, struct.pack("<I", 5)) == RPC_ANSWER.pack(5, RPMSG_RPC_INVALID_ID)
    assert "RPC id 5" in caplog.text and "no such service" in caplog.text


def test_ids_are_dispatched_on_all_32_bits_not_the_first_byte(served):
    _, raw, _ = served
    # The C server would take 0x101 for OPEN (id = *buf); we answer it as unknown.
    request = struct.pack("<I12sii", 0x101, b"x\0", LINUX_O_RDONLY, 0)
    assert ask(raw, request) == RPC_ANSWER.pack(0x101, RPMSG_RPC_INVALID_ID)


# -- malformed requests ---------------------------------------------------------------------

MALFORMED = [
    pytest.param(b"\x01\x00\x00", None, "shorter than the 4-byte RPC id", id="short-id"),
    pytest.param(b"", None, "shorter than the 4-byte RPC id", id="empty"),
    pytest.param(
        struct.pack("<I", 3) + bytes(485),
        RPC_ANSWER.pack(3, RPC_BAD_REQUEST),
        "exceed the 488-byte request limit",
        id="over-488",
    ),
    pytest.param(
        struct.pack("<IiI", 3, 1, 100) + b"x" * 20,
        RPC_ANSWER.pack(3, RPC_BAD_REQUEST),
        "len 100 reaches beyond the message (20 data bytes",
        id="write-len-beyond-message",
    ),
    pytest.param(
        struct.pack("<IiI", 3, 1, 301) + bytes(300),
        RPC_ANSWER.pack(3, RPC_BAD_REQUEST),
        "len 301 exceeds ptr[300]",
        id="write-len-beyond-struct",
    ),
    pytest.param(
        struct.pack("<I", 1) + b"remote.file\0",
        RPC_ANSWER.pack(1, RPC_BAD_REQUEST),
        "open request carries 12 params bytes; its struct has 20",
        id="short-open",
    ),
    pytest.param(
        struct.pack("<I12sii", 1, b"abcdefghijkl", 0, 0),
        RPC_ANSWER.pack(1, RPC_BAD_REQUEST),
        "not NUL-terminated",
        id="open-name-without-nul",
    ),
    pytest.param(
        struct.pack("<Ih", 4, 3),
        RPC_ANSWER.pack(4, RPC_BAD_REQUEST),
        "read request carries 2 params bytes",
        id="short-read",
    ),
    pytest.param(
        struct.pack("<I", 2),
        RPC_ANSWER.pack(2, RPC_BAD_REQUEST),
        "close request carries 0 params bytes",
        id="short-close",
    ),
    pytest.param(
        struct.pack("<I", 5),
        RPC_ANSWER.pack(5, RPMSG_RPC_INVALID_ID),
        "answering RPC id 5 from 0x400: no such service",
        id="unknown-id",
    ),
    pytest.param(
        struct.pack("<I12sii", 1, b"f\0", 3, 0),
        RPC_ANSWER.pack(1, 0) + INT_RESP.pack(-1),
        "access mode 3 is not valid",
        id="open-bad-access-mode",
    ),
    pytest.param(
        struct.pack("<Ii", 2, 42),
        RPC_ANSWER.pack(2, 0) + INT_RESP.pack(-1),
        "close fd 42: no such open file",
        id="close-unknown-fd",
    ),
    pytest.param(
        struct.pack("<IiI", 4, 42, 10),
        RPC_ANSWER.pack(4, 0) + BUF_RESP.pack(-1, b""),
        "read fd 42: no such open file",
        id="read-unknown-fd",
    ),
    pytest.param(
        struct.pack("<IiI", 3, 42, 1) + b"x",
        RPC_ANSWER.pack(3, 0) + INT_RESP.pack(-1),
        "write fd 42: no such open file",
        id="write-unknown-fd",
    ),
    pytest.param(
        struct.pack("<IiI", 3, 0, 1) + b"x",
        RPC_ANSWER.pack(3, 0) + INT_RESP.pack(-1),
        "write fd 0: stdin cannot be written",
        id="write-stdin",
    ),
]


@pytest.mark.parametrize(("request_bytes", "answer", "logged"), MALFORMED)
def test_a_malformed_request_is_answered_or_dropped_and_logged_and_serving_goes_on(
    served, caplog, tmp_path, request_bytes, answer, logged
):
    server, raw, remote = served
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert ask(raw, request_bytes) == answer
    assert logged in caplog.text
    client = RpcFileClient(remote, timeout=1.0)
    fd = client.open("after", LINUX_O_CREAT | LINUX_O_WRONLY, 0o600)
    assert client.write(fd, b"still serving") == 13
    client.close(fd)
    assert (tmp_path / "after").read_bytes() == b"still serving"
    assert not server.rpc.stopped


def test_the_server_survives_arbitrary_requests(pair, tmp_path):
    host, remote = pair
    server = make_server(host, tmp_path, stdout=io.BytesIO())
    raw = remote.create_endpoint("", dst=server.endpoint.addr)
    client = RpcFileClient(remote, timeout=1.0)
    ids = st.sampled_from([0, 1, 2, 3, 4, 5, 7, 8, 0x101, 0xFFFFFFFF])

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rpc_id=ids, params=st.binary(max_size=492))
    def feed(rpc_id: int, params: bytes) -> None:
        raw.send(struct.pack("<I", rpc_id) + params)
        host.poll()
        while raw.pending:
            answer = raw.recv(timeout=0)
            assert len(answer) >= 8 and answer[:4] == struct.pack("<I", rpc_id)
        for fd in list(server.files):  # keep the table from filling up
            client.close(fd)

    logging.getLogger(LOGGER).setLevel(logging.CRITICAL)
    try:
        feed()
    finally:
        logging.getLogger(LOGGER).setLevel(logging.NOTSET)
    assert not server.rpc.stopped
    fd = client.open("ok", LINUX_O_CREAT | LINUX_O_WRONLY, 0o600)
    assert client.write(fd, b"fine") == 4


# -- the file server's rules ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../x", "/etc/passwd", "a/../../x", "link/x", "out", "d/", "fifo", ".", "d/.."]
)
def test_paths_outside_the_root_or_not_regular_files_are_refused(pair, tmp_path, caplog, name):
    host, remote = pair
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").write_text("no")
    (root / "link").symlink_to(tmp_path)
    (root / "out").symlink_to(tmp_path / "secret")
    (root / "d").mkdir()
    os.mkfifo(root / "fifo")
    server = make_server(host, root)
    client = RpcFileClient(remote, timeout=1.0)
    with caplog.at_level(logging.WARNING, logger=LOGGER), pytest.raises(RemoteFileError):
        client.open(name, LINUX_O_RDONLY)
    assert f"open {name!r}" in caplog.text
    assert not server.files
    server.close()


def test_subdirectories_and_links_inside_the_root_work(pair, tmp_path):
    host, remote = pair
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_bytes(b"inside")
    (tmp_path / "ln").symlink_to("d")
    make_server(host, tmp_path)
    client = RpcFileClient(remote, timeout=1.0)
    fd = client.open("d/f.txt")
    assert client.read(fd) == b"inside"
    assert client.read(fd) == b""
    client.close(fd)
    fd = client.open("ln/f.txt")
    assert client.read(fd) == b"inside"
    client.close(fd)
    with pytest.raises(RemoteFileError, match="close fd 3"):
        client.close(fd)


def test_fd_1_writes_stdout_and_fd_0_reads_a_line_of_stdin(pair, tmp_path):
    host, remote = pair
    out = io.BytesIO()
    RpcFileServer(host, tmp_path, stdin=io.BytesIO(b"first line\nsecond\n"), stdout=out)
    client = RpcFileClient(remote, timeout=1.0)
    assert client.write(1, b"hello\n") == 6
    assert out.getvalue() == b"hello\n"
    assert client.read(0) == b"first line\n"
    assert client.input(4) == b"sec"  # at most size - 1 bytes: room for the NUL


def test_terminate_stops_the_server_and_closes_its_files(pair, tmp_path):
    host, remote = pair
    server = make_server(host, tmp_path)
    client = RpcFileClient(remote, timeout=1.0)
    client.open("f", LINUX_O_CREAT | LINUX_O_WRONLY)
    assert server.files
    client.terminate()
    stats = server.run(timeout=1.0)
    assert stats.stop_reason == "terminate request"
    assert not server.files and server.endpoint.closed


def test_the_client_leaving_stops_the_server(pair, tmp_path):
    host, remote = pair
    server = make_server(host, tmp_path)
    client = RpcFileClient(remote, timeout=1.0)
    client.wait_ready()
    client.release()  # NS destroy
    assert server.run(timeout=1.0).stop_reason == "the client destroyed its endpoint"


# -- our client against the C server's quirks -----------------------------------------------


def test_a_truncated_open_answer_is_reported_as_lost_not_returned(pair, tmp_path):
    host, remote = pair
    make_server(host, tmp_path, c_truncation=True)
    client = RpcFileClient(remote, timeout=1.0)
    with pytest.raises(RpcResultLostError, match="cut off the last 4 result bytes") as info:
        client.open("remote.file", LINUX_O_CREAT | LINUX_O_WRONLY)
    assert info.value.status == 0 and info.value.partial == b""
    assert client.rpc.peer_truncates is True
    assert (tmp_path / "remote.file").exists()  # the server did open it


def test_reads_through_a_truncating_server_lose_nothing(pair, tmp_path):
    host, remote = pair
    data = bytes(range(256)) * 2
    (tmp_path / "big").write_bytes(data)
    make_server(host, tmp_path, c_truncation=True)
    client = RpcFileClient(remote, timeout=1.0)
    with pytest.raises(RpcResultLostError):
        client.open("big")
    got = b""
    while chunk := client.read(3):  # the server's first file gets fd 3
        assert len(chunk) <= 296
        got += chunk
    assert got == data


def test_the_demo_against_a_c_style_server(pair):
    host, remote = pair
    seen = scripted_server(host, as_c_server)
    lines: list[str] = []
    result = run_file_demo(remote, timeout=1.0, report=lines.append)
    host.poll()
    assert not result.ok and result.terminated
    assert "cut off the last 4 result bytes" in result.problems[0]
    assert result.inputs == [b"Ada"] * 3  # NUL-terminated text, bytes_read = 300
    assert [len(r) for r in seen] == [24, 8, 8, 8, 8]  # open, input x3, term


def test_a_four_byte_answer_is_the_c_servers_unknown_id_answer(pair):
    host, remote = pair
    scripted_server(host, as_c_server)
    reply = RpcClient(remote, timeout=1.0).call(5, b"")
    assert reply.status == RPMSG_RPC_INVALID_ID and reply.truncated


def test_an_error_status_is_returned_by_call_and_raised_by_the_file_client(pair):
    host, remote = pair
    scripted_server(host, lambda req: RPC_ANSWER.pack(req[0], RPC_BAD_REQUEST))
    reply = RpcClient(remote, timeout=1.0).call(2, b"", result_size=4)
    assert (reply.status, reply.result, reply.truncated) == (RPC_BAD_REQUEST, b"", False)
    with pytest.raises(RpcError, match="status -22"):
        RpcFileClient(remote, timeout=1.0).close(3)


def test_a_call_without_an_answer_times_out(pair):
    host, remote = pair
    scripted_server(host, lambda req: None)
    with pytest.raises(OpenAMPTimeoutError, match="no answer to RPC id 1"):
        RpcClient(remote).call(1, b"", timeout=0.1)


def test_answers_nobody_waits_for_go_to_callbacks_or_are_dropped(pair, caplog):
    host, remote = pair
    RpcServer(host, {1: lambda p: (0, p[::-1]), 2: lambda p: (0, b"")})
    got = []
    client = RpcClient(remote, timeout=1.0, callbacks={1: got.append})
    client.send(1, b"abc")
    client.send(2, b"")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        host.poll()
        remote.poll()
    assert got[0].result == b"cba" and client.dropped == 1
    assert "RPC id 2" in caplog.text


def test_a_generic_server_and_client(pair):
    host, remote = pair
    server = RpcServer(host, {0x10000: lambda p: (len(p), p.upper())})
    client = RpcClient(remote, timeout=1.0)
    reply = client.call(0x10000, b"hello")
    assert (reply.status, reply.result) == (5, b"HELLO")
    assert server.stats.requests == 1


# -- two processes ----------------------------------------------------------------------------


def test_the_rpc_demo_firmware_against_our_server_in_two_processes(tmp_path):
    with ProcessMachine(start_timeout=10) as machine:
        rproc = machine.remoteproc("python:openamp.firmware.rpc_demo")
        rproc.start()
        server = make_server(rproc.rpmsg, tmp_path)
        stats = server.run(timeout=10)
        rproc.wait_state(RprocState.STOPPED, timeout=5)
        trace = rproc.trace()
        reason = rproc.history[-1].reason
    assert stats.stop_reason == "terminate request", trace
    assert (tmp_path / "remote.file").read_bytes() == DEMO_TEXT
    assert server.inputs == [b"Ada", b"36", b"3.14"]
    assert "rpc: value for pi = '3.14'" in trace
    assert "rpc: PASS" in trace
    assert reason == "the firmware process exited with status 0"


CHILD_CLIENT = """
import sys
from openamp.platform import VirtualMachine
from openamp.services.rpc import run_file_demo
machine = VirtualMachine(role="device", socket="client", name=sys.argv[1])
try:
    result = run_file_demo(machine.start(timeout=10), timeout=10, report=print)
finally:
    machine.close()
sys.exit(0 if result.ok else 1)
"""


def test_a_client_process_against_our_server_on_the_virtual_machine(children, vm_name, tmp_path):
    host = VirtualMachine(role="driver", socket="server", name=vm_name)
    try:
        host.listen()  # as linux_rpc_demod: the server listens, then the client connects
        child = children.start([sys.executable, "-c", CHILD_CLIENT, vm_name])
        server = make_server(host.start(timeout=10), tmp_path)
        stats = server.run(timeout=10)
    finally:
        host.close()
    rc, out, err = children.result(child, timeout=10)
    assert rc == 0, out + err
    assert stats.stop_reason == "terminate request"
    assert (tmp_path / "remote.file").read_bytes() == DEMO_TEXT
    assert server.inputs == [b"Ada", b"36", b"3.14"]
    assert "rpc: name = 'Ada'" in out


CLI = """
import argparse, sys
from openamp.cli.rpc import add_parser as add_rpc_parser
parser = argparse.ArgumentParser(prog="openamp")
add_rpc_parser(parser.add_subparsers())
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def test_openamp_rpc_server_and_client(children, vm_name, tmp_path):
    common = ["rpc", "--machine", "virtual", "--name", vm_name, "--timeout", "10"]
    server = subprocess.Popen(
        [sys.executable, "-c", CLI, *common, "--root", str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    children.procs.append(server)
    assert server.stdin is not None
    server.stdin.write("Ada Lovelace\n36\n3.14\n")
    server.stdin.flush()
    client = children.start([sys.executable, "-c", CLI, *common, "--role", "device"])
    rc, out, err = children.result(client, timeout=20)
    assert rc == 0, out + err
    assert "rpc: name = 'Ada Lovelace'" in out and "rpc: PASS" in out
    rc, out, err = children.result(server, timeout=10)
    assert rc == 0, out + err
    assert "socket server" in out and "stopped: terminate request" in out
    assert (tmp_path / "remote.file").read_bytes() == DEMO_TEXT


def test_openamp_rpc_help_shows_examples(capsys):
    parser = argparse.ArgumentParser(prog="openamp")
    add_rpc_parser(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["rpc", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--root DIR" in text and "linux_rpc_demod" in text


def test_the_file_server_refuses_a_root_that_is_not_a_directory(tmp_path):
    from openamp import UsageError
    from openamp.platform import InProcessPair
    from openamp.services.rpc import RpcFileServer

    pair = InProcessPair()
    host = pair.driver()
    with pytest.raises(UsageError, match="not a directory"):
        RpcFileServer(host, tmp_path / "missing")

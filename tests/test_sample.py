"""The rpmsg client sample: exact strings, the 100-message sequence and the final NS
destroy, both host styles (C rpmsg-sample-ping and Linux's rpmsg_client_sample), the
Python firmware in a second process, and the command (run through its parser)."""

from __future__ import annotations

import struct
import sys

import pytest

from openamp import UsageError
from openamp.platform import InProcessPair
from openamp.platform.process import ProcessMachine
from openamp.remoteproc.state import RprocState
from openamp.rpmsg.wire import RPMSG_NS_EPT_ADDR, decode_ns
from openamp.services.sample import (
    GOODBYE,
    HELLO,
    SAMPLE_SERVICE,
    SampleEcho,
    run_sample,
    sample_messages,
)


@pytest.fixture
def pair():
    p = InProcessPair()
    events = []
    host = p.driver(trace=events.append)
    remote = p.device()
    return host, remote, events


def ns_records(events, direction: str):
    return [
        decode_ns(e.payload)
        for e in events
        if e.direction == direction and e.dst == RPMSG_NS_EPT_ADDR
    ]


def app_payloads(events, direction: str) -> list[bytes]:
    return [e.payload for e in events if e.direction == direction and e.dst != RPMSG_NS_EPT_ADDR]


# -- the strings ------------------------------------------------------------------------


def test_the_messages_are_the_c_strings_without_their_nul() -> None:
    assert HELLO == b"hello world!" and len(HELLO) == 12
    assert GOODBYE == b"goodbye!" and len(GOODBYE) == 8
    assert SAMPLE_SERVICE == "rpmsg-client-sample"


def test_the_c_ping_sends_99_hellos_then_goodbye_and_linux_100_hellos() -> None:
    assert sample_messages() == [HELLO] * 99 + [GOODBYE]
    assert sample_messages(style="linux") == [HELLO] * 100
    assert sample_messages(1) == [GOODBYE]
    with pytest.raises(UsageError):
        sample_messages(style="zephyr")  # type: ignore[arg-type]


# -- the sequence, in one process -------------------------------------------------------


def test_openamp_style_the_wire_sequence_of_the_c_demos(pair) -> None:
    host, remote, events = pair
    echo = SampleEcho(remote)
    result = run_sample(host)
    assert result.ok, result.problems
    assert (result.sent, result.received, result.errors) == (100, 100, 0)
    assert result.remote_destroyed
    assert app_payloads(events, "tx") == [HELLO] * 99 + [GOODBYE]
    assert app_payloads(events, "rx") == [HELLO] * 99 + [GOODBYE]
    assert all(e.length in (12, 8) for e in events if e.dst == 0x400)
    # both sides announce; the remote's destroy follows its 100th echo; ours comes last
    [(r_create), (r_destroy)] = ns_records(events, "rx")
    assert (r_create.name, r_create.addr, r_create.destroy) == (SAMPLE_SERVICE, 0x400, False)
    assert (r_destroy.name, r_destroy.addr, r_destroy.destroy) == (SAMPLE_SERVICE, 0x400, True)
    rx = [e for e in events if e.direction == "rx"]
    assert rx[-1].dst == RPMSG_NS_EPT_ADDR and rx[-2].payload == GOODBYE
    [h_create, h_destroy] = ns_records(events, "tx")
    assert (h_create.addr, h_create.destroy, h_destroy.destroy) == (0x400, False, True)
    assert echo.stats.destroyed and echo.endpoint.closed
    assert echo.run(timeout=1).stop_reason == "100 messages echoed, endpoint destroyed"


def test_after_the_100th_echo_the_host_endpoint_is_unbound_and_on_unbind_called(pair) -> None:
    host, remote, _ = pair
    SampleEcho(remote)
    unbound = []
    ept = host.create_endpoint(SAMPLE_SERVICE, on_unbind=unbound.append)
    ept.wait_bound(1)
    for i in range(100):
        ept.send(HELLO)
        assert ept.recv(timeout=1) == HELLO
        assert unbound == [] or i == 99
    host.poll()
    assert unbound == [ept]
    assert ept.unbound and not ept.is_bound
    assert SAMPLE_SERVICE not in host.services


def test_linux_style_announces_nothing_and_sends_100_hellos(pair) -> None:
    host, remote, events = pair
    echo = SampleEcho(remote)
    result = run_sample(host, style="linux")
    assert result.ok, result.problems
    assert result.local_addr == 0x400 and result.remote_addr == 0x400
    assert ns_records(events, "tx") == []  # not even at the end: the channel has no name
    assert app_payloads(events, "tx") == [HELLO] * 100
    assert [r.destroy for r in ns_records(events, "rx")] == [False, True]
    assert echo.endpoint.closed
    # the remote learned our address from the first message, as with the kernel
    assert echo.stats.messages == 100


def test_src_0_reproduces_the_c_ping_address_and_its_silent_end(pair) -> None:
    host, remote, events = pair
    SampleEcho(remote)
    result = run_sample(host, src=0)
    assert result.ok and result.local_addr == 0
    [create] = ns_records(events, "tx")  # addresses below 1024 never announce a destroy
    assert (create.name, create.addr, create.destroy) == (SAMPLE_SERVICE, 0, False)
    assert {e.src for e in events if e.direction == "tx"} == {0}
    assert {e.dst for e in events if e.direction == "rx" and e.payload == HELLO} == {0}


def test_the_echo_is_byte_identical_whatever_the_content(pair) -> None:
    host, remote, _ = pair
    SampleEcho(remote, limit=3)
    ept = host.endpoint(SAMPLE_SERVICE, timeout=1)
    for payload in (b"hello world!\0", b"\xef\x56\xa5\x5a", bytes(range(256))):
        ept.send(payload)
        assert ept.recv(timeout=1) == payload  # no NUL added, no shutdown message


def test_a_host_that_sends_more_than_the_remote_echoes_reports_the_early_destroy(pair) -> None:
    host, remote, _ = pair
    SampleEcho(remote, limit=3)
    result = run_sample(host, count=5, timeout=1)
    assert not result.ok
    assert (result.sent, result.received) == (3, 3)
    assert result.problems == ["the remote destroyed its endpoint after 3 echoes"]


def test_a_remote_that_keeps_its_endpoint_is_an_error_and_our_destroy_stops_it(pair) -> None:
    host, remote, _ = pair
    echo = SampleEcho(remote, limit=5)
    result = run_sample(host, count=3, timeout=0.05)
    assert not result.ok and not result.remote_destroyed
    assert (result.sent, result.received, result.errors) == (3, 3, 1)
    assert "did not destroy its endpoint within 0.05 s after 3 messages" in result.problems[0]
    stats = echo.run(timeout=1)
    assert stats.stop_reason == "the host destroyed its endpoint" and not stats.destroyed


def test_a_wrong_echo_is_counted(pair) -> None:
    host, remote, _ = pair
    remote.create_endpoint(
        SAMPLE_SERVICE, callback=lambda ept, data, src: ept.sendto(bytes(data).upper(), src)
    )
    result = run_sample(host, count=2, timeout=0.05)
    assert result.errors == 3  # two echoes, and no NS destroy
    assert result.problems[0] == "message 1: echo b'HELLO WORLD!', want b'hello world!'"
    assert result.problems[1] == "message 2: echo b'GOODBYE!', want b'goodbye!'"


def test_a_silent_remote_ends_the_run_after_the_timeout(pair) -> None:
    host, remote, _ = pair
    remote.create_endpoint(SAMPLE_SERVICE, callback=lambda ept, data, src: None)
    result = run_sample(host, timeout=0.05)
    assert (result.sent, result.received, result.errors) == (1, 0, 1)
    assert result.problems == ["message 1: no echo within 0.05 s"]


def test_count_and_limit_must_be_positive(pair) -> None:
    host, remote, _ = pair
    with pytest.raises(UsageError):
        run_sample(host, count=0)
    with pytest.raises(UsageError):
        SampleEcho(remote, limit=0)
    with pytest.raises(UsageError, match="dynamic"):
        run_sample(host, style="linux", src=0)


def test_the_ns_destroy_is_a_40_byte_record_with_flag_1(pair) -> None:
    host, remote, events = pair
    SampleEcho(remote, limit=1)
    assert run_sample(host, count=1).ok
    last_rx = [e for e in events if e.direction == "rx"][-1]
    assert last_rx.length == 40
    name, addr, flags = struct.unpack("<32sII", last_rx.payload)
    assert (name.rstrip(b"\0"), addr, flags) == (b"rpmsg-client-sample", 0x400, 1)


# -- the Python firmware in another process ---------------------------------------------


@pytest.fixture
def machine():
    m = ProcessMachine()
    try:
        yield m
    finally:
        m.close()


@pytest.mark.parametrize("style", ["openamp", "linux"])
def test_the_sample_firmware_echoes_100_then_destroys_its_endpoint_and_exits(machine, style):
    rproc = machine.remoteproc("python:openamp.firmware.sample")
    rproc.start()
    result = run_sample(rproc.rpmsg, style=style, timeout=5)
    assert result.ok, result.problems
    assert result.remote_destroyed
    rproc.wait_state(RprocState.STOPPED, timeout=5)
    assert "exited with status 0" in rproc.history[-1].reason
    trace = rproc.trace()
    assert "sample: serving 'rpmsg-client-sample' at 0x400" in trace
    assert "sample: 100 messages echoed, destroying the endpoint" in trace
    assert "stopped: 100 messages echoed, endpoint destroyed" in trace


# -- the command ------------------------------------------------------------------------

CLI = """\
import argparse, sys
from openamp.cli.sample import add_parser as add_sample_parser
parser = argparse.ArgumentParser(prog="openamp")
add_sample_parser(parser.add_subparsers(dest="command"))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def sample_command(*args: str) -> list[str]:
    return [sys.executable, "-c", CLI, "sample", *args]


def test_the_command_pairs_its_host_and_remote_on_a_virtual_machine(children, vm_name) -> None:
    vm = ["--machine", "virtual", "--name", vm_name, "--timeout", "20"]
    remote = children.start(sample_command("--role", "device", *vm))
    rc, out, err = children.result(children.start(sample_command(*vm)))
    assert rc == 0, out + err
    assert "sample: 100 sent, 100 echoed, 0 errors (openamp style," in out
    assert "the remote destroyed its endpoint" in out
    assert "Test Results: Error count = 0" in out
    rc, out, _ = children.result(remote)
    assert rc == 0
    assert "sample: 100 messages echoed; stopped: 100 messages echoed, endpoint destroyed" in out


def test_the_command_exits_1_when_the_counts_do_not_match(children, vm_name) -> None:
    vm = ["--machine", "virtual", "--name", vm_name, "--timeout", "20"]
    remote = children.start(sample_command("--role", "device", *vm, "--count", "3"))
    rc, out, err = children.result(
        children.start(sample_command(*vm, "--count", "5", "--style", "linux"))
    )
    assert rc == 1, out + err
    assert "the remote destroyed its endpoint after 3 echoes" in out
    assert "Test Results: Error count = 1" in out
    children.result(remote)


def test_the_help_explains_both_roles_with_examples() -> None:
    import argparse

    from openamp.cli.sample import add_parser as add_sample_parser

    parser = argparse.ArgumentParser(prog="openamp")
    sub = parser.add_subparsers()
    add_sample_parser(sub)
    text = sub.choices["sample"].format_help()
    for word in ("--count", "--style", "--role", "rpmsg_client_sample", "examples:"):
        assert word in text
    defaults = parser.parse_args(["sample"])
    assert (defaults.role, defaults.count, defaults.style) == ("driver", 100, "openamp")


REMOTE_AT_ADDRESS_0 = """
import sys
from openamp.platform import VirtualMachine
from openamp.services.sample import SampleEcho
with VirtualMachine(role="device", name=sys.argv[1]) as machine:
    rpmsg = machine.start(timeout=20)
    SampleEcho(rpmsg, src=0).run()   # a reserved address: its destroy is never announced
"""


def test_a_remote_that_leaves_without_a_destroy_still_gets_a_full_report(children, vm_name) -> None:
    # The C rpmsg-sample-echo of some versions sits at address 0: after the 100th echo
    # it destroys its endpoint silently and exits.  The host must report its counts.
    from openamp.platform import VirtualMachine

    children.start([sys.executable, "-c", REMOTE_AT_ADDRESS_0, vm_name])
    with VirtualMachine(role="driver", name=vm_name) as host:
        result = run_sample(host.start(timeout=20), timeout=5)
    assert (result.sent, result.received) == (100, 100)
    assert not result.remote_destroyed and result.errors == 1
    assert "went away after 100 echoes without destroying its endpoint" in result.problems[0]


def test_the_command_host_sits_at_address_0_like_the_c_ping(children, vm_name) -> None:
    vm = ["--machine", "virtual", "--name", vm_name, "--timeout", "20"]
    remote = children.start(sample_command("--role", "device", *vm))
    rc, out, err = children.result(children.start(sample_command(*vm)))
    assert rc == 0, out + err
    assert "sample: endpoint 0x0 -> remote 0x400" in out
    assert children.result(remote)[0] == 0
    remote = children.start(sample_command("--role", "device", *vm))
    rc, out, err = children.result(children.start(sample_command(*vm, "--src", "any")))
    assert rc == 0 and "sample: endpoint 0x400 -> remote 0x400" in out, out + err
    assert children.result(remote)[0] == 0

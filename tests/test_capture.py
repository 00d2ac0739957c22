"""Capture files: what we write reads back, and Wireshark's tshark decodes it with our
dissector exactly as our own decoder does (the dissector's proof is the real tool)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from openamp.platform.inprocess import InProcessPair
from openamp.rpmsg.events import (
    ConfigEvent,
    EndpointEvent,
    ErrorEvent,
    FeaturesEvent,
    KickEvent,
    LinkEvent,
    MessageEvent,
    MissedEvent,
    NsEvent,
    StatusEvent,
    VringLocation,
)
from openamp.services.echo import EchoService, run_ping
from openamp.tools.capture import (
    LINKTYPE_OPENAMP,
    decode_record,
    dissector_path,
    encode_record,
    open_capture,
    read_capture,
)
from openamp.tools.decode import decode_payload
from openamp.tools.pcapng import PcapngError, PcapngReader, PcapngWriter

EVERY_KIND = [
    MessageEvent("tx", 1, 0x30000, 3, 512, 0x400, 0x35, 40, 0, b"x" * 40),
    MessageEvent("rx", 0, 0x10200, 7, 512, 0x401, 0x400, 3, 0, b"abc"),
    StatusEvent(0x04, "write"),
    StatusEvent(0x07, "seen"),
    FeaturesEvent(0x20000003, 0x1, "write"),
    ConfigEvent(b"\x01\x02" * 33),
    KickEvent(1, 2),
    KickEvent(-1, 0),
    EndpointEvent("bind", "rpmsg-rpc", 0x400, 0x401),
    ErrorEvent("MessageError", "message from 0x400 claims 600 bytes"),
    LinkEvent("driver", 1, 512, 512, (VringLocation(0, 0x4000, 256, 0x1000, 1),)),
    MissedEvent(1, 12, "the ring index moved 268 entries at once"),
]


def test_every_event_kind_survives_a_capture_record() -> None:
    for ev in EVERY_KIND:
        data = encode_record(ev, role="driver")
        assert data is not None
        assert decode_record(data).event == ev


def test_a_name_service_event_is_not_written_twice() -> None:
    # its message is the record; the decoded NsEvent would only repeat it
    assert encode_record(NsEvent("rx", "x", 0x400, False)) is None


@pytest.mark.parametrize("suffix", [".pcapng", ".jsonl"])
def test_a_capture_file_reads_back_event_for_event(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"run{suffix}"
    with open_capture(path) as cap:
        hook = cap.link("host")
        for ev in EVERY_KIND:
            hook(ev)
    data = read_capture(path)
    assert data.format == suffix[1:]
    assert data.links[0][0] == "host"
    assert [ce.event for ce in data.events] == EVERY_KIND
    stamps = [ce.timestamp_ns for ce in data.events]
    assert stamps == sorted(stamps) and stamps[0] > 1_600_000_000 * 10**9


def test_each_link_is_an_interface_of_the_user_link_type(tmp_path: Path) -> None:
    path = tmp_path / "pair.pcapng"
    with open_capture(path) as cap:
        pair = InProcessPair()
        host = pair.driver(capture=cap.link("host"))
        remote = pair.device(capture=cap.link("remote"))
        EchoService(remote)
        assert run_ping(host, count=3).ok
        remote.poll()  # the host's NS destroy
    reader = PcapngReader.open(str(path))
    packets = list(reader)
    assert [(i.name, i.linktype, i.tsresol) for i in reader.interfaces] == [
        ("host", LINKTYPE_OPENAMP, 9),
        ("remote", LINKTYPE_OPENAMP, 9),
    ]
    assert 147 <= LINKTYPE_OPENAMP <= 162
    messages = [p for p in packets if decode_record(p.data).event.kind == "message"]
    # every message seen by both sides: 3 pings, 3 echoes, 2 announcements, 1 NS destroy
    assert len(messages) == 2 * 9
    for p in messages:
        ev = decode_record(p.data).event
        assert isinstance(ev, MessageEvent)
        assert p.direction == ("out" if ev.direction == "tx" else "in")


def test_the_application_hint_follows_the_name_service(tmp_path: Path) -> None:
    path = tmp_path / "m.pcapng"
    with open_capture(path, app="matrix") as cap:
        pair = InProcessPair()
        host = pair.driver(capture=cap)
        EchoService(pair.device())
        run_ping(host, count=2)
    apps = [(ce.event.dst, ce.app) for ce in read_capture(path).messages()]
    assert apps[0] == (0x35, "ns")
    assert {app for dst, app in apps if dst != 0x35} == {"matrix"}


def test_a_file_that_is_not_pcapng_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(PcapngError, match="not a pcapng file"):
        list(PcapngReader(b"\x00" * 64))
    import io

    f = io.BytesIO()
    w = PcapngWriter(f)
    w.add_interface(LINKTYPE_OPENAMP)
    w.write_packet(0, 1, b"abcd")
    with pytest.raises(PcapngError, match="claims"):
        list(PcapngReader(f.getvalue()[:-3]))


def test_the_dissector_is_installed_with_the_package() -> None:
    path = dissector_path()
    assert path.suffix == ".lua" and path.is_file()
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"tools/wireshark/*.lua"' in text


# -- tshark -----------------------------------------------------------------------------

FIELDS = [
    "frame.number",
    "openamp.kind",
    "openamp.dir",
    "openamp.h2r",
    "rpmsg.src",
    "rpmsg.dst",
    "rpmsg.len",
    "rpmsg.flags",
    "rpmsg.ns.name",
    "rpmsg.ns.addr",
    "rpmsg.ns.flags",
    "rpmsg_echo.num",
    "rpmsg_echo.size",
    "rpmsg_echo.intact",
    "rpmsg_echo.shutdown",
    "rpmsg_matrix.kind",
    "rpmsg_matrix.size",
    "rpmsg_matrix.row",
    "rpmsg_proxy.kind",
    "rpmsg_proxy.id",
    "rpmsg_proxy.call",
    "rpmsg_proxy.int1",
    "rpmsg_proxy.int2",
    "rpmsg_proxy.data_len",
    "rpmsg_rpc.kind",
    "rpmsg_rpc.id",
    "rpmsg_rpc.call",
    "rpmsg_rpc.status",
    "rpmsg_rpc.length",
    "rpmsg_sample.text",
    "_ws.malformed",
    "_ws.lua.error",
]


@pytest.fixture(scope="module")
def tshark() -> str:
    from openamp.tools.sysdeps import ensure_tool

    return ensure_tool("tshark", "tshark")


@pytest.fixture(scope="module")
def demo_capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`openamp demo --capture` of every demo (the interface others script against)."""
    path = tmp_path_factory.mktemp("demo") / "demo.pcapng"
    r = subprocess.run(
        [sys.executable, "-m", "openamp", "demo", "--capture", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"events written to {path}" in r.stdout
    yield path


def run_tshark(tshark: str, path: Path) -> list[dict[str, str]]:
    cmd = [tshark, "-n", "-r", str(path), "-X", f"lua_script:{dissector_path()}", "-T", "fields"]
    for f in FIELDS:
        cmd += ["-e", f]
    cmd += ["-E", "occurrence=a", "-E", "aggregator=|", "-E", "separator=\t"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Lua: Error" not in r.stderr, r.stderr
    rows = []
    for line in r.stdout.splitlines():
        rows.append(dict(zip(FIELDS, line.split("\t"))))
    return rows


def _as_tshark(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _number(text: str) -> int:
    return int(text, 0)


def test_tshark_decodes_every_message_of_every_demo_as_we_do(
    tshark: str, demo_capture: Path
) -> None:
    rows = run_tshark(tshark, demo_capture)
    data = read_capture(demo_capture)
    assert len(rows) == len([ce for ce in data.events if ce.event.kind != "ns"])
    assert not any(r["_ws.malformed"] or r["_ws.lua.error"] for r in rows)
    records = [ce for ce in data.events if ce.event.kind != "ns"]
    protocols = set()
    for row, ce in zip(rows, records, strict=True):
        assert int(row["openamp.kind"]) == {"message": 1}.get(
            ce.event.kind, int(row["openamp.kind"])
        )
        if not isinstance(ce.event, MessageEvent):
            continue
        ev = ce.event
        assert (_number(row["rpmsg.src"]), _number(row["rpmsg.dst"])) == (ev.src, ev.dst)
        assert int(row["rpmsg.len"]) == ev.length == len(ev.payload)
        assert row["openamp.h2r"] == _as_tshark(ce.h2r)
        d = decode_payload(ev.payload, ce.app, dst=ev.dst, h2r=ce.h2r)
        assert d.protocol, f"frame {row['frame.number']}: not decoded: {ev}"
        protocols.add(d.protocol)
        for name in {key for key, _ in d.fields}:
            ours = "|".join(_as_tshark(v) for v in d.all(name))
            theirs = row[name]
            if name in ("rpmsg.ns.addr",):
                assert _number(theirs) == d.get(name)
            else:
                assert theirs == ours, f"frame {row['frame.number']} {name}: {theirs!r} != {ours!r}"
    assert protocols == {"ns", "echo", "matrix", "proxy", "rpc", "sample"}


def test_tshark_shows_the_decoded_summary_in_the_info_column(
    tshark: str, demo_capture: Path
) -> None:
    r = subprocess.run(
        [tshark, "-n", "-r", str(demo_capture), "-X", f"lua_script:{dissector_path()}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = r.stdout
    assert "NS create 'rpmsg-openamp-demo-channel' at 0x400" in out
    assert "echo #479, 480 data bytes" in out
    assert "matrix request (6x6, 6x6)" in out and "matrix product (6x6)" in out
    assert "proxy open request" in out and "rpc open answer, status 0" in out
    assert "sample 'hello world!'" in out and "status written 0x04" in out


def test_capture_show_prints_every_event_decoded_and_json(demo_capture: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "openamp", "capture", "show", str(demo_capture)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "host->remote 0x400 -> 0x400 len 17: echo #0, 1 data bytes" in r.stdout
    assert "0 echo" in r.stdout and "4 sample" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "openamp", "capture", "show", str(demo_capture), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    doc = json.loads(r.stdout)
    assert [link["name"] for link in doc["links"]] == ["echo", "matrix", "proxy", "rpc", "sample"]
    msgs = [e for e in doc["events"] if e["kind"] == "message"]
    assert {e["app"] for e in msgs} == {"ns", "echo", "matrix", "proxy", "rpc", "sample"}
    assert all(e["summary"] for e in msgs)


def test_capture_run_records_any_command(tmp_path: Path) -> None:
    path = tmp_path / "echo.jsonl"
    r = subprocess.run(
        [sys.executable, "-m", "openamp", "capture", "run", str(path), "demo", "echo"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    data = read_capture(path)
    assert sum(1 for _ in data.messages()) == 2 * 480 + 3

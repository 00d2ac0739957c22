"""The openamp command, run as a user would run it."""

from __future__ import annotations

import json

from conftest import run_openamp as openamp


def test_help_lists_the_commands() -> None:
    out = openamp("--help").stdout
    for command in ("echo", "ping", "demo", "bench"):
        assert command in out


def test_echo_help_explains_the_machine_options() -> None:
    out = openamp("echo", "--help").stdout
    assert "--machine" in out and "linux-generic" in out and "--socket" in out
    assert "shutdown message" in out


def test_demo_runs_every_demo_and_ends_with_a_table() -> None:
    r = openamp("demo")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "480 sent, 480 echoed, 0 errors" in r.stdout
    assert "remoteproc  offline -> ready -> running -> stopped -> offline" in r.stdout
    assert "stopped: the host destroyed its endpoint" in r.stdout
    assert "\nresults\n" in r.stdout
    assert r.stdout.rstrip().endswith("demos passed)")
    assert "result: PASS" in r.stdout


def test_demo_runs_one_demo_by_name() -> None:
    r = openamp("demo", "echo", "--count", "20")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "20 sent, 20 echoed" in r.stdout and "(1 of 1 demos passed)" in r.stdout


def test_demo_rejects_an_unknown_name() -> None:
    r = openamp("demo", "nosuch")
    assert r.returncode == 2 and "no demo nosuch" in r.stderr


def test_ping_exits_non_zero_when_echoes_are_missing(children, vm_name) -> None:
    # This echo refuses payloads over 100 bytes, so ping #84 (16 + 85 bytes) gets no echo.
    echo = children.openamp("echo", "--machine", "virtual", "--name", vm_name, "--size", "100")
    r = openamp("ping", "--machine", "virtual", "--name", vm_name, "--timeout", "1")
    assert r.returncode == 1
    assert "ping 84: no echo within 1.0 s" in r.stdout
    assert "Error count = 1" in r.stdout
    rc, out, _ = children.result(echo)
    assert "84 messages" in out and "1 too long" in out


def test_virtual_machine_without_a_name_is_a_clear_error() -> None:
    r = openamp("ping", "--machine", "virtual")
    assert r.returncode == 2
    assert "--machine virtual needs --name NAME" in r.stderr


def test_ping_without_an_echo_reports_the_socket_it_waited_for(vm_name) -> None:
    r = openamp("ping", "--machine", "virtual", "--name", vm_name, "--timeout", "0.3")
    assert r.returncode == 1
    assert f"/tmp/{vm_name}.event" in r.stderr


def test_bench_rtt_prints_json_figures() -> None:
    r = openamp("bench", "rtt", "--count", "300", "--runs", "2", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["scenario"] == "rtt" and data["payload_bytes"] == 17 and len(data["runs"]) == 2
    median = data["summary"]["rtt_median_us"]
    assert 0 < median["min"] <= median["median"] <= median["max"]


def test_bench_throughput_prints_a_table() -> None:
    r = openamp("bench", "throughput", "--size", "496", "--count", "3000", "--runs", "1")
    assert r.returncode == 0, r.stderr
    assert "messages/s each way" in r.stdout and "MB/s each way" in r.stdout


def test_bench_throughput_batch_size_is_an_option() -> None:
    r = openamp("bench", "throughput", "--batch", "1", "--count", "500", "--runs", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["runs"][0]["messages"] == 500
    r = openamp("bench", "throughput", "--batch", "0")
    assert r.returncode == 2 and "--batch: must be at least 1" in r.stderr


def test_openamp_matrix_host_against_the_matrix_remote(children, vm_name) -> None:
    remote = children.openamp(
        "matrix", "--role", "device", "--machine", "virtual", "--name", vm_name
    )
    r = openamp("matrix", "--machine", "virtual", "--name", vm_name, "--count", "20", "--seed", "7")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "seed 7" in r.stdout
    rc, out, err = children.result(remote)
    assert rc == 0, out + err


def test_openamp_sample_host_against_the_sample_remote(children, vm_name) -> None:
    remote = children.openamp(
        "sample", "--role", "device", "--machine", "virtual", "--name", vm_name
    )
    r = openamp("sample", "--machine", "virtual", "--name", vm_name)
    assert r.returncode == 0, r.stdout + r.stderr
    rc, out, err = children.result(remote)
    assert rc == 0, out + err


def test_bench_bulk_sends_one_way_with_large_buffers() -> None:
    r = openamp("bench", "bulk", "--count", "500", "--runs", "1", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["payload_bytes"] == 65536 - 16
    assert data["summary"]["mb_per_s"]["median"] > 0


def test_bench_idle_reports_cpu_of_both_sides() -> None:
    r = openamp("bench", "idle", "--count", "5", "--idle-seconds", "0.3", "--runs", "1", "--json")
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout)["runs"][0]
    assert run["host_cpu_percent"] >= 0 and run["remote_cpu_percent"] >= 0
    assert run["rtt_median_us"] > 0


def test_rproc_run_names_a_missing_firmware_without_a_traceback() -> None:
    r = openamp("rproc", "run", "no/such/firmware.elf")
    assert r.returncode == 2
    assert "no such file" in r.stderr and "Traceback" not in r.stderr

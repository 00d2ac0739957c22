"""Recovery under a user's feet (issue 11, family 3).

The process driver's watcher thread restarts a crashed firmware while the user's thread
sends and receives.  The user's calls must either work, block (with their timeout) until
the link is back, or raise PeerGoneError — never an OSError from a closed descriptor, an
InvalidStateError, or anything untyped — and ``wait_recovered`` plus ``wait_bound``
must be a reliable way to wait a crash out.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

from openamp.errors import OpenAMPTimeoutError, PeerGoneError
from openamp.platform.process import ProcessMachine
from openamp.remoteproc.state import RprocState

SERVICE = "rpmsg-openamp-demo-channel"


def test_user_calls_during_recovery_are_answered_or_the_peers_error(
    hostile_iterations: Callable[[int], int],
) -> None:
    cycles = hostile_iterations(6)
    rng = random.Random(11)
    outcomes: Counter[str] = Counter()
    untyped: list[BaseException] = []
    stop = threading.Event()
    with ProcessMachine() as machine:
        rproc = machine.remoteproc("echo", recovery=True)
        rproc.start()
        ept = rproc.rpmsg.endpoint(SERVICE, timeout=10)
        # the host announces nothing with endpoint(); bind to the service's address
        alive = threading.Event()

        def user() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    payload = n.to_bytes(4, "little")
                    ept.send(payload, timeout=2)
                    while ept.recv(timeout=2) != payload:
                        outcomes["late echo"] += 1  # an echo sent before a crash
                    outcomes["round trip"] += 1
                    alive.set()
                except PeerGoneError:
                    outcomes["peer gone"] += 1
                    try:
                        rproc.wait_recovered(timeout=20)
                        rproc.rpmsg.wait_service(SERVICE, timeout=10)
                        outcomes["waited out a recovery"] += 1
                    except PeerGoneError:
                        outcomes["peer gone while waiting"] += 1
                    except OpenAMPTimeoutError:
                        outcomes["timed out waiting"] += 1
                except OpenAMPTimeoutError:
                    outcomes["timed out"] += 1
                except BaseException as exc:  # the failure this test exists for
                    untyped.append(exc)
                    return

        thread = threading.Thread(target=user, daemon=True)
        thread.start()
        try:
            for cycle in range(cycles):
                assert alive.wait(30), f"no round trip came through: {dict(outcomes)}"
                time.sleep(rng.uniform(0.0, 0.2))  # kill at a random moment of the traffic
                pid = machine.ops.proc.pid if machine.ops.proc else None
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                # the next kill only once this recovery is over (a kill during a restart
                # is a failed recovery, another test's matter)
                end = time.monotonic() + 30
                while not (rproc.crash_count > cycle and rproc.state is RprocState.RUNNING):
                    assert time.monotonic() < end, f"no recovery: {rproc.state}"
                    time.sleep(0.01)
                alive.clear()
            assert alive.wait(30), f"no round trip after the last recovery: {dict(outcomes)}"
        finally:
            stop.set()
            thread.join(30)
        print(f"recovery: {cycles} kill/recover cycles, {dict(outcomes)}")
        assert not untyped, f"untyped errors: {untyped!r}; outcomes {dict(outcomes)}"
        assert not thread.is_alive()
        assert rproc.crash_count == cycles
        assert rproc.state is RprocState.RUNNING
        assert outcomes["round trip"] > cycles


def test_wait_recovered_counts_a_crash_the_watcher_has_not_seen_yet() -> None:
    with ProcessMachine() as machine:
        rproc = machine.remoteproc("echo", recovery=True)
        rproc.start()
        assert machine.ops.proc is not None
        machine.ops.proc.kill()
        machine.ops.proc.wait()  # dead, maybe before the watcher noticed
        dev = rproc.wait_recovered(timeout=20)
        assert rproc.crash_count == 1 and rproc.state is RprocState.RUNNING
        ept = dev.endpoint(SERVICE, timeout=10)
        ept.send(b"after")
        assert ept.recv(timeout=5) == b"after"


def test_wait_recovered_says_when_the_remote_will_not_come_back() -> None:
    import pytest

    from openamp.errors import DeviceGoneError

    with ProcessMachine() as machine:
        rproc = machine.remoteproc("echo", recovery=False)
        rproc.start()
        assert machine.ops.proc is not None
        machine.ops.proc.kill()
        machine.ops.proc.wait()  # what a user sees first is the link going down
        with pytest.raises(DeviceGoneError, match="recovery is off"):
            rproc.wait_recovered(timeout=20)


def test_closing_the_machine_in_the_middle_of_a_recovery_leaves_nothing() -> None:
    for _ in range(3):
        machine = ProcessMachine()
        rproc = machine.remoteproc("echo", recovery=True)
        rproc.start()
        assert machine.ops.proc is not None
        machine.ops.proc.kill()
        time.sleep(random.uniform(0.0, 0.05))
        machine.close()  # waits for the recovery, then stops what it started
        assert not machine.ops.firmware_alive()
        assert not os.path.exists(f"/dev/shm/{machine.ops.shm_name}")

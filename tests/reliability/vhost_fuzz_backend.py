"""The backend side of the vhost-user fuzzer: one process serving session after session.

Run as ``python vhost_fuzz_backend.py BASE N``.  For each session ``i`` it listens on
``BASE-i.sock`` with a :class:`~openamp.platform.vhost_user.VhostUserMachine`, prints
``listening``, starts (accept, the driver's set-up, rpmsg up, an echo endpoint), prints
``up`` when the link came up, serves until the frontend leaves, closes the machine and
prints one JSON line: the outcome (an exception's class name, ``untyped`` with the
traceback for anything that is not an :class:`~openamp.errors.OpenAMPError`), whether
the socket path is gone, and how many descriptors and mappings the process holds.  A
signal that kills it (SIGBUS from a shrunk memory file) is what the fuzzer looks for.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import traceback

from openamp.errors import OpenAMPError
from openamp.metal import sigbus
from openamp.platform.vhost_user import VhostUserMachine
from openamp.services.echo import EchoService


def _mappings() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if "memfd:" in line or "/dev/shm/" in line)


def main(base: str, sessions: int) -> None:
    faulthandler.enable()  # where a fatal signal struck, on stderr
    for i in range(sessions):
        path = f"{base}-{i}.sock"
        outcome = "ended"
        detail = ""
        machine = VhostUserMachine(path, wait="block")
        print("listening", flush=True)
        faulthandler.dump_traceback_later(8.0)  # a session this long is a hang: say where
        try:
            remote = machine.start(timeout=5.0)
            EchoService(remote, "rpmsg-openamp-demo-channel")
            print("up", flush=True)
            detail = machine.serve(timeout=5.0)
        except OpenAMPError as exc:
            outcome, detail = type(exc).__name__, str(exc)
        except Exception as exc:  # what the fuzzer counts: nothing may end here
            outcome = "untyped"
            detail = "".join(traceback.format_exception(exc))
        finally:
            try:
                machine.close()
            except Exception as exc:
                outcome = "untyped"
                detail = "close: " + "".join(traceback.format_exception(exc))
        faulthandler.cancel_dump_traceback_later()
        report = {
            "session": i,
            "outcome": outcome,
            "detail": detail[-2000:],
            "socket_left": os.path.exists(path),
            "fds": len(os.listdir("/proc/self/fd")),
            "mappings": _mappings(),
            "absorbed": sigbus.absorbed(),  # faults the SIGBUS guard took, so far
        }
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

"""In-process echo for instruction counts: ``python3 tools/inproc_echo.py rtt|flood N``.

Both sides of an InProcessPair, polled by hand (no waiting, no second process), so
``valgrind --tool=callgrind`` counts the instructions of the per-message path alone;
subtract a run with N = 0 and divide by N (docs/performance.md).
"""
import sys
from openamp.platform import InProcessPair
mode, n = sys.argv[1], int(sys.argv[2])
p = InProcessPair()
host = p.driver(blocking=False)
remote = p.device(blocking=False)
remote.create_endpoint("svc", callback=lambda e, d, s: e.sendto(d, s))
host.poll()
h = host.create_endpoint("svc")
remote.poll()
data = b"x" * 17
if mode == "rtt":
    for _ in range(n):
        h.send(data, timeout=0)
        remote.poll()
        host.poll()
        h.recv(timeout=0)
else:
    batch = [data] * 64
    got = 0
    while got < n:
        h.send_many(batch, timeout=0)
        remote.poll()
        host.poll()
        got += len(h.recv_many(0, timeout=0))

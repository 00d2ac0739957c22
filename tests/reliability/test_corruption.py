"""A driver that corrupts its descriptors cannot make the device write outside the pool
(issue 11, family 5), and no corrupted ring state gives an untyped error.

Randomized with a fixed seed; ``--hostile-iterations N`` sets the number of corrupted
states (default 300, a few seconds).  The device side is the one at risk: it writes its
messages into whatever buffers the driver posts, so a descriptor pointing at the
resource table, a ring or past the memory must be refused (RingError), never written.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from openamp.errors import NoBufferError, OpenAMPError, RingError
from openamp.platform import LINUX_GENERIC, InProcessPair
from openamp.virtio.ring import DESC, VringLayout

L = LINUX_GENERIC
RING0 = VringLayout(L.vring_num, L.vring_align, L.vring0_da, L.vring0_da)
RING1 = VringLayout(L.vring_num, L.vring_align, L.vring1_da, L.vring1_da)
POOL = range(L.pool_base, L.pool_base + L.pool_size)

# bytes nobody writes in this test once the link is up: the resource table, the
# descriptor table of vring 1 (the host sends nothing meanwhile) and everything after
# the pool (vring 0's descriptors are the host's, which re-posts its buffers there)
GUARDED = [
    (0, L.vring0_da),
    (RING1.desc, RING1.desc + 16 * L.vring_num),
    (L.pool_base + L.pool_size, L.shm_size),
]

TARGETS = [
    ("the resource table", lambda rng: rng.randrange(0, L.vring0_da - 64)),
    ("a ring", lambda rng: rng.choice([RING1.desc, RING1.desc + 0x400])),
    ("just before the pool", lambda rng: L.pool_base - rng.randrange(1, 512)),
    ("across the pool's end", lambda rng: L.pool_base + L.pool_size - rng.randrange(1, 256)),
    ("past the memory", lambda rng: L.shm_size + rng.randrange(0, 1 << 20)),
    ("anywhere", lambda rng: rng.randrange(0, 1 << 64)),
]


def guarded(memory: bytearray) -> list[bytes]:
    return [bytes(memory[a:b]) for a, b in GUARDED]


def test_corrupted_descriptors_never_make_the_device_write_outside_the_pool(
    hostile_iterations: Callable[[int], int],
) -> None:
    rng = random.Random(5)
    outcomes: Counter[str] = Counter()
    untyped: list[str] = []
    for _ in range(hostile_iterations(300)):
        p = InProcessPair()
        host, remote = p.pair()
        r = remote.create_endpoint("svc")
        h = host.create_endpoint("svc")
        h.wait_bound(1)
        r.wait_bound(1)
        for i in range(rng.randrange(0, 40)):
            r.send(bytes([i % 256]) * rng.randrange(1, 400), timeout=0)
            if rng.random() < 0.3:
                host.poll()
        # the driver (or anyone who can write shared memory) redirects some of the
        # receive buffers it posted on vring 0, which the device will write into
        what, where = rng.choice(TARGETS)
        for _ in range(rng.randrange(1, 8)):
            desc = RING0.desc + 16 * rng.randrange(L.vring_num)
            addr = where(rng) & 0xFFFF_FFFF_FFFF_FFFF
            length = rng.choice([512, rng.randrange(17, 4096)])
            DESC.pack_into(p.memory, desc, addr, length, 2, 0)  # WRITE flag, no next
        before = guarded(p.memory)
        try:
            for i in range(300):
                r.send(b"x" * rng.randrange(1, 480), timeout=0)
                if i % 7 == 0:
                    host.poll()
            outcomes["sent (no corrupted buffer reached)"] += 1
        except RingError:
            outcomes[f"RingError ({what})"] += 1
        except NoBufferError:
            outcomes["no buffer"] += 1
        except OpenAMPError as exc:
            outcomes[type(exc).__name__] += 1
        except Exception as exc:  # what this test exists to catch
            untyped.append(f"{what}: {type(exc).__name__}: {exc}")
        assert guarded(p.memory) == before, f"the device wrote outside the pool ({what})"
    states = sum(outcomes.values()) + len(untyped)
    print(f"corrupted descriptors: {states} states, {dict(outcomes)}")
    assert not untyped, untyped[:5]
    assert any(k.startswith("RingError") for k in outcomes), dict(outcomes)

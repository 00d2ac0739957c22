"""``openamp demo sdt MACHINE.json...``: echo traffic on a described memory map.

The machine files come from ``openamp sdt generate``: one per remote core, with the
device tree's physical addresses.  For each, a Python echo remote runs as a child process
(``openamp echo --layout``) and the host here sends messages of every size through the
rings at those addresses; the demo prints where the rings and the first buffer are.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from ..errors import UsageError

DEFAULT_COUNT = 16


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """No options of its own: MACHINE.json files follow ``sdt``; --count and --timeout
    are ``openamp demo``'s."""
    del group


def run(args: argparse.Namespace, names: list[str]) -> int:
    """Run the echo demo on each machine file of ``names``; 0 when every echo came back."""
    from ..metal.shm import unique_name
    from ..platform.layout import load_layout
    from ..platform.virtual import VirtualMachine
    from .common import remove_virtual_leftovers

    if not names:
        raise UsageError("openamp demo sdt MACHINE.json...: name the machine files to run")
    count = args.count or DEFAULT_COUNT
    failed = 0
    for path in names:
        layout = load_layout(path)
        name = unique_name("openamp-vm")
        cmd = [sys.executable, "-m", "openamp", "echo", "--quiet", "--machine", "virtual"]
        cmd += ["--name", name, "--layout", path, "--timeout", str(args.timeout)]
        remote = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ),
        )
        ok = 0
        try:
            with VirtualMachine(role="driver", name=name, layout=layout) as host:
                dev = host.rpmsg
                shm = dev.shm
                first = shm.read64(shm.phys_to_offset(layout.vring0_da))
                base, end = layout.phys_base, layout.phys_base + layout.shm_size
                print(
                    f"{path}: shared memory {base:#x}..{end:#x}, "
                    f"table at {base + layout.rsc_offset:#x}"
                )
                print(
                    f"  vring0 {layout.vring0_da:#x}, vring1 {layout.vring1_da:#x} "
                    f"({layout.vring_num} entries), buffers "
                    f"{layout.pool_base:#x}+{layout.pool_size:#x}; "
                    f"vring0 descriptor 0 -> {first:#x}"
                )
                ept = dev.endpoint("rpmsg-openamp-demo-channel", timeout=args.timeout)
                for i in range(count):
                    payload = bytes((i + k) & 0xFF for k in range(1 + i * 31 % 496))
                    ept.send(payload)
                    if ept.recv(timeout=args.timeout) == payload:
                        ok += 1
        finally:
            try:
                out, _ = remote.communicate(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                remote.kill()
                out, _ = remote.communicate()
            remove_virtual_leftovers(name)
        last = out.strip().splitlines()[-1] if out.strip() else "(no output)"
        print(f"  echo: {ok} of {count} messages came back; remote: {last}")
        failed += ok != count
    print(f"result: {'PASS' if not failed else 'FAIL'}")
    return 0 if not failed else 1

"""The ``openamp`` subcommands: name -> (module in ``openamp.cli``, one-line help).

This table is all ``openamp --help`` needs, so listing the commands imports none of
them; running one imports only its module, whose ``add_parser(sub)`` registers the
full parser and whose ``cmd_*`` functions import the heavy layers they use.  Adding a
command is one row here and one module with ``add_parser`` (docs/architecture.md).
"""

from __future__ import annotations

COMMANDS: dict[str, tuple[str, str]] = {
    "echo": ("echo", "run the echo remote (C rpmsg-echo)"),
    "ping": ("ping", "run the ping host against an echo remote (C msg-test-rpmsg-ping)"),
    "demo": ("demo", "run the demos on a simulated machine"),
    "bench": ("bench", "measure round-trip latency or throughput"),
    "matrix": ("matrix", "run the matrix-multiply demo (C matrix_multiply / matrix_multiplyd)"),
    "proxy": (
        "proxy",
        "serve a remote's file and console I/O (C rpc_demod), or run the demo remote",
    ),
    "rpc": (
        "rpc",
        "RPC file service: server (C linux_rpc_demod) or client (C linux_rpc_demo)",
    ),
    "sample": (
        "sample",
        "run the rpmsg client sample (Linux rpmsg_client_sample, C rpmsg-sample-*)",
    ),
    "rsc": ("rsc", "show, check and build resource tables"),
    "rproc": ("rproc", "boot and manage remote processors"),
    "rpmsg": ("rpmsg", "rpmsg channels and endpoints on a board (the kernel's rpmsg_char/ctrl)"),
    "sdt": ("sdt", "generate and check a system's files from one domain YAML (Lopper's)"),
    "echo_test": ("echo_test", "the Linux echo_test of the OpenAMP demos, on a board"),
    "mat_mul_demo": ("mat_mul_demo", "the Linux mat_mul_demo of the OpenAMP demos, on a board"),
    "proxy_app": ("proxy_app", "the Linux proxy_app of the OpenAMP demos, on a board"),
    "send": ("send", "send messages to a service of a firmware `rproc run --name` keeps up"),
    "listen": ("listen", "print what a firmware `rproc run --name` keeps up sends on a service"),
    "console": (
        "console",
        "follow the console and trace of a firmware `rproc run --name` keeps up",
    ),
    "capture": ("capture", "record a link (a run or a passive tap) to pcapng and show it"),
    "inspect": ("inspect", "show a link's memory: table, vdev, vrings, buffers (or a board's)"),
    "doctor": ("doctor", "walk a link's bring-up and say what is broken and what to do"),
    "monitor": ("monitor", "live view of a link: endpoints, counters, ring fill levels"),
}


def help_for(name: str) -> str:
    """The one-line help of command ``name``."""
    return COMMANDS[name][1]

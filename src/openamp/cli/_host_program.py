"""What ``openamp echo_test``, ``mat_mul_demo`` and ``proxy_app`` share: the C options.

The three commands are the Linux host programs of the OpenAMP demos
(:mod:`openamp.linux.programs`); they take the C programs' options (``-d -c -n -s -e``)
plus ``--sysfs``/``--dev`` roots and a ``--timeout`` the C programs do not have.
This module imports nothing heavy: board commands stay light.
"""

from __future__ import annotations

import argparse


def c_long(text: str) -> int:
    """``strtol(optarg, NULL, 10)``: a decimal number (a leading sign allowed)."""
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a decimal number: {text!r}") from None


def timeout_arg(text: str) -> float | None:
    """Seconds, or ``none``/``0``-less forever (``none``)."""
    if text.lower() in ("none", "forever"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the timeout must be positive (or 'none')")
    return value


def add_c_options(p: argparse.ArgumentParser, rounds_help: str) -> None:
    """``-d -c -n -s -e``, as the C programs' getopt string ``d:c:n:s:e:``."""
    p.add_argument(
        "-d",
        dest="device",
        metavar="DEVICE",
        help="rpmsg device name (default: the first channel named rpmsg-openamp-demo-channel)",
    )
    p.add_argument(
        "-c",
        dest="ctrl",
        metavar="CTRL",
        default="virtio0.rpmsg_ctrl.0.0",
        help="rpmsg control device name (%(default)s)",
    )
    p.add_argument("-n", dest="rounds", type=c_long, default=1, metavar="N", help=rounds_help)
    p.add_argument(
        "-s",
        dest="src",
        type=c_long,
        default=0,
        metavar="SRC",
        help="source end point address (%(default)s)",
    )
    p.add_argument(
        "-e",
        dest="dst",
        type=c_long,
        default=None,
        metavar="DST",
        help="destination end point address (default: from the channel's name)",
    )
    add_roots(p)


def add_roots(p: argparse.ArgumentParser) -> None:
    """``--sysfs``, ``--dev`` and ``--timeout``."""
    p.add_argument("--sysfs", default="/sys", metavar="ROOT", help="sysfs root (%(default)s)")
    p.add_argument("--dev", default="/dev", metavar="ROOT", help="device root (%(default)s)")
    p.add_argument(
        "--timeout",
        type=timeout_arg,
        default=10.0,
        metavar="SECONDS",
        help="give up after waiting this long for the remote (%(default)s; "
        "'none': forever, as the C program)",
    )

"""Values the ``openamp`` subcommands check while parsing: argparse ``type=`` functions.

A bad value is a usage error, reported by argparse with the command's usage line and
exit status 2, before anything connects or starts.  Every numeric option of every
command goes through one of these.  This module imports nothing of ours (board commands
use it too).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def seconds(text: str) -> float:
    """A duration in seconds: a finite number >= 0 (``--timeout``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"seconds must be a finite number >= 0, not {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """A duration in seconds that is more than 0 (``--for``, ``--interval``)."""
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("seconds must be more than 0")
    return value


def integer(text: str) -> int:
    """Any whole number, decimal or 0x-hex."""
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def count(text: str) -> int:
    """A number of messages, rounds or runs: 1 or more."""
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text!r}")
    return value


def limit(text: str) -> int:
    """A limit where 0 means none: 0 or more."""
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or more, not {text!r}")
    return value


def in_range(low: int, high: int, what: str = "") -> Callable[[str], int]:
    """An integer in ``low..high`` (inclusive)."""

    def parse(text: str) -> int:
        value = integer(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what or 'value'} must be {low}..{high}, not {text}")
        return value

    parse.__name__ = f"{low}..{high}"
    return parse


def buffer_size(text: str) -> int:
    """An rpmsg buffer size in bytes, header included: 32..16 MiB."""
    return in_range(32, 1 << 24, "buffer size")(text)


def byte_size(text: str) -> int:
    """A memory size in bytes, decimal or 0x-hex: 4 KiB .. 1 GiB."""
    return in_range(0x1000, 1 << 30, "memory size")(text)

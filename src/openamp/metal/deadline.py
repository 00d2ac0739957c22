"""One meaning of ``timeout`` for the whole package: :class:`Deadline`.

Every blocking call in pyopenamp takes ``timeout`` in seconds: ``None`` waits forever,
``0`` (or a negative value) does not wait, anything else is measured with
:func:`time.monotonic` from the moment the call starts.  A call that waits in several
steps turns its ``timeout`` into one :class:`Deadline` at the start and asks it for the
time left before each step, so the steps together never take longer than asked.

This module is a leaf: it imports only the standard library, so the board adapter
(:mod:`openamp.linux`) and the sans-IO layers can share it without loading anything.
"""

from __future__ import annotations

import time

__all__ = ["Deadline"]


class Deadline:
    """A point in time derived from a ``timeout`` in seconds (``None`` = never).

    A negative timeout is the same as 0: the deadline has passed already.
    """

    __slots__ = ("_at", "timeout")

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        """The timeout the deadline was made from (for error messages)."""
        self._at = None if timeout is None else time.monotonic() + max(0.0, timeout)

    @property
    def at(self) -> float | None:
        """The :func:`time.monotonic` value of the deadline, or None for no deadline."""
        return self._at

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None for no deadline."""
        if self._at is None:
            return None
        return max(0.0, self._at - time.monotonic())

    def remaining_ms(self) -> int | None:
        """Milliseconds left, rounded up (for ``poll()``), or None for no deadline."""
        left = self.remaining()
        return None if left is None else int(left * 1000 + 0.999)

    def expired(self) -> bool:
        """Whether the deadline has passed (never for no deadline)."""
        return self._at is not None and time.monotonic() >= self._at

    def __repr__(self) -> str:
        left = self.remaining()
        return "Deadline(never)" if left is None else f"Deadline({left:.3f} s left)"

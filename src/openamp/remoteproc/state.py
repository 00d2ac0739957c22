"""The remoteproc life cycle as data: states, and which operation leads where.

The C library's states (offline, configured, ready, running, suspended, error, stopped)
extended with Linux's (crashed, attached, detached).  :data:`TRANSITIONS` maps an
operation to ``{from_state: to_state}``; :data:`NO_OPS` lists where an operation is
accepted and changes nothing; anything else is an illegal transition, refused with
:class:`RemoteprocStateError`.  Every state change of :class:`RemoteProc` goes through
:func:`next_state` — the user's operations and the platform's reports (``crash``,
``exit``) alike — so this table is the whole truth, and the docs render it.
"""

from __future__ import annotations

from enum import Enum

from ..errors import InvalidStateError


class RprocState(Enum):
    """Life-cycle state of a remote processor (C values where C has them)."""

    OFFLINE = 0
    CONFIGURED = 1
    READY = 2
    RUNNING = 3
    SUSPENDED = 4
    ERROR = 5
    STOPPED = 6
    CRASHED = 16
    """Linux: the remote died on its own (a watchdog, an exception, a process exit)."""
    ATTACHED = 17
    """Linux: running, started by someone else (a bootloader); we manage it now."""
    DETACHED = 18
    """Linux: left running; we no longer manage it."""

    def __str__(self) -> str:
        return self.name.lower()


S = RprocState

TRANSITIONS: dict[str, dict[RprocState, RprocState]] = {
    "config": {S.OFFLINE: S.READY, S.STOPPED: S.READY},
    "load": {S.READY: S.READY, S.CONFIGURED: S.READY},
    "start": {S.READY: S.RUNNING},
    "stop": {
        S.RUNNING: S.STOPPED,
        S.SUSPENDED: S.STOPPED,
        S.ERROR: S.STOPPED,
        S.CRASHED: S.STOPPED,
        S.ATTACHED: S.STOPPED,
    },
    "shutdown": {
        S.CONFIGURED: S.OFFLINE,
        S.READY: S.OFFLINE,
        S.RUNNING: S.OFFLINE,
        S.SUSPENDED: S.OFFLINE,
        S.ERROR: S.OFFLINE,
        S.STOPPED: S.OFFLINE,
        S.CRASHED: S.OFFLINE,
        S.ATTACHED: S.OFFLINE,
        S.DETACHED: S.OFFLINE,
    },
    "crash": {S.RUNNING: S.CRASHED, S.ATTACHED: S.CRASHED},
    "exit": {S.RUNNING: S.STOPPED, S.ATTACHED: S.STOPPED},
    "recover": {S.CRASHED: S.RUNNING},
    "attach": {S.OFFLINE: S.ATTACHED, S.DETACHED: S.ATTACHED},
    "detach": {S.RUNNING: S.DETACHED, S.ATTACHED: S.DETACHED},
    "fail": {S.READY: S.ERROR, S.RUNNING: S.ERROR, S.ATTACHED: S.ERROR, S.CRASHED: S.ERROR},
}
"""operation -> {state it is allowed in: state it leads to}."""

_LATE = frozenset(RprocState) - {S.RUNNING, S.ATTACHED}

NO_OPS: dict[str, frozenset[RprocState]] = {
    "stop": frozenset({S.STOPPED, S.OFFLINE}),
    "shutdown": frozenset({S.OFFLINE}),
    "crash": _LATE,
    "exit": _LATE,
}
"""States in which an operation is accepted and does nothing (as in C).

``crash`` and ``exit`` are reports from the platform (the remote died, or its firmware
ended by itself); one that arrives after the remote was stopped or is already crashed
is late and changes nothing."""


class RemoteprocStateError(InvalidStateError):
    """An operation is not allowed in the remote processor's current state."""

    def __init__(self, operation: str, state: RprocState) -> None:
        allowed = ", ".join(str(s) for s in TRANSITIONS.get(operation, {})) or "no state"
        super().__init__(
            f"cannot {operation} a remote processor that is {state} (allowed from: {allowed})"
        )
        self.operation = operation
        self.state = state


def next_state(operation: str, state: RprocState) -> RprocState | None:
    """The state ``operation`` leads to from ``state``; None if it is a no-op there.

    Raises :class:`RemoteprocStateError` for an illegal transition.
    """
    if state in NO_OPS.get(operation, frozenset()):
        return None
    try:
        return TRANSITIONS[operation][state]
    except KeyError:
        raise RemoteprocStateError(operation, state) from None


def transition_table_markdown() -> str:
    """The transition table as Markdown (for the docs)."""
    states = list(RprocState)
    head = "| operation | " + " | ".join(str(s) for s in states) + " |"
    rule = "|---" * (len(states) + 1) + "|"
    rows = [head, rule]
    for op, moves in TRANSITIONS.items():
        cells = []
        for s in states:
            if s in moves:
                cells.append(str(moves[s]))
            elif s in NO_OPS.get(op, frozenset()):
                cells.append("(no-op)")
            else:
                cells.append("")
        rows.append(f"| {op} | " + " | ".join(cells) + " |")
    return "\n".join(rows)

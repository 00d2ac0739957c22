"""What every remote-side service shares: an endpoint, a serving loop, stop reasons.

A service subclass names its endpoint (``SERVICE_NAME``), handles messages in
:meth:`Service.on_message` and calls :meth:`Service.stop` with a reason when it is done.
:meth:`Service.run` serves until then, until the peer destroys its endpoint (NS destroy)
or disconnects, or until a time limit — the stop conditions of the C demos.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from ..errors import PeerGoneError
from ..metal.deadline import Deadline
from ..rpmsg.core import Endpoint, RpmsgDevice

CLOSED_REASON = "the rpmsg device was closed"


def serve_until(
    rpmsg: RpmsgDevice,
    stop_reason: Callable[[], str],
    timeout: float | None,
    *,
    gone: str = "the peer disconnected",
) -> str:
    """Process messages until ``stop_reason()`` gives a reason; return why serving ended.

    The one serving loop of every service: it ends when ``stop_reason()`` returns a
    non-empty string (a handler asked to stop, the peer destroyed its endpoint), when
    the device is closed under it (:data:`CLOSED_REASON`), when the peer goes away
    (``gone``) or when ``timeout`` seconds have passed (None = no limit).  It blocks in
    the device's waiter in between, so an idle service uses no CPU.
    """
    deadline = Deadline(timeout)
    try:
        while not (reason := stop_reason()):
            if rpmsg.closed:
                return CLOSED_REASON
            if deadline.expired():
                return f"time limit of {timeout} s"
            rpmsg.wait_until(lambda: bool(stop_reason()), deadline.remaining())
    except PeerGoneError:
        return stop_reason() or gone
    return reason


class Service:
    """An endpoint that serves messages until a stop condition (see the module docstring)."""

    SERVICE_NAME: ClassVar[str] = ""
    UNBIND_REASON: ClassVar[str] = "the host destroyed its endpoint"
    GONE_REASON: ClassVar[str] = "the host disconnected"

    def __init__(self, rpmsg: RpmsgDevice, name: str | None = None, *, src: int = -1) -> None:
        """Create the endpoint ``name`` (default ``SERVICE_NAME``); it is announced."""
        self.rpmsg = rpmsg
        self.stop_reason = ""
        kw = {} if src < 0 else {"src": src}
        self.endpoint: Endpoint = rpmsg.create_endpoint(
            name or self.SERVICE_NAME, callback=self.on_message, on_unbind=self.on_unbind, **kw
        )

    def on_message(self, ept: Endpoint, data: memoryview, src: int) -> None:
        """Handle one message (``data`` is valid only during the call)."""
        raise NotImplementedError

    def on_unbind(self, ept: Endpoint) -> None:
        """The peer destroyed its endpoint: stop, as the C demos do."""
        self.stop(self.UNBIND_REASON)

    def stop(self, reason: str = "stopped") -> None:
        """Ask :meth:`run` to return; the first reason given is kept."""
        if not self.stop_reason:
            self.stop_reason = reason

    @property
    def stopped(self) -> bool:
        """Whether a stop condition was met."""
        return bool(self.stop_reason)

    def serve(self, timeout: float | None = None) -> str:
        """Serve until a stop condition or ``timeout`` s (None = no limit); return the reason.

        The endpoint is destroyed at the end (announcing it while the peer listens).
        """
        self.stop(serve_until(self.rpmsg, lambda: self.stop_reason, timeout, gone=self.GONE_REASON))
        self.endpoint.destroy()
        return self.stop_reason

"""What every remote-side service shares: an endpoint, a serving loop, stop reasons.

A service subclass names its endpoint (``SERVICE_NAME``), handles messages in
:meth:`Service.on_message` and calls :meth:`Service.stop` with a reason when it is done.
:meth:`Service.run` serves until then, until the peer destroys its endpoint (NS destroy)
or disconnects, or until a time limit — the stop conditions of the C demos.
"""

from __future__ import annotations

import time
from typing import ClassVar

from ..errors import PeerGoneError
from ..rpmsg.core import Endpoint, RpmsgDevice


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
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self.stop_reason:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self.stop(f"time limit of {timeout} s")
                    break
                self.rpmsg.wait_until(lambda: self.stopped, remaining)
        except PeerGoneError:
            self.stop(self.GONE_REASON)
        self.endpoint.destroy()
        return self.stop_reason

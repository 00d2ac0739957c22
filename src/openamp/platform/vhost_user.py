"""The vhost-user machine: a remote whose rpmsg device a real Linux kernel drives.

:class:`VhostUserMachine` looks like the other machines from above: ``start()`` returns
the rpmsg device.  The backend it runs on is :mod:`openamp.vhost`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from ..errors import (
    InvalidStateError,
    OpenAMPError,
    PeerGoneError,
)
from ..metal.deadline import Deadline
from ..metal.wait import DoorbellWaiter, wait_strategy
from ..rpmsg.core import NsCallback
from ..rpmsg.events import EventHook, TraceHook
from ..rpmsg.virtio import RpmsgVirtioDevice
from ..vhost.device import VhostUserDevice
from ..vhost.wire import DEFAULT_PROTOCOL_FEATURES, RPMSG_DEVICE_FEATURES

log = logging.getLogger("openamp.platform.vhost_user")


class VhostUserMachine:
    """A remote whose rpmsg device is served over vhost-user (mirrors ``SharedMemoryMachine``).

    The backend listens on ``socket_path`` from construction on; start the frontend (a
    UML kernel with ``virtio_uml.device=PATH:7``), then call :meth:`start`, which waits
    for the connection and the driver's set-up and returns the
    :class:`~openamp.rpmsg.virtio.RpmsgVirtioDevice`.  ``wait`` names the wait strategy
    (``"spin-then-block"`` by default).  ``capture`` records the link's events (the
    rpmsg device's, and the frontend's status and feature writes).  The remaining
    keywords go to the rpmsg device.

    Keep calling into the rpmsg device (a service's ``run()``, ``wait_until``) while
    the guest runs: control messages are handled only then, and a frontend that waits
    for a reply (UML does on driver removal and power-off) waits until they are.
    ``with`` closes the machine; it does not start it.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        device_features: int = RPMSG_DEVICE_FEATURES,
        protocol_features: int = DEFAULT_PROTOCOL_FEATURES,
        wait: str = "spin-then-block",
        wait_options: dict[str, Any] | None = None,
        ns_bind_cb: NsCallback | None = None,
        ns_unbind_cb: NsCallback | None = None,
        trace: TraceHook | None = None,
        capture: EventHook | None = None,
    ) -> None:
        self.strategy = wait_strategy(wait, **(wait_options or {}))
        self.device = VhostUserDevice(
            socket_path, device_features=device_features, protocol_features=protocol_features
        )
        self.device.on_stop = self._fence
        self._ns_bind_cb = ns_bind_cb
        self._ns_unbind_cb = ns_unbind_cb
        self._trace = trace
        self.capture = capture
        self.device.capture = capture
        self._rpmsg: RpmsgVirtioDevice | None = None

    def __repr__(self) -> str:
        return f"VhostUserMachine({self.device.path!r})"

    @property
    def path(self) -> Path:
        """The socket path the frontend connects to."""
        return Path(self.device.path)

    @property
    def rpmsg(self) -> RpmsgVirtioDevice:
        """The rpmsg device (after :meth:`start`)."""
        if self._rpmsg is None:
            raise InvalidStateError("the machine is not started; call start() first")
        return self._rpmsg

    def start(self, timeout: float | None = 10.0) -> RpmsgVirtioDevice:
        """Accept the frontend, wait for the driver's DRIVER_OK, bring rpmsg up.

        ``timeout``: seconds for all of it (None = forever).  On failure the machine
        is closed.
        """
        if self._rpmsg is not None:
            return self._rpmsg
        remaining = Deadline(timeout).remaining

        try:
            dev = self.device
            dev.accept(remaining())
            waiter = DoorbellWaiter(dev.doorbell(), self.strategy)
            dev.wait_ready(remaining(), waiter=waiter)
            self._rpmsg = RpmsgVirtioDevice(
                dev,
                shm=dev.guest_memory,
                waiter=waiter,
                ns_bind_cb=self._ns_bind_cb,
                ns_unbind_cb=self._ns_unbind_cb,
                ready_timeout=remaining(),
                trace=self._trace,
                capture=self.capture,
            )
            if dev.stopped:  # stopped while rpmsg was being set up
                self._fence(dev.stopped)
        except BaseException:
            self.close()
            raise
        return self._rpmsg

    def _fence(self, reason: str) -> None:
        """Make the rpmsg device stop touching the rings the driver has given up."""
        rpmsg = self._rpmsg
        if rpmsg is None:
            return
        rpmsg.transport_stopped(reason)

    def serve(self, timeout: float | None = None) -> str:
        """Keep serving until the frontend disconnects or ``timeout`` seconds pass.

        While the driver uses the device, incoming rpmsg messages are dispatched as
        usual; after it stopped the device (driver removal, power-off) control messages
        are still answered, since the frontend may wait for replies (UML does before it
        can exit).  Returns why it ended.
        """
        rpmsg = self.rpmsg
        dev = self.device
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if dev.closed or dev.disconnected:
                return f"the vhost-user frontend on {dev.path} disconnected"
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return f"time limit of {timeout} s"
            try:
                if not dev.stopped:
                    rpmsg.wait_until(lambda: bool(dev.stopped), remaining)
                else:
                    dev.process(remaining)
            except PeerGoneError:
                continue
            except OpenAMPError:
                dev.check_memory()  # the real cause, if the frontend took the memory away
                raise

    def close(self) -> None:
        """Close the rpmsg device (announcing while the driver listens), then the backend.

        Idempotent.
        """
        if self._rpmsg is not None:
            with contextlib.suppress(OpenAMPError):
                self._rpmsg.close()
            self._rpmsg = None
        self.device.close()

    def __enter__(self) -> VhostUserMachine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["VhostUserMachine"]

"""The relay: other shells talk to a firmware that ``openamp rproc run --name NAME`` booted.

The firmware's rpmsg link has one host, the ``rproc run`` process.  So that
``openamp send``, ``listen`` and ``console`` can reach the firmware from another
terminal, that process also serves a control socket, ``/tmp/NAME.ctl`` (a UNIX
``SOCK_SEQPACKET`` socket: one request or event per packet, JSON), and relays:

* ``{"op": "send", "service": S, "data": HEX, "reply": bool}`` — send one message to the
  firmware's service S (announced by the firmware) from the relay's endpoint for S;
  answered with ``{"ok": true, "sent": N}``, and with ``reply`` the next message the
  firmware sends back on S (``{"event": "message", ...}``);
* ``{"op": "listen", "service": S}`` — every message the firmware sends on S from now on,
  as ``{"event": "message", "service": S, "src": ADDR, "data": HEX}``;
* ``{"op": "console"}`` — the last :data:`BACKLOG` console lines (``{"event":
  "console", "line": ...}``) and trace lines (``{"event": "trace", "line": ...}``), then
  every new one;
* every client gets ``{"event": "state", "state": ...}`` on state changes and
  ``{"event": "gone"}`` when the firmware stops.

A request for a service the firmware has not announced yet (it is still booting, or
restarting) waits for the announcement up to the request's ``timeout`` (seconds, default
5), so ``openamp rproc run ... &`` followed at once by ``openamp send`` works.  A message
from the firmware goes to every client listening on its service (and to a ``send``
waiting for its reply); with no one listening it is dropped, so start ``listen`` before
you ``send``.  The relay runs in the host's one thread: the caller
calls :meth:`RelayServer.serve_once` between its other work.  Nothing here blocks.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import OpenAMPError, OpenAMPTimeoutError, PeerGoneError, UsageError

if TYPE_CHECKING:
    from ..rpmsg.core import Endpoint, RpmsgDevice

BACKLOG = 200
"""Console and trace lines a new ``console`` client gets first."""
MAX_PACKET = 1 << 17
"""Largest request or event, bytes (a message's payload is at most 64 KiB, in hex)."""


def control_path(name: str) -> str:
    """The control socket of the virtual machine ``name``."""
    if not name or "/" in name:
        raise UsageError(f"virtual machine name {name!r} must be non-empty and have no '/'")
    return f"/tmp/{name}.ctl"


@dataclass
class _Client:
    sock: socket.socket
    services: set[str] = field(default_factory=set)
    console: bool = False
    reply_to: set[str] = field(default_factory=set)
    waiting: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    """Requests for services not announced yet, with their deadlines (monotonic)."""


class _NotYet(Exception):
    """The service is not announced (yet): the request waits."""


class RelayServer:
    """The relay's server side (see the module docstring), on ``/tmp/NAME.ctl``.

    ``device()`` returns the host's rpmsg device as it is now (None while there is none,
    e.g. during a restart).  Close it with :meth:`close` (or ``with``).
    """

    def __init__(self, name: str, device: Callable[[], RpmsgDevice | None]) -> None:
        self.path = control_path(name)
        self._device = device
        self._clients: list[_Client] = []
        self._endpoints: dict[str, Endpoint] = {}
        self._owner: RpmsgDevice | None = None
        self._backlog: deque[dict[str, Any]] = deque(maxlen=BACKLOG)
        if os.path.exists(self.path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                probe.connect(self.path)
            except OSError:
                os.unlink(self.path)  # left by a relay that was killed
            else:
                raise UsageError(f"the virtual machine {name!r} is already running ({self.path})")
            finally:
                probe.close()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._listener.bind(self.path)
            self._listener.listen(8)
            self._listener.setblocking(False)
        except BaseException:
            self._listener.close()
            raise

    # -- events from the host -----------------------------------------------------------

    def console(self, line: str, kind: str = "console") -> None:
        """Pass a console (or trace) line to the clients that asked for the console."""
        event = {"event": kind, "line": line}
        self._backlog.append(event)
        self._broadcast(event, lambda c: c.console)

    def state(self, state: str) -> None:
        """Tell every client the remoteproc state changed."""
        self._broadcast({"event": "state", "state": state}, lambda c: True)

    # -- the work, called from the host's loop --------------------------------------------

    def serve_once(self) -> None:
        """Accept clients, answer their requests, relay the firmware's messages."""
        self._accept()
        for client in list(self._clients):
            self._read(client)
            self._retry(client)
        self._relay_messages()

    def _retry(self, client: _Client) -> None:
        waiting, client.waiting = client.waiting, []
        for request, deadline in waiting:
            self._answer(client, request, deadline)

    def _answer(self, client: _Client, request: dict[str, Any], deadline: float) -> None:
        try:
            answer = self._handle(client, request)
        except _NotYet as exc:
            if time.monotonic() < deadline:
                client.waiting.append((request, deadline))
                return
            answer = {"ok": False, "error": str(exc)}
        except OpenAMPError as exc:
            answer = {"ok": False, "error": str(exc)}
        except (ValueError, KeyError, TypeError) as exc:
            answer = {"ok": False, "error": f"bad request: {exc}"}
        if answer is not None:
            self._send(client, answer)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            self._clients.append(_Client(sock))

    def _read(self, client: _Client) -> None:
        while True:
            try:
                packet = client.sock.recv(MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop(client)
                return
            if not packet:
                self._drop(client)
                return
            try:
                request = json.loads(packet)
                timeout = float(request.get("timeout", 5.0))
            except (ValueError, TypeError, AttributeError) as exc:
                self._send(client, {"ok": False, "error": f"bad request: {exc}"})
                continue
            self._answer(client, request, time.monotonic() + timeout)

    def _handle(self, client: _Client, request: dict[str, Any]) -> dict[str, Any] | None:
        op = request["op"]
        if op == "console":
            client.console = True
            self._send(client, {"ok": True})
            for event in self._backlog:
                self._send(client, event)
            return None
        service = str(request["service"])
        if op == "listen":
            self._endpoint(service)
            client.services.add(service)
            return {"ok": True}
        if op == "send":
            ept = self._endpoint(service)
            data = bytes.fromhex(request["data"])
            if request.get("reply"):
                client.reply_to.add(service)
            sent = ept.send(data, timeout=1.0)
            return {"ok": True, "sent": sent}
        raise ValueError(f"unknown op {op!r}")

    def _endpoint(self, service: str) -> Endpoint:
        dev = self._device()
        if dev is None:
            raise _NotYet("the firmware has no rpmsg link (it is not running)")
        if dev is not self._owner:  # a new link (first use, or after a restart)
            self._owner = dev
            self._endpoints.clear()
        ept = self._endpoints.get(service)
        if ept is None or ept.closed:
            addr = dev.services.get(service)
            if addr is None:
                announced = ", ".join(sorted(dev.services)) or "none"
                raise _NotYet(f"the firmware announced no {service!r} (announced: {announced})")
            ept = dev.create_endpoint(service, dst=addr)
            self._endpoints[service] = ept
        return ept

    def _relay_messages(self) -> None:
        dev = self._device()
        if dev is None or dev is not self._owner:
            return
        with contextlib.suppress(OpenAMPError):
            dev.poll()
        for service, ept in self._endpoints.items():
            while ept.pending:
                try:
                    data, src = ept.recv_from(timeout=0)
                except OpenAMPTimeoutError:
                    break
                event = {"event": "message", "service": service, "src": src, "data": data.hex()}
                for client in list(self._clients):
                    if service in client.services or service in client.reply_to:
                        client.reply_to.discard(service)
                        self._send(client, event)

    def _broadcast(self, event: dict[str, Any], who: Callable[[_Client], bool]) -> None:
        for client in list(self._clients):
            if who(client):
                self._send(client, event)

    def _send(self, client: _Client, value: dict[str, Any]) -> None:
        try:
            client.sock.send(json.dumps(value).encode())
        except (BlockingIOError, InterruptedError):
            pass  # a client that does not read loses events, never stalls the host
        except OSError:
            self._drop(client)

    def _drop(self, client: _Client) -> None:
        if client in self._clients:
            self._clients.remove(client)
        client.sock.close()

    def close(self) -> None:
        """Tell the clients the firmware is gone, close them and remove the socket."""
        self._broadcast({"event": "gone"}, lambda c: True)
        for client in list(self._clients):
            self._drop(client)
        self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> RelayServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RelayClient:
    """A connection to a relay (what ``openamp send/listen/console`` use)."""

    def __init__(self, name: str, timeout: float = 5.0) -> None:
        self.path = control_path(name)
        self.timeout = timeout
        deadline = time.monotonic() + timeout
        while True:  # the machine may still be starting: retry until ``timeout``
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                self.sock.connect(self.path)
                break
            except OSError as exc:
                self.sock.close()
                if time.monotonic() >= deadline:
                    raise PeerGoneError(
                        f"nothing serves the virtual machine {name!r} ({self.path}: "
                        f"{exc.strerror or exc}); start it with "
                        f"`openamp rproc run FIRMWARE --name {name}`"
                    ) from None
                time.sleep(0.05)
        self.sock.settimeout(timeout + 1.0)

    def request(self, **request: Any) -> dict[str, Any]:
        """Send a request; return its answer (events that come first are skipped).

        The relay waits up to the connection's ``timeout`` for the service to be
        announced."""
        request.setdefault("timeout", self.timeout)
        self.sock.send(json.dumps(request).encode())
        while True:
            event = self.next_event()
            if "ok" in event:
                if not event["ok"]:
                    raise OpenAMPError(event.get("error", "the relay refused the request"))
                return event

    def next_event(self, timeout: float | None = None) -> dict[str, Any]:
        """The next packet from the relay; :class:`OpenAMPTimeoutError` after
        ``timeout`` s (None: the connection's timeout); :class:`PeerGoneError` if the
        relay went away."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            packet = self.sock.recv(MAX_PACKET)
        except TimeoutError:
            raise OpenAMPTimeoutError("no event from the relay in time") from None
        if not packet:
            raise PeerGoneError("the relay closed the connection (the firmware stopped)")
        value = json.loads(packet)
        if not isinstance(value, dict):
            raise PeerGoneError("the relay sent something that is not an event")
        return value

    def close(self) -> None:
        """Disconnect."""
        self.sock.close()

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["RelayClient", "RelayServer", "control_path"]

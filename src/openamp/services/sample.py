"""The rpmsg client sample: both sides of Linux's ``rpmsg_client_sample`` and the C demos.

The service is ``rpmsg-client-sample``.  The remote announces it; the host sends
``"hello world!"`` (12 bytes, no NUL) and the remote echoes; after the 100th message the
remote destroys its endpoint, which the host sees as an NS destroy.

* :class:`SampleEcho` plays the C ``rpmsg-sample-echo`` remote: it echoes every message
  to its sender and, right after echoing the ``limit``-th (100), destroys its endpoint
  (NS destroy).  It also stops if the host destroys its endpoint first.  Like the C
  program it does not look at the content and knows no shutdown message.
* :func:`run_sample` plays a host, in one of two styles:

  ``"openamp"`` (default): the C ``rpmsg-sample-ping``.  It announces its own endpoint
  (NS create), waits to be bound by the remote's announcement, sends ``"hello world!"``
  ``count - 1`` times and then ``"goodbye!"`` (8 bytes, no NUL), one at a time, each
  checked against its echo, then waits for the remote's NS destroy.

  ``"linux"``: Linux's ``samples/rpmsg/rpmsg_client_sample.c`` driver.  It announces
  nothing (an NS-created channel has ``announce = false``): it takes the remote's
  announced address, sends ``"hello world!"`` on "probe" and one more for each message
  received until it has received ``count``; all ``count`` messages are
  ``"hello world!"``, and at the last one it logs ``goodbye!``.  The remote learns the
  host's address from the first message.

Differences from the originals, all on the host side: the echoes are compared whole
(the C ping uses ``strncmp`` over the received length, so a truncated echo would pass;
the kernel does not compare at all); a missing echo ends the run after ``timeout``
instead of waiting forever; and by default the endpoint gets a dynamic address (the C
ping uses address 0, pass ``src=0`` for that), so destroying it at the end announces an
NS destroy, which stops a remote that was told to expect more messages.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from ..errors import OpenAMPError, OpenAMPTimeoutError, PeerGoneError, UsageError
from ..rpmsg.core import Endpoint, RpmsgDevice
from ..rpmsg.wire import RPMSG_ADDR_ANY
from .base import Service

log = logging.getLogger("openamp.services.sample")

SAMPLE_SERVICE = "rpmsg-client-sample"
"""The channel name Linux's ``rpmsg_client_sample`` driver binds to."""
SAMPLE_COUNT = 100
"""``MSG_LIMIT`` of the kernel sample and the C demos."""
HELLO = b"hello world!"
"""The message, sent with ``strlen``: 12 bytes, no NUL."""
GOODBYE = b"goodbye!"
"""The C ping's last message (8 bytes, no NUL); the kernel only logs it."""

SampleStyle = Literal["openamp", "linux"]


def sample_messages(count: int = SAMPLE_COUNT, style: SampleStyle = "openamp") -> list[bytes]:
    """The payloads a host of ``style`` sends, in order."""
    if style == "linux":
        return [HELLO] * count
    if style == "openamp":
        return [HELLO] * (count - 1) + [GOODBYE] if count else []
    raise UsageError(f"style must be 'openamp' or 'linux', got {style!r}")


# -- the remote -------------------------------------------------------------------------


@dataclass
class SampleStats:
    """What a sample echo did."""

    messages: int = 0
    """Messages echoed."""
    bytes: int = 0
    destroyed: bool = False
    """Whether it destroyed its endpoint after the last echo (the normal end)."""
    stop_reason: str = ""


class SampleEcho(Service):
    """Echo ``limit`` messages on ``name``, then destroy the endpoint (see the module docstring)."""

    SERVICE_NAME = SAMPLE_SERVICE

    def __init__(
        self,
        rpmsg: RpmsgDevice,
        name: str = SAMPLE_SERVICE,
        *,
        limit: int = SAMPLE_COUNT,
        src: int = -1,
    ) -> None:
        """``src``: the endpoint's address (default dynamic).  Some C versions of the
        demo use 0; an endpoint below 1024 never announces its destroy, so the host only
        sees the remote go away."""
        if limit < 1:
            raise UsageError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self.stats = SampleStats()
        super().__init__(rpmsg, name, src=src)

    def on_message(self, ept: Endpoint, data: memoryview, src: int) -> None:
        """Echo to the sender; after the ``limit``-th, destroy the endpoint."""
        n = self.stats.messages + 1
        log.debug("echo message number %d from %#x, %d bytes", n, src, len(data))
        try:
            ept.sendto(data, src)
        except PeerGoneError:
            raise
        except OpenAMPError as exc:
            # as the C sample echo: a failed send ends the service
            log.error("echo %d failed: %s", n, exc)
            self.stop(f"sending echo {n} failed: {exc}")
            ept.destroy()
            return
        self.stats.messages = n
        self.stats.bytes += len(data)
        if n == 1:
            log.info("first message from %#x echoed", src)
        if n == self.limit:
            # As the C sample echo: the NS destroy follows the last echo.  Done here
            # rather than in run() so the peer sees it even if nobody runs the loop.
            log.info("%d messages echoed, destroying the endpoint", n)
            self.stats.destroyed = True
            self.stop(f"{n} messages echoed, endpoint destroyed")
            ept.destroy()

    def on_unbind(self, ept: Endpoint) -> None:
        """The host destroyed its endpoint first (C: "unexpected Remote endpoint destroy")."""
        log.info("the host destroyed its endpoint after %d messages", self.stats.messages)
        super().on_unbind(ept)

    def run(self, timeout: float | None = None) -> SampleStats:
        """Serve until done or ``timeout`` seconds (None = no limit); destroy the endpoint."""
        self.stats.stop_reason = self.serve(timeout)
        return self.stats


# -- the host ---------------------------------------------------------------------------


@dataclass
class SampleResult:
    """The outcome of :func:`run_sample`."""

    style: str = "openamp"
    count: int = 0
    """Messages asked for."""
    sent: int = 0
    received: int = 0
    errors: int = 0
    bytes: int = 0
    elapsed: float = 0.0
    local_addr: int = 0
    remote_addr: int = 0
    remote_destroyed: bool = False
    """Whether the remote destroyed its endpoint (NS destroy).  Not doing so within
    ``timeout`` after the last echo counts as an error."""
    problems: list[str] = field(default_factory=list)
    """What went wrong, one line per error (at most 20 kept)."""

    @property
    def ok(self) -> bool:
        """Every message echoed intact, then the remote's endpoint destroyed."""
        return self.errors == 0 and self.sent == self.received == self.count


def run_sample(
    rpmsg: RpmsgDevice,
    *,
    count: int = SAMPLE_COUNT,
    style: SampleStyle = "openamp",
    timeout: float = 5.0,
    name: str = SAMPLE_SERVICE,
    src: int = RPMSG_ADDR_ANY,
) -> SampleResult:
    """Run the sample exchange as the host (see the module docstring for ``style``).

    ``count``: messages to send (the remote must be set to the same limit, 100 in C
    and Linux).  ``timeout``: seconds to wait for the service, for each echo and, at
    the end, for the remote's NS destroy.  ``src``: our address (``style="openamp"``
    only; ANY = dynamic).  The endpoint is destroyed at the end.
    """
    if count < 1:
        raise UsageError(f"count must be >= 1, got {count}")
    messages = sample_messages(count, style)
    result = SampleResult(style=style, count=count)
    if style == "linux":
        if src != RPMSG_ADDR_ANY:
            raise UsageError("the linux style always uses a dynamic address")
        remote = rpmsg.wait_service(name, timeout)
        # No name: the kernel's channel endpoint never announces itself, not even its end.
        ept = rpmsg.create_endpoint("", dst=remote)
        log.info("new channel: 0x%x -> 0x%x!", ept.addr, remote)
    else:
        ept = rpmsg.create_endpoint(name, src=src)  # announced, as the C ping's
        try:
            ept.wait_bound(timeout)  # by the remote's announcement
        except BaseException:
            ept.destroy()
            raise
        remote = ept.dest_addr
    result.local_addr, result.remote_addr = ept.addr, remote

    def gone() -> bool:
        return rpmsg.services.get(name) != remote

    try:
        start = time.perf_counter()
        for i, msg in enumerate(messages):
            if gone():
                result.errors += 1
                _note(result, f"the remote destroyed its endpoint after {result.received} echoes")
                break
            ept.send(msg, timeout=timeout)
            result.sent += 1
            if not rpmsg.wait_until(lambda: ept.pending > 0 or gone(), timeout):
                result.errors += 1
                _note(result, f"message {i + 1}: no echo within {timeout} s")
                break
            if not ept.pending:
                result.errors += 1
                _note(
                    result,
                    f"the remote destroyed its endpoint after {result.received} echoes "
                    f"(message {i + 1} not echoed)",
                )
                break
            echo = ept.recv(timeout=0)
            result.received += 1
            result.bytes += len(echo)
            log.debug("incoming msg %d (src: 0x%x)", result.received, remote)
            if echo != msg:
                result.errors += 1
                _note(result, f"message {i + 1}: echo {echo!r}, want {msg!r}")
        result.elapsed = time.perf_counter() - start
        if result.received == count:
            if style == "linux":
                log.info("goodbye!")  # what the kernel sample logs at its last message
            result.remote_destroyed = rpmsg.wait_until(gone, timeout)
            if not result.remote_destroyed:
                result.errors += 1
                _note(
                    result,
                    f"the remote did not destroy its endpoint within {timeout} s after "
                    f"{count} messages (is it set to the same count?)",
                )
        else:
            result.remote_destroyed = gone()
    except OpenAMPTimeoutError as exc:
        result.errors += 1
        _note(result, str(exc))
    except PeerGoneError as exc:
        # e.g. a remote whose endpoint sits at a reserved address: it never announces
        # its destroy, and simply exits after the last echo
        result.errors += 1
        _note(
            result,
            f"the remote went away after {result.received} echoes without destroying its "
            f"endpoint ({exc})",
        )
    finally:
        with contextlib.suppress(PeerGoneError):  # nobody left to tell
            ept.destroy()
    return result


def _note(result: SampleResult, line: str) -> None:
    if len(result.problems) < 20:
        result.problems.append(line)


__all__ = [
    "GOODBYE",
    "HELLO",
    "SAMPLE_COUNT",
    "SAMPLE_SERVICE",
    "SampleEcho",
    "SampleResult",
    "SampleStats",
    "SampleStyle",
    "run_sample",
    "sample_messages",
]

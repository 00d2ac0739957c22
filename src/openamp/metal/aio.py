"""asyncio for the doorbells: wait until a descriptor is readable, on the running loop.

The one place below the front ends that touches asyncio.  :class:`~openamp.metal.wait.
DoorbellWaiter` uses it for ``wait_async``, the asyncio twin of its blocking wait, so
that an endpoint's ``await ept.arecv()`` sleeps in the event loop on the doorbell's file
descriptor (``loop.add_reader``) instead of blocking a thread; the board adapter's
``/dev/rpmsgN`` endpoints and tty wait on their descriptors the same way.  asyncio is
imported when
a coroutine first runs, never by importing this module: code that never awaits pays
nothing for it.
"""

from __future__ import annotations


async def readable(fd: int, timeout: float | None) -> bool:
    """True once ``fd`` is readable, False after ``timeout`` seconds (None = forever)."""
    import asyncio

    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        if timeout is None:
            await ready
            return True
        try:
            await asyncio.wait_for(ready, timeout)
        except asyncio.TimeoutError:
            return False
        return True
    finally:
        loop.remove_reader(fd)


__all__ = ["readable"]

"""asyncio support shared by the endpoint and the tty: wait for a descriptor to be readable.

asyncio is imported only when a coroutine runs (it is there then): importing it costs a
board command a third of its start-up time (about 45 ms on a PC, seconds under UML).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio


async def readable(fd: int) -> None:
    """Return once ``fd`` is readable, waiting on the running loop (``add_reader``)."""
    import asyncio

    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)

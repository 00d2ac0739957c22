"""asyncio support shared by the endpoint and the tty: wait for a descriptor to be readable.

asyncio is imported inside the coroutines, not here: it costs a board command about
30 ms and 5 MB (with ssl), and only asyncio code, which has loaded it already, calls them.
"""

from __future__ import annotations


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

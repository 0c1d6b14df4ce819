#!/usr/bin/env python3
"""A loopback TCP proxy that delays every chunk by DELAY_MS in each direction.

usage: delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS

It stands in for network latency where the kernel's netem is not available: each chunk read
from one side is written to the other DELAY_MS after it arrived. Reading never waits for
writing (a reader task stamps chunks and queues them, a writer task releases each at its
time), so order is kept and the stream is not stalled: a 5 ms delay each way is a 10 ms round
trip whatever the number of requests in flight. Runs until killed; prints "ready" when it
listens.
"""

import asyncio
import sys
import time


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: "asyncio.Queue[tuple[float, bytes]]" = asyncio.Queue()

    async def release() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass

    releaser = asyncio.ensure_future(release())
    try:
        while True:
            chunk = await reader.read(65536)
            queue.put_nowait((time.monotonic() + delay, chunk))
            if not chunk:
                break
    except OSError:
        queue.put_nowait((0.0, b""))
    try:
        await releaser
    except OSError:
        pass


async def main() -> None:
    listen, target, delay_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    delay = delay_ms / 1000.0

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            pump(client_r, server_w, delay), pump(server_r, client_w, delay), return_exceptions=True
        )
        for w in (client_w, server_w):
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

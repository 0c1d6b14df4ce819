"""Python asyncio bench clients: async_client.py MODE URL SECONDS IN_FLIGHT LIMIT

One thread, one asyncio event loop (the default loop), IN_FLIGHT worker tasks each sending GETs
one after the other and reading every body to the end, so that IN_FLIGHT requests are in
flight; at most LIMIT keep-alive connections to the server.

MODE `sp`: servicepoint's asyncio API (`await manager.get_async(url)`, `await resp.aread()`,
`async with` closes the response) on one manager whose service point has connection limit
LIMIT. `aiohttp`: one ClientSession with TCPConnector(limit=LIMIT), `await resp.read()`.
`httpx`: one httpx.AsyncClient with Limits(max_connections=LIMIT,
max_keepalive_connections=LIMIT) (HTTP/1.1), `await client.get(url)` (reads the body).
For https URLs every client verifies the certificate against $BENCH_CA.

After a 0.3 s warm-up, a measured phase of SECONDS; each phase ends when its stop time has
passed and the requests in flight have finished. Prints the RESULT line of the other clients,
CPU being this process's user + system time over the measured phase.
"""
import asyncio
import os
import resource
import ssl
import sys
import time


def ssl_context():
    ca = os.environ.get("BENCH_CA")
    return ssl.create_default_context(cafile=ca or None)


async def make_sp(url, limit):
    import servicepoint

    manager = servicepoint.ServicePointManager()
    if os.environ.get("BENCH_CA") and url.startswith("https:"):
        manager.add_ca_file(os.environ["BENCH_CA"])
    point = manager.find_service_point(url)
    point.connection_limit = limit

    async def one():
        async with await manager.get_async(url) as resp:
            await resp.aread()

    async def close():
        # Nothing to close: the manager (and its connections) goes with the process.
        return manager, point
    return one, close


async def make_aiohttp(url, limit):
    import aiohttp

    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit,
                                     ssl=ssl_context() if url.startswith("https:") else None)
    session = aiohttp.ClientSession(connector=connector)

    async def one():
        async with session.get(url) as resp:
            await resp.read()
    return one, session.close


async def make_httpx(url, limit):
    import httpx

    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
                               verify=ssl_context() if url.startswith("https:") else True)

    async def one():
        resp = await client.get(url)
        resp.raise_for_status()
    return one, client.aclose


async def main_async(mode, url, seconds, in_flight, limit):
    make = {"sp": make_sp, "aiohttp": make_aiohttp, "httpx": make_httpx}[mode]
    one, close = await make(url, limit)
    errors = [0]
    first = [True]

    async def worker(stop_at, counts):
        n = 0
        while time.monotonic() < stop_at:
            try:
                await one()
                n += 1
            except Exception as e:  # noqa: BLE001 - counted, the first one shown
                errors[0] += 1
                if first[0]:
                    first[0] = False
                    sys.stderr.write(f"first error: {type(e).__name__}: {e}\n")
        counts.append(n)

    async def phase(duration):
        counts = []
        stop_at = time.monotonic() + duration
        await asyncio.gather(*(worker(stop_at, counts) for _ in range(in_flight)))
        return sum(counts)

    await phase(0.3)
    errors[0] = 0
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.monotonic()
    n = await phase(seconds)
    wall = time.monotonic() - w0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    await close()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(f"RESULT requests={n} seconds={wall:.3f} cpu_us_per_req={cpu * 1e6 / max(n, 1):.2f} "
          f"max_rss_kib={peak_rss_kib()} errors={errors[0]}", flush=True)
    return 1 if errors[0] or n == 0 else 0


def peak_rss_kib():
    """VmHWM of this process (ru_maxrss survives execve and would include the parent's)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def main():
    mode, url, seconds, in_flight, limit = sys.argv[1:6]
    sys.exit(asyncio.run(main_async(mode, url, float(seconds), int(in_flight), int(limit))))


if __name__ == "__main__":
    main()

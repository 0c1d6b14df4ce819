"""Python bench clients: client.py MODE URL SECONDS THREADS LIMIT LEASE_MS

MODE is `sp` (servicepoint through its ctypes binding), `urllib3` (PoolManager) or
`httpclient` (the standard library's http.client, one connection per thread, no pool).
LEASE_MS 0 means a new connection per request. Prints the same RESULT line as the C clients.
"""
import http.client
import os
import resource
import ssl
import sys
import threading
import time
import urllib.parse


def make_sp(url, threads, limit, lease):
    import servicepoint

    manager = servicepoint.ServicePointManager()
    if os.environ.get("BENCH_CA"):
        manager.add_ca_file(os.environ["BENCH_CA"])
    point = manager.find_service_point(url)
    point.connection_limit = limit
    # LEASE_MS -1 keeps connections alive (None: no limit); the binding takes seconds.
    point.connection_lease_timeout = None if lease < 0 else lease / 1000

    def one():
        with manager.request("GET", url) as resp:
            resp.read()
    return one, (manager, point)


def make_urllib3(url, threads, limit, lease):
    import urllib3

    pool = urllib3.PoolManager(maxsize=max(limit, threads), block=True, retries=False,
                               ca_certs=os.environ.get("BENCH_CA") or None)
    headers = {"Connection": "close"} if lease == 0 else {}

    def one():
        pool.request("GET", url, headers=headers, preload_content=True)
    return one, pool


def make_httpclient(url, threads, limit, lease):
    parts = urllib.parse.urlsplit(url)
    local = threading.local()

    def one():
        conn = getattr(local, "conn", None)
        if conn is None or lease == 0:
            if parts.scheme == "https":
                if getattr(local, "ctx", None) is None:
                    local.ctx = ssl.create_default_context(cafile=os.environ.get("BENCH_CA") or None)
                conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=local.ctx)
            else:
                conn = http.client.HTTPConnection(parts.hostname, parts.port)
            local.conn = conn
        conn.request("GET", parts.path)
        conn.getresponse().read()
        if lease == 0:
            conn.close()
    return one, None


def run(one, threads, seconds):
    counts = [0] * threads
    errors = [0] * threads

    def worker(i, stop_at):
        while time.monotonic() < stop_at:
            for _ in range(16):
                try:
                    one()
                    counts[i] += 1
                except Exception:
                    errors[i] += 1

    def phase(duration):
        stop_at = time.monotonic() + duration
        ts = [threading.Thread(target=worker, args=(i, stop_at)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    phase(0.3)
    counts[:] = [0] * threads
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.monotonic()
    phase(seconds)
    wall = time.monotonic() - w0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    n = sum(counts)
    print(f"RESULT requests={n} seconds={wall:.3f} cpu_us_per_req={cpu * 1e6 / max(n, 1):.2f} "
          f"max_rss_kib={peak_rss_kib()} errors={sum(errors)}")


def peak_rss_kib():
    """VmHWM of this process (ru_maxrss survives execve and would include the parent's)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def main():
    mode, url, seconds, threads, limit, lease = sys.argv[1:7]
    make = {"sp": make_sp, "urllib3": make_urllib3, "httpclient": make_httpclient}[mode]
    one, _keep = make(url, int(threads), int(limit), int(lease))
    run(one, int(threads), float(seconds))


if __name__ == "__main__":
    main()

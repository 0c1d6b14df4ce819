"""Runs every bench client on every scenario, interleaved, and writes bench/RESULTS.md.

Called by bench/run.sh, which installs the tools, builds the clients and starts nginx. Each
round runs each (scenario, client) pair once, rotating the client order between rounds so that
drift on a noisy machine spreads evenly; the table reports medians over the rounds and the
spread (min-max) of CPU per request. Clients run pinned to CPU 1, nginx to CPU 0, except
contention_32_2cpu, whose threads may use both CPUs (taskset -c 0,1) so that they really run in
parallel (for the futex count; its CPU per request is not compared: a client free to use both
CPUs lands next to nginx or across from it, and a single thread's CPU per request is then
bimodal, about 20 or 45 µs on this machine).

CPU per request: the C clients report getrusage(RUSAGE_SELF) differences around the measured
steady state (after a 0.3 s warm-up; start-up excluded); the other clients (Python, C#, wrk)
are measured from outside, as the whole process's user + system time (children's rusage) over
the requests it reports, start-up and warm-up included. --scenarios/--clients select a subset;
--section writes the tables as one section of RESULTS.md (replacing a section of that name)
instead of rewriting the file; --futex adds futex calls per request (perf stat, or strace);
--callgrind adds instructions per request; --before-lib DIR runs the servicepoint C clients
against another build of the library as well ("... before" rows), in the same rounds.
"""
import argparse
import datetime
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys

from results_md import replace_section

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")

# name: (path, threads, connection limit, lease ms (-1 keep-alive, 0 new connection), scheme)
SCENARIOS = {
    "seq_small": ("/small", 1, 2, -1, "http"),
    "threads4_small": ("/small", 4, 4, -1, "http"),
    "newconn_small": ("/small", 1, 2, 0, "http"),
    "seq_64k": ("/big", 1, 2, -1, "http"),
    "https_keepalive": ("/small", 1, 2, -1, "https"),
    "https_newconn": ("/small", 1, 2, 0, "https"),
    # sp_contend on one manager: (threads over 64 points of limit 4, threads on one point)
    "contention_1": ((0, 1), 1, 1, -1, "http"),
    "contention_32": ((16, 16), 32, 16, -1, "http"),
    "contention_32_2cpu": ((16, 16), 32, 16, -1, "http"),
    # one thread, 64 requests in flight (the "threads" field), one service point of limit 64
    "async64_small": ("/small", 64, 64, -1, "http"),
    "async64_64k": ("/big", 64, 64, -1, "http"),
    "async64_https_small": ("/small", 64, 64, -1, "https"),
    "async64_https_64k": ("/big", 64, 64, -1, "https"),
}
TITLES = {
    "seq_small": "Sequential keep-alive GET, 100-byte body, 1 thread",
    "threads4_small": "4 threads sharing one service point (limit 4), 100-byte body",
    "newconn_small": "New connection per request (lease 0 / curl FORBID_REUSE), 100-byte body",
    "seq_64k": "Sequential keep-alive GET, 64 KiB body, 1 thread",
    "https_keepalive": "HTTPS keep-alive GET, 100-byte body, 1 thread (certificate verified)",
    "https_newconn": "HTTPS new connection per request, with session resumption, 100-byte body",
    "contention_1": "Contention baseline: sp_contend with 1 thread on one service point",
    "contention_32": "Contention: 16 threads over 64 service points (limit 4 each) plus 16 threads on one "
                     "service point (limit 16), one manager, 100-byte body",
    "contention_32_2cpu": "Contention as above, client threads on both CPUs (taskset -c 0,1: threads run in "
                          "parallel; nginx shares CPU 0)",
    "async64_small": "Asynchronous: 64 requests in flight from one thread, one service point (limit 64), 100-byte body",
    "async64_64k": "Asynchronous: 64 requests in flight from one thread, one service point (limit 64), 64 KiB body",
    "async64_https_small": "Asynchronous HTTPS: 64 requests in flight from one thread, limit 64, 100-byte body "
                           "(certificate verified)",
    "async64_https_64k": "Asynchronous HTTPS: 64 requests in flight from one thread, limit 64, 64 KiB body "
                         "(certificate verified)",
}


def is_async(s):
    """The asynchronous scenarios: only the asynchronous clients (and wrk) run them."""
    return s.startswith("async")


def client_commands(args):
    """Each client: a function (scenario, url) -> argv, or None when it does not apply."""
    pin = ["taskset", "-c", "1"]
    py = [sys.executable, os.path.join(HERE, "py", "client.py")]
    pya = [sys.executable, os.path.join(HERE, "py", "async_client.py")]
    cs = os.path.join(TARGET, "bench", "Bench.exe")
    secs = str(args.seconds)

    def sp_c_mode(mode):
        def f(s, url):
            path, threads, limit, lease, _ = SCENARIOS[s]
            if is_async(s):
                return None
            if s.startswith("contention"):
                if mode != "new":
                    return None
                many, one = path
                cpus = "0,1" if s.endswith("_2cpu") else "1"
                return ["taskset", "-c", cpus, os.path.join(TARGET, "bench", "sp_contend"), "http://127.0.0.1",
                        str(args.port), str(args.port + 10), secs, str(many), str(one)]
            return pin + [os.path.join(TARGET, "bench", "sp_bench"), url, secs, str(threads), str(limit), str(lease), mode]
        return f

    def curl(s, url):
        if s.startswith("contention") or is_async(s):
            return None
        _, threads, _, lease, _ = SCENARIOS[s]
        return pin + [os.path.join(TARGET, "bench", "curl_bench"), url, secs, str(threads), "1" if lease == 0 else "0"]

    def pyc(mode):
        def f(s, url):
            if s.startswith("contention") or is_async(s):
                return None
            _, threads, limit, lease, _ = SCENARIOS[s]
            return pin + py + [mode, url, secs, str(threads), str(limit), str(lease)]
        return f

    def csc(mode):
        def f(s, url):
            if not os.path.exists(cs) or s.startswith("contention") or is_async(s) != (mode in CS_ASYNC_MODES):
                return None
            _, threads, limit, lease, _ = SCENARIOS[s]
            return pin + ["mono", cs, mode, url, secs, str(threads), str(limit), str(lease)]
        return f

    def wrk(s, url):
        if s.startswith("contention"):
            return None
        _, threads, _, lease, _ = SCENARIOS[s]
        # In the asynchronous scenarios wrk too runs one thread with all connections.
        cmd = pin + ["wrk", "-t", "1" if is_async(s) else str(threads), "-c", str(threads),
                     "-d", f"{max(1, round(args.seconds))}s"]
        if lease == 0:
            cmd += ["-H", "Connection: close"]
        return cmd + [url]

    # The asynchronous clients: one thread, N requests in flight (N = the scenario's "threads").
    def sp_async_c(mode):
        def f(s, url):
            if not is_async(s):
                return None
            _, n, limit, _, _ = SCENARIOS[s]
            return pin + [os.path.join(TARGET, "bench", "sp_async_bench"), url, secs, str(n), str(limit), mode]
        return f

    def curl_multi(s, url):
        if not is_async(s):
            return None
        _, n, limit, _, _ = SCENARIOS[s]
        return pin + [os.path.join(TARGET, "bench", "curl_multi_bench"), url, secs, str(n), str(limit)]

    def pya_c(mode):
        def f(s, url):
            if not is_async(s):
                return None
            _, n, limit, _, _ = SCENARIOS[s]
            return pin + pya + [mode, url, secs, str(n), str(limit)]
        return f

    def before(f):
        # The same client run against another build of the library (--before-lib DIR).
        def g(s, url):
            cmd = f(s, url)
            return cmd and ["env", f"LD_LIBRARY_PATH={args.before_lib}"] + cmd
        return g

    extra = {}
    if args.before_lib:
        extra = {"servicepoint (C) before": before(sp_c_mode("new")),
                 "servicepoint (C, request reused) before": before(sp_c_mode("reuse"))}
    return {
        "servicepoint (C)": sp_c_mode("new"),
        "servicepoint (C, request reused)": sp_c_mode("reuse"),
        **extra,
        "libcurl (C)": curl,
        "servicepoint (Python)": pyc("sp"),
        "urllib3 (Python)": pyc("urllib3"),
        "http.client (Python)": pyc("httpclient"),
        "servicepoint (C#, Mono)": csc("sp"),
        "HttpWebRequest (C#, Mono)": csc("hwr"),
        "servicepoint (C, async)": sp_async_c("new"),
        "servicepoint (C, async, request reused)": sp_async_c("reuse"),
        "libcurl multi (C)": curl_multi,
        "servicepoint (Python, asyncio)": pya_c("sp"),
        "aiohttp (Python)": pya_c("aiohttp"),
        "httpx (Python)": pya_c("httpx"),
        "servicepoint (C#, GetResponseAsync)": csc("sp_async"),
        "servicepoint (C#, BeginGetResponse)": csc("sp_apm"),
        "HttpClient (C#, Mono)": csc("httpclient"),
        "HttpWebRequest.BeginGetResponse (C#, Mono)": csc("hwr_apm"),
        "wrk (ceiling)": wrk,
    }


CS_ASYNC_MODES = ("sp_async", "sp_apm", "httpclient", "hwr_apm")

RESULT = re.compile(r"RESULT (.*)")


def run_one(cmd, env):
    """Runs a client: (output, exit code), or None on a time-out."""
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        text, _ = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return None
    return text.decode("utf-8", "replace"), p.returncode


def parse_one(cmd, text, returncode, ru):
    whole_user, whole_sys = ru
    if "wrk" in cmd:
        m = re.search(r"Requests/sec:\s+([\d.]+)", text)
        n = re.search(r"(\d+) requests in", text)
        if not m or not n:
            return None
        reqs = float(n.group(1))
        return {"rps": float(m.group(1)), "cpu_us": (whole_user + whole_sys) * 1e6 / reqs,
                "user_us": whole_user * 1e6 / reqs, "sys_us": whole_sys * 1e6 / reqs}
    m = RESULT.search(text)
    if not m or returncode != 0:
        sys.stderr.write(f"  failed: {' '.join(cmd)}\n{text[-500:]}\n")
        return None
    fields = dict(kv.split("=") for kv in m.group(1).split())
    n, secs = float(fields["requests"]), float(fields["seconds"])
    out = {"rps": n / secs, "cpu_us": float(fields["cpu_us_per_req"]), "rss_kib": float(fields["max_rss_kib"])}
    if "user_us_per_req" in fields:  # the C clients: in-process, measured phase only
        out["user_us"] = float(fields["user_us_per_req"])
        out["sys_us"] = float(fields["sys_us_per_req"])
    else:  # whole process, start-up and warm-up included
        out["user_us"] = whole_user * 1e6 / n
        out["sys_us"] = whole_sys * 1e6 / n
    return out


def measure(cmd, env):
    """Runs one client (the only child running) and parses its figures."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    got = run_one(cmd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if got is None:
        return None
    text, rc = got
    return parse_one(cmd, text, rc, (after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime))


def futex_per_request(cmd, env):
    """Runs cmd once under perf stat (or strace -f -c) counting futex calls: (calls, requests)."""
    if shutil.which("perf"):
        wrapped = ["perf", "stat", "-x,", "-e", "syscalls:sys_enter_futex", "--"] + cmd
        p = subprocess.run(wrapped, capture_output=True, text=True, env=env, timeout=120)
        m = re.search(r"^(\d+),,syscalls:sys_enter_futex", p.stderr, re.M)
        calls = int(m.group(1)) if m else None
    elif shutil.which("strace"):
        wrapped = ["strace", "-f", "-c", "-e", "trace=futex", "--"] + cmd
        p = subprocess.run(wrapped, capture_output=True, text=True, env=env, timeout=300)
        m = re.search(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?futex", p.stderr, re.M)
        calls = int(m.group(1)) if m else None
    else:
        return None
    r = RESULT.search(p.stdout + p.stderr)
    if calls is None or not r:
        return None
    fields = dict(kv.split("=") for kv in r.group(1).split())
    return calls, float(fields["requests"])


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    return "–" if v is None else f"{v:,.{digits}f}"


def ratio(a, b):
    return "–" if a is None or not b else f"{a / b:.2f}×"


def spread(values, digits=1):
    values = [v for v in values if v is not None]
    return "–" if not values else f"{min(values):,.{digits}f}–{max(values):,.{digits}f}"


def criterion_results(path):
    """(benchmark name, middle estimate) pairs from criterion's output."""
    if not path or not os.path.exists(path):
        return []
    out, name = [], None
    for line in open(path, encoding="utf-8", errors="replace"):
        m = re.match(r"^(\S.*?)\s+time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
        if m:
            out.append((m.group(1).strip(), m.group(2)))
            continue
        m = re.match(r"^\s+time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
        if m and name:
            out.append((name, m.group(1)))
        m = re.match(r"^Benchmarking (.+?): Analyzing", line)
        if m:
            name = m.group(1)
    return out


def to_ns(text):
    value, unit = text.split()
    scale = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}.get(unit)
    return float(value) * scale if scale else None


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Linux {platform.release()}, Python {platform.python_version()}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls-port", type=int, required=True)
    ap.add_argument("--ca", type=str, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--idle", type=str, default="")
    ap.add_argument("--criterion", type=str, default="")
    ap.add_argument("--command", type=str, default="bash bench/run.sh")
    ap.add_argument("--scenarios", type=str, default="", help="comma-separated subset")
    ap.add_argument("--clients", type=str, default="", help="comma-separated substrings of client names")
    ap.add_argument("--section", type=str, default="", help="write the tables as this section of RESULTS.md")
    ap.add_argument("--futex", action="store_true", help="count futex calls per request (contention, S1)")
    ap.add_argument("--callgrind", action="store_true", help="instructions per request of the C clients (S1)")
    ap.add_argument("--before-lib", type=str, default="",
                    help="directory of another libservicepoint build: its clients run beside, as '... before'")
    args = ap.parse_args()
    if args.scenarios:
        keep = args.scenarios.split(",")
        for s in list(SCENARIOS):
            if s not in keep:
                del SCENARIOS[s]
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.path.join(TARGET, "release")
    env["SERVICEPOINT_LIB"] = os.path.join(TARGET, "release", "libservicepoint.so")
    env["PYTHONPATH"] = os.path.join(ROOT, "bindings", "python")
    env["BENCH_CA"] = args.ca
    clients = client_commands(args)
    if args.clients:
        want = args.clients.split(",")
        clients = {c: f for c, f in clients.items() if any(w in c for w in want)}
    names = list(clients)
    samples = {(s, c): [] for s in SCENARIOS for c in names}
    for rnd in range(args.rounds):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for s, (path, *_rest, scheme) in SCENARIOS.items():
            port = args.tls_port if scheme == "https" else args.port
            url = f"{scheme}://localhost:{port}{path}"
            for c in order:
                cmd = clients[c](s, url)
                if cmd is None:
                    continue
                r = measure(cmd, env)
                samples[(s, c)].append(r)
                brief = "failed" if r is None else f"{r['rps']:.0f} req/s, {r['cpu_us']:.1f} µs CPU/req (user {r['user_us']:.1f}, sys {r['sys_us']:.1f})"
                print(f"round {rnd + 1}/{args.rounds} {s:15} {c:32} {brief} [load {os.getloadavg()[0]:.1f}]", flush=True)

    med = {}
    for key, rs in samples.items():
        rs = [r for r in rs if r]
        med[key] = {k: median([r.get(k) for r in rs]) for k in ("rps", "cpu_us", "user_us", "sys_us", "rss_kib")} if rs else None
        if rs:
            med[key]["spread"] = spread([r.get("cpu_us") for r in rs])
    futex = {}
    if args.futex:
        # A 0 s run (start-up, warm-up, thread creation and joins only) and a 3 s run.
        runs = {}
        for secs in (0.0, 3.0):
            short = argparse.Namespace(**vars(args))
            short.seconds = secs
            fclients = client_commands(short)
            for c in [c for c in ("servicepoint (C)", "servicepoint (C) before") if c in fclients]:
                for s in SCENARIOS:
                    if s in ("seq_small", "contention_1", "contention_32", "contention_32_2cpu"):
                        cmd = fclients[c](s, f"http://localhost:{args.port}/small")
                        got = futex_per_request(cmd, env) if cmd else None
                        if got:
                            key = s if c == "servicepoint (C)" else s + ", before"
                            runs[(key, secs)] = got
                            print(f"futex {key} {secs:g} s: {got[0]} calls, {got[1]:.0f} requests", flush=True)
        for key, secs in list(runs):
            if secs == 3.0 and (key, 0.0) in runs:
                futex[key] = (runs[(key, 0.0)][0], runs[(key, 3.0)][0], runs[(key, 3.0)][1])
    instr = []
    if args.callgrind and shutil.which("valgrind"):
        short = argparse.Namespace(**vars(args))
        short.seconds = 2.0
        cclients = client_commands(short)
        url = f"http://localhost:{args.port}/small"
        runs = []
        if "seq_small" in SCENARIOS:
            runs += [(c, "seq_small") for c in ("servicepoint (C)", "servicepoint (C, request reused)", "libcurl (C)")]
        runs += [("servicepoint (C)", s) for s in ("contention_1", "contention_32") if s in SCENARIOS]
        if args.before_lib:
            runs += [(c + " before", scen) for c, scen in runs if c.startswith("servicepoint")]
        for c, scen in runs:
            cmd = cclients[c](scen, url)
            prefix = cmd[:2] if cmd[0] == "env" else []
            cmd = cmd[len(prefix) + 3:]  # without env and taskset
            out_file = os.path.join("/tmp", f"callgrind.bench.{os.getpid()}.out")
            p = subprocess.run(prefix + ["taskset", "-c", "1", "valgrind", "--tool=callgrind", "--instr-atstart=no",
                                f"--callgrind-out-file={out_file}"] + cmd, capture_output=True, text=True, env=env)
            m = re.search(r"Collected : (\d+)", p.stderr)
            r = RESULT.search(p.stdout + p.stderr)
            if m and r:
                n = float(dict(kv.split("=") for kv in r.group(1).split())["requests"])
                instr.append((c if scen == "seq_small" else f"{c}, {scen}", int(m.group(1)) / n))
                print(f"callgrind {instr[-1][0]}: {instr[-1][1]:.0f} instructions/request", flush=True)
            if os.path.exists(out_file):
                os.remove(out_file)
    load = os.getloadavg()
    lines = [
        "# Benchmark results",
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Command: `{args.command}` ({args.rounds} rounds × {args.seconds:g} s per client and scenario, "
        "interleaved; medians)",
        "- Server: nginx (Debian), 1 worker pinned to CPU 0, keep-alive on, access log off, static files "
        "of 100 bytes and 64 KiB on loopback over HTTP and HTTPS (ECDSA P-256 certificate from a CA "
        "generated for the run, session cache and tickets on); clients pinned to CPU 1 and all of "
        "them verify the certificate.",
        "- CPU/req is the client process's user + system time per request: for the C clients "
        "getrusage differences around the measured steady state only (after a 0.3 s warm-up, "
        "start-up excluded); for wrk, Python and C# the whole process's (children's rusage), "
        "start-up included. Spread is min–max over the rounds. RSS is the client's peak "
        "resident set. servicepoint (C) is the code a user writes (a request description per "
        "request, `sp_response_read_all`); \"request reused\" keeps one request description per "
        "thread and streams the body (the cheapest use of the API).",
        f"- Load average at the end of the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores, "
        "shared with other work; system time per request grows with load and with cross-CPU "
        "wake-ups).",
        "",
    ]
    if any(is_async(s) for s in SCENARIOS):
        lines[-1:-1] = [
            "- Asynchronous scenarios: one thread keeps 64 requests in flight over one service point "
            "(limit 64, keep-alive). servicepoint (C, async): `sp_request_async_queued` and one "
            "completion queue polled with poll(2), each body read with `sp_response_read_async_queued`, "
            "a request description per request (\"request reused\": one for all); libcurl multi: 64 "
            "easy handles, `curl_multi_perform`/`curl_multi_poll`, CURLMOPT_MAX_HOST_CONNECTIONS 64; "
            "Python: 64 tasks on the default asyncio loop (servicepoint `get_async` + `aread`, "
            "aiohttp `TCPConnector(limit=64)`, `httpx.AsyncClient` with 64 connections); C#: 64 "
            "chains of asynchronous calls whose continuations run on Mono's thread pool "
            "(`GetResponseAsync` + `ReadAsync`, `BeginGetResponse` + `BeginRead`, Mono's `HttpClient`, "
            "`HttpWebRequest.BeginGetResponse`); wrk: 1 thread, 64 connections. The C and Python "
            "CPU is measured inside the process over the measured phase; C#'s too "
            "(Process.TotalProcessorTime). All threads of a client (runtime threads included) are "
            "pinned to CPU 1.",
        ]
    for s in SCENARIOS:
        curl = med.get((s, "libcurl multi (C)" if is_async(s) else "libcurl (C)"))
        wrk = med.get((s, "wrk (ceiling)"))
        lines += [f"## {TITLES[s]}", "",
                  "| client | req/s | CPU µs/req | spread | user | sys | peak RSS KiB | req/s vs libcurl | CPU vs libcurl | CPU vs wrk |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for c in names:
            m = med.get((s, c))
            if not m:
                continue
            lines.append(
                f"| {c} | {fmt(m['rps'])} | {fmt(m['cpu_us'], 1)} | {m['spread']} | {fmt(m['user_us'], 1)} | "
                f"{fmt(m['sys_us'], 1)} | {fmt(m['rss_kib'])} | "
                f"{ratio(m['rps'], curl and curl['rps'])} | {ratio(m['cpu_us'], curl and curl['cpu_us'])} | "
                f"{ratio(m['cpu_us'], wrk and wrk['cpu_us'])} |")
        lines.append("")

    def get(s, c, k):
        m = med.get((s, c))
        return m and m.get(k)

    checks = []

    def check(name, value, target, ok):
        if value.startswith("–"):  # not measured in this run (a subset)
            return
        checks.append(f"| {name} | {value} | {target} | {'met' if ok else 'NOT MET'} |")

    def r(a, b):
        return a / b if a and b else None

    x = r(get("seq_small", "servicepoint (C)", "cpu_us"), get("seq_small", "libcurl (C)", "cpu_us"))
    check("C sequential (S1): CPU/req vs libcurl", fmt(x, 2) + "×", "≤ 0.8×", x is not None and x <= 0.8)
    x = r(get("seq_small", "servicepoint (C)", "cpu_us"), get("seq_small", "wrk (ceiling)", "cpu_us"))
    check("C sequential (S1): CPU/req vs wrk", fmt(x, 2) + "×", "≤ 1.1×", x is not None and x <= 1.1)
    x = r(get("seq_small", "servicepoint (C, request reused)", "cpu_us"), get("seq_small", "libcurl (C)", "cpu_us"))
    check("C sequential (S1), request reused: CPU/req vs libcurl", fmt(x, 2) + "×", "≤ 0.8×", x is not None and x <= 0.8)
    x = r(get("seq_small", "servicepoint (C, request reused)", "cpu_us"), get("seq_small", "wrk (ceiling)", "cpu_us"))
    check("C sequential (S1), request reused: CPU/req vs wrk", fmt(x, 2) + "×", "≤ 1.1×", x is not None and x <= 1.1)
    i1 = dict(instr).get("servicepoint (C), contention_1")
    i32 = dict(instr).get("servicepoint (C), contention_32")
    x = r(i32, i1)
    check("Contention: instructions/request vs 1 thread (callgrind)", fmt(x, 3) + "×", "≤ 1.15×", x is not None and x <= 1.15)
    if args.before_lib:
        for s, c in (("seq_small", "servicepoint (C)"), ("seq_small", "servicepoint (C, request reused)"),
                     ("contention_1", "servicepoint (C)"), ("contention_32", "servicepoint (C)"),
                     ("contention_32_2cpu", "servicepoint (C)")):
            x = r(get(s, c, "cpu_us"), get(s, c + " before", "cpu_us"))
            check(f"{s}, {c}: CPU/req after vs before", fmt(x, 2) + "×", "(lower is better)", True)
        x = r(get("contention_32", "servicepoint (C) before", "cpu_us"), get("contention_1", "servicepoint (C) before", "cpu_us"))
        check("Before: contention CPU/req vs 1 thread", fmt(x, 2) + "×", "≤ 1.15×", x is not None and x <= 1.15)
    x = r(get("contention_32", "servicepoint (C)", "cpu_us"), get("contention_1", "servicepoint (C)", "cpu_us"))
    check("Contention (16 threads × 64 points + 16 threads × 1 point): CPU/req vs 1 thread", fmt(x, 2) + "×",
          "≤ 1.15×", x is not None and x <= 1.15)
    for s in [k + b for k in ("seq_small", "contention_1", "contention_32", "contention_32_2cpu") for b in ("", ", before")]:
        if s in futex:
            c0, calls, n = futex[s]
            check(f"futex calls per request, {s} (3 s run under perf stat or strace; a 0 s run makes {c0})",
                  f"{calls / n:.4f} ({calls} / {n:.0f})", "≈ 0 (no lock contention)", (calls - c0) / n < 0.01)
    x = r(get("seq_small", "servicepoint (C)", "rps"), get("seq_small", "libcurl (C)", "rps"))
    check("C sequential: req/s vs libcurl", fmt(x, 2) + "×", "≥ 1.0×", x is not None and x >= 1.0)
    x = r(get("threads4_small", "servicepoint (C)", "rps"), get("threads4_small", "libcurl (C)", "rps"))
    check("C 4 threads: req/s vs libcurl (4 easy handles)", fmt(x, 2) + "×", "≥ 1.0× (aim 1.2×)", x is not None and x >= 1.0)
    x = r(get("newconn_small", "servicepoint (C)", "cpu_us"), get("newconn_small", "libcurl (C)", "cpu_us"))
    check("New connection per request: CPU/req vs libcurl forbid-reuse", fmt(x, 2) + "×", "≤ 1.0×", x is not None and x <= 1.0)
    x = r(get("seq_64k", "servicepoint (C)", "rps"), get("seq_64k", "libcurl (C)", "rps"))
    check("64 KiB bodies: req/s vs libcurl", fmt(x, 2) + "×", "≥ 1.0×", x is not None and x >= 1.0)
    x = r(get("seq_small", "servicepoint (Python)", "rps"), get("seq_small", "urllib3 (Python)", "rps"))
    check("Python sequential: req/s vs urllib3", fmt(x, 2) + "×", "≥ 3× (aim 4×)", x is not None and x >= 3.0)
    x = r(get("seq_small", "servicepoint (Python)", "rps"), get("seq_small", "http.client (Python)", "rps"))
    check("Python sequential: req/s vs http.client", fmt(x, 2) + "×", "> 1×", x is not None and x > 1.0)
    x = r(get("seq_small", "servicepoint (C#, Mono)", "rps"), get("seq_small", "HttpWebRequest (C#, Mono)", "rps"))
    check("C# under Mono: req/s vs HttpWebRequest", fmt(x, 2) + "×", "≥ 3×", x is not None and x >= 3.0)
    x = r(get("https_keepalive", "servicepoint (C)", "cpu_us"), get("https_keepalive", "libcurl (C)", "cpu_us"))
    check("HTTPS keep-alive: CPU/req vs libcurl", fmt(x, 2) + "×", "≤ 1.0×", x is not None and x <= 1.0)
    x = r(get("https_newconn", "servicepoint (C)", "cpu_us"), get("https_newconn", "libcurl (C)", "cpu_us"))
    check("HTTPS new connection (resumed): CPU/req vs libcurl", fmt(x, 2) + "×", "≤ 0.6×", x is not None and x <= 0.6)
    for s in [s for s in SCENARIOS if is_async(s)]:
        for c, peer, goal in (("servicepoint (C, async)", "libcurl multi (C)", 0.8),
                              ("servicepoint (Python, asyncio)", "aiohttp (Python)", 0.33),
                              ("servicepoint (C#, GetResponseAsync)", "HttpClient (C#, Mono)", 0.5)):
            x = r(get(s, c, "cpu_us"), get(s, peer, "cpu_us"))
            check(f"{s}: {c} CPU/req vs {peer}", fmt(x, 2) + "×", f"≤ {goal:g}×", x is not None and x <= goal)
    rss = get("seq_small", "servicepoint (C)", "rss_kib")
    check("Peak RSS of the C bench client, sequential", fmt(rss and rss / 1024, 1) + " MiB", "< 6 MiB", rss is not None and rss < 6 * 1024)
    if args.idle:
        m = re.search(r"bytes_per_idle_connection=(\d+)", args.idle)
        per = int(m.group(1)) if m else None
        check("Client memory per idle keep-alive connection (1,000 idle)", fmt(per and per / 1024, 1) + " KiB", "< 16 KiB", per is not None and per < 16 * 1024)
    scale = criterion_results(args.criterion)
    if scale:
        lines += ["## Scale (criterion, `cargo bench --bench pool`)", "", "| benchmark | time per iteration (median of the estimate) | goal |",
                  "| --- | ---: | --- |"]
        for name, median_text in scale:
            goal = "< 1 µs" if name.startswith("find/") else ""
            lines.append(f"| {name} | {median_text} | {goal} |")
        lines.append("")
        for name, median_text in scale:
            if name.startswith("find/"):
                ns = to_ns(median_text)
                check(f"Scale: {name}", median_text, "< 1 µs", ns is not None and ns < 1000)
    if instr:
        base = dict(instr).get("libcurl (C)")
        lines += ["## User-space instructions per request (callgrind, measured phase only; independent of load; "
                  "valgrind runs one thread at a time, so this shows added work, not lock waits; it counts each iteration of a rep-prefixed string instruction as one, so a large memset weighs more here than on the CPU)", "",
                  "| client | instructions/request | vs libcurl |", "| --- | ---: | ---: |"]
        lines += [f"| {c} | {fmt(v)} | {ratio(v, base)} |" for c, v in instr] + [""]
    lines += ["## Targets (ratios from this run)", "", "| target | measured | goal | |", "| --- | ---: | --- | --- |"] + checks + [""]
    results = os.path.join(HERE, "RESULTS.md")
    if args.section:
        # One section of RESULTS.md: headings one level down, replacing a section of that name,
        # else inserted before the soak section.
        body = [f"## {args.section}"] + [("#" + l if l.startswith("## ") else l) for l in lines[1:]]
        text = "\n".join(body).rstrip("\n") + "\n"
        replace_section(results, text)
        print(text)
        return
    extra = os.path.join(HERE, "NOTES.md")
    if os.path.exists(extra):
        lines += [open(extra).read()]
    # The soak section (written by bench/soak.sh, a separate, long run) and the sections written
    # with --section ("## S1 and contention ...", hand-written notes among them) are kept.
    soak = ""
    if os.path.exists(results):
        previous = open(results, encoding="utf-8").read()
        i = previous.find("\n## Soak")
        if i >= 0:
            soak = previous[i:]
            previous = previous[:i]
        kept = [m.group(0) for m in re.finditer(r"\n## S1 and contention.*?(?=\n## |\Z)", previous, re.S)]
        soak = "".join(kept) + soak
    with open(results, "w") as f:
        f.write("\n".join(lines).rstrip("\n") + "\n" + soak)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

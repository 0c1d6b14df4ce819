"""Runs every bench client on every scenario, interleaved, and writes bench/RESULTS.md.

Called by bench/run.sh, which installs the tools, builds the clients and starts nginx. Each
round runs each (scenario, client) pair once, rotating the client order between rounds so that
drift on a noisy machine spreads evenly; the table reports medians over the rounds. Clients
run pinned to CPU 1, nginx to CPU 0.
"""
import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET = os.path.join(ROOT, "target")

# name: (path, threads, connection limit, lease ms (-1 keep-alive, 0 new connection), scheme)
SCENARIOS = {
    "seq_small": ("/small", 1, 2, -1, "http"),
    "threads4_small": ("/small", 4, 4, -1, "http"),
    "newconn_small": ("/small", 1, 2, 0, "http"),
    "seq_64k": ("/big", 1, 2, -1, "http"),
    "https_keepalive": ("/small", 1, 2, -1, "https"),
    "https_newconn": ("/small", 1, 2, 0, "https"),
}
TITLES = {
    "seq_small": "Sequential keep-alive GET, 100-byte body, 1 thread",
    "threads4_small": "4 threads sharing one service point (limit 4), 100-byte body",
    "newconn_small": "New connection per request (lease 0 / curl FORBID_REUSE), 100-byte body",
    "seq_64k": "Sequential keep-alive GET, 64 KiB body, 1 thread",
    "https_keepalive": "HTTPS keep-alive GET, 100-byte body, 1 thread (certificate verified)",
    "https_newconn": "HTTPS new connection per request, with session resumption, 100-byte body",
}


def client_commands(args):
    """Each client: a function (scenario, url) -> argv, or None when it does not apply."""
    pin = ["taskset", "-c", "1"]
    py = [sys.executable, os.path.join(HERE, "py", "client.py")]
    cs = os.path.join(TARGET, "bench", "Bench.exe")
    secs = str(args.seconds)

    def sp_c(s, url):
        path, threads, limit, lease, _ = SCENARIOS[s]
        return pin + [os.path.join(TARGET, "bench", "sp_bench"), url, secs, str(threads), str(limit), str(lease)]

    def curl(s, url):
        _, threads, _, lease, _ = SCENARIOS[s]
        return pin + [os.path.join(TARGET, "bench", "curl_bench"), url, secs, str(threads), "1" if lease == 0 else "0"]

    def pyc(mode):
        def f(s, url):
            _, threads, limit, lease, _ = SCENARIOS[s]
            return pin + py + [mode, url, secs, str(threads), str(limit), str(lease)]
        return f

    def csc(mode):
        def f(s, url):
            if not os.path.exists(cs):
                return None
            _, threads, limit, lease, _ = SCENARIOS[s]
            return pin + ["mono", cs, mode, url, secs, str(threads), str(limit), str(lease)]
        return f

    def wrk(s, url):
        _, threads, _, lease, _ = SCENARIOS[s]
        cmd = pin + ["wrk", "-t", str(threads), "-c", str(threads), "-d", f"{max(1, round(args.seconds))}s"]
        if lease == 0:
            cmd += ["-H", "Connection: close"]
        return cmd + [url]

    return {
        "servicepoint (C)": sp_c,
        "libcurl (C)": curl,
        "servicepoint (Python)": pyc("sp"),
        "urllib3 (Python)": pyc("urllib3"),
        "http.client (Python)": pyc("httpclient"),
        "servicepoint (C#, Mono)": csc("sp"),
        "HttpWebRequest (C#, Mono)": csc("hwr"),
        "wrk (ceiling)": wrk,
    }


RESULT = re.compile(r"RESULT (.*)")


def run_one(cmd, env):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        return None
    text = out.stdout + out.stderr
    if "wrk" in cmd[3]:
        m = re.search(r"Requests/sec:\s+([\d.]+)", text)
        return {"rps": float(m.group(1))} if m else None
    m = RESULT.search(text)
    if not m or out.returncode != 0:
        sys.stderr.write(f"  failed: {' '.join(cmd)}\n{text[-500:]}\n")
        return None
    fields = dict(kv.split("=") for kv in m.group(1).split())
    n, secs = float(fields["requests"]), float(fields["seconds"])
    return {
        "rps": n / secs,
        "cpu_us": float(fields["cpu_us_per_req"]),
        "rss_kib": float(fields["max_rss_kib"]),
    }


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    return "–" if v is None else f"{v:,.{digits}f}"


def ratio(a, b):
    return "–" if a is None or not b else f"{a / b:.2f}×"


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
    args = ap.parse_args()
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.path.join(TARGET, "release")
    env["SERVICEPOINT_LIB"] = os.path.join(TARGET, "release", "libservicepoint.so")
    env["PYTHONPATH"] = os.path.join(ROOT, "bindings", "python")
    env["BENCH_CA"] = args.ca
    clients = client_commands(args)
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
                r = run_one(cmd, env)
                samples[(s, c)].append(r)
                brief = "failed" if r is None else f"{r['rps']:.0f} req/s" + (f", {r['cpu_us']:.1f} µs CPU/req" if "cpu_us" in r else "")
                print(f"round {rnd + 1}/{args.rounds} {s:15} {c:28} {brief}", flush=True)

    med = {}
    for key, rs in samples.items():
        rs = [r for r in rs if r]
        med[key] = {k: median([r.get(k) for r in rs]) for k in ("rps", "cpu_us", "rss_kib")} if rs else None

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
        "- CPU/req is the client process's user + system time per request (getrusage), the steadiest "
        "figure on a noisy machine; RSS is the client's peak resident set.",
        "",
    ]
    for s in SCENARIOS:
        curl = med.get((s, "libcurl (C)"))
        wrk = med.get((s, "wrk (ceiling)"))
        lines += [f"## {TITLES[s]}", "",
                  "| client | req/s | CPU µs/req | peak RSS KiB | req/s vs libcurl | CPU vs libcurl | req/s vs wrk |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for c in names:
            m = med.get((s, c))
            if not m:
                continue
            lines.append(
                f"| {c} | {fmt(m['rps'])} | {fmt(m['cpu_us'], 1)} | {fmt(m['rss_kib'])} | "
                f"{ratio(m['rps'], curl and curl['rps'])} | {ratio(m['cpu_us'], curl and curl['cpu_us'])} | "
                f"{ratio(m['rps'], wrk and wrk['rps'])} |")
        lines.append("")

    def get(s, c, k):
        m = med.get((s, c))
        return m and m.get(k)

    checks = []

    def check(name, value, target, ok):
        checks.append(f"| {name} | {value} | {target} | {'met' if ok else 'NOT MET'} |")

    def r(a, b):
        return a / b if a and b else None

    x = r(get("seq_small", "servicepoint (C)", "cpu_us"), get("seq_small", "libcurl (C)", "cpu_us"))
    check("C sequential: CPU/req vs libcurl", fmt(x, 2) + "×", "≤ 1.0× (aim 0.8×)", x is not None and x <= 1.0)
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
    lines += ["## Targets (ratios from this run)", "", "| target | measured | goal | |", "| --- | ---: | --- | --- |"] + checks + [""]
    extra = os.path.join(HERE, "NOTES.md")
    if os.path.exists(extra):
        lines += [open(extra).read()]
    # The soak section (written by bench/soak.sh, a separate, long run) is kept as it is.
    results = os.path.join(HERE, "RESULTS.md")
    soak = ""
    if os.path.exists(results):
        previous = open(results, encoding="utf-8").read()
        i = previous.find("\n## Soak")
        if i >= 0:
            soak = previous[i:]
    with open(results, "w") as f:
        f.write("\n".join(lines).rstrip("\n") + "\n" + soak)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

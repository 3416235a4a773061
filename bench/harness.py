#!/usr/bin/env python3
"""weir's benchmark harness: weir, Envoy, HAProxy, nginx and a direct
connection measured side by side by one method. One proxy worker pinned to CPU 1; load generator and
backends pinned to CPU 0; interleaved rounds; medians and ratios from one run.

Scenarios: saturated throughput (wrk, 64 connections) with proxy CPU µs per
request; latency at fixed 2,000 and 8,000 req/s (oha, latency-corrected);
peak RSS; split accuracy (sequential requests, worst window of 100); route
change under 2,000 req/s (after `weir route` returns, against `weir up`; and
by weir-gateway's file reload, Envoy's analogue); `weir load` against oha and wrk on
the direct backend; and beyond the happy path (`beyond.py`): h2c downstream
(h2load), 16 KiB request bodies, 1 MiB responses, one request per
connection, 10,000 idle connections, and a thousand VirtualServices.

`--quick` shortens every phase (< 5 minutes); `--smoke` runs each phase once
for about a second, with small counts, writes nothing under bench/results,
and skips what a missing tool cannot run: the test suite uses it so the
harness cannot rot. Every process it starts is stopped by PID; every load
is bounded in time.
"""
import http.client, json, os, re, resource, shutil, signal, statistics, subprocess, sys, tempfile, threading, time

import beyond

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SMOKE = "--smoke" in sys.argv
QUICK = "--quick" in sys.argv or SMOKE
ROUNDS = 1 if SMOKE else 2 if QUICK else 9
DURATION = 1 if SMOKE else 3 if QUICK else 5
RATE_ROUNDS = 1 if QUICK else 5
RATE_DURATION = 1 if SMOKE else 3 if QUICK else 6
SPLIT_N = 300 if SMOKE else 2000 if QUICK else 10000
# Beyond the happy path: rounds and seconds per workload, idle connections
# held (9,900, not 10,000: this machine's hard descriptor limit is 20,000 and
# HAProxy reserves two per connection), VirtualServices in the routing-scale
# configuration.
B_ROUNDS = 1 if SMOKE else 2 if QUICK else 5
B_DURATION = 1 if SMOKE else 2 if QUICK else 4
IDLE_CONNS = 200 if SMOKE else 9900
ROUTES_N = 20 if SMOKE else 1000
RATES = [2000, 8000]
PROXY_CPU, LG_CPU = "1", "0"
RUN = tempfile.mkdtemp(prefix="weir-bench-")
WEIR = os.environ.get("WEIR_BIN_DIR", os.path.join(ROOT, "target", "dist"))
TARGETS = {"direct": 9001, "weir": 8004, "envoy": 8001, "envoy-bare": 8006, "nginx": 8002, "haproxy": 8003, "weir-up": 8005,
           "weir-baseline": 8007, "weir-routes": 8008, "envoy-routes": 8009, "weir-up-routes": 8010, "weir-single": 8011,
           "nginx-h2c": beyond.H2C_PORTS["nginx"], "haproxy-h2c": beyond.H2C_PORTS["haproxy"]}
# Another weir-gateway binary (an earlier commit's) measured beside this one,
# to compare a change side by side: `WEIR_BASELINE_BIN=path bench/run --quick`.
BASELINE = os.environ.get("WEIR_BASELINE_BIN")
procs = {}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def render(name):
    text = open(os.path.join(HERE, "configs", name)).read().replace("@RUN@", RUN)
    out = os.path.join(RUN, name)
    open(out, "w").write(text)
    return out


def start(name, cmd, cpu):
    log(f"start {name}: {' '.join(cmd)}")
    p = subprocess.Popen(["taskset", "-c", cpu] + cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(RUN, name + ".log"), "w"))
    procs[name] = p
    return p


def stop_all():
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + 5
    for p in procs.values():
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/")
            c.getresponse().read()
            return True
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} did not answer")


def pids_of(name):
    """The process and its children (nginx master + worker)."""
    root = procs[name].pid
    out = [root]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == root:
                    out.append(int(entry))
            except OSError:
                pass
    return out


def cpu_ticks(name):
    total = 0
    for pid in pids_of(name):
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except OSError:
            pass
    return total


def rss_mib(name):
    total = 0
    for pid in pids_of(name):
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def proxy_name(target):
    return {"weir": "weir", "weir-baseline": "weir-baseline", "envoy": "envoy", "envoy-bare": "envoy-bare", "nginx": "nginx-proxy",
            "haproxy": "haproxy"}.get(target)


def wrk(target):
    port = TARGETS[target]
    name = proxy_name(target)
    before = cpu_ticks(name) if name else 0
    out = subprocess.run(["taskset", "-c", LG_CPU, "wrk", "-t1", "-c64", f"-d{DURATION}s", "--latency", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=DURATION + 30).stdout
    after = cpu_ticks(name) if name else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    tps = os.sysconf("SC_CLK_TCK")
    cpu_us = (after - before) / tps * 1e6 / max(requests, 1) if name else None
    return {"rps": rps, "cpu_us_per_request": cpu_us}


def oha(url, rate=None, duration=None, conns=64):
    cmd = ["taskset", "-c", LG_CPU, "oha", "-z", f"{duration}s", "-c", str(conns), "--no-tui", "--output-format", "json", url]
    if rate:
        cmd[4:4] = ["-q", str(rate), "--latency-correction"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    return json.loads(out)


def split(target, n):
    conn = http.client.HTTPConnection("127.0.0.1", TARGETS[target], timeout=5)
    seq = []
    for _ in range(n):
        conn.request("GET", "/")
        body = conn.getresponse().read().decode()
        seq.append(1 if "v2.0.0" in body else 0)
    v2 = sum(seq)
    windows = [sum(seq[i:i + 100]) for i in range(0, n - 99)]
    worst = max(abs(w - 10) for w in windows)
    return {"v2_share_pct": v2 * 100 / n, "worst_window_deviation_pp": worst}


def route_change_reload():
    """weir-gateway's file-based reload (like Envoy's file RDS): rewrite the
    VirtualService to 0/100 and SIGHUP the gateway, under 2,000 req/s of
    background load; time until every new request goes to v2."""
    cfg = os.path.join(RUN, "weir")
    vs = os.path.join(cfg, "istio.yaml")
    original = open(vs).read()
    promoted = original.replace("weight: 90", "weight: 0").replace("weight: 10", "weight: 100")
    background = subprocess.Popen(["taskset", "-c", LG_CPU, "oha", "-z", "20s", "-q", "2000", "-c", "16", "--no-tui", "--output-format", "json",
                                   f"http://127.0.0.1:{TARGETS['weir']}/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if shutil.which("oha") else None
    results = []
    for trial in range(5 if QUICK else 10):
        open(vs, "w").write(original)
        procs["weir"].send_signal(signal.SIGHUP)
        time.sleep(0.3)
        open(vs + ".tmp", "w").write(promoted)
        os.replace(vs + ".tmp", vs)
        conn = http.client.HTTPConnection("127.0.0.1", TARGETS["weir"], timeout=5)
        t0 = time.perf_counter()
        procs["weir"].send_signal(signal.SIGHUP)
        last_v1 = None
        deadline = t0 + 2
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            conn.request("GET", "/")
            if "v1.0.0" in conn.getresponse().read().decode():
                last_v1 = sent
        results.append(0.0 if last_v1 is None else (last_v1 - t0) * 1000)
    open(vs, "w").write(original)
    procs["weir"].send_signal(signal.SIGHUP)
    if background:
        background.terminate()
        background.wait(10)
    return statistics.median(results), results


def route_change_cli(manifests=None, name="weir-up", vs="my-app", host=None, path="/", trials=None):
    """`weir route` against a `weir up` serving `manifests` (by default the
    same ones as the gateway: their WorkloadEntries point at the same nginx
    backends), under 2,000 req/s of background load: from `weir route ...
    v1=0 v2=100` returning until every new request goes to v2. Also records
    how long the command itself took (process start, admin call, SQLite
    commit, snapshot swap)."""
    weir = os.path.join(WEIR, "weir")
    state = os.path.join(RUN, "state-" + name)
    port = TARGETS[name]
    start(name, [weir, "up", "--state-dir", state, "--port-map", f"80={port}", "--no-metrics"], PROXY_CPU)
    deadline = time.time() + 20
    while subprocess.run([weir, "get", "pods", "--state-dir", state], capture_output=True).returncode != 0:
        if time.time() > deadline:
            raise RuntimeError("weir up did not come up")
        time.sleep(0.05)
    subprocess.run([weir, "apply", "-f", manifests or os.path.join(RUN, "weir"), "--state-dir", state], check=True, capture_output=True, timeout=300)
    wait_port(port)
    route = lambda *w: subprocess.run(["taskset", "-c", LG_CPU, weir, "route", vs, *w, "--state-dir", state], check=True, capture_output=True)
    headers = {"Host": host} if host else {}
    oha_host = ["-H", f"Host: {host}"] if host else []
    background = subprocess.Popen(["taskset", "-c", LG_CPU, "oha", "-z", "30s", "-q", "2000", "-c", "16", "--no-tui", "--output-format", "json",
                                   *oha_host, f"http://127.0.0.1:{port}{path}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if shutil.which("oha") else None
    after_return, command = [], []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(trials or (5 if QUICK else 10)):
        route("v1=90", "v2=10")
        t_start = time.perf_counter()
        route("v1=0", "v2=100")
        t_return = time.perf_counter()
        last_v1 = None
        while time.perf_counter() < t_return + (0.3 if SMOKE else 1):
            sent = time.perf_counter()
            conn.request("GET", path, headers=headers)
            if "v1.0.0" in conn.getresponse().read().decode():
                last_v1 = sent
        after_return.append(0.0 if last_v1 is None else (last_v1 - t_return) * 1000)
        command.append((t_return - t_start) * 1000)
    if background:
        background.terminate()
        background.wait(10)
    p = procs.pop(name)
    p.send_signal(signal.SIGTERM)
    p.wait(30)
    return statistics.median(after_return), after_return, command


def wrk_on(cpu, url, duration):
    """wrk pinned to `cpu`, for the load-generator comparison."""
    out = subprocess.run(["taskset", "-c", cpu, "wrk", "-t1", "-c64", f"-d{duration}s", url], capture_output=True, text=True, timeout=duration + 30).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def cpu_us_per_request(name, measure):
    """Runs `measure` (a wrk run) and adds the proxy's CPU µs per request."""
    before = cpu_ticks(name)
    res = measure()
    res["cpu_us_per_request"] = (cpu_ticks(name) - before) / os.sysconf("SC_CLK_TCK") * 1e6 / max(res["requests"], 1)
    return res


def beyond_phases(targets, envoy):
    """The workloads beyond the happy path, in interleaved rounds: returns
    their raw figures and their summary keys."""
    raw, summary = {}, {}
    proxies = [t for t in targets if t in ("weir", "envoy", "nginx", "haproxy")]
    h2c_port = {"weir": TARGETS["weir"], "envoy": TARGETS["envoy"], "nginx": TARGETS["nginx-h2c"], "haproxy": TARGETS["haproxy-h2c"]}

    def rounds(label, names, run):
        out = {t: [] for t in names}
        for r in range(B_ROUNDS):
            for t in rotated(names, r):
                res = run(t)
                out[t].append(res)
                log(f"{label} round {r + 1} {t}: {res}")
        return out

    def paired(rounds_, a, b, key):
        return med([x[key] / y[key] if x[key] is not None and y[key] else None for x, y in zip(rounds_.get(a, []), rounds_.get(b, []))])

    if beyond.have("h2load"):
        raw["h2c"] = rounds("h2c", proxies, lambda t: beyond.h2c(h2c_port[t], B_DURATION))
        summary["h2c_vs_haproxy"] = paired(raw["h2c"], "weir", "haproxy", "rps")
        summary["h2c_vs_envoy"] = paired(raw["h2c"], "weir", "envoy", "rps")
    else:
        log("h2load missing: h2c skipped")
    with_direct = ["direct"] + proxies
    raw["post16k"] = rounds("post 16 KiB", with_direct, lambda t: beyond.post16k(RUN, TARGETS[t], B_DURATION))
    summary["post16k_vs_haproxy"] = paired(raw["post16k"], "weir", "haproxy", "rps")
    raw["large"] = rounds("1 MiB", with_direct, lambda t: beyond.large(TARGETS[t], B_DURATION))
    summary["large_vs_direct"] = paired(raw["large"], "weir", "direct", "bytes_per_s")
    raw["churn"] = rounds("churn", with_direct, lambda t: beyond.churn(TARGETS[t], B_DURATION))
    summary["churn_vs_haproxy"] = paired(raw["churn"], "weir", "haproxy", "rps")
    raw["idle"] = {}
    for t in proxies:
        raw["idle"][t] = beyond.idle_rss_per_conn(pids_of(proxy_name(t)), TARGETS[t], IDLE_CONNS)
        log(f"idle {t}: {raw['idle'][t]}")
    weir_idle, haproxy_idle = raw["idle"].get("weir"), raw["idle"].get("haproxy")
    summary["idle_rss_per_conn_vs_haproxy"] = (weir_idle["kib_per_conn"] / haproxy_idle["kib_per_conn"]
                                               if weir_idle and haproxy_idle and haproxy_idle["kib_per_conn"] > 0 else None)

    # A thousand VirtualServices.
    routes_dir = os.path.join(RUN, "routes")
    os.makedirs(routes_dir, exist_ok=True)
    open(os.path.join(routes_dir, "routes.yaml"), "w").write(beyond.routes_manifests(ROUTES_N))
    last = f"svc-{ROUTES_N - 1}"
    start("weir-routes", [os.path.join(WEIR, "weir-gateway"), "-f", routes_dir, "--port-map", f"80={TARGETS['weir-routes']}", "--workers", "1"], PROXY_CPU)
    compile_ms = beyond.compiled_ms(os.path.join(RUN, "weir-routes.log"))
    wait_port(TARGETS["weir-routes"], timeout=60)
    # A fresh gateway with the one-route configuration, loaded as much as the
    # thousand-route one, for the snapshot's memory (the main `weir` has held
    # thousands of connections by now).
    start("weir-single", [os.path.join(WEIR, "weir-gateway"), "-f", os.path.join(RUN, "weir"), "--port-map", f"80={TARGETS['weir-single']}",
                          "--workers", "1"], PROXY_CPU)
    wait_port(TARGETS["weir-single"])
    routes_url = f"http://127.0.0.1:{TARGETS['weir-routes']}/items/42"
    single_url = f"http://127.0.0.1:{TARGETS['weir']}/"
    host_header = ("-H", f"Host: {last}.bench")
    cpu = {"single": [], "routes": []}
    for r in range(B_ROUNDS):
        for which in rotated(["single", "routes"], r):
            if which == "single":
                res = cpu_us_per_request("weir", lambda: beyond._wrk(single_url, B_DURATION))
            else:
                res = cpu_us_per_request("weir-routes", lambda: beyond._wrk(routes_url, B_DURATION, extra=host_header))
            cpu[which].append(res)
            log(f"routes cpu round {r + 1} {which}: {res}")
    beyond._wrk(f"http://127.0.0.1:{TARGETS['weir-single']}/", B_DURATION)
    raw["routes"] = {"n": ROUTES_N, "compile_ms": compile_ms, "cpu_rounds": cpu,
                     "rss_kib": {"single": beyond.rss_kib(pids_of("weir-single")), "routes": beyond.rss_kib(pids_of("weir-routes"))}}
    p = procs.pop("weir-single")
    p.send_signal(signal.SIGTERM)
    p.wait(30)
    summary["routes1000_compile_ms"] = compile_ms
    summary["routes1000_snapshot_mib"] = (raw["routes"]["rss_kib"]["routes"] - raw["routes"]["rss_kib"]["single"]) / 1024
    summary["routes1000_cpu_vs_single"] = med([a["cpu_us_per_request"] / b["cpu_us_per_request"] for a, b in zip(cpu["routes"], cpu["single"])])
    if envoy:
        rds = os.path.join(RUN, "rds.json")
        cfg = os.path.join(RUN, "envoy-routes.json")
        json.dump(beyond.envoy_routes_config(ROUTES_N, TARGETS["envoy-routes"], 9902, rds), open(cfg, "w"))
        t0 = time.perf_counter()
        start("envoy-routes", [envoy, "-c", cfg, "--concurrency", "1", "--disable-hot-restart", "--base-id", "2", "-l", "warning"], PROXY_CPU)
        wait_port(TARGETS["envoy-routes"], timeout=120)
        envoy_ready_ms = (time.perf_counter() - t0) * 1000
        for name, url in (("weir-routes", routes_url), ("envoy-routes", f"http://127.0.0.1:{TARGETS['envoy-routes']}/items/42")):
            beyond._wrk(url, B_DURATION, extra=host_header)
        weir_rss, envoy_rss = beyond.rss_kib(pids_of("weir-routes")), beyond.rss_kib(pids_of("envoy-routes"))
        raw["routes"]["envoy"] = {"ready_ms": envoy_ready_ms, "rss_kib": envoy_rss, "weir_rss_kib": weir_rss}
        summary["routes1000_memory_vs_envoy"] = weir_rss / envoy_rss if envoy_rss else None
        p = procs.pop("envoy-routes")
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    p = procs.pop("weir-routes")
    p.send_signal(signal.SIGTERM)
    p.wait(30)
    if shutil.which("oha"):
        ms, trials, command = route_change_cli(routes_dir, "weir-up-routes", last, f"{last}.bench", "/items/1", trials=3 if QUICK else 10)
        raw["routes"]["route_change_trials_ms"] = trials
        raw["routes"]["route_command_ms"] = command
        summary["routes1000_route_change_ms"] = ms
        log(f"routes: route change after `weir route` returned: median {ms:.2f} ms {trials}; the command took {command}")
    return raw, summary


def weir_load(url, duration):
    out = subprocess.run(["taskset", "-c", PROXY_CPU, os.path.join(WEIR, "weir"), "load", url, "-c", "64", "-z", f"{duration}s", "-o", "json"],
                         capture_output=True, text=True, timeout=duration + 30).stdout
    return json.loads(out)["requests_per_second"]


def rotated(targets, r):
    """The targets in round `r`'s order: each round starts one later, so no
    target always runs first (or right after the same neighbour)."""
    k = r % len(targets)
    return targets[k:] + targets[:k]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ports_free():
    """Refuses to run when another process holds a bench port: its numbers
    would be measured instead of the bench's own processes."""
    import socket
    busy = []
    for port in sorted(set(TARGETS.values()) | {9002}):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    if busy:
        sys.exit(f"bench: ports {busy} are already in use on 127.0.0.1; stop what listens there first")


def main():
    ports_free()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    # The backends' workers (not root) read the 1 MiB file: the run
    # directory is traversable (not listable), the file readable.
    os.chmod(RUN, 0o711)
    with open(os.path.join(RUN, "large.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
    os.chmod(os.path.join(RUN, "large.bin"), 0o644)
    envoy = os.environ.get("ENVOY_BIN") if not (SMOKE and "--no-envoy" in sys.argv) else None
    start("backends", ["nginx", "-c", render("backends-nginx.conf")], LG_CPU)
    shutil.copytree(os.path.join(HERE, "configs", "weir"), os.path.join(RUN, "weir"))
    start("weir", [os.path.join(WEIR, "weir-gateway"), "-f", os.path.join(RUN, "weir"), "--port-map", "80=8004", "--workers", "1"], PROXY_CPU)
    start("nginx-proxy", ["nginx", "-c", render("nginx-proxy.conf")], PROXY_CPU)
    start("haproxy", ["haproxy", "-f", render("haproxy.cfg")], PROXY_CPU)
    targets = ["direct", "weir", "nginx", "haproxy"]
    if envoy:
        start("envoy", [envoy, "-c", render("envoy.yaml"), "--concurrency", "1", "--disable-hot-restart", "-l", "warning"], PROXY_CPU)
        start("envoy-bare", [envoy, "-c", render("envoy-bare.yaml"), "--concurrency", "1", "--disable-hot-restart", "--base-id", "1", "-l", "warning"], PROXY_CPU)
        targets[2:2] = ["envoy", "envoy-bare"]
    if BASELINE:
        start("weir-baseline", [BASELINE, "-f", os.path.join(RUN, "weir"), "--port-map", "80=8007", "--workers", "1"], PROXY_CPU)
        targets.append("weir-baseline")
    for t in targets:
        wait_port(TARGETS[t])
    versions = {
        "weir": subprocess.run([os.path.join(WEIR, "weir-gateway"), "--version"], capture_output=True, text=True).stdout.strip(),
        "envoy": subprocess.run([envoy, "--version"], capture_output=True, text=True).stdout.strip().split("version:")[-1].strip() if envoy else None,
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "haproxy": subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.splitlines()[0],
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0] if True else None,
        "oha": subprocess.run(["oha", "--version"], capture_output=True, text=True).stdout.strip() if shutil.which("oha") else None,
    }
    raw = {"saturated": {t: [] for t in targets}, "rate": {}, "split": {}, "rss_mib": {}}
    log("warm-up")
    for t in targets:
        subprocess.run(["wrk", "-t1", "-c64", "-d1s", f"http://127.0.0.1:{TARGETS[t]}/"], capture_output=True, timeout=30)
    for r in range(ROUNDS):
        for t in rotated(targets, r):
            res = wrk(t)
            raw["saturated"][t].append(res)
            log(f"saturated round {r + 1} {t}: {res['rps']:.0f} req/s, cpu {res['cpu_us_per_request'] or 0:.1f} µs/req")
    if shutil.which("oha"):
        for rate in RATES:
            raw["rate"][rate] = {t: [] for t in targets}
            for r in range(RATE_ROUNDS):
                for t in rotated(targets, r):
                    o = oha(f"http://127.0.0.1:{TARGETS[t]}/", rate=rate, duration=RATE_DURATION)
                    pct = o["latencyPercentiles"]
                    raw["rate"][rate][t].append({k: pct[k] * 1000 for k in ("p50", "p90", "p99", "p99.9")})
                    log(f"rate {rate} {t}: p99 {pct['p99'] * 1000:.3f} ms")
    for t in targets:
        if t != "direct":
            raw["split"][t] = split(t, SPLIT_N)
            log(f"split {t}: {raw['split'][t]}")
    for t in targets:
        if t != "direct":
            raw["rss_mib"][t] = rss_mib(proxy_name(t))
    reload_ms, reload_trials = route_change_reload()
    log(f"route change by file reload: median {reload_ms:.2f} ms {reload_trials}")
    route_ms, route_trials, route_command = route_change_cli()
    log(f"route change after `weir route` returned: median {route_ms:.2f} ms {route_trials}; the command took {route_command}")
    loadgen = {}
    d = 1 if SMOKE else 3 if QUICK else 10
    loadgen = {"weir_load": [], "oha": [], "wrk": []}
    for _ in range(1 if SMOKE else 2 if QUICK else 3):
        loadgen["weir_load"].append(weir_load("http://127.0.0.1:9001/", d))
        # wrk on the same core as `weir load` (the backends have the other).
        loadgen["wrk"].append(wrk_on(PROXY_CPU, "http://127.0.0.1:9001/", d))
        if shutil.which("oha"):
            loadgen["oha"].append(oha("http://127.0.0.1:9001/", duration=d)["summary"]["requestsPerSec"])
    log(f"load generators: {loadgen}")
    beyond_raw, beyond_summary = beyond_phases(targets, envoy)

    sat = {t: {"rps": med([x["rps"] for x in raw["saturated"][t]]), "cpu_us_per_request": med([x["cpu_us_per_request"] for x in raw["saturated"][t]])} for t in targets}
    p99_8000 = {t: med([x["p99"] for x in raw["rate"].get(8000, {}).get(t, [])]) for t in targets}

    def ratio(a, b):
        return a / b if a is not None and b else None

    def paired(rounds, other, key):
        """The median over rounds of weir's figure divided by `other`'s from
        the same round (measured minutes apart, under the same conditions)."""
        mine = rounds.get("weir", [])
        theirs = rounds.get(other, [])
        return med([ratio(a[key], b[key]) for a, b in zip(mine, theirs)])

    rate_8000 = raw["rate"].get(8000, {})
    summary = {
        "throughput_vs_envoy": paired(raw["saturated"], "envoy", "rps"),
        "throughput_vs_haproxy": paired(raw["saturated"], "haproxy", "rps"),
        "cpu_per_request_vs_haproxy": paired(raw["saturated"], "haproxy", "cpu_us_per_request"),
        "p99_at_8000_vs_envoy": paired(rate_8000, "envoy", "p99"),
        "p99_at_8000_vs_haproxy": paired(rate_8000, "haproxy", "p99"),
        "rss_vs_envoy": ratio(raw["rss_mib"].get("weir"), raw["rss_mib"].get("envoy")),
        "split_worst_window_deviation_pp": raw["split"]["weir"]["worst_window_deviation_pp"],
        "route_change_ms": route_ms,
        "load_vs_oha": ratio(med(loadgen.get("weir_load", [])), med(loadgen.get("oha", []))),
    }

    def worst_round(rate, other, key="p99.9"):
        """weir's figure over `other`'s, in the worst round."""
        rounds_ = raw["rate"].get(rate, {})
        pairs = [a[key] / b[key] for a, b in zip(rounds_.get("weir", []), rounds_.get(other, [])) if b[key]]
        return max(pairs) if pairs else None

    # Beyond the happy path (and the existing workload's tails and memory).
    beyond_keys = {
        **beyond_summary,
        "rss_vs_haproxy": ratio(raw["rss_mib"].get("weir"), raw["rss_mib"].get("haproxy")),
        "p999_worst_round_vs_haproxy_2000": worst_round(2000, "haproxy"),
        "p999_worst_round_vs_haproxy_8000": worst_round(8000, "haproxy"),
        "load_vs_wrk": ratio(med(loadgen.get("weir_load", [])), med(loadgen.get("wrk", []))),
    }
    # Beside the keys: the same ratios against Envoy with the route
    # reduced to weighted_clusters (configs/envoy-bare.yaml).
    against_bare_envoy = {
        "throughput_vs_envoy_bare": paired(raw["saturated"], "envoy-bare", "rps"),
        "p99_at_8000_vs_envoy_bare": paired(rate_8000, "envoy-bare", "p99"),
    }
    if BASELINE:
        against_bare_envoy["vs_baseline"] = {
            "binary": BASELINE,
            "throughput": paired(raw["saturated"], "weir-baseline", "rps"),
            "cpu_per_request": paired(raw["saturated"], "weir-baseline", "cpu_us_per_request"),
            "p99_at_8000": paired(rate_8000, "weir-baseline", "p99"),
        }
    machine = {"cpus": os.cpu_count(), "kernel": os.uname().release, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": QUICK, "rounds": ROUNDS, "duration_s": DURATION,
               "rate_rounds": RATE_ROUNDS, "rate_duration_s": RATE_DURATION}
    out = {**summary, **beyond_keys, **against_bare_envoy, "raw": {"beyond": beyond_raw, "saturated": sat, "saturated_rounds": raw["saturated"], "p99_at_8000_ms": p99_8000,
                              "rate": {str(k): v for k, v in raw["rate"].items()}, "split": raw["split"], "rss_mib": raw["rss_mib"],
                              "route_change_trials_ms": route_trials,
                              "route_command_ms": route_command, "route_change_file_reload_ms": reload_trials, "load_generators_rps": loadgen},
           "versions": versions, "machine": machine}
    results = os.path.join(RUN, "results") if SMOKE else os.path.join(HERE, "results")
    os.makedirs(results, exist_ok=True)
    json.dump(out, open(os.path.join(results, "latest.json"), "w"), indent=2)
    fmt = lambda x, f="{:.2f}": "–" if x is None else f.format(x)
    lines = [f"# Benchmark results ({'quick' if QUICK else 'full'} run, {machine['date']})", "",
             "Figures: medians over interleaved rounds of one run (each round in a rotated order). Ratios: the median over rounds of weir's figure "
             "divided by the other's from the same round. One proxy worker pinned to CPU 1, load generator and backends on CPU 0.", "",
             "| target | req/s (64 conns) | proxy CPU µs/req | p99 @2000 ms | p99 @8000 ms | peak RSS MiB | split worst window (pp) |",
             "|---|---|---|---|---|---|---|"]
    for t in targets:
        p2000 = med([x["p99"] for x in raw["rate"].get(2000, {}).get(t, [])])
        lines.append(f"| {t} | {fmt(sat[t]['rps'], '{:.0f}')} | {fmt(sat[t]['cpu_us_per_request'], '{:.1f}')} | {fmt(p2000, '{:.3f}')} | {fmt(p99_8000.get(t), '{:.3f}')} | {fmt(raw['rss_mib'].get(t), '{:.1f}')} | {fmt(raw['split'].get(t, {}).get('worst_window_deviation_pp'), '{:.0f}')} |")
    lines += ["", "| ratio (weir vs) | value | target |", "|---|---|---|"]
    targets_txt = {"throughput_vs_envoy": "≥ 2.0", "throughput_vs_haproxy": "≥ 0.9", "cpu_per_request_vs_haproxy": "≤ 1.1", "p99_at_8000_vs_envoy": "≤ 0.5",
                   "p99_at_8000_vs_haproxy": "≤ 1.1", "rss_vs_envoy": "≤ 0.5", "split_worst_window_deviation_pp": "0", "route_change_ms": "≤ 50", "load_vs_oha": "≥ 1.0"}
    for k, v in summary.items():
        lines.append(f"| {k} | {fmt(v)} | {targets_txt[k]} |")
    beyond_txt = {"h2c_vs_haproxy": "≥ 1.0", "h2c_vs_envoy": "≥ 2.0", "post16k_vs_haproxy": "≥ 0.9", "large_vs_direct": "≥ 0.9",
                  "churn_vs_haproxy": "≥ 0.9", "idle_rss_per_conn_vs_haproxy": "≤ 1.0", "routes1000_compile_ms": "< 100",
                  "routes1000_snapshot_mib": "< 50", "routes1000_cpu_vs_single": "≤ 1.1", "routes1000_route_change_ms": "< 50",
                  "routes1000_memory_vs_envoy": "≤ 0.5", "rss_vs_haproxy": "≤ 1.0", "p999_worst_round_vs_haproxy_2000": "≤ 1.0",
                  "p999_worst_round_vs_haproxy_8000": "≤ 1.0", "load_vs_wrk": "≥ 1.0"}
    lines += ["", "Beyond the happy path (`beyond.py`; per-round ratios, medians; p99.9: the worst round):", "",
              "| key | value | target |", "|---|---|---|"]
    for k, target in beyond_txt.items():
        lines.append(f"| {k} | {fmt(beyond_keys.get(k))} | {target} |")
    idle = beyond_raw.get("idle", {})
    if idle:
        lines += ["", "Idle connections: RSS growth per connection held open (KiB): "
                  + ", ".join(f"{t} {fmt(v['kib_per_conn'])}" for t, v in idle.items()) + f" ({IDLE_CONNS} connections)."]
    for workload, key in (("h2c", "rps"), ("post16k", "rps"), ("large", "bytes_per_s"), ("churn", "rps")):
        if workload in beyond_raw:
            lines.append(f"{workload} ({key}, median): " + ", ".join(
                f"{t} {fmt(med([x[key] for x in xs]), '{:.0f}')}" for t, xs in beyond_raw[workload].items()) + ".")
    lines += ["", "Against Envoy with the route reduced to `weighted_clusters` (no retry policy, no x-forwarded-for: "
              "less work per request than weir and Istio's route do; `configs/envoy-bare.yaml`): throughput "
              f"{fmt(against_bare_envoy['throughput_vs_envoy_bare'])}×, p99 at 8,000 req/s {fmt(against_bare_envoy['p99_at_8000_vs_envoy_bare'])}×."]
    lines += ["", f"Route change: `weir route` itself took {fmt(med(route_command))} ms (median; process start, admin call, SQLite commit, snapshot swap); "
              f"weir-gateway's file reload (SIGHUP) served the change {fmt(med(reload_trials))} ms after the signal."]
    if BASELINE:
        b = against_bare_envoy["vs_baseline"]
        lines += ["", f"Against the baseline binary ({BASELINE}), measured in the same rounds: throughput {fmt(b['throughput'])}×, "
                  f"CPU per request {fmt(b['cpu_per_request'])}×, p99 at 8,000 req/s {fmt(b['p99_at_8000'])}×."]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v)]
    open(os.path.join(results, "latest.md"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))
    if SMOKE:
        missing = [k for k in ("post16k_vs_haproxy", "large_vs_direct", "churn_vs_haproxy", "routes1000_compile_ms",
                               "routes1000_cpu_vs_single", "load_vs_wrk") if beyond_keys.get(k) is None]
        if beyond.have("h2load") and beyond_keys.get("h2c_vs_haproxy") is None:
            missing.append("h2c_vs_haproxy")
        if missing:
            sys.exit(f"smoke: no figure for {missing}")


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
        shutil.rmtree(RUN, ignore_errors=True)

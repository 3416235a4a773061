"""Workloads beyond the happy path, for bench/harness.py: h2c downstream,
16 KiB request bodies, 1 MiB responses, one request per connection, idle
keep-alive connections, and a thousand VirtualServices. Every function
measures one target once; the harness interleaves rounds and takes ratios.
"""
import asyncio, json, os, re, resource, shutil, subprocess, time

LG_CPU = "0"

# The h2c listeners of the proxies that need a separate one (HAProxy's
# `proto h2`, nginx's `http2`); weir and Envoy detect h2 on their own port.
H2C_PORTS = {"haproxy": 8013, "nginx": 8012}


def _wrk(url, duration, conns=64, extra=()):
    out = subprocess.run(["taskset", "-c", LG_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}s", *extra, url],
                         capture_output=True, text=True, timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", out)
    scale = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}
    transfer = float(m.group(1)) * scale[m.group(2)] if m else None
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "requests": requests, "bytes_per_s": transfer, "non_2xx": int(errors.group(1)) if errors else 0}


def h2c(port, duration):
    """h2load: 64 connections × 10 concurrent streams, prior-knowledge h2c."""
    out = subprocess.run(["taskset", "-c", LG_CPU, "h2load", "-c64", "-m10", "-D", str(duration), f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=duration + 30).stdout
    rps = float(re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out).group(1))
    failed = int(re.search(r"(\d+) failed", out).group(1))
    return {"rps": rps, "failed": failed}


def post16k(run_dir, port, duration):
    """POST with a 16 KiB body on 64 keep-alive connections (the streamed path)."""
    script = os.path.join(run_dir, "post16k.lua")
    if not os.path.exists(script):
        open(script, "w").write('wrk.method = "POST"\nwrk.body = string.rep("x", 16384)\n'
                                'wrk.headers["Content-Type"] = "application/octet-stream"\n')
    return _wrk(f"http://127.0.0.1:{port}/", duration, extra=("-s", script))


def large(port, duration):
    """1 MiB responses on 16 connections: bytes per second."""
    return _wrk(f"http://127.0.0.1:{port}/large", duration, conns=16)


def churn(port, duration):
    """One request per connection (`Connection: close`), 64 at a time."""
    return _wrk(f"http://127.0.0.1:{port}/", duration, extra=("-H", "Connection: close"))


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


async def _hold(port, n, ready):
    """Opens `n` keep-alive connections, each answered once, and keeps them
    open until `ready` is consumed."""
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    conns = []

    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        await reader.readexactly(length)
        conns.append(writer)

    for i in range(0, n, 500):
        await asyncio.gather(*(one() for _ in range(min(500, n - i))))
    measured = ready()
    for w in conns:
        w.close()
    return measured


def idle_rss_per_conn(pids, port, n):
    """RSS growth per idle keep-alive connection: `n` connections opened,
    each answered once, held open while the proxy's RSS is read."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 1024:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 4096), hard))
    before = rss_kib(pids)
    held = asyncio.run(_hold(port, n, lambda: (time.sleep(1.0), rss_kib(pids))[1]))
    return {"kib_per_conn": (held - before) / n, "rss_before_kib": before, "rss_held_kib": held, "connections": n}


# --- A thousand VirtualServices -------------------------------------------

def routes_manifests(n, endpoints_per_service=5):
    """`n` VirtualServices on distinct hosts (svc-i.bench), each with three
    rules — a header match, a prefix, a regex (the last split 90/10 over
    subsets) — over `n` Services of `endpoints_per_service` WorkloadEntries
    each (v1 on the 9001 backend, v2 on 9002), with their DestinationRules."""
    docs = ["""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: http-gateway}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]"""]
    for i in range(n):
        s = f"svc-{i}"
        docs.append(f"""apiVersion: v1
kind: Service
metadata: {{name: {s}}}
spec:
  ports: [{{name: http, port: 80}}]
  selector: {{app: {s}}}""")
        for e in range(endpoints_per_service):
            version, port = ("v2", 9002) if e == 0 else ("v1", 9001)
            docs.append(f"""apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {s}-{e}}}
spec:
  address: 127.0.0.1
  ports: {{http: {port}}}
  labels: {{app: {s}, version: {version}}}""")
        docs.append(f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {s}}}
spec:
  host: {s}
  trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN}}}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}""")
        docs.append(f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {s}}}
spec:
  hosts: [{s}.bench]
  gateways: [http-gateway]
  http:
  - name: header
    match: [{{headers: {{x-variant: {{exact: beta}}}}}}]
    route: [{{destination: {{host: {s}, subset: v2}}}}]
  - name: prefix
    match: [{{uri: {{prefix: /api/}}}}]
    route: [{{destination: {{host: {s}, subset: v1}}}}]
  - name: regex
    match: [{{uri: {{regex: "/items/[0-9]+"}}}}]
    route:
    - {{destination: {{host: {s}, subset: v1}}, weight: 90}}
    - {{destination: {{host: {s}, subset: v2}}, weight: 10}}""")
    return "---\n".join(d + "\n" for d in docs)


def envoy_routes_config(n, listen_port, admin_port, rds_path):
    """Envoy with the same routes: a file-RDS route configuration of `n`
    virtual hosts × 3 routes, and 2 clusters (v1, v2 subsets) per service."""
    vhosts = []
    clusters = []
    for i in range(n):
        s = f"svc-{i}"
        vhosts.append({"name": s, "domains": [f"{s}.bench"], "routes": [
            {"match": {"prefix": "/", "headers": [{"name": "x-variant", "string_match": {"exact": "beta"}}]},
             "route": {"cluster": f"{s}-v2", "timeout": "0s"}},
            {"match": {"prefix": "/api/"}, "route": {"cluster": f"{s}-v1", "timeout": "0s"}},
            {"match": {"safe_regex": {"regex": "/items/[0-9]+"}},
             "route": {"timeout": "0s", "weighted_clusters": {"clusters": [{"name": f"{s}-v1", "weight": 90}, {"name": f"{s}-v2", "weight": 10}]}}},
        ]})
        for version, port, count in (("v1", 9001, 4), ("v2", 9002, 1)):
            clusters.append({"name": f"{s}-{version}", "type": "STATIC", "load_assignment": {"cluster_name": f"{s}-{version}", "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}} for _ in range(count)]}]}})
    rds = {"resources": [{"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name": "routes", "virtual_hosts": vhosts}]}
    json.dump(rds, open(rds_path, "w"))
    return {
        "node": {"id": "bench", "cluster": "bench"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{"name": "ingress", "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                               "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                               "stat_prefix": "ingress",
                               "rds": {"route_config_name": "routes", "config_source": {"path_config_source": {"path": rds_path}, "resource_api_version": "V3"}},
                               "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}],
            "clusters": clusters,
        },
    }


def compiled_ms(log_path, timeout=60):
    """weir-gateway's own report of its compile time (`compiled in X ms`)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = re.search(r"compiled in ([\d.]+) ms", open(log_path).read()) if os.path.exists(log_path) else None
        if m:
            return float(m.group(1))
        time.sleep(0.05)
    return None


def have(tool):
    return shutil.which(tool) is not None

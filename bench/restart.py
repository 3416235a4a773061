#!/usr/bin/env python3
"""How long a restart of `weir up` stops serving, with many pods.

Starts `weir up` (the given build) on a private state dir, applies the
walkthrough's Deployments, Service and Istio objects, scales my-app-v1 to
--pods replicas, and, once they are all ready, sends sequential requests
through the gateway (127.0.0.1 only, bounded in count and time) while the
runtime is killed with SIGKILL and started again. It reports:

- `answers_s`: from the new process's start to its admin API answering
  (the stored objects read, the pods adopted);
- `adopted_in_s`: from the start to its log line saying the pods were adopted;
- `down_s`: from the kill to the new process's start (no runtime at all);
- `failed` and `failing_s`: requests that failed, and from the first failure
  to the last one's end;
- `supervisor_rss_kib` and `supervisor_pss_kib`: the pod supervisors' mean
  VmRSS and PSS (smaps_rollup), read while all pods run;
- `conmon_rss_kib` and `conmon_pss_kib`, when `conmon` is installed
  (`apt-get install conmon`): one conmon supervising a `sleep`, started
  through a stand-in OCI runtime (a script that starts the process and
  writes its pid file, since no real runtime can run here), for the side
  by side.

Every process it starts it stops by PID. Run it for the build to measure,
and for the one to compare with, in the same session:

    bench/restart.py --weir target/dist/weir --pods 1000
"""

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "examples", "canary-istio")


def weir(binary, state, *args, check=True):
    return subprocess.run(
        [binary, *args, "--state-dir", state],
        check=check,
        capture_output=True,
        text=True,
        timeout=120,
    )


def start(binary, state, port, log):
    return subprocess.Popen(
        [binary, "up", "--state-dir", state, "--port-map", f"80={port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_until(what, deadline_s, check):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def ready_replicas(binary, state, name):
    out = weir(binary, state, "get", "deployment", name, "-o", "json", check=False)
    if out.returncode != 0:
        return -1
    return json.loads(out.stdout).get("status", {}).get("readyReplicas", 0) or 0


def answering(binary, state):
    return weir(binary, state, "get", "pods", check=False).returncode == 0


def request_once(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": "my-app.local"})
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def supervisors(state):
    """The pod supervisors of the runtime of `state`: `weir-pod-exec STATE
    ...`, or an earlier weir's `weir __pod-exec STATE ...`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        ours = state.encode()
        if (len(args) > 1 and args[0].endswith(b"/weir-pod-exec") and args[1] == ours) or \
                (len(args) > 2 and args[1] == b"__pod-exec" and args[2] == ours):
            found.append(int(entry))
    return found


def memory_kib(pid):
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


FAKE_RUNTIME = """#!/bin/sh
# A stand-in for runc's `create`: start the process, write its pid file.
while [ $# -gt 0 ]; do case "$1" in --pid-file) pidf=$2; shift;; esac; shift; done
sleep 120 &
echo $! > "$pidf"
"""


def conmon_memory(tmp):
    """RSS and PSS (KiB) of one conmon supervising a `sleep`, or None."""
    import shutil

    conmon = shutil.which("conmon")
    if conmon is None:
        return None
    base = os.path.join(tmp, "conmon")
    for d in ("bundle", "exits", "sock"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    with open(os.path.join(base, "bundle", "config.json"), "w") as f:
        f.write("{}")
    runtime = os.path.join(base, "runtime")
    with open(runtime, "w") as f:
        f.write(FAKE_RUNTIME)
    os.chmod(runtime, 0o755)
    pidfile = os.path.join(base, "conmon.pid")
    subprocess.run(
        [conmon, "-c", "bench", "-u", "bench", "-n", "bench", "-r", runtime,
         "-b", os.path.join(base, "bundle"), "-p", os.path.join(base, "pid"),
         "-P", pidfile, "-l", "k8s-file:" + os.path.join(base, "log"),
         "--exit-dir", os.path.join(base, "exits"),
         "--socket-dir-path", os.path.join(base, "sock")],
        check=True, timeout=30, capture_output=True,
    )
    pid = int(open(pidfile).read().strip())
    container_pidfile = os.path.join(base, "pid")
    try:
        # Measured once it supervises its container (the pid file written).
        wait_until("conmon's container", 10, lambda: os.path.exists(container_pidfile))
        return memory_kib(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
        if os.path.exists(container_pidfile):
            os.kill(int(open(container_pidfile).read().strip()), signal.SIGKILL)


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--weir", required=True)
    p.add_argument("--pods", type=int, default=1000)
    p.add_argument("--max-requests", type=int, default=200_000)
    a = p.parse_args()
    binary = os.path.abspath(a.weir)
    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "state")
        port = free_port()
        log = open(os.path.join(tmp, "up.log"), "w+")
        up = start(binary, state, port, log)
        try:
            wait_until("weir up", 30, lambda: answering(binary, state))
            for f in ("app-v1.yaml", "app-v2.yaml", "istio.yaml"):
                weir(binary, state, "apply", "-f", os.path.join(EXAMPLE, f))
            weir(binary, state, "scale", "deployment", "my-app-v1",
                 "--replicas", str(a.pods - 1))
            t0 = time.monotonic()
            wait_until(f"{a.pods - 1} ready replicas", 1800,
                       lambda: ready_replicas(binary, state, "my-app-v1") >= a.pods - 1)
            print(f"{a.pods} pods ready in {time.monotonic() - t0:.1f} s", flush=True)
            wait_until("the gateway", 30, lambda: request_once(port))
            sups = supervisors(state)
            memory = [memory_kib(pid) for pid in sups]
            rss = sum(m[0] for m in memory) / max(len(memory), 1)
            pss = sum(m[1] for m in memory) / max(len(memory), 1)
            conmon = conmon_memory(tmp)

            results = []
            stop = threading.Event()

            def load():
                end = time.monotonic() + 300
                while not stop.is_set() and len(results) < a.max_requests \
                        and time.monotonic() < end:
                    sent = time.monotonic()
                    ok = request_once(port)
                    results.append((sent, time.monotonic(), ok))
                    if not ok:
                        time.sleep(0.001)  # a refusal is instant: keep the count bounded

            loader = threading.Thread(target=load)
            loader.start()
            time.sleep(1)
            killed = time.monotonic()
            up.send_signal(signal.SIGKILL)
            up.wait()
            log.write("--- restart ---\n")
            log.flush()
            started = time.monotonic()
            up = start(binary, state, port, log)
            wait_until("the restarted weir up", 600, lambda: answering(binary, state))
            answers = time.monotonic()
            wait_until("requests after the restart", 60,
                       lambda: any(s > answers and ok for s, _, ok in results))
            time.sleep(1)
            stop.set()
            loader.join()
            failed = [(s, e) for s, e, ok in results if not ok]
            log.seek(0)
            after = log.read().split("--- restart ---", 1)[-1]
            adopted = next((line for line in after.splitlines() if "adopted" in line), "")
            report = {
                "pods": a.pods,
                "down_s": round(started - killed, 3),
                "answers_s": round(answers - started, 3),
                "requests": len(results),
                "failed": len(failed),
                "failing_s": round(max(e for _, e in failed) - min(s for s, _ in failed), 3)
                if failed else 0.0,
                "adopted_line": adopted.strip(),
                "supervisors": len(sups),
                "supervisor_rss_kib": round(rss),
                "supervisor_pss_kib": round(pss),
                "conmon_rss_kib": conmon[0] if conmon else None,
                "conmon_pss_kib": conmon[1] if conmon else None,
            }
            print(json.dumps(report), flush=True)
        finally:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=120)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()


if __name__ == "__main__":
    main()

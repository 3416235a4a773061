//! The benchmark harness cannot rot: `bench/harness.py --smoke` runs every
//! workload once for about a second — the saturated and fixed-rate ones, and
//! those beyond the happy path (h2c, 16 KiB bodies, 1 MiB responses, one
//! request per connection, idle connections, a thousand VirtualServices,
//! shrunk) — against these builds of weir and real nginx, HAProxy, wrk and
//! h2load (Envoy and oha when present), and fails when a workload yields no
//! figure. It asserts nothing about speed: benchmarks are not tests.

use std::path::Path;
use std::process::Command;

#[test]
fn the_benchmark_harness_runs_every_workload_once() {
    let weir = Path::new(env!("CARGO_BIN_EXE_weir"));
    let bin_dir = weir.parent().expect("the binaries' directory");
    assert!(
        bin_dir.join("weir-gateway").exists(),
        "weir-gateway is built beside weir"
    );
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/harness.py");
    let out = Command::new("python3")
        .arg(&harness)
        .arg("--smoke")
        .env("WEIR_BIN_DIR", bin_dir)
        .output()
        .expect("python3 runs the harness");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail = |s: &str| {
        s.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        out.status.success(),
        "the smoke run failed:\n{}\n{}",
        tail(&stdout),
        tail(&stderr)
    );
    for key in [
        "| h2c_vs_haproxy |",
        "| post16k_vs_haproxy |",
        "| large_vs_direct |",
        "| churn_vs_haproxy |",
        "| idle_rss_per_conn_vs_haproxy |",
        "| routes1000_compile_ms |",
        "| routes1000_cpu_vs_single |",
        "| load_vs_wrk |",
    ] {
        assert!(stdout.contains(key), "no {key} row:\n{}", tail(&stdout));
    }
}

//! The rollout engine's costs: one decision for the example Rollout (the
//! common one, every pass of the loop, and one with its analysis falling
//! due) and one verdict over a 10,000- and a 10⁶-request window.
//! Targets: a decision under 10 µs, a verdict over 10⁶ requests under
//! 50 µs (`cargo bench -p weir-rollout --bench rollout`; figures in
//! bench/README.md).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use weir_api::load::load_paths;
use weir_api::resource::Resource;
use weir_api::version_stats::{BucketEdges, LatencyHistogram, VersionCounts};
use weir_rollout::analysis::{Goals, judge};
use weir_rollout::budget;
use weir_rollout::engine::{Observation, Prior, Window, step};

fn window(requests: u64, errors: u64) -> VersionCounts {
    let mut latency = LatencyHistogram::empty(BucketEdges::Fine);
    // A spread of latencies, as real traffic has.
    for i in 0..97 {
        latency.add(0.2 + i as f64 * 0.05, requests / 97);
    }
    VersionCounts {
        requests,
        failures: errors,
        latency,
    }
}

fn benches(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/canary-istio-rollout");
    let manifests = load_paths(&[dir]).expect("the example rollout");
    let spec = manifests
        .resources()
        .find_map(|r| match r {
            Resource::Rollout(r) => Some(r.spec.clone()),
            _ => None,
        })
        .unwrap();
    let analysis = spec.analysis.clone().unwrap();
    let goals = Goals::of(&analysis);
    let levels = budget::split(&spec).levels();
    let (canary, stable) = (window(10_000, 10), window(90_000, 0));
    c.bench_function("verdict over a 10,000-request window", |b| {
        b.iter(|| {
            judge(
                black_box(&goals),
                levels,
                black_box(&canary),
                black_box(&stable),
            )
        })
    });
    let (big_canary, big_stable) = (window(1_000_000, 1000), window(9_000_000, 900));
    c.bench_function("verdict over a 1,000,000-request window", |b| {
        b.iter(|| {
            judge(
                black_box(&goals),
                levels,
                black_box(&big_canary),
                black_box(&big_stable),
            )
        })
    });
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let observe = |now, window| Observation {
        now,
        served_weight: 10,
        window,
        command: None,
        capacity: None,
        canary_revision: Some("rev1"),
        hooks: &[],
        header_route: None,
        mirror: 0,
        generation: None,
    };
    let (status, _) = step(&spec, Prior::New, &observe(t0, None));
    // Six seconds on, a window of 10,000 canary requests to judge.
    let later_window = Window {
        start: t0,
        end: t0 + Duration::from_secs(6),
        canary: canary.clone(),
        stable: stable.clone(),
    };
    let later = observe(t0 + Duration::from_secs(6), Some(&later_window));
    let (judged, _) = step(&spec, Prior::Known(&status), &later);
    let quiet = observe(t0 + Duration::from_secs(7), Some(&later_window));
    c.bench_function("one decision, nothing due", |b| {
        b.iter(|| {
            step(
                black_box(&spec),
                black_box(Prior::Known(&judged)),
                black_box(&quiet),
            )
        })
    });
    c.bench_function("one decision with the analysis due", |b| {
        b.iter(|| {
            step(
                black_box(&spec),
                black_box(Prior::Known(&status)),
                black_box(&later),
            )
        })
    });
}

criterion_group!(rollout, benches);
criterion_main!(rollout);

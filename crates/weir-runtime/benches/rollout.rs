//! The rollout engine's costs: one decision for the example Rollout (the
//! common one, every pass of the loop, and one with its analysis falling
//! due) and one verdict over a 10,000-request window.
//! Targets: a decision under 10 µs, a verdict under 50 µs
//! (`cargo bench -p weir-runtime --bench rollout`; figures in bench/README.md).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use weir_api::load::load_paths;
use weir_api::resource::Resource;
use weir_gateway::version_stats::{LATENCY_BUCKETS, VersionCounts, bucket_of};
use weir_runtime::rollout::analysis::{Goals, judge};
use weir_runtime::rollout::engine::{Observation, step};

fn window(requests: u64, errors: u64) -> VersionCounts {
    let mut latency = vec![0; LATENCY_BUCKETS];
    // A spread of latencies, as real traffic has.
    for i in 0..requests {
        latency[bucket_of(0.2 + (i % 97) as f64 * 0.05)] += 1;
    }
    VersionCounts {
        requests,
        server_errors: errors,
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
    let (canary, stable) = (window(10_000, 10), window(90_000, 0));
    c.bench_function("verdict over a 10,000-request window", |b| {
        b.iter(|| judge(black_box(&goals), black_box(&canary), black_box(&stable)))
    });
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let start = |now| Observation {
        now,
        served_weight: 10,
        canary: &canary,
        stable: &stable,
        command: None,
        capacity: None,
    };
    let (status, _) = step(&spec, None, &start(t0));
    // Six seconds on, 10,000 more canary requests to judge.
    let (canary_later, stable_later) = (window(20_000, 20), window(180_000, 0));
    let later = Observation {
        now: t0 + Duration::from_secs(6),
        served_weight: 10,
        canary: &canary_later,
        stable: &stable_later,
        command: None,
        capacity: None,
    };
    let (judged, _) = step(&spec, Some(&status), &later);
    let quiet = Observation {
        now: t0 + Duration::from_secs(7),
        ..later
    };
    c.bench_function("one decision, nothing due", |b| {
        b.iter(|| {
            step(
                black_box(&spec),
                black_box(Some(&judged)),
                black_box(&quiet),
            )
        })
    });
    c.bench_function("one decision with the analysis due", |b| {
        b.iter(|| {
            step(
                black_box(&spec),
                black_box(Some(&status)),
                black_box(&later),
            )
        })
    });
}

criterion_group!(rollout, benches);
criterion_main!(rollout);

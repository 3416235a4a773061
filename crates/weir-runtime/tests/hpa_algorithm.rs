//! Kubernetes' HPA algorithm, rule by rule: each case names the rule it
//! checks and where Kubernetes states it (`replica_calculator.go`,
//! `horizontal.go` in kubernetes/kubernetes `pkg/controller/podautoscaler`, and the
//! HorizontalPodAutoscaler walkthrough in the Kubernetes docs).
//!
//! Over 600 lines because it is one table of Kubernetes' rules, each with
//! its source, kept in one file to be read side by side with them (split
//! into one function per part of the algorithm).

use std::time::Duration;

use tokio::time::Instant;
use weir_runtime::hpa::{
    Behavior, Calculation, CalculationError, HpaHistory, HpaSpec, PodSample, Policy, PolicyKind,
    Rules, SelectPolicy, Settings, Target, Tolerances, Usage, calculate, reconcile,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A pod started 10 minutes ago, ready for 9, with a fresh sample.
fn pod(name: &str, usage_millis: i64, request_millis: i64, now: Instant) -> PodSample {
    PodSample {
        name: name.to_owned(),
        pending: false,
        gone: false,
        started: Some(now - secs(600)),
        ready: Some((true, now - secs(540))),
        request_millis: Ok(request_millis),
        usage: Some(Usage {
            millis: usage_millis,
            timestamp: now,
            window: secs(30),
        }),
    }
}

fn pods(n: usize, usage: i64, request: i64, now: Instant) -> Vec<PodSample> {
    (0..n)
        .map(|i| pod(&format!("p{i}"), usage, request, now))
        .collect()
}

fn calc(
    current: i32,
    target: Target,
    pods: &[PodSample],
    now: Instant,
) -> Result<Calculation, CalculationError> {
    calculate(
        current,
        target,
        pods,
        now,
        &Settings::default(),
        Tolerances::both(0.1),
    )
}

fn replicas(current: i32, target: Target, pods: &[PodSample], now: Instant) -> i32 {
    calc(current, target, pods, now).unwrap().replicas
}

fn legacy(min: i32, max: i32, target: i32) -> HpaSpec {
    HpaSpec {
        min,
        max,
        targets: vec![Target::Utilization(target)],
        behavior: None,
    }
}

fn v2_defaults() -> Behavior {
    let p = |kind, value, s| Policy {
        kind,
        value,
        period: secs(s),
    };
    Behavior {
        scale_up: Rules {
            window: Duration::ZERO,
            select: SelectPolicy::Max,
            policies: vec![p(PolicyKind::Percent, 100, 15), p(PolicyKind::Pods, 4, 15)],
            tolerance: None,
        },
        scale_down: Rules {
            window: secs(300),
            select: SelectPolicy::Max,
            policies: vec![p(PolicyKind::Percent, 100, 15)],
            tolerance: None,
        },
    }
}

fn with_behavior(min: i32, max: i32, target: i32, behavior: Behavior) -> HpaSpec {
    HpaSpec {
        behavior: Some(behavior),
        ..legacy(min, max, target)
    }
}

/// One table row: the rule, and (actual, expected).
type Case = (&'static str, i64, i64);

/// One sync of the HPA controller with the default settings.
fn sync(
    spec: &HpaSpec,
    current: i32,
    ps: &[PodSample],
    at: Instant,
    h: &mut HpaHistory,
) -> weir_runtime::hpa::Decision {
    reconcile(spec, current, ps, at, h, &Settings::default())
}

/// `replica_calculator.go` `GetResourceReplicas`.
fn calculator_rules(now: Instant, case: &mut impl FnMut(&'static str, i64, i64)) {
    let u50 = Target::Utilization(50);
    // --- replica_calculator.go GetResourceReplicas ---
    case(
        "desired = ceil(ratio × ready pods with metrics): the seed's 5m request fully used at a 50% target doubles",
        replicas(1, u50, &pods(1, 5, 5, now), now).into(),
        2,
    );
    case(
        "tolerance (Kubernetes 1.33+ compares the bounds): a ratio of exactly 55/50 = 1 + 0.1 holds",
        replicas(1, u50, &pods(1, 55, 100, now), now).into(),
        1,
    );
    case(
        "tolerance: 56/50 = 1.12 > 1.1 scales",
        replicas(1, u50, &pods(1, 56, 100, now), now).into(),
        2,
    );
    case(
        "tolerance: 45/50 = 0.9 = 1 − 0.1 holds",
        replicas(2, u50, &pods(2, 45, 100, now), now).into(),
        2,
    );
    case(
        "utilization is int32(Σusage × 100 / Σrequests): 80.9% truncates to 80, so 3 × 80/60 = 4 (not 5)",
        replicas(3, Target::Utilization(60), &pods(3, 809, 1000, now), now).into(),
        4,
    );
    case(
        "scale-down: ceil(ratio × ready pods): 4 pods at 10% of a 50% target → 1",
        replicas(4, u50, &pods(4, 10, 100, now), now).into(),
        1,
    );
    {
        let mut ps = pods(2, 100, 100, now);
        let mut missing = pod("m", 0, 100, now);
        missing.usage = None;
        ps.push(missing);
        case(
            "missing metric on scale-up counts as 0%: (100+100+0)/3 = 66% → ceil(1.32 × 3) = 4",
            replicas(3, u50, &ps, now).into(),
            4,
        );
    }
    {
        let mut ps = pods(3, 10, 100, now);
        let mut missing = pod("m", 0, 100, now);
        missing.usage = None;
        ps.push(missing);
        case(
            "missing metric on scale-down counts as 100% of request: (3×10+100)/4 = 32% → ceil(0.64 × 4) = 3",
            replicas(4, u50, &ps, now).into(),
            3,
        );
    }
    {
        let mut ps = pods(1, 60, 100, now);
        let mut missing = pod("m", 0, 100, now);
        missing.usage = None;
        ps.push(missing);
        case(
            "rebalancing that reverses the direction holds: 60% alone scales up, with the missing pod at 0% it would scale down",
            replicas(2, u50, &ps, now).into(),
            2,
        );
    }
    {
        let mut ps = pods(2, 100, 100, now);
        let mut pending = pod("pending", 0, 100, now);
        pending.pending = true;
        pending.usage = None;
        ps.push(pending);
        case(
            "unready (pending) pods count as 0% on scale-up: (100+100+0)/3 → ceil(1.32 × 3) = 4",
            replicas(3, u50, &ps, now).into(),
            4,
        );
    }
    {
        let mut ps = pods(2, 10, 100, now);
        let mut pending = pod("pending", 0, 100, now);
        pending.pending = true;
        ps.push(pending);
        case(
            "unready pods are ignored on scale-down: ceil(0.2 × 2 ready) = 1",
            replicas(3, u50, &ps, now).into(),
            1,
        );
    }
    {
        let mut young = pod("young", 100, 100, now);
        young.started = Some(now - secs(60));
        young.ready = Some((true, now - secs(10)));
        let mut ps = pods(1, 100, 100, now);
        ps.push(young);
        case(
            "within the CPU initialization period, a sample that predates Ready + one window is unready (0% on scale-up)",
            replicas(2, u50, &ps, now).into(),
            // (100 + 0)/2 = 50% → ratio 1.0 → within tolerance: hold.
            2,
        );
    }
    {
        let mut flapping = pod("flapping", 100, 100, now);
        flapping.ready = Some((false, now - secs(30)));
        let ps = vec![pod("steady", 100, 100, now), flapping];
        case(
            "after the initialization period, an unready pod that was ready before still counts",
            replicas(2, u50, &ps, now).into(),
            4,
        );
    }
    {
        let mut ps = pods(2, 100, 100, now);
        let mut failed = pod("failed", 1000, 100, now);
        failed.gone = true;
        ps.push(failed);
        case(
            "failed and deleted pods are dropped entirely",
            replicas(3, u50, &ps, now).into(),
            4,
        );
    }
    case(
        "AverageValue target: ceil(Σusage / (target × pods) × pods): 2 × 300m at 200m → 3",
        replicas(2, Target::AverageMillis(200), &pods(2, 300, 100, now), now).into(),
        3,
    );
    case(
        "status reports the measured utilization",
        calc(1, u50, &pods(1, 37, 100, now), now)
            .unwrap()
            .utilization
            .unwrap()
            .into(),
        37,
    );
}

/// `horizontal.go`, legacy path (behavior == nil: every autoscaling/v1 HPA): scaling limits and stabilization.
fn legacy_rules(now: Instant, case: &mut impl FnMut(&'static str, i64, i64)) {
    case(
        "legacy scale-up is capped at max(2 × current, 4) per sync: 1 → 4, not 10",
        sync(
            &legacy(1, 10, 50),
            1,
            &pods(1, 500, 100, now),
            now,
            &mut HpaHistory::default(),
        )
        .desired
        .into(),
        4,
    );
    case(
        "legacy scale-up cap at 2 × current beyond 4: 5 → 10",
        sync(
            &legacy(1, 50, 50),
            5,
            &pods(5, 200, 100, now),
            now,
            &mut HpaHistory::default(),
        )
        .desired
        .into(),
        10,
    );
    case(
        "maxReplicas bounds the recommendation",
        sync(
            &legacy(1, 6, 50),
            4,
            &pods(4, 200, 100, now),
            now,
            &mut HpaHistory::default(),
        )
        .desired
        .into(),
        6,
    );
    case(
        "minReplicas bounds the recommendation",
        sync(
            &legacy(3, 10, 50),
            3,
            &pods(3, 1, 100, now),
            now,
            &mut HpaHistory::default(),
        )
        .desired
        .into(),
        3,
    );
    {
        // recordInitialRecommendation: an HPA first seen (created, or the
        // controller restarted) does not scale down within the window.
        let spec = legacy(1, 10, 50);
        let mut h = HpaHistory::first_seen(4, now);
        let first = sync(&spec, 4, &pods(4, 5, 100, now), now, &mut h);
        case(
            "an HPA first seen keeps its current replicas as a recommendation: no scale-down at the first sync",
            first.desired.into(),
            4,
        );
        let later = sync(
            &spec,
            4,
            &pods(4, 5, 100, now + secs(299)),
            now + secs(299),
            &mut h,
        );
        case(
            "... nor within the 5-minute window",
            later.desired.into(),
            4,
        );
        let after = sync(
            &spec,
            4,
            &pods(4, 5, 100, now + secs(301)),
            now + secs(301),
            &mut h,
        );
        case("... but after it", after.desired.into(), 1);
        let fresh = sync(
            &spec,
            4,
            &pods(4, 5, 100, now),
            now,
            &mut HpaHistory::default(),
        );
        case(
            "(an empty history would scale down at once)",
            fresh.desired.into(),
            1,
        );
    }
}

/// `horizontal.go`, legacy path: recommendations held through the downscale window.
fn legacy_stabilization(now: Instant, case: &mut impl FnMut(&'static str, i64, i64)) {
    {
        // weir's own: replicas a Rollout raised ahead of traffic count as a
        // recommendation, so the quiet CPU before the shift does not undo them.
        let spec = legacy(1, 10, 50);
        let mut h = HpaHistory::default();
        sync(&spec, 1, &pods(1, 5, 100, now), now, &mut h);
        h.hold(now + secs(10), 4);
        h.hold(now + secs(10), 4);
        let held = sync(
            &spec,
            4,
            &pods(4, 5, 100, now + secs(15)),
            now + secs(15),
            &mut h,
        );
        case(
            "a raise ahead of traffic is held through the downscale window",
            held.desired.into(),
            4,
        );
        let after = sync(
            &spec,
            4,
            &pods(4, 5, 100, now + secs(311)),
            now + secs(311),
            &mut h,
        );
        case("... and not after it", after.desired.into(), 1);
    }
    {
        let spec = legacy(1, 10, 50);
        let mut h = HpaHistory::default();
        sync(&spec, 5, &pods(5, 50, 100, now), now, &mut h);
        let held = sync(
            &spec,
            5,
            &pods(5, 10, 100, now + secs(60)),
            now + secs(60),
            &mut h,
        );
        case(
            "legacy downscale stabilization: the highest recommendation of the last 5 minutes wins (60 s later: still 5)",
            held.desired.into(),
            5,
        );
        let later = sync(
            &spec,
            5,
            &pods(5, 10, 100, now + secs(400)),
            now + secs(400),
            &mut h,
        );
        case(
            "legacy downscale stabilization ends after 5 minutes: ceil(0.2 × 5) = 1",
            later.desired.into(),
            1,
        );
    }
}

/// `horizontal.go`, legacy path: the bounds and conditions without metrics.
fn legacy_conditions(now: Instant, case: &mut impl FnMut(&'static str, i64, i64)) {
    case(
        "a target above maxReplicas is brought down to it without metrics",
        sync(&legacy(1, 3, 50), 7, &[], now, &mut HpaHistory::default())
            .desired
            .into(),
        3,
    );
    {
        let d = sync(&legacy(1, 3, 50), 0, &[], now, &mut HpaHistory::default());
        case(
            "a target scaled to 0 with minReplicas > 0 disables autoscaling (ScalingActive=False)",
            i64::from(
                d.conditions.iter().any(|c| {
                    c.kind == "ScalingActive" && !c.status && c.reason == "ScalingDisabled"
                }),
            ),
            1,
        );
    }
    {
        let mut ps = pods(1, 5, 5, now);
        ps[0].request_millis = Err("my-app".into());
        let d = sync(&legacy(1, 10, 50), 1, &ps, now, &mut HpaHistory::default());
        case(
            "a container without a CPU request: no action (ScalingActive=False, FailedGetResourceMetric)",
            i64::from(
                !d.rescale
                    && d.conditions.iter().any(|c| {
                        c.reason == "FailedGetResourceMetric"
                            && c.message
                                .contains("missing request for cpu in container my-app")
                    }),
            ),
            1,
        );
    }
}

/// `behavior.scaleUp/scaleDown.tolerance` (Kubernetes 1.33+, KEP-4951).
fn tolerance_rules(now: Instant, case: &mut impl FnMut(&'static str, i64, i64)) {
    // --- behavior.scaleUp/scaleDown.tolerance (Kubernetes 1.33+, KEP-4951) ---
    {
        let mut b = v2_defaults();
        b.scale_up.tolerance = Some(0.05);
        let spec = with_behavior(1, 20, 50, b);
        let t = Tolerances::of(&spec, &Settings::default());
        case(
            "a scale-up tolerance of 5% applies upwards only: up 0.05, down the controller's 0.1",
            (t.scale_up * 100.0).round() as i64 * 1000 + (t.scale_down * 100.0).round() as i64,
            5010,
        );
        case(
            "with scaleUp.tolerance 0.05, a ratio of 54/50 = 1.08 scales up (the default 0.1 would hold)",
            sync(
                &spec,
                2,
                &pods(2, 54, 100, now),
                now,
                &mut HpaHistory::default(),
            )
            .desired
            .into(),
            3,
        );
        case(
            "with scaleUp.tolerance 0.05, 46/50 = 0.92 still holds downwards (scaleDown keeps 0.1)",
            sync(
                &spec,
                2,
                &pods(2, 46, 100, now),
                now,
                &mut HpaHistory::default(),
            )
            .desired
            .into(),
            2,
        );
    }
}

/// `horizontal.go`, behavior path (v2 defaults).
fn behavior_rules(now: Instant, case: &mut impl FnMut(&'static str, i64, i64)) {
    // --- horizontal.go, behavior path (v2 defaults) ---
    case(
        "v2 default scale-up: Max(100% → 2, 4 pods → 5) per 15 s: 1 → 5",
        sync(
            &with_behavior(1, 20, 50, v2_defaults()),
            1,
            &pods(1, 1000, 100, now),
            now,
            &mut HpaHistory::default(),
        )
        .desired
        .into(),
        5,
    );
    {
        let mut b = v2_defaults();
        b.scale_up.select = SelectPolicy::Min;
        case(
            "selectPolicy Min picks the smaller policy: Min(2, 5) = 2",
            sync(
                &with_behavior(1, 20, 50, b),
                1,
                &pods(1, 1000, 100, now),
                now,
                &mut HpaHistory::default(),
            )
            .desired
            .into(),
            2,
        );
    }
    {
        let b = Behavior {
            scale_up: Rules {
                window: Duration::ZERO,
                select: SelectPolicy::Max,
                policies: vec![Policy {
                    kind: PolicyKind::Percent,
                    value: 10,
                    period: secs(60),
                }],
                tolerance: None,
            },
            ..v2_defaults()
        };
        case(
            "Percent rounds up on scale-up: 72 × 1.10 = 79.2 → 80",
            sync(
                &with_behavior(1, 200, 50, b),
                72,
                &pods(72, 200, 100, now),
                now,
                &mut HpaHistory::default(),
            )
            .desired
            .into(),
            80,
        );
    }
    {
        let mut b = v2_defaults();
        b.scale_down.select = SelectPolicy::Disabled;
        b.scale_down.window = Duration::ZERO;
        case(
            "selectPolicy Disabled stops scaling in that direction",
            sync(
                &with_behavior(1, 20, 50, b),
                6,
                &pods(6, 1, 100, now),
                now,
                &mut HpaHistory::default(),
            )
            .desired
            .into(),
            6,
        );
    }
    {
        let spec = with_behavior(1, 20, 50, v2_defaults());
        let mut h = HpaHistory::default();
        sync(&spec, 4, &pods(4, 50, 100, now), now, &mut h);
        case(
            "v2 default scale-down window is 5 minutes: a lower recommendation 2 minutes later is held",
            sync(
                &spec,
                4,
                &pods(4, 1, 100, now + secs(120)),
                now + secs(120),
                &mut h,
            )
            .desired
            .into(),
            4,
        );
    }
    {
        let b = Behavior {
            scale_down: Rules {
                window: Duration::ZERO,
                select: SelectPolicy::Max,
                policies: vec![Policy {
                    kind: PolicyKind::Pods,
                    value: 2,
                    period: secs(60),
                }],
                tolerance: None,
            },
            ..v2_defaults()
        };
        let spec = with_behavior(1, 20, 50, b);
        let mut h = HpaHistory::default();
        let first = sync(&spec, 10, &pods(10, 1, 100, now), now, &mut h);
        case(
            "Pods policy limits scale-down to 2 per period: 10 → 8",
            first.desired.into(),
            8,
        );
        let second = sync(
            &spec,
            8,
            &pods(8, 1, 100, now + secs(15)),
            now + secs(15),
            &mut h,
        );
        case(
            "the period counts earlier changes: 15 s later no more room (period start was 10)",
            second.desired.into(),
            8,
        );
        let third = sync(
            &spec,
            8,
            &pods(8, 1, 100, now + secs(61)),
            now + secs(61),
            &mut h,
        );
        case("a new period allows 2 more: 8 → 6", third.desired.into(), 6);
    }
}

#[test]
fn the_algorithm_rule_by_rule() {
    let now = Instant::now();
    let mut cases: Vec<Case> = Vec::new();
    let mut case =
        |rule: &'static str, actual: i64, expected: i64| cases.push((rule, actual, expected));
    for rules in [
        calculator_rules,
        legacy_rules,
        legacy_stabilization,
        legacy_conditions,
        tolerance_rules,
        behavior_rules,
    ] {
        rules(now, &mut case);
    }
    let failures: Vec<String> = cases
        .iter()
        .filter(|(_, actual, expected)| actual != expected)
        .map(|(rule, actual, expected)| format!("{rule}: got {actual}, want {expected}"))
        .collect();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

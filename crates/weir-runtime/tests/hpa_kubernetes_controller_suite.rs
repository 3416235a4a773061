//! Kubernetes' own HPA controller tests (`horizontal_test.go`,
//! kubernetes/kubernetes `pkg/controller/podautoscaler`, at commit
//! 003e86297d18a8538c9da3619871393f9703bf70): every test of one sync with a
//! CPU target, run through weir's `hpa::reconcile`, checking the desired
//! replicas, the status conditions (type, status, reason) and, where the test
//! does, the CPU utilization reported.
//!
//! Over 600 lines because it is one table, in the order of the Kubernetes
//! file it mirrors, with the harness that reads it: kept in one file so a
//! case can be checked against its Go original line by line.
//!
//! The harness's pods are rebuilt as weir's `PodSample`s: one per CPU request
//! (else `statusReplicas` of 1 CPU), two containers each requesting and using
//! half (integer halves, as the harness divides), a Ready condition that
//! changed when the pod started, "hot" pods started now and "cool" ones three
//! minutes ago (the harness's 2-minute CPU initialization period and
//! 10-second readiness delay), metrics sampled now over a minute. The HPA is
//! an `autoscaling/v2` object with Kubernetes' behavior defaults filled in (as
//! the harness does), so the behavior path normalizes. A test without
//! `recommendations` starts from the controller's initial recommendation
//! (the current replicas); one with them starts from exactly those.
//!
//! Tests that cannot be expressed on weir are listed in `NOT_EXPRESSIBLE`
//! with the reason.

use std::time::Duration;

use tokio::time::Instant;
use weir_api::k8s_openapi::api::autoscaling::v2;
use weir_runtime::hpa::{Decision, HpaHistory, HpaSpec, PodSample, Settings, Usage, reconcile};

fn harness_settings() -> Settings {
    Settings {
        tolerance: 0.1,
        cpu_initialization_period: Duration::from_secs(120),
        initial_readiness_delay: Duration::from_secs(10),
        downscale_stabilization: Duration::from_secs(300),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Start {
    Cool,
    Hot,
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Running,
    Failed,
}

/// `generateScalingRules(pods, podsPeriod, percent, percentPeriod, window)`.
fn rules(
    pods: i32,
    pods_period: i32,
    percent: i32,
    percent_period: i32,
    window: i32,
) -> v2::HPAScalingRules {
    let mut policies = Vec::new();
    if pods != 0 {
        policies.push(v2::HPAScalingPolicy {
            type_: "Pods".into(),
            value: pods,
            period_seconds: pods_period,
        });
    }
    if percent != 0 {
        policies.push(v2::HPAScalingPolicy {
            type_: "Percent".into(),
            value: percent,
            period_seconds: percent_period,
        });
    }
    v2::HPAScalingRules {
        stabilization_window_seconds: Some(window),
        select_policy: Some("Max".into()),
        policies: Some(policies),
        tolerance: None,
    }
}

type Cond = (&'static str, bool, &'static str);

/// `statusOkWithOverrides`: the three "ok" conditions, each replaced by an
/// override of its type.
fn status_ok(overrides: &[Cond]) -> Vec<Cond> {
    let mut conditions = vec![
        ("AbleToScale", true, "SucceededRescale"),
        ("ScalingActive", true, "ValidMetricFound"),
        ("ScalingLimited", false, "DesiredWithinRange"),
    ];
    for o in overrides {
        if let Some(c) = conditions.iter_mut().find(|c| c.0 == o.0) {
            *c = *o;
        }
    }
    conditions
}

/// One `testCase` of horizontal_test.go.
struct Case {
    name: &'static str,
    min: i32,
    max: i32,
    spec_replicas: i32,
    status_replicas: i32,
    cpu_target: i32,
    levels: Vec<i64>,
    requests: Option<Vec<i64>>,
    readiness: Vec<bool>,
    start: Vec<Start>,
    phase: Vec<Phase>,
    deleting: Vec<bool>,
    scale_up: Option<v2::HPAScalingRules>,
    scale_down: Option<v2::HPAScalingRules>,
    /// `None`: the controller's initial recommendation; `Some`: exactly these
    /// (age, replicas).
    recommendations: Option<Vec<(Duration, i32)>>,
    expected: i32,
    conditions: Vec<Cond>,
    cpu_current: Option<i32>,
}

impl Case {
    fn new(
        name: &'static str,
        min: i32,
        max: i32,
        replicas: i32,
        cpu_target: i32,
        expected: i32,
    ) -> Self {
        Self {
            name,
            min,
            max,
            spec_replicas: replicas,
            status_replicas: replicas,
            cpu_target,
            levels: Vec::new(),
            requests: None,
            readiness: Vec::new(),
            start: Vec::new(),
            phase: Vec::new(),
            deleting: Vec::new(),
            scale_up: None,
            scale_down: None,
            recommendations: None,
            expected,
            conditions: status_ok(&[]),
            cpu_current: None,
        }
    }

    fn levels(mut self, l: &[i64]) -> Self {
        self.levels = l.to_vec();
        self
    }
    fn requests(mut self, r: &[i64]) -> Self {
        self.requests = Some(r.to_vec());
        self
    }
    fn readiness(mut self, r: &[bool]) -> Self {
        self.readiness = r.to_vec();
        self
    }
    fn start(mut self, s: &[Start]) -> Self {
        self.start = s.to_vec();
        self
    }
    fn phase(mut self, p: &[Phase]) -> Self {
        self.phase = p.to_vec();
        self
    }
    fn deleting(mut self, d: &[bool]) -> Self {
        self.deleting = d.to_vec();
        self
    }
    fn scale_up(mut self, r: v2::HPAScalingRules) -> Self {
        self.scale_up = Some(r);
        self
    }
    fn no_recommendations(mut self) -> Self {
        self.recommendations = Some(Vec::new());
        self
    }
    fn recommendations(mut self, r: &[(u64, i32)]) -> Self {
        self.recommendations = Some(
            r.iter()
                .map(|(age, n)| (Duration::from_secs(*age), *n))
                .collect(),
        );
        self
    }
    fn conditions(mut self, c: Vec<Cond>) -> Self {
        self.conditions = c;
        self
    }
    /// `verifyCPUCurrent` with the harness's `computeCPUCurrent` (or the
    /// test's own `CPUCurrent`).
    fn verify_cpu(mut self, explicit: Option<i32>) -> Self {
        let requests = self.requests.clone().unwrap_or_default();
        self.cpu_current = explicit.or_else(|| {
            (requests.len() == self.levels.len() && !requests.is_empty()).then(|| {
                (100 * self.levels.iter().sum::<i64>() / requests.iter().sum::<i64>()) as i32
            })
        });
        self
    }

    fn pods(&self, now: Instant) -> Vec<PodSample> {
        let requests = self
            .requests
            .clone()
            .unwrap_or_else(|| vec![1000; self.status_replicas as usize]);
        requests
            .iter()
            .enumerate()
            .map(|(i, request)| {
                let started = match self.start.get(i).copied().unwrap_or(Start::Cool) {
                    Start::Cool => now - Duration::from_secs(180),
                    Start::Hot => now,
                };
                PodSample {
                    name: format!("test-pod-{i}"),
                    pending: false,
                    gone: self.phase.get(i) == Some(&Phase::Failed)
                        || self.deleting.get(i).copied().unwrap_or(false),
                    started: Some(started),
                    ready: Some((self.readiness.get(i).copied().unwrap_or(true), started)),
                    request_millis: Ok(request / 2 * 2),
                    usage: self.levels.get(i).map(|l| Usage {
                        millis: l / 2 * 2,
                        timestamp: now,
                        window: Duration::from_secs(60),
                    }),
                }
            })
            .collect()
    }

    fn spec(&self) -> HpaSpec {
        let hpa = v2::HorizontalPodAutoscaler {
            spec: v2::HorizontalPodAutoscalerSpec {
                min_replicas: Some(self.min),
                max_replicas: self.max,
                behavior: Some(v2::HorizontalPodAutoscalerBehavior {
                    scale_up: self.scale_up.clone(),
                    scale_down: self.scale_down.clone(),
                }),
                metrics: Some(vec![v2::MetricSpec {
                    type_: "Resource".into(),
                    resource: Some(v2::ResourceMetricSource {
                        name: "cpu".into(),
                        target: v2::MetricTarget {
                            type_: "Utilization".into(),
                            average_utilization: Some(self.cpu_target),
                            ..Default::default()
                        },
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        };
        HpaSpec::from_v2(&hpa, &harness_settings())
    }

    fn run(&self, now: Instant) -> Decision {
        let mut history = match &self.recommendations {
            None => HpaHistory::first_seen(self.spec_replicas, now),
            Some(recs) => {
                let mut h = HpaHistory::default();
                for (age, n) in recs {
                    h.hold(now - *age, *n);
                }
                h
            }
        };
        reconcile(
            &self.spec(),
            self.spec_replicas,
            &self.pods(now),
            now,
            &mut history,
            &harness_settings(),
        )
    }

    fn check(&self, now: Instant) -> Result<(), String> {
        let d = self.run(now);
        let got: Vec<Cond> = d
            .conditions
            .iter()
            .map(|c| (c.kind, c.status, c.reason))
            .collect();
        let cpu_ok = self.cpu_current.is_none_or(|c| d.utilization == Some(c));
        if d.desired == self.expected && got == self.conditions && cpu_ok {
            Ok(())
        } else {
            Err(format!(
                "{}: desired {} (want {}), conditions {got:?} (want {:?}), utilization {:?} (want {:?})",
                self.name,
                d.desired,
                self.expected,
                self.conditions,
                d.utilization,
                self.cpu_current
            ))
        }
    }
}

fn cases() -> Vec<Case> {
    let mut cases = cases_first_half();
    cases.extend(cases_second_half());
    cases.extend(computed_tolerance());
    cases
}

/// The first half of [`cases`]'s table.
fn cases_first_half() -> Vec<Case> {
    use Phase::{Failed, Running};
    use Start::{Cool, Hot};
    let ready_for_new_scale = ("AbleToScale", true, "ReadyForNewScale");
    let one = |n| vec![1000; n];
    vec![
        Case::new("TestScaleUp", 2, 6, 3, 30, 5)
            .levels(&[300, 500, 700])
            .requests(&one(3))
            .verify_cpu(None),
        Case::new("TestScaleUpUnreadyLessScale", 2, 6, 3, 30, 4)
            .levels(&[300, 500, 700])
            .requests(&one(3))
            .readiness(&[false, true, true])
            .verify_cpu(Some(60)),
        Case::new("TestScaleUpHotCpuLessScale", 2, 6, 3, 30, 4)
            .levels(&[300, 500, 700])
            .requests(&one(3))
            .start(&[Hot, Cool, Cool])
            .verify_cpu(Some(60)),
        Case::new("TestScaleUpUnreadyNoScale", 2, 6, 3, 30, 3)
            .levels(&[400, 500, 700])
            .requests(&one(3))
            .readiness(&[true, false, false])
            .conditions(status_ok(&[ready_for_new_scale]))
            .verify_cpu(Some(40)),
        Case::new("TestScaleUpHotCpuNoScale", 2, 6, 3, 30, 3)
            .levels(&[400, 500, 700])
            .requests(&one(3))
            .readiness(&[true, false, false])
            .start(&[Cool, Hot, Hot])
            .conditions(status_ok(&[ready_for_new_scale]))
            .verify_cpu(Some(40)),
        Case::new("TestScaleUpIgnoresFailedPods", 2, 6, 2, 30, 4)
            .levels(&[500, 700])
            .requests(&one(4))
            .readiness(&[true, true, false, false])
            .phase(&[Running, Running, Failed, Failed])
            .verify_cpu(Some(60)),
        Case::new("TestScaleUpIgnoresDeletionPods", 2, 6, 2, 30, 4)
            .levels(&[500, 700])
            .requests(&one(4))
            .readiness(&[true, true, false, false])
            .deleting(&[false, false, true, true])
            .verify_cpu(Some(60)),
        Case::new("TestScaleUpDeployment", 2, 6, 3, 30, 5)
            .levels(&[300, 500, 700])
            .requests(&one(3))
            .verify_cpu(None),
        Case::new("TestScaleUpReplicaSet", 2, 6, 3, 30, 5)
            .levels(&[300, 500, 700])
            .requests(&one(3))
            .verify_cpu(None),
        Case::new("TestScaleDown", 2, 6, 5, 50, 3)
            .levels(&[100, 300, 500, 250, 250])
            .requests(&one(5))
            .no_recommendations()
            .verify_cpu(None),
        Case::new("TestScaleDownWithScalingRules", 2, 6, 5, 50, 3)
            .scale_up(rules(0, 0, 100, 15, 30))
            .levels(&[100, 300, 500, 250, 250])
            .requests(&one(5))
            .no_recommendations()
            .verify_cpu(None),
        Case::new("TestScaleDownStabilizeInitialSize", 2, 6, 5, 50, 5)
            .levels(&[100, 300, 500, 250, 250])
            .requests(&one(5))
            .conditions(status_ok(&[("AbleToScale", true, "ScaleDownStabilized")]))
            .verify_cpu(None),
        Case::new("TestScaleDownIncludeUnreadyPods", 2, 6, 5, 50, 2)
            .levels(&[100, 300, 500, 250, 250])
            .requests(&one(5))
            .readiness(&[true, true, true, false, false])
            .no_recommendations()
            .verify_cpu(Some(30)),
        Case::new("TestScaleDownIgnoreHotCpuPods", 2, 6, 5, 50, 2)
            .levels(&[100, 300, 500, 250, 250])
            .requests(&one(5))
            .start(&[Cool, Cool, Cool, Hot, Hot])
            .no_recommendations()
            .verify_cpu(Some(30)),
        Case::new("TestScaleDownIgnoresFailedPods", 2, 6, 5, 50, 3)
            .levels(&[100, 300, 500, 250, 250])
            .requests(&one(7))
            .readiness(&[true, true, true, true, true, false, false])
            .phase(&[Running, Running, Running, Running, Running, Failed, Failed])
            .no_recommendations()
            .verify_cpu(Some(28)),
        Case::new("TestScaleDownIgnoresDeletionPods", 2, 6, 5, 50, 3)
            .levels(&[100, 300, 500, 250, 250])
            .requests(&one(7))
            .readiness(&[true, true, true, true, true, false, false])
            .deleting(&[false, false, false, false, false, true, true])
            .no_recommendations()
            .verify_cpu(Some(28)),
        Case::new("TestTolerance", 1, 5, 3, 100, 3)
            .levels(&[1010, 1030, 1020])
            .requests(&[900, 1000, 1100])
            .conditions(status_ok(&[ready_for_new_scale])),
        Case::new("TestMinReplicas", 2, 5, 3, 90, 2)
            .levels(&[10, 95, 10])
            .requests(&[900, 1000, 1100])
            .no_recommendations()
            .conditions(status_ok(&[("ScalingLimited", true, "TooFewReplicas")])),
    ]
}

/// The second half of [`cases`]'s table.
fn cases_second_half() -> Vec<Case> {
    use Start::{Cool, Hot};
    let ready_for_new_scale = ("AbleToScale", true, "ReadyForNewScale");
    let one = |n| vec![1000; n];
    vec![
        Case::new("TestMinReplicasDesiredZero", 2, 5, 3, 90, 2)
            .levels(&[0, 0, 0])
            .requests(&[900, 1000, 1100])
            .no_recommendations()
            .conditions(status_ok(&[("ScalingLimited", true, "TooFewReplicas")])),
        Case::new("TestZeroReplicas", 3, 5, 0, 90, 0)
            .requests(&[])
            .conditions(vec![
                ("AbleToScale", true, "SucceededGetScale"),
                ("ScalingActive", false, "ScalingDisabled"),
            ]),
        Case::new("TestTooFewReplicas", 3, 5, 2, 90, 3)
            .requests(&[])
            .conditions(vec![("AbleToScale", true, "SucceededRescale")]),
        Case::new("TestTooManyReplicas", 3, 5, 10, 90, 5)
            .requests(&[])
            .conditions(vec![("AbleToScale", true, "SucceededRescale")]),
        Case::new("TestMaxReplicas", 2, 5, 3, 90, 5)
            .levels(&[8000, 9500, 1000])
            .requests(&[900, 1000, 1100])
            .conditions(status_ok(&[("ScalingLimited", true, "TooManyReplicas")])),
        // Six metrics for four pods: the two without a pod count nowhere.
        Case::new("TestSuperfluousMetrics", 2, 6, 4, 100, 6)
            .levels(&[4000, 9500, 3000, 7000])
            .requests(&one(4))
            .conditions(status_ok(&[("ScalingLimited", true, "TooManyReplicas")])),
        Case::new("TestMissingMetrics", 2, 6, 4, 100, 3)
            .levels(&[400, 95])
            .requests(&one(4))
            .no_recommendations(),
        Case::new("TestEmptyMetrics", 2, 6, 4, 100, 4)
            .requests(&one(4))
            .conditions(vec![
                ("AbleToScale", true, "SucceededGetScale"),
                ("ScalingActive", false, "FailedGetResourceMetric"),
            ]),
        Case::new("TestEmptyCPURequest", 1, 5, 1, 100, 1)
            .levels(&[200])
            .requests(&[])
            .conditions(vec![
                ("AbleToScale", true, "SucceededGetScale"),
                ("ScalingActive", false, "FailedGetResourceMetric"),
            ]),
        Case::new("TestEventCreated", 1, 5, 1, 50, 2)
            .levels(&[200])
            .requests(&[200]),
        Case::new("TestEventNotCreated", 1, 5, 2, 50, 2)
            .levels(&[200, 200])
            .requests(&[400, 400])
            .conditions(status_ok(&[ready_for_new_scale])),
        Case::new("TestMissingReports", 1, 5, 4, 50, 2)
            .levels(&[200])
            .requests(&[200])
            .no_recommendations(),
        Case::new("TestUpscaleCap", 1, 100, 3, 10, 24)
            .scale_up(rules(0, 0, 700, 60, 0))
            .levels(&[100, 200, 300])
            .requests(&[100, 100, 100])
            .conditions(status_ok(&[("ScalingLimited", true, "ScaleUpLimit")])),
        Case::new("TestUpscaleCapGreaterThanMaxReplicas", 1, 20, 3, 10, 20)
            .scale_up(rules(0, 0, 700, 60, 0))
            .levels(&[100, 200, 300])
            .requests(&[100, 100, 100])
            .conditions(status_ok(&[("ScalingLimited", true, "TooManyReplicas")])),
        {
            let mut c = Case::new("TestMoreReplicasThanSpecNoScale", 1, 8, 4, 50, 4)
                .levels(&[500, 500, 500, 500, 500])
                .requests(&one(5))
                .conditions(status_ok(&[ready_for_new_scale]));
            c.status_replicas = 5;
            c
        },
        Case::new("TestStabilizeDownscale", 1, 5, 4, 100, 4)
            .levels(&[50, 50, 50])
            .requests(&[100, 100, 100])
            .recommendations(&[(600, 10), (60, 4)])
            .conditions(status_ok(&[("AbleToScale", true, "ScaleDownStabilized")])),
        Case::new("TestScaleUpRCImmediately", 2, 6, 1, 0, 2)
            .levels(&[0, 0, 0, 0])
            .requests(&one(4))
            .conditions(vec![("AbleToScale", true, "SucceededRescale")]),
        Case::new("TestScaleDownRCImmediately", 2, 5, 6, 50, 5)
            .levels(&[8000, 9500, 1000])
            .requests(&[900, 1000, 1100])
            .conditions(vec![("AbleToScale", true, "SucceededRescale")]),
        // The test's HPA has a target of 80 (see its TODO): the
        // recommendation of 2 is within range, nothing changes.
        Case::new("TestAvoidUnnecessaryUpdates", 2, 6, 2, 80, 2)
            .levels(&[400, 500, 700])
            .requests(&one(3))
            .start(&[Cool, Hot, Hot])
            .no_recommendations()
            .conditions(status_ok(&[
                ready_for_new_scale,
                ("ScalingLimited", true, "TooFewReplicas"),
            ]))
            .verify_cpu(Some(40)),
    ]
}

/// `TestComputedToleranceAlgImplementation`: just past the tolerance it
/// scales down; just inside, it holds.
fn computed_tolerance() -> Vec<Case> {
    let start_pods = 10i64;
    let used_total = start_pods * 150;
    let requested_total = 2 * used_total;
    let requested_to_used = (requested_total / used_total) as f64;
    let per_pod = requested_total / start_pods;
    let requests: Vec<i64> = [100, -100, 10, -10, 2, -2, 1, -1, 0, 0]
        .iter()
        .map(|d| per_pod + d)
        .collect();
    let levels = vec![used_total / 10; 10];
    let past = (1.0 / (requested_to_used * (1.0 - 0.1))).abs() + 0.01;
    let final_pods =
        (used_total as f64 / (requested_total as f64 * past) * start_pods as f64).ceil() as i32;
    let inside = (1.0 / (requested_to_used * (1.0 - 0.1))).abs() + 0.004;
    vec![
        Case::new(
            "TestComputedToleranceAlgImplementation (scales)",
            1,
            1000,
            10,
            (past * 100.0) as i32,
            final_pods,
        )
        .levels(&levels)
        .requests(&requests)
        .no_recommendations(),
        Case::new(
            "TestComputedToleranceAlgImplementation (holds)",
            1,
            1000,
            10,
            (inside * 100.0) as i32,
            10,
        )
        .levels(&levels)
        .requests(&requests)
        .no_recommendations()
        .conditions(status_ok(&[("AbleToScale", true, "ReadyForNewScale")])),
    ]
}

/// Tests of the file weir cannot express, and why.
const NOT_EXPRESSIBLE: &[(&str, &str)] = &[
    (
        "TestScaleUpContainer, TestScaleDownContainerResource",
        "ContainerResource metrics: not implemented by weir (validation refuses them)",
    ),
    (
        "TestScaleUpCM*, TestScaleDownCM*, TestScaleUpPerPodCM*, TestScaleDownPerPodCM*, TestScaleUpFromZeroCMObject, TestScaleUpFromZeroIgnoresToleranceCMObject, TestScaleDownToZeroCM*, TestToleranceCM*, TestTolerancePerPodCM*, TestNoBackoffUpscaleCM, TestNoBackoffUpscaleCMNoBackoffCpu, TestScaleUpHotCpuNoScaleWouldScaleDown, TestScaleUpOneMetricEmpty, TestNoScaleDownOneMetricEmpty, TestConditionFailedGetMetrics (pods/object/external)",
        "Pods, Object and External metrics: weir's HPA reads CPU only (validation refuses the others)",
    ),
    (
        "TestScaleUpOneMetricInvalid, TestScaleUpFromZeroOneMetricInvalid, TestScaleUpBothMetricsEmpty, TestConditionInvalidSourceType, TestNoScaleDownOneMetricInvalid",
        "an unknown metric type (\"CheddarCheese\"): the API server and weir's validation refuse it before a controller sees it",
    ),
    (
        "TestZeroMinReplicasDesiredZero, TestComputedToleranceAlgImplementation's minReplicas 0",
        "minReplicas 0 needs the alpha HPAScaleToZero gate; the API server and weir's validation refuse it (the computed-tolerance cases run with minReplicas 1, which they never reach)",
    ),
    (
        "TestConditionInvalidSelectorMissing, TestConditionInvalidSelectorUnparsable, TestConditionNoAmbiguousSelectorWhenNoSelectorOverlapBetweenHPAs, TestConditionAmbiguousSelectorWhenFullSelectorOverlapBetweenHPAs, TestConditionAmbiguousSelectorWhenPartialSelectorOverlapBetweenHPAs",
        "a scale subresource without or with an unparsable selector, and HPAs sharing pods: weir's HPA targets a Deployment by name and reads its selector from the store, so neither can arise",
    ),
    (
        "TestConditionFailedGetScale, TestConditionFailedUpdateScale, TestConditionFailedGetMetrics (resource)",
        "API calls failing: weir's controller reads and writes its own store in-process",
    ),
    (
        "TestMultipleHPAs",
        "the controller's worker concurrency over 1000 HPAs (no decision of one HPA)",
    ),
    (
        "TestNormalizeDesiredReplicas, TestNormalizeDesiredReplicasWithBehavior, TestScalingWithRules, TestStoreScaleEvents, TestConvertDesiredReplicasWithRules, TestCalculateScaleUpLimitWithScalingRules, TestCalculateScaleDownLimitWithBehaviors",
        "tests of the controller's internal helpers on hand-built controller state; weir's counterparts are private to `hpa::reconcile`, whose rules they exercise are the cases above and `hpa_algorithm.rs`",
    ),
];

#[test]
fn kubernetes_hpa_controller_cpu_cases_agree() {
    let now = Instant::now();
    let cases = cases();
    let failures: Vec<String> = cases.iter().filter_map(|c| c.check(now).err()).collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert_eq!(cases.len(), 39);
    assert!(NOT_EXPRESSIBLE.iter().all(|(_, why)| !why.is_empty()));
}

#[test]
fn the_harness_can_fail() {
    let wrong = Case::new("TestScaleUp with a wrong expectation", 2, 6, 3, 30, 4)
        .levels(&[300, 500, 700])
        .requests(&[1000; 3]);
    assert!(wrong.check(Instant::now()).is_err());
}

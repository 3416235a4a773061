//! Kubernetes' own HPA replica-calculator tests, run on weir's HPA
//! functions: every CPU-resource case of `replica_calculator_test.go`
//! (kubernetes/kubernetes `pkg/controller/podautoscaler`, at commit
//! 00067268967ec95a40035bd666374a1caf48dd1a), with the test harness's
//! pods rebuilt as weir's `PodSample`s:
//!
//! - each pod has two containers, each requesting `requests[i]` and using
//!   `levels[i]`, so a pod requests and uses twice that (the harness's
//!   `numContainersPerPod`); pods beyond `requests` have no CPU request,
//!   pods beyond `levels` no metric;
//! - "cool" pods started 3 minutes ago and "hot" ones 1 minute ago, against
//!   the harness's 2-minute CPU initialization period, 10-second initial
//!   readiness delay and 0.1 tolerance; a hot pod's metric window does not
//!   yet cover a full window since it became ready; an unready pod has
//!   never been ready (its Ready condition changed when it started);
//! - `Failed` pods and pods being deleted are gone; `Pending` ones pending.
//!
//! Each case checks the replicas, the utilization and the raw average the
//! status reports (`expectedValue`). Cases that cannot be expressed on
//! weir's HPA (custom, object and external metrics: weir's HPA implements
//! CPU resource metrics) are listed in `NOT_EXPRESSIBLE`.

use std::time::Duration;

use tokio::time::Instant;
use weir_runtime::hpa::{PodSample, Settings, Target, Tolerances, Usage, calculate};

/// The harness's controller settings (`defaultTestingTolerance`,
/// `defaultTestingCPUInitializationPeriod`, `defaultTestingDelayOfInitialReadinessStatus`).
fn harness_settings() -> Settings {
    Settings {
        tolerance: 0.1,
        cpu_initialization_period: Duration::from_secs(120),
        initial_readiness_delay: Duration::from_secs(10),
        ..Settings::default()
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
    Pending,
    Failed,
}

/// One `replicaCalcTestCase` with a CPU resource.
struct Case {
    name: &'static str,
    current: i32,
    /// The request of each container of pod i, millicores.
    requests: Vec<i64>,
    /// The usage of each container of pod i, millicores.
    levels: Vec<i64>,
    target: i32,
    readiness: Vec<bool>,
    start: Vec<Start>,
    phase: Vec<Phase>,
    deleting: Vec<bool>,
    expected: Expected,
}

enum Expected {
    Replicas {
        replicas: i32,
        utilization: i32,
        value: i64,
    },
    /// An error (Kubernetes' message fragment, and weir's).
    Error(&'static str, &'static str),
}

const CONTAINERS_PER_POD: i64 = 2;

impl Case {
    fn new(
        name: &'static str,
        current: i32,
        requests: &[i64],
        levels: &[i64],
        target: i32,
    ) -> Self {
        Self {
            name,
            current,
            requests: requests.to_vec(),
            levels: levels.to_vec(),
            target,
            readiness: Vec::new(),
            start: Vec::new(),
            phase: Vec::new(),
            deleting: Vec::new(),
            expected: Expected::Error("", ""),
        }
    }

    fn expect(mut self, replicas: i32, utilization: i32, value: i64) -> Self {
        self.expected = Expected::Replicas {
            replicas,
            utilization,
            value,
        };
        self
    }

    fn fails(mut self, kubernetes: &'static str, weir: &'static str) -> Self {
        self.expected = Expected::Error(kubernetes, weir);
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

    /// The pods the harness's fake clients return, as weir sees them.
    fn pods(&self, now: Instant) -> Vec<PodSample> {
        let count = (self.current as usize).max(self.phase.len());
        (0..count)
            .map(|i| {
                let ready = self.readiness.get(i).copied().unwrap_or(true);
                let start = self.start.get(i).copied().unwrap_or(Start::Cool);
                let phase = self.phase.get(i).copied().unwrap_or(Phase::Running);
                let started = match start {
                    Start::Cool => now - Duration::from_secs(180),
                    Start::Hot => now - Duration::from_secs(60),
                };
                // Ready: the condition changed 10 s after the start, except
                // for a hot pod, whose metric window began before it became
                // ready; unready: never ready (changed at the start).
                let transition = match (ready, start) {
                    (false, _) => started,
                    (true, Start::Cool) => started + Duration::from_secs(10),
                    (true, Start::Hot) => now - Duration::from_secs(30),
                };
                PodSample {
                    name: format!("test-pod-{i}"),
                    pending: phase == Phase::Pending,
                    gone: phase == Phase::Failed || self.deleting.get(i).copied().unwrap_or(false),
                    started: (phase != Phase::Pending).then_some(started),
                    ready: (phase != Phase::Pending).then_some((ready, transition)),
                    request_millis: self
                        .requests
                        .get(i)
                        .map(|r| r * CONTAINERS_PER_POD)
                        .ok_or_else(|| "container0".to_owned()),
                    usage: self.levels.get(i).map(|l| Usage {
                        millis: l * CONTAINERS_PER_POD,
                        timestamp: now,
                        window: Duration::from_secs(60),
                    }),
                }
            })
            .collect()
    }

    fn check(&self, now: Instant) -> Result<(), String> {
        let got = calculate(
            self.current,
            Target::Utilization(self.target),
            &self.pods(now),
            now,
            &harness_settings(),
            Tolerances::both(0.1),
        );
        match (&self.expected, got) {
            (
                Expected::Replicas {
                    replicas,
                    utilization,
                    value,
                },
                Ok(c),
            ) if c.replicas == *replicas
                && c.utilization == Some(*utilization)
                && c.average_millis == *value =>
            {
                Ok(())
            }
            (Expected::Error(_, weir), Err(e)) if e.to_string().contains(weir) => Ok(()),
            (Expected::Error(kubernetes, weir), got) => Err(format!(
                "{}: got {got:?}; Kubernetes fails with \"{kubernetes}\", weir should with \"{weir}\"",
                self.name
            )),
            (_, got) => Err(format!("{}: got {got:?}", self.name)),
        }
    }
}

/// Kubernetes' CPU cases, in the file's order.
fn cases() -> Vec<Case> {
    let mut cases = cases_first_half();
    cases.extend(cases_second_half());
    cases.extend(computed_tolerance_cases());
    cases
}

/// The first half of [`cases`]'s table.
fn cases_first_half() -> Vec<Case> {
    use Phase::{Failed, Pending, Running};
    use Start::{Cool, Hot};
    let one = |n: usize| vec![1000; n];
    vec![
        // The only metric is for a pod the lister does not know.
        Case::new(
            "TestReplicaCalcDisjointResourcesMetrics",
            1,
            &[1000],
            &[],
            100,
        )
        .fails(
            "no metrics returned matched known pods",
            "did not receive metrics for any ready pods",
        ),
        Case::new("TestReplicaCalcScaleUp", 3, &one(3), &[300, 500, 700], 30).expect(5, 50, 1000),
        Case::new(
            "TestReplicaCalcScaleUpUnreadyLessScale",
            3,
            &one(3),
            &[300, 500, 700],
            30,
        )
        .readiness(&[false, true, true])
        .expect(4, 60, 1200),
        Case::new(
            "TestReplicaCalcScaleUpHotCpuLessScale",
            3,
            &one(3),
            &[300, 500, 700],
            30,
        )
        .start(&[Hot, Cool, Cool])
        .expect(4, 60, 1200),
        Case::new(
            "TestReplicaCalcScaleUpUnreadyNoScale",
            3,
            &one(3),
            &[400, 500, 700],
            30,
        )
        .readiness(&[true, false, false])
        .expect(3, 40, 800),
        Case::new(
            "TestReplicaCalcScaleHotCpuNoScale",
            3,
            &one(3),
            &[400, 500, 700],
            30,
        )
        .readiness(&[true, false, false])
        .start(&[Cool, Hot, Hot])
        .expect(3, 40, 800),
        Case::new(
            "TestReplicaCalcScaleUpIgnoresFailedPods",
            2,
            &one(4),
            &[500, 700],
            30,
        )
        .readiness(&[true, true, false, false])
        .phase(&[Running, Running, Failed, Failed])
        .expect(4, 60, 1200),
        Case::new(
            "TestReplicaCalcScaleUpIgnoresDeletionPods",
            2,
            &one(4),
            &[500, 700],
            30,
        )
        .readiness(&[true, true, false, false])
        .phase(&[Running; 4])
        .deleting(&[false, false, true, true])
        .expect(4, 60, 1200),
        Case::new(
            "TestReplicaCalcScaleDown",
            5,
            &one(5),
            &[100, 300, 500, 250, 250],
            50,
        )
        .expect(3, 28, 560),
        Case::new(
            "TestReplicaCalcScaleDownIncludeUnreadyPods",
            5,
            &one(5),
            &[100, 300, 500, 250, 250],
            50,
        )
        .readiness(&[true, true, true, false, false])
        .expect(2, 30, 600),
        Case::new(
            "TestReplicaCalcScaleDownExcludeUnscheduledPods",
            5,
            &one(5),
            &[100],
            50,
        )
        .readiness(&[true, false, false, false, false])
        .phase(&[Running, Pending, Pending, Pending, Pending])
        .expect(1, 10, 200),
        Case::new(
            "TestReplicaCalcScaleDownIgnoreHotCpuPods",
            5,
            &one(5),
            &[100, 300, 500, 250, 250],
            50,
        )
        .start(&[Cool, Cool, Cool, Hot, Hot])
        .expect(2, 30, 600),
        Case::new(
            "TestReplicaCalcScaleDownIgnoresFailedPods",
            5,
            &one(7),
            &[100, 300, 500, 250, 250],
            50,
        )
        .readiness(&[true, true, true, true, true, false, false])
        .phase(&[Running, Running, Running, Running, Running, Failed, Failed])
        .expect(3, 28, 560),
    ]
}

/// The second half of [`cases`]'s table.
fn cases_second_half() -> Vec<Case> {
    use Phase::Running;
    use Start::{Cool, Hot};
    let one = |n: usize| vec![1000; n];
    vec![
        Case::new(
            "TestReplicaCalcScaleDownIgnoresDeletionPods",
            5,
            &one(7),
            &[100, 300, 500, 250, 250],
            50,
        )
        .readiness(&[true, true, true, true, true, false, false])
        .phase(&[Running; 7])
        .deleting(&[false, false, false, false, false, true, true])
        .expect(3, 28, 560),
        Case::new(
            "TestReplicaCalcTolerance",
            3,
            &[900, 1000, 1100],
            &[1010, 1030, 1020],
            100,
        )
        .expect(3, 102, 2040),
        // Six metrics for four pods: the two without a pod count nowhere.
        Case::new(
            "TestReplicaCalcSuperfluousMetrics",
            4,
            &one(4),
            &[4000, 9500, 3000, 7000],
            100,
        )
        .expect(24, 587, 11750),
        Case::new("TestReplicaCalcMissingMetrics", 4, &one(4), &[400, 95], 100).expect(3, 24, 495),
        Case::new("TestReplicaCalcEmptyMetrics", 4, &one(3), &[], 100).fails(
            "no metrics returned from resource metrics API",
            "did not receive metrics for any ready pods",
        ),
        Case::new("TestReplicaCalcEmptyCPURequest", 1, &[], &[200], 100)
            .fails("missing request for", "missing request for"),
        Case::new(
            "TestReplicaCalcMissingMetricsNoChangeEq",
            2,
            &one(2),
            &[1000],
            100,
        )
        .expect(2, 100, 2000),
        Case::new(
            "TestReplicaCalcMissingMetricsNoChangeGt",
            2,
            &one(2),
            &[1900],
            100,
        )
        .expect(2, 190, 3800),
        Case::new(
            "TestReplicaCalcMissingMetricsNoChangeLt",
            2,
            &one(2),
            &[600],
            100,
        )
        .expect(2, 60, 1200),
        Case::new(
            "TestReplicaCalcMissingMetricsUnreadyChange",
            3,
            &one(3),
            &[100, 450],
            50,
        )
        .readiness(&[false, true, true])
        .expect(3, 45, 900),
        Case::new(
            "TestReplicaCalcMissingMetricsHotCpuNoChange",
            3,
            &one(3),
            &[100, 450],
            50,
        )
        .start(&[Hot, Cool, Cool])
        .expect(3, 45, 900),
        Case::new(
            "TestReplicaCalcMissingMetricsUnreadyScaleUp",
            3,
            &one(3),
            &[100, 2000],
            50,
        )
        .readiness(&[false, true, true])
        .expect(4, 200, 4000),
        Case::new(
            "TestReplicaCalcMissingMetricsHotCpuScaleUp",
            3,
            &one(3),
            &[100, 2000],
            50,
        )
        .readiness(&[false, true, true])
        .start(&[Hot, Cool, Cool])
        .expect(4, 200, 4000),
        Case::new(
            "TestReplicaCalcMissingMetricsUnreadyScaleDown",
            4,
            &one(4),
            &[100, 100, 100],
            50,
        )
        .readiness(&[false, true, true, true])
        .expect(3, 10, 200),
        Case::new(
            "TestReplicaCalcDuringRollingUpdateWithMaxSurge",
            2,
            &one(3),
            &[100, 100],
            50,
        )
        .phase(&[Running; 3])
        .expect(2, 10, 200),
    ]
}

/// `TestReplicaCalcComputedToleranceAlgImplementation`: a target just past
/// the tolerance scales down; one just inside it does not.
fn computed_tolerance_cases() -> Vec<Case> {
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
    let utilization = (used_total * 100 / requested_total) as i32;
    let value = CONTAINERS_PER_POD * used_total / 10;
    let target_past = (1.0 / (requested_to_used * (1.0 - 0.1))).abs() + 0.01;
    let ratio = used_total as f64 / (requested_total as f64 * target_past);
    let final_pods = (ratio * start_pods as f64).ceil() as i32;
    let target_inside = (1.0 / (requested_to_used * (1.0 - 0.1))).abs() + 0.004;
    vec![
        Case::new(
            "TestReplicaCalcComputedToleranceAlgImplementation (scales)",
            10,
            &requests,
            &levels,
            (target_past * 100.0) as i32,
        )
        .expect(final_pods, utilization, value),
        Case::new(
            "TestReplicaCalcComputedToleranceAlgImplementation (holds)",
            10,
            &requests,
            &levels,
            (target_inside * 100.0) as i32,
        )
        .expect(10, utilization, value),
    ]
}

/// Cases of the file weir's HPA cannot express, and why.
const NOT_EXPRESSIBLE: &[(&str, &str)] = &[
    (
        "TestReplicaCalcScaleUpCM, ...UnreadyHotCpuNoLessScale, ...UnreadyHotCpuScaleWouldScaleDown, TestReplicaCalcScaleDownCM, TestReplicaCalcToleranceCM",
        "Pods custom metrics: weir's HPA reads CPU only",
    ),
    (
        "TestReplicaCalcScaleUpCMObject, ...CMPerPodObject, ...CMObjectIgnoresUnreadyPods, TestReplicaCalcScaleDownCMObject, ...PerPodCMObject, TestReplicaCalcToleranceCMObject, ...TolerancePerPodCMObject",
        "Object metrics: not implemented",
    ),
    (
        "TestReplicaCalcScaleUpCMExternal, ...ExternalIgnoresUnreadyPods, ...ExternalNoLabels, ...PerPodCMExternal, TestReplicaCalcScaleDownCMExternal, ...PerPodCMExternal, TestReplicaCalcToleranceCMExternal, ...TolerancePerPodCMExternal",
        "External metrics: not implemented",
    ),
    (
        "TestGroupPods",
        "tests the internal groupPods directly (and a memory row); its CPU rules are what every case above exercises through calculate",
    ),
];

#[test]
fn kubernetes_replica_calculator_cpu_cases_agree() {
    let now = Instant::now();
    let cases = cases();
    let failures: Vec<String> = cases.iter().filter_map(|c| c.check(now).err()).collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert_eq!(cases.len(), 30);
    assert!(NOT_EXPRESSIBLE.iter().all(|(_, why)| !why.is_empty()));
}

#[test]
fn the_harness_can_fail() {
    let now = Instant::now();
    let wrong = Case::new(
        "ScaleUp with a wrong expectation",
        3,
        &[1000; 3],
        &[300, 500, 700],
        30,
    )
    .expect(4, 50, 1000);
    assert!(wrong.check(now).is_err());
}

//! Capacity before traffic: before a Rollout raises the canary's weight,
//! how many canary replicas the new share needs, and whether to shift now,
//! scale the canary first, or wait for the pods it was scaled to. Neither
//! Argo Rollouts nor Flagger does this; their canaries take the new share
//! with the replicas they had and are flooded until their autoscaler reacts.
//!
//! The estimate: the rule's request rate × the new share × the CPU one
//! request costs on the stable's pods, divided by the CPU one canary pod
//! may use under its HPA's target (utilization × the pod's CPU request, or
//! an average value), rounded up, within the HPA's min and max. It needs an
//! HPA on the canary (its target is what "enough" means, and its bounds
//! are the user's); without one, or without traffic or CPU measured on the
//! stable, nothing is estimated and the weight moves at once, saying why.
//! Only while the request rate is being measured (the first second a
//! Rollout is seen) does the shift wait without an estimate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One CPU target of the canary's HPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuTarget {
    /// Average CPU utilization, percent of the pods' requests.
    Utilization(i32),
    /// Average CPU usage in millicores.
    AverageMillis(i64),
}

/// What the estimate is made from, measured now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CapacityInputs {
    /// Requests per second through the rule (stable and canary), recently;
    /// `None`: not measured yet.
    pub rate: Option<f64>,
    /// CPU one request costs on the stable's pods, millicore-seconds.
    pub cpu_per_request: Option<f64>,
    /// The canary's HPA, when it has one.
    pub hpa: Option<CanaryHpa>,
    /// The CPU request of one canary pod, millicores.
    pub cpu_request: Option<i64>,
    /// The canary Deployment's `spec.replicas`.
    pub replicas: i32,
    /// Its ready pods.
    pub ready: i32,
}

/// What the canary's HPA allows and aims for.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryHpa {
    /// `minReplicas`.
    pub min: i32,
    /// `maxReplicas`.
    pub max: i32,
    /// Its CPU targets (several: the one needing most replicas counts).
    pub targets: Vec<CpuTarget>,
}

/// What to do before shifting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CapacityDecision {
    /// Shift now: enough ready replicas, or nothing to estimate from.
    Shift,
    /// Raise the canary Deployment's replicas to this, then wait.
    Scale(i32),
    /// Wait: for the pods it was scaled to, or for a measurement.
    Wait,
}

/// The estimate and the decision, as the Rollout's status shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityEstimate {
    /// The canary's new weight, percent.
    pub share: u32,
    /// Replicas the new share needs (within the HPA's bounds); `None`:
    /// not estimated.
    pub needed: Option<i32>,
    /// Ready canary pods when decided.
    pub ready: i32,
    /// What was decided.
    pub decision: CapacityDecision,
    /// The arithmetic or why there is none, in words.
    pub reason: String,
}

/// The replicas the canary needs to take `share` percent of the rule's
/// traffic, and what to do about it.
pub fn replicas_for_share(inputs: &CapacityInputs, share: u32) -> CapacityEstimate {
    let unestimated = |reason: &str| CapacityEstimate {
        share,
        needed: None,
        ready: inputs.ready,
        decision: CapacityDecision::Shift,
        reason: reason.to_owned(),
    };
    let Some(hpa) = &inputs.hpa else {
        return unestimated("the canary has no HPA: its replicas are left as set");
    };
    let Some(rate) = inputs.rate else {
        return CapacityEstimate {
            decision: CapacityDecision::Wait,
            ..unestimated("measuring the request rate")
        };
    };
    if rate <= 0.0 {
        return unestimated("no traffic to estimate from");
    }
    let Some(cpu_per_request) = inputs
        .cpu_per_request
        .filter(|c| c.is_finite() && *c >= 0.0)
    else {
        return unestimated("no CPU measured on the stable's pods yet");
    };
    let per_pod = hpa
        .targets
        .iter()
        .filter_map(|t| match *t {
            CpuTarget::Utilization(percent) => inputs
                .cpu_request
                .filter(|r| *r > 0)
                .map(|r| r as f64 * f64::from(percent) / 100.0),
            CpuTarget::AverageMillis(m) => Some(m as f64),
        })
        .filter(|m| *m > 0.0)
        .reduce(f64::min);
    let Some(per_pod) = per_pod else {
        return unestimated("the canary's HPA has no CPU target its pods' requests give a value");
    };
    let load = rate * f64::from(share.min(100)) / 100.0 * cpu_per_request;
    let raw = (load / per_pod).ceil().min(f64::from(i32::MAX)) as i32;
    let floor = hpa.min.max(1);
    let needed = raw.clamp(floor, hpa.max.max(floor));
    let reason = format!(
        "{rate:.1} req/s × {share} % × {cpu_per_request:.2} ms CPU per request (measured on the stable) ÷ {per_pod:.1}m per pod (the canary HPA's target) = {raw}, within {floor}..{}",
        hpa.max.max(floor)
    );
    let decision = if inputs.ready >= needed {
        CapacityDecision::Shift
    } else if inputs.replicas < needed {
        CapacityDecision::Scale(needed)
    } else {
        CapacityDecision::Wait
    };
    CapacityEstimate {
        share,
        needed: Some(needed),
        ready: inputs.ready,
        decision,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CapacityDecision::*;

    fn hpa(min: i32, max: i32, targets: Vec<CpuTarget>) -> Option<CanaryHpa> {
        Some(CanaryHpa { min, max, targets })
    }

    /// 100 req/s, 1 ms CPU per request, 100m requests at a 50 % target:
    /// each pod may use 50m, the whole rule's traffic needs 100m.
    fn walkthrough() -> CapacityInputs {
        CapacityInputs {
            rate: Some(100.0),
            cpu_per_request: Some(1.0),
            hpa: hpa(1, 10, vec![CpuTarget::Utilization(50)]),
            cpu_request: Some(100),
            replicas: 1,
            ready: 1,
        }
    }

    #[test]
    fn the_replicas_a_share_needs_and_what_to_do() {
        struct Case {
            rule: &'static str,
            inputs: CapacityInputs,
            share: u32,
            needed: Option<i32>,
            decision: CapacityDecision,
        }
        let with = |f: fn(&mut CapacityInputs)| {
            let mut i = walkthrough();
            f(&mut i);
            i
        };
        let cases = [
            Case {
                rule: "10 % of 100m fits one pod's 50m: shift",
                inputs: walkthrough(),
                share: 10,
                needed: Some(1),
                decision: Shift,
            },
            Case {
                rule: "100 % needs 100m / 50m = 2 pods: scale first",
                inputs: walkthrough(),
                share: 100,
                needed: Some(2),
                decision: Scale(2),
            },
            Case {
                rule: "rounded up: 60 % is 60m, 2 pods",
                inputs: walkthrough(),
                share: 60,
                needed: Some(2),
                decision: Scale(2),
            },
            Case {
                rule: "scaled but not ready yet: wait",
                inputs: with(|i| i.replicas = 2),
                share: 100,
                needed: Some(2),
                decision: Wait,
            },
            Case {
                rule: "ready: shift",
                inputs: with(|i| {
                    i.replicas = 2;
                    i.ready = 2;
                }),
                share: 100,
                needed: Some(2),
                decision: Shift,
            },
            Case {
                rule: "never above the HPA's max",
                inputs: with(|i| i.rate = Some(10_000.0)),
                share: 100,
                needed: Some(10),
                decision: Scale(10),
            },
            Case {
                rule: "never below the HPA's min",
                inputs: with(|i| i.hpa = hpa(3, 10, vec![CpuTarget::Utilization(50)])),
                share: 10,
                needed: Some(3),
                decision: Scale(3),
            },
            Case {
                rule: "an average-value target needs no CPU request",
                inputs: with(|i| {
                    i.cpu_request = None;
                    i.hpa = hpa(1, 10, vec![CpuTarget::AverageMillis(25)]);
                }),
                share: 50,
                needed: Some(2),
                decision: Scale(2),
            },
            Case {
                rule: "several targets: the one needing most replicas",
                inputs: with(|i| {
                    i.hpa = hpa(
                        1,
                        10,
                        vec![CpuTarget::Utilization(50), CpuTarget::AverageMillis(20)],
                    )
                }),
                share: 100,
                needed: Some(5),
                decision: Scale(5),
            },
            Case {
                rule: "no HPA on the canary: its replicas are the user's",
                inputs: with(|i| i.hpa = None),
                share: 100,
                needed: None,
                decision: Shift,
            },
            Case {
                rule: "no traffic: nothing to estimate",
                inputs: with(|i| i.rate = Some(0.0)),
                share: 100,
                needed: None,
                decision: Shift,
            },
            Case {
                rule: "the rate not measured yet: wait for it",
                inputs: with(|i| i.rate = None),
                share: 100,
                needed: None,
                decision: Wait,
            },
            Case {
                rule: "no CPU measured on the stable: nothing to estimate",
                inputs: with(|i| i.cpu_per_request = None),
                share: 100,
                needed: None,
                decision: Shift,
            },
            Case {
                rule: "a utilization target without a CPU request: nothing to estimate",
                inputs: with(|i| i.cpu_request = None),
                share: 100,
                needed: None,
                decision: Shift,
            },
        ];
        for c in cases {
            let got = replicas_for_share(&c.inputs, c.share);
            assert_eq!(
                (got.needed, &got.decision),
                (c.needed, &c.decision),
                "{}: {}",
                c.rule,
                got.reason
            );
            assert_eq!(got.share, c.share, "{}", c.rule);
        }
    }
}

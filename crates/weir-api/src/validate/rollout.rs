//! What makes a Rollout unusable on its own (its references to other
//! objects are checked in `analyze`): steps that are not exactly one
//! thing, weights outside 0–100, durations that do not parse, analysis
//! goals outside their ranges.

use crate::duration;
use crate::path::FieldPath;
use crate::rollout::RolloutSpec;
use crate::validate::Findings;

/// Checks one Rollout's spec.
pub fn rollout(spec: &RolloutSpec, out: &mut Findings) {
    let at = FieldPath::root().key("spec");
    if spec.virtual_service.is_empty() {
        out.error(&at.key("virtualService"), "Required value");
    }
    for (field, value) in [("stable", &spec.stable), ("canary", &spec.canary)] {
        if value.is_empty() {
            out.error(&at.key(field), "Required value: a subset name");
        }
    }
    if !spec.stable.is_empty() && spec.stable == spec.canary {
        out.error(
            &at.key("canary"),
            format!(
                "Invalid value: {:?}: the canary must be another subset than the stable",
                spec.canary
            ),
        );
    }
    if let Some(weir_route) = &spec.route
        && let k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) = weir_route
        && *i < 0
    {
        out.error(
            &at.key("route"),
            format!("Invalid value: {i}: a rule index cannot be negative"),
        );
    }
    if spec.steps.is_empty() {
        out.error(&at.key("steps"), "Required value: at least one step");
    }
    for (i, step) in spec.steps.iter().enumerate() {
        let here = at.key("steps").index(i);
        let set = [
            step.set_weight.is_some(),
            step.analysis.is_some(),
            step.pause.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set != 1 {
            out.error(
                &here,
                "a step is exactly one of setWeight, analysis or pause",
            );
            continue;
        }
        if let Some(w) = step.set_weight
            && !(0..=100).contains(&w)
        {
            out.error(
                &here.key("setWeight"),
                format!("Invalid value: {w}: a weight is from 0 to 100"),
            );
        }
        if let Some(pause) = &step.pause
            && let Some(d) = &pause.duration
        {
            positive_duration(d, &here.key("pause").key("duration"), out);
        }
        if step.analysis.is_some() && spec.analysis.is_none() {
            out.error(
                &here.key("analysis"),
                "an analysis step needs spec.analysis (what to judge the canary by)",
            );
        }
    }
    if let Some(d) = &spec.progress_deadline {
        positive_duration(d, &at.key("progressDeadline"), out);
    }
    if let Some(t) = &spec.traffic
        && !(t.rate > 0.0 && t.rate <= 10_000.0)
    {
        out.error(
            &at.key("traffic").key("rate"),
            format!(
                "Invalid value: {}: requests per second, above 0 and at most 10000",
                t.rate
            ),
        );
    }
    let Some(a) = &spec.analysis else { return };
    let at = at.key("analysis");
    if let Some(d) = &a.interval {
        positive_duration(d, &at.key("interval"), out);
    }
    if let Some(c) = a.confidence
        && !(0.5..1.0).contains(&c)
    {
        out.error(
            &at.key("confidence"),
            format!("Invalid value: {c}: a confidence is at least 0.5 and below 1"),
        );
    }
    if a.success_rate.is_none() && a.latency.is_none() {
        out.error(
            &at,
            "Required value: successRate and/or latency (what to judge the canary by)",
        );
    }
    if let Some(s) = &a.success_rate {
        let at = at.key("successRate");
        if s.min.is_none() && s.max_drop_from_stable.is_none() {
            out.error(&at, "Required value: min and/or maxDropFromStable");
        }
        for (field, value) in [
            ("min", s.min),
            ("maxDropFromStable", s.max_drop_from_stable),
        ] {
            if let Some(v) = value
                && !(0.0..=100.0).contains(&v)
            {
                out.error(
                    &at.key(field),
                    format!("Invalid value: {v}: a percentage from 0 to 100"),
                );
            }
        }
    }
    if let Some(l) = &a.latency {
        let at = at.key("latency");
        if !(l.percentile > 0.0 && l.percentile < 100.0) {
            out.error(
                &at.key("percentile"),
                format!(
                    "Invalid value: {}: a percentile above 0 and below 100",
                    l.percentile
                ),
            );
        }
        if l.max_ms.is_none() && l.max_ratio_to_stable.is_none() {
            out.error(&at, "Required value: maxMs and/or maxRatioToStable");
        }
        for (field, value) in [
            ("maxMs", l.max_ms),
            ("maxRatioToStable", l.max_ratio_to_stable),
        ] {
            if let Some(v) = value
                && !(v > 0.0 && v.is_finite())
            {
                out.error(
                    &at.key(field),
                    format!("Invalid value: {v}: must be above 0"),
                );
            }
        }
    }
}

fn positive_duration(text: &str, field: &FieldPath, out: &mut Findings) {
    match duration::parse(text) {
        Ok(d) if !d.is_zero() => {}
        Ok(_) => out.error(
            field,
            format!("Invalid value: {text:?}: must be longer than 0"),
        ),
        Err(e) => out.error(field, format!("Invalid value: {text:?}: {e}")),
    }
}

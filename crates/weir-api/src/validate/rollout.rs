//! What makes a Rollout unusable on its own (its references to other
//! objects are checked in `analyze`): steps that are not exactly one
//! thing, weights outside 0–100, durations that do not parse, analysis
//! goals outside their ranges — and the traps: specs that load but can
//! never Pass a good canary or that misfire (`min: 100`, a drop of 0, a
//! ratio or bound finer than the latency histogram resolves, a gate where
//! the canary gets no traffic, a relative gate where the stable gets none,
//! a timed pause longer than the deadline, an interval below what the
//! counters resolve or not shorter than the deadline).

use std::time::Duration;

use crate::duration;
use crate::path::FieldPath;
use crate::rollout::{
    AnalysisSpec, LatencyGoal, RolloutSpec, StepKind, SuccessRateGoal, defaults, latency_resolution,
};
use crate::validate::Findings;
use crate::version_stats::BucketEdges;

/// The shortest `analysis.interval`: the embedded runtime reads the
/// gateway's counters on its pass, and a window shorter than a second
/// holds too few requests to mean anything.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

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
    workload(spec, &at, out);
    webhooks(spec, &at, out);
    steps(spec, &at, out);
    if let Some(d) = &spec.progress_deadline {
        positive_duration(d, &at.key("progressDeadline"), out);
    }
    traps(spec, &at, out);
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
    if let Some(a) = &spec.analysis {
        analysis(a, &at.key("analysis"), out);
    }
}

/// Each webhook: a unique name, an `http://` URL with a host (weir
/// speaks no TLS to hooks), a timeout that parses.
fn webhooks(spec: &RolloutSpec, at: &FieldPath, out: &mut Findings) {
    for (i, hook) in spec.webhooks.iter().enumerate() {
        let here = at.key("webhooks").index(i);
        if hook.name.is_empty() {
            out.error(&here.key("name"), "Required value");
        } else if spec.webhooks[..i].iter().any(|h| h.name == hook.name) {
            out.error(
                &here.key("name"),
                format!("Duplicate value: {:?}", hook.name),
            );
        }
        let host = hook
            .url
            .strip_prefix("http://")
            .map(|rest| rest.split(['/', '?']).next().unwrap_or_default());
        match host {
            Some(h)
                if !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c))
                    && !hook.url.contains(char::is_whitespace) => {}
            _ => out.error(
                &here.key("url"),
                format!(
                    "Invalid value: {:?}: an http:// URL with a host (https is not supported for hooks)",
                    hook.url
                ),
            ),
        }
        if let Some(t) = &hook.timeout {
            positive_duration(t, &here.key("timeout"), out);
        }
    }
}

/// `workloadRef` names a Deployment (the one kind a Rollout releases);
/// `scaleDownDelay` means something only with it.
fn workload(spec: &RolloutSpec, at: &FieldPath, out: &mut Findings) {
    let Some(w) = &spec.workload_ref else {
        if spec.scale_down_delay.is_some() {
            out.error(
                &at.key("scaleDownDelay"),
                "Forbidden: only with workloadRef: without it the stable runs as the user's own Deployment",
            );
        }
        return;
    };
    let here = at.key("workloadRef");
    if w.kind != "Deployment" {
        out.error(
            &here.key("kind"),
            format!(
                "Unsupported value: {:?}: supported values: \"Deployment\"",
                w.kind
            ),
        );
    }
    if let Some(v) = &w.api_version
        && v != "apps/v1"
    {
        out.error(
            &here.key("apiVersion"),
            format!("Unsupported value: {v:?}: supported values: \"apps/v1\""),
        );
    }
    if w.name.is_empty() {
        out.error(&here.key("name"), "Required value");
    }
    if let Some(d) = &spec.scale_down_delay {
        match duration::parse(d) {
            Ok(_) => {}
            Err(e) => out.error(
                &at.key("scaleDownDelay"),
                format!("Invalid value: {d:?}: {e}"),
            ),
        }
    }
}

/// Each step is exactly one thing, with a weight from 0 to 100, a
/// duration that parses, and an analysis it can run.
fn steps(spec: &RolloutSpec, at: &FieldPath, out: &mut Findings) {
    if spec.steps.is_empty() {
        out.error(&at.key("steps"), "Required value: at least one step");
    }
    for (i, step) in spec.steps.iter().enumerate() {
        let here = at.key("steps").index(i);
        if step.fields_set() != 1 {
            out.error(
                &here,
                "a step is exactly one of setWeight, analysis, pause, setHeaderRoute or setMirror",
            );
            continue;
        }
        if let Some(m) = &step.set_mirror
            && !(0..=100).contains(&m.percentage)
        {
            out.error(
                &here.key("setMirror").key("percentage"),
                format!(
                    "Invalid value: {}: a percentage is from 0 to 100",
                    m.percentage
                ),
            );
        }
        if step.set_header_route.is_some()
            && matches!(
                spec.route,
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(_))
            )
        {
            out.error(
                &here.key("setHeaderRoute"),
                "a header route is a rule added before the Rollout's: name its rule in spec.route (or leave spec.route out), not its index, which the added rule would shift",
            );
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
}

/// `spec.analysis` (at `at`): its interval, confidence, and goals.
fn analysis(a: &AnalysisSpec, at: &FieldPath, out: &mut Findings) {
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
            at,
            "Required value: successRate and/or latency (what to judge the canary by)",
        );
    }
    if let Some(s) = &a.success_rate {
        success_rate(s, &at.key("successRate"), out);
    }
    if let Some(l) = &a.latency {
        latency(l, &at.key("latency"), out);
    }
}

/// A success-rate goal (at `at`): a least share, a largest drop, neither
/// of which can make a good canary fail forever.
fn success_rate(s: &SuccessRateGoal, at: &FieldPath, out: &mut Findings) {
    if s.min.is_none() && s.max_drop_from_stable.is_none() {
        out.error(at, "Required value: min and/or maxDropFromStable");
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
    match s.min {
        Some(v) if v == 100.0 => out.error(
            &at.key("min"),
            format!(
                "Invalid value: {v}: no number of requests shows a canary answers every one (the next may fail), so it could never Pass; use at most 99.99"
            ),
        ),
        Some(v) if v <= 0.0 => out.error(
            &at.key("min"),
            format!("Invalid value: {v}: a least share above 0"),
        ),
        _ => {}
    }
    if s.max_drop_from_stable == Some(0.0) {
        out.error(
            &at.key("maxDropFromStable"),
            "Invalid value: 0: a canary exactly as good as the stable can never be shown no worse than it, so it could never Pass; allow a drop above 0 (e.g. 0.1)",
        );
    }
}

/// A latency goal (at `at`): a percentile, a bound or a ratio the
/// histogram resolves.
fn latency(l: &LatencyGoal, at: &FieldPath, out: &mut Findings) {
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
        out.error(at, "Required value: maxMs and/or maxRatioToStable");
    }
    let mut positive = true;
    for (field, value) in [
        ("maxMs", l.max_ms),
        ("maxRatioToStable", l.max_ratio_to_stable),
    ] {
        if let Some(v) = value
            && !(v > 0.0 && v.is_finite())
        {
            positive = false;
            out.error(
                &at.key(field),
                format!("Invalid value: {v}: must be above 0"),
            );
        }
    }
    if positive && let Some((field, why)) = latency_resolution(l, &BucketEdges::Fine) {
        out.error(&at.key(field), why);
    }
}

/// The traps across fields: each step's planned canary weight against
/// its kind and the goals, pauses and the interval against the deadline.
fn traps(spec: &RolloutSpec, at: &FieldPath, out: &mut Findings) {
    let deadline = spec
        .progress_deadline
        .as_deref()
        .and_then(|d| duration::parse(d).ok())
        .unwrap_or(defaults::PROGRESS_DEADLINE);
    let relative = spec.analysis.as_ref().is_some_and(|a| {
        a.success_rate
            .as_ref()
            .is_some_and(|s| s.max_drop_from_stable.is_some())
            || a.latency
                .as_ref()
                .is_some_and(|l| l.max_ratio_to_stable.is_some())
    });
    // The weight before the first setWeight is whatever was served.
    let mut weight: Option<u32> = None;
    // A header route or a mirror gives the canary traffic at weight 0.
    let (mut header_route, mut mirror) = (false, false);
    for (i, step) in spec.steps.iter().enumerate() {
        let here = at.key("steps").index(i);
        match step.kind() {
            Some(StepKind::SetWeight(w)) => weight = Some(w),
            Some(StepKind::SetHeaderRoute(on)) => header_route = on,
            Some(StepKind::SetMirror(p)) => mirror = p > 0,
            Some(StepKind::Analysis) if weight == Some(0) && !header_route && !mirror => out.error(
                &here.key("analysis"),
                "an analysis step at canary weight 0 could never conclude: the canary gets no traffic to judge (set a weight above 0 first)",
            ),
            Some(StepKind::Analysis) if weight == Some(100) && relative => out.error(
                &here.key("analysis"),
                "an analysis step at canary weight 100 could never conclude on maxDropFromStable or maxRatioToStable: the stable gets no traffic to compare with",
            ),
            Some(StepKind::Pause(Some(d))) if d > deadline => out.error(
                &here.key("pause").key("duration"),
                format!(
                    "Invalid value: {:?}: longer than progressDeadline ({}); lengthen the deadline, or use pause: {{}} and promote",
                    step.pause
                        .as_ref()
                        .and_then(|p| p.duration.clone())
                        .unwrap_or_default(),
                    humantime_like(deadline)
                ),
            ),
            _ => {}
        }
    }
    if let Some(a) = &spec.analysis
        && let Some(text) = &a.interval
        && let Ok(interval) = duration::parse(text)
        && !interval.is_zero()
    {
        let field = at.key("analysis").key("interval");
        if interval < MIN_INTERVAL {
            out.error(
                &field,
                format!(
                    "Invalid value: {text:?}: at least 1s: the gateway's counters are read once a pass, and a shorter window says nothing"
                ),
            );
        } else if interval >= deadline {
            out.error(
                &field,
                format!(
                    "Invalid value: {text:?}: not shorter than progressDeadline ({}): the canary would never be judged in time",
                    humantime_like(deadline)
                ),
            );
        }
    }
}

/// A duration as the manifests write it (`10m`, `90s`).
fn humantime_like(d: Duration) -> String {
    let secs = d.as_secs();
    if secs.is_multiple_of(3600) && secs > 0 {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) && secs > 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
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

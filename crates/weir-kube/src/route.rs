//! `weir route` on a cluster: a JSON patch that changes only the chosen
//! rule's weights, then confirmation that the data plane serves them —
//! Istio's `Reconciled` condition where istiod reports it, otherwise
//! requests sampled through the ingress gateway — within a bounded wait.

use std::time::Duration;

use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};
use weir_api::backend::{BackendError, RuleSelector};
use weir_api::istio::VirtualServiceSpec;
use weir_api::resource::ObjectRef;
use weir_api::route::{WeightChange, reweigh};
use weir_load::classify::{Classifier, belongs};
use weir_load::generator::LoadOptions;

use crate::backend::KubeBackend;

/// How `weir route` confirms a change on a cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfirmOptions {
    /// The longest wait for confirmation.
    pub timeout: Duration,
    /// Requests per sample when confirming by sampling.
    pub sample: u64,
    /// The gateway to sample through; found from the ingress Service when absent.
    pub gateway_url: Option<String>,
}

impl Default for ConfirmOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            sample: 200,
            gateway_url: None,
        }
    }
}

/// The JSON patch (RFC 6902) for a weight change: for every destination of
/// the rule a `test` that it is still the one named (so a concurrent
/// reordering fails the patch instead of moving weights), and an `add` of
/// the new weight where it changed. Nothing else is touched.
pub fn weight_patch(
    current: &DynamicObject,
    rule: &RuleSelector,
    weights: &[(String, u32)],
) -> Result<(json_patch::Patch, WeightChange), String> {
    let spec_json = current.data.get("spec").cloned().unwrap_or(Value::Null);
    let original: VirtualServiceSpec =
        serde_json::from_value(spec_json).map_err(|e| format!("its spec cannot be read: {e}"))?;
    let mut spec = original.clone();
    let change = reweigh(&mut spec, rule, weights)?;
    let i = change.rule_index;
    let destinations = original.http[i].route.clone().unwrap_or_default();
    let mut ops = Vec::new();
    for (j, (d, ((_, old), (_, new)))) in destinations
        .iter()
        .zip(change.before.iter().zip(&change.after))
        .enumerate()
    {
        let base = format!("/spec/http/{i}/route/{j}/destination");
        match &d.destination.subset {
            Some(subset) => {
                ops.push(json!({"op": "test", "path": format!("{base}/subset"), "value": subset}))
            }
            None => ops.push(
                json!({"op": "test", "path": format!("{base}/host"), "value": d.destination.host}),
            ),
        }
        if old != new || d.weight.is_none() {
            ops.push(json!({"op": "add", "path": format!("/spec/http/{i}/route/{j}/weight"), "value": new}));
        }
    }
    let patch = serde_json::from_value(Value::Array(ops)).map_err(|e| e.to_string())?;
    Ok((patch, change))
}

/// Istio's `Reconciled` condition: `Some(true)` once it is `True` for this
/// generation (or later), `Some(false)` while not, `None` when istiod
/// writes no such condition (status reporting is off, its default).
pub fn reconciled(object: &Value, generation: i64) -> Option<bool> {
    let status = &object["status"];
    let condition = status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Reconciled")?;
    let as_int = |v: &Value| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let observed =
        as_int(&condition["observedGeneration"]).or_else(|| as_int(&status["observedGeneration"]));
    Some(condition["status"] == "True" && observed.is_some_and(|g| g >= generation))
}

/// Whether a sample shows the new weights: a destination at 0 % or 100 %
/// must get exactly none or all of the requests; any other share must be
/// within `tolerance(share, n)` of its weight. Requests that no
/// destination claims (errors, other versions) fail the sample.
pub fn sample_matches(after: &[(String, u32)], versions: &[(String, u64)], other: u64) -> bool {
    let total: u32 = after.iter().map(|(_, w)| w).sum();
    let counts: Vec<u64> = after
        .iter()
        .map(|(name, _)| {
            versions
                .iter()
                .filter(|(v, _)| belongs(v, name))
                .map(|(_, c)| c)
                .sum()
        })
        .collect();
    let n: u64 = counts.iter().sum::<u64>() + other;
    if n == 0 || other > 0 || total == 0 {
        return false;
    }
    after.iter().zip(&counts).all(|((_, w), &c)| {
        let want = f64::from(*w) / f64::from(total);
        let got = c as f64 / n as f64;
        if *w == 0 || *w == total {
            got == want
        } else {
            (got - want).abs() <= tolerance(want, n)
        }
    })
}

/// The allowed deviation of an observed share from its target: 3.29
/// standard errors (a two-sided 99.9 % band) but at least 5 points.
pub fn tolerance(share: f64, n: u64) -> f64 {
    (3.29 * (share * (1.0 - share) / n as f64).sqrt()).max(0.05)
}

/// Waits until the data plane serves `change`; says how it knows.
pub async fn confirm(
    backend: &KubeBackend,
    api: &Api<DynamicObject>,
    vs: &ObjectRef,
    patched: &DynamicObject,
    change: &WeightChange,
    options: &ConfirmOptions,
) -> Result<String, BackendError> {
    let started = tokio::time::Instant::now();
    let generation = patched.metadata.generation.unwrap_or(0);
    let as_json = |o: &DynamicObject| serde_json::to_value(o).unwrap_or_default();
    if reconciled(&as_json(patched), generation).is_some() {
        loop {
            let now = backend
                .timed(Some(vs), &format!("get {vs}"), api.get(&vs.name))
                .await?;
            let value = as_json(&now);
            if reconciled(&value, generation) == Some(true) {
                return Ok(format!(
                    "Istio's Reconciled condition is True for generation {generation}"
                ));
            }
            if started.elapsed() >= options.timeout {
                let message = value["status"]["conditions"][0]["message"]
                    .as_str()
                    .unwrap_or("no message")
                    .to_owned();
                return Err(BackendError::Timeout(
                    options.timeout,
                    format!(
                        "{vs} was changed, but Istio does not report it Reconciled yet ({message}); it may still be propagating"
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let url = match &options.gateway_url {
        Some(url) => url.clone(),
        None => backend.ingress_url().await?.url,
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e| BackendError::Invalid(vec![format!("gateway URL {url:?}: {e}")]))?;
    let mut matched_in_a_row = 0;
    loop {
        let load = LoadOptions {
            url: uri.clone(),
            connections: 4,
            duration: Some(Duration::from_secs(10)),
            requests: Some(options.sample),
            rate: None,
            users: None,
            http2: false,
            classifier: Classifier::default(),
            timeout: Duration::from_secs(5),
        };
        let report = weir_load::generator::run(load, Default::default())
            .await
            .map_err(|e| BackendError::Failed(format!("sampling through {url}: {e}")))?;
        let versions: Vec<(String, u64)> = report.versions.clone().into_iter().collect();
        let claimed: u64 = versions
            .iter()
            .filter(|(v, _)| change.after.iter().any(|(name, _)| belongs(v, name)))
            .map(|(_, c)| c)
            .sum();
        let other = (report.requests + report.errors).saturating_sub(claimed);
        let mut last = versions
            .iter()
            .map(|(v, c)| format!("{v}={c}"))
            .collect::<Vec<_>>()
            .join(" ");
        if other > 0 {
            last.push_str(&format!(" other={other}"));
        }
        if sample_matches(&change.after, &versions, other) {
            matched_in_a_row += 1;
            if matched_in_a_row == 2 {
                return Ok(format!(
                    "sampled through the ingress gateway at {url}: 2 samples of {} requests in a row matched the new weights (0 and 100 exactly, others within max(5 points, 3.29 standard errors))",
                    options.sample
                ));
            }
        } else {
            matched_in_a_row = 0;
        }
        if started.elapsed() >= options.timeout {
            return Err(BackendError::Timeout(
                options.timeout,
                format!(
                    "{vs} was changed, but the ingress gateway at {url} does not serve the new weights yet (last sample: {last})"
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
        pairs.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()
    }
    fn v(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
        pairs.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
    }

    #[test]
    fn zero_and_hundred_are_exact() {
        let after = w(&[("v1", 0), ("v2", 100)]);
        assert!(sample_matches(&after, &v(&[("v2.0.0", 200)]), 0));
        assert!(!sample_matches(
            &after,
            &v(&[("v1.0.0", 1), ("v2.0.0", 199)]),
            0
        ));
        assert!(
            !sample_matches(&after, &v(&[("v2.0.0", 199)]), 1),
            "errors fail the sample"
        );
        assert!(!sample_matches(&after, &[], 0), "no answers prove nothing");
    }

    #[test]
    fn other_shares_within_the_stated_tolerance() {
        let after = w(&[("v1", 50), ("v2", 50)]);
        assert!(sample_matches(
            &after,
            &v(&[("v1.0.0", 110), ("v2.0.0", 90)]),
            0
        ));
        assert!(!sample_matches(
            &after,
            &v(&[("v1.0.0", 180), ("v2.0.0", 20)]),
            0
        ));
        assert!((tolerance(0.5, 200) - 0.1163).abs() < 1e-3);
        assert_eq!(tolerance(0.1, 100_000), 0.05);
    }

    #[test]
    fn reconciled_follows_the_generation() {
        let on = json!({"status": {"observedGeneration": "4", "conditions": [{"type": "Reconciled", "status": "True"}]}});
        assert_eq!(reconciled(&on, 4), Some(true));
        assert_eq!(
            reconciled(&on, 5),
            Some(false),
            "an older generation is not this change"
        );
        let propagating = json!({"status": {"conditions": [{"type": "Reconciled", "status": "False", "observedGeneration": 5, "message": "61/122 complete"}]}});
        assert_eq!(reconciled(&propagating, 5), Some(false));
        assert_eq!(reconciled(&json!({"status": {}}), 1), None);
        assert_eq!(reconciled(&json!({}), 1), None);
    }

    #[test]
    fn the_patch_tests_each_destination_and_adds_changed_weights() {
        let vs: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "my-app", "namespace": "default"},
            "spec": {"hosts": ["*"], "gateways": ["my-app"], "http": [{"route": [
                {"destination": {"host": "my-app", "subset": "v1"}, "weight": 90},
                {"destination": {"host": "my-app", "subset": "v2"}, "weight": 10}
            ]}]}
        }))
        .unwrap();
        let (patch, change) =
            weight_patch(&vs, &RuleSelector::Default, &w(&[("v1", 0), ("v2", 100)])).unwrap();
        assert_eq!(change.after, w(&[("v1", 0), ("v2", 100)]));
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!([
                {"op": "test", "path": "/spec/http/0/route/0/destination/subset", "value": "v1"},
                {"op": "add", "path": "/spec/http/0/route/0/weight", "value": 0},
                {"op": "test", "path": "/spec/http/0/route/1/destination/subset", "value": "v2"},
                {"op": "add", "path": "/spec/http/0/route/1/weight", "value": 100}
            ])
        );
        let err = weight_patch(&vs, &RuleSelector::Default, &w(&[("v3", 1)])).unwrap_err();
        assert!(err.contains("no destination \"v3\""), "{err}");
    }
}

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
use weir_load::classify::Classifier;
use weir_load::generator::LoadOptions;
use weir_load::split::{SplitCounts, sample_matches};

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
    /// The Host the samples carry (a VirtualService's host), else the URL's.
    pub host: Option<http::HeaderValue>,
    /// Headers every sample carries (to match a rule's header match).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Default for ConfirmOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            sample: 200,
            gateway_url: None,
            host: None,
            headers: Vec::new(),
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
            host: options.host.clone(),
            headers: options.headers.clone(),
        };
        let report = weir_load::generator::run(load, Default::default())
            .await
            .map_err(|e| BackendError::Failed(format!("sampling through {url}: {e}")))?;
        let names: Vec<&str> = change.after.iter().map(|(n, _)| n.as_str()).collect();
        let weights: Vec<u32> = change.after.iter().map(|(_, w)| *w).collect();
        let sample = SplitCounts::of_report(&names, &report);
        let mut last = report
            .versions
            .iter()
            .map(|(v, c)| format!("{v}={c}"))
            .collect::<Vec<_>>()
            .join(" ");
        if sample.other > 0 {
            last.push_str(&format!(" other={}", sample.other));
        }
        if sample_matches(&weights, &sample) {
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

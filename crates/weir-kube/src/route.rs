//! `weir route` on a cluster: a JSON patch that changes only the chosen
//! rule's weights, then confirmation that the data plane serves them —
//! from each ingress gateway replica's own Envoy routes where they can be
//! read ([`crate::proxy_config`]), otherwise requests sampled through the
//! gateway — within a bounded wait. (Istio's `Reconciled` status condition
//! is not used: Istio 1.23 no longer writes it.)

use std::time::Duration;

use kube::api::DynamicObject;
use serde_json::{Value, json};
use weir_api::backend::{BackendError, RuleSelector};
use weir_api::istio::{HttpRoute, VirtualServiceSpec};
use weir_api::resource::ObjectRef;
use weir_api::route::{WeightChange, reweigh};
use weir_load::classify::Classifier;
use weir_load::generator::LoadOptions;
use weir_load::split::{SplitCounts, sample_matches};

use crate::proxy_config::{ENVOY_ADMIN_PORT, ProxyView, ROUTES_DUMP_PATH, rule_view};

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
/// the rule a `test` that it is still the one named and still has the
/// weight weir read (so a concurrent reordering or weight change fails the
/// patch — the API server answers 422 and nothing is lost — instead of
/// being overwritten), and an `add` of the new weight where it changed.
/// Nothing else is touched.
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
        if let Some(weight) = d.weight {
            ops.push(json!({"op": "test", "path": format!("/spec/http/{i}/route/{j}/weight"), "value": weight}));
        }
        if old != new || d.weight.is_none() {
            ops.push(json!({"op": "add", "path": format!("/spec/http/{i}/route/{j}/weight"), "value": new}));
        }
    }
    let patch = serde_json::from_value(Value::Array(ops)).map_err(|e| e.to_string())?;
    Ok((patch, change))
}

/// What confirming a route change needs of the cluster: the ingress
/// gateway's pods, a JSON page from one pod's port (its Envoy admin API),
/// and the gateway's URL. The backend provides it (`KubeBackend`), so this
/// module does not import the backend that uses it.
pub(crate) trait GatewayAccess {
    /// The gateway's pods, as the API returns them.
    async fn gateway_pods(&self) -> Result<Vec<Value>, BackendError>;
    /// `path` on `port` of pod `namespace/name`, as JSON; why not.
    async fn pod_page(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
        path: &str,
    ) -> Result<Value, String>;
    /// Where requests reach the gateway.
    async fn gateway_address(&self) -> Result<String, BackendError>;
}

/// Waits until the data plane serves `change`; says how it knows: from
/// every gateway replica's own Envoy configuration when it can be read,
/// else by sampling requests through the gateway.
pub(crate) async fn confirm(
    backend: &impl GatewayAccess,
    vs: &ObjectRef,
    patched: &DynamicObject,
    change: &WeightChange,
    options: &ConfirmOptions,
) -> Result<String, BackendError> {
    let started = tokio::time::Instant::now();
    let rules: Vec<HttpRoute> = patched
        .data
        .get("spec")
        .and_then(|s| s.get("http"))
        .and_then(|h| serde_json::from_value(h.clone()).ok())
        .unwrap_or_default();
    let unread = match from_proxies(backend, vs, &rules, change, options, started).await? {
        Ok(confirmed) => return Ok(confirmed),
        Err(unread) => unread,
    };
    sample(backend, vs, change, options, started)
        .await
        .map(|sampled| {
            format!("{sampled} (the gateway's Envoy configuration was not read: {unread})")
        })
}

/// Polls every running gateway replica's Envoy routes until each serves
/// the change: `Ok(Ok(how))` then; `Ok(Err(why))` when some replica's
/// configuration cannot be read or the rule cannot be found in it (the
/// caller samples instead); `Err` when the wait runs out.
async fn from_proxies(
    backend: &impl GatewayAccess,
    vs: &ObjectRef,
    rules: &[HttpRoute],
    change: &WeightChange,
    options: &ConfirmOptions,
    started: tokio::time::Instant,
) -> Result<Result<String, String>, BackendError> {
    let pods = match backend.gateway_pods().await {
        Ok(pods) => pods,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut waiting: Vec<(String, String)> = pods
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .filter_map(|p| {
            let meta = &p["metadata"];
            Some((
                meta["namespace"].as_str()?.to_owned(),
                meta["name"].as_str()?.to_owned(),
            ))
        })
        .collect();
    if waiting.is_empty() {
        return Ok(Err("no running pod of the ingress gateway".to_owned()));
    }
    let replicas = waiting.clone();
    loop {
        let mut still = Vec::new();
        let mut last = String::new();
        for (namespace, pod) in waiting {
            let dump = match backend
                .pod_page(&namespace, &pod, ENVOY_ADMIN_PORT, ROUTES_DUMP_PATH)
                .await
            {
                Ok(dump) => dump,
                Err(why) => return Ok(Err(why)),
            };
            match rule_view(&dump, vs, rules, change.rule_index, &change.after) {
                ProxyView::Serves => {}
                ProxyView::Stale(has) => {
                    last = format!("{pod} routes {has}");
                    still.push((namespace, pod));
                }
                ProxyView::Unlocated(why) => return Ok(Err(format!("{pod}: {why}"))),
            }
        }
        if still.is_empty() {
            return Ok(Ok(format!(
                "read from the ingress gateway's Envoy configuration: {} of {} replicas ({}) route rule {} with the new weights",
                replicas.len(),
                replicas.len(),
                replicas
                    .iter()
                    .map(|(_, pod)| pod.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                change.rule_index
            )));
        }
        if started.elapsed() >= options.timeout {
            return Err(BackendError::Timeout(
                options.timeout,
                format!(
                    "{vs} was changed, but {} of {} ingress gateway replicas do not route the new weights yet ({last})",
                    still.len(),
                    replicas.len()
                ),
            ));
        }
        waiting = still;
        // A proxy's admin API has no change notification; istioctl polls too.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Samples requests through the gateway until two samples in a row match
/// the new weights.
async fn sample(
    backend: &impl GatewayAccess,
    vs: &ObjectRef,
    change: &WeightChange,
    options: &ConfirmOptions,
    started: tokio::time::Instant,
) -> Result<String, BackendError> {
    let url = match &options.gateway_url {
        Some(url) => url.clone(),
        None => backend.gateway_address().await?,
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
    fn the_patch_tests_each_destination_and_its_weight_and_adds_changed_weights() {
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
                {"op": "test", "path": "/spec/http/0/route/0/weight", "value": 90},
                {"op": "add", "path": "/spec/http/0/route/0/weight", "value": 0},
                {"op": "test", "path": "/spec/http/0/route/1/destination/subset", "value": "v2"},
                {"op": "test", "path": "/spec/http/0/route/1/weight", "value": 10},
                {"op": "add", "path": "/spec/http/0/route/1/weight", "value": 100}
            ])
        );
        let err = weight_patch(&vs, &RuleSelector::Default, &w(&[("v3", 1)])).unwrap_err();
        assert!(err.contains("no destination \"v3\""), "{err}");
    }
}

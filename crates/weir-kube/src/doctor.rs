//! `weir doctor`: whether a cluster can run the walkthrough, one check per
//! line, each failing check with the command that fixes it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use weir_api::backend::{Backend, BackendError};
use weir_api::resource::Kind;

use crate::backend::KubeBackend;
use crate::ingress::{Address, ServiceName};

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// How to fix it, when it failed.
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &str, detail: String) -> Self {
        Self {
            name: name.to_owned(),
            ok: true,
            detail,
            fix: None,
        }
    }

    fn fail(name: &str, detail: String, fix: &str) -> Self {
        Self {
            name: name.to_owned(),
            ok: false,
            detail,
            fix: Some(fix.to_owned()),
        }
    }
}

/// The Istio CRDs the walkthrough uses.
pub const ISTIO_CRDS: [&str; 3] = [
    "gateways.networking.istio.io",
    "virtualservices.networking.istio.io",
    "destinationrules.networking.istio.io",
];

type Labels = BTreeMap<String, String>;

fn labels(v: &Value) -> Labels {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// Runs every check against the namespace. An unreachable API server ends
/// the checks (the error is returned: exit 3).
pub async fn run(backend: &KubeBackend, namespace: &str) -> Result<Vec<Check>, BackendError> {
    let mut checks = Vec::new();
    let version = backend.get_json("/version").await?;
    checks.push(Check::pass(
        "API server",
        format!(
            "{} answers (Kubernetes {})",
            backend.conn.server,
            version["gitVersion"]
                .as_str()
                .unwrap_or("of unknown version")
        ),
    ));
    let istio = istio_crds(backend).await?;
    let istio_served = istio.ok;
    checks.push(istio);
    checks.push(settled("ingress gateway", ingress(backend).await)?);
    checks.push(settled(
        "metrics-server",
        metrics_server(backend, namespace).await,
    )?);
    checks.push(settled(
        "sidecar injection",
        injection(backend, namespace).await,
    )?);
    // Without Istio's CRDs there are no DestinationRules to check (and
    // listing them is a 404).
    if istio_served {
        match subsets(backend, namespace).await {
            Ok(subsets) => checks.extend(subsets),
            Err(e) => checks.push(settled("subsets", Err(e))?),
        }
    }
    Ok(checks)
}

/// A check that could not be made is a failed check in the report, not
/// the end of it; only an API server that stops answering ends the run.
fn settled(name: &str, check: Result<Check, BackendError>) -> Result<Check, BackendError> {
    match check {
        Ok(check) => Ok(check),
        Err(e @ (BackendError::Unreachable { .. } | BackendError::Timeout(..))) => Err(e),
        Err(e) => Ok(Check::fail(
            name,
            format!("could not be checked: {e}"),
            "see the message; `weir doctor` again once it is fixed",
        )),
    }
}

async fn istio_crds(backend: &KubeBackend) -> Result<Check, BackendError> {
    let mut missing = Vec::new();
    for crd in ISTIO_CRDS {
        let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}");
        let served_v1 = backend.get_json_opt(&path).await?.is_some_and(|c| {
            c["spec"]["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|v| v["name"] == "v1" && v["served"] == true)
        });
        if !served_v1 {
            missing.push(crd);
        }
    }
    Ok(if missing.is_empty() {
        Check::pass(
            "Istio CRDs",
            "networking.istio.io/v1 Gateway, VirtualService and DestinationRule are served".into(),
        )
    } else {
        Check::fail(
            "Istio CRDs",
            format!("not installed or not serving v1: {}", missing.join(", ")),
            "install Istio ≥ 1.22 (it serves networking.istio.io/v1): istioctl install --set profile=demo -y",
        )
    })
}

async fn ingress(backend: &KubeBackend) -> Result<Check, BackendError> {
    const NAME: &str = "ingress gateway";
    let addresses = match backend.ingress_addresses().await {
        Ok(a) => a,
        Err(BackendError::Failed(detail)) => {
            return Ok(Check::fail(
                NAME,
                detail,
                "istioctl install --set profile=demo -y",
            ));
        }
        Err(e) => return Err(e),
    };
    let service = backend.ingress_name().await?;
    if addresses.is_empty() {
        return Ok(Check::fail(
            NAME,
            format!("{service} has no address or no HTTP port"),
            "minikube: run `minikube tunnel` in another terminal; kind: make the Service a NodePort",
        ));
    }
    Ok(match backend.ingress_url().await {
        Ok(reached) => Check::pass(
            NAME,
            format!(
                "{service} at {} ({}){}",
                reached.url,
                reached.via,
                if addresses.len() > 1 {
                    format!(", {} address(es) in all", addresses.len())
                } else {
                    String::new()
                }
            ),
        ),
        Err(_) => {
            let tried: Vec<String> = addresses
                .iter()
                .map(|a| format!("{} ({})", a.url, a.via))
                .collect();
            Check::fail(
                NAME,
                format!(
                    "{service}: nothing accepts connections at {}",
                    tried.join(", ")
                ),
                &unreachable_fix(&service, &addresses),
            )
        }
    })
}

/// What to do when no address of the gateway accepts connections from
/// here. A NodePort that does not answer is most often kind under Docker
/// Desktop (macOS, Windows): the node's address is inside Docker's VM.
pub fn unreachable_fix(service: &ServiceName, addresses: &[Address]) -> String {
    let forward = format!(
        "`kubectl -n {} port-forward svc/{} 8080:80` and give `weir verify`/`weir load` http://127.0.0.1:8080",
        service.namespace, service.name
    );
    if addresses.iter().any(|a| a.via == "NodePort") {
        format!(
            "kind under Docker Desktop: the node's address is inside Docker's VM, not reachable from this machine — {forward}, or create the cluster with an extraPortMappings entry for the NodePort; minikube: run `minikube tunnel`"
        )
    } else {
        format!("minikube: run `minikube tunnel` in another terminal; otherwise {forward}")
    }
}

async fn metrics_server(backend: &KubeBackend, namespace: &str) -> Result<Check, BackendError> {
    const NAME: &str = "metrics-server";
    Ok(match backend.metrics_pod_cpu(namespace).await? {
        Ok(pods) => Check::pass(
            NAME,
            format!(
                "metrics.k8s.io answers ({} pods measured in {namespace})",
                pods.len()
            ),
        ),
        Err(unavailable) => Check::fail(NAME, unavailable.message(), unavailable.fix()),
    })
}

async fn injection(backend: &KubeBackend, namespace: &str) -> Result<Check, BackendError> {
    const NAME: &str = "sidecar injection";
    let fix = format!("kubectl label namespace {namespace} istio-injection=enabled");
    let Some(ns) = backend
        .get_json_opt(&format!("/api/v1/namespaces/{namespace}"))
        .await?
    else {
        return Ok(Check::fail(
            NAME,
            format!("namespace {namespace} does not exist"),
            &format!("kubectl create namespace {namespace} && {fix}"),
        ));
    };
    let labels = labels(&ns["metadata"]["labels"]);
    Ok(
        match (
            labels.get("istio-injection").map(String::as_str),
            labels.get("istio.io/rev"),
        ) {
            (Some("enabled"), _) => Check::pass(
                NAME,
                format!("namespace {namespace} has istio-injection=enabled"),
            ),
            (Some("disabled"), _) | (None, None) => Check::fail(
                NAME,
                format!(
                    "namespace {namespace} is not labelled for injection: its pods get no sidecar, so subsets and metrics do not apply"
                ),
                &fix,
            ),
            (_, Some(rev)) => Check::pass(
                NAME,
                format!("namespace {namespace} has istio.io/rev={rev}"),
            ),
            (Some(other), None) => Check::fail(
                NAME,
                format!("namespace {namespace} has istio-injection={other}"),
                &fix,
            ),
        },
    )
}

/// Each DestinationRule subset must select the pods of some Deployment
/// (Istio's IST0173 DestinationRuleSubsetNotSelectPods).
async fn subsets(backend: &KubeBackend, namespace: &str) -> Result<Vec<Check>, BackendError> {
    let rules = backend.list(Kind::DestinationRule, namespace).await?;
    let deployments = backend.list(Kind::Deployment, namespace).await?;
    let templates: Vec<(String, Labels)> = deployments
        .iter()
        .map(|d| {
            (
                d.name().to_owned(),
                labels(&d.object["spec"]["template"]["metadata"]["labels"]),
            )
        })
        .collect();
    let mut out = Vec::new();
    for rule in &rules {
        for subset in rule.object["spec"]["subsets"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = format!(
                "subset {}/{}",
                rule.name(),
                subset["name"].as_str().unwrap_or_default()
            );
            let wanted = labels(&subset["labels"]);
            let shown: Vec<String> = wanted.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let matching: Vec<&str> = templates
                .iter()
                .filter(|(_, l)| wanted.iter().all(|(k, v)| l.get(k) == Some(v)))
                .map(|(n, _)| n.as_str())
                .collect();
            out.push(if matching.is_empty() {
                Check::fail(
                    &name,
                    format!("no Deployment in {namespace} has pods labelled {}", shown.join(",")),
                    &format!("add {} to the pod template (spec.template.metadata.labels) of the Deployment this subset is for", shown.join(", ")),
                )
            } else {
                Check::pass(&name, format!("{} selects the pods of {}", shown.join(","), matching.join(", ")))
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_node_port_points_at_docker_desktop_others_at_a_tunnel() {
        let service: ServiceName = "istio-system/istio-ingressgateway".parse().unwrap();
        let at = |via: &'static str| Address {
            url: "http://172.18.0.2:30080".into(),
            via,
        };
        let node_port = unreachable_fix(&service, &[at("NodePort"), at("cluster IP")]);
        assert!(node_port.contains("Docker Desktop"), "{node_port}");
        assert!(
            node_port
                .contains("kubectl -n istio-system port-forward svc/istio-ingressgateway 8080:80"),
            "{node_port}"
        );
        let load_balancer = unreachable_fix(&service, &[at("LoadBalancer ingress")]);
        assert!(
            load_balancer.starts_with("minikube: run `minikube tunnel`"),
            "{load_balancer}"
        );
        assert!(!load_balancer.contains("Docker Desktop"), "{load_balancer}");
    }
}

//! The Istio ingress gateway of a cluster: where to send requests
//! (`weir load`, `weir verify`, route confirmation), and its Istio metrics
//! (`weir top`), read through the API server's pod proxy.

use std::time::Duration;

use serde_json::Value;
use weir_api::backend::BackendError;

use crate::backend::KubeBackend;

/// The namespace and Service name of Istio's default ingress gateway
/// (`istioctl install`), preferred when several gateways are found.
pub const INGRESS_NAMESPACE: &str = "istio-system";
/// See [`INGRESS_NAMESPACE`].
pub const INGRESS_SERVICE: &str = "istio-ingressgateway";
/// The label Istio's ingress gateways carry, whichever way they were
/// installed (`istioctl`, Helm's `gateway` chart under any release name or
/// namespace), and that the seed's Gateway selects them by.
pub const GATEWAY_SELECTOR: &str = "istio=ingressgateway";

/// A Service by namespace and name: the gateway `--gateway NS/NAME` names,
/// or one found by [`GATEWAY_SELECTOR`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceName {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for ServiceName {
    type Err = String;

    /// `NAMESPACE/NAME`, as `--gateway` takes it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(Self {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(format!(
                "--gateway {s:?}: name the gateway's Service as NAMESPACE/NAME (e.g. istio-ingress/istio-ingressgateway)"
            )),
        }
    }
}

/// Which of the Services labelled as Istio ingress gateways is the one:
/// the only one; among several, Istio's default
/// (`istio-system/istio-ingressgateway`); otherwise the user must say.
pub fn choose_gateway(found: &[ServiceName]) -> Result<ServiceName, String> {
    match found {
        [] => Err(format!(
            "no Service labelled {GATEWAY_SELECTOR} in any namespace: install Istio with its ingress gateway (`istioctl install --set profile=demo -y`), or name yours with --gateway NAMESPACE/NAME"
        )),
        [one] => Ok(one.clone()),
        several => several
            .iter()
            .find(|s| s.namespace == INGRESS_NAMESPACE && s.name == INGRESS_SERVICE)
            .cloned()
            .ok_or_else(|| {
                let names: Vec<String> = several.iter().map(ToString::to_string).collect();
                format!(
                    "{} Services are Istio ingress gateways ({}): name the one to use with --gateway NAMESPACE/NAME",
                    several.len(),
                    names.join(", ")
                )
            }),
    }
}
/// The port of an Istio proxy's merged Prometheus endpoint.
pub const PROXY_STATS_PORT: u16 = 15020;

/// One way to reach the gateway, in the order they are tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    /// `http://host:port`.
    pub url: String,
    /// Where it came from, for messages.
    pub via: &'static str,
}

/// The Service port that carries plain HTTP: named `http2` or `http` (Istio's
/// charts), else port 80, else the first.
fn http_port(service: &Value) -> Option<&Value> {
    let ports = service["spec"]["ports"].as_array()?;
    ports
        .iter()
        .find(|p| matches!(p["name"].as_str(), Some("http2" | "http")))
        .or_else(|| ports.iter().find(|p| p["port"] == 80))
        .or_else(|| ports.first())
}

fn url(host: &str, port: &Value) -> Option<String> {
    let port = port.as_u64()?;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    Some(format!("http://{host}:{port}"))
}

/// Every address of the gateway Service, most direct first: its
/// LoadBalancer ingress (what `minikube tunnel` or a cloud gives), each
/// node's address at the NodePort (kind), then its cluster IP (the seed's
/// `jsonpath={.spec.clusterIP}`, reachable from inside the cluster or
/// through a tunnel's route).
pub fn addresses(service: &Value, nodes: &[Value]) -> Vec<Address> {
    let Some(port) = http_port(service) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ingress in service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let host = ingress["ip"]
            .as_str()
            .or_else(|| ingress["hostname"].as_str());
        if let Some(url) = host.and_then(|h| url(h, &port["port"])) {
            out.push(Address {
                url,
                via: "LoadBalancer ingress",
            });
        }
    }
    if !port["nodePort"].is_null() {
        for node in nodes {
            for kind in ["ExternalIP", "InternalIP"] {
                for a in node["status"]["addresses"].as_array().into_iter().flatten() {
                    if a["type"] == kind
                        && let Some(url) = a["address"]
                            .as_str()
                            .and_then(|h| url(h, &port["nodePort"]))
                    {
                        out.push(Address {
                            url,
                            via: "NodePort",
                        });
                    }
                }
            }
        }
    }
    if let Some(ip) = service["spec"]["clusterIP"]
        .as_str()
        .filter(|ip| *ip != "None")
        && let Some(url) = url(ip, &port["port"])
    {
        out.push(Address {
            url,
            via: "cluster IP",
        });
    }
    out
}

/// Whether something accepts TCP connections at an `http://host:port` URL.
async fn accepts(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    let Some(host) = uri.host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect((host, port))
        )
        .await,
        Ok(Ok(_))
    )
}

impl KubeBackend {
    /// The gateway Service as JSON: the one `--gateway` names, else the
    /// one [`choose_gateway`] picks among those labelled
    /// [`GATEWAY_SELECTOR`] in every namespace.
    pub(crate) async fn ingress_service(&self) -> Result<Value, BackendError> {
        if let Some(named) = &self.gateway {
            return self
                .get_json_opt(&format!(
                    "/api/v1/namespaces/{}/services/{}",
                    named.namespace, named.name
                ))
                .await?
                .ok_or_else(|| {
                    BackendError::Failed(format!(
                        "there is no Service {named} (--gateway): `kubectl get services -A -l {GATEWAY_SELECTOR}` lists Istio's gateways"
                    ))
                });
        }
        let list = self
            .get_json(&format!(
                "/api/v1/services?labelSelector={GATEWAY_SELECTOR}"
            ))
            .await?;
        let services = list["items"].as_array().cloned().unwrap_or_default();
        let names: Vec<ServiceName> = services.iter().filter_map(service_name).collect();
        let chosen = choose_gateway(&names).map_err(BackendError::Failed)?;
        Ok(services
            .into_iter()
            .find(|s| service_name(s).as_ref() == Some(&chosen))
            .unwrap_or_default())
    }

    /// The gateway Service's namespace and name (for messages).
    pub async fn ingress_name(&self) -> Result<ServiceName, BackendError> {
        let service = self.ingress_service().await?;
        service_name(&service)
            .ok_or_else(|| BackendError::Failed("the gateway Service has no name".into()))
    }

    /// Every address of the gateway, without checking them.
    pub async fn ingress_addresses(&self) -> Result<Vec<Address>, BackendError> {
        let service = self.ingress_service().await?;
        let nodes = self
            .get_json("/api/v1/nodes")
            .await
            .map(|list| list["items"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default();
        Ok(addresses(&service, &nodes))
    }

    /// The first gateway address that accepts connections.
    pub async fn ingress_url(&self) -> Result<Address, BackendError> {
        let candidates = self.ingress_addresses().await?;
        for a in &candidates {
            if accepts(&a.url).await {
                return Ok(a.clone());
            }
        }
        let tried: Vec<String> = candidates
            .iter()
            .map(|a| format!("{} ({})", a.url, a.via))
            .collect();
        Err(BackendError::Unreachable {
            what: "the ingress gateway".to_owned(),
            reason: if tried.is_empty() {
                "the Service has no address and no HTTP port (run `weir doctor`)".into()
            } else {
                format!(
                    "nothing accepts connections at {} (on minikube run `minikube tunnel`; or pass the URL)",
                    tried.join(", ")
                )
            },
        })
    }

    /// The pods behind the gateway Service (by its selector, in its
    /// namespace), as JSON.
    pub async fn ingress_pods(&self) -> Result<Vec<Value>, BackendError> {
        let service = self.ingress_service().await?;
        let namespace = service["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let selector: Vec<String> = service["spec"]["selector"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        let pods = self
            .get_json(&format!(
                "/api/v1/namespaces/{namespace}/pods?labelSelector={}",
                selector.join(",")
            ))
            .await?;
        Ok(pods["items"].as_array().cloned().unwrap_or_default())
    }

    /// The Istio metrics of every gateway replica that serves, as one
    /// Prometheus text (samples of several replicas add up when read). A
    /// replica not serving (pending, without an IP, or draining) is not
    /// asked; one whose scrape fails or takes over [`REPLICA_SCRAPE`] (a pod
    /// on a dead node) is left out, so one bad replica neither fails `weir
    /// top` nor stalls it. Only when every replica fails is it an error.
    pub async fn ingress_metrics(&self) -> Result<String, BackendError> {
        let mut text = String::new();
        let mut last_error = None;
        let mut read = 0;
        for pod in self.ingress_pods().await?.iter().filter(|p| serving(p)) {
            let (Some(namespace), Some(name)) = (
                pod["metadata"]["namespace"].as_str(),
                pod["metadata"]["name"].as_str(),
            ) else {
                continue;
            };
            let path = format!(
                "/api/v1/namespaces/{namespace}/pods/{name}:{PROXY_STATS_PORT}/proxy/stats/prometheus"
            );
            match tokio::time::timeout(REPLICA_SCRAPE, self.get_text(&path)).await {
                Ok(Ok(scraped)) => {
                    text.push_str(&scraped);
                    text.push('\n');
                    read += 1;
                }
                Ok(Err(e)) => last_error = Some(e),
                Err(_) => {
                    last_error = Some(BackendError::Timeout(
                        REPLICA_SCRAPE,
                        format!("GET {path}: the gateway replica {name} did not answer"),
                    ))
                }
            }
        }
        match (read, last_error) {
            (0, Some(e)) => Err(e),
            _ => Ok(text),
        }
    }
}

/// The longest wait for one gateway replica's metrics.
pub const REPLICA_SCRAPE: Duration = Duration::from_secs(2);

/// Whether a gateway pod serves: Running, with an IP, not being deleted.
pub fn serving(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["podIP"]
            .as_str()
            .is_some_and(|ip| !ip.is_empty())
        && pod["metadata"]["deletionTimestamp"].is_null()
}

fn service_name(service: &Value) -> Option<ServiceName> {
    Some(ServiceName {
        namespace: service["metadata"]["namespace"].as_str()?.to_owned(),
        name: service["metadata"]["name"].as_str()?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn load_balancer_then_node_port_then_cluster_ip() {
        let service = json!({
            "spec": {"clusterIP": "10.96.0.10", "ports": [
                {"name": "status-port", "port": 15021, "nodePort": 31000},
                {"name": "http2", "port": 80, "nodePort": 30080}
            ]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.49.2"}, {"hostname": "gw.example"}]}}
        });
        let nodes = [json!({"status": {"addresses": [
            {"type": "Hostname", "address": "kind-control-plane"},
            {"type": "InternalIP", "address": "172.18.0.2"}
        ]}})];
        let urls: Vec<(String, &str)> = addresses(&service, &nodes)
            .into_iter()
            .map(|a| (a.url, a.via))
            .collect();
        assert_eq!(
            urls,
            vec![
                ("http://192.168.49.2:80".into(), "LoadBalancer ingress"),
                ("http://gw.example:80".into(), "LoadBalancer ingress"),
                ("http://172.18.0.2:30080".into(), "NodePort"),
                ("http://10.96.0.10:80".into(), "cluster IP"),
            ]
        );
    }

    fn names(names: &[&str]) -> Vec<ServiceName> {
        names.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn the_gateway_is_the_only_one_istios_default_among_several_or_named() {
        let cases: [(&[&str], Result<&str, &str>); 5] = [
            (&[], Err("no Service labelled istio=ingressgateway")),
            (
                &["istio-ingress/istio-ingressgateway"],
                Ok("istio-ingress/istio-ingressgateway"),
            ),
            (
                &["gw/public", "istio-system/istio-ingressgateway"],
                Ok("istio-system/istio-ingressgateway"),
            ),
            (
                &["gw/public", "gw/internal"],
                Err("name the one to use with --gateway"),
            ),
            (&["istio-system/custom"], Ok("istio-system/custom")),
        ];
        for (found, wanted) in cases {
            let got = choose_gateway(&names(found)).map(|s| s.to_string());
            match wanted {
                Ok(name) => assert_eq!(got.as_deref(), Ok(name), "{found:?}"),
                Err(part) => assert!(
                    got.as_ref().unwrap_err().contains(part),
                    "{found:?}: {got:?}"
                ),
            }
        }
        for bad in ["", "name", "/name", "ns/", "a/b/c"] {
            assert!(bad.parse::<ServiceName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_running_pods_with_an_ip_not_draining_serve() {
        let pod = |phase: &str, ip: Option<&str>, deleting: bool| {
            let mut p = json!({"metadata": {"name": "gw"}, "status": {"phase": phase}});
            if let Some(ip) = ip {
                p["status"]["podIP"] = ip.into();
            }
            if deleting {
                p["metadata"]["deletionTimestamp"] = "2026-12-07T10:00:00Z".into();
            }
            p
        };
        let cases = [
            (pod("Running", Some("10.244.0.5"), false), true),
            (pod("Running", None, false), false),
            (pod("Running", Some(""), false), false),
            (pod("Pending", None, false), false),
            (pod("Running", Some("10.244.0.5"), true), false),
            (pod("Failed", Some("10.244.0.5"), false), false),
        ];
        for (p, expected) in cases {
            assert_eq!(serving(&p), expected, "{p}");
        }
    }

    #[test]
    fn no_port_no_address() {
        assert!(addresses(&json!({"spec": {"clusterIP": "10.0.0.1"}}), &[]).is_empty());
    }
}

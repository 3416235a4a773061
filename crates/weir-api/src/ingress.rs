//! Kubernetes Ingress as weir's ingress controller reads it: the removed
//! `extensions/v1beta1` shape converted to `networking.k8s.io/v1` (as the
//! API server converted it while it served both), the rules flattened into
//! one route per host and path, and ingress-nginx's canary annotations
//! parsed into a [`Canary`].

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;

/// The apiVersions that served Ingress before `networking.k8s.io/v1`
/// (removed in Kubernetes 1.22), which weir still reads.
pub const LEGACY_API_VERSIONS: [&str; 2] = ["extensions/v1beta1", "networking.k8s.io/v1beta1"];

/// ingress-nginx's annotation prefix.
pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// The canary annotations weir's ingress controller implements (without
/// the prefix).
pub const CANARY_ANNOTATIONS: [&str; 7] = [
    "canary",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "canary-weight",
    "canary-weight-total",
];

/// An Ingress as `extensions/v1beta1` and `networking.k8s.io/v1beta1`
/// wrote it: `serviceName`/`servicePort` backends, `spec.backend`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LegacyIngress {
    /// `extensions/v1beta1` or `networking.k8s.io/v1beta1`.
    #[serde(default, rename = "apiVersion")]
    pub api_version: Option<String>,
    /// `Ingress`.
    #[serde(default)]
    pub kind: Option<String>,
    /// The object's metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The rules.
    #[serde(default)]
    pub spec: LegacySpec,
}

/// `spec` of a [`LegacyIngress`].
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacySpec {
    /// The IngressClass.
    #[serde(default)]
    pub ingress_class_name: Option<String>,
    /// Where requests no rule matches go.
    #[serde(default)]
    pub backend: Option<LegacyBackend>,
    /// Host and path rules.
    #[serde(default)]
    pub rules: Option<Vec<LegacyRule>>,
    /// TLS termination: read so it is refused by name, not as unknown.
    #[serde(default)]
    pub tls: Option<serde_json::Value>,
}

/// One host's rule of a [`LegacyIngress`].
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LegacyRule {
    /// The host; absent = every host.
    #[serde(default)]
    pub host: Option<String>,
    /// The paths.
    #[serde(default)]
    pub http: Option<LegacyHttp>,
}

/// The paths of a [`LegacyRule`].
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LegacyHttp {
    /// The paths.
    #[serde(default)]
    pub paths: Vec<LegacyPath>,
}

/// One path of a [`LegacyRule`].
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyPath {
    /// The path; absent = every path.
    #[serde(default)]
    pub path: Option<String>,
    /// `Exact`, `Prefix` or `ImplementationSpecific` (the default).
    #[serde(default)]
    pub path_type: Option<String>,
    /// Where matching requests go.
    #[serde(default)]
    pub backend: LegacyBackend,
}

/// A `serviceName`/`servicePort` backend.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyBackend {
    /// The Service.
    #[serde(default)]
    pub service_name: Option<String>,
    /// The Service port, by number or name.
    #[serde(default)]
    pub service_port: Option<IntOrString>,
    /// A resource backend: read so it is refused by name.
    #[serde(default)]
    pub resource: Option<serde_json::Value>,
}

impl LegacyBackend {
    fn into_v1(self) -> IngressBackend {
        IngressBackend {
            service: self.service_name.map(|name| IngressServiceBackend {
                name,
                port: self.service_port.map(|port| match port {
                    IntOrString::Int(number) => ServiceBackendPort {
                        number: Some(number),
                        name: None,
                    },
                    IntOrString::String(name) => ServiceBackendPort {
                        number: None,
                        name: Some(name),
                    },
                }),
            }),
            resource: None,
        }
    }
}

impl LegacyIngress {
    /// The same Ingress as `networking.k8s.io/v1`: what the API server
    /// stored and served. A path without a type becomes
    /// `ImplementationSpecific`, the old API's default.
    pub fn into_v1(self) -> Ingress {
        let rules = self.spec.rules.map(|rules| {
            rules
                .into_iter()
                .map(|rule| IngressRule {
                    host: rule.host,
                    http: rule.http.map(|http| HTTPIngressRuleValue {
                        paths: http
                            .paths
                            .into_iter()
                            .map(|p| HTTPIngressPath {
                                path: p.path,
                                path_type: p
                                    .path_type
                                    .unwrap_or_else(|| "ImplementationSpecific".to_owned()),
                                backend: p.backend.into_v1(),
                            })
                            .collect(),
                    }),
                })
                .collect()
        });
        Ingress {
            metadata: self.metadata,
            spec: Some(IngressSpec {
                default_backend: self.spec.backend.map(LegacyBackend::into_v1),
                ingress_class_name: self.spec.ingress_class_name,
                rules,
                tls: None,
            }),
            status: None,
        }
    }
}

/// How an Ingress path is compared with a request's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathType {
    /// The whole path equals it (ranked first, as nginx's `location =`).
    Exact,
    /// It is a prefix by `/`-separated elements: `/foo` matches `/foo` and
    /// `/foo/bar`, not `/foobar`.
    Prefix,
    /// ingress-nginx's meaning: a plain string prefix (`location /foo`).
    ImplementationSpecific,
}

impl PathType {
    /// Reads a `pathType`; `None` for a type Kubernetes does not define.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "Exact" => Some(PathType::Exact),
            "Prefix" => Some(PathType::Prefix),
            "ImplementationSpecific" => Some(PathType::ImplementationSpecific),
            _ => None,
        }
    }
}

/// A Service port as an Ingress backend names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendPort {
    /// By port number.
    Number(i32),
    /// By the Service port's name.
    Name(String),
}

/// One route of an Ingress: a host (or every host), a path and the Service
/// that serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressRoute {
    /// The host; `None` = every host.
    pub host: Option<String>,
    /// The path (`/` when the manifest gives none).
    pub path: String,
    /// How the path matches.
    pub path_type: PathType,
    /// The backend Service's name.
    pub service: String,
    /// The backend Service's port.
    pub port: BackendPort,
}

fn service_backend(backend: &IngressBackend) -> Option<(String, BackendPort)> {
    let service = backend.service.as_ref()?;
    let port = service.port.as_ref()?;
    let port = match (&port.number, &port.name) {
        (Some(n), _) => BackendPort::Number(*n),
        (None, Some(name)) => BackendPort::Name(name.clone()),
        (None, None) => return None,
    };
    Some((service.name.clone(), port))
}

/// Every route of an Ingress, in manifest order, then its default backend
/// as a route for every host and path (what ingress-nginx serves when no
/// rule matches). Paths whose backend is incomplete or type is unknown are
/// left out: validation has refused them already.
pub fn routes(ingress: &Ingress) -> Vec<IngressRoute> {
    let Some(spec) = &ingress.spec else {
        return Vec::new();
    };
    let mut routes = Vec::new();
    for rule in spec.rules.iter().flatten() {
        for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
            let (Some((service, port)), Some(path_type)) =
                (service_backend(&p.backend), PathType::parse(&p.path_type))
            else {
                continue;
            };
            routes.push(IngressRoute {
                host: rule.host.clone().filter(|h| !h.is_empty()),
                path: p.path.clone().unwrap_or_else(|| "/".to_owned()),
                path_type,
                service,
                port,
            });
        }
    }
    if let Some((service, port)) = spec.default_backend.as_ref().and_then(service_backend) {
        routes.push(IngressRoute {
            host: None,
            path: "/".to_owned(),
            path_type: PathType::ImplementationSpecific,
            service,
            port,
        });
    }
    routes
}

/// The Services an Ingress sends to, for `weir get ingress` and checks.
pub fn backend_services(ingress: &Ingress) -> Vec<String> {
    let mut services: Vec<String> = routes(ingress).into_iter().map(|r| r.service).collect();
    services.sort();
    services.dedup();
    services
}

/// How a header sends a request to the canary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderRule {
    /// `always` sends it to the canary, `never` away; other values fall
    /// through to the cookie and weight.
    AlwaysNever,
    /// This exact value sends it to the canary; others fall through.
    Value(String),
    /// A value this regular expression finds a match in sends it to the
    /// canary; others fall through.
    Pattern(String),
}

/// ingress-nginx's canary annotations of one Ingress, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canary {
    /// `canary-by-header` and how its value is read.
    pub header: Option<(String, HeaderRule)>,
    /// `canary-by-cookie`: the cookie whose `always`/`never` decides.
    pub cookie: Option<String>,
    /// `canary-weight`: requests out of [`Canary::total`] sent to the canary.
    pub weight: u32,
    /// The weight's denominator: `canary-weight-total`, but never below 100
    /// (ingress-nginx's balancer reads a smaller total as 100).
    pub total: u32,
}

/// A canary annotation that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadAnnotation {
    /// The annotation's full key.
    pub key: String,
    /// Why.
    pub message: String,
}

/// Reads a boolean as Go's `strconv.ParseBool` does (ingress-nginx's parser).
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The canary an Ingress declares: `None` when `canary` is absent or false
/// (the Ingress is then a main one and its other canary annotations are
/// ignored, as ingress-nginx ignores them).
pub fn canary(annotations: &BTreeMap<String, String>) -> Result<Option<Canary>, BadAnnotation> {
    let get = |name: &str| {
        annotations
            .get(&format!("{NGINX_PREFIX}{name}"))
            .map(|v| v.trim())
    };
    let bad = |name: &str, message: String| BadAnnotation {
        key: format!("{NGINX_PREFIX}{name}"),
        message,
    };
    let enabled = match get("canary") {
        None => false,
        Some(v) => parse_bool(v).ok_or_else(|| {
            bad(
                "canary",
                format!("Invalid value: {v:?}: must be \"true\" or \"false\""),
            )
        })?,
    };
    if !enabled {
        return Ok(None);
    }
    let number = |name: &str, default: u32| -> Result<u32, BadAnnotation> {
        match get(name) {
            None | Some("") => Ok(default),
            Some(v) => v.parse::<u32>().map_err(|_| {
                bad(
                    name,
                    format!("Invalid value: {v:?}: must be a whole number ≥ 0"),
                )
            }),
        }
    };
    let weight = number("canary-weight", 0)?;
    let total = number("canary-weight-total", 100)?.max(100);
    let header = match get("canary-by-header").filter(|h| !h.is_empty()) {
        None => None,
        Some(name) => {
            if !crate::validate::istio::valid_header_name(name) {
                return Err(bad(
                    "canary-by-header",
                    format!("Invalid value: {name:?}: not an HTTP header name"),
                ));
            }
            let rule = match (
                get("canary-by-header-value").filter(|v| !v.is_empty()),
                get("canary-by-header-pattern").filter(|v| !v.is_empty()),
            ) {
                (Some(value), _) => HeaderRule::Value(value.to_owned()),
                (None, Some(pattern)) => {
                    regex::Regex::new(pattern).map_err(|e| {
                        bad(
                            "canary-by-header-pattern",
                            format!("Invalid value: {pattern:?}: {e}"),
                        )
                    })?;
                    HeaderRule::Pattern(pattern.to_owned())
                }
                (None, None) => HeaderRule::AlwaysNever,
            };
            Some((name.to_ascii_lowercase(), rule))
        }
    };
    Ok(Some(Canary {
        header,
        cookie: get("canary-by-cookie")
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        weight,
        total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{NGINX_PREFIX}{k}"), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn canary_annotations_read_as_ingress_nginx_reads_them() {
        type Row<'a> = (&'a [(&'a str, &'a str)], Result<Option<Canary>, &'a str>);
        let rows: &[Row<'_>] = &[
            (&[], Ok(None)),
            (&[("canary", "false"), ("canary-weight", "10")], Ok(None)),
            (
                &[("canary", "true"), ("canary-weight", "10")],
                Ok(Some(Canary {
                    header: None,
                    cookie: None,
                    weight: 10,
                    total: 100,
                })),
            ),
            (
                &[
                    ("canary", "True"),
                    ("canary-weight", "3"),
                    ("canary-weight-total", "1000"),
                ],
                Ok(Some(Canary {
                    header: None,
                    cookie: None,
                    weight: 3,
                    total: 1000,
                })),
            ),
            // A total under 100 is read as 100 by the balancer.
            (
                &[
                    ("canary", "true"),
                    ("canary-weight", "5"),
                    ("canary-weight-total", "10"),
                ],
                Ok(Some(Canary {
                    header: None,
                    cookie: None,
                    weight: 5,
                    total: 100,
                })),
            ),
            (
                &[
                    ("canary", "true"),
                    ("canary-by-header", "X-Canary"),
                    ("canary-by-header-value", "yes"),
                    ("canary-by-header-pattern", "^y"),
                    ("canary-by-cookie", "canary"),
                ],
                Ok(Some(Canary {
                    header: Some(("x-canary".to_owned(), HeaderRule::Value("yes".to_owned()))),
                    cookie: Some("canary".to_owned()),
                    weight: 0,
                    total: 100,
                })),
            ),
            (
                &[
                    ("canary", "true"),
                    ("canary-by-header", "x-canary"),
                    ("canary-by-header-pattern", "^(y|ja)$"),
                ],
                Ok(Some(Canary {
                    header: Some((
                        "x-canary".to_owned(),
                        HeaderRule::Pattern("^(y|ja)$".to_owned()),
                    )),
                    cookie: None,
                    weight: 0,
                    total: 100,
                })),
            ),
            (&[("canary", "yes")], Err("canary")),
            (
                &[("canary", "true"), ("canary-weight", "-1")],
                Err("canary-weight"),
            ),
            (
                &[("canary", "true"), ("canary-weight", "ten")],
                Err("canary-weight"),
            ),
            (
                &[("canary", "true"), ("canary-by-header", "x canary")],
                Err("canary-by-header"),
            ),
            (
                &[
                    ("canary", "true"),
                    ("canary-by-header", "x-canary"),
                    ("canary-by-header-pattern", "(["),
                ],
                Err("canary-by-header-pattern"),
            ),
        ];
        for (pairs, want) in rows {
            let got = canary(&annotations(pairs));
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(&g, w, "{pairs:?}"),
                (Err(g), Err(key)) => {
                    assert_eq!(g.key, format!("{NGINX_PREFIX}{key}"), "{pairs:?}")
                }
                (g, w) => panic!("{pairs:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn a_legacy_ingress_reads_as_v1_and_flattens_into_routes() {
        let legacy: LegacyIngress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "my-app"},
            "spec": {
                "backend": {"serviceName": "fallback", "servicePort": "http"},
                "rules": [
                    {"host": "a.domain.com", "http": {"paths": [
                        {"backend": {"serviceName": "my-app-a-v1", "servicePort": 80}}
                    ]}},
                    {"http": {"paths": [
                        {"path": "/api", "pathType": "Prefix",
                         "backend": {"serviceName": "api", "servicePort": 8080}}
                    ]}}
                ]
            }
        }))
        .unwrap();
        let v1 = legacy.into_v1();
        assert_eq!(
            routes(&v1),
            vec![
                IngressRoute {
                    host: Some("a.domain.com".to_owned()),
                    path: "/".to_owned(),
                    path_type: PathType::ImplementationSpecific,
                    service: "my-app-a-v1".to_owned(),
                    port: BackendPort::Number(80),
                },
                IngressRoute {
                    host: None,
                    path: "/api".to_owned(),
                    path_type: PathType::Prefix,
                    service: "api".to_owned(),
                    port: BackendPort::Number(8080),
                },
                IngressRoute {
                    host: None,
                    path: "/".to_owned(),
                    path_type: PathType::ImplementationSpecific,
                    service: "fallback".to_owned(),
                    port: BackendPort::Name("http".to_owned()),
                },
            ]
        );
        assert_eq!(
            backend_services(&v1),
            vec!["api", "fallback", "my-app-a-v1"]
        );
    }
}

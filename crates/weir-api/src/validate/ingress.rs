//! What the API server rejects in an Ingress (its wording), and what
//! ingress-nginx would make of its annotations: a canary annotation that
//! cannot be read is an error, one that would be ignored is a warning.

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use crate::ingress::{CANARY_ANNOTATIONS, NGINX_PREFIX, PathType, canary};
use crate::path::FieldPath;
use crate::validate::Findings;
use crate::validate::istio::valid_dns_name;

/// Checks an Ingress (a legacy one after its conversion to v1).
pub fn ingress(ing: &Ingress, out: &mut Findings) {
    let spec_at = FieldPath::root().key("spec");
    let Some(spec) = &ing.spec else {
        out.error(&spec_at, "Required value: spec is required");
        return;
    };
    if spec.rules.as_ref().is_none_or(Vec::is_empty) && spec.default_backend.is_none() {
        out.error(
            &spec_at,
            "Invalid value: either `defaultBackend` or `rules` must be specified",
        );
    }
    if let Some(backend) = &spec.default_backend {
        check_backend(backend, &spec_at.key("defaultBackend"), out);
    }
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        let rule_at = spec_at.key("rules").index(i);
        if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
            check_host(host, &rule_at.key("host"), out);
        }
        let Some(http) = &rule.http else {
            out.error(
                &rule_at.key("http"),
                "Required value: weir's ingress controller serves HTTP rules only",
            );
            continue;
        };
        if http.paths.is_empty() {
            out.error(&rule_at.key("http").key("paths"), "Required value");
        }
        for (j, p) in http.paths.iter().enumerate() {
            let path_at = rule_at.key("http").key("paths").index(j);
            match PathType::parse(&p.path_type) {
                None => out.error(
                    &path_at.key("pathType"),
                    format!(
                        "Unsupported value: {:?}: supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"",
                        p.path_type
                    ),
                ),
                Some(PathType::Exact | PathType::Prefix) => {
                    if !p.path.as_deref().is_some_and(|x| x.starts_with('/')) {
                        out.error(
                            &path_at.key("path"),
                            format!(
                                "Invalid value: {:?}: must be an absolute path",
                                p.path.as_deref().unwrap_or_default()
                            ),
                        );
                    }
                }
                Some(PathType::ImplementationSpecific) => {
                    if let Some(path) = p.path.as_deref().filter(|x| !x.is_empty())
                        && !path.starts_with('/')
                    {
                        out.error(
                            &path_at.key("path"),
                            format!("Invalid value: {path:?}: must be an absolute path"),
                        );
                    }
                }
            }
            check_backend(&p.backend, &path_at.key("backend"), out);
        }
    }
    check_annotations(ing, out);
}

fn check_host(host: &str, at: &FieldPath, out: &mut Findings) {
    if host.parse::<std::net::IpAddr>().is_ok() {
        out.error(
            at,
            format!("Invalid value: {host:?}: must be a DNS name, not an IP address"),
        );
    } else if host.contains('*') && !host.starts_with("*.") || !valid_dns_name(host) {
        out.error(
            at,
            format!(
                "Invalid value: {host:?}: a lowercase RFC 1123 subdomain, or a wildcard DNS-1123 subdomain ('*.' then a subdomain)"
            ),
        );
    }
}

fn check_backend(backend: &IngressBackend, at: &FieldPath, out: &mut Findings) {
    match &backend.service {
        None if backend.resource.is_none() => out.error(
            at,
            "Invalid value: one backend (`service` or `resource`) must be specified",
        ),
        None => {}
        Some(service) => {
            let service_at = at.key("service");
            if service.name.is_empty() {
                out.error(&service_at.key("name"), "Required value");
            }
            match &service.port {
                Some(port) if port.number.is_some() && port.name.is_some() => out.error(
                    &service_at.key("port"),
                    "Invalid value: cannot set both port name & port number",
                ),
                Some(port) if port.number.is_none() && port.name.is_none() => out.error(
                    &service_at.key("port"),
                    "Invalid value: port name or number is required",
                ),
                Some(port) => {
                    if let Some(n) = port.number
                        && !(1..=65535).contains(&n)
                    {
                        out.error(
                            &service_at.key("port").key("number"),
                            format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
                        );
                    }
                }
                None => out.error(
                    &service_at.key("port"),
                    "Required value: port name or number is required",
                ),
            }
        }
    }
}

/// Canary annotations that do not read are errors; ingress-nginx
/// annotations weir does not implement, and canary annotations on an
/// Ingress that is not a canary, are warnings (ingress-nginx ignores the
/// latter too).
fn check_annotations(ing: &Ingress, out: &mut Findings) {
    let annotations = ing.metadata.annotations.clone().unwrap_or_default();
    let at = |key: &str| {
        FieldPath::root()
            .key("metadata")
            .key("annotations")
            .key(key)
    };
    let is_canary = match canary(&annotations) {
        Err(bad) => {
            out.error(&at(&bad.key), bad.message);
            return;
        }
        Ok(c) => c,
    };
    for key in annotations.keys() {
        let Some(name) = key.strip_prefix(NGINX_PREFIX) else {
            continue;
        };
        if !CANARY_ANNOTATIONS.contains(&name) {
            out.warning(
                &at(key),
                "weir's ingress controller implements only ingress-nginx's canary annotations; this one is ignored",
            );
        } else if is_canary.is_none() && name != "canary" {
            out.warning(
                &at(key),
                format!(
                    "ignored: this Ingress is not a canary ({NGINX_PREFIX}canary is not \"true\"), as ingress-nginx ignores it"
                ),
            );
        }
    }
    let Some(c) = is_canary else {
        return;
    };
    let has = |name: &str| annotations.contains_key(&format!("{NGINX_PREFIX}{name}"));
    if has("canary-by-header-value") && has("canary-by-header-pattern") {
        out.warning(
            &at(&format!("{NGINX_PREFIX}canary-by-header-pattern")),
            "ignored: canary-by-header-value is set, and it wins, as in ingress-nginx",
        );
    }
    if (has("canary-by-header-value") || has("canary-by-header-pattern"))
        && !has("canary-by-header")
    {
        out.warning(
            &at(&format!("{NGINX_PREFIX}canary-by-header")),
            "missing: canary-by-header-value and -pattern apply to the header canary-by-header names",
        );
    }
    if c.weight > c.total {
        out.warning(
            &at(&format!("{NGINX_PREFIX}canary-weight")),
            format!(
                "{} > the total {}: every request the header and cookie leave goes to the canary",
                c.weight, c.total
            ),
        );
    }
    if let Some(spec) = &ing.spec
        && !spec.rules.iter().flatten().any(|r| r.http.is_some())
        && spec.default_backend.is_some()
    {
        out.warning(
            &FieldPath::root().key("spec").key("defaultBackend"),
            "a canary takes the paths of the main Ingress with the same host and path; a default backend alone has none to take",
        );
    }
}

//! Istio's validating-webhook rules for the fields weir implements, with
//! Istio's own messages where it has one (`pkg/config/validation` in
//! istio/istio; see docs/ISTIO-SEMANTICS.md).
//!
//! Over 600 lines on purpose: one rule after another for one webhook, in
//! the order Istio's validation code checks them, so the two read side by
//! side; cut in pieces, a rule's neighbours (and a missed one) would hide.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::duration;
use crate::istio::{
    ClientTlsSettings, ConsistentHashLb, Destination, DestinationRuleSpec, GatewaySpec,
    HeaderOperations, Headers, HttpFaultInjection, HttpMatchRequest, HttpRetry, HttpRoute, Percent,
    StringMatch, TrafficPolicy, VirtualServiceSpec,
};
use crate::path::FieldPath;
use crate::validate::Findings;

/// The reserved gateway name for sidecar (east-west) traffic.
pub const MESH_GATEWAY: &str = "mesh";

/// Retry conditions Envoy understands in `x-envoy-retry-on` (HTTP ones).
const RETRY_POLICIES: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// The `simple` load-balancer names Istio accepts.
pub const SIMPLE_LB: &[&str] = &[
    "UNSPECIFIED",
    "LEAST_CONN",
    "RANDOM",
    "PASSTHROUGH",
    "ROUND_ROBIN",
    "LEAST_REQUEST",
];

/// Checks a Gateway named `name`.
pub fn gateway(name: &str, spec: &GatewaySpec, out: &mut Findings) {
    if !name.is_empty() && !valid_dns_label(name) {
        out.error(
            &FieldPath::root().key("metadata").key("name"),
            format!("invalid gateway name {name:?}: a DNS-1123 label is expected (no dots)"),
        );
    }
    let servers = FieldPath::root().key("spec").key("servers");
    if spec.servers.is_empty() {
        out.error(&servers, "gateway must have at least one server");
    }
    let mut port_names: Vec<&str> = Vec::new();
    for (i, server) in spec.servers.iter().enumerate() {
        let at = servers.index(i);
        if server.hosts.is_empty() {
            out.error(
                &at.key("hosts"),
                "server config must contain at least one host",
            );
        }
        for (h, host) in server.hosts.iter().enumerate() {
            if let Err(e) = gateway_host(host) {
                out.error(&at.key("hosts").index(h), e);
            }
        }
        let unix_socket = server
            .bind
            .as_deref()
            .is_some_and(|b| b.starts_with("unix://"));
        let port = at.key("port");
        if unix_socket {
            if server.port.number != 0 {
                out.error(
                    &port.key("number"),
                    "port number must be 0 for unix domain socket",
                );
            }
        } else if !(1..=65535).contains(&server.port.number) {
            out.error(
                &port.key("number"),
                format!(
                    "port number {} must be in the range 1..65535",
                    server.port.number
                ),
            );
        }
        if server.port.name.is_empty() {
            out.error(&port.key("name"), "port name must be set");
        } else if port_names.contains(&server.port.name.as_str()) {
            out.error(
                &port.key("name"),
                format!(
                    "port names in servers must be unique: duplicate name {}",
                    server.port.name
                ),
            );
        }
        port_names.push(&server.port.name);
        match server.port.protocol.to_ascii_uppercase().as_str() {
            "HTTP" | "HTTP2" | "GRPC" => {}
            "HTTPS" | "TLS" | "TCP" | "MONGO" | "REDIS" | "MYSQL" => out.error(
                &port.key("protocol"),
                format!(
                    "protocol {} is not implemented by weir's gateway (HTTP, HTTP2 and GRPC are)",
                    server.port.protocol
                ),
            ),
            other => out.error(&port.key("protocol"), format!("invalid protocol {other:?}")),
        }
        if server.port.target_port.is_some() {
            out.warning(
                &port.key("targetPort"),
                "targetPort has no impact on Gateways",
            );
        }
        match server.bind.as_deref() {
            Some(bind) if unix_socket => out.error(
                &at.key("bind"),
                format!("binding to the unix socket {bind:?} is not implemented by weir's gateway"),
            ),
            Some(bind) if bind.parse::<std::net::IpAddr>().is_err() => {
                out.error(&at.key("bind"), format!("{bind} is not a valid IP"));
            }
            _ => {}
        }
    }
}

/// A Gateway server host: `[namespace/]dnsName`, where the namespace is
/// `*`, `.` or a DNS-1123 label and the name is `*`, a wildcard domain, a
/// fully qualified name or an IP address (short names are refused).
fn gateway_host(host: &str) -> Result<(), String> {
    let dns = match host.split_once('/') {
        Some((ns, dns)) if ns.is_empty() || dns.is_empty() => {
            return Err(format!("invalid host {host:?}: namespace/dnsName expected"));
        }
        Some((ns, _)) if ns != "*" && ns != "." && !valid_dns_label(ns) => {
            return Err(format!(
                "invalid namespace value {ns:?} in host {host:?} (*, . or a namespace name)"
            ));
        }
        Some((_, dns)) => dns,
        None => host,
    };
    if dns == "*" || dns.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if dns.starts_with('*') && !dns.starts_with("*.") {
        return Err(format!("partial wildcard {dns:?} not allowed"));
    }
    if !valid_dns_name(dns) {
        return Err(format!("invalid host {host:?}: not a valid domain"));
    }
    if !dns.contains('.') {
        return Err(format!(
            "short names (non FQDN) are not allowed in Gateway server hosts: {host:?}"
        ));
    }
    Ok(())
}

fn valid_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

pub(crate) fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Istio's wildcard domain: a domain whose first label may start with `*`
/// (`*`, `*.foo.com`, `*foo.com`, `*-foo.com`); no `*` elsewhere, no IP.
fn valid_wildcard_domain(name: &str) -> bool {
    if name == "*" {
        return true;
    }
    let rest = match name.strip_prefix('*') {
        Some(rest) => rest.strip_prefix('.').unwrap_or(rest),
        None => name,
    };
    let first_label_partial = name.starts_with('*') && !name.starts_with("*.");
    let checked = if first_label_partial {
        // `*foo.com`: the rest of the first label may start with a dash.
        rest.trim_start_matches('-')
    } else {
        rest
    };
    name.parse::<std::net::IpAddr>().is_err()
        && (checked.is_empty() && first_label_partial || valid_dns_name(checked))
}

/// Whether two hosts overlap (Istio's `host.Name.Matches`): equal, or a
/// wildcard's suffix ends the other (`*.bar` and `*.foo.bar` overlap).
pub fn hosts_overlap(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(a), Some(b)) => a.ends_with(b) || b.ends_with(a),
        (Some(suffix), None) => b.ends_with(suffix),
        (None, Some(suffix)) => a.ends_with(suffix),
        (None, None) => a == b,
    }
}

/// Whether every name `host` stands for is one `pattern` stands for
/// (Istio's `host.Name.SubsetOf(pattern)`): `*` covers everything,
/// `*.foo.com` covers `bar.foo.com` and `*.bar.foo.com`.
pub fn covers(pattern: &str, host: &str) -> bool {
    match (pattern.strip_prefix('*'), host.strip_prefix('*')) {
        (Some(suffix), Some(host_suffix)) => host_suffix.ends_with(suffix),
        (Some(suffix), None) => host.ends_with(suffix),
        (None, Some(_)) => false,
        (None, None) => pattern == host,
    }
}

/// Checks a VirtualService; `api_version` decides how removed fields are treated.
pub fn virtual_service(spec: &VirtualServiceSpec, api_version: &str, out: &mut Findings) {
    let root = FieldPath::root().key("spec");
    let hosts = root.key("hosts");
    if spec.hosts.is_empty() {
        out.error(
            &hosts,
            "a VirtualService without hosts is a delegate; delegates are not implemented by weir",
        );
    }
    let bound_to_mesh = spec
        .gateways
        .as_ref()
        .is_none_or(|g| g.iter().any(|g| g == MESH_GATEWAY));
    for (i, host) in spec.hosts.iter().enumerate() {
        if host == "*" && bound_to_mesh {
            out.error(
                &hosts.index(i),
                "wildcard host * is not allowed for virtual services bound to the mesh gateway",
            );
        } else if !valid_wildcard_domain(host) && host.parse::<std::net::IpAddr>().is_err() {
            out.error(&hosts.index(i), format!("invalid host {host:?}"));
        }
        if let Some(earlier) = spec.hosts[..i].iter().find(|h| hosts_overlap(h, host)) {
            out.error(
                &hosts.index(i),
                if earlier == host {
                    format!("duplicate hosts in virtual service: {host}")
                } else {
                    format!("duplicate hosts in virtual service: {host} overlaps {earlier}")
                },
            );
        }
    }
    if let Some(gateways) = &spec.gateways {
        for (i, g) in gateways.iter().enumerate() {
            let at = root.key("gateways").index(i);
            if g == MESH_GATEWAY {
                out.embedded_warning(
                    &at,
                    "the mesh gateway routes sidecar traffic; weir's embedded runtime has no sidecars, so only its gateways apply these rules",
                );
            } else if let Err(e) = gateway_reference(g) {
                out.error(&at, e);
            } else if !g.contains('/') && g.contains('.') {
                out.warning(
                    &at,
                    format!("gateway {g:?} is read as a name with dots, not as namespace/name: write namespace/name"),
                );
            }
        }
    }
    let jwt_routes_allowed = spec
        .gateways
        .as_ref()
        .is_some_and(|g| g.iter().any(|g| g != MESH_GATEWAY));
    if spec.http.is_empty() {
        out.error(
            &root.key("http"),
            "http, tcp or tls must be provided in virtual service",
        );
    }
    for (i, route) in spec.http.iter().enumerate() {
        let at = root.key("http").index(i);
        http_route(route, api_version, &at, out);
        jwt_claim_matches(route, jwt_routes_allowed, &at, out);
    }
}

/// A VirtualService's gateway reference: `name` or `namespace/name`, each
/// part a DNS-1123 name (no `*`).
fn gateway_reference(g: &str) -> Result<(), String> {
    let (ns, name) = match g.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, g),
    };
    if ns.is_some_and(|ns| !valid_dns_label(ns)) {
        return Err(format!(
            "invalid gateway {g:?}: the namespace part must be a namespace name"
        ));
    }
    let subdomain = !name.is_empty() && name.len() <= 253 && name.split('.').all(valid_dns_label);
    if subdomain {
        Ok(())
    } else {
        Err(format!("invalid gateway name {g:?}"))
    }
}

/// JWT-claim header matches (`@request.auth.claims.*`): Istio allows them
/// only on gateway routes; weir implements none.
fn jwt_claim_matches(route: &HttpRoute, allowed: bool, at: &FieldPath, out: &mut Findings) {
    for (m, block) in route.matches.iter().flatten().enumerate() {
        for (map_name, map) in [
            ("headers", &block.headers),
            ("withoutHeaders", &block.without_headers),
        ] {
            for name in map.iter().flat_map(BTreeMap::keys) {
                if name.starts_with(JWT_CLAIM_PREFIX) {
                    let field = at.key("match").index(m).key(map_name).key(name.clone());
                    if allowed {
                        out.error(&field, "matching on JWT claims is not implemented by weir");
                    } else {
                        out.error(
                            &field,
                            "JWT claim based routing is only supported for gateway, found no gateways",
                        );
                    }
                }
            }
        }
    }
}

/// The header-name prefix Istio reads as a JWT claim.
const JWT_CLAIM_PREFIX: &str = "@request.auth.claims.";

fn http_route(route: &HttpRoute, api_version: &str, at: &FieldPath, out: &mut Findings) {
    let routes = route.route.as_deref().unwrap_or_default();
    // Istio's conflict rules first, then what weir does not implement.
    if route.redirect.is_some() {
        if !routes.is_empty() {
            out.error(at, "HTTP route cannot contain both route and redirect");
        }
        if route.fault.is_some() {
            out.error(at, "HTTP route cannot contain both fault and redirect");
        }
        if route.direct_response.is_some() {
            out.error(
                at,
                "HTTP route rule cannot contain both direct_response and redirect",
            );
        }
        out.error(&at.key("redirect"), "not implemented by weir's gateway");
    } else if route.direct_response.is_some() {
        if !routes.is_empty() {
            out.error(
                at,
                "HTTP route cannot contain both route and direct_response",
            );
        }
        if route.fault.is_some() {
            out.error(
                at,
                "HTTP route cannot contain both fault and direct_response",
            );
        }
        out.error(
            &at.key("directResponse"),
            "not implemented by weir's gateway",
        );
    } else if routes.is_empty() {
        out.error(at, "HTTP route, redirect or direct_response is required");
    }
    if route.mirror.is_some() && route.mirrors.is_some() {
        out.error(at, "HTTP route cannot contain both mirror and mirrors");
    }

    for (m, matcher) in route.matches.iter().flatten().enumerate() {
        http_match(matcher, &at.key("match").index(m), out);
    }

    let mut total: i64 = 0;
    for (d, dest) in routes.iter().enumerate() {
        let at = at.key("route").index(d);
        destination(&dest.destination, &at.key("destination"), out);
        let weight = dest.weight.unwrap_or(0);
        if weight < 0 {
            out.error(&at.key("weight"), format!("weight {weight} < 0"));
        }
        if weight > i64::from(i32::MAX) {
            out.error(
                &at.key("weight"),
                format!("weight {weight} exceeds the int32 range"),
            );
        }
        total = total.saturating_add(weight.max(0));
        if let Some(headers) = &dest.headers {
            header_ops(headers, &at.key("headers"), out);
        }
    }
    if routes.len() > 1 && total == 0 {
        out.error(&at.key("route"), "total destination weight = 0");
    }
    if routes.len() > 1 && total != 100 && api_version.ends_with("v1alpha3") {
        out.warning(
            &at.key("route"),
            format!(
                "weights total {total}, not 100: Istio before 1.15 rejects this; weir and Istio 1.15+ give each destination weight/{total}"
            ),
        );
    }

    if let Some(timeout) = &route.timeout {
        istio_duration(timeout, &at.key("timeout"), out);
    }
    if let Some(retries) = &route.retries {
        retry(retries, &at.key("retries"), out);
    }
    if let Some(fault) = &route.fault {
        fault_injection(fault, api_version, &at.key("fault"), out);
    }
    if let Some(mirror) = &route.mirror {
        destination(mirror, &at.key("mirror"), out);
    }
    for (i, mirror) in route.mirrors.iter().flatten().enumerate() {
        let at = at.key("mirrors").index(i);
        destination(&mirror.destination, &at.key("destination"), out);
        if let Some(p) = &mirror.percentage {
            mirror_percentage(p, &at.key("percentage"), out);
        }
    }
    if let Some(p) = &route.mirror_percentage {
        mirror_percentage(p, &at.key("mirrorPercentage"), out);
    }
    if let Some(p) = route.mirror_percent {
        if p > 100 {
            out.error(
                &at.key("mirrorPercent"),
                format!("mirror_percent must have a max value of 100 (it has {p})"),
            );
        }
        out.warning(
            &at.key("mirrorPercent"),
            r#"using deprecated setting "mirrorPercent", use "mirrorPercentage" instead"#,
        );
    }
    if let Some(headers) = &route.headers {
        header_ops(headers, &at.key("headers"), out);
    }
}

/// One `match` of an http route (at `mat`): its string matches, header
/// names and matches, port, and `ignoreUriCase`.
fn http_match(matcher: &HttpMatchRequest, mat: &FieldPath, out: &mut Findings) {
    for (name, field) in [
        ("uri", &matcher.uri),
        ("scheme", &matcher.scheme),
        ("method", &matcher.method),
        ("authority", &matcher.authority),
    ] {
        if let Some(sm) = field {
            string_match(sm, name == "uri", &mat.key(name), out);
        }
    }
    for (map_name, map) in [
        ("headers", &matcher.headers),
        ("withoutHeaders", &matcher.without_headers),
    ] {
        for (name, sm) in map.iter().flatten() {
            let field = mat.key(map_name).key(name.clone());
            if name.starts_with(JWT_CLAIM_PREFIX) {
                continue;
            }
            if name.chars().any(|c| c.is_ascii_uppercase()) {
                out.error(&field, format!("header match {name} must be lowercase"));
            }
            if !valid_header_name(name.strip_prefix(':').unwrap_or(name)) {
                out.error(&field, format!("invalid header name {name:?}"));
            }
            header_string_match(sm, &field, out);
        }
    }
    for (name, sm) in matcher.query_params.iter().flatten() {
        string_match(sm, false, &mat.key("queryParams").key(name.clone()), out);
    }
    if let Some(port) = matcher.port
        && !(1..=65535).contains(&port)
    {
        out.error(
            &mat.key("port"),
            format!("port number {port} must be in the range 1..65535"),
        );
    }
    if matcher.ignore_uri_case == Some(true)
        && matcher.uri.as_ref().is_some_and(|u| u.regex.is_some())
    {
        out.warning(
            &mat.key("ignoreUriCase"),
            "ignoreUriCase applies only to exact and prefix uri matches",
        );
    }
}

/// A header match: `{}` means present, an empty exact value is allowed, an
/// empty prefix is not, and `regex: "*"` means present (as Istio reads it).
fn header_string_match(sm: &StringMatch, at: &FieldPath, out: &mut Findings) {
    if sm.prefix.as_deref() == Some("") {
        out.error(&at.key("prefix"), "header prefix match must not be empty");
    }
    if sm.regex.as_deref() == Some("*") {
        let present = StringMatch {
            regex: None,
            ..sm.clone()
        };
        if present.exact.is_some() || present.prefix.is_some() {
            out.error(at, "only one of exact, prefix or regex may be set");
        }
        return;
    }
    string_match(sm, true, at, out);
}

fn string_match(sm: &StringMatch, allow_empty: bool, at: &FieldPath, out: &mut Findings) {
    let set = [&sm.exact, &sm.prefix, &sm.regex]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if set > 1 {
        out.error(at, "only one of exact, prefix or regex may be set");
    }
    if set == 0 && !allow_empty {
        out.error(at, "one of exact, prefix or regex is required");
    }
    for (kind, value) in [("exact", &sm.exact), ("prefix", &sm.prefix)] {
        if value.as_deref() == Some("") && !allow_empty {
            out.error(&at.key(kind), format!("{kind} match must not be empty"));
        }
    }
    if let Some(re) = &sm.regex {
        if re.is_empty() {
            out.error(&at.key("regex"), "regex match must not be empty");
        } else if re.len() > 1024 {
            out.error(&at.key("regex"), "regex must be less than 1024 characters");
        } else if let Err(e) = regex::Regex::new(re) {
            let reason = e.to_string();
            let reason = reason
                .lines()
                .last()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            out.error(&at.key("regex"), format!("invalid regex {re:?}: {reason}"));
        }
    }
}

fn destination(dest: &Destination, at: &FieldPath, out: &mut Findings) {
    if dest.host.is_empty() {
        out.error(&at.key("host"), "destination host is required");
    } else if dest.host == "*" || !valid_wildcard_domain(&dest.host) {
        out.error(
            &at.key("host"),
            format!("invalid destination host {:?}", dest.host),
        );
    }
    if let Some(subset) = &dest.subset
        && !valid_subset_name(subset)
    {
        out.error(
            &at.key("subset"),
            format!("subset name {subset:?} is invalid (a DNS-1123 label is expected)"),
        );
    }
    if let Some(port) = &dest.port
        && !(1..=65535).contains(&port.number)
    {
        out.error(
            &at.key("port").key("number"),
            format!("port number {} must be in the range 1..65535", port.number),
        );
    }
}

fn valid_subset_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == '_'
        })
}

/// Istio's duration rule: at least 1 ms, millisecond precision.
fn istio_duration(text: &str, at: &FieldPath, out: &mut Findings) -> Option<Duration> {
    match duration::parse(text) {
        Err(e) => {
            out.error(at, e);
            None
        }
        Ok(d) if d < Duration::from_millis(1) => {
            out.error(at, "duration must be greater than 1ms");
            None
        }
        Ok(d) if d.subsec_nanos() % 1_000_000 != 0 => {
            out.error(at, "only durations to ms precision are supported");
            None
        }
        Ok(d) => Some(d),
    }
}

fn retry(retry: &HttpRetry, at: &FieldPath, out: &mut Findings) {
    let attempts = retry.attempts.unwrap_or(0);
    if attempts < 0 {
        out.error(&at.key("attempts"), "attempts cannot be negative");
    }
    if attempts == 0
        && (retry.per_try_timeout.is_some()
            || retry.retry_on.is_some()
            || retry.backoff.is_some()
            || retry.retry_ignore_previous_hosts.is_some())
    {
        out.error(
            at,
            "http retry policy configured when attempts are set to 0 (disabled)",
        );
    }
    if let Some(t) = &retry.per_try_timeout {
        istio_duration(t, &at.key("perTryTimeout"), out);
    }
    if let Some(b) = &retry.backoff {
        istio_duration(b, &at.key("backoff"), out);
    }
    if let Some(on) = &retry.retry_on {
        for token in on.split(',').map(str::trim) {
            let status_code = token.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c));
            if !(RETRY_POLICIES.contains(&token) || status_code) {
                out.error(
                    &at.key("retryOn"),
                    format!("{token:?} is not a valid retryOn value"),
                );
            }
        }
    }
}

fn fault_injection(
    fault: &HttpFaultInjection,
    api_version: &str,
    at: &FieldPath,
    out: &mut Findings,
) {
    if fault.delay.is_none() && fault.abort.is_none() {
        out.error(at, "HTTP fault injection must have an abort and/or a delay");
    }
    if let Some(delay) = &fault.delay {
        let at = at.key("delay");
        match &delay.fixed_delay {
            Some(d) => {
                istio_duration(d, &at.key("fixedDelay"), out);
            }
            None => out.error(&at.key("fixedDelay"), "fixedDelay is required"),
        }
        percentage_field(delay.percentage.as_ref(), &at, out);
        if let Some(p) = delay.percent {
            legacy_percent(p, &at.key("percent"), out);
            out.warning(
                &at.key("percent"),
                "percent is deprecated; use percentage.value",
            );
        }
    }
    if let Some(abort) = &fault.abort {
        let at = at.key("abort");
        match abort.http_status {
            Some(s) if !(200..=600).contains(&s) => {
                out.error(
                    &at.key("httpStatus"),
                    format!("invalid abort http status {s}"),
                );
            }
            Some(_) => {}
            None => out.error(
                &at.key("httpStatus"),
                "httpStatus is required (grpcStatus and http2Error are not implemented by weir)",
            ),
        }
        percentage_field(abort.percentage.as_ref(), &at, out);
        if let Some(p) = abort.percent {
            legacy_percent(p, &at.key("percent"), out);
            if api_version.ends_with("v1alpha3") {
                out.warning(
                    &at.key("percent"),
                    "percent was removed from the API in Istio 1.5 (a current Istio ignores it); weir honours it as v1alpha3 did, but write percentage.value",
                );
            } else {
                out.error(
                    &at.key("percent"),
                    format!("unknown field \"percent\": removed in Istio 1.5 and never part of {api_version}; use percentage.value"),
                );
            }
        }
    }
}

fn percentage_field(p: Option<&Percent>, at: &FieldPath, out: &mut Findings) {
    if let Some(p) = p
        && !(p.value == 0.0 || (0.0001..=100.0).contains(&p.value))
    {
        out.error(
            &at.key("percentage").key("value"),
            format!(
                "percentage {} is neither 0.0, nor in range [0.0001, 100.0]",
                p.value
            ),
        );
    }
}

fn legacy_percent(p: i64, at: &FieldPath, out: &mut Findings) {
    if !(0..=100).contains(&p) {
        out.error(at, format!("percentage {p} must be in range [0, 100]"));
    }
}

fn mirror_percentage(p: &Percent, at: &FieldPath, out: &mut Findings) {
    if p.value > 100.0 {
        out.error(
            &at.key("value"),
            format!(
                "mirror_percentage must have a max value of 100 (it has {:.6})",
                p.value
            ),
        );
    }
    if p.value < 0.0 {
        out.error(
            &at.key("value"),
            format!(
                "mirror_percentage must have a min value of 0 (it has {:.6})",
                p.value
            ),
        );
    }
}

fn header_ops(headers: &Headers, at: &FieldPath, out: &mut Findings) {
    for (side, ops) in [
        ("request", &headers.request),
        ("response", &headers.response),
    ] {
        let Some(ops) = ops else { continue };
        header_op_names(ops, side == "request", &at.key(side), out);
    }
}

fn header_op_names(ops: &HeaderOperations, request: bool, at: &FieldPath, out: &mut Findings) {
    let check = |name: &str, field: FieldPath, may_set_authority: bool, out: &mut Findings| {
        let authority =
            name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case(":authority");
        let internal = name.starts_with(':') || authority;
        if name.is_empty() || (!internal && !valid_header_name(name)) {
            out.error(&field, format!("invalid header name {name:?}"));
        } else if internal && !(may_set_authority && authority) {
            out.error(&field, format!("header {name:?} cannot be modified"));
        }
    };
    for (op, map) in [("set", &ops.set), ("add", &ops.add)] {
        for (name, value) in map.iter().flatten() {
            let field = at.key(op).key(name.clone());
            check(name, field.clone(), request, out);
            if let Err(e) = envoy_header_value(value) {
                out.error(&field, e);
            }
        }
    }
    for (i, name) in ops.remove.iter().flatten().enumerate() {
        check(name, at.key("remove").index(i), false, out);
    }
}

/// Envoy reads `%` in a header value as the start of a `%VARIABLE%` (or
/// `%%`, a literal `%`): an unterminated one is refused, as Istio does.
fn envoy_header_value(value: &str) -> Result<(), String> {
    let mut rest = value;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) => rest = &after[end + 1..],
            None => {
                return Err(format!(
                    "header value {value:?}: unterminated variable (write %% for a literal %)"
                ));
            }
        }
    }
    Ok(())
}

/// An RFC 7230 token.
pub(crate) fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks a DestinationRule.
pub fn destination_rule(spec: &DestinationRuleSpec, out: &mut Findings) {
    let root = FieldPath::root().key("spec");
    if spec.host.is_empty() {
        out.error(&root.key("host"), "host must not be empty");
    } else if !valid_dns_name(&spec.host) {
        out.error(&root.key("host"), format!("invalid host {:?}", spec.host));
    }
    if let Some(tp) = &spec.traffic_policy {
        traffic_policy(tp, &root.key("trafficPolicy"), out);
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let at = root.key("subsets").index(i);
        if subset.name.is_empty() {
            out.error(&at.key("name"), "name is required");
        } else if !valid_subset_name(&subset.name) {
            out.error(
                &at.key("name"),
                format!(
                    "subset name {:?} is invalid (a DNS-1123 label is expected)",
                    subset.name
                ),
            );
        }
        if names.contains(&subset.name.as_str()) {
            out.error(
                &at.key("name"),
                format!("duplicate subset names: {}", subset.name),
            );
        }
        names.push(&subset.name);
        if let Some(tp) = &subset.traffic_policy {
            traffic_policy(tp, &at.key("trafficPolicy"), out);
        }
    }
}

fn traffic_policy(tp: &TrafficPolicy, at: &FieldPath, out: &mut Findings) {
    if let Some(tls) = &tp.tls {
        client_tls(tls, &at.key("tls"), out);
    }
    let Some(lb) = &tp.load_balancer else { return };
    let at = at.key("loadBalancer");
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        out.error(&at, "only one of simple or consistentHash may be set");
    }
    if let Some(simple) = &lb.simple
        && !SIMPLE_LB.contains(&simple.as_str())
    {
        out.error(
            &at.key("simple"),
            format!(
                "unknown load balancer {simple:?} (one of {})",
                SIMPLE_LB.join(", ")
            ),
        );
    }
    if let Some(ch) = &lb.consistent_hash {
        consistent_hash(ch, &at.key("consistentHash"), out);
    }
}

fn consistent_hash(ch: &ConsistentHashLb, at: &FieldPath, out: &mut Findings) {
    let keys = [
        ch.http_header_name.is_some(),
        ch.http_cookie.is_some(),
        ch.use_source_ip == Some(true),
        ch.http_query_parameter_name.is_some(),
    ]
    .iter()
    .filter(|&&k| k)
    .count();
    if keys > 1 {
        out.error(
            at,
            "only one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName may be set",
        );
    }
    if let Some(cookie) = &ch.http_cookie {
        if cookie.name.is_empty() {
            out.error(
                &at.key("httpCookie").key("name"),
                "name required for HttpCookie",
            );
        }
        if let Some(ttl) = &cookie.ttl
            && let Err(e) = duration::parse(ttl)
        {
            out.error(&at.key("httpCookie").key("ttl"), e);
        }
    }
    if ch.ring_hash.is_some() && ch.maglev.is_some() {
        out.error(at, "only one of ringHash or maglev may be set");
    }
    if let Some(size) = ch.maglev.as_ref().and_then(|m| m.table_size)
        && !is_prime(size)
    {
        out.error(
            &at.key("maglev").key("tableSize"),
            format!("table size {size} must be a prime number"),
        );
    }
    if ch.minimum_ring_size.is_some() {
        out.warning(
            &at.key("minimumRingSize"),
            "minimumRingSize is deprecated; use ringHash.minimumRingSize",
        );
    }
}

/// Istio's rules for upstream TLS (checked although only a cluster uses it).
fn client_tls(tls: &ClientTlsSettings, at: &FieldPath, out: &mut Findings) {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
    let mode = tls.mode.as_deref().unwrap_or("DISABLE");
    if !["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"].contains(&mode) {
        out.error(&at.key("mode"), format!("unknown TLS mode {mode:?}"));
    }
    if mode == "MUTUAL" && !set(&tls.credential_name) {
        if !set(&tls.client_certificate) {
            out.error(
                &at.key("clientCertificate"),
                "client certificate required for mutual tls",
            );
        }
        if !set(&tls.private_key) {
            out.error(&at.key("privateKey"), "private key required for mutual tls");
        }
    }
    if tls.insecure_skip_verify == Some(true) {
        let sans = tls
            .subject_alt_names
            .as_ref()
            .is_some_and(|s| !s.is_empty());
        if sans {
            out.error(
                &at.key("subjectAltNames"),
                "cannot specify SubjectAltNames when InsecureSkipVerify is set to true",
            );
        }
        if set(&tls.ca_certificates) {
            out.error(
                &at.key("caCertificates"),
                "cannot specify CaCertificates when InsecureSkipVerify is set to true",
            );
        }
        if mode == "SIMPLE" && set(&tls.credential_name) {
            out.error(
                &at.key("credentialName"),
                "cannot specify CredentialName when InsecureSkipVerify is set to true in SIMPLE mode",
            );
        }
    }
}

/// Istio's error for a `trafficPolicy` with no field at all, found from
/// the fields present in a DestinationRule's document.
pub fn empty_traffic_policies(fields: &[FieldPath], out: &mut Findings) {
    for policy in fields.iter().filter(|f| {
        matches!(f.segments().last(), Some(crate::path::Segment::Key(k)) if k == "trafficPolicy")
    }) {
        let has_child = fields
            .iter()
            .any(|f| f.segments().len() > policy.segments().len() && f.starts_with(policy));
        if !has_child {
            out.error(policy, "traffic policy must have at least one field");
        }
    }
}

/// Checks a WorkloadEntry.
pub fn workload_entry(spec: &crate::istio::WorkloadEntrySpec, out: &mut Findings) {
    let root = FieldPath::root().key("spec");
    let address = spec.address.as_str();
    let at = root.key("address");
    if address.is_empty() {
        if spec.network.is_some() {
            out.error(
                &at,
                "a WorkloadEntry without an address (reached through its network's gateway) is not implemented by weir",
            );
        } else {
            out.error(&at, "address is required");
        }
    } else if let Some(path) = address.strip_prefix("unix://") {
        if !spec.ports.is_empty() {
            out.error(&root.key("ports"), "unix endpoint cannot have ports");
        } else if !path.starts_with('/') {
            out.error(&at, format!("unix socket path {path:?} must be absolute"));
        } else {
            out.error(&at, "unix socket endpoints are not implemented by weir");
        }
    } else if address.parse::<std::net::IpAddr>().is_err() {
        if valid_dns_name(address) {
            out.error(
                &at,
                format!("address {address:?} is a DNS name: resolving names for static endpoints is not implemented by weir (write an IP address)"),
            );
        } else {
            out.error(&at, format!("invalid address {address:?}"));
        }
    }
    for (name, port) in &spec.ports {
        if !(1..=65535).contains(port) {
            out.error(
                &root.key("ports").key(name.clone()),
                format!("port number {port} must be in the range 1..65535"),
            );
        }
    }
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

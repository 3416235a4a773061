//! What a Kubernetes API server rejects in the kinds weir loads, with the
//! API server's wording (`field: Invalid value: ...`, `Required value`).
//!
//! Over 600 lines on purpose: the API server's rules for four kinds, each
//! kind's in one run as its validation code has them, sharing the small
//! field checks at the top.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::{v1 as hpa_v1, v2 as hpa_v2};
use k8s_openapi::api::core::v1::{Container, Probe, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::path::FieldPath;
use crate::quantity;
use crate::validate::Findings;

fn spec() -> FieldPath {
    FieldPath::root().key("spec")
}

fn show_labels(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("map[{}]", pairs.join(" "))
}

/// Checks a Deployment.
pub fn deployment(d: &Deployment, out: &mut Findings) {
    let spec_ = &d.spec;
    let at = spec();
    if let Some(r) = spec_.replicas
        && r < 0
    {
        out.error(
            &at.key("replicas"),
            format!("Invalid value: {r}: must be greater than or equal to 0"),
        );
    }
    let selector = spec_.selector.match_labels.clone().unwrap_or_default();
    if selector.is_empty() {
        out.error(
            &at.key("selector"),
            "Invalid value: {}: empty selector is invalid for deployment",
        );
    }
    let template_labels = spec_
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if !selector.is_empty()
        && !selector
            .iter()
            .all(|(k, v)| template_labels.get(k) == Some(v))
    {
        out.error(
            &at.key("template").key("metadata").key("labels"),
            format!(
                "Invalid value: {}: `selector` does not match template `labels`",
                show_labels(&template_labels)
            ),
        );
    }
    if let Some(strategy) = &spec_.strategy {
        let st = at.key("strategy");
        match strategy.type_.as_deref().unwrap_or("RollingUpdate") {
            "RollingUpdate" => {}
            "Recreate" if strategy.rolling_update.is_some() => out.error(
                &st.key("rollingUpdate"),
                "Forbidden: may not be specified when strategy `type` is 'Recreate'",
            ),
            "Recreate" => {}
            other => out.error(
                &st.key("type"),
                format!("Unsupported value: {other:?}: supported values: \"Recreate\", \"RollingUpdate\""),
            ),
        }
        if let Some(ru) = &strategy.rolling_update {
            let ru_at = st.key("rollingUpdate");
            let surge = int_or_percent(ru.max_surge.as_ref(), &ru_at.key("maxSurge"), out);
            let unavailable = int_or_percent(
                ru.max_unavailable.as_ref(),
                &ru_at.key("maxUnavailable"),
                out,
            );
            if surge == Some(0) && unavailable == Some(0) {
                out.error(
                    &ru_at.key("maxUnavailable"),
                    "Invalid value: 0: may not be 0 when `maxSurge` is 0",
                );
            }
        }
    }
    let tpl = at.key("template").key("spec");
    let Some(pod) = &spec_.template.spec else {
        out.error(&tpl, "Required value");
        return;
    };
    if let Some(policy) = &pod.restart_policy
        && policy != "Always"
    {
        out.error(
            &tpl.key("restartPolicy"),
            format!("Unsupported value: {policy:?}: supported values: \"Always\""),
        );
    }
    if let Some(g) = pod.termination_grace_period_seconds
        && g < 0
    {
        out.error(
            &tpl.key("terminationGracePeriodSeconds"),
            format!("Invalid value: {g}: must be greater than or equal to 0"),
        );
    }
    if pod.containers.is_empty() {
        out.error(&tpl.key("containers"), "Required value");
    }
    let mut names = Vec::new();
    for (i, c) in pod.containers.iter().enumerate() {
        let c_at = tpl.key("containers").index(i);
        if c.name.is_empty() {
            out.error(&c_at.key("name"), "Required value");
        } else if !is_dns1123_label(&c.name) {
            out.error(
                &c_at.key("name"),
                format!("Invalid value: {:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'", c.name),
            );
        } else if names.contains(&c.name) {
            out.error(&c_at.key("name"), format!("Duplicate value: {:?}", c.name));
        }
        names.push(c.name.clone());
        container(c, &c_at, out);
    }
}

/// `maxSurge`/`maxUnavailable`: an integer or a percentage; returns the
/// integer when it is zero-valued either way, for the "both 0" rule.
fn int_or_percent(value: Option<&IntOrString>, at: &FieldPath, out: &mut Findings) -> Option<i64> {
    match value? {
        IntOrString::Int(n) if *n < 0 => {
            out.error(
                at,
                format!("Invalid value: {n}: must be greater than or equal to 0"),
            );
            None
        }
        IntOrString::Int(n) => Some(i64::from(*n)),
        IntOrString::String(s) => match s.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()) {
            Some(p) if (0..=100).contains(&p) => Some(p),
            Some(p) => {
                out.error(
                    at,
                    format!("Invalid value: \"{p}%\": must not be greater than 100%"),
                );
                None
            }
            None => {
                out.error(at, format!("Invalid value: {s:?}: a valid percent string must be a numeric string followed by an ending '%'"));
                None
            }
        },
    }
}

fn container(c: &Container, at: &FieldPath, out: &mut Findings) {
    if c.image.as_deref().unwrap_or_default().is_empty() {
        out.error(&at.key("image"), "Required value");
    }
    let mut port_names = Vec::new();
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let p_at = at.key("ports").index(i);
        if !(1..=65535).contains(&port.container_port) {
            out.error(
                &p_at.key("containerPort"),
                format!(
                    "Invalid value: {}: must be between 1 and 65535, inclusive",
                    port.container_port
                ),
            );
        }
        if let Some(name) = &port.name {
            if let Err(e) = port_name(name) {
                out.error(&p_at.key("name"), format!("Invalid value: {name:?}: {e}"));
            } else if port_names.contains(&name) {
                out.error(&p_at.key("name"), format!("Duplicate value: {name:?}"));
            }
            port_names.push(name);
        }
        if let Some(proto) = &port.protocol
            && proto != "TCP"
        {
            out.error(
                &p_at.key("protocol"),
                format!("protocol {proto} is not implemented by weir (TCP is)"),
            );
        }
    }
    for (i, env) in c.env.iter().flatten().enumerate() {
        let field = at.key("env").index(i).key("name");
        if env.name.is_empty() {
            out.error(&field, "Required value");
        } else if !env.name.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
            || env.name.contains('=')
        {
            // The API server's rule (RelaxedEnvironmentVariableValidation,
            // on by default since Kubernetes 1.32).
            out.error(
                &field,
                format!(
                    "Invalid value: {:?}: a valid environment variable name must consist only of printable ASCII characters other than '='",
                    env.name
                ),
            );
        }
    }
    for (field, probe) in [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
    ] {
        if let Some(probe) = probe {
            check_probe(
                probe,
                field == "livenessProbe",
                &port_names,
                &at.key(field),
                out,
            );
        }
    }
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    if let Some(cpu) = requests.and_then(|r| r.get("cpu"))
        && let Err(e) = quantity::cpu_millis(&cpu.0)
    {
        out.error(&at.key("resources").key("requests").key("cpu"), e);
    }
}

fn check_probe(
    probe: &Probe,
    liveness: bool,
    port_names: &[&String],
    at: &FieldPath,
    out: &mut Findings,
) {
    let handlers = [
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.exec.is_some(),
        probe.grpc.is_some(),
    ]
    .iter()
    .filter(|&&h| h)
    .count();
    match handlers {
        0 => out.error(at, "Required value: must specify a handler type"),
        1 => {}
        _ => out.error(at, "Forbidden: may not specify more than 1 handler type"),
    }
    if let Some(get) = &probe.http_get {
        probe_port(&get.port, port_names, &at.key("httpGet").key("port"), out);
        if let Some(scheme) = &get.scheme
            && scheme != "HTTP"
        {
            out.error(
                &at.key("httpGet").key("scheme"),
                format!("scheme {scheme} is not implemented by weir (HTTP is)"),
            );
        }
    }
    if let Some(tcp) = &probe.tcp_socket {
        probe_port(&tcp.port, port_names, &at.key("tcpSocket").key("port"), out);
    }
    if let Some(exec) = &probe.exec
        && exec.command.as_ref().is_none_or(Vec::is_empty)
    {
        out.error(&at.key("exec").key("command"), "Required value");
    }
    for (field, value, min) in [
        ("initialDelaySeconds", probe.initial_delay_seconds, 0),
        ("timeoutSeconds", probe.timeout_seconds, 1),
        ("periodSeconds", probe.period_seconds, 1),
        ("successThreshold", probe.success_threshold, 1),
        ("failureThreshold", probe.failure_threshold, 1),
    ] {
        if let Some(v) = value
            && v < min
        {
            out.error(
                &at.key(field),
                format!("Invalid value: {v}: must be greater than or equal to {min}"),
            );
        }
    }
    if liveness && probe.success_threshold.is_some_and(|s| s != 1) {
        out.error(&at.key("successThreshold"), "Invalid value: must be 1");
    }
}

fn probe_port(port: &IntOrString, port_names: &[&String], at: &FieldPath, out: &mut Findings) {
    match port {
        IntOrString::Int(n) if !(1..=65535).contains(n) => {
            out.error(
                at,
                format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
            );
        }
        IntOrString::String(name) if !port_names.contains(&name) => {
            out.error(
                at,
                format!("Invalid value: {name:?}: no container port named {name:?} (named ports must be declared in the container's ports)"),
            );
        }
        _ => {}
    }
}

/// An IANA service name: at most 15 characters, lowercase alphanumerics and
/// '-', at least one letter, no leading, trailing or double '-'.
fn port_name(name: &str) -> Result<(), &'static str> {
    if name.len() > 15 {
        return Err("must be no more than 15 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.chars().any(|c| c.is_ascii_lowercase()) {
        return Err("must contain at least one letter (a-z)");
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return Err("must not begin or end with a hyphen, nor contain adjacent hyphens");
    }
    Ok(())
}

fn is_dns1123_label(name: &str) -> bool {
    name.len() <= 63
        && !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Checks a Service.
pub fn service(s: &Service, out: &mut Findings) {
    let Some(spec_) = &s.spec else {
        out.error(&spec(), "Required value");
        return;
    };
    let at = spec();
    match spec_.type_.as_deref().unwrap_or("ClusterIP") {
        "ClusterIP" | "NodePort" | "LoadBalancer" => {}
        "ExternalName" => out.error(&at.key("type"), "type ExternalName is not implemented by weir"),
        other => out.error(
            &at.key("type"),
            format!("Unsupported value: {other:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""),
        ),
    }
    let ports = spec_.ports.as_deref().unwrap_or_default();
    if ports.is_empty() {
        out.error(&at.key("ports"), "Required value");
    }
    let mut names = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let p_at = at.key("ports").index(i);
        if !(1..=65535).contains(&port.port) {
            out.error(
                &p_at.key("port"),
                format!(
                    "Invalid value: {}: must be between 1 and 65535, inclusive",
                    port.port
                ),
            );
        }
        match &port.name {
            None if ports.len() > 1 => out.error(&p_at.key("name"), "Required value"),
            None => {}
            Some(name) if names.contains(&name) => {
                out.error(&p_at.key("name"), format!("Duplicate value: {name:?}"));
            }
            Some(name) => names.push(name),
        }
        match &port.target_port {
            Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => {
                out.error(
                    &p_at.key("targetPort"),
                    format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
                );
            }
            Some(IntOrString::String(name)) if port_name(name).is_err() => {
                out.error(
                    &p_at.key("targetPort"),
                    format!("Invalid value: {name:?}: must be a valid port name"),
                );
            }
            _ => {}
        }
        if let Some(proto) = &port.protocol
            && proto != "TCP"
        {
            out.error(
                &p_at.key("protocol"),
                format!("protocol {proto} is not implemented by weir (TCP is)"),
            );
        }
    }
}

/// What both HPA versions share.
struct HpaBounds<'a> {
    min: Option<i32>,
    max: i32,
    target_api_version: Option<&'a str>,
    target_kind: &'a str,
    target_name: &'a str,
}

fn hpa_bounds(b: &HpaBounds<'_>, out: &mut Findings) {
    let at = spec();
    if let Some(min) = b.min
        && min < 1
    {
        out.error(
            &at.key("minReplicas"),
            format!("Invalid value: {min}: must be greater than or equal to 1"),
        );
    }
    if b.max < 1 {
        out.error(
            &at.key("maxReplicas"),
            format!(
                "Invalid value: {}: must be greater than or equal to 1",
                b.max
            ),
        );
    } else if b.min.is_some_and(|min| min > b.max) {
        out.error(
            &at.key("maxReplicas"),
            format!(
                "Invalid value: {}: must be greater than or equal to `minReplicas`",
                b.max
            ),
        );
    }
    let target = at.key("scaleTargetRef");
    if b.target_kind.is_empty() {
        out.error(&target.key("kind"), "Required value");
    } else if b.target_kind != "Deployment" {
        out.error(
            &target.key("kind"),
            format!(
                "weir scales Deployments; {} is not implemented",
                b.target_kind
            ),
        );
    }
    if b.target_name.is_empty() {
        out.error(&target.key("name"), "Required value");
    }
    match b.target_api_version {
        None | Some("apps/v1") => {}
        Some(v @ ("extensions/v1beta1" | "apps/v1beta1" | "apps/v1beta2")) => out.warning(
            &target.key("apiVersion"),
            format!(
                "{v} no longer serves Deployments: a Kubernetes 1.16+ autoscaler fails with FailedGetScale (no matches for kind \"Deployment\" in group \"{}\"); weir's embedded runtime scales the Deployment by kind and name; for a cluster write apps/v1, or apply with `--rewrite-scale-target-api` to send apps/v1",
                v.split('/').next().unwrap_or_default()
            ),
        ),
        Some(other) => out.error(
            &target.key("apiVersion"),
            format!("Invalid value: {other:?}: a Deployment's apiVersion is apps/v1"),
        ),
    }
}

/// Checks an autoscaling/v1 HPA.
pub fn hpa_v1(h: &hpa_v1::HorizontalPodAutoscaler, out: &mut Findings) {
    let s = &h.spec;
    hpa_bounds(
        &HpaBounds {
            min: s.min_replicas,
            max: s.max_replicas,
            target_api_version: s.scale_target_ref.api_version.as_deref(),
            target_kind: &s.scale_target_ref.kind,
            target_name: &s.scale_target_ref.name,
        },
        out,
    );
    if let Some(t) = s.target_cpu_utilization_percentage
        && t < 1
    {
        out.error(
            &spec().key("targetCPUUtilizationPercentage"),
            format!("Invalid value: {t}: must be greater than 0"),
        );
    }
}

/// Checks an autoscaling/v2 HPA.
pub fn hpa_v2(h: &hpa_v2::HorizontalPodAutoscaler, out: &mut Findings) {
    let s = &h.spec;
    hpa_bounds(
        &HpaBounds {
            min: s.min_replicas,
            max: s.max_replicas,
            target_api_version: s.scale_target_ref.api_version.as_deref(),
            target_kind: &s.scale_target_ref.kind,
            target_name: &s.scale_target_ref.name,
        },
        out,
    );
    for (i, metric) in s.metrics.iter().flatten().enumerate() {
        let at = spec().key("metrics").index(i);
        if metric.type_ != "Resource" {
            out.error(
                &at.key("type"),
                format!(
                    "metric type {} is not implemented by weir (Resource cpu is)",
                    metric.type_
                ),
            );
            continue;
        }
        let Some(resource) = &metric.resource else {
            out.error(
                &at.key("resource"),
                "Required value: must populate information for the given metric source",
            );
            continue;
        };
        let r_at = at.key("resource");
        if resource.name != "cpu" {
            out.error(
                &r_at.key("name"),
                format!(
                    "resource {} is not implemented by weir (cpu is)",
                    resource.name
                ),
            );
        }
        let t_at = r_at.key("target");
        match resource.target.type_.as_str() {
            "Utilization" => match resource.target.average_utilization {
                Some(u) if u < 1 => out.error(&t_at.key("averageUtilization"), format!("Invalid value: {u}: must be greater than 0")),
                Some(_) => {}
                None => out.error(&t_at.key("averageUtilization"), "Required value: must set averageUtilization when type is Utilization"),
            },
            "AverageValue" => match &resource.target.average_value {
                Some(q) => {
                    if let Err(e) = quantity::cpu_millis(&q.0) {
                        out.error(&t_at.key("averageValue"), e);
                    }
                }
                None => out.error(&t_at.key("averageValue"), "Required value: must set averageValue when type is AverageValue"),
            },
            other => out.error(
                &t_at.key("type"),
                format!("Unsupported value: {other:?}: supported values: \"AverageValue\", \"Utilization\""),
            ),
        }
    }
    if let Some(behavior) = &s.behavior {
        for (field, rules) in [
            ("scaleUp", &behavior.scale_up),
            ("scaleDown", &behavior.scale_down),
        ] {
            if let Some(rules) = rules {
                scaling_rules(rules, &spec().key("behavior").key(field), out);
            }
        }
    }
}

fn scaling_rules(rules: &hpa_v2::HPAScalingRules, at: &FieldPath, out: &mut Findings) {
    if let Some(w) = rules.stabilization_window_seconds
        && !(0..=3600).contains(&w)
    {
        out.error(
            &at.key("stabilizationWindowSeconds"),
            format!("Invalid value: {w}: must be between 0 and 3600 seconds"),
        );
    }
    if let Some(tolerance) = &rules.tolerance {
        let text = tolerance.0.trim();
        if let Some(magnitude) = text.strip_prefix('-')
            && crate::quantity::cpu_millis(magnitude).is_ok_and(|m| m > 0)
        {
            out.error(
                &at.key("tolerance"),
                format!("Invalid value: {text:?}: must be greater than or equal to 0"),
            );
        } else if let Err(e) = crate::quantity::cpu_millis(text.trim_start_matches('-')) {
            out.error(&at.key("tolerance"), e);
        }
    }
    let select = rules.select_policy.as_deref().unwrap_or("Max");
    if !["Max", "Min", "Disabled"].contains(&select) {
        out.error(
            &at.key("selectPolicy"),
            format!(
                "Unsupported value: {select:?}: supported values: \"Disabled\", \"Max\", \"Min\""
            ),
        );
    }
    if rules.policies.as_ref().is_some_and(Vec::is_empty) && select != "Disabled" {
        out.error(
            &at.key("policies"),
            "Required value: must specify at least one Policy",
        );
    }
    for (i, policy) in rules.policies.iter().flatten().enumerate() {
        let p_at = at.key("policies").index(i);
        if !["Pods", "Percent"].contains(&policy.type_.as_str()) {
            out.error(
                &p_at.key("type"),
                format!(
                    "Unsupported value: {:?}: supported values: \"Percent\", \"Pods\"",
                    policy.type_
                ),
            );
        }
        if policy.value <= 0 {
            out.error(
                &p_at.key("value"),
                format!("Invalid value: {}: must be greater than zero", policy.value),
            );
        }
        if policy.period_seconds <= 0 {
            out.error(
                &p_at.key("periodSeconds"),
                format!(
                    "Invalid value: {}: must be greater than zero",
                    policy.period_seconds
                ),
            );
        } else if policy.period_seconds > 1800 {
            out.error(
                &p_at.key("periodSeconds"),
                format!(
                    "Invalid value: {}: must be less than or equal to 1800",
                    policy.period_seconds
                ),
            );
        }
    }
}

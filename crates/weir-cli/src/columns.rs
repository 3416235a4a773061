//! kubectl's table columns for each kind weir serves, as data: a header,
//! whether only `-o wide` shows it, and the function that reads its cell
//! from the object. `weir get` prints them; adding a kind is one table.

use std::time::{Duration, SystemTime};

use serde_json::Value;
use weir_api::resource::Kind;

use crate::show::text_at;

/// One column of a kind's table.
pub struct Column {
    /// The header, as kubectl writes it.
    pub header: &'static str,
    /// Shown only with `-o wide`.
    pub wide: bool,
    /// The cell of one object.
    pub cell: fn(&Value) -> String,
}

const fn column(header: &'static str, cell: fn(&Value) -> String) -> Column {
    Column {
        header,
        wide: false,
        cell,
    }
}

const fn wide(header: &'static str, cell: fn(&Value) -> String) -> Column {
    Column {
        header,
        wide: true,
        cell,
    }
}

const POD: &[Column] = &[
    column("NAME", name),
    column("READY", pod_ready),
    column("STATUS", pod_status),
    column("RESTARTS", pod_restarts),
    column("AGE", created),
    wide("IP", pod_ip),
    wide("NODE", |_| "weir".to_owned()),
];

const DEPLOYMENT: &[Column] = &[
    column("NAME", name),
    column("READY", deployment_ready),
    column("UP-TO-DATE", |o| number(o, "/status/updatedReplicas")),
    column("AVAILABLE", |o| number(o, "/status/availableReplicas")),
    column("AGE", created),
];

const SERVICE: &[Column] = &[
    column("NAME", name),
    column("TYPE", service_type),
    column("CLUSTER-IP", cluster_ip),
    column("EXTERNAL-IP", external_ip),
    column("PORT(S)", service_ports),
    column("AGE", created),
];

const HPA: &[Column] = &[
    column("NAME", name),
    column("REFERENCE", hpa_reference),
    column("TARGETS", hpa_targets),
    column("MINPODS", hpa_min_pods),
    column("MAXPODS", |o| number(o, "/spec/maxReplicas")),
    column("REPLICAS", |o| number(o, "/status/currentReplicas")),
    column("AGE", created),
];

const VIRTUAL_SERVICE: &[Column] = &[
    column("NAME", name),
    column("GATEWAYS", |o| quoted_list(o, "/spec/gateways")),
    column("HOSTS", |o| quoted_list(o, "/spec/hosts")),
    column("AGE", created),
];

const DESTINATION_RULE: &[Column] = &[
    column("NAME", name),
    column("HOST", |o| text_at(o, "/spec/host").to_owned()),
    column("AGE", created),
];

const INGRESS: &[Column] = &[
    column("NAME", name),
    column("CLASS", ingress_class),
    column("HOSTS", ingress_hosts),
    column("ADDRESS", ingress_address),
    column("PORTS", ingress_ports),
    column("AGE", created),
];

const NAME_AND_AGE: &[Column] = &[column("NAME", name), column("AGE", created)];

const ROLLOUT: &[Column] = &[
    column("NAME", name),
    column("STATUS", rollout_status),
    column("STEP", rollout_step),
    column("WEIGHT", rollout_weight),
    column("AGE", created),
    wide("VIRTUALSERVICE", |o| {
        text_at(o, "/spec/virtualService").to_owned()
    }),
    wide("STABLE", |o| text_at(o, "/spec/stable").to_owned()),
    wide("CANARY", |o| text_at(o, "/spec/canary").to_owned()),
    wide("MESSAGE", |o| text_at(o, "/status/message").to_owned()),
];

/// The columns of `kind`'s table.
pub fn columns(kind: Kind) -> &'static [Column] {
    match kind {
        Kind::Pod => POD,
        Kind::Deployment => DEPLOYMENT,
        Kind::Service => SERVICE,
        Kind::HorizontalPodAutoscaler => HPA,
        Kind::VirtualService => VIRTUAL_SERVICE,
        Kind::DestinationRule => DESTINATION_RULE,
        Kind::Ingress => INGRESS,
        Kind::Rollout => ROLLOUT,
        // As kubectl shows a custom resource without printer columns.
        _ => NAME_AND_AGE,
    }
}

/// Headers and one row per object, kubectl's columns for the kind.
pub fn rows(kind: Kind, objects: &[Value], wide: bool) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let shown: Vec<&Column> = columns(kind).iter().filter(|c| wide || !c.wide).collect();
    let headers = shown.iter().map(|c| c.header).collect();
    let rows = objects
        .iter()
        .map(|o| shown.iter().map(|c| (c.cell)(o)).collect())
        .collect();
    (headers, rows)
}

/// kubectl's AGE.
pub fn age(created: &str) -> String {
    let Ok(t) = humantime::parse_rfc3339(created) else {
        return "<unknown>".into();
    };
    let secs = SystemTime::now()
        .duration_since(t)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    match secs {
        0..120 => format!("{secs}s"),
        120..600 => format!("{}m{}s", secs / 60, secs % 60),
        600..10800 => format!("{}m", secs / 60),
        10800..172800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

fn n(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn number(v: &Value, pointer: &str) -> String {
    n(v, pointer).to_string()
}

fn name(o: &Value) -> String {
    text_at(o, "/metadata/name").to_owned()
}

fn created(o: &Value) -> String {
    age(text_at(o, "/metadata/creationTimestamp"))
}

fn pod_ready(o: &Value) -> String {
    let ready = o
        .pointer("/status/containerStatuses/0/ready")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    format!("{}/1", u8::from(ready))
}

fn pod_status(o: &Value) -> String {
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating".to_owned()
    } else if let Some(reason) = o
        .pointer("/status/containerStatuses/0/state/waiting/reason")
        .and_then(Value::as_str)
    {
        reason.to_owned()
    } else if o
        .pointer("/status/containerStatuses/0/state/terminated")
        .is_some()
    {
        "Error".to_owned()
    } else {
        text_at(o, "/status/phase").to_owned()
    }
}

fn pod_restarts(o: &Value) -> String {
    number(o, "/status/containerStatuses/0/restartCount")
}

fn pod_ip(o: &Value) -> String {
    text_at(o, "/status/podIP").to_owned()
}

fn deployment_ready(o: &Value) -> String {
    let desired = o
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    format!("{}/{desired}", n(o, "/status/readyReplicas"))
}

fn service_type(o: &Value) -> String {
    match text_at(o, "/spec/type") {
        "" => "ClusterIP".to_owned(),
        kind => kind.to_owned(),
    }
}

fn cluster_ip(o: &Value) -> String {
    o.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("<none>")
        .to_owned()
}

fn external_ip(o: &Value) -> String {
    match o
        .pointer("/status/loadBalancer/ingress/0")
        .and_then(|i| i.get("ip").or_else(|| i.get("hostname")))
        .and_then(Value::as_str)
    {
        Some(address) => address.to_owned(),
        None if text_at(o, "/spec/type") == "LoadBalancer" => "<pending>".to_owned(),
        None => "<none>".to_owned(),
    }
}

fn service_ports(o: &Value) -> String {
    let ports: Vec<String> = o
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let protocol = match text_at(p, "/protocol") {
                "" => "TCP",
                protocol => protocol,
            };
            match p.pointer("/nodePort").and_then(Value::as_u64) {
                Some(node) => format!("{}:{node}/{protocol}", n(p, "/port")),
                None => format!("{}/{protocol}", n(p, "/port")),
            }
        })
        .collect();
    ports.join(",")
}

fn hpa_reference(o: &Value) -> String {
    format!(
        "{}/{}",
        text_at(o, "/spec/scaleTargetRef/kind"),
        text_at(o, "/spec/scaleTargetRef/name")
    )
}

fn hpa_targets(o: &Value) -> String {
    let target = o
        .pointer("/spec/targetCPUUtilizationPercentage")
        .and_then(Value::as_i64)
        .or_else(|| {
            o.pointer("/spec/metrics/0/resource/target/averageUtilization")
                .and_then(Value::as_i64)
        })
        .unwrap_or(80);
    let current = o
        .pointer("/status/currentCPUUtilizationPercentage")
        .and_then(Value::as_i64)
        .map_or("<unknown>".to_owned(), |c| format!("{c}%"));
    format!("cpu: {current}/{target}%")
}

fn hpa_min_pods(o: &Value) -> String {
    o.pointer("/spec/minReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .to_string()
}

fn quoted_list(o: &Value, pointer: &str) -> String {
    let items: Vec<String> = o
        .pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|x| format!("\"{x}\""))
        .collect();
    format!("[{}]", items.join(","))
}

fn ingress_class(o: &Value) -> String {
    match text_at(o, "/spec/ingressClassName") {
        "" => "<none>".to_owned(),
        class => class.to_owned(),
    }
}

fn ingress_hosts(o: &Value) -> String {
    let hosts: Vec<&str> = o
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| r.get("host").and_then(Value::as_str).unwrap_or("*"))
        .collect();
    if hosts.is_empty() {
        "*".to_owned()
    } else {
        hosts.join(",")
    }
}

fn load_balancer(o: &Value) -> impl Iterator<Item = &Value> {
    o.pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn ingress_address(o: &Value) -> String {
    let addresses: Vec<&str> = load_balancer(o)
        .filter_map(|i| i.get("ip").or(i.get("hostname")).and_then(Value::as_str))
        .collect();
    addresses.join(",")
}

/// The ports the controller serves on: the status's (weir's, not 80
/// here), else kubectl's 80.
fn ingress_ports(o: &Value) -> String {
    let ports: Vec<String> = load_balancer(o)
        .flat_map(|i| {
            i.get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|p| p.get("port").and_then(Value::as_u64))
        .map(|p| p.to_string())
        .collect();
    if ports.is_empty() {
        "80".to_owned()
    } else {
        ports.join(", ")
    }
}

fn rollout_status(o: &Value) -> String {
    match text_at(o, "/status/phase") {
        "" => "Pending".to_owned(),
        phase => phase.to_owned(),
    }
}

fn rollout_step(o: &Value) -> String {
    let steps = o
        .pointer("/spec/steps")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    o.pointer("/status/currentStep")
        .and_then(Value::as_u64)
        .map_or_else(
            || "-".to_owned(),
            |s| {
                format!(
                    "{}/{steps}",
                    usize::try_from(s).unwrap_or(usize::MAX).min(steps)
                )
            },
        )
}

fn rollout_weight(o: &Value) -> String {
    o.pointer("/status/canaryWeight")
        .and_then(Value::as_u64)
        .map_or_else(|| "-".to_owned(), |w| w.to_string())
}

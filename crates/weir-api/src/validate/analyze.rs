//! Problems between resources that Istio and Kubernetes accept but
//! `istioctl analyze` reports (IST0101, IST0132, IST0173, ...): warnings,
//! since the manifests are valid and the gateway answers such traffic the
//! way Envoy does (503 NC, 503 UH).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::diagnostic::{Diagnostic, Severity};
use crate::images::ImageMap;
use crate::istio::{DestinationRuleSpec, IstioObject, VirtualServiceSpec, service_for_host};
use crate::object::Object;
use crate::path::FieldPath;
use crate::resource::Resource;
use crate::rollout::Rollout;
use crate::validate::istio::{MESH_GATEWAY, hosts_overlap};
use crate::validate::unreachable::unreachable_rules;

type Labels = BTreeMap<String, String>;

fn selects(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn pod_labels(d: &Deployment) -> Option<&Labels> {
    d.spec.template.metadata.as_ref()?.labels.as_ref()
}

/// Every pod template (of a Deployment) and WorkloadEntry, with its
/// namespace and labels, indexed by label: built once per analysis, so
/// selector checks across thousands of objects stay near-linear.
struct Pods<'a> {
    all: Vec<(&'a str, Option<&'a Deployment>, &'a Labels)>,
    by_label: HashMap<(&'a str, &'a str), Vec<usize>>,
}

impl<'a> Pods<'a> {
    fn of(objects: &'a [Object]) -> Self {
        static NONE: std::sync::OnceLock<Labels> = std::sync::OnceLock::new();
        let none = NONE.get_or_init(Labels::new);
        let all: Vec<_> = objects
            .iter()
            .filter_map(|o| match &o.resource {
                Resource::Deployment(d) => Some((
                    o.resource.namespace(),
                    Some(&**d),
                    pod_labels(d).unwrap_or(none),
                )),
                Resource::WorkloadEntry(we) => {
                    Some((o.resource.namespace(), None, &we.spec.labels))
                }
                _ => None,
            })
            .collect();
        let mut by_label: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        for (i, (_, _, labels)) in all.iter().enumerate() {
            for (k, v) in labels.iter() {
                by_label
                    .entry((k.as_str(), v.as_str()))
                    .or_default()
                    .push(i);
            }
        }
        Self { all, by_label }
    }

    /// The pods `selector` selects, in `namespace` (any when `None`).
    fn selected<'s>(
        &'s self,
        namespace: Option<&'s str>,
        selector: &'s Labels,
    ) -> Box<dyn Iterator<Item = (Option<&'a Deployment>, &'a Labels)> + 's> {
        let in_ns = move |ns: &str| namespace.is_none_or(|n| n == ns);
        match selector.iter().next() {
            None => Box::new(
                self.all
                    .iter()
                    .filter(move |(ns, _, _)| in_ns(ns))
                    .map(|(_, d, l)| (*d, *l)),
            ),
            Some((k, v)) => Box::new(
                self.by_label
                    .get(&(k.as_str(), v.as_str()))
                    .into_iter()
                    .flatten()
                    .map(|&i| self.all[i])
                    .filter(move |(ns, _, l)| in_ns(ns) && selects(selector, l))
                    .map(|(_, d, l)| (d, l)),
            ),
        }
    }
}

/// What the cross-resource checks look up, built once per analysis:
/// Deployments, Services and DestinationRule subsets by name, pods by
/// label, and the image map.
struct Index<'a> {
    objects: &'a [Object],
    images: &'a ImageMap,
    deployments: Vec<(&'a Object, &'a Deployment)>,
    services: HashMap<(&'a str, &'a str), &'a Service>,
    subsets: HashMap<(String, String), Vec<&'a str>>,
    pods: Pods<'a>,
    empty: Labels,
}

impl<'a> Index<'a> {
    fn of(objects: &'a [Object], images: &'a ImageMap) -> Self {
        let deployments = objects
            .iter()
            .filter_map(|o| match &o.resource {
                Resource::Deployment(d) => Some((o, &**d)),
                _ => None,
            })
            .collect();
        let mut services = HashMap::new();
        let mut subsets: HashMap<(String, String), Vec<&str>> = HashMap::new();
        for o in objects {
            match &o.resource {
                Resource::Service(s) => {
                    services.insert((o.resource.namespace(), o.resource.name()), &**s);
                }
                Resource::DestinationRule(dr) => subsets
                    .entry(service_for_host(&dr.spec.host, o.resource.namespace()))
                    .or_default()
                    .extend(dr.spec.subsets.iter().map(|s| s.name.as_str())),
                _ => {}
            }
        }
        Self {
            objects,
            images,
            deployments,
            services,
            subsets,
            pods: Pods::of(objects),
            empty: Labels::new(),
        }
    }

    /// The ports of Service `ns/name`.
    fn service_ports(&self, ns: &str, name: &str) -> Vec<u32> {
        self.services
            .get(&(ns, name))
            .map(|s| {
                s.spec
                    .iter()
                    .flat_map(|spec| spec.ports.iter().flatten())
                    .filter_map(|p| u32::try_from(p.port).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The selector of Service `ns/name`, if it exists.
    fn service_selector(&self, ns: &str, name: &str) -> Option<&Labels> {
        self.services.get(&(ns, name)).map(|s| {
            s.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .unwrap_or(&self.empty)
        })
    }
}

fn warn(o: &Object, field: FieldPath, message: String) -> Diagnostic {
    o.diagnostic(Severity::Warning, field, message)
}

/// What only weir's embedded runtime needs to hear (a cluster has manual
/// Endpoints and pulls images).
fn warn_embedded(o: &Object, field: FieldPath, message: String) -> Diagnostic {
    Diagnostic {
        embedded_only: true,
        ..warn(o, field, message)
    }
}

/// All cross-resource warnings for a set of objects.
pub fn analyze(objects: &[Object], images: &ImageMap) -> Vec<Diagnostic> {
    let ix = Index::of(objects, images);
    let mut out = Vec::new();
    for o in objects {
        match &o.resource {
            Resource::Service(s) => service(&ix, o, s, &mut out),
            Resource::VirtualService(vs) => {
                virtual_service_gateways(&ix, o, vs, &mut out);
                virtual_service_destinations(&ix, o, vs, &mut out);
            }
            Resource::DestinationRule(dr) => destination_rule(&ix, o, dr, &mut out),
            Resource::HpaV1(_) | Resource::HpaV2(_) => hpa(&ix, o, &mut out),
            Resource::Deployment(d) => deployment_images(&ix, o, d, &mut out),
            Resource::Rollout(ro) => rollout(o, ro, objects, &mut out),
            // Gateways, WorkloadEntries and Ingresses are what others
            // reference; a kind with references of its own adds its check.
            _ => {}
        }
    }
    out
}

/// A Service selects pods, and the container ports its target ports name.
fn service(ix: &Index<'_>, o: &Object, s: &Service, out: &mut Vec<Diagnostic>) {
    let ns = o.resource.namespace();
    let spec = s.spec.clone().unwrap_or_default();
    let selector = spec.selector.unwrap_or_default();
    if selector.is_empty() {
        out.push(warn_embedded(o, FieldPath::parse("spec.selector"), "no selector: weir has no endpoints for this Service (manual Endpoints are not implemented)".into()));
        return;
    }
    let selected: Vec<_> = ix.pods.selected(Some(ns), &selector).collect();
    if selected.is_empty() {
        out.push(warn(
            o,
            FieldPath::parse("spec.selector"),
            format!("selector {} matches no pod template of a Deployment (nor a WorkloadEntry) in these manifests: the Service will have no endpoints", show(&selector)),
        ));
    }
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        if let Some(IntOrString::String(name)) = &port.target_port {
            let declared = selected
                .iter()
                .any(|(d, _)| d.is_none_or(|d| container_port_named(d, name)));
            if !selected.is_empty() && !declared {
                out.push(warn(
                    o,
                    FieldPath::parse("spec.ports").index(i).key("targetPort"),
                    format!("no selected pod declares a container port named {name:?}"),
                ));
            }
        }
    }
}

/// A VirtualService's gateways exist and serve its hosts (IST0101, IST0132).
fn virtual_service_gateways(
    ix: &Index<'_>,
    o: &Object,
    vs: &IstioObject<VirtualServiceSpec>,
    out: &mut Vec<Diagnostic>,
) {
    let ns = o.resource.namespace();
    let gateways = vs.spec.gateways.clone().unwrap_or_default();
    for (i, g) in gateways.iter().enumerate() {
        if g == MESH_GATEWAY {
            continue;
        }
        let (g_ns, g_name) = g.split_once('/').unwrap_or((ns, g));
        let gateway = ix.objects.iter().find_map(|o| match &o.resource {
            Resource::Gateway(gw)
                if o.resource.namespace() == g_ns && o.resource.name() == g_name =>
            {
                Some(gw)
            }
            _ => None,
        });
        let Some(gateway) = gateway else {
            out.push(warn(
                o,
                FieldPath::parse("spec.gateways").index(i),
                format!("Referenced gateway not found: {g:?} (IST0101)"),
            ));
            continue;
        };
        let gw_hosts = gateway_hosts_for(&gateway.spec, g_ns, ns);
        let served = |h: &String| gw_hosts.iter().any(|gh| hosts_overlap(gh, h));
        if !vs.spec.hosts.iter().any(served) {
            out.push(warn(
                o,
                FieldPath::parse("spec.gateways").index(i),
                format!(
                    "one or more host {:?} defined in VirtualService {ns}/{} not found in Gateway {g_ns}/{g_name} (IST0132)",
                    vs.spec.hosts,
                    o.resource.name()
                ),
            ));
        } else {
            for (h, host) in vs.spec.hosts.iter().enumerate() {
                if !served(host) {
                    out.push(warn(
                        o,
                        FieldPath::parse("spec.hosts").index(h),
                        format!("host {host:?} is not among Gateway {g_ns}/{g_name}'s hosts: its listeners will not route it"),
                    ));
                }
            }
        }
    }
}

/// A VirtualService's rules are reachable and its destinations exist: the
/// host, its port, the subset (IST0101).
fn virtual_service_destinations(
    ix: &Index<'_>,
    o: &Object,
    vs: &IstioObject<VirtualServiceSpec>,
    out: &mut Vec<Diagnostic>,
) {
    let ns = o.resource.namespace();
    for (at, message) in unreachable_rules(&vs.spec.http) {
        out.push(warn(o, at, message));
    }
    for (r, rule) in vs.spec.http.iter().enumerate() {
        let rule_at = FieldPath::parse("spec.http").index(r);
        let mut dests: Vec<(FieldPath, &crate::istio::Destination)> = rule
            .route
            .iter()
            .flatten()
            .enumerate()
            .map(|(d, dest)| {
                (
                    rule_at.key("route").index(d).key("destination"),
                    &dest.destination,
                )
            })
            .collect();
        if let Some(m) = &rule.mirror {
            dests.push((rule_at.key("mirror"), m));
        }
        for (at, dest) in dests {
            let (d_ns, d_name) = service_for_host(&dest.host, ns);
            if ix.service_selector(&d_ns, &d_name).is_none() {
                out.push(warn(
                    o,
                    at.key("host"),
                    format!(
                        "Referenced host not found: {:?} (IST0101): requests routed here get 503",
                        dest.host
                    ),
                ));
                continue;
            }
            if let Some(port) = &dest.port
                && !ix.service_ports(&d_ns, &d_name).contains(&port.number)
            {
                out.push(warn(
                    o,
                    at.key("port").key("number"),
                    format!("Referenced host:port not found: \"{}:{}\" (IST0101): requests routed here get 503", dest.host, port.number),
                ));
            }
            let Some(subset) = &dest.subset else { continue };
            let defined = ix
                .subsets
                .get(&(d_ns.clone(), d_name.clone()))
                .is_some_and(|names| names.contains(&subset.as_str()));
            if !defined {
                out.push(warn(
                    o,
                    at.key("subset"),
                    format!("Referenced host+subset in destinationrule not found: \"{}+{subset}\" (IST0101): requests routed here get 503 NC", dest.host),
                ));
            }
        }
    }
}

/// A DestinationRule's host is a Service and each subset selects pods
/// (IST0174, IST0173).
fn destination_rule(
    ix: &Index<'_>,
    o: &Object,
    dr: &IstioObject<DestinationRuleSpec>,
    out: &mut Vec<Diagnostic>,
) {
    let ns = o.resource.namespace();
    let (d_ns, d_name) = service_for_host(&dr.spec.host, ns);
    let Some(selector) = ix.service_selector(&d_ns, &d_name) else {
        out.push(warn(
            o,
            FieldPath::parse("spec.host"),
            format!(
                "The host {:?} defined in the DestinationRule does not match any services in the mesh (IST0174)",
                dr.spec.host
            ),
        ));
        return;
    };
    for (i, subset) in dr.spec.subsets.iter().enumerate() {
        let mut wanted = selector.clone();
        wanted.extend(subset.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        let at = FieldPath::parse("spec.subsets").index(i);
        // Istio looks for a matching pod in every namespace;
        // the Service's endpoints are only those of its own.
        if ix.pods.selected(None, &wanted).next().is_none() {
            out.push(warn(
                o,
                at,
                format!("subset {:?} selects no pods (labels {}): requests routed to it get 503 UH (IST0173)", subset.name, show(&wanted)),
            ));
        } else if ix.pods.selected(Some(&d_ns), &wanted).next().is_none() {
            out.push(warn(
                o,
                at,
                format!("subset {:?} selects pods only outside namespace {d_ns} (labels {}): the Service's endpoints are in {d_ns}, so requests routed to it get 503 UH", subset.name, show(&wanted)),
            ));
        }
    }
}

/// An HPA's target exists, leaves `replicas` to it, and requests CPU.
fn hpa(ix: &Index<'_>, o: &Object, out: &mut Vec<Diagnostic>) {
    let ns = o.resource.namespace();
    let (kind, name) = match &o.resource {
        Resource::HpaV1(h) => Some((
            h.spec.scale_target_ref.kind.clone(),
            h.spec.scale_target_ref.name.clone(),
        )),
        Resource::HpaV2(h) => Some((
            h.spec.scale_target_ref.kind.clone(),
            h.spec.scale_target_ref.name.clone(),
        )),
        _ => None,
    }
    .unwrap_or_default();
    let target = ix
        .deployments
        .iter()
        .find(|(t, _)| t.resource.namespace() == ns && t.resource.name() == name);
    match target {
        None if kind == "Deployment" => out.push(warn(
            o,
            FieldPath::parse("spec.scaleTargetRef.name"),
            format!("Deployment {name:?} not found in these manifests"),
        )),
        None => {}
        Some((t, d)) => {
            if let Some(replicas) = d.spec.replicas {
                out.push(warn(
                    t,
                    FieldPath::parse("spec.replicas"),
                    format!("replicas is set while HorizontalPodAutoscaler {:?} scales this Deployment: every apply sets the count back to {replicas} (the file wins, as with kubectl apply) until the HPA scales it again; leave replicas out and let the HPA own it, as the Kubernetes docs advise", o.resource.name()),
                ));
            }
            for c in d
                .spec
                .template
                .spec
                .iter()
                .flat_map(|p| p.containers.iter())
            {
                let has_cpu = c
                    .resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .is_some_and(|r| r.contains_key("cpu"));
                if !has_cpu {
                    out.push(warn(
                        o,
                        FieldPath::parse("spec.scaleTargetRef"),
                        format!("missing request for cpu in container {:?} of Deployment {name:?}: the autoscaler will not take any action", c.name),
                    ));
                }
            }
        }
    }
}

/// Each container's image has a local program for the embedded runtime.
fn deployment_images(ix: &Index<'_>, o: &Object, d: &Deployment, out: &mut Vec<Diagnostic>) {
    let containers = d
        .spec
        .template
        .spec
        .iter()
        .flat_map(|p| p.containers.iter());
    for (i, c) in containers.enumerate() {
        let image = c.image.clone().unwrap_or_default();
        if !image.is_empty() && ix.images.program_for(&image).is_none() {
            out.push(warn_embedded(
                o,
                FieldPath::parse("spec.template.spec.containers").index(i).key("image"),
                format!("no local program for image {image:?}: add `{image} = PROGRAM` to {} beside the manifests (or `weir up --image`), or the embedded runtime cannot run this pod", crate::images::IMAGE_MAP_FILE),
            ));
        }
    }
}

/// What a Rollout refers to exists and can be shifted.
fn rollout(o: &Object, ro: &Rollout, objects: &[Object], out: &mut Vec<Diagnostic>) {
    let ns = o.resource.namespace();
    let resources = objects.iter().map(|o| &o.resource);
    for p in crate::rollout_references::check_references(ns, o.resource.name(), &ro.spec, resources)
    {
        // An absent object may exist where the manifests are
        // applied; `weir apply` checks again against that.
        let severity = if p.absent {
            Severity::Warning
        } else {
            Severity::Error
        };
        let message = if p.absent {
            format!("{} in these manifests", p.message)
        } else {
            p.message
        };
        out.push(o.diagnostic(severity, p.field, message));
    }
}

/// What a Service or subset can select in `namespace`: Deployments' pod
/// templates and WorkloadEntries (the latter have no Deployment).
fn container_port_named(d: &Deployment, name: &str) -> bool {
    d.spec
        .template
        .spec
        .iter()
        .flat_map(|p| p.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .any(|p| p.name.as_deref() == Some(name))
}

/// A Gateway's server hosts that apply to VirtualServices in `vs_ns`
/// (`ns/host`: `*` is every namespace, `.` the Gateway's own), without
/// their namespace part.
fn gateway_hosts_for<'a>(
    gateway: &'a crate::istio::GatewaySpec,
    gateway_ns: &str,
    vs_ns: &str,
) -> Vec<&'a str> {
    gateway
        .servers
        .iter()
        .flat_map(|s| s.hosts.iter())
        .filter_map(|h| match h.split_once('/') {
            Some(("*", host)) => Some(host),
            Some((".", host)) => (gateway_ns == vs_ns).then_some(host),
            Some((ns, host)) => (ns == vs_ns).then_some(host),
            None => Some(h.as_str()),
        })
        .collect()
}

fn show(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

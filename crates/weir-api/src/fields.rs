//! Which fields of each kind weir implements, which only matter on a
//! cluster (a warning), and which it refuses (an error), so that no field is
//! ever silently ignored.
//!
//! Kubernetes kinds list what weir implements; any other field that
//! Kubernetes knows is refused unless it is listed as cluster-only. Istio
//! kinds are typed for exactly what weir implements (`istio.rs`), so a field
//! those types do not know is classified by the tables here, or else is an
//! unknown field.

use crate::diagnostic::Severity;
use crate::path::{FieldPath, PathPattern};
use crate::validate::Finding;
use crate::yaml::Positions;

const META_IMPLEMENTED: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata.name",
    "metadata.namespace",
    "metadata.labels",
    "metadata.annotations",
];

const META_CLUSTER_ONLY: &[&str] = &["metadata.finalizers", "metadata.ownerReferences"];

/// Fields the API server sets and a manifest should not: they appear when a
/// manifest is saved from `kubectl get -o yaml`. Sent on, they are refused
/// (`managedFields`) or act as a precondition (`resourceVersion`), so weir
/// warns and drops them before sending an object to a cluster.
pub const SERVER_SET_FIELDS: &[&str] = &[
    "metadata.uid",
    "metadata.resourceVersion",
    "metadata.generation",
    "metadata.creationTimestamp",
    "metadata.deletionTimestamp",
    "metadata.deletionGracePeriodSeconds",
    "metadata.managedFields",
    "metadata.selfLink",
    "status",
];

const CONTAINER: &str = "spec.template.spec.containers[]";

const DEPLOYMENT_IMPLEMENTED: &[&str] = &[
    "spec.replicas",
    "spec.paused",
    "spec.selector.matchLabels",
    "spec.strategy.type",
    "spec.strategy.rollingUpdate.maxSurge",
    "spec.strategy.rollingUpdate.maxUnavailable",
    "spec.template.metadata.labels",
    "spec.template.metadata.annotations",
    "spec.template.spec.terminationGracePeriodSeconds",
    "spec.template.spec.restartPolicy",
    "spec.template.spec.containers[].name",
    "spec.template.spec.containers[].image",
    "spec.template.spec.containers[].command",
    "spec.template.spec.containers[].args",
    "spec.template.spec.containers[].workingDir",
    "spec.template.spec.containers[].env[].name",
    "spec.template.spec.containers[].env[].value",
    "spec.template.spec.containers[].ports[].name",
    "spec.template.spec.containers[].ports[].containerPort",
    "spec.template.spec.containers[].ports[].protocol",
    "spec.template.spec.containers[].resources.requests.cpu",
    // Who the container runs as; the rest of securityContext only matters
    // on a cluster.
    "spec.template.spec.securityContext.runAsUser",
    "spec.template.spec.securityContext.runAsGroup",
    "spec.template.spec.securityContext.runAsNonRoot",
    "spec.template.spec.containers[].securityContext.runAsUser",
    "spec.template.spec.containers[].securityContext.runAsGroup",
    "spec.template.spec.containers[].securityContext.runAsNonRoot",
];

const PROBE_FIELDS: &[&str] = &[
    "httpGet.path",
    "httpGet.port",
    "httpGet.host",
    "httpGet.scheme",
    "httpGet.httpHeaders",
    "tcpSocket.port",
    "tcpSocket.host",
    "exec.command",
    "initialDelaySeconds",
    "periodSeconds",
    "timeoutSeconds",
    "successThreshold",
    "failureThreshold",
];

const DEPLOYMENT_CLUSTER_ONLY: &[&str] = &[
    "spec.revisionHistoryLimit",
    "spec.progressDeadlineSeconds",
    "spec.template.metadata.creationTimestamp",
    "spec.template.spec.nodeSelector",
    "spec.template.spec.nodeName",
    "spec.template.spec.affinity",
    "spec.template.spec.tolerations",
    "spec.template.spec.topologySpreadConstraints",
    "spec.template.spec.priorityClassName",
    "spec.template.spec.priority",
    "spec.template.spec.preemptionPolicy",
    "spec.template.spec.schedulerName",
    "spec.template.spec.runtimeClassName",
    "spec.template.spec.serviceAccountName",
    "spec.template.spec.serviceAccount",
    "spec.template.spec.automountServiceAccountToken",
    "spec.template.spec.securityContext.fsGroup",
    "spec.template.spec.securityContext.fsGroupChangePolicy",
    "spec.template.spec.securityContext.supplementalGroups",
    "spec.template.spec.securityContext.supplementalGroupsPolicy",
    "spec.template.spec.securityContext.sysctls",
    "spec.template.spec.securityContext.seccompProfile",
    "spec.template.spec.securityContext.seLinuxOptions",
    "spec.template.spec.securityContext.seLinuxChangePolicy",
    "spec.template.spec.securityContext.appArmorProfile",
    "spec.template.spec.securityContext.windowsOptions",
    "spec.template.spec.imagePullSecrets",
    "spec.template.spec.dnsPolicy",
    "spec.template.spec.dnsConfig",
    "spec.template.spec.enableServiceLinks",
    "spec.template.spec.containers[].imagePullPolicy",
    "spec.template.spec.containers[].securityContext.privileged",
    "spec.template.spec.containers[].securityContext.allowPrivilegeEscalation",
    "spec.template.spec.containers[].securityContext.capabilities",
    "spec.template.spec.containers[].securityContext.readOnlyRootFilesystem",
    "spec.template.spec.containers[].securityContext.seccompProfile",
    "spec.template.spec.containers[].securityContext.seLinuxOptions",
    "spec.template.spec.containers[].securityContext.appArmorProfile",
    "spec.template.spec.containers[].securityContext.procMount",
    "spec.template.spec.containers[].securityContext.windowsOptions",
    "spec.template.spec.containers[].resources.limits",
    "spec.template.spec.containers[].resources.requests.memory",
    "spec.template.spec.containers[].resources.requests.ephemeral-storage",
    "spec.template.spec.containers[].terminationMessagePath",
    "spec.template.spec.containers[].terminationMessagePolicy",
    "spec.template.spec.containers[].ports[].hostPort",
    "spec.template.spec.containers[].ports[].hostIP",
];

const SERVICE_IMPLEMENTED: &[&str] = &[
    "spec.selector",
    "spec.type",
    "spec.ports[].name",
    "spec.ports[].port",
    "spec.ports[].targetPort",
    "spec.ports[].protocol",
    "spec.ports[].nodePort",
    "spec.sessionAffinity",
];

const SERVICE_CLUSTER_ONLY: &[&str] = &[
    "spec.ports[].appProtocol",
    "spec.clusterIP",
    "spec.clusterIPs",
    "spec.externalIPs",
    "spec.externalTrafficPolicy",
    "spec.internalTrafficPolicy",
    "spec.ipFamilies",
    "spec.ipFamilyPolicy",
    "spec.loadBalancerIP",
    "spec.loadBalancerClass",
    "spec.loadBalancerSourceRanges",
    "spec.allocateLoadBalancerNodePorts",
    "spec.sessionAffinityConfig",
];

const HPA_TARGET: &[&str] = &[
    "spec.scaleTargetRef.apiVersion",
    "spec.scaleTargetRef.kind",
    "spec.scaleTargetRef.name",
    "spec.minReplicas",
    "spec.maxReplicas",
];

const HPA_V1_IMPLEMENTED: &[&str] = &["spec.targetCPUUtilizationPercentage"];

const HPA_V2_IMPLEMENTED: &[&str] = &[
    "spec.metrics[].type",
    "spec.metrics[].resource.name",
    "spec.metrics[].resource.target.type",
    "spec.metrics[].resource.target.averageUtilization",
    "spec.metrics[].resource.target.averageValue",
    "spec.behavior.scaleUp.stabilizationWindowSeconds",
    "spec.behavior.scaleUp.selectPolicy",
    "spec.behavior.scaleUp.policies",
    "spec.behavior.scaleUp.tolerance",
    "spec.behavior.scaleDown.stabilizationWindowSeconds",
    "spec.behavior.scaleDown.selectPolicy",
    "spec.behavior.scaleDown.policies",
    "spec.behavior.scaleDown.tolerance",
];

const VIRTUAL_SERVICE_CLUSTER_ONLY: &[&str] = &["spec.exportTo", "spec.http[].match[].statPrefix"];

const VIRTUAL_SERVICE_REFUSED: &[&str] = &[
    "spec.tcp",
    "spec.tls",
    "spec.http[].delegate",
    "spec.http[].rewrite",
    "spec.http[].corsPolicy",
    "spec.http[].websocketUpgrade",
    "spec.http[].match[].sourceLabels",
    "spec.http[].match[].sourceNamespace",
    "spec.http[].fault.delay.exponentialDelay",
    "spec.http[].fault.abort.grpcStatus",
    "spec.http[].fault.abort.http2Error",
    "spec.http[].retries.retryRemoteLocalities",
];

const DESTINATION_RULE_CLUSTER_ONLY: &[&str] = &[
    "spec.exportTo",
    "spec.workloadSelector",
    "spec.trafficPolicy.tls",
    "spec.subsets[].trafficPolicy.tls",
    "spec.trafficPolicy.loadBalancer.localityLbSetting",
    "spec.subsets[].trafficPolicy.loadBalancer.localityLbSetting",
];

const DESTINATION_RULE_REFUSED: &[&str] = &[
    "spec.trafficPolicy.connectionPool",
    "spec.trafficPolicy.outlierDetection",
    "spec.trafficPolicy.portLevelSettings",
    "spec.trafficPolicy.tunnel",
    "spec.trafficPolicy.proxyProtocol",
    "spec.trafficPolicy.retryBudget",
    "spec.trafficPolicy.loadBalancer.warmupDurationSecs",
    "spec.trafficPolicy.loadBalancer.warmup",
    "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes",
    "spec.subsets[].trafficPolicy.connectionPool",
    "spec.subsets[].trafficPolicy.outlierDetection",
    "spec.subsets[].trafficPolicy.portLevelSettings",
    "spec.subsets[].trafficPolicy.tunnel",
    "spec.subsets[].trafficPolicy.proxyProtocol",
    "spec.subsets[].trafficPolicy.retryBudget",
    "spec.subsets[].trafficPolicy.loadBalancer.warmupDurationSecs",
    "spec.subsets[].trafficPolicy.loadBalancer.warmup",
    "spec.subsets[].trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes",
];

const INGRESS_IMPLEMENTED: &[&str] = &[
    "spec.ingressClassName",
    "spec.defaultBackend.service.name",
    "spec.defaultBackend.service.port.number",
    "spec.defaultBackend.service.port.name",
    "spec.rules[].host",
    "spec.rules[].http.paths[].path",
    "spec.rules[].http.paths[].pathType",
    "spec.rules[].http.paths[].backend.service.name",
    "spec.rules[].http.paths[].backend.service.port.number",
    "spec.rules[].http.paths[].backend.service.port.name",
];

const LEGACY_INGRESS_IMPLEMENTED: &[&str] = &[
    "spec.ingressClassName",
    "spec.backend.serviceName",
    "spec.backend.servicePort",
    "spec.rules[].host",
    "spec.rules[].http.paths[].path",
    "spec.rules[].http.paths[].pathType",
    "spec.rules[].http.paths[].backend.serviceName",
    "spec.rules[].http.paths[].backend.servicePort",
];

const GATEWAY_REFUSED: &[&str] = &["spec.servers[].tls", "spec.servers[].defaultEndpoint"];

struct Tables {
    implemented: Vec<PathPattern>,
    cluster_only: Vec<PathPattern>,
    server_set: Vec<PathPattern>,
    refused: Vec<PathPattern>,
}

fn patterns(lists: &[&[&str]]) -> Vec<PathPattern> {
    lists
        .iter()
        .flat_map(|l| l.iter())
        .map(|p| PathPattern::parse(p))
        .collect()
}

/// One schema's fields: what weir implements, what only matters on a
/// cluster (a warning), and what it refuses (an error). Each schema in
/// `kinds.rs` names its table.
pub struct FieldTable {
    /// Implemented fields (beyond metadata's).
    pub implemented: &'static [&'static [&'static str]],
    /// Whether the pod template's probe fields are implemented too.
    pub probes: bool,
    /// Fields that only matter on a cluster.
    pub cluster_only: &'static [&'static str],
    /// Fields a type holds but weir refuses.
    pub refused: &'static [&'static str],
}

/// apps/v1 Deployment.
pub const DEPLOYMENT: FieldTable = FieldTable {
    implemented: &[DEPLOYMENT_IMPLEMENTED],
    probes: true,
    cluster_only: DEPLOYMENT_CLUSTER_ONLY,
    refused: &[],
};

/// v1 Service.
pub const SERVICE: FieldTable = FieldTable {
    implemented: &[SERVICE_IMPLEMENTED],
    probes: false,
    cluster_only: SERVICE_CLUSTER_ONLY,
    refused: &[],
};

/// autoscaling/v1 HorizontalPodAutoscaler.
pub const HPA_V1: FieldTable = FieldTable {
    implemented: &[HPA_TARGET, HPA_V1_IMPLEMENTED],
    probes: false,
    cluster_only: &[],
    refused: &[],
};

/// autoscaling/v2 HorizontalPodAutoscaler.
pub const HPA_V2: FieldTable = FieldTable {
    implemented: &[HPA_TARGET, HPA_V2_IMPLEMENTED],
    probes: false,
    cluster_only: &[],
    refused: &[],
};

/// A kind typed for exactly what weir implements (Istio's, the Rollout):
/// its whole spec passes to the type, which names what it does not know.
const TYPED_SPEC: &[&[&str]] = &[&["spec"]];

/// networking.istio.io Gateway.
pub const GATEWAY: FieldTable = FieldTable {
    implemented: TYPED_SPEC,
    probes: false,
    cluster_only: &[],
    refused: GATEWAY_REFUSED,
};

/// networking.istio.io VirtualService.
pub const VIRTUAL_SERVICE: FieldTable = FieldTable {
    implemented: TYPED_SPEC,
    probes: false,
    cluster_only: VIRTUAL_SERVICE_CLUSTER_ONLY,
    refused: VIRTUAL_SERVICE_REFUSED,
};

/// networking.istio.io DestinationRule.
pub const DESTINATION_RULE: FieldTable = FieldTable {
    implemented: TYPED_SPEC,
    probes: false,
    cluster_only: DESTINATION_RULE_CLUSTER_ONLY,
    refused: DESTINATION_RULE_REFUSED,
};

/// networking.istio.io WorkloadEntry.
pub const WORKLOAD_ENTRY: FieldTable = FieldTable {
    implemented: TYPED_SPEC,
    probes: false,
    cluster_only: &["spec.network", "spec.locality", "spec.serviceAccount"],
    refused: &["spec.weight"],
};

/// weir.dev Rollout: typed for exactly its fields; its status is the
/// runtime's.
pub const ROLLOUT: FieldTable = FieldTable {
    implemented: TYPED_SPEC,
    probes: false,
    cluster_only: &[],
    refused: &[],
};

/// networking.k8s.io/v1 Ingress.
pub const INGRESS: FieldTable = FieldTable {
    implemented: &[INGRESS_IMPLEMENTED],
    probes: false,
    cluster_only: &[],
    refused: &[],
};

/// extensions/v1beta1 and networking.k8s.io/v1beta1 Ingress.
pub const LEGACY_INGRESS: FieldTable = FieldTable {
    implemented: &[LEGACY_INGRESS_IMPLEMENTED],
    probes: false,
    cluster_only: &[],
    refused: &[],
};

fn tables(table: &FieldTable) -> Tables {
    let probes: Vec<String> = ["livenessProbe", "readinessProbe"]
        .iter()
        .filter(|_| table.probes)
        .flat_map(|probe| {
            PROBE_FIELDS
                .iter()
                .map(move |f| format!("{CONTAINER}.{probe}.{f}"))
        })
        .collect();
    let probes: Vec<&str> = probes.iter().map(String::as_str).collect();
    let mut implemented_lists = vec![META_IMPLEMENTED, &probes];
    implemented_lists.extend(table.implemented);
    Tables {
        implemented: patterns(&implemented_lists),
        cluster_only: patterns(&[META_CLUSTER_ONLY, table.cluster_only]),
        server_set: patterns(&[SERVER_SET_FIELDS]),
        refused: patterns(&[table.refused]),
    }
}

/// Classifies every field present in a document: implemented fields pass,
/// cluster-only ones warn, the rest are errors.
pub fn check(table: &FieldTable, positions: &Positions, ignored: &[FieldPath]) -> Vec<Finding> {
    let tables = tables(table);
    let mut findings: Vec<Finding> = Vec::new();
    let mut reported: Vec<FieldPath> = Vec::new();
    for path in &positions.fields() {
        if reported.iter().any(|r| path.starts_with(r)) {
            continue;
        }
        let unknown_to_type = ignored.iter().any(|i| path.starts_with(i));
        let implemented = tables
            .implemented
            .iter()
            .any(|p| p.covers(path) || p.passes_through(path));
        let cluster_only = tables.cluster_only.iter().any(|p| p.covers(path));
        let server_set = tables.server_set.iter().any(|p| p.covers(path));
        if implemented && !unknown_to_type && !cluster_only && !server_set {
            continue;
        }
        let name = crate::yaml::last_key(path);
        let (severity, message) = if server_set {
            (
                Severity::Warning,
                format!(
                    "{name:?} is set by the API server, not by a manifest (saved from `kubectl get -o yaml`?): weir drops it"
                ),
            )
        } else if cluster_only {
            (
                Severity::Warning,
                "only matters on a Kubernetes cluster; weir's embedded runtime ignores it"
                    .to_owned(),
            )
        } else if tables.refused.iter().any(|p| p.covers(path)) || !unknown_to_type {
            (
                Severity::Error,
                format!(
                    "{name:?} is not implemented by weir; it would change how traffic is routed or pods are run, so weir refuses it rather than ignore it"
                ),
            )
        } else {
            (Severity::Error, format!("unknown field {name:?}"))
        };
        findings.push(Finding {
            severity,
            field: path.clone(),
            message,
            embedded_only: cluster_only,
        });
        reported.push(path.clone());
    }
    findings
}

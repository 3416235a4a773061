//! The resources weir loads, the kinds it lists, and references to objects.

use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::{v1 as hpa_v1, v2 as hpa_v2};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::istio::{
    DestinationRuleSpec, GatewaySpec, IstioObject, VirtualServiceSpec, WorkloadEntrySpec,
};
use crate::rollout::Rollout;

/// The namespace of an object whose manifest names none, as kubectl assumes.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One object from a manifest, typed by its kind and apiVersion.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Resource {
    /// `v1 Service`.
    Service(Box<Service>),
    /// `apps/v1 Deployment`.
    Deployment(Box<Deployment>),
    /// `autoscaling/v1 HorizontalPodAutoscaler` (CPU utilization only).
    HpaV1(Box<hpa_v1::HorizontalPodAutoscaler>),
    /// `autoscaling/v2 HorizontalPodAutoscaler`.
    HpaV2(Box<hpa_v2::HorizontalPodAutoscaler>),
    /// `networking.istio.io Gateway`.
    Gateway(IstioObject<GatewaySpec>),
    /// `networking.istio.io VirtualService`.
    VirtualService(IstioObject<VirtualServiceSpec>),
    /// `networking.istio.io DestinationRule`.
    DestinationRule(IstioObject<DestinationRuleSpec>),
    /// `networking.istio.io WorkloadEntry`: a static endpoint.
    WorkloadEntry(IstioObject<WorkloadEntrySpec>),
    /// `weir.dev Rollout`: an automated canary over a VirtualService rule.
    Rollout(Rollout),
    /// `networking.k8s.io/v1 Ingress` (the removed `extensions/v1beta1`
    /// shape is read into it).
    Ingress(Box<Ingress>),
}

impl Resource {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::Service(_) => Kind::Service,
            Resource::Deployment(_) => Kind::Deployment,
            Resource::HpaV1(_) | Resource::HpaV2(_) => Kind::HorizontalPodAutoscaler,
            Resource::Gateway(_) => Kind::Gateway,
            Resource::VirtualService(_) => Kind::VirtualService,
            Resource::DestinationRule(_) => Kind::DestinationRule,
            Resource::WorkloadEntry(_) => Kind::WorkloadEntry,
            Resource::Rollout(_) => Kind::Rollout,
            Resource::Ingress(_) => Kind::Ingress,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Resource::Service(r) => &r.metadata,
            Resource::Deployment(r) => &r.metadata,
            Resource::HpaV1(r) => &r.metadata,
            Resource::HpaV2(r) => &r.metadata,
            Resource::Gateway(r) => &r.metadata,
            Resource::VirtualService(r) => &r.metadata,
            Resource::DestinationRule(r) => &r.metadata,
            Resource::WorkloadEntry(r) => &r.metadata,
            Resource::Rollout(r) => &r.metadata,
            Resource::Ingress(r) => &r.metadata,
        }
    }

    /// The object's name (empty only before validation has run).
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// The object's namespace, `default` when the manifest names none.
    pub fn namespace(&self) -> &str {
        self.metadata()
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_NAMESPACE)
    }

    /// A reference to this object.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind(),
            namespace: self.namespace().to_owned(),
            name: self.name().to_owned(),
        }
    }
}

/// The kinds `weir get` and the backends know, with kubectl's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// Pods: created by Deployments, never loaded from manifests.
    Pod,
    /// Deployments.
    Deployment,
    /// Services.
    Service,
    /// HorizontalPodAutoscalers.
    HorizontalPodAutoscaler,
    /// Istio Gateways.
    Gateway,
    /// Istio VirtualServices.
    VirtualService,
    /// Istio DestinationRules.
    DestinationRule,
    /// Istio WorkloadEntries (static endpoints).
    WorkloadEntry,
    /// weir's Rollouts.
    Rollout,
    /// Ingresses (served by weir's ingress controller).
    Ingress,
}

impl Kind {
    /// Whether the kind is one of Istio's (`networking.istio.io`).
    pub fn is_istio(self) -> bool {
        matches!(
            self,
            Kind::Gateway | Kind::VirtualService | Kind::DestinationRule | Kind::WorkloadEntry
        )
    }

    /// Whether a cluster serves the kind from a CustomResourceDefinition
    /// (Istio's kinds and weir's Rollout), which has no strategic merge.
    pub fn is_custom_resource(self) -> bool {
        self.is_istio() || self == Kind::Rollout
    }

    /// Every kind (what a kind name is looked up among).
    pub const ALL: [Kind; 10] = [
        Kind::Pod,
        Kind::Service,
        Kind::Deployment,
        Kind::HorizontalPodAutoscaler,
        Kind::Gateway,
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::WorkloadEntry,
        Kind::Rollout,
        Kind::Ingress,
    ];

    /// The kind as manifests write it (`Deployment`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Deployment => "Deployment",
            Kind::Service => "Service",
            Kind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            Kind::Gateway => "Gateway",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::Rollout => "Rollout",
            Kind::Ingress => "Ingress",
        }
    }

    /// kubectl's `resource.group` form (`deployment.apps`), used when
    /// printing `kind/name`.
    pub fn qualified(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::Deployment => "deployment.apps",
            Kind::Service => "service",
            Kind::HorizontalPodAutoscaler => "horizontalpodautoscaler.autoscaling",
            Kind::Gateway => "gateway.networking.istio.io",
            Kind::VirtualService => "virtualservice.networking.istio.io",
            Kind::DestinationRule => "destinationrule.networking.istio.io",
            Kind::WorkloadEntry => "workloadentry.networking.istio.io",
            Kind::Rollout => "rollout.weir.dev",
            Kind::Ingress => "ingress.networking.k8s.io",
        }
    }

    /// The names kubectl accepts for the kind: singular, plural, short.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Kind::Pod => &["pod", "pods", "po"],
            Kind::Deployment => &["deployment", "deployments", "deploy"],
            Kind::Service => &["service", "services", "svc"],
            Kind::HorizontalPodAutoscaler => {
                &["horizontalpodautoscaler", "horizontalpodautoscalers", "hpa"]
            }
            Kind::Gateway => &["gateway", "gateways", "gw"],
            Kind::VirtualService => &["virtualservice", "virtualservices", "vs"],
            Kind::DestinationRule => &["destinationrule", "destinationrules", "dr"],
            Kind::WorkloadEntry => &["workloadentry", "workloadentries", "we"],
            Kind::Rollout => &["rollout", "rollouts", "ro"],
            Kind::Ingress => &["ingress", "ingresses", "ing"],
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A kind name that is none of [`Kind`]'s.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server doesn't have a resource type {0:?} (known: pods, deployments, services, hpa, ingresses, gateways, virtualservices, destinationrules, rollouts)"
)]
pub struct UnknownKind(String);

impl FromStr for Kind {
    type Err = UnknownKind;

    /// Accepts kubectl's names, case-insensitively, with or without the group
    /// (`deployments.apps`, `vs`, `VirtualService`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.to_ascii_lowercase();
        let bare = lower.split('.').next().unwrap_or_default();
        Kind::ALL
            .into_iter()
            .find(|k| k.aliases().contains(&bare))
            .ok_or_else(|| UnknownKind(text.to_owned()))
    }
}

/// Names one object: kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The kind.
    pub kind: Kind,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.qualified(), self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_kind_names() {
        assert_eq!("po".parse::<Kind>().unwrap(), Kind::Pod);
        assert_eq!(
            "deployments.apps".parse::<Kind>().unwrap(),
            Kind::Deployment
        );
        assert_eq!(
            "HPA".parse::<Kind>().unwrap(),
            Kind::HorizontalPodAutoscaler
        );
        assert_eq!(
            "VirtualService".parse::<Kind>().unwrap(),
            Kind::VirtualService
        );
        assert_eq!("dr".parse::<Kind>().unwrap(), Kind::DestinationRule);
        assert!("widgets".parse::<Kind>().is_err());
    }
}

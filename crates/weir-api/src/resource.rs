//! Every kind weir knows, declared once, and references to objects. From
//! the one table here follow the kind list ([`Kind`], with kubectl's names
//! and where a cluster serves it), the typed objects manifests load into
//! ([`Resource`], with their validation), and the schemas documents are
//! read with ([`Schema`]: which `apiVersion`s, which Rust type, which field
//! table). A new kind is one entry here, its type, its field table and its
//! validation.

use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::{v1 as hpa_v1, v2 as hpa_v2};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::fields::{self, FieldTable};
use crate::ingress::{LEGACY_API_VERSIONS, LegacyIngress};
use crate::istio::{
    DestinationRuleSpec, GatewaySpec, IstioObject, VirtualServiceSpec, WorkloadEntrySpec,
};
use crate::path::FieldPath;
use crate::rollout::{self, Rollout};
use crate::validate::{self, Findings};
use crate::yaml;

/// The `apiVersion`s Istio's kinds are read at.
const ISTIO_API_VERSIONS: &[&str] = &[
    "networking.istio.io/v1alpha3",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1",
];

/// How a cluster serves a kind, which decides how it is patched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServedBy {
    /// Kubernetes itself: strategic merge patches.
    Kubernetes,
    /// Istio's CustomResourceDefinitions.
    Istio,
    /// weir's own CustomResourceDefinition.
    Weir,
}

/// Generates [`Kind`], [`Resource`] and [`Schema`] from one table.
macro_rules! declare_kinds {
    (
        $(
            $(#[doc = $kind_doc:literal])*
            $kind:ident {
                api: ($group:literal, $read_version:literal, $plural:literal, $qualified:literal),
                names: [$($alias:literal),+],
                served_by: $served_by:ident,
                shapes_routes: $shapes_routes:literal,
                resources: [$(
                    $(#[doc = $resource_doc:literal])*
                    $resource:ident($resource_type:ty) checked by $check:expr
                ),*],
                schemas: [$(
                    $(#[doc = $schema_doc:literal])*
                    $schema:ident: $api_versions:expr => $read:ty, into $into:expr, fields $fields:expr
                ),*],
            }
        )*
    ) => {
        /// The kinds `weir get` and the backends know, with kubectl's names.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Kind {
            $($(#[doc = $kind_doc])* $kind,)*
        }

        impl Kind {
            /// Every kind (what a kind name is looked up among).
            pub const ALL: &[Kind] = &[$(Kind::$kind),*];

            /// The kind as manifests write it (`Deployment`).
            pub fn name(self) -> &'static str {
                match self {
                    $(Kind::$kind => stringify!($kind),)*
                }
            }

            /// The API group a cluster serves the kind in (`""`: core).
            pub fn group(self) -> &'static str {
                match self {
                    $(Kind::$kind => $group,)*
                }
            }

            /// The version weir reads the kind at from a cluster.
            pub fn read_version(self) -> &'static str {
                match self {
                    $(Kind::$kind => $read_version,)*
                }
            }

            /// The resource's plural, as in its API path (`deployments`).
            pub fn plural(self) -> &'static str {
                match self {
                    $(Kind::$kind => $plural,)*
                }
            }

            /// kubectl's `resource.group` form (`deployment.apps`), used
            /// when printing `kind/name`.
            pub fn qualified(self) -> &'static str {
                match self {
                    $(Kind::$kind => $qualified,)*
                }
            }

            /// The names kubectl accepts for the kind: singular, plural,
            /// short.
            pub fn aliases(self) -> &'static [&'static str] {
                match self {
                    $(Kind::$kind => &[$($alias),+],)*
                }
            }

            /// Who serves the kind on a cluster.
            pub fn served_by(self) -> ServedBy {
                match self {
                    $(Kind::$kind => ServedBy::$served_by,)*
                }
            }

            /// Whether objects of the kind decide the gateway's routes.
            pub fn shapes_routes(self) -> bool {
                match self {
                    $(Kind::$kind => $shapes_routes,)*
                }
            }
        }

        /// One object from a manifest, typed by its kind and apiVersion.
        #[derive(Clone, Debug, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum Resource {
            $($($(#[doc = $resource_doc])* $resource($resource_type),)*)*
        }

        impl Resource {
            /// The object's kind.
            pub fn kind(&self) -> Kind {
                match self {
                    $($(Resource::$resource(_) => Kind::$kind,)*)*
                }
            }

            /// The object's metadata.
            pub fn metadata(&self) -> &ObjectMeta {
                match self {
                    $($(Resource::$resource(r) => &r.metadata,)*)*
                }
            }

            /// Checks the object's own fields (not its references to
            /// others: those are `validate::analyze`'s).
            pub fn check(&self, out: &mut Findings) {
                match self {
                    $($(Resource::$resource(r) => ($check)(r, out),)*)*
                }
            }
        }

        /// The schema a document is read with: an `apiVersion` and kind.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Schema {
            $($($(#[doc = $schema_doc])* $schema,)*)*
        }

        impl Schema {
            /// The schema for an `apiVersion` and kind, or `None` if weir
            /// has none.
            pub fn for_manifest(api_version: &str, kind: &str) -> Option<Schema> {
                $($(
                    if kind == stringify!($kind) && $api_versions.contains(&api_version) {
                        return Some(Schema::$schema);
                    }
                )*)*
                None
            }

            /// The kind this schema reads.
            pub fn kind(self) -> Kind {
                match self {
                    $($(Schema::$schema => Kind::$kind,)*)*
                }
            }

            /// Which of its fields weir implements, warns about, refuses.
            pub fn fields(self) -> &'static FieldTable {
                match self {
                    $($(Schema::$schema => &$fields,)*)*
                }
            }

            /// The document as this schema's type, with the fields the
            /// type ignored.
            pub fn read(self, text: &str) -> Result<(Resource, Vec<FieldPath>), yaml::TypeError> {
                match self {
                    $($(Schema::$schema => yaml::deserialize::<$read>(text)
                        .map(|typed| (($into)(typed.value), typed.ignored)),)*)*
                }
            }
        }
    };
}

declare_kinds! {
    /// Pods: created by Deployments, never loaded from manifests.
    Pod {
        api: ("", "v1", "pods", "pod"),
        names: ["pod", "pods", "po"],
        served_by: Kubernetes,
        shapes_routes: false,
        resources: [],
        schemas: [],
    }
    /// Deployments.
    Deployment {
        api: ("apps", "v1", "deployments", "deployment.apps"),
        names: ["deployment", "deployments", "deploy"],
        served_by: Kubernetes,
        shapes_routes: false,
        resources: [
            /// `apps/v1 Deployment`.
            Deployment(Box<Deployment>) checked by validate::kube::deployment
        ],
        schemas: [
            /// apps/v1 Deployment.
            Deployment: ["apps/v1"] => Deployment,
                into |d| Resource::Deployment(Box::new(d)), fields fields::DEPLOYMENT
        ],
    }
    /// Services.
    Service {
        api: ("", "v1", "services", "service"),
        names: ["service", "services", "svc"],
        served_by: Kubernetes,
        shapes_routes: true,
        resources: [
            /// `v1 Service`.
            Service(Box<Service>) checked by validate::kube::service
        ],
        schemas: [
            /// v1 Service.
            Service: ["v1"] => Service,
                into |s| Resource::Service(Box::new(s)), fields fields::SERVICE
        ],
    }
    /// HorizontalPodAutoscalers, read from a cluster as `autoscaling/v1`,
    /// the shape the embedded runtime reports, so `weir get hpa` shows the
    /// same columns on both backends.
    HorizontalPodAutoscaler {
        api: ("autoscaling", "v1", "horizontalpodautoscalers", "horizontalpodautoscaler.autoscaling"),
        names: ["horizontalpodautoscaler", "horizontalpodautoscalers", "hpa"],
        served_by: Kubernetes,
        shapes_routes: false,
        resources: [
            /// `autoscaling/v1 HorizontalPodAutoscaler` (CPU utilization only).
            HpaV1(Box<hpa_v1::HorizontalPodAutoscaler>) checked by validate::kube::hpa_v1,
            /// `autoscaling/v2 HorizontalPodAutoscaler`.
            HpaV2(Box<hpa_v2::HorizontalPodAutoscaler>) checked by validate::kube::hpa_v2
        ],
        schemas: [
            /// autoscaling/v1 HorizontalPodAutoscaler.
            HpaV1: ["autoscaling/v1"] => hpa_v1::HorizontalPodAutoscaler,
                into |h| Resource::HpaV1(Box::new(h)), fields fields::HPA_V1,
            /// autoscaling/v2 HorizontalPodAutoscaler.
            HpaV2: ["autoscaling/v2"] => hpa_v2::HorizontalPodAutoscaler,
                into |h| Resource::HpaV2(Box::new(h)), fields fields::HPA_V2
        ],
    }
    /// Istio Gateways.
    Gateway {
        api: ("networking.istio.io", "v1", "gateways", "gateway.networking.istio.io"),
        names: ["gateway", "gateways", "gw"],
        served_by: Istio,
        shapes_routes: true,
        resources: [
            /// `networking.istio.io Gateway`.
            Gateway(IstioObject<GatewaySpec>) checked by
                |g: &IstioObject<GatewaySpec>, out| validate::istio::gateway(
                    g.metadata.name.as_deref().unwrap_or_default(), &g.spec, out)
        ],
        schemas: [
            /// networking.istio.io Gateway.
            Gateway: ISTIO_API_VERSIONS => IstioObject<GatewaySpec>,
                into Resource::Gateway, fields fields::GATEWAY
        ],
    }
    /// Istio VirtualServices.
    VirtualService {
        api: ("networking.istio.io", "v1", "virtualservices", "virtualservice.networking.istio.io"),
        names: ["virtualservice", "virtualservices", "vs"],
        served_by: Istio,
        shapes_routes: true,
        resources: [
            /// `networking.istio.io VirtualService`.
            VirtualService(IstioObject<VirtualServiceSpec>) checked by
                |vs: &IstioObject<VirtualServiceSpec>, out| validate::istio::virtual_service(
                    &vs.spec, &vs.api_version, out)
        ],
        schemas: [
            /// networking.istio.io VirtualService.
            VirtualService: ISTIO_API_VERSIONS => IstioObject<VirtualServiceSpec>,
                into Resource::VirtualService, fields fields::VIRTUAL_SERVICE
        ],
    }
    /// Istio DestinationRules.
    DestinationRule {
        api: ("networking.istio.io", "v1", "destinationrules", "destinationrule.networking.istio.io"),
        names: ["destinationrule", "destinationrules", "dr"],
        served_by: Istio,
        shapes_routes: true,
        resources: [
            /// `networking.istio.io DestinationRule`.
            DestinationRule(IstioObject<DestinationRuleSpec>) checked by
                |dr: &IstioObject<DestinationRuleSpec>, out| validate::istio::destination_rule(
                    &dr.spec, out)
        ],
        schemas: [
            /// networking.istio.io DestinationRule.
            DestinationRule: ISTIO_API_VERSIONS => IstioObject<DestinationRuleSpec>,
                into Resource::DestinationRule, fields fields::DESTINATION_RULE
        ],
    }
    /// Istio WorkloadEntries (static endpoints).
    WorkloadEntry {
        api: ("networking.istio.io", "v1", "workloadentries", "workloadentry.networking.istio.io"),
        names: ["workloadentry", "workloadentries", "we"],
        served_by: Istio,
        shapes_routes: false,
        resources: [
            /// `networking.istio.io WorkloadEntry`: a static endpoint.
            WorkloadEntry(IstioObject<WorkloadEntrySpec>) checked by
                |we: &IstioObject<WorkloadEntrySpec>, out| validate::istio::workload_entry(
                    &we.spec, out)
        ],
        schemas: [
            /// networking.istio.io WorkloadEntry.
            WorkloadEntry: ISTIO_API_VERSIONS => IstioObject<WorkloadEntrySpec>,
                into Resource::WorkloadEntry, fields fields::WORKLOAD_ENTRY
        ],
    }
    /// weir's Rollouts (its CustomResourceDefinition is not installed by
    /// weir yet: a cluster answers that it does not serve it).
    Rollout {
        api: ("weir.dev", "v1alpha1", "rollouts", "rollout.weir.dev"),
        names: ["rollout", "rollouts", "ro"],
        served_by: Weir,
        shapes_routes: false,
        resources: [
            /// `weir.dev Rollout`: an automated canary over a VirtualService
            /// rule.
            Rollout(Rollout) checked by
                |ro: &Rollout, out| validate::rollout::rollout(&ro.spec, out)
        ],
        schemas: [
            /// weir.dev/v1alpha1 Rollout.
            Rollout: [rollout::API_VERSION] => Rollout,
                into Resource::Rollout, fields fields::ROLLOUT
        ],
    }
    /// Ingresses (served by weir's ingress controller).
    Ingress {
        api: ("networking.k8s.io", "v1", "ingresses", "ingress.networking.k8s.io"),
        names: ["ingress", "ingresses", "ing"],
        served_by: Kubernetes,
        shapes_routes: true,
        resources: [
            /// `networking.k8s.io/v1 Ingress` (the removed
            /// `extensions/v1beta1` shape is read into it).
            Ingress(Box<Ingress>) checked by validate::ingress::ingress
        ],
        schemas: [
            /// networking.k8s.io/v1 Ingress.
            Ingress: ["networking.k8s.io/v1"] => Ingress,
                into |i| Resource::Ingress(Box::new(i)), fields fields::INGRESS,
            /// extensions/v1beta1 and networking.k8s.io/v1beta1 Ingress.
            LegacyIngress: LEGACY_API_VERSIONS => LegacyIngress,
                into |i: LegacyIngress| Resource::Ingress(Box::new(i.into_v1())),
                fields fields::LEGACY_INGRESS
        ],
    }
}

/// The namespace of an object whose manifest names none, as kubectl assumes.
pub const DEFAULT_NAMESPACE: &str = "default";

impl Resource {
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

impl Kind {
    /// Whether the kind is one of Istio's (`networking.istio.io`).
    pub fn is_istio(self) -> bool {
        self.served_by() == ServedBy::Istio
    }

    /// Whether a cluster serves the kind from a CustomResourceDefinition
    /// (Istio's kinds and weir's Rollout), which has no strategic merge.
    pub fn is_custom_resource(self) -> bool {
        self.served_by() != ServedBy::Kubernetes
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
    "the server doesn't have a resource type {0:?} (known: {known})",
    known = Kind::ALL.iter().map(|k| k.plural()).collect::<Vec<_>>().join(", ")
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
            .iter()
            .copied()
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

    #[test]
    fn every_schema_is_found_by_what_it_reads() {
        let table: &[(&str, &str, Option<Schema>)] = &[
            ("v1", "Service", Some(Schema::Service)),
            ("apps/v1", "Deployment", Some(Schema::Deployment)),
            ("extensions/v1beta1", "Deployment", None),
            (
                "autoscaling/v1",
                "HorizontalPodAutoscaler",
                Some(Schema::HpaV1),
            ),
            (
                "autoscaling/v2",
                "HorizontalPodAutoscaler",
                Some(Schema::HpaV2),
            ),
            ("autoscaling/v2beta2", "HorizontalPodAutoscaler", None),
            (
                "networking.istio.io/v1alpha3",
                "Gateway",
                Some(Schema::Gateway),
            ),
            (
                "networking.istio.io/v1",
                "VirtualService",
                Some(Schema::VirtualService),
            ),
            (
                "networking.istio.io/v1beta1",
                "DestinationRule",
                Some(Schema::DestinationRule),
            ),
            (
                "networking.istio.io/v1",
                "WorkloadEntry",
                Some(Schema::WorkloadEntry),
            ),
            ("networking.istio.io/v2", "VirtualService", None),
            ("weir.dev/v1alpha1", "Rollout", Some(Schema::Rollout)),
            ("networking.k8s.io/v1", "Ingress", Some(Schema::Ingress)),
            ("extensions/v1beta1", "Ingress", Some(Schema::LegacyIngress)),
            (
                "networking.k8s.io/v1beta1",
                "Ingress",
                Some(Schema::LegacyIngress),
            ),
            ("v1", "Pod", None),
            ("v1", "ConfigMap", None),
        ];
        for (api_version, kind, expected) in table {
            assert_eq!(
                Schema::for_manifest(api_version, kind),
                *expected,
                "{api_version} {kind}"
            );
            if let Some(schema) = expected {
                assert_eq!(schema.kind().name(), *kind);
            }
        }
    }

    #[test]
    fn every_kind_has_its_names() {
        for kind in Kind::ALL {
            let [singular, plural, ..] = kind.aliases() else {
                panic!("{kind:?} has fewer than two names");
            };
            assert_eq!(*singular, kind.name().to_ascii_lowercase());
            assert_eq!(*plural, kind.plural());
            let group = kind.group();
            let expected = if group.is_empty() {
                (*singular).to_owned()
            } else {
                format!("{singular}.{group}")
            };
            assert_eq!(kind.qualified(), expected);
        }
    }
}

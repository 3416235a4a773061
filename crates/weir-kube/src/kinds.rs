//! Where each kind lives in the Kubernetes API. Every kind is handled as a
//! dynamic object (JSON), so Istio's CRDs need no generated types and the
//! objects weir sends are the manifests as written.

use kube::core::{ApiResource, GroupVersionKind};
use weir_api::resource::Kind;

/// The Istio API group.
pub const ISTIO_GROUP: &str = "networking.istio.io";

/// The resource weir reads `kind` at (each kind's read version is
/// declared with the kind).
pub fn read_resource(kind: Kind) -> ApiResource {
    resource(kind.group(), kind.read_version(), kind)
}

/// The resource for an object as written (`apiVersion` and kind), so an
/// object is applied at the version its manifest names.
pub fn write_resource(api_version: &str, kind: Kind) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    resource(group, version, kind)
}

fn resource(group: &str, version: &str, kind: Kind) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind.name()),
        kind.plural(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_api_conventions() {
        let vs = read_resource(Kind::VirtualService);
        assert_eq!(
            (vs.api_version.as_str(), vs.plural.as_str()),
            ("networking.istio.io/v1", "virtualservices")
        );
        let hpa = write_resource("autoscaling/v2", Kind::HorizontalPodAutoscaler);
        assert_eq!(
            (hpa.group.as_str(), hpa.version.as_str()),
            ("autoscaling", "v2")
        );
        let svc = write_resource("v1", Kind::Service);
        assert_eq!((svc.group.as_str(), svc.api_version.as_str()), ("", "v1"));
    }
}

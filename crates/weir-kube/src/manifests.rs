//! What `apply` sends: each manifest document as written (as JSON), with
//! the namespace filled in and, when asked, the seed's removed
//! `extensions/v1beta1` scale target rewritten to `apps/v1`.

use weir_api::load::Manifests;
use weir_api::resource::{Kind, ObjectRef};

/// Choices of `weir apply` that only matter on a cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Take over fields another manager owns (kubectl's `--force-conflicts`).
    pub force_conflicts: bool,
    /// Send `scaleTargetRef.apiVersion: apps/v1` where a manifest names a
    /// group that no longer serves Deployments (`extensions/v1beta1`,
    /// `apps/v1beta1`, `apps/v1beta2`): the seed's hpa.yaml does.
    pub rewrite_scale_target: bool,
}

/// API versions that served Deployments before Kubernetes 1.16.
pub const REMOVED_DEPLOYMENT_VERSIONS: [&str; 3] =
    ["extensions/v1beta1", "apps/v1beta1", "apps/v1beta2"];

/// One object as it will be sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    /// Which object.
    pub object: ObjectRef,
    /// Its apiVersion, as written (the path it is applied at).
    pub api_version: String,
    /// The body of the server-side apply.
    pub body: serde_json::Value,
    /// Where it was written (`file:line`), for the server's errors.
    pub source: String,
}

/// The objects of `manifests` as they will be sent; objects that name no
/// namespace go to `namespace`.
pub fn outgoing(manifests: &Manifests, namespace: &str, options: &ApplyOptions) -> Vec<Outgoing> {
    manifests
        .objects
        .iter()
        .map(|o| {
            let mut body = o.document();
            let named = o.resource.metadata().namespace.clone();
            let namespace = named.unwrap_or_else(|| namespace.to_owned());
            body["metadata"]["namespace"] = namespace.clone().into();
            let kind = o.resource.kind();
            if kind == Kind::HorizontalPodAutoscaler && options.rewrite_scale_target {
                let target = &mut body["spec"]["scaleTargetRef"]["apiVersion"];
                if target
                    .as_str()
                    .is_some_and(|v| REMOVED_DEPLOYMENT_VERSIONS.contains(&v))
                {
                    *target = "apps/v1".into();
                }
            }
            Outgoing {
                object: ObjectRef {
                    kind,
                    namespace,
                    name: o.resource.name().to_owned(),
                },
                api_version: body["apiVersion"].as_str().unwrap_or_default().to_owned(),
                body,
                source: format!("{}:{}", o.pos.file.display(), o.pos.line),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const HPA: &str = "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: my-app-v1\nspec:\n  maxReplicas: 5\n  minReplicas: 1\n  scaleTargetRef:\n    apiVersion: extensions/v1beta1\n    kind: Deployment\n    name: my-app-v1\n  targetCPUUtilizationPercentage: 80\n";

    #[test]
    fn sends_the_document_with_its_namespace_and_rewrites_only_when_asked() {
        let manifests = weir_api::load::load_str(Path::new("hpa.yaml"), HPA).unwrap();
        let kept = outgoing(&manifests, "canary", &ApplyOptions::default());
        assert_eq!(kept[0].body["metadata"]["namespace"], "canary");
        assert_eq!(
            kept[0].body["spec"]["scaleTargetRef"]["apiVersion"],
            "extensions/v1beta1"
        );
        assert_eq!(kept[0].source, "hpa.yaml:1");
        assert_eq!(
            kept[0].object.to_string(),
            "horizontalpodautoscaler.autoscaling/my-app-v1"
        );
        let options = ApplyOptions {
            rewrite_scale_target: true,
            ..ApplyOptions::default()
        };
        let rewritten = outgoing(&manifests, "canary", &options);
        assert_eq!(
            rewritten[0].body["spec"]["scaleTargetRef"]["apiVersion"],
            "apps/v1"
        );
        assert_eq!(
            rewritten[0].body["spec"]["targetCPUUtilizationPercentage"],
            80
        );
    }
}

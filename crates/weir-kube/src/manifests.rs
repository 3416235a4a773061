//! What `apply` sends: each manifest document as written (as JSON), with
//! the namespace filled in, what the API server sets dropped, and, when
//! asked, the seed's removed `extensions/v1beta1` scale target rewritten to
//! `apps/v1`; and what an apply changed.

use serde_json::Value;
use weir_api::backend::ApplyOutcome;
use weir_api::fields::SERVER_SET_FIELDS;
use weir_api::load::Manifests;
use weir_api::resource::{Kind, ObjectRef, Resource};

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
    /// A Deployment an HPA of the same manifests scales: its `replicas`
    /// conflict with the HPA's on a re-apply, and the file wins.
    pub scaled_by_hpa: bool,
}

/// The objects of `manifests` as they will be sent; objects that name no
/// namespace go to `namespace`.
pub fn outgoing(manifests: &Manifests, namespace: &str, options: &ApplyOptions) -> Vec<Outgoing> {
    let in_namespace = |r: &Resource| {
        r.metadata()
            .namespace
            .clone()
            .unwrap_or_else(|| namespace.to_owned())
    };
    let scaled: Vec<(String, &str)> = manifests
        .resources()
        .filter_map(|r| {
            let (kind, name) = match r {
                Resource::HpaV1(h) => {
                    (&h.spec.scale_target_ref.kind, &h.spec.scale_target_ref.name)
                }
                Resource::HpaV2(h) => {
                    (&h.spec.scale_target_ref.kind, &h.spec.scale_target_ref.name)
                }
                _ => return None,
            };
            (kind == "Deployment").then(|| (in_namespace(r), name.as_str()))
        })
        .collect();
    manifests
        .objects
        .iter()
        .map(|o| {
            let mut body = o.document();
            // A removed Ingress version goes as the v1 it was read into:
            // no cluster weir supports serves the old ones.
            if let Resource::Ingress(ingress) = &o.resource
                && weir_api::ingress::LEGACY_API_VERSIONS
                    .contains(&body["apiVersion"].as_str().unwrap_or_default())
                && let Ok(v1) = serde_json::to_value(&**ingress)
            {
                body = v1;
            }
            strip_server_set(&mut body);
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
            let scaled_by_hpa = kind == Kind::Deployment
                && scaled
                    .iter()
                    .any(|(ns, name)| *ns == namespace && *name == o.resource.name());
            Outgoing {
                object: ObjectRef {
                    kind,
                    namespace,
                    name: o.resource.name().to_owned(),
                },
                api_version: body["apiVersion"].as_str().unwrap_or_default().to_owned(),
                scaled_by_hpa,
                body,
                source: format!("{}:{}", o.pos.file.display(), o.pos.line),
            }
        })
        .collect()
}

/// Removes the fields the API server sets ([`SERVER_SET_FIELDS`]; the
/// loader warned about each): sent on, `managedFields` is refused and
/// `resourceVersion` turns the apply into a conditional update.
fn strip_server_set(body: &mut Value) {
    for field in SERVER_SET_FIELDS {
        let (parents, last) = field.rsplit_once('.').map_or(("", *field), |(p, l)| (p, l));
        let mut at = Some(&mut *body);
        for key in parents.split('.').filter(|k| !k.is_empty()) {
            at = at.and_then(|v| v.get_mut(key));
        }
        if let Some(map) = at.and_then(Value::as_object_mut) {
            map.remove(last);
        }
    }
}

/// What an apply did, from the object before and after it: created when
/// there was none; unchanged when everything the user writes — every
/// top-level field but `apiVersion`, `kind`, `metadata` and `status`, and
/// the metadata's labels, annotations, finalizers and owner references —
/// is the same; configured otherwise. Not from the resourceVersion alone:
/// a controller's status write between the two reads, or a no-op apply of
/// a custom resource before Kubernetes 1.31, bumps it.
pub fn apply_outcome(before: Option<&Value>, after: &Value) -> ApplyOutcome {
    const USER_METADATA: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];
    let Some(before) = before else {
        return ApplyOutcome::Created;
    };
    let owned = |v: &Value| -> Vec<(String, Value)> {
        let top = v
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"))
            .map(|(k, v)| (k.clone(), v.clone()));
        let meta = USER_METADATA
            .iter()
            .map(|k| (format!("metadata.{k}"), v["metadata"][k].clone()));
        let mut all: Vec<_> = top.chain(meta).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    };
    if owned(before) == owned(after) {
        ApplyOutcome::Unchanged
    } else {
        ApplyOutcome::Configured
    }
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

    #[test]
    fn what_the_api_server_sets_is_not_sent() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  uid: x\n  resourceVersion: \"7\"\n  managedFields: []\n  labels: {app: web}\nspec:\n  ports: [{port: 80}]\nstatus: {loadBalancer: {}}\n";
        let manifests = weir_api::load::load_str(Path::new("web.yaml"), text).unwrap();
        let body = &outgoing(&manifests, "default", &ApplyOptions::default())[0].body;
        assert_eq!(
            body,
            &serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "labels": {"app": "web"}, "namespace": "default"},
                "spec": {"ports": [{"port": 80}]}})
        );
    }

    #[test]
    fn an_apply_is_judged_by_what_the_user_owns() {
        use serde_json::json;
        let before = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "resourceVersion": "7", "labels": {"app": "web"}},
            "spec": {"ports": [{"port": 80}]}, "status": {}});
        let mut status_written = before.clone();
        status_written["metadata"]["resourceVersion"] = "9".into();
        status_written["status"] = json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}});
        let mut respec = status_written.clone();
        respec["spec"]["ports"][0]["port"] = 81.into();
        let mut relabelled = before.clone();
        relabelled["metadata"]["labels"]["tier"] = "web".into();
        let mut managed = before.clone();
        managed["metadata"]["managedFields"] = json!([{"manager": "weir"}]);
        let cases = [
            (None, &before, ApplyOutcome::Created),
            (Some(&before), &before, ApplyOutcome::Unchanged),
            (Some(&before), &status_written, ApplyOutcome::Unchanged),
            (Some(&before), &managed, ApplyOutcome::Unchanged),
            (Some(&before), &respec, ApplyOutcome::Configured),
            (Some(&before), &relabelled, ApplyOutcome::Configured),
        ];
        for (i, (before, after, expected)) in cases.into_iter().enumerate() {
            assert_eq!(apply_outcome(before, after), expected, "case {i}");
        }
    }
}

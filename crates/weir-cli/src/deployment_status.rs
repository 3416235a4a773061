//! `weir rollout status deployment/NAME`: kubectl's reading of a
//! Deployment's status (its `DeploymentStatusViewer`), a pure function of
//! the Deployment's JSON, so the command waits for and prints what kubectl
//! would.

use serde_json::Value;

/// Where a Deployment's rollout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutState {
    /// Still rolling out: kubectl's "Waiting for ..." line.
    Waiting(String),
    /// Done: "deployment NAME successfully rolled out".
    Done(String),
    /// Its progress deadline passed (kubectl's error).
    Failed(String),
}

fn int(o: &Value, pointer: &str) -> i64 {
    o.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// kubectl's verdict on `deployment`.
pub fn rollout_state(deployment: &Value) -> RolloutState {
    let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
    let generation = int(deployment, "/metadata/generation");
    let observed = int(deployment, "/status/observedGeneration");
    if generation > observed {
        return RolloutState::Waiting(
            "Waiting for deployment spec update to be observed...".into(),
        );
    }
    let timed_out = deployment["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded");
    if timed_out {
        return RolloutState::Failed(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }
    let wanted = deployment
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let updated = int(deployment, "/status/updatedReplicas");
    let replicas = int(deployment, "/status/replicas");
    let available = int(deployment, "/status/availableReplicas");
    if updated < wanted {
        return RolloutState::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {wanted} new replicas have been updated..."
        ));
    }
    if replicas > updated {
        return RolloutState::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ));
    }
    if available < updated {
        return RolloutState::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    RolloutState::Done(format!("deployment {name:?} successfully rolled out"))
}

/// The Deployment a `rollout status` argument names (`deployment/NAME`,
/// `deployments/NAME`, `deploy/NAME`, `deployment.apps/NAME`), if it names one.
pub fn deployment_name(argument: &str) -> Option<&str> {
    let (kind, name) = argument.split_once('/')?;
    matches!(
        kind,
        "deployment" | "deployments" | "deploy" | "deployment.apps" | "deployments.apps"
    )
    .then_some(name)
    .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment(generation: i64, replicas: i64, status: Value) -> Value {
        json!({"metadata": {"name": "my-app", "generation": generation}, "spec": {"replicas": replicas}, "status": status})
    }

    #[test]
    fn a_rollout_stands_where_kubectl_says_it_does() {
        let cases = [
            (deployment(2, 3, json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3})),
             RolloutState::Waiting("Waiting for deployment spec update to be observed...".into())),
            (deployment(2, 3, json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 3})),
             RolloutState::Waiting("Waiting for deployment \"my-app\" rollout to finish: 1 out of 3 new replicas have been updated...".into())),
            (deployment(2, 3, json!({"observedGeneration": 2, "replicas": 5, "updatedReplicas": 3, "availableReplicas": 3})),
             RolloutState::Waiting("Waiting for deployment \"my-app\" rollout to finish: 2 old replicas are pending termination...".into())),
            (deployment(2, 3, json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 1})),
             RolloutState::Waiting("Waiting for deployment \"my-app\" rollout to finish: 1 of 3 updated replicas are available...".into())),
            (deployment(2, 3, json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3})),
             RolloutState::Done("deployment \"my-app\" successfully rolled out".into())),
            (deployment(2, 3, json!({"observedGeneration": 2, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]})),
             RolloutState::Failed("deployment \"my-app\" exceeded its progress deadline".into())),
            // Scaled to zero: nothing to wait for.
            (deployment(1, 0, json!({"observedGeneration": 1})),
             RolloutState::Done("deployment \"my-app\" successfully rolled out".into())),
        ];
        for (d, expected) in cases {
            assert_eq!(rollout_state(&d), expected, "{d}");
        }
    }

    #[test]
    fn deployments_are_named_as_kubectl_names_them() {
        for (argument, expected) in [
            ("deployment/my-app", Some("my-app")),
            ("deploy/my-app", Some("my-app")),
            ("deployments.apps/my-app", Some("my-app")),
            ("my-app", None),
            ("rollout/my-app", None),
            ("deployment/", None),
        ] {
            assert_eq!(deployment_name(argument), expected, "{argument}");
        }
    }
}

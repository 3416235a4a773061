//! What the Rollout controller asks for, and how each is carried out.

use weir_api::resource::{ObjectRef, Resource};
use weir_api::rollout::Webhook;
use weir_api::route::RouteEdit;
use weir_rollout::engine::RolloutStatus;
use weir_rollout::traffic::SyntheticRequest;

use crate::controllers::contract::{Effect, Effects};
use crate::error::RuntimeError;

/// What the Rollout controller asks for.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Raise a Deployment's replicas ahead of traffic (a Rollout's
    /// capacity before traffic); its HPA holds them as one of its own
    /// recommendations, through its downscale stabilization window.
    ScaleAhead {
        /// The Deployment.
        deployment: ObjectRef,
        /// Its new replica count.
        replicas: i32,
    },
    /// Set a VirtualService rule's weights, as `weir route` does.
    SetRouteWeights {
        /// The VirtualService.
        virtual_service: ObjectRef,
        /// The rule's index.
        rule_index: usize,
        /// `(subset, weight)`.
        weights: Vec<(String, u32)>,
    },
    /// Edit a VirtualService as it is now: a Rollout's header rule or
    /// mirror.
    EditRoute {
        /// The VirtualService.
        virtual_service: ObjectRef,
        /// The edit.
        edit: RouteEdit,
    },
    /// Send (or stop sending) weir's own load through the gateway for a
    /// Rollout whose analysis gate lacks requests (`spec.traffic`).
    SetTraffic {
        /// The Rollout.
        rollout: ObjectRef,
        /// Requests per second, and the request its rule matches; `None`:
        /// stop.
        load: Option<(f64, SyntheticRequest)>,
    },
    /// Write objects the Rollout owns: its workload's revisions, the
    /// subsets selecting them.
    Write {
        /// The objects, whole.
        resources: Vec<Resource>,
    },
    /// Delete revisions the Rollout no longer runs.
    Delete {
        /// The revisions' Deployments.
        objects: Vec<ObjectRef>,
    },
    /// Call a Rollout's webhook (its answer is observed later).
    CallWebhook {
        /// The Rollout.
        rollout: ObjectRef,
        /// The hook.
        hook: Webhook,
        /// The JSON sent.
        payload: Vec<u8>,
    },
    /// A Rollout's status after a decision (stored when it changed).
    SetRolloutStatus {
        /// The Rollout.
        rollout: ObjectRef,
        /// Its status.
        status: Box<RolloutStatus>,
        /// Whether the decision took the waiting command.
        took_command: bool,
    },
}

impl Effect for Action {
    /// A weight change is served before the status that records it is
    /// stored; a failed change ends the batch, and the status is not
    /// stored.
    async fn apply<E: Effects>(self, effects: &mut E) -> Result<(), RuntimeError> {
        match self {
            Action::ScaleAhead {
                deployment,
                replicas,
            } => effects.scale_ahead(&deployment, replicas).await,
            Action::SetRouteWeights {
                virtual_service,
                rule_index,
                weights,
            } => {
                effects
                    .set_route_weights(&virtual_service, rule_index, &weights)
                    .await?
            }
            Action::SetTraffic { rollout, load } => effects.set_traffic(rollout, load).await,
            Action::CallWebhook {
                rollout,
                hook,
                payload,
            } => effects.call_webhook(rollout, hook, payload),
            Action::EditRoute {
                virtual_service,
                edit,
            } => effects.edit_route(&virtual_service, &edit).await?,
            Action::Write { resources } => effects.write_objects(resources).await?,
            Action::Delete { objects } => effects.delete_objects(&objects)?,
            Action::SetRolloutStatus {
                rollout,
                status,
                took_command,
            } => effects.set_rollout_status(rollout, *status, took_command),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use weir_api::resource::Kind;

    use super::*;
    use crate::controllers::testing::Recorded;

    #[tokio::test]
    async fn a_status_is_stored_only_after_its_weight_is_served() {
        let object = |kind, name: &str| ObjectRef {
            kind,
            namespace: "default".into(),
            name: name.into(),
        };
        let step = || {
            vec![
                Action::SetRouteWeights {
                    virtual_service: object(Kind::VirtualService, "vs"),
                    rule_index: 0,
                    weights: vec![("v1".into(), 90), ("v2".into(), 10)],
                },
                Action::SetTraffic {
                    rollout: object(Kind::Rollout, "ro"),
                    load: None,
                },
                Action::SetRolloutStatus {
                    rollout: object(Kind::Rollout, "ro"),
                    status: Box::default(),
                    took_command: true,
                },
            ]
        };
        let mut effects = Recorded::default();
        Action::carry_out(step(), &mut effects).await.unwrap();
        assert_eq!(
            effects.calls,
            [
                r#"weights vs[0] [("v1", 90), ("v2", 10)]"#,
                "traffic ro None",
                "rollout status ro true",
            ]
        );
        let mut effects = Recorded {
            fail_writes: true,
            ..Default::default()
        };
        assert!(Action::carry_out(step(), &mut effects).await.is_err());
        assert_eq!(
            effects.calls,
            [r#"weights vs[0] [("v1", 90), ("v2", 10)]"#],
            "the weight was refused: the status (and the command it took) stay"
        );
    }
}

//! What the Deployment controller asks for, and how each is carried out.

use std::collections::HashSet;

use weir_api::resource::ObjectRef;

use crate::controllers::contract::{Effect, Effects};
use crate::error::RuntimeError;
use crate::pods::PodKey;

/// What the Deployment controller asks for.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// A new pod of a Deployment, from its current template.
    CreatePod {
        /// The Deployment.
        deployment: ObjectRef,
        /// The template's `pod-template-hash`.
        template_hash: String,
    },
    /// Begin a pod's graceful termination (out of the endpoints first).
    Terminate(PodKey),
}

impl Effect for Action {
    /// A new pod's container starts on the loop's next pass, once its
    /// record is stored: the loop is woken for it.
    async fn apply<E: Effects>(self, effects: &mut E) -> Result<(), RuntimeError> {
        match self {
            Action::CreatePod {
                deployment,
                template_hash,
            } => {
                if effects.create_pod(&deployment, &template_hash) {
                    effects.wake();
                }
            }
            Action::Terminate(pod) => effects.terminate(&pod),
        }
        Ok(())
    }

    /// A Deployment whose pod cannot be created gets no more creations
    /// this pass; the loop is woken once after any creation.
    async fn carry_out<E: Effects>(
        actions: Vec<Self>,
        effects: &mut E,
    ) -> Result<(), RuntimeError> {
        let mut created = false;
        let mut cannot_create: HashSet<ObjectRef> = HashSet::new();
        for action in actions {
            match action {
                Action::CreatePod {
                    deployment,
                    template_hash,
                } => {
                    if cannot_create.contains(&deployment) {
                        continue;
                    }
                    if effects.create_pod(&deployment, &template_hash) {
                        created = true;
                    } else {
                        cannot_create.insert(deployment);
                    }
                }
                terminate @ Action::Terminate(_) => terminate.apply(effects).await?,
            }
        }
        if created {
            effects.wake();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use weir_api::resource::Kind;

    use super::*;

    #[tokio::test]
    async fn a_deployment_whose_pod_cannot_be_created_gets_no_more_creations_this_pass() {
        let deployment = |name: &str| ObjectRef {
            kind: Kind::Deployment,
            namespace: "default".into(),
            name: name.into(),
        };
        let create = |name: &str| Action::CreatePod {
            deployment: deployment(name),
            template_hash: "h".into(),
        };
        let mut effects = crate::controllers::testing::Recorded {
            cannot_create: vec!["a".into()],
            ..Default::default()
        };
        let actions = vec![
            create("a"),
            create("a"),
            create("b"),
            Action::Terminate(PodKey::new("default", "old")),
        ];
        Action::carry_out(actions, &mut effects).await.unwrap();
        assert_eq!(
            effects.calls,
            ["create a", "create b", "terminate old", "wake"],
            "the second pod of a is not tried; the loop runs again for b's"
        );
        let mut effects = crate::controllers::testing::Recorded::default();
        Action::carry_out(
            vec![Action::Terminate(PodKey::new("default", "old"))],
            &mut effects,
        )
        .await
        .unwrap();
        assert_eq!(effects.calls, ["terminate old"], "nothing created: no wake");
    }
}

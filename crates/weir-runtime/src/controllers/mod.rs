//! The controllers, as in kube-controller-manager and the kubelet: each
//! takes what it needs from the runtime's state ([`contract::World`]), decides
//! without IO, and returns its own actions, which say how they are carried
//! out through the runtime's [`contract::Effects`]. The runtime's loop calls each due
//! controller in turn and carries out its actions before the next one
//! looks. A new controller is a module here implementing
//! [`contract::Controller`], named in [`all`]; nothing else changes unless
//! it needs an effect the runtime does not offer yet.

pub mod contract;
pub mod deployment;
pub mod endpoints;
pub mod hpa;
pub mod kubelet;
pub mod rollout;

use std::time::Duration;

use contract::{Host, Turn};

/// What the controllers take from the runtime's configuration.
pub struct Settings {
    /// The HPA controller's sync period.
    pub hpa_sync_period: Duration,
    /// The window CPU usage and request rates are measured over.
    pub metrics_window: Duration,
    /// The first restart delay of a crashing container.
    pub restart_backoff: Duration,
    /// The kernel's clock ticks per second (CPU samples are in ticks).
    pub ticks_per_second: u64,
}

/// Every controller, in the order the loop runs them: the HPA before the
/// kubelet and the Deployment controller, so a scale is acted on in the
/// same pass; the endpoints after the pods changed; the Rollout last,
/// seeing what the gateway serves.
pub fn all<H: Host>(settings: &Settings) -> Vec<Box<dyn Turn<H>>> {
    vec![
        Box::new(hpa::HpaController::new(
            settings.hpa_sync_period,
            settings.metrics_window,
            settings.ticks_per_second,
        )),
        Box::new(kubelet::Kubelet {
            restart_backoff: settings.restart_backoff,
        }),
        Box::new(deployment::DeploymentController),
        Box::new(endpoints::EndpointsController),
        Box::new(rollout::RolloutController::new(
            settings.metrics_window,
            settings.ticks_per_second,
        )),
    ]
}

#[cfg(test)]
pub(crate) mod testing {
    //! Observations for the controllers' tests.

    use std::collections::BTreeMap;

    use std::time::SystemTime;

    use tokio::time::Instant;

    use super::*;
    use crate::launch::Launch;
    use crate::pods::{Phase, Pod};

    /// A pod of `deployment` with `template_hash`, created `age_s` seconds
    /// before the epoch + 1000 s, in `phase`.
    pub fn pod(name: &str, deployment: &str, template_hash: &str, phase: Phase) -> Pod {
        let mut pod = Pod::fresh(
            crate::pods::PodIdentity {
                name: name.into(),
                namespace: "default".into(),
                deployment: deployment.into(),
                template_hash: template_hash.into(),
                labels: [("app".to_owned(), deployment.to_owned())].into(),
                annotations: BTreeMap::new(),
                ip: std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 1, 0, 2)),
                container: Default::default(),
                grace: Duration::from_secs(30),
                launch: Launch::default(),
                created: SystemTime::UNIX_EPOCH,
                token: "t".into(),
                config_error: None,
            },
            Instant::now(),
        );
        pod.phase = phase;
        pod
    }
}

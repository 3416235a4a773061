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
    use crate::pods::{Phase, Pod, PodKey};

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

    /// Effects that only record what was asked, in order, for the tests of
    /// how actions are carried out; a publish or a route change fails
    /// when `fail_writes` says so, creating a pod of a Deployment named in
    /// `cannot_create` fails.
    #[derive(Default)]
    pub struct Recorded {
        pub calls: Vec<String>,
        pub cannot_create: Vec<String>,
        pub fail_writes: bool,
    }

    impl Recorded {
        fn write(&mut self, call: String) -> Result<(), crate::error::RuntimeError> {
            self.calls.push(call);
            if self.fail_writes {
                return Err(crate::error::RuntimeError::Io(std::io::Error::other(
                    "refused",
                )));
            }
            Ok(())
        }
    }

    impl contract::Effects for Recorded {
        fn create_pod(&mut self, deployment: &weir_api::resource::ObjectRef, _: &str) -> bool {
            self.calls.push(format!("create {}", deployment.name));
            !self.cannot_create.contains(&deployment.name)
        }
        fn wake(&mut self) {
            self.calls.push("wake".into());
        }
        fn terminate(&mut self, pod: &PodKey) {
            self.calls.push(format!("terminate {}", pod.name));
        }
        fn record_exit(&mut self, pod: &PodKey, _: Option<i32>, _: u32, _: Instant) {
            self.calls.push(format!("exit {}", pod.name));
        }
        fn start(&mut self, pod: &PodKey) {
            self.calls.push(format!("start {}", pod.name));
        }
        fn stop(&mut self, pod: &PodKey) {
            self.calls.push(format!("stop {}", pod.name));
        }
        fn kill(&mut self, pod: &PodKey) {
            self.calls.push(format!("kill {}", pod.name));
        }
        fn forget(&mut self, pod: &PodKey) {
            self.calls.push(format!("forget {}", pod.name));
        }
        async fn publish(
            &mut self,
            _: std::collections::HashMap<weir_gateway::ServiceKey, Vec<weir_gateway::Endpoint>>,
        ) -> Result<(), crate::error::RuntimeError> {
            self.write("publish".into())
        }
        async fn scale(&mut self, deployment: &weir_api::resource::ObjectRef, replicas: i32) {
            self.calls
                .push(format!("scale {} {replicas}", deployment.name));
        }
        async fn scale_ahead(&mut self, deployment: &weir_api::resource::ObjectRef, replicas: i32) {
            self.calls
                .push(format!("scale ahead {} {replicas}", deployment.name));
        }
        fn set_hpa_status(&mut self, hpa: weir_api::resource::ObjectRef, _: crate::hpa::HpaStatus) {
            self.calls.push(format!("hpa status {}", hpa.name));
        }
        async fn set_route_weights(
            &mut self,
            virtual_service: &weir_api::resource::ObjectRef,
            rule_index: usize,
            weights: &[(String, u32)],
        ) -> Result<(), crate::error::RuntimeError> {
            self.write(format!(
                "weights {}[{rule_index}] {weights:?}",
                virtual_service.name
            ))
        }
        async fn set_traffic(
            &mut self,
            rollout: weir_api::resource::ObjectRef,
            load: Option<(f64, weir_rollout::traffic::SyntheticRequest)>,
        ) {
            let rate = load.map(|(rate, _)| rate);
            self.calls
                .push(format!("traffic {} {rate:?}", rollout.name));
        }
        fn set_rollout_status(
            &mut self,
            rollout: weir_api::resource::ObjectRef,
            _: weir_rollout::engine::RolloutStatus,
            took_command: bool,
        ) {
            self.calls
                .push(format!("rollout status {} {took_command}", rollout.name));
        }
        async fn write_objects(
            &mut self,
            resources: Vec<weir_api::resource::Resource>,
        ) -> Result<(), crate::error::RuntimeError> {
            let names: Vec<String> = resources
                .iter()
                .map(|r| r.object_ref().to_string())
                .collect();
            self.write(format!("write {}", names.join(" ")))
        }
        async fn edit_route(
            &mut self,
            virtual_service: &weir_api::resource::ObjectRef,
            edit: &weir_api::route::RouteEdit,
        ) -> Result<(), crate::error::RuntimeError> {
            self.write(format!("edit {} {edit:?}", virtual_service.name))
        }
        fn call_webhook(
            &mut self,
            rollout: weir_api::resource::ObjectRef,
            hook: weir_api::rollout::Webhook,
            _: Vec<u8>,
        ) {
            self.calls
                .push(format!("webhook {} {}", rollout.name, hook.name));
        }
        fn delete_objects(
            &mut self,
            objects: &[weir_api::resource::ObjectRef],
        ) -> Result<(), crate::error::RuntimeError> {
            let names: Vec<String> = objects.iter().map(ToString::to_string).collect();
            self.write(format!("delete {}", names.join(" ")))
        }
    }
}

//! Liveness and readiness probes: httpGet, tcpSocket and exec, with
//! initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold and
//! failureThreshold, run by one task per container and reported over a
//! channel to the controller.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use weir_api::k8s_openapi::api::core::v1::Probe;

use crate::pods::PodKey;
use weir_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// Restart the container when it fails.
    Liveness,
    /// Keep the pod out of the endpoints when it fails.
    Readiness,
}

/// A state change decided by a probe's thresholds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeEvent {
    /// Pod namespace and name.
    pub pod: PodKey,
    /// The container generation probed.
    pub generation: u64,
    /// Which probe.
    pub kind: ProbeKind,
    /// Passing (true) or failing (false) by its thresholds.
    pub passing: bool,
}

/// Kubernetes' defaults: period 10 s, timeout 1 s, thresholds 1 and 3.
struct Timing {
    initial_delay: Duration,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
}

fn timing(p: &Probe) -> Timing {
    let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
    Timing {
        initial_delay: secs(p.initial_delay_seconds, 0),
        period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
        failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
    }
}

fn port(p: &IntOrString, named: &BTreeMap<String, u16>) -> Option<u16> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => named.get(name).copied(),
    }
}

/// Runs one probe attempt; true if it passed within the timeout.
async fn attempt(
    p: &Probe,
    ip: IpAddr,
    named: &BTreeMap<String, u16>,
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> bool {
    let run = async {
        if let Some(get) = &p.http_get {
            let Some(port) = port(&get.port, named) else {
                return false;
            };
            let host = get.host.clone().unwrap_or_else(|| ip.to_string());
            let path = get.path.clone().unwrap_or_else(|| "/".into());
            let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            let mut req = http::Request::get(format!("http://{host}:{port}{path}"));
            for h in get.http_headers.iter().flatten() {
                req = req.header(h.name.as_str(), h.value.as_str());
            }
            let Ok(req) = req
                .header("user-agent", "kube-probe/weir")
                .body(Empty::new())
            else {
                return false;
            };
            return client
                .request(req)
                .await
                .is_ok_and(|r| (200..400).contains(&r.status().as_u16()));
        }
        if let Some(tcp) = &p.tcp_socket {
            let Some(port) = port(&tcp.port, named) else {
                return false;
            };
            let host: IpAddr = tcp
                .host
                .as_deref()
                .and_then(|h| h.parse().ok())
                .unwrap_or(ip);
            return tokio::net::TcpStream::connect(SocketAddr::new(host, port))
                .await
                .is_ok();
        }
        if let Some(exec) = &p.exec {
            let Some((program, args)) = exec.command.as_deref().and_then(|c| c.split_first())
            else {
                return false;
            };
            return tokio::process::Command::new(program)
                .args(args)
                .env_clear()
                .envs(env)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .is_ok_and(|s| s.success());
        }
        false
    };
    tokio::time::timeout(timeout, run).await.unwrap_or(false)
}

/// Everything a probe task needs.
pub struct ProbeTarget {
    /// Pod namespace and name.
    pub pod: PodKey,
    /// Container generation.
    pub generation: u64,
    /// Pod IP.
    pub ip: IpAddr,
    /// Named container ports.
    pub named_ports: BTreeMap<String, u16>,
    /// The container's environment (for exec probes).
    pub env: BTreeMap<String, String>,
}

/// Runs `probe` until the task is aborted, sending an event whenever the
/// thresholds flip the probe's verdict (and the first verdict).
pub async fn run(
    kind: ProbeKind,
    probe: Probe,
    target: ProbeTarget,
    events: mpsc::UnboundedSender<ProbeEvent>,
) {
    let t = timing(&probe);
    tokio::time::sleep(t.initial_delay).await;
    let (mut successes, mut failures) = (0u32, 0u32);
    let mut verdict: Option<bool> = None;
    loop {
        let started = tokio::time::Instant::now();
        if attempt(
            &probe,
            target.ip,
            &target.named_ports,
            &target.env,
            t.timeout,
        )
        .await
        {
            successes += 1;
            failures = 0;
        } else {
            failures += 1;
            successes = 0;
        }
        let next = if successes >= t.success_threshold {
            Some(true)
        } else if failures >= t.failure_threshold {
            Some(false)
        } else {
            // Readiness starts as failing until the first success.
            verdict.or((kind == ProbeKind::Readiness).then_some(false))
        };
        if next != verdict
            && let Some(passing) = next
        {
            verdict = next;
            let event = ProbeEvent {
                pod: target.pod.clone(),
                generation: target.generation,
                kind,
                passing,
            };
            if events.send(event).is_err() {
                return;
            }
        }
        tokio::time::sleep_until(started + t.period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_api::k8s_openapi::api::core::v1::{ExecAction, TCPSocketAction};

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([("PATH".to_owned(), std::env::var("PATH").unwrap_or_default())])
    }

    #[tokio::test]
    async fn tcp_socket_and_exec_probes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let named = BTreeMap::from([("svc".to_owned(), open)]);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let tcp = |port: IntOrString| Probe {
            tcp_socket: Some(TCPSocketAction { port, host: None }),
            ..Probe::default()
        };
        let t = Duration::from_secs(1);
        assert!(
            attempt(
                &tcp(IntOrString::Int(i32::from(open))),
                ip,
                &named,
                &env(),
                t
            )
            .await
        );
        assert!(
            attempt(
                &tcp(IntOrString::String("svc".into())),
                ip,
                &named,
                &env(),
                t
            )
            .await
        );
        assert!(
            !attempt(
                &tcp(IntOrString::Int(i32::from(closed))),
                ip,
                &named,
                &env(),
                t
            )
            .await
        );
        assert!(
            !attempt(
                &tcp(IntOrString::String("nope".into())),
                ip,
                &named,
                &env(),
                t
            )
            .await
        );
        let exec = |cmd: &[&str]| Probe {
            exec: Some(ExecAction {
                command: Some(cmd.iter().map(|s| s.to_string()).collect()),
            }),
            ..Probe::default()
        };
        assert!(attempt(&exec(&["true"]), ip, &named, &env(), t).await);
        assert!(!attempt(&exec(&["false"]), ip, &named, &env(), t).await);
        // timeoutSeconds bounds a hanging probe.
        let started = tokio::time::Instant::now();
        assert!(!attempt(&exec(&["sleep", "5"]), ip, &named, &env(), t).await);
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(listener);
    }
}

//! A pod of the embedded runtime: its identity, its one container's launch
//! (image → program, command/args with `$(VAR)` expansion, env plus the
//! downward-API variables), and its status in Kubernetes' shape.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weir_api::images::ImageMap;
use weir_api::k8s_openapi::api::core::v1::Container;
use weir_api::quantity;

use crate::launch::Launch;
use crate::process::Process;

/// A pod's identity: its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl PodKey {
    /// The pod `name` in `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where a pod is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Created; its container has not started yet.
    Pending,
    /// Its container runs (or is between restarts).
    Running,
    /// Being stopped: out of the endpoints, SIGTERM sent.
    Terminating,
}

/// One pod: what it was born with, and where it is in its life.
pub struct Pod {
    /// What it keeps for life.
    pub id: PodIdentity,
    /// Life phase.
    pub phase: Phase,
    /// The container's process, when running.
    pub process: Option<Process>,
    /// When the current container started.
    pub started: Option<(Instant, SystemTime)>,
    /// Readiness and when it last changed.
    pub ready: bool,
    /// When `ready` last changed.
    pub ready_since: Instant,
    /// Container restarts.
    pub restarts: u32,
    /// Exit code of the last container, if it exited.
    pub last_exit: Option<Option<i32>>,
    /// Not restarted before this time (CrashLoopBackOff).
    pub backoff_until: Option<Instant>,
    /// When termination began.
    pub terminating_since: Option<Instant>,
    /// Whether SIGTERM went out (after the pod left the endpoints).
    pub sigterm_sent: bool,
    /// The probe task of the current container.
    pub prober: Option<JoinHandle<()>>,
    /// Generation of the current container (probe results of older ones are stale).
    pub generation: u64,
    /// Crashes since the restart backoff last reset ([`crate::crashloop`]).
    pub crash_streak: u32,
    /// Whether its record in the store is out of date.
    pub dirty: bool,
}

/// What the store keeps of a pod, so that the next `weir up` adopts its
/// running container (same name, IP and process) or, if the container
/// died meanwhile, restarts it in the same pod.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PodRecord {
    #[serde(flatten)]
    id: PodIdentity,
    restarts: u32,
    crash_streak: u32,
    ready: bool,
    terminating: bool,
    process: Option<RecordedProcess>,
}

/// The supervisor process a record names.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct RecordedProcess {
    /// Its pid.
    pub pid: u32,
    /// Its start time (clock ticks since boot).
    pub start_time: u64,
    /// When the container started.
    pub started: SystemTime,
}

impl PodRecord {
    /// The recorded process, to adopt.
    pub fn process(&self) -> Option<RecordedProcess> {
        self.process
    }

    /// The supervisor's token.
    pub fn token(&self) -> &str {
        &self.id.token
    }

    /// The launch (for the launcher check and the exit file).
    pub fn launch(&self) -> &Launch {
        &self.id.launch
    }

    /// The pod again, with its container `process` if it was adopted, else
    /// waiting to be restarted (counted as a restart).
    pub fn into_pod(self, process: Option<Process>, now: Instant) -> Pod {
        let started = self.process.filter(|_| process.is_some()).map(|p| {
            let age = SystemTime::now()
                .duration_since(p.started)
                .unwrap_or_default();
            (now.checked_sub(age).unwrap_or(now), p.started)
        });
        let adopted = process.is_some();
        let mut pod = Pod::fresh(self.id, now);
        pod.phase = match (self.terminating, adopted) {
            (true, _) => Phase::Terminating,
            (false, true) => Phase::Running,
            (false, false) => Phase::Pending,
        };
        // A pod found terminating gets its grace period from now.
        pod.terminating_since = self.terminating.then_some(now);
        pod.process = process;
        pod.started = started;
        pod.ready = self.ready && adopted && !self.terminating;
        pod.restarts = self.restarts + u32::from(!adopted && self.process.is_some());
        pod.crash_streak = self.crash_streak;
        pod
    }
}

/// What a pod is born with and keeps for life.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PodIdentity {
    /// Pod name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// The Deployment that owns it.
    pub deployment: String,
    /// `pod-template-hash`.
    pub template_hash: String,
    /// Labels (the template's plus `pod-template-hash`).
    pub labels: BTreeMap<String, String>,
    /// The template's annotations (e.g. `prometheus.io/scrape`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Its loopback address.
    pub ip: IpAddr,
    /// The container spec.
    pub container: Container,
    /// `terminationGracePeriodSeconds`.
    pub grace: Duration,
    /// What to run.
    pub launch: Launch,
    /// When it was created.
    pub created: SystemTime,
    /// The private token of its supervisor.
    pub token: String,
    /// Why its container cannot be created from its settings (the
    /// kubelet's `CreateContainerConfigError`, e.g. `runAsNonRoot` with
    /// nothing but root to run as): such a pod exists, waits, and is never
    /// started.
    #[serde(default)]
    pub config_error: Option<String>,
}

impl Pod {
    /// A pod that has not started its container yet (Pending, unready,
    /// no restarts), to be written to the store.
    pub fn fresh(id: PodIdentity, now: Instant) -> Self {
        Pod {
            id,
            phase: Phase::Pending,
            process: None,
            started: None,
            ready: false,
            ready_since: now,
            restarts: 0,
            last_exit: None,
            backoff_until: None,
            terminating_since: None,
            sigterm_sent: false,
            prober: None,
            generation: 0,
            crash_streak: 0,
            dirty: true,
        }
    }

    /// Its key in the runtime's state.
    pub fn key(&self) -> PodKey {
        PodKey::new(&self.id.namespace, &self.id.name)
    }

    /// Starts graceful termination: unready (out of the endpoints at the
    /// next push, before any signal), probes stopped. Idempotent.
    pub fn begin_termination(&mut self, now: Instant) {
        if self.phase == Phase::Terminating {
            return;
        }
        self.phase = Phase::Terminating;
        self.ready = false;
        self.dirty = true;
        self.terminating_since = Some(now);
        if let Some(p) = self.prober.take() {
            p.abort();
        }
    }

    /// Its record for the store.
    pub fn record(&self) -> PodRecord {
        PodRecord {
            id: self.id.clone(),
            restarts: self.restarts,
            crash_streak: self.crash_streak,
            ready: self.ready,
            terminating: self.phase == Phase::Terminating,
            process: self.process.as_ref().map(|p| RecordedProcess {
                pid: p.pid(),
                start_time: p.start_time(),
                started: self.started.map_or_else(SystemTime::now, |s| s.1),
            }),
        }
    }

    /// The pod in Kubernetes' JSON shape, status included.
    pub fn to_json(&self) -> serde_json::Value {
        let ts = |t: SystemTime| humantime_rfc3339(t);
        let state = match (&self.process, self.backoff_until, self.last_exit) {
            (Some(_), _, _) => {
                serde_json::json!({"running": {"startedAt": self.started.map(|s| ts(s.1))}})
            }
            (None, _, _) if self.id.config_error.is_some() => serde_json::json!({"waiting": {
                "reason": "CreateContainerConfigError",
                "message": self.id.config_error,
            }}),
            (None, Some(_), _) => serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            (None, None, Some(code)) => {
                serde_json::json!({"terminated": {"exitCode": code.unwrap_or(137)}})
            }
            (None, None, None) => serde_json::json!({"waiting": {"reason": "ContainerCreating"}}),
        };
        let phase = match self.phase {
            Phase::Pending => "Pending",
            Phase::Running | Phase::Terminating => "Running",
        };
        let mut meta = serde_json::json!({
            "name": self.id.name,
            "namespace": self.id.namespace,
            "labels": self.id.labels,
            "annotations": self.id.annotations,
            "creationTimestamp": ts(self.id.created),
            "ownerReferences": [{"kind": "ReplicaSet", "name": format!("{}-{}", self.id.deployment, self.id.template_hash)}],
        });
        if self.phase == Phase::Terminating {
            meta["deletionTimestamp"] = serde_json::json!(ts(SystemTime::now()));
        }
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {"containers": [self.id.container], "nodeName": "weir"},
            "status": {
                "phase": phase,
                "podIP": self.id.ip.to_string(),
                "startTime": self.started.map(|s| ts(s.1)),
                "conditions": [{"type": "Ready", "status": if self.ready { "True" } else { "False" }}],
                "containerStatuses": [{
                    "name": self.id.container.name,
                    "image": self.id.container.image,
                    "ready": self.ready,
                    "restartCount": self.restarts,
                    "state": state,
                    "pid": self.process.as_ref().map(Process::pid),
                }],
            },
        })
    }

    /// Σ `resources.requests.cpu` in millicores, or the container lacking it.
    pub fn cpu_request(&self) -> Result<i64, String> {
        self.id
            .container
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("cpu"))
            .and_then(|q| quantity::cpu_millis(&q.0).ok())
            .ok_or_else(|| self.id.container.name.clone())
    }

    /// The container's ports by name (for Services' named target ports).
    pub fn named_ports(&self) -> BTreeMap<String, u16> {
        self.id
            .container
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Some((p.name.clone()?, u16::try_from(p.container_port).ok()?)))
            .collect()
    }
}

/// RFC 3339 (seconds) in UTC, as Kubernetes writes timestamps.
pub fn humantime_rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Why a container cannot be launched.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No image map entry.
    #[error(
        "no local program for image {0:?}: add `{0} = PROGRAM` to weir-images.conf beside the manifests, or pass `weir up --image {0}=PROGRAM`"
    )]
    UnmappedImage(String),
    /// The program was not found.
    #[error("program {program:?} (for image {image:?}) not found beside weir or on PATH")]
    ProgramNotFound {
        /// The program.
        program: String,
        /// The image.
        image: String,
    },
}

/// Resolves a program name: a path as given, else beside `dirs`, else on PATH.
pub fn resolve_program(program: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.iter()
        .chain(path_dirs.iter())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Expands `$(VAR)` from `vars` as Kubernetes does: unknown references stay
/// as written, `$$(VAR)` escapes to `$(VAR)`.
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("$(") {
            out.push_str("$(");
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            match vars.get(&inner[..end]) {
                Some(v) => out.push_str(v),
                None => out.push_str(&rest[i..i + 2 + end + 1]),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Whether a container can run here: its program (its command's first
/// word, else its image's mapped program) exists. Nothing is started.
pub fn check_runnable(
    container: &Container,
    images: &ImageMap,
    program_dirs: &[PathBuf],
) -> Result<PathBuf, LaunchError> {
    let image = container.image.clone().unwrap_or_default();
    // The command's first word may name the container's own variables.
    let mut env = BTreeMap::new();
    for e in container.env.iter().flatten() {
        let value = expand(e.value.as_deref().unwrap_or_default(), &env);
        env.insert(e.name.clone(), value);
    }
    let program = match container.command.as_ref().and_then(|c| c.first()) {
        Some(first) => expand(first, &env),
        None => image_program(&image, images)?.to_owned(),
    };
    find_program(&program, &image, program_dirs)
}

/// The program an image is mapped to.
fn image_program<'a>(image: &str, images: &'a ImageMap) -> Result<&'a str, LaunchError> {
    images
        .program_for(image)
        .ok_or_else(|| LaunchError::UnmappedImage(image.to_owned()))
}

/// A program's path, searched in `program_dirs` then PATH.
fn find_program(
    program: &str,
    image: &str,
    program_dirs: &[PathBuf],
) -> Result<PathBuf, LaunchError> {
    resolve_program(program, program_dirs).ok_or_else(|| LaunchError::ProgramNotFound {
        program: program.to_owned(),
        image: image.to_owned(),
    })
}

/// The launch of a pod's container.
pub fn launch_for(
    container: &Container,
    pod: &str,
    namespace: &str,
    ip: IpAddr,
    images: &ImageMap,
    program_dirs: &[PathBuf],
    log: &Path,
) -> Result<Launch, LaunchError> {
    let image = container.image.clone().unwrap_or_default();
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".to_owned(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
    );
    for (k, v) in [
        ("POD_NAME", pod.to_owned()),
        ("POD_NAMESPACE", namespace.to_owned()),
        ("POD_IP", ip.to_string()),
        ("HOSTNAME", pod.to_owned()),
    ] {
        env.insert(k.to_owned(), v);
    }
    for e in container.env.iter().flatten() {
        let value = expand(e.value.as_deref().unwrap_or_default(), &env);
        env.insert(e.name.clone(), value);
    }
    let expand_all = |list: &Option<Vec<String>>| -> Vec<String> {
        list.iter().flatten().map(|a| expand(a, &env)).collect()
    };
    let command = expand_all(&container.command);
    let args = expand_all(&container.args);
    let (program, args) = match command.split_first() {
        Some((first, rest)) => (first.clone(), [rest, &args].concat()),
        None => (image_program(&image, images)?.to_owned(), args),
    };
    let resolved = find_program(&program, &image, program_dirs)?;
    Ok(Launch {
        program: resolved,
        args,
        env,
        working_dir: container.working_dir.as_ref().map(PathBuf::from),
        log: log.to_owned(),
        user: None,
        group: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_kubernetes() {
        let vars = BTreeMap::from([
            ("A".to_owned(), "1".to_owned()),
            ("POD_IP".to_owned(), "127.1.0.2".to_owned()),
        ]);
        assert_eq!(
            expand("--addr=$(POD_IP):8080", &vars),
            "--addr=127.1.0.2:8080"
        );
        assert_eq!(expand("$(MISSING)-$(A)", &vars), "$(MISSING)-1");
        assert_eq!(expand("$$(A) $5", &vars), "$(A) $5");
        assert_eq!(expand("$(unclosed", &vars), "$(unclosed");
    }

    #[test]
    fn a_record_keeps_its_flat_shape_and_comes_back() {
        let pod = crate::controllers::testing::pod("p", "d", "h", Phase::Running);
        let json = serde_json::to_value(pod.record()).unwrap();
        // The shape earlier runtimes wrote: identity fields at the top level.
        for key in [
            "name",
            "namespace",
            "deployment",
            "template_hash",
            "ip",
            "token",
            "restarts",
        ] {
            assert!(json.get(key).is_some(), "{key} missing: {json}");
        }
        let back: PodRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back.token(), "t");
        let again = back.into_pod(None, Instant::now());
        assert_eq!(again.key(), pod.key());
        assert_eq!(again.phase, Phase::Pending, "not adopted: waits to start");
    }

    #[test]
    fn a_container_is_runnable_when_its_program_resolves() {
        let container = |image: &str, command: Option<&str>| Container {
            name: "c".into(),
            image: Some(image.into()),
            command: command.map(|c| vec![c.to_owned()]),
            ..Container::default()
        };
        let mut images = ImageMap::default();
        images.insert("mapped", "sh");
        let none: &[PathBuf] = &[];
        assert_eq!(
            check_runnable(&container("mapped", None), &images, none).unwrap(),
            resolve_program("sh", none).unwrap()
        );
        assert!(matches!(
            check_runnable(&container("unmapped", None), &images, none),
            Err(LaunchError::UnmappedImage(i)) if i == "unmapped"
        ));
        assert!(check_runnable(&container("unmapped", Some("/bin/sh")), &images, none).is_ok());
        assert!(matches!(
            check_runnable(&container("x", Some("/no/such/program")), &images, none),
            Err(LaunchError::ProgramNotFound { .. })
        ));
        // The command may name the container's own variables.
        let mut with_env = container("x", Some("$(SHELL_PATH)"));
        with_env.env = Some(vec![weir_api::k8s_openapi::api::core::v1::EnvVar {
            name: "SHELL_PATH".into(),
            value: Some("/bin/sh".into()),
            ..Default::default()
        }]);
        assert!(check_runnable(&with_env, &images, none).is_ok());
    }

    #[test]
    fn dates_in_rfc3339() {
        assert_eq!(
            humantime_rfc3339(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00Z"
        );
    }
}

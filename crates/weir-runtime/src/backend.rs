//! The embedded runtime as a [`Backend`]: the admin API's client, so the
//! commands drive a local `weir up` exactly as they will drive a cluster.

use std::collections::BTreeMap;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::mpsc;
use weir_api::backend::{
    ApplyOutcome, Backend, BackendError, LiveObject, LogOptions, LogStream, RouteChange,
    RuleSelector, WatchEvent, WatchStream,
};
use weir_api::load::Manifests;
use weir_api::resource::{Kind, ObjectRef};

use weir_api::rollout::CommandIntent;

use crate::admin::{AdminClient, ClientError, RolloutRequest, RouteRequest, ScaleRequest};
use crate::pod_log::CriReader;

/// A `weir up` reached through its admin socket.
pub struct LocalBackend {
    client: AdminClient,
}

impl LocalBackend {
    /// The runtime of `state_dir`; each call waits at most `timeout` for its answer.
    pub fn new(state_dir: &Path, timeout: std::time::Duration) -> Self {
        Self {
            client: AdminClient::new(state_dir).with_timeout(timeout),
        }
    }

    /// Whether the runtime answers: `weir demo` waits for this after
    /// starting `weir up` (a cluster has no such lifecycle).
    pub async fn answers(&self) -> bool {
        self.client.status().await.is_ok()
    }

    /// Stops the runtime (`weir down`) and returns once its process has
    /// exited; its pods terminate gracefully first.
    pub async fn shutdown(&self) -> Result<(), BackendError> {
        Ok(self.client.shutdown().await?)
    }
}

impl From<ClientError> for BackendError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Unreachable(socket, reason) => BackendError::Unreachable {
                what: format!(
                    "the weir runtime at {} (is `weir up` running with this state dir?)",
                    socket.display()
                ),
                reason,
            },
            ClientError::Rejected(body) if body.invalid => BackendError::Invalid(body.errors),
            ClientError::Rejected(body) => BackendError::Failed(body.errors.join("\n")),
        }
    }
}

/// A stream over a channel, ending when the sender is dropped.
struct ChannelStream<T>(mpsc::Receiver<T>);

impl<T> Stream for ChannelStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

fn live(kind: Kind, objects: Vec<serde_json::Value>) -> Vec<LiveObject> {
    objects
        .into_iter()
        .map(|object| LiveObject { kind, object })
        .collect()
}

impl Backend for LocalBackend {
    /// The runtime is another process: it is sent the texts the manifests
    /// were loaded from and loads them again through the same typed path.
    async fn apply(
        &self,
        manifests: &Manifests,
    ) -> Result<Vec<(ObjectRef, ApplyOutcome)>, BackendError> {
        Ok(self.client.apply(manifests.sources.clone()).await?)
    }

    async fn delete(&self, objects: &[ObjectRef]) -> Result<Vec<(ObjectRef, bool)>, BackendError> {
        Ok(self.client.delete(objects.to_vec()).await?)
    }

    async fn get(&self, object: &ObjectRef) -> Result<Option<LiveObject>, BackendError> {
        let all = self.list(object.kind, &object.namespace).await?;
        Ok(all.into_iter().find(|o| o.name() == object.name))
    }

    async fn list(&self, kind: Kind, namespace: &str) -> Result<Vec<LiveObject>, BackendError> {
        Ok(live(kind, self.client.list(kind, namespace).await?))
    }

    /// Polls twice a second and reports what changed (the embedded runtime
    /// keeps no event log; a cluster's watch is native).
    async fn watch(&self, kind: Kind, namespace: &str) -> Result<WatchStream, BackendError> {
        let first = self.list(kind, namespace).await?;
        let (tx, rx) = mpsc::channel(64);
        let client = AdminClient::new(self.client.socket().parent().unwrap_or(Path::new(".")));
        let namespace = namespace.to_owned();
        tokio::spawn(async move {
            let mut seen: BTreeMap<String, serde_json::Value> = BTreeMap::new();
            let mut current = first;
            loop {
                let mut next_seen = BTreeMap::new();
                for o in current {
                    let name = o.name().to_owned();
                    let changed = seen.get(&name) != Some(&o.object);
                    next_seen.insert(name, o.object.clone());
                    if changed && tx.send(Ok(WatchEvent::Applied(o))).await.is_err() {
                        return;
                    }
                }
                for (name, object) in &seen {
                    if !next_seen.contains_key(name)
                        && tx
                            .send(Ok(WatchEvent::Deleted(LiveObject {
                                kind,
                                object: object.clone(),
                            })))
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
                seen = next_seen;
                tokio::time::sleep(Duration::from_millis(500)).await;
                current = match client.list(kind, &namespace).await {
                    Ok(o) => live(kind, o),
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
            }
        });
        Ok(Box::pin(ChannelStream(rx)))
    }

    async fn set_route_weights(
        &self,
        virtual_service: &ObjectRef,
        rule: &RuleSelector,
        weights: &[(String, u32)],
    ) -> Result<RouteChange, BackendError> {
        Ok(self
            .client
            .route(RouteRequest {
                virtual_service: virtual_service.clone(),
                rule: rule.clone(),
                weights: weights.to_vec(),
            })
            .await?)
    }

    /// The pod's log file, read and (with `follow`) tailed. A pod here runs
    /// one container; `-c` is checked against it as on a cluster.
    async fn logs(&self, pod: &ObjectRef, options: &LogOptions) -> Result<LogStream, BackendError> {
        if options.container.is_some()
            && let Some(live) = self.get(pod).await?
        {
            weir_api::backend::log_containers(&live.object, options)
                .map_err(|m| BackendError::Invalid(vec![m]))?;
        }
        let path = self.client.log_path(&pod.namespace, &pod.name).await?;
        let (tx, rx) = mpsc::channel(64);
        let options = options.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let Ok(mut file) = tokio::fs::File::open(&path).await else {
                return;
            };
            let mut buf = Vec::new();
            let mut first = true;
            let mut reader = CriReader::new(
                options
                    .since
                    .and_then(|d| std::time::SystemTime::now().checked_sub(d)),
                options.timestamps,
            );
            let mut missing = 0;
            loop {
                buf.clear();
                if file.read_to_end(&mut buf).await.is_err() {
                    return;
                }
                let shown = reader.read(&String::from_utf8_lossy(&buf));
                let text = match options.tail_lines {
                    Some(n) if first => last_lines(&shown, n),
                    _ => &shown,
                };
                first = false;
                if !text.is_empty() && tx.send(Ok(text.to_owned())).await.is_err() {
                    return;
                }
                if !options.follow {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                // The pod is gone (its logs go with it): the stream ends, as
                // `kubectl logs -f` ends with its pod, once what was left is
                // read. Missing twice in a row, not in a rotation's instant
                // between its rename and the new file.
                if tokio::fs::metadata(&path).await.is_err() {
                    missing += 1;
                    if missing >= 2 {
                        buf.clear();
                        let _ = file.read_to_end(&mut buf).await;
                        let rest = reader.read(&String::from_utf8_lossy(&buf));
                        if !rest.is_empty() {
                            let _ = tx.send(Ok(rest)).await;
                        }
                        return;
                    }
                    continue;
                }
                missing = 0;
                // Rotated: what is left of the old file was read above; the
                // log goes on in a new file at the same path.
                if rotated_away(&file, &path).await
                    && let Ok(next) = tokio::fs::File::open(&path).await
                {
                    let mut rest = Vec::new();
                    let _ = file.read_to_end(&mut rest).await;
                    // Files rotated since, oldest first, before the new one.
                    for mut newer in rotated_since(&file, &next, &path).await {
                        let _ = newer.read_to_end(&mut rest).await;
                    }
                    let shown = reader.read(&String::from_utf8_lossy(&rest));
                    if !shown.is_empty() && tx.send(Ok(shown)).await.is_err() {
                        return;
                    }
                    file = next;
                }
            }
        });
        Ok(Box::pin(ChannelStream(rx)))
    }

    /// The gateway listener for port 80 (else the first one).
    /// The object as stored, patched here, then applied through the same
    /// path as `weir apply` (validated, the gateway accepting it first);
    /// errors name the object ("patch of service/my-app").
    async fn patch(
        &self,
        object: &ObjectRef,
        kind: weir_api::patch::PatchType,
        patch: &serde_json::Value,
    ) -> Result<ApplyOutcome, BackendError> {
        let Some(live) = self.get(object).await? else {
            return Err(BackendError::NotFound(object.clone()));
        };
        let before = weir_api::patch::without_server_fields(live.object);
        let mut after = before.clone();
        weir_api::patch::apply_patch(&mut after, kind, patch)
            .map_err(|m| BackendError::Invalid(vec![format!("{object}: {m}")]))?;
        if after == before {
            return Ok(ApplyOutcome::Unchanged);
        }
        let text = serde_json::to_string_pretty(&after).unwrap_or_default();
        let source = (std::path::PathBuf::from(format!("patch of {object}")), text);
        let outcomes = self.client.apply(vec![source]).await?;
        Ok(outcomes
            .into_iter()
            .next()
            .map_or(ApplyOutcome::Configured, |(_, o)| o))
    }

    async fn scale(&self, deployment: &ObjectRef, replicas: i32) -> Result<(), BackendError> {
        Ok(self
            .client
            .scale(ScaleRequest {
                deployment: deployment.clone(),
                replicas,
            })
            .await?)
    }

    async fn node_addresses(&self) -> Result<Vec<String>, BackendError> {
        Ok(self.client.status().await?.node_ip.into_iter().collect())
    }

    async fn gateway_url(&self) -> Result<String, BackendError> {
        let status = self.client.status().await?;
        status
            .gateway
            .iter()
            .find(|(p, _)| *p == 80)
            .or(status.gateway.first())
            .map(|(_, a)| format!("http://{a}/"))
            .ok_or_else(|| {
                BackendError::Failed("the gateway has no listener: apply a Gateway first".into())
            })
    }

    async fn gateway_metrics(&self) -> Result<String, BackendError> {
        Ok(self.client.metrics().await?)
    }

    async fn events(&self, object: &ObjectRef) -> Result<Vec<serde_json::Value>, BackendError> {
        Ok(self.client.events(object).await?)
    }

    /// Straight from each pod (pods listen on this machine's loopback).
    async fn app_metrics(&self, namespace: &str) -> Result<Vec<(String, String)>, BackendError> {
        let pods = self.client.list(Kind::Pod, namespace).await?;
        let mut scrapes = tokio::task::JoinSet::new();
        for target in pods.iter().filter_map(weir_api::scrape::scrape_target) {
            let Some(ip) = target.ip else { continue };
            let url = format!("http://{ip}:{}{}", target.port, target.path);
            scrapes.spawn(async move { crate::scrape::get(&url).await.map(|t| (target.pod, t)) });
        }
        let mut out: Vec<(String, String)> =
            scrapes.join_all().await.into_iter().flatten().collect();
        out.sort();
        Ok(out)
    }

    async fn pod_cpu(&self, namespace: &str) -> Result<BTreeMap<String, i64>, BackendError> {
        Ok(self.client.pod_cpu(namespace).await?)
    }

    async fn rollout_command(
        &self,
        rollout: &ObjectRef,
        intent: &CommandIntent,
    ) -> Result<Option<LiveObject>, BackendError> {
        self.client
            .rollout(RolloutRequest {
                rollout: rollout.clone(),
                command: intent.clone(),
            })
            .await?;
        self.get(rollout).await
    }

    async fn previous_template(
        &self,
        deployment: &ObjectRef,
    ) -> Result<Option<serde_json::Value>, BackendError> {
        Ok(self.client.previous_template(deployment).await?)
    }

    fn default_namespace(&self) -> &str {
        weir_api::resource::DEFAULT_NAMESPACE
    }
}

/// The last `n` lines of `text` (all of it when it has fewer).
fn last_lines(text: &str, n: u64) -> &str {
    if n == 0 {
        return "";
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut seen = 0;
    for (i, c) in body.char_indices().rev() {
        if c == '\n' {
            seen += 1;
            if seen == n {
                return &text[i + 1..];
            }
        }
    }
    text
}

/// Whether the file at `path` is no longer the one `open` reads (the log
/// rotated it to `path.1`).
async fn rotated_away(open: &tokio::fs::File, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (open.metadata().await, tokio::fs::metadata(path).await) {
        (Ok(a), Ok(b)) => a.ino() != b.ino() || a.dev() != b.dev(),
        _ => false,
    }
}

/// The files rotated after the one `open` reads, oldest first, opened:
/// `path.1` is the newest rotated file, so those found before `open`'s own
/// (all found, when it was already deleted), leaving out `next` (the
/// current file, opened already, should it have rotated meanwhile).
/// Reading them before `next` loses nothing and repeats nothing when
/// several rotations came between two reads. Each is identified by its
/// inode once open, so a rename during the scan cannot swap two files.
async fn rotated_since(
    open: &tokio::fs::File,
    next: &tokio::fs::File,
    path: &std::path::Path,
) -> Vec<tokio::fs::File> {
    use std::os::unix::fs::MetadataExt;
    let id = |m: std::fs::Metadata| (m.dev(), m.ino());
    let (Ok(mine), Ok(current)) = (open.metadata().await, next.metadata().await) else {
        return Vec::new();
    };
    let (mine, current) = (id(mine), id(current));
    let mut newer = Vec::new();
    // The kubelet's default keeps 5 files; a bound well past any setting.
    for i in 1..=64 {
        let Ok(file) = tokio::fs::File::open(crate::pod_log::rotated(path, i)).await else {
            break;
        };
        let Ok(meta) = file.metadata().await else {
            break;
        };
        let this = id(meta);
        if this == mine {
            break;
        }
        if this != current {
            newer.push(file);
        }
    }
    newer.reverse();
    newer
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn the_last_lines_as_tail_counts_them() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines("a\nb\n", 0), "");
        assert_eq!(last_lines("", 3), "");
        assert_eq!(last_lines("only\n", 1), "only\n");
    }
}

//! [`KubeBackend`]: the weir commands over the Kubernetes API.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams,
    WatchEvent as KubeWatchEvent, WatchParams,
};
use kube::core::{ApiResource, ObjectList};
use weir_api::backend::{
    ApplyOutcome, Backend, BackendError, LiveObject, LogOptions, LogStream, RouteChange,
    RuleSelector, WatchEvent, WatchStream,
};
use weir_api::load::Manifests;
use weir_api::resource::{Kind, ObjectRef};

use crate::cluster::Connection;
use crate::errors::Call;
use crate::kinds::{read_resource, write_resource};
use crate::manifests::{ApplyOptions, Outgoing, outgoing};
use crate::route::{ConfirmOptions, confirm, weight_patch};

/// The field manager of every change weir makes (server-side apply and patches).
pub const FIELD_MANAGER: &str = "weir";

/// A cluster with Istio, driven through its API server.
#[derive(Clone)]
pub struct KubeBackend {
    pub(crate) conn: Connection,
    /// Longest wait for one API call (`--request-timeout`).
    pub(crate) timeout: Duration,
    apply: ApplyOptions,
    confirm: ConfirmOptions,
}

impl KubeBackend {
    /// A backend over this connection.
    pub fn new(
        conn: Connection,
        timeout: Duration,
        apply: ApplyOptions,
        confirm: ConfirmOptions,
    ) -> Self {
        Self {
            conn,
            timeout,
            apply,
            confirm,
        }
    }

    /// The same backend with another default namespace (`-n`): where
    /// objects whose manifests name no namespace go.
    pub fn in_namespace(mut self, namespace: String) -> Self {
        self.conn.namespace = namespace;
        self
    }

    pub(crate) fn call<'a>(&'a self, object: Option<&'a ObjectRef>) -> Call<'a> {
        Call {
            server: &self.conn.server,
            object,
        }
    }

    /// Runs one API call with the request timeout.
    pub(crate) async fn timed<T>(
        &self,
        object: Option<&ObjectRef>,
        what: &str,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, BackendError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(|e| self.call(object).error(e)),
            Err(_) => Err(BackendError::Timeout(
                self.timeout,
                format!(
                    "{what} ({}): the API server did not answer",
                    self.conn.server
                ),
            )),
        }
    }

    pub(crate) fn api(&self, resource: &ApiResource, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.conn.client.clone(), namespace, resource)
    }

    /// A raw GET of an API path, as JSON.
    pub(crate) async fn get_json(&self, path: &str) -> Result<serde_json::Value, BackendError> {
        self.get_json_opt(path).await?.ok_or_else(|| {
            BackendError::Failed(format!("GET {path}: the API server answered 404 Not Found"))
        })
    }

    /// A raw GET of an API path, as JSON; `None` when the server answers 404.
    pub(crate) async fn get_json_opt(
        &self,
        path: &str,
    ) -> Result<Option<serde_json::Value>, BackendError> {
        let request = get_request(path)?;
        let call = async {
            match self.conn.client.request::<serde_json::Value>(request).await {
                Ok(v) => Ok(Some(v)),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
                Err(e) => Err(e),
            }
        };
        self.timed(None, &format!("GET {path}"), call).await
    }

    /// A raw GET of an API path, as text.
    pub(crate) async fn get_text(&self, path: &str) -> Result<String, BackendError> {
        let request = get_request(path)?;
        self.timed(
            None,
            &format!("GET {path}"),
            self.conn.client.request_text(request),
        )
        .await
    }

    async fn apply_one(&self, o: &Outgoing, dry_run: bool) -> Result<DynamicObject, BackendError> {
        let mut params = PatchParams::apply(FIELD_MANAGER).validation_strict();
        params.force = self.apply.force_conflicts;
        params.dry_run = dry_run;
        let api = self.api(
            &write_resource(&o.api_version, o.object.kind),
            &o.object.namespace,
        );
        let what = format!("apply {}", o.object);
        self.timed(
            Some(&o.object),
            &what,
            api.patch(&o.object.name, &params, &Patch::Apply(&o.body)),
        )
        .await
        .map_err(|e| at_source(e, o))
    }
}

/// A body-less GET of an API path.
fn get_request(path: &str) -> Result<http::Request<Vec<u8>>, BackendError> {
    http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| BackendError::Failed(format!("GET {path}: {e}")))
}

/// Prefixes an invalid-input error with the manifest position it came from.
fn at_source(e: BackendError, o: &Outgoing) -> BackendError {
    match e {
        BackendError::Invalid(messages) => BackendError::Invalid(
            messages
                .into_iter()
                .map(|m| format!("{}: {m}", o.source))
                .collect(),
        ),
        other => other,
    }
}

/// An object as `LiveObject`, with the apiVersion and kind the API leaves
/// out of list items.
fn live(kind: Kind, resource: &ApiResource, object: DynamicObject) -> LiveObject {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| resource.api_version.clone().into());
        map.entry("kind")
            .or_insert_with(|| resource.kind.clone().into());
    }
    LiveObject {
        kind,
        object: value,
    }
}

fn resource_version(o: &DynamicObject) -> Option<&str> {
    o.metadata.resource_version.as_deref()
}

impl Backend for KubeBackend {
    /// Each object's document is sent as it was loaded.
    async fn apply(
        &self,
        manifests: &Manifests,
    ) -> Result<Vec<(ObjectRef, ApplyOutcome)>, BackendError> {
        let outgoing = outgoing(manifests, &self.conn.namespace, &self.apply);
        // First every object as a dry run, so a rejection changes nothing.
        let mut before = Vec::with_capacity(outgoing.len());
        for o in &outgoing {
            let api = self.api(&read_resource(o.object.kind), &o.object.namespace);
            let existing = self
                .timed(
                    Some(&o.object),
                    &format!("get {}", o.object),
                    api.get_opt(&o.object.name),
                )
                .await?;
            self.apply_one(o, true).await?;
            before.push(
                existing
                    .as_ref()
                    .and_then(resource_version)
                    .map(str::to_owned),
            );
        }
        let mut outcomes = Vec::with_capacity(outgoing.len());
        for (o, before) in outgoing.iter().zip(before) {
            let applied = self.apply_one(o, false).await?;
            let outcome = match (before.as_deref(), resource_version(&applied)) {
                (None, _) => ApplyOutcome::Created,
                (Some(a), Some(b)) if a == b => ApplyOutcome::Unchanged,
                _ => ApplyOutcome::Configured,
            };
            outcomes.push((o.object.clone(), outcome));
        }
        Ok(outcomes)
    }

    async fn delete(&self, objects: &[ObjectRef]) -> Result<Vec<(ObjectRef, bool)>, BackendError> {
        let mut out = Vec::with_capacity(objects.len());
        for object in objects {
            let api = self.api(&read_resource(object.kind), &object.namespace);
            let what = format!("delete {object}");
            match self
                .timed(
                    Some(object),
                    &what,
                    api.delete(&object.name, &DeleteParams::background()),
                )
                .await
            {
                Ok(_) => out.push((object.clone(), true)),
                Err(BackendError::NotFound(_)) => out.push((object.clone(), false)),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn get(&self, object: &ObjectRef) -> Result<Option<LiveObject>, BackendError> {
        let resource = read_resource(object.kind);
        let api = self.api(&resource, &object.namespace);
        let found = self
            .timed(
                Some(object),
                &format!("get {object}"),
                api.get_opt(&object.name),
            )
            .await?;
        Ok(found.map(|o| live(object.kind, &resource, o)))
    }

    async fn list(&self, kind: Kind, namespace: &str) -> Result<Vec<LiveObject>, BackendError> {
        let (_, resource, list) = self.list_at(kind, namespace).await?;
        Ok(list
            .items
            .into_iter()
            .map(|o| live(kind, &resource, o))
            .collect())
    }

    async fn watch(&self, kind: Kind, namespace: &str) -> Result<WatchStream, BackendError> {
        let (api, resource, list) = self.list_at(kind, namespace).await?;
        let version = list.metadata.resource_version.clone().unwrap_or_default();
        let (tx, rx) = futures::channel::mpsc::channel(64);
        let backend = self.clone();
        tokio::spawn(async move {
            let mut tx = tx;
            for o in list.items {
                if futures::SinkExt::send(
                    &mut tx,
                    Ok(WatchEvent::Applied(live(kind, &resource, o))),
                )
                .await
                .is_err()
                {
                    return;
                }
            }
            backend.follow(api, resource, kind, version, tx).await;
        });
        Ok(Box::pin(rx))
    }

    async fn set_route_weights(
        &self,
        virtual_service: &ObjectRef,
        rule: &RuleSelector,
        weights: &[(String, u32)],
    ) -> Result<RouteChange, BackendError> {
        let started = tokio::time::Instant::now();
        let resource = read_resource(Kind::VirtualService);
        let api = self.api(&resource, &virtual_service.namespace);
        let what = format!("get {virtual_service}");
        let current = self
            .timed(Some(virtual_service), &what, api.get(&virtual_service.name))
            .await?;
        let (patch, change) = weight_patch(&current, rule, weights)
            .map_err(|m| BackendError::Invalid(vec![format!("{virtual_service}: {m}")]))?;
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let what = format!("patch {virtual_service}");
        let patched = self
            .timed(
                Some(virtual_service),
                &what,
                api.patch(&virtual_service.name, &params, &Patch::Json::<()>(patch)),
            )
            .await
            .map_err(|e| match e {
                // A failed `test`: the rule changed between weir's read and its patch.
                BackendError::Invalid(reasons) => BackendError::Conflict {
                    object: virtual_service.clone(),
                    reason: format!(
                        "its destinations changed while weir was changing them; nothing was changed, run the command again ({})",
                        reasons.join("; ")
                    ),
                },
                other => other,
            })?;
        let confirmed_by = confirm(
            self,
            &api,
            virtual_service,
            &patched,
            &change,
            &self.confirm,
        )
        .await?;
        Ok(RouteChange {
            rule_index: change.rule_index,
            before: change.before,
            after: change.after,
            confirmed_by,
            elapsed: started.elapsed(),
        })
    }

    async fn logs(&self, pod: &ObjectRef, options: &LogOptions) -> Result<LogStream, BackendError> {
        let api: Api<Pod> = Api::namespaced(self.conn.client.clone(), &pod.namespace);
        let params = LogParams {
            follow: options.follow,
            tail_lines: options
                .tail_lines
                .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            since_seconds: options
                .since
                .map(|d| i64::try_from(d.as_secs().max(1)).unwrap_or(i64::MAX)),
            timestamps: options.timestamps,
            ..LogParams::default()
        };
        let reader = self
            .timed(
                Some(pod),
                &format!("logs of {pod}"),
                api.log_stream(&pod.name, &params),
            )
            .await?;
        let server = self.conn.server.clone();
        Ok(Box::pin(reader.lines().map_ok(|line| line + "\n").map_err(
            move |e| BackendError::Unreachable {
                what: server.clone(),
                reason: format!("the log stream broke: {e}"),
            },
        )))
    }

    /// The first address of `istio-system/istio-ingressgateway` that accepts connections.
    async fn gateway_url(&self) -> Result<String, BackendError> {
        Ok(format!("{}/", self.ingress_url().await?.url))
    }

    /// From the Events API, filtered on the server by the involved object.
    async fn events(&self, object: &ObjectRef) -> Result<Vec<serde_json::Value>, BackendError> {
        let api: Api<Event> = Api::namespaced(self.conn.client.clone(), &object.namespace);
        let params = ListParams::default().fields(&format!(
            "involvedObject.kind={},involvedObject.name={}",
            object.kind.name(),
            object.name
        ));
        let list = self
            .timed(None, &format!("events of {object}"), api.list(&params))
            .await?;
        let mut events: Vec<Event> = list.items;
        events.sort_by(|a, b| a.last_timestamp.cmp(&b.last_timestamp));
        Ok(events
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect())
    }

    /// Every ingress gateway replica's metrics, through the API server's pod proxy.
    async fn gateway_metrics(&self) -> Result<String, BackendError> {
        self.ingress_metrics().await
    }

    /// From `metrics.k8s.io`.
    async fn pod_cpu(&self, namespace: &str) -> Result<BTreeMap<String, i64>, BackendError> {
        self.metrics_pod_cpu(namespace).await
    }

    fn default_namespace(&self) -> &str {
        &self.conn.namespace
    }
}

impl KubeBackend {
    /// Lists a kind in a namespace: the API handle, where it lives, and the
    /// objects with the list's resourceVersion (where a watch starts).
    async fn list_at(
        &self,
        kind: Kind,
        namespace: &str,
    ) -> Result<(Api<DynamicObject>, ApiResource, ObjectList<DynamicObject>), BackendError> {
        let resource = read_resource(kind);
        let api = self.api(&resource, namespace);
        let list = self
            .timed(
                None,
                &format!("list {}", resource.plural),
                api.list(&ListParams::default()),
            )
            .await?;
        Ok((api, resource, list))
    }
}

type EventSender = futures::channel::mpsc::Sender<Result<WatchEvent, BackendError>>;

impl KubeBackend {
    /// Follows changes from `version` on, re-watching when the server ends a
    /// watch and re-listing when the version has expired (410 Gone), until
    /// the receiver is dropped.
    async fn follow(
        &self,
        api: Api<DynamicObject>,
        resource: ApiResource,
        kind: Kind,
        mut version: String,
        mut tx: EventSender,
    ) {
        use futures::SinkExt;
        loop {
            let params = WatchParams::default().timeout(290);
            let stream = match api.watch(&params, &version).await {
                Ok(stream) => stream,
                Err(e) => {
                    let _ = tx.send(Err(self.call(None).error(e))).await;
                    return;
                }
            };
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let event = match event {
                    Ok(KubeWatchEvent::Added(o) | KubeWatchEvent::Modified(o)) => {
                        version = resource_version(&o).unwrap_or(&version).to_owned();
                        WatchEvent::Applied(live(kind, &resource, o))
                    }
                    Ok(KubeWatchEvent::Deleted(o)) => {
                        version = resource_version(&o).unwrap_or(&version).to_owned();
                        WatchEvent::Deleted(live(kind, &resource, o))
                    }
                    Ok(KubeWatchEvent::Bookmark(b)) => {
                        version = b.metadata.resource_version;
                        continue;
                    }
                    Ok(KubeWatchEvent::Error(status)) if status.code == 410 => {
                        match api.list(&ListParams::default()).await {
                            Ok(list) => {
                                version = list.metadata.resource_version.unwrap_or_default();
                                for o in list.items {
                                    if tx
                                        .send(Ok(WatchEvent::Applied(live(kind, &resource, o))))
                                        .await
                                        .is_err()
                                    {
                                        return;
                                    }
                                }
                                break;
                            }
                            Err(e) => {
                                let _ = tx.send(Err(self.call(None).error(e))).await;
                                return;
                            }
                        }
                    }
                    Ok(KubeWatchEvent::Error(status)) => {
                        let _ = tx
                            .send(Err(self.call(None).error(kube::Error::Api(status))))
                            .await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(self.call(None).error(e))).await;
                        return;
                    }
                };
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    }
}

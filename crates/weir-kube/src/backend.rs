//! [`KubeBackend`]: the weir commands over the Kubernetes API. Over 600
//! lines because it is one `impl Backend` (a trait's impl is one block);
//! the pieces each method needs live in their own modules (errors, watch,
//! port-forward, proxy config, kinds, usage).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use kube::core::{ApiResource, ObjectList};
use kube::runtime::{WatchStreamExt, watcher};
use weir_api::backend::{
    ApplyOutcome, Backend, BackendError, LiveObject, LogOptions, LogStream, RouteChange,
    RuleSelector, WatchEvent, WatchStream, log_containers,
};
use weir_api::load::Manifests;
use weir_api::resource::{Kind, ObjectRef};

use crate::cluster::Connection;
use crate::errors::{self, Call, Failure};
use crate::kinds::{read_resource, write_resource};
use crate::manifests::{ApplyOptions, Outgoing, apply_outcome, outgoing};
use crate::not_served::{self, Served};
use crate::route::{ConfirmOptions, GatewayAccess, confirm, weight_patch};
use crate::watch::{Change, Seen};

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
    /// The server-side timeout of one watch request (kubectl's 290 s, by
    /// default); the watcher reconnects after it, and treats a watch that
    /// is silent for 5 s longer as a dropped connection.
    watch_timeout: u32,
    /// The ingress gateway's Service when `--gateway` names it; else it is
    /// found by its label ([`crate::ingress::choose_gateway`]).
    pub(crate) gateway: Option<crate::ingress::ServiceName>,
}

/// kubectl's watch timeout, seconds.
pub const WATCH_TIMEOUT_SECONDS: u32 = 290;

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
            watch_timeout: WATCH_TIMEOUT_SECONDS,
            gateway: None,
        }
    }

    /// The API server's URL and context, as messages name the cluster.
    pub fn server(&self) -> &str {
        &self.conn.server
    }

    /// The same backend using the gateway Service `gateway` (`--gateway`)
    /// rather than the one found by its label.
    pub fn with_gateway(mut self, gateway: Option<crate::ingress::ServiceName>) -> Self {
        self.gateway = gateway;
        self
    }

    /// The same backend with another server-side watch timeout (seconds).
    pub fn with_watch_timeout(mut self, seconds: u32) -> Self {
        self.watch_timeout = seconds;
        self
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

    /// Runs one API call with the request timeout; a failure is read as
    /// the API server means it ([`crate::errors`]).
    pub(crate) async fn timed<T>(
        &self,
        object: Option<&ObjectRef>,
        what: &str,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, BackendError> {
        let resource = object.map(|o| read_resource(o.kind));
        self.timed_at(resource.as_ref(), object, what, call).await
    }

    /// As [`KubeBackend::timed`], for a call at `resource` (the version an
    /// object is written at, when it is not the one weir reads it at).
    pub(crate) async fn timed_at<T>(
        &self,
        resource: Option<&ApiResource>,
        object: Option<&ObjectRef>,
        what: &str,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, BackendError> {
        match self.within_timeout(what, call).await? {
            Ok(value) => Ok(value),
            Err(e) => Err(self.failure(resource, object, e).await),
        }
    }

    /// The call's own answer, or a timeout when the API server gives none in
    /// time. The client does not retry (`cluster::connect`), so a 503 from an
    /// aggregated API comes back at once.
    pub(crate) async fn within_timeout<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<Result<T, kube::Error>, BackendError> {
        tokio::time::timeout(self.timeout, call).await.map_err(|_| {
            BackendError::Timeout(
                self.timeout,
                format!(
                    "{what} ({}): the API server did not answer",
                    self.conn.server
                ),
            )
        })
    }

    /// A failed call as weir's error. A URL the server does not serve at all
    /// is explained from discovery: the group missing (its CRDs are not
    /// installed) or served at other versions.
    pub(crate) async fn failure(
        &self,
        resource: Option<&ApiResource>,
        object: Option<&ObjectRef>,
        e: kube::Error,
    ) -> BackendError {
        match (e, resource) {
            (kube::Error::Api(status), Some(resource))
                if errors::classify(&status) == Failure::PathNotServed =>
            {
                self.not_served(resource, object).await
            }
            (e, _) => self.call(object).error(e),
        }
    }

    async fn not_served(&self, resource: &ApiResource, object: Option<&ObjectRef>) -> BackendError {
        let about = object.map_or_else(|| resource.plural.clone(), ToString::to_string);
        let group_path = if resource.group.is_empty() {
            "/api".to_owned()
        } else {
            format!("/apis/{}", resource.group)
        };
        let served = match self.get_json_opt(&group_path).await {
            Ok(None) => Served::NoGroup,
            Ok(Some(group)) => {
                let mut at = Vec::new();
                for version in not_served::group_versions(&group) {
                    match self.get_json_opt(&format!("{group_path}/{version}")).await {
                        Ok(Some(list)) if not_served::lists_resource(&list, &resource.plural) => {
                            at.push(version);
                        }
                        Ok(_) => {}
                        Err(e) => return e,
                    }
                }
                Served::At(at)
            }
            Err(e) => return e,
        };
        BackendError::Failed(not_served::message(
            &about,
            &self.conn.server,
            &resource.group,
            &resource.plural,
            &resource.version,
            &served,
        ))
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
        // Not `timed`: its failure path asks discovery through this very
        // call, and a raw path has no API resource to explain anyway.
        self.within_timeout(&format!("GET {path}"), call)
            .await?
            .map_err(|e| self.call(None).error(e))
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

    /// Server-side apply of one object as weir. A conflict only with what
    /// the file should win over ([`errors::file_wins`]) is applied again
    /// with force; any other needs `--force-conflicts`.
    async fn apply_one(&self, o: &Outgoing, dry_run: bool) -> Result<DynamicObject, BackendError> {
        let resource = write_resource(&o.api_version, o.object.kind);
        let api = self.api(&resource, &o.object.namespace);
        let what = format!("apply {}", o.object);
        let params = |force: bool| {
            let mut params = PatchParams::apply(FIELD_MANAGER).validation_strict();
            params.force = force;
            params.dry_run = dry_run;
            params
        };
        let first = params(self.apply.force_conflicts);
        let answer = self
            .within_timeout(
                &what,
                api.patch(&o.object.name, &first, &Patch::Apply(&o.body)),
            )
            .await?;
        let result = match answer {
            Err(kube::Error::Api(status))
                if errors::file_wins(&status, FIELD_MANAGER, o.scaled_by_hpa) =>
            {
                self.timed_at(
                    Some(&resource),
                    Some(&o.object),
                    &what,
                    api.patch(&o.object.name, &params(true), &Patch::Apply(&o.body)),
                )
                .await
            }
            Err(e) => Err(self.failure(Some(&resource), Some(&o.object), e).await),
            Ok(applied) => Ok(applied),
        };
        result.map_err(|e| at_source(e, o))
    }
}

/// A body-less GET of an API path.
impl GatewayAccess for KubeBackend {
    async fn gateway_pods(&self) -> Result<Vec<serde_json::Value>, BackendError> {
        self.ingress_pods().await
    }

    async fn pod_page(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
        path: &str,
    ) -> Result<serde_json::Value, String> {
        self.pod_port_json(namespace, name, port, path).await
    }

    async fn gateway_address(&self) -> Result<String, BackendError> {
        Ok(self.ingress_url().await?.url)
    }
}

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

impl Backend for KubeBackend {
    /// Each object's document is sent as it was loaded.
    async fn apply(
        &self,
        manifests: &Manifests,
    ) -> Result<Vec<(ObjectRef, ApplyOutcome)>, BackendError> {
        let outgoing = outgoing(manifests, &self.conn.namespace, &self.apply);
        // First every object as a dry run, so a rejection changes nothing.
        // What is stored is read at the version it is applied at, so it is
        // compared with the answer to the apply in the same shape (an HPA
        // applied at autoscaling/v2 and read at v1 always differed).
        let mut before = Vec::with_capacity(outgoing.len());
        for o in &outgoing {
            let resource = write_resource(&o.api_version, o.object.kind);
            let api = self.api(&resource, &o.object.namespace);
            let existing = self
                .timed_at(
                    Some(&resource),
                    Some(&o.object),
                    &format!("get {}", o.object),
                    api.get_opt(&o.object.name),
                )
                .await?;
            self.apply_one(o, true).await?;
            before.push(existing.and_then(|e| serde_json::to_value(e).ok()));
        }
        let mut outcomes = Vec::with_capacity(outgoing.len());
        for (o, before) in outgoing.iter().zip(before) {
            let applied = self.apply_one(o, false).await?;
            let applied = serde_json::to_value(&applied).unwrap_or_default();
            outcomes.push((o.object.clone(), apply_outcome(before.as_ref(), &applied)));
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

    /// Lists, then follows with kube's watcher: it re-watches when the
    /// server ends a watch, relists after 410 Gone or a dropped or idle
    /// connection (idle: the watch timeout plus 5 s), with backoff; a
    /// relist reports what changed meanwhile, deletions included
    /// ([`Seen`]). Refusals (401, 403, 404) end the stream with the error;
    /// other failures are retried.
    async fn watch(&self, kind: Kind, namespace: &str) -> Result<WatchStream, BackendError> {
        let (api, resource, list) = self.list_at(kind, namespace).await?;
        let mut seen = Seen::of(list.items.iter().cloned());
        let first: Vec<Result<WatchEvent, BackendError>> = list
            .items
            .into_iter()
            .map(|o| Ok(WatchEvent::Applied(live(kind, &resource, o))))
            .collect();
        let first = futures::stream::iter(first);
        let config = watcher::Config {
            timeout: Some(self.watch_timeout),
            ..watcher::Config::default()
        };
        let call = self.call(None);
        let server = call.server.to_owned();
        let changes = watcher::watcher(api, config)
            .default_backoff()
            .filter_map(move |event| {
                let resource = resource.clone();
                let out: Option<Vec<Result<WatchEvent, BackendError>>> = match event {
                    Ok(event) => Some(
                        seen.step(event)
                            .into_iter()
                            .map(|change| {
                                Ok(match change {
                                    Change::Applied(o) => {
                                        WatchEvent::Applied(live(kind, &resource, o))
                                    }
                                    Change::Deleted(o) => {
                                        WatchEvent::Deleted(live(kind, &resource, o))
                                    }
                                })
                            })
                            .collect(),
                    ),
                    Err(e) => refusal(&e, &server).map(|e| vec![Err(e)]),
                };
                futures::future::ready(out.map(futures::stream::iter))
            })
            .flatten();
        // A refusal ends the stream after it is reported.
        let mut ended = false;
        let changes = changes.take_while(move |item| {
            let go = !ended;
            ended = item.is_err();
            futures::future::ready(go)
        });
        Ok(Box::pin(first.chain(changes)))
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
        let patched = match self
            .within_timeout(
                &what,
                api.patch(&virtual_service.name, &params, &Patch::Json::<()>(patch)),
            )
            .await?
        {
            Ok(patched) => patched,
            // A failed `test` (a 422 without causes): the rule changed
            // between weir's read and its patch. A webhook's refusal (400) or
            // the schema's (422 with causes) is the user's input, exit 2.
            Err(kube::Error::Api(status)) if errors::classify(&status) == Failure::TestFailed => {
                return Err(BackendError::Conflict {
                    object: virtual_service.clone(),
                    reason: format!(
                        "its destinations changed while weir was changing them; nothing was changed, run the command again ({})",
                        status.message
                    ),
                });
            }
            Err(e) => {
                return Err(self
                    .failure(Some(&resource), Some(virtual_service), e)
                    .await);
            }
        };
        let confirmed_by = confirm(self, virtual_service, &patched, &change, &self.confirm).await?;
        Ok(RouteChange {
            rule_index: change.rule_index,
            before: change.before,
            after: change.after,
            confirmed_by,
            elapsed: started.elapsed(),
        })
    }

    /// The containers are chosen as kubectl chooses ([`log_containers`]):
    /// an injected pod has `istio-proxy` too, and the API server refuses a
    /// log request that names no container of several.
    async fn logs(&self, pod: &ObjectRef, options: &LogOptions) -> Result<LogStream, BackendError> {
        let Some(live) = self.get(pod).await? else {
            return Err(BackendError::NotFound(pod.clone()));
        };
        let containers =
            log_containers(&live.object, options).map_err(|m| BackendError::Invalid(vec![m]))?;
        let api: Api<Pod> = Api::namespaced(self.conn.client.clone(), &pod.namespace);
        let mut streams = Vec::with_capacity(containers.len());
        for container in containers {
            let params = LogParams {
                container: Some(container.clone()),
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
                    &format!("logs of {pod} container {container}"),
                    api.log_stream(&pod.name, &params),
                )
                .await?;
            let server = self.conn.server.clone();
            let lines: LogStream =
                Box::pin(reader.lines().map_ok(|line| line + "\n").map_err(move |e| {
                    BackendError::Unreachable {
                        what: server.clone(),
                        reason: format!("the log stream broke: {e}"),
                    }
                }));
            streams.push(lines);
        }
        // Followed logs of several containers interleave as lines arrive;
        // otherwise each container's log follows the previous one's.
        Ok(if options.follow {
            Box::pin(futures::stream::select_all(streams))
        } else {
            Box::pin(futures::stream::iter(streams).flatten())
        })
    }

    /// The first address of `istio-system/istio-ingressgateway` that accepts connections.
    /// A PATCH of the type asked, by field manager `weir`, as `kubectl
    /// patch` sends it (strategic merge is refused by the API server for
    /// custom resources, as it refuses kubectl's).
    async fn patch(
        &self,
        object: &ObjectRef,
        kind: weir_api::patch::PatchType,
        patch: &serde_json::Value,
    ) -> Result<ApplyOutcome, BackendError> {
        let resource = read_resource(object.kind);
        let api = self.api(&resource, &object.namespace);
        let before = self
            .timed(
                Some(object),
                &format!("get {object}"),
                api.get(&object.name),
            )
            .await?;
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let what = format!("patch {object}");
        let after = match kind {
            weir_api::patch::PatchType::Strategic => {
                self.timed(
                    Some(object),
                    &what,
                    api.patch(&object.name, &params, &Patch::Strategic(patch)),
                )
                .await?
            }
            weir_api::patch::PatchType::Merge => {
                self.timed(
                    Some(object),
                    &what,
                    api.patch(&object.name, &params, &Patch::Merge(patch)),
                )
                .await?
            }
            weir_api::patch::PatchType::Json => {
                let operations: json_patch::Patch =
                    serde_json::from_value(patch.clone()).map_err(|e| {
                        BackendError::Invalid(vec![format!("{object}: not a JSON patch: {e}")])
                    })?;
                self.timed(
                    Some(object),
                    &what,
                    api.patch(&object.name, &params, &Patch::Json::<()>(operations)),
                )
                .await?
            }
        };
        Ok(
            if after.metadata.resource_version == before.metadata.resource_version {
                ApplyOutcome::Unchanged
            } else {
                ApplyOutcome::Configured
            },
        )
    }

    /// A merge patch of the scale subresource by `weir`, as `kubectl scale`.
    async fn scale(&self, deployment: &ObjectRef, replicas: i32) -> Result<(), BackendError> {
        let api: Api<k8s_openapi::api::apps::v1::Deployment> =
            Api::namespaced(self.conn.client.clone(), &deployment.namespace);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        self.timed(
            Some(deployment),
            &format!("scale {deployment}"),
            api.patch_scale(&deployment.name, &params, &Patch::Merge(&patch)),
        )
        .await?;
        Ok(())
    }

    /// Each node's InternalIP (else its first address).
    async fn node_addresses(&self) -> Result<Vec<String>, BackendError> {
        let nodes = self.get_json("/api/v1/nodes").await?;
        Ok(nodes["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|node| {
                let addresses = node["status"]["addresses"].as_array()?;
                addresses
                    .iter()
                    .find(|a| a["type"] == "InternalIP")
                    .or_else(|| addresses.first())
                    .and_then(|a| a["address"].as_str())
                    .map(str::to_owned)
            })
            .collect())
    }

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

    /// Through the API server's pod proxy, as the gateway's are read.
    async fn app_metrics(&self, namespace: &str) -> Result<Vec<(String, String)>, BackendError> {
        let (_, _, pods) = self.list_at(Kind::Pod, namespace).await?;
        let mut out = Vec::new();
        for pod in pods.items {
            let Ok(json) = serde_json::to_value(&pod) else {
                continue;
            };
            let Some(target) = weir_api::scrape::scrape_target(&json) else {
                continue;
            };
            let path = format!(
                "/api/v1/namespaces/{namespace}/pods/{}:{}/proxy{}",
                target.pod, target.port, target.path
            );
            if let Ok(text) = self.get_text(&path).await {
                out.push((target.pod, text));
            }
        }
        Ok(out)
    }

    /// From `metrics.k8s.io`.
    async fn pod_cpu(&self, namespace: &str) -> Result<BTreeMap<String, i64>, BackendError> {
        self.metrics_pod_cpu(namespace)
            .await?
            .map_err(|unavailable| BackendError::Failed(unavailable.message()))
    }

    /// Rollouts run on the embedded runtime only: the cluster has no
    /// Rollout CRD or controller yet.
    async fn rollout_command(
        &self,
        rollout: &ObjectRef,
        _intent: &weir_api::rollout::CommandIntent,
    ) -> Result<Option<LiveObject>, BackendError> {
        Err(BackendError::Failed(format!(
            "{rollout}: Rollouts run on the embedded runtime (`weir up`); a cluster has no Rollout controller yet"
        )))
    }

    /// Not read from a cluster's ReplicaSets yet.
    async fn previous_template(
        &self,
        deployment: &ObjectRef,
    ) -> Result<Option<serde_json::Value>, BackendError> {
        Err(BackendError::Failed(format!(
            "{deployment}: `weir rollout undo` reads the embedded runtime's template history; on a cluster use `kubectl rollout undo`"
        )))
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

/// A watcher failure that retrying cannot fix (the credentials, the kind
/// not served), as weir's error; `None` for what the backoff retries.
fn refusal(e: &watcher::Error, server: &str) -> Option<BackendError> {
    let status = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status,
        watcher::Error::WatchError(status) => status,
        _ => return None,
    };
    let call = Call {
        server,
        object: None,
    };
    matches!(status.code, 401 | 403 | 404).then(|| call.status_error(status))
}

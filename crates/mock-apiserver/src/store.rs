//! The object store behind the mock's URLs: one object per resource
//! whichever API version names it; a custom resource's group served only
//! at the versions its stored CRDs serve; lists (in a namespace or across
//! all, equality `labelSelector`s honoured), gets, pod logs, server-side
//! apply (dry runs, a missing namespace refused, resourceVersion and
//! generation bumped on a change) and JSON patches (a failed `test` is 422
//! without causes). Field ownership and its conflicts, DELETE and the
//! scale subresource are not modelled: the tests of those run against the
//! real kube-apiserver.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use http::{Method, Response};
use serde_json::{Value, json};

use crate::state::{
    Body, Recorded, Shared, full, json_response, lock, not_found, page_not_found, status_response,
};

/// Collections the mock knows (the last path segment of a list).
const COLLECTIONS: [&str; 12] = [
    "pods",
    "services",
    "deployments",
    "horizontalpodautoscalers",
    "ingresses",
    "gateways",
    "virtualservices",
    "destinationrules",
    "workloadentries",
    "nodes",
    "namespaces",
    "customresourcedefinitions",
];

/// The API groups and versions every cluster serves (the mock's subset);
/// a custom resource's group is served at the versions its stored CRDs
/// serve ([`served`]). Others answer the plain-text 404 of a cluster that
/// lacks them (metrics.k8s.io without metrics-server).
const BUILT_IN: [&str; 6] = [
    "/api/v1/",
    "/apis/apps/v1/",
    "/apis/autoscaling/v1/",
    "/apis/autoscaling/v2/",
    "/apis/networking.k8s.io/v1/",
    "/apis/apiextensions.k8s.io/v1/",
];

/// Where CRDs are stored.
pub(crate) const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/";

/// The prefixes served now: the built-in APIs, and `/apis/GROUP/VERSION/`
/// for each version a stored CRD of that group serves — as a real API
/// server serves a custom resource only once its CRD is installed.
fn served(objects: &BTreeMap<String, Value>) -> Vec<String> {
    let mut prefixes: Vec<String> = BUILT_IN.iter().map(|p| (*p).to_owned()).collect();
    for (key, crd) in objects.range(CRDS.to_owned()..) {
        if !key.starts_with(CRDS) {
            break;
        }
        let Some(group) = crd["spec"]["group"].as_str() else {
            continue;
        };
        let versions = crd["spec"]["versions"].as_array().into_iter().flatten();
        for version in versions.filter(|v| v["served"] != false) {
            if let Some(name) = version["name"].as_str() {
                let prefix = format!("/apis/{group}/{name}/");
                if !prefixes.contains(&prefix) {
                    prefixes.push(prefix);
                }
            }
        }
    }
    prefixes
}

/// A CRD of Istio's networking group for `plural`, serving the three
/// versions Istio 1.22 and later serve (v1 stored).
pub(crate) fn istio_crd(plural: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.networking.istio.io")},
        "spec": {"group": "networking.istio.io", "scope": "Namespaced",
                 "names": {"plural": plural},
                 "versions": [{"name": "v1alpha3", "served": true, "storage": false},
                              {"name": "v1beta1", "served": true, "storage": false},
                              {"name": "v1", "served": true, "storage": true}]}
    })
}

/// Namespaces that exist from the start.
pub(crate) const NAMESPACES: [&str; 5] = [
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "istio-system",
];

/// Discovery of one group (`/apis/GROUP`) or of the core API (`/api`):
/// the versions served, or `None` when none is.
fn discovery(served: &[String], path: &str) -> Option<Value> {
    let prefix = format!("{}/", path.trim_end_matches('/'));
    let versions: Vec<&str> = served
        .iter()
        .filter_map(|p| p.strip_prefix(prefix.as_str()))
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|v| !v.is_empty() && !v.contains('/'))
        .collect();
    if versions.is_empty() {
        return None;
    }
    if path == "/api" {
        return Some(json!({"kind": "APIVersions", "versions": versions}));
    }
    let group = path.trim_start_matches("/apis/");
    let listed: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": listed, "preferredVersion": listed[0]}),
    )
}

/// The namespace of a namespaced object's path, when it is one.
fn namespace_of(path: &str) -> Option<&str> {
    let (_, rest) = path.split_once("/namespaces/")?;
    let (namespace, rest) = rest.split_once('/')?;
    (!rest.is_empty()).then_some(namespace)
}

/// Istio serves v1alpha3, v1beta1 and v1 of one stored object, as a real
/// API server does for a CRD with several versions: they share a key.
/// One object per resource whichever version names it, as a real API
/// server stores one object and converts it per request (the mock does not
/// convert: an object reads back in the shape it was written).
pub(crate) fn storage_key(path: &str) -> String {
    path.replace("/networking.istio.io/v1alpha3/", "/networking.istio.io/v1/")
        .replace("/networking.istio.io/v1beta1/", "/networking.istio.io/v1/")
        .replace("/autoscaling/v2/", "/autoscaling/v1/")
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// A namespaced collection's path as the all-namespaces list names it
/// (`/api/v1/namespaces/NS/services` → `/api/v1/services`).
fn without_namespace(collection: &str) -> String {
    let segments: Vec<&str> = collection.split('/').collect();
    match segments.iter().position(|s| *s == "namespaces") {
        Some(i) if i + 2 < segments.len() => {
            [&segments[..i], &segments[i + 2..]].concat().join("/")
        }
        _ => collection.to_owned(),
    }
}

/// Whether an equality-based label selector (`k=v,k2=v2`, as a list's
/// `labelSelector`) selects an object with `labels`.
fn selects(selector: &str, labels: &Value) -> bool {
    selector
        .split(',')
        .filter(|term| !term.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels[k.trim_end_matches('=')] == v,
            None => !labels[term].is_null(),
        })
}

/// A pod's log as the API server serves it: a pod of several containers
/// needs `container` (400 otherwise, `pkg/registry/core/pod/strategy.go`),
/// and a name that is none of its containers is refused.
fn pod_log(shared: &Shared, pod_key: &str, pod: &Value, container: Option<&str>) -> Response<Body> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let containers: Vec<&str> = ["initContainers", "containers"]
        .iter()
        .flat_map(|field| pod["spec"][field].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    let main: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let chosen = match container {
        Some(c) if containers.contains(&c) => c,
        Some(c) => {
            return status_response(
                400,
                "BadRequest",
                &format!("container {c} is not valid for pod {name}"),
            );
        }
        None if main.len() > 1 => {
            return status_response(
                400,
                "BadRequest",
                &format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    main.join(" ")
                ),
            );
        }
        None => main.first().copied().unwrap_or_default(),
    };
    let text = lock(&shared.logs)
        .get(&(pod_key.to_owned(), chosen.to_owned()))
        .cloned()
        .unwrap_or_default();
    Response::builder()
        .header("content-type", "text/plain")
        .body(full(text))
        .unwrap_or_default()
}

/// Merges an applied configuration into an object: maps field by field,
/// lists and scalars replaced whole.
fn merge(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied.as_object()) {
        (Some(t), Some(a)) => {
            for (k, v) in a {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        _ => *target = applied.clone(),
    }
}

/// Stores an object at its API path as the test gives it, with a new
/// resourceVersion (and generation 1 unless it has one).
pub(crate) fn put(shared: &Shared, path: &str, mut object: Value) {
    object["metadata"]["resourceVersion"] = next_version(shared).into();
    if object["metadata"]["generation"].is_null() {
        object["metadata"]["generation"] = 1.into();
    }
    lock(&shared.objects).insert(storage_key(path), object);
}

/// Answers a request the scripted rules and the gateway left.
pub(crate) fn store(shared: &Shared, method: &Method, r: &Recorded) -> Response<Body> {
    if r.path == "/version" {
        return json_response(
            200,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0"}),
        );
    }
    let served = served(&lock(&shared.objects));
    if method == Method::GET
        && (r.path == "/api"
            || (r.path.starts_with("/apis/") && r.path[6..].split('/').count() == 1))
    {
        return discovery(&served, &r.path).map_or_else(page_not_found, |v| json_response(200, &v));
    }
    if !served
        .iter()
        .any(|prefix| r.path.starts_with(prefix.as_str()))
    {
        return page_not_found();
    }
    let key = storage_key(&r.path);
    let is_collection = key
        .rsplit('/')
        .next()
        .is_some_and(|last| COLLECTIONS.contains(&last));
    match (method.as_str(), is_collection) {
        ("GET", true) => list(shared, &key, r),
        ("GET", false) if key.ends_with("/log") => {
            let objects = lock(&shared.objects);
            let pod_key = parent(&key);
            match objects.get(pod_key) {
                Some(pod) => pod_log(shared, pod_key, pod, r.param("container")),
                None => not_found(pod_key),
            }
        }
        ("GET", false) => match lock(&shared.objects).get(&key) {
            Some(object) => json_response(200, object),
            None => not_found(&r.path),
        },
        ("PATCH", false) if r.content_type.starts_with("application/apply-patch") => {
            apply(shared, &key, r)
        }
        ("PATCH", false) if r.content_type.starts_with("application/json-patch") => {
            json_patch(shared, &key, r)
        }
        _ => status_response(
            404,
            "NotFound",
            &format!(
                "the server could not find the requested resource ({} {})",
                method, r.path
            ),
        ),
    }
}

/// A list of the collection at `key`, its selector honoured.
fn list(shared: &Shared, key: &str, r: &Recorded) -> Response<Body> {
    let selector = r.param("labelSelector").unwrap_or_default();
    let items: Vec<Value> = lock(&shared.objects)
        .iter()
        .filter(|(k, _)| parent(k) == key || without_namespace(parent(k)) == key)
        .filter(|(_, v)| selects(selector, &v["metadata"]["labels"]))
        .map(|(_, v)| v.clone())
        .collect();
    let version = shared.version.load(Ordering::SeqCst).to_string();
    json_response(
        200,
        &json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": version}, "items": items}),
    )
}

/// The next resourceVersion.
fn next_version(shared: &Shared) -> String {
    (shared.version.fetch_add(1, Ordering::SeqCst) + 1).to_string()
}

/// A server-side apply: the document merged over what is stored (maps
/// field by field), refused in a namespace that does not exist.
fn apply(shared: &Shared, key: &str, r: &Recorded) -> Response<Body> {
    let mut objects = lock(&shared.objects);
    let existing = objects.get(key).cloned();
    if existing.is_none()
        && let Some(namespace) = namespace_of(key)
        && !objects.contains_key(&format!("/api/v1/namespaces/{namespace}"))
    {
        return json_response(
            404,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("namespaces \"{namespace}\" not found"), "reason": "NotFound",
                    "details": {"name": namespace, "kind": "namespaces"}, "code": 404}),
        );
    }
    let mut merged = existing.clone().unwrap_or_else(|| json!({"metadata": {}}));
    merge(&mut merged, &r.body);
    let custom = key.starts_with("/apis/networking.istio.io/");
    let bump = custom && shared.bump_unchanged_custom.load(Ordering::SeqCst);
    if existing.as_ref() != Some(&merged) || bump {
        merged["metadata"]["resourceVersion"] = next_version(shared).into();
        // A spec change bumps the generation, as the API server does.
        let generation = match &existing {
            Some(e) => {
                let g = e["metadata"]["generation"].as_i64().unwrap_or(1);
                g + i64::from(e["spec"] != merged["spec"])
            }
            None => 1,
        };
        merged["metadata"]["generation"] = generation.into();
        if existing.is_none() {
            merged["metadata"]["creationTimestamp"] = "2026-11-28T08:00:00Z".into();
        }
    }
    if r.param("dryRun") != Some("All") {
        objects.insert(key.to_owned(), merged.clone());
    }
    json_response(if existing.is_some() { 200 } else { 201 }, &merged)
}

/// A JSON patch (RFC 6902): a failed `test` answers 422 without causes,
/// as the API server does.
fn json_patch(shared: &Shared, key: &str, r: &Recorded) -> Response<Body> {
    let mut objects = lock(&shared.objects);
    let Some(object) = objects.get_mut(key) else {
        return not_found(&r.path);
    };
    let patch: json_patch::Patch = match serde_json::from_value(r.body.clone()) {
        Ok(p) => p,
        Err(e) => return status_response(400, "BadRequest", &e.to_string()),
    };
    let mut patched = object.clone();
    if let Err(e) = json_patch::patch(&mut patched, &patch) {
        return status_response(
            422,
            "Invalid",
            &format!("the server rejected our request due to an error in our request: {e}"),
        );
    }
    if patched != *object {
        if patched["spec"] != object["spec"] {
            let g = object["metadata"]["generation"].as_i64().unwrap_or(1);
            patched["metadata"]["generation"] = (g + 1).into();
        }
        patched["metadata"]["resourceVersion"] = next_version(shared).into();
    }
    *object = patched.clone();
    json_response(200, &patched)
}

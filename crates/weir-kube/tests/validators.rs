//! Every manifest the project ships, and every object weir would send to a
//! cluster (apply bodies with and without the scale-target rewrite, and the
//! VirtualService as a `weir route` patch leaves it), checked by real
//! third-party validators: `kubernetes-validate` (PyPI) for Kubernetes kinds,
//! `@kubernetes-models/istio` (npm) for Istio kinds. `.ci/test-tools`
//! installs both under `target/validators` (or set `WEIR_VALIDATORS`).

use std::path::{Path, PathBuf};
use std::process::Command;

use kube::api::DynamicObject;
use serde_json::{Value, json};
use weir_api::backend::RuleSelector;
use weir_api::load::load_paths;
use weir_api::resource::Kind;
use weir_kube::ApplyOptions;
use weir_kube::manifests::outgoing;
use weir_kube::route::weight_patch;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn validators() -> PathBuf {
    let dir = std::env::var_os("WEIR_VALIDATORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/validators"));
    assert!(
        dir.join("venv/bin/kubernetes-validate").exists()
            && dir.join("node_modules/@kubernetes-models/istio").exists(),
        "the validators are not installed in {}: run `bash .ci/test-tools`",
        dir.display()
    );
    dir
}

/// Runs `kubernetes-validate --strict` for the earliest Kubernetes weir supports.
fn kubernetes_validate(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(validators().join("venv/bin/kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.33"])
        .args(files)
        .output()
        .expect("kubernetes-validate runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && !text.contains("ERROR"), text)
}

fn istio_validate(files: &[PathBuf]) -> (bool, String) {
    let dir = validators();
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validators/validate-istio.js"))
        .args(files)
        .env(
            "ISTIO_MODELS",
            dir.join("node_modules/@kubernetes-models/istio"),
        )
        .output()
        .expect("node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every object as weir would send it, by kind family.
fn objects_weir_sends() -> (Vec<Value>, Vec<Value>) {
    let (mut kube, mut istio) = (Vec::new(), Vec::new());
    for dir in ["examples/canary-istio", "deploy/kubernetes"] {
        let manifests =
            load_paths(&[root().join(dir)]).unwrap_or_else(|e| panic!("{dir} loads: {e:?}"));
        for options in [
            ApplyOptions::default(),
            ApplyOptions {
                rewrite_scale_target: true,
                force_conflicts: false,
            },
        ] {
            for o in outgoing(&manifests, "default", &options) {
                if o.object.kind == Kind::VirtualService {
                    let mut routed = o.body.clone();
                    let dynamic: DynamicObject = serde_json::from_value(routed.clone()).unwrap();
                    let (patch, _) = weight_patch(
                        &dynamic,
                        &RuleSelector::Default,
                        &[("v1".into(), 0), ("v2".into(), 100)],
                    )
                    .unwrap();
                    json_patch::patch(&mut routed, &patch).unwrap();
                    istio.push(routed);
                }
                if o.object.kind.is_istio() {
                    istio.push(o.body);
                } else {
                    kube.push(o.body);
                }
            }
        }
    }
    (kube, istio)
}

fn write_all(dir: &Path, objects: &[Value]) -> Vec<PathBuf> {
    objects
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let path = dir.join(format!(
                "{i:02}-{}.json",
                o["kind"].as_str().unwrap_or("object")
            ));
            std::fs::write(&path, o.to_string()).unwrap();
            path
        })
        .collect()
}

#[test]
fn shipped_manifests_validate_as_written() {
    let mut files = Vec::new();
    for dir in ["examples/canary-istio", "deploy/kubernetes"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") && !path.ends_with("istio.yaml") {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 6, "{files:?}");
    let (ok, report) = kubernetes_validate(&files);
    assert!(ok, "{report}");
    assert_eq!(
        report.matches("passed").count(),
        10,
        "every Kubernetes object was checked: {report}"
    );
}

#[test]
fn every_object_weir_sends_validates() {
    let (kube, istio) = objects_weir_sends();
    assert_eq!(kube.len(), 20, "5 Kubernetes objects per directory, twice");
    assert_eq!(
        istio.len(),
        16,
        "3 Istio objects per directory twice, and 2 routed VirtualServices per directory"
    );
    let dir = tempfile::tempdir().unwrap();
    let kube_dir = dir.path().join("kube");
    let istio_dir = dir.path().join("istio");
    std::fs::create_dir_all(&kube_dir).unwrap();
    std::fs::create_dir_all(&istio_dir).unwrap();
    let (ok, report) = kubernetes_validate(&write_all(&kube_dir, &kube));
    assert!(ok, "{report}");
    assert_eq!(report.matches("passed").count(), 20, "{report}");
    let (ok, report) = istio_validate(&write_all(&istio_dir, &istio));
    assert!(ok, "{report}");
    assert_eq!(
        report.lines().filter(|l| l.starts_with("ok ")).count(),
        16,
        "{report}"
    );
}

/// The validators reject what they should, so a pass above means something.
#[test]
fn the_validators_reject_broken_objects() {
    let dir = tempfile::tempdir().unwrap();
    let bad_deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
        "spec": {"replicas": "two", "selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "x", "image": "x"}]}}}});
    let (ok, report) = kubernetes_validate(&write_all(dir.path(), &[bad_deployment]));
    assert!(!ok, "a string replica count must fail: {report}");
    let bad_route = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "x"},
        "spec": {"hosts": ["*"], "http": [{"route": [{"destination": {"host": "x"}, "weight": "ninety"}]}]}});
    let istio_dir = dir.path().join("istio");
    std::fs::create_dir_all(&istio_dir).unwrap();
    let (ok, report) = istio_validate(&write_all(&istio_dir, &[bad_route]));
    assert!(!ok, "a string weight must fail: {report}");
    assert!(report.contains("weight must be integer"), "{report}");
}

#[test]
fn the_strategies_ingresses_are_sent_as_valid_v1() {
    // The seed repository's Ingresses are extensions/v1beta1, which no
    // supported cluster serves: weir sends the networking.k8s.io/v1 it
    // read them into, and that must be what the v1 schema accepts.
    let mut sent = Vec::new();
    for dir in ["canary/nginx-ingress", "blue-green/multiple-services"] {
        let dir = root().join("examples/strategies").join(dir);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if !path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ingress")
            {
                continue;
            }
            let manifests = load_paths(std::slice::from_ref(&path)).unwrap();
            for o in outgoing(&manifests, "default", &ApplyOptions::default()) {
                assert_eq!(o.api_version, "networking.k8s.io/v1", "{}", path.display());
                sent.push(o.body);
            }
        }
    }
    assert_eq!(sent.len(), 5);
    let dir = tempfile::tempdir().unwrap();
    let (ok, report) = kubernetes_validate(&write_all(dir.path(), &sent));
    assert!(ok, "{report}");
    assert_eq!(report.matches("passed").count(), 5, "{report}");
}

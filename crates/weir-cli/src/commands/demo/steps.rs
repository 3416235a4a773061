//! The kubectl steps the strategy READMEs run, as demo steps: each shows
//! its command, acts through the session's backend as the command would,
//! and records a check.

use std::time::Duration;

use serde_json::Value;
use weir_api::backend::Backend;
use weir_api::patch::PatchType;
use weir_api::resource::{Kind, ObjectRef};

use super::verdict::Answer;
use super::{Demo, Session};
use crate::deployment_status::{RolloutState, rollout_state};

fn object(kind: Kind, name: &str) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: "default".into(),
        name: name.into(),
    }
}

/// `kubectl apply -f FILE...` (with the strategy's image map).
pub async fn apply(demo: &mut Demo, s: &Session, check: &'static str, files: &[&str]) -> bool {
    let command = files
        .iter()
        .map(|f| format!("-f {f}"))
        .collect::<Vec<_>>()
        .join(" ");
    let t = demo.step(check, &format!("weir apply {command}"));
    let mut paths: Vec<_> = files.iter().map(|f| s.manifests.join(f)).collect();
    paths.push(s.manifests.join("weir-images.conf"));
    let applied = super::apply_paths(&s.backend, &paths).await;
    let ok = applied.is_ok();
    let detail = match applied {
        Ok(objects) => format!("{objects} objects applied, unmodified"),
        Err(e) => e,
    };
    demo.record(check, t, ok, detail)
}

/// `kubectl rollout status deployment/NAME`: waits (bounded) until
/// kubectl would say it rolled out.
pub async fn rolled_out(
    demo: &mut Demo,
    s: &Session,
    check: &'static str,
    deployment: &str,
    within: Duration,
) -> bool {
    let t = demo.step(
        check,
        &format!("weir rollout status deployment/{deployment}"),
    );
    let mut last = String::from("not found");
    while t.elapsed() < within {
        let list = s
            .backend
            .list(Kind::Deployment, "default")
            .await
            .unwrap_or_default();
        if let Some(d) = list.iter().find(|d| d.name() == deployment) {
            match rollout_state(&d.object) {
                RolloutState::Done(line) => return demo.record(check, t, true, line),
                RolloutState::Failed(line) => return demo.record(check, t, false, line),
                RolloutState::Waiting(line) => last = line,
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    demo.record(check, t, false, format!("after {within:?}: {last}"))
}

/// `kubectl scale deploy NAME --replicas N`.
pub async fn scale(
    demo: &mut Demo,
    s: &Session,
    check: &'static str,
    deployment: &str,
    replicas: i32,
) -> bool {
    let t = demo.step(
        check,
        &format!("weir scale deployment {deployment} --replicas {replicas}"),
    );
    let done = s
        .backend
        .scale(&object(Kind::Deployment, deployment), replicas)
        .await;
    let ok = done.is_ok();
    demo.record(
        check,
        t,
        ok,
        match done {
            Ok(()) => format!("deployment.apps/{deployment} scaled to {replicas}"),
            Err(e) => e.to_string(),
        },
    )
}

/// `kubectl patch KIND NAME -p PATCH` (strategic merge); returns when the
/// data plane serves it.
pub async fn patch(
    demo: &mut Demo,
    s: &Session,
    check: &'static str,
    target: (Kind, &str),
    patch: &Value,
) -> bool {
    let t = demo.step(
        check,
        &format!(
            "weir patch {} {} -p '{patch}'",
            target.0.name().to_ascii_lowercase(),
            target.1
        ),
    );
    let result = s
        .backend
        .patch(&object(target.0, target.1), PatchType::Strategic, patch)
        .await
        .map_err(|e| e.to_string());
    let ok = result.is_ok();
    demo.record(
        check,
        t,
        ok,
        match result {
            Ok(_) => format!("{}/{} patched", target.0.qualified(), target.1),
            Err(e) => e,
        },
    )
}

/// `kubectl delete KIND NAME`.
pub async fn delete(
    demo: &mut Demo,
    s: &Session,
    check: &'static str,
    target: (Kind, &str),
) -> bool {
    let t = demo.step(
        check,
        &format!(
            "weir delete {} {}",
            target.0.name().to_ascii_lowercase(),
            target.1
        ),
    );
    let deleted = s.backend.delete(&[object(target.0, target.1)]).await;
    let ok = matches!(&deleted, Ok(d) if d.iter().all(|(_, found)| *found));
    demo.record(
        check,
        t,
        ok,
        match deleted {
            Ok(_) => format!("{}/{} deleted", target.0.qualified(), target.1),
            Err(e) => e.to_string(),
        },
    )
}

/// `minikube service NAME --url`: the Service's node port on the node.
pub async fn service_url(s: &Session, name: &str) -> Option<String> {
    let nodes = s.backend.node_addresses().await.ok()?;
    let service = s
        .backend
        .get(&object(Kind::Service, name))
        .await
        .ok()
        .flatten()?;
    weir_api::service_url::service_urls(&service.object, &nodes)
        .ok()?
        .into_iter()
        .next()
}

/// The ingress controller's URL, from the Ingress's status.
pub async fn ingress_url(s: &Session, name: &str) -> Option<String> {
    let ingress = s
        .backend
        .get(&object(Kind::Ingress, name))
        .await
        .ok()
        .flatten()?;
    let at = ingress.object.pointer("/status/loadBalancer/ingress/0")?;
    Some(format!(
        "http://{}:{}/",
        at["ip"].as_str()?,
        at.pointer("/ports/0/port")?.as_u64()?
    ))
}

/// `curl URL -H 'Host: HOST'` `n` times; what answered, in order.
pub async fn curl_n(
    url: &str,
    host: Option<&str>,
    headers: &[(&str, &str)],
    n: usize,
) -> Vec<Answer> {
    let mut answers = Vec::with_capacity(n);
    for _ in 0..n {
        answers.push(super::sampler::ask(url, host, headers).await);
    }
    answers
}

/// "12 × v1.0.0, 1 × v2.0.0" for a set of answers.
pub fn tally(answers: &[Answer]) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for a in answers {
        let key = match a {
            Answer::Version(v) => v.clone(),
            Answer::Failed(_) => "failed".into(),
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n} × {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

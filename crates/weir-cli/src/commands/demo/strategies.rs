//! `weir demo STRATEGY` for the seed repository's other strategies: each
//! runs its README's steps on its unmodified manifests and checks what the
//! README says to look for, measured from requests sampled as its
//! `while sleep 0.1; do curl ...; done` loop samples them. Over 600 lines
//! because it holds eight strategies, one short function each over the
//! shared steps (`steps.rs`) and verdicts (`verdict.rs`); splitting them
//! one per file would scatter what reads as one table.

use std::time::Duration;

use serde_json::json;
use weir_api::backend::{Backend, LogOptions};
use weir_api::resource::{Kind, ObjectRef};

use super::sampler::Sampler;
use super::steps::{
    apply, curl_n, delete, ingress_url, patch, rolled_out, scale, service_url, tally,
};
use super::verdict::{
    Answer, Sample, answered_by, downtime, exact_per_window, failures, mixed_after, overlapped,
    share, share_interval,
};
use super::{Demo, Session};

const V1: &str = "v1.0.0";
const V2: &str = "v2.0.0";
/// The READMEs' loop sleeps 0.1 s between requests; a tenth of that lets
/// the verdicts see a gap as short as recreate's here (the new pods are
/// ready within a fraction of a second of the old ones' exit).
const PACE: Duration = Duration::from_millis(10);
/// How long a Deployment may take to roll out (ramped's ten pods, one at a
/// time, each ready within its 5 s probe period).
const ROLL_OUT: Duration = Duration::from_secs(240);

/// Records a check computed from answers, without a command of its own.
fn verdict(demo: &mut Demo, check: &'static str, passed: bool, detail: String) -> bool {
    let t = tokio::time::Instant::now();
    demo.record(check, t, passed, detail)
}

/// A URL found, or a failed check saying which.
async fn found(
    demo: &mut Demo,
    what: &'static str,
    command: &str,
    url: Option<String>,
) -> Option<String> {
    let t = demo.step(what, command);
    match url {
        Some(url) => {
            demo.record(what, t, true, url.clone());
            Some(url)
        }
        None => {
            demo.record(what, t, false, "not served".into());
            None
        }
    }
}

/// Answers as samples, for the verdicts that need no timeline.
fn untimed(answers: Vec<Answer>) -> Vec<Sample> {
    answers
        .into_iter()
        .map(|answer| Sample {
            at: Duration::ZERO,
            answer,
        })
        .collect()
}

/// Whether every answer came from `version`.
fn all_from(answers: &[Answer], version: &str) -> bool {
    !answers.is_empty()
        && answers
            .iter()
            .all(|a| *a == Answer::Version(version.to_owned()))
}

/// The README's update of one Deployment behind the `my-app` Service:
/// v1 applied and rolled out, sampled through the Service, v2 applied and
/// rolled out, sampled until v2 alone answers. The samples, and whether v2
/// alone answered at the end; `None` when a step failed (recorded).
async fn update_behind_the_service(
    demo: &mut Demo,
    s: &Session,
    deploy_v1: &'static str,
    deploy_v2: &'static str,
) -> Option<(Vec<Sample>, bool)> {
    if !apply(demo, s, deploy_v1, &["app-v1.yaml"]).await
        || !rolled_out(demo, s, "v1 rolled out", "my-app", ROLL_OUT).await
    {
        return None;
    }
    let url = found(
        demo,
        "the NodePort Service",
        "weir service my-app --url",
        service_url(s, "my-app").await,
    )
    .await?;
    let sampler = Sampler::start(url, Vec::new(), PACE);
    sampler.settle_on(V1, 10, Duration::from_secs(10)).await;
    if !apply(demo, s, deploy_v2, &["app-v2.yaml"]).await {
        return None;
    }
    rolled_out(demo, s, "v2 rolled out", "my-app", ROLL_OUT).await;
    let settled = sampler.settle_on(V2, 10, Duration::from_secs(30)).await;
    Some((sampler.stop().await, settled))
}

/// Recreate: v1 is shut down before v2 starts; the errors in between are
/// the downtime, and no moment has both versions.
pub async fn recreate(demo: &mut Demo, s: &Session) {
    let Some((samples, settled)) = update_behind_the_service(
        demo,
        s,
        "deploy v1 (3 replicas)",
        "deploy v2 (strategy Recreate)",
    )
    .await
    else {
        return;
    };
    let gap = downtime(&samples, V1, V2);
    verdict(
        demo,
        "a window of errors between the versions",
        gap.is_some() && answered_by(&samples, V1) > 0,
        match gap {
            Some(d) => format!(
                "downtime {:.2}s: {} of {} requests failed between the last v1 and the first v2 answer",
                d.as_secs_f64(),
                failures(&samples),
                samples.len()
            ),
            None => format!("no failed request in {} samples", samples.len()),
        },
    );
    verdict(
        demo,
        "never both versions at once",
        !overlapped(&samples, V1, V2) && settled,
        format!(
            "{} v1 answers, then {} v2 answers, none interleaved",
            answered_by(&samples, V1),
            answered_by(&samples, V2)
        ),
    );
}

/// Ramped: a rolling update (maxSurge 1, maxUnavailable 0) fails no
/// request, and both versions answer while it runs.
pub async fn ramped(demo: &mut Demo, s: &Session) {
    let Some((samples, settled)) = update_behind_the_service(
        demo,
        s,
        "deploy v1 (10 replicas)",
        "deploy v2 (RollingUpdate)",
    )
    .await
    else {
        return;
    };
    verdict(
        demo,
        "no failed request during the update",
        failures(&samples) == 0 && !samples.is_empty(),
        format!(
            "{} of {} requests failed",
            failures(&samples),
            samples.len()
        ),
    );
    verdict(
        demo,
        "both versions answered during the update",
        overlapped(&samples, V1, V2) && settled,
        format!(
            "{} v1 and {} v2 answers interleaved, then v2 only",
            answered_by(&samples, V1),
            answered_by(&samples, V2)
        ),
    );
}

/// A blue/green switch's two verdicts from samples taken across it: v1
/// only before the switch began (`window.0`), v2 only after it returned
/// (`window.1`), no failed request.
fn switch_verdicts(
    demo: &mut Demo,
    samples: &[Sample],
    window: (Duration, Duration),
    before_check: &'static str,
    after_check: &'static str,
) {
    let early: Vec<_> = samples
        .iter()
        .filter(|x| x.at < window.0)
        .cloned()
        .collect();
    verdict(
        demo,
        before_check,
        answered_by(&early, V2) == 0 && answered_by(&early, V1) > 0,
        format!(
            "{} v1 answers, {} v2",
            answered_by(&early, V1),
            answered_by(&early, V2)
        ),
    );
    verdict(
        demo,
        after_check,
        mixed_after(samples, window.1, V2) == 0 && failures(samples) == 0,
        format!(
            "{} v1 answers after the switch returned; {} failed of {}",
            mixed_after(samples, window.1, V2),
            failures(samples),
            samples.len()
        ),
    );
}

/// Blue/green (single Service): v2 runs beside v1, then one selector patch
/// moves every new request at once.
pub async fn blue_green(demo: &mut Demo, s: &Session) {
    if !apply(demo, s, "deploy blue (v1)", &["app-v1.yaml"]).await
        || !rolled_out(demo, s, "blue rolled out", "my-app-v1", ROLL_OUT).await
    {
        return;
    }
    let Some(url) = found(
        demo,
        "the NodePort Service",
        "weir service my-app --url",
        service_url(s, "my-app").await,
    )
    .await
    else {
        return;
    };
    let sampler = Sampler::start(url, Vec::new(), PACE);
    if !apply(demo, s, "deploy green (v2)", &["app-v2.yaml"]).await
        || !rolled_out(demo, s, "green rolled out", "my-app-v2", ROLL_OUT).await
    {
        return;
    }
    let switch = json!({"spec": {"selector": {"version": V2}}});
    let before = sampler.now();
    if !patch(
        demo,
        s,
        "switch the Service to green",
        (Kind::Service, "my-app"),
        &switch,
    )
    .await
    {
        return;
    }
    let switched = sampler.now();
    sampler.settle_on(V2, 20, Duration::from_secs(10)).await;
    let samples = sampler.stop().await;
    switch_verdicts(
        demo,
        &samples,
        (before, switched),
        "green got nothing before the switch",
        "0 mixed responses after the switch",
    );
}

/// Blue/green of two Services behind one Ingress: both switch together.
pub async fn blue_green_ingress(demo: &mut Demo, s: &Session) {
    if !apply(
        demo,
        s,
        "deploy a and b v1 and the Ingress",
        &["app-a-v1.yaml", "app-b-v1.yaml", "ingress-v1.yaml"],
    )
    .await
        || !rolled_out(demo, s, "a v1 rolled out", "my-app-a-v1", ROLL_OUT).await
        || !rolled_out(demo, s, "b v1 rolled out", "my-app-b-v1", ROLL_OUT).await
    {
        return;
    }
    let Some(url) = found(
        demo,
        "the ingress controller",
        "weir get ingress my-app",
        ingress_url(s, "my-app").await,
    )
    .await
    else {
        return;
    };
    let hosts = vec!["a.domain.com".to_owned(), "b.domain.com".to_owned()];
    let sampler = Sampler::start(url, hosts, PACE);
    if !apply(
        demo,
        s,
        "deploy a and b v2",
        &["app-a-v2.yaml", "app-b-v2.yaml"],
    )
    .await
        || !rolled_out(demo, s, "a v2 rolled out", "my-app-a-v2", ROLL_OUT).await
        || !rolled_out(demo, s, "b v2 rolled out", "my-app-b-v2", ROLL_OUT).await
    {
        return;
    }
    let before = sampler.now();
    if !apply(demo, s, "switch the Ingress to v2", &["ingress-v2.yaml"]).await {
        return;
    }
    let switched = sampler.now();
    sampler.settle_on(V2, 20, Duration::from_secs(10)).await;
    let samples = sampler.stop().await;
    switch_verdicts(
        demo,
        &samples,
        (before, switched),
        "v2 got nothing before the switch",
        "both services switched: 0 mixed responses",
    );
}

/// The native canary: one v2 pod beside nine v1 pods behind one Service
/// takes a tenth of the connections; then v2 takes over.
pub async fn canary_native(demo: &mut Demo, s: &Session) {
    if !apply(demo, s, "deploy v1 (10 replicas)", &["app-v1.yaml"]).await
        || !rolled_out(demo, s, "v1 rolled out", "my-app-v1", ROLL_OUT).await
    {
        return;
    }
    let Some(url) = found(
        demo,
        "the NodePort Service",
        "weir service my-app --url",
        service_url(s, "my-app").await,
    )
    .await
    else {
        return;
    };
    if !apply(demo, s, "deploy v2 (1 replica)", &["app-v2.yaml"]).await
        || !scale(demo, s, "scale v1 to 9", "my-app-v1", 9).await
        || !rolled_out(demo, s, "v2 rolled out", "my-app-v2", ROLL_OUT).await
        || !rolled_out(demo, s, "v1 at 9 replicas", "my-app-v1", ROLL_OUT).await
    {
        return;
    }
    let t = demo.step(
        "v2's share follows the replica ratio (1 of 10)",
        "while sleep 0.1; do curl $service; done",
    );
    let n = 400;
    let samples = untimed(curl_n(&url, None, &[], n).await);
    let (lo, hi) = share_interval(0.1, n);
    let got = share(&samples, V2);
    demo.record(
        "v2's share follows the replica ratio (1 of 10)",
        t,
        failures(&samples) == 0 && (lo..=hi).contains(&got),
        format!(
            "v2 answered {:.1} % of {n} connections (expected 10 %, within {:.1}–{:.1} %); {} failed",
            got * 100.0,
            lo * 100.0,
            hi * 100.0,
            failures(&samples)
        ),
    );
    if !scale(demo, s, "scale v2 to 10", "my-app-v2", 10).await
        || !rolled_out(demo, s, "v2 at 10 replicas", "my-app-v2", ROLL_OUT).await
    {
        return;
    }
    let sampler = Sampler::start(url, Vec::new(), PACE);
    if !delete(demo, s, "delete v1", (Kind::Deployment, "my-app-v1")).await {
        return;
    }
    let settled = sampler.settle_on(V2, 20, Duration::from_secs(30)).await;
    let samples = sampler.stop().await;
    verdict(
        demo,
        "v2 serves everything once v1 is deleted",
        settled && failures(&samples) == 0,
        format!(
            "{} of {} requests failed while v1's pods stopped",
            failures(&samples),
            samples.len()
        ),
    );
}

/// The nginx-ingress canary: a canary Ingress with `canary-weight: 10`
/// sends exactly one request in ten to v2; then the main Ingress moves.
pub async fn canary_nginx(demo: &mut Demo, s: &Session) {
    let host = Some("my-app.com");
    if !apply(
        demo,
        s,
        "deploy v1 and its Ingress",
        &["app-v1.yaml", "ingress-v1.yaml"],
    )
    .await
        || !rolled_out(demo, s, "v1 rolled out", "my-app-v1", ROLL_OUT).await
    {
        return;
    }
    let Some(url) = found(
        demo,
        "the ingress controller",
        "weir get ingress my-app",
        ingress_url(s, "my-app").await,
    )
    .await
    else {
        return;
    };
    if !apply(demo, s, "deploy v2", &["app-v2.yaml"]).await
        || !rolled_out(demo, s, "v2 rolled out", "my-app-v2", ROLL_OUT).await
    {
        return;
    }
    let before = curl_n(&url, host, &[], 10).await;
    verdict(
        demo,
        "v1 serves my-app.com before the canary",
        all_from(&before, V1),
        tally(&before),
    );
    if !apply(
        demo,
        s,
        "create the canary Ingress (canary-weight 10)",
        &["ingress-v2-canary.yaml"],
    )
    .await
    {
        return;
    }
    let t = demo.step(
        "exactly 1 request in every 10 goes to v2",
        "while sleep 0.1; do curl $ingress -H 'Host: my-app.com'; done",
    );
    let samples = untimed(curl_n(&url, host, &[], 200).await);
    demo.record(
        "exactly 1 request in every 10 goes to v2",
        t,
        failures(&samples) == 0 && exact_per_window(&samples, V2, 10, 1),
        format!(
            "{} of {} to v2, one in every window of 10 consecutive requests",
            answered_by(&samples, V2),
            samples.len()
        ),
    );
    if !delete(
        demo,
        s,
        "delete the canary Ingress",
        (Kind::Ingress, "my-app-canary"),
    )
    .await
        || !apply(demo, s, "point the Ingress at v2", &["ingress-v2.yaml"]).await
    {
        return;
    }
    let after = curl_n(&url, host, &[], 20).await;
    verdict(
        demo,
        "v2 serves everything",
        all_from(&after, V2),
        tally(&after),
    );
}

/// A/B testing with Istio: v1 only, then a 90/10 weight, then a header
/// match sending each client to the version it asks for.
pub async fn ab_testing(demo: &mut Demo, s: &Session) {
    let host = Some("my-app.local");
    if !apply(
        demo,
        s,
        "deploy both versions, the Gateway and a route to v1",
        &[
            "app-v1.yaml",
            "app-v2.yaml",
            "gateway.yaml",
            "virtualservice.yaml",
        ],
    )
    .await
        || !rolled_out(demo, s, "v1 rolled out", "my-app-v1", ROLL_OUT).await
        || !rolled_out(demo, s, "v2 rolled out", "my-app-v2", ROLL_OUT).await
    {
        return;
    }
    let first = curl_n(&s.url, host, &[], 10).await;
    verdict(demo, "only v1 answers", all_from(&first, V1), tally(&first));
    if !apply(
        demo,
        s,
        "shift by weight (90/10)",
        &["virtualservice-weight.yaml"],
    )
    .await
    {
        return;
    }
    let weighted = untimed(curl_n(&s.url, host, &[], 100).await);
    verdict(
        demo,
        "1 request in 10 ends up in v2",
        failures(&weighted) == 0 && exact_per_window(&weighted, V2, 10, 1),
        format!(
            "{} of {} to v2, one in every window of 10",
            answered_by(&weighted, V2),
            weighted.len()
        ),
    );
    if !apply(demo, s, "shift by header", &["virtualservice-match.yaml"]).await {
        return;
    }
    let asked_v1 = curl_n(&s.url, host, &[("x-api-version", V1)], 10).await;
    let asked_v2 = curl_n(&s.url, host, &[("x-api-version", V2)], 10).await;
    verdict(
        demo,
        "X-API-Version picks the version",
        all_from(&asked_v1, V1) && all_from(&asked_v2, V2),
        format!(
            "asked v1.0.0: {}; asked v2.0.0: {}",
            tally(&asked_v1),
            tally(&asked_v2)
        ),
    );
}

/// Mirrored requests v2's log shows (Istio sends them with `-shadow`
/// appended to the host).
async fn shadow_copies(s: &Session) -> usize {
    let pods = s
        .backend
        .list(Kind::Pod, "default")
        .await
        .unwrap_or_default();
    let mut copies = 0;
    for pod in pods.iter().filter(|p| p.name().starts_with("my-app-v2-")) {
        let pod = ObjectRef {
            kind: Kind::Pod,
            namespace: "default".into(),
            name: pod.name().to_owned(),
        };
        let Ok(mut log) = s.backend.logs(&pod, &LogOptions::default()).await else {
            continue;
        };
        while let Some(Ok(chunk)) = std::future::poll_fn(|cx| log.as_mut().poll_next(cx)).await {
            copies += chunk
                .lines()
                .filter(|l| l.contains("\"message\":\"request\"") && l.contains("-shadow"))
                .count();
        }
    }
    copies
}

/// Shadow: clients see v1 only while v2 receives a copy of each request.
pub async fn shadow(demo: &mut Demo, s: &Session) {
    let host = Some("my-app.local");
    if !apply(
        demo,
        s,
        "deploy both versions, the Gateway and a route to v1",
        &[
            "app-v1.yaml",
            "app-v2.yaml",
            "gateway.yaml",
            "virtualservice.yaml",
        ],
    )
    .await
        || !rolled_out(demo, s, "v1 rolled out", "my-app-v1", ROLL_OUT).await
        || !rolled_out(demo, s, "v2 rolled out", "my-app-v2", ROLL_OUT).await
    {
        return;
    }
    if !apply(
        demo,
        s,
        "mirror traffic to v2",
        &["virtualservice-mirror.yaml"],
    )
    .await
    {
        return;
    }
    let before = shadow_copies(s).await;
    let n = 50;
    let seen = curl_n(&s.url, host, &[], n).await;
    verdict(
        demo,
        "clients see v1 only",
        all_from(&seen, V1),
        tally(&seen),
    );
    let t = demo.step(
        "v2 receives a copy of each request",
        "weir logs deploy/my-app-v2 -c my-app",
    );
    // Copies are sent fire-and-forget: give them a moment to land.
    let mut copies = 0;
    while t.elapsed() < Duration::from_secs(10) {
        copies = shadow_copies(s).await - before;
        if copies >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    demo.record(
        "v2 receives a copy of each request",
        t,
        copies == n,
        format!("v2 logged {copies} of {n} requests, with Host my-app.local-shadow"),
    );
}

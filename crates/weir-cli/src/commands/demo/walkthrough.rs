//! `weir demo` (`canary-istio`): the walkthrough by hand — verify 90/10,
//! shift to 0/100, verify, raise the load, check that v2 scales up while v1
//! gets none of it.

use std::time::Duration;

use weir_api::backend::Backend;
use weir_api::resource::Kind;
use weir_load::generator::Progress;
use weir_runtime::backend::LocalBackend;

use super::{Demo, Session, requests_of_version, route_my_app};
use crate::checks::{check_split, wait_replicas};
use crate::drive::{LoadSpec, options};

/// The walkthrough's steps after both pods are ready.
pub async fn run(demo: &mut Demo, session: &Session, scale_within: Duration) {
    let (url, state, backend) = (&session.url, &session.state, &session.backend);
    let state_dir = &session.state_dir;
    // 4. Verify 90/10.
    let t = demo.step(
        "Verify the split: v1 90%, v2 10%",
        "weir verify --expect v1=90,v2=10",
    );
    let expect = |a: f64, b: f64| vec![("v1".to_owned(), a), ("v2".to_owned(), b)];
    match check_split(
        LoadSpec::closed_loop(
            Some(url.to_string()),
            4,
            Some(Duration::from_secs(120)),
            None,
        ),
        &expect(90.0, 10.0),
        state,
        false,
    )
    .await
    {
        Ok(v) => demo.record("traffic splits 90/10", t, v.passed, v.reason),
        Err(e) => demo.record("traffic splits 90/10", t, false, e.to_string()),
    };

    // 5. Shift to 0/100.
    let t = demo.step(
        "Change the split so v2 serves everything",
        "weir route my-app v1=0 v2=100",
    );
    let change = route_my_app(backend, 0, 100).await;
    let ok = change.is_ok();
    demo.record(
        "route change served by the gateway",
        t,
        ok,
        match change {
            Ok(c) => format!(
                "{} after {:.1} ms",
                c.confirmed_by.split(':').next().unwrap_or_default(),
                c.elapsed.as_secs_f64() * 1000.0
            ),
            Err(e) => e.to_string(),
        },
    );

    // 6. Verify 0/100.
    let t = demo.step(
        "Verify the split: v2 100%",
        "weir verify --expect v1=0,v2=100",
    );
    match check_split(
        LoadSpec::closed_loop(
            Some(url.to_string()),
            4,
            Some(Duration::from_secs(120)),
            None,
        ),
        &expect(0.0, 100.0),
        state,
        false,
    )
    .await
    {
        Ok(v) => demo.record("traffic splits 0/100", t, v.passed, v.reason),
        Err(e) => demo.record("traffic splits 0/100", t, false, e.to_string()),
    };

    // 7. Raise the load; v2 scales up.
    let t = demo.step(
        "Increase traffic and watch v2 scale",
        "weir load -c 4 -z 90s & weir verify --replicas my-app-v2>=2 --within 90s",
    );
    let v1_before = requests_of_version(
        &backend.gateway_metrics().await.unwrap_or_default(),
        "v1.0.0",
    );
    let load_args = LoadSpec::closed_loop(Some(url.to_string()), 4, Some(scale_within), None);
    let progress = std::sync::Arc::new(Progress::default());
    let load = match options(&load_args, state).await {
        Ok(o) => {
            let p = progress.clone();
            Some(tokio::spawn(async move {
                weir_load::generator::run(o, p).await
            }))
        }
        Err(_) => None,
    };
    let ticker = {
        let progress = progress.clone();
        let backend = LocalBackend::new(state_dir, Duration::from_secs(2));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let pods = backend.list(Kind::Pod, "default").await.unwrap_or_default();
                let v2 = pods
                    .iter()
                    .filter(|p| p.name().starts_with("my-app-v2-"))
                    .count();
                println!(
                    "  … {} requests answered, my-app-v2 pods: {v2}",
                    progress.answered.load(std::sync::atomic::Ordering::Relaxed)
                );
            }
        })
    };
    let scaled = wait_replicas(state, None, "my-app-v2", 2, scale_within).await;
    ticker.abort();
    if let Some(l) = &load {
        l.abort();
    }
    let ok = matches!(scaled, Ok(Ok(_)));
    demo.record(
        "v2 scales up under load",
        t,
        ok,
        match scaled {
            Ok(Ok(secs)) => format!("my-app-v2 reached 2+ ready replicas after {secs:.0}s of load"),
            Ok(Err(n)) => format!("my-app-v2 had {n} ready replicas after {:?}", scale_within),
            Err(e) => e.to_string(),
        },
    );

    // 8. v1 received none of it.
    let t = demo.step("Check that v1 served none of the load", "weir top --once");
    let v1_after = requests_of_version(
        &backend.gateway_metrics().await.unwrap_or_default(),
        "v1.0.0",
    );
    let delta = v1_after - v1_before;
    demo.record(
        "v1 receives none of the load",
        t,
        delta == 0.0,
        format!("v1 answered {delta} requests since the split moved to 0/100"),
    );
}

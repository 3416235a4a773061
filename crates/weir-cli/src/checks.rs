//! The checks `weir verify` makes and the demo makes too: a statistical
//! verdict on the split, and a wait for a Deployment's ready replicas.

use std::time::Duration;

use weir_api::backend::{Backend, BackendError};
use weir_api::resource::{Kind, ObjectRef};
use weir_load::split::SplitCounts;
use weir_load::stats::{Verdict, sample_size, verdict};

use crate::drive::{DriveError, LoadSpec, options, run_with_progress};
use crate::target::TargetArgs;

/// Checks the split with `load` (its URL, Host and headers; its request
/// count, else enough to detect a 5-point deviation); returns the verdict.
pub async fn check_split(
    mut load: LoadSpec,
    expect: &[(String, f64)],
    target: &TargetArgs,
    show: bool,
) -> Result<Verdict, DriveError> {
    let total: f64 = expect.iter().map(|(_, p)| p).sum();
    let shares: Vec<f64> = expect.iter().map(|(_, p)| p / total).collect();
    load.requests = Some(load.requests.unwrap_or_else(|| sample_size(&shares, 0.05)));
    let options = options(&load, target).await?;
    let report = run_with_progress(options, show).await?;
    let names: Vec<&str> = expect.iter().map(|(name, _)| name.as_str()).collect();
    let sample = SplitCounts::of_report(&names, &report);
    Ok(verdict(expect, &sample.counts, sample.other))
}

/// Waits until a Deployment has at least `n` ready replicas; the seconds it took.
pub async fn wait_replicas(
    target: &TargetArgs,
    namespace: Option<&str>,
    deployment: &str,
    n: i64,
    within: Duration,
) -> Result<Result<f64, i64>, BackendError> {
    let backend = target.backend().await?;
    let deployment = ObjectRef {
        kind: Kind::Deployment,
        namespace: backend.namespace(namespace),
        name: deployment.to_owned(),
    };
    let started = tokio::time::Instant::now();
    let mut ready = 0;
    loop {
        ready = backend
            .get(&deployment)
            .await?
            .and_then(|d| d.object["status"]["readyReplicas"].as_i64())
            .unwrap_or(ready);
        if ready >= n {
            return Ok(Ok(started.elapsed().as_secs_f64()));
        }
        if started.elapsed() >= within {
            return Ok(Err(ready));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

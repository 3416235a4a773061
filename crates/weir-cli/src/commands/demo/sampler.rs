//! The strategy READMEs' `while sleep 0.1; do curl "$service"; done`: one
//! request at a time, each on a new connection (so a Service balances each
//! one, as kube-proxy balances curl's), recording who answered and when.
//! Bounded in count and time.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::verdict::{Answer, Sample};

/// The most samples one run keeps (about 30 minutes at the pace below).
const MAX_SAMPLES: usize = 60_000;
/// Each request's deadline, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer read.
const MAX_BODY: usize = 64 * 1024;

/// Sends one GET for `host` (when given) to `url` on a new connection,
/// with `headers`; the version that answered 200, or why not.
pub async fn ask(url: &str, host: Option<&str>, headers: &[(&str, &str)]) -> Answer {
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange(url, host, headers)).await {
        Ok(answer) => answer,
        Err(_) => Answer::Failed("timed out".into()),
    }
}

async fn exchange(url: &str, host: Option<&str>, headers: &[(&str, &str)]) -> Answer {
    let failed = |why: String| Answer::Failed(why);
    let Ok(uri) = url.parse::<http::Uri>() else {
        return failed(format!("bad URL {url}"));
    };
    let authority = uri.authority().map(|a| a.as_str().to_owned());
    let Some(authority) = authority else {
        return failed(format!("no host in {url}"));
    };
    let stream = match tokio::net::TcpStream::connect(&authority).await {
        Ok(s) => s,
        Err(e) => return failed(format!("connect: {e}")),
    };
    let (mut sender, connection) = match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
        TokioIo::new(stream),
    )
    .await
    {
        Ok(pair) => pair,
        Err(e) => return failed(format!("handshake: {e}")),
    };
    let driver = tokio::spawn(connection);
    let mut request = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, host.unwrap_or(&authority))
        .header(http::header::CONNECTION, "close");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let Ok(request) = request.body(Empty::new()) else {
        return failed("bad request headers".into());
    };
    let answer = match sender.send_request(request).await {
        Err(e) => failed(format!("request: {e}")),
        Ok(response) if response.status() != http::StatusCode::OK => {
            failed(format!("status {}", response.status().as_u16()))
        }
        Ok(response) => match http_body_util::Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
        {
            Err(e) => failed(format!("body: {e}")),
            Ok(body) => {
                let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
                match text.rsplit_once("Version: ") {
                    Some((_, v)) => Answer::Version(v.trim().to_owned()),
                    None => failed(format!("unexpected answer {:?}", text.trim())),
                }
            }
        },
    };
    driver.abort();
    answer
}

/// Requests sent in the background until stopped, every `pace`.
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    started: Instant,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `url` (as `hosts`, in turn, when given).
    pub fn start(url: String, hosts: Vec<String>, pace: Duration) -> Self {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let started = Instant::now();
        let task = {
            let samples = samples.clone();
            tokio::spawn(async move {
                let mut turn = 0usize;
                loop {
                    let at = started.elapsed();
                    let host = (!hosts.is_empty()).then(|| hosts[turn % hosts.len()].as_str());
                    let answer = ask(&url, host, &[]).await;
                    let mut kept = samples.lock().await;
                    if kept.len() >= MAX_SAMPLES {
                        return;
                    }
                    kept.push(Sample { at, answer });
                    drop(kept);
                    turn += 1;
                    tokio::time::sleep(pace).await;
                }
            })
        };
        Self {
            samples,
            started,
            task,
        }
    }

    /// Time since sampling began (what a sample's `at` counts from).
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits (bounded by `within`) until the last `n` answers all came from
    /// `version`; whether they did.
    pub async fn settle_on(&self, version: &str, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            {
                let kept = self.samples.lock().await;
                if kept.len() >= n
                    && kept[kept.len() - n..]
                        .iter()
                        .all(|s| s.answer == Answer::Version(version.to_owned()))
                {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops sampling; the samples taken.
    pub async fn stop(self) -> Vec<Sample> {
        self.task.abort();
        let _ = self.task.await;
        self.samples.lock().await.clone()
    }
}

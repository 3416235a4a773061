//! Reads one pod's own metrics endpoint, bounded in time and size: the
//! local backend's `app_metrics`, for `weir top`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long one scrape may take (Prometheus' default scrape timeout is 10 s;
/// `weir top` refreshes every second).
const TIMEOUT: Duration = Duration::from_secs(2);
/// The largest metrics text read.
const MAX_BYTES: usize = 4 << 20;

/// The text at `url`; `None` when it is not there in time, not a 200, or
/// too large.
pub async fn get(url: &str) -> Option<String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = http::Request::get(url).body(Empty::new()).ok()?;
    let read = async {
        let response = client.request(request).await.ok()?;
        if response.status() != http::StatusCode::OK {
            return None;
        }
        let body = Limited::new(response.into_body(), MAX_BYTES)
            .collect()
            .await
            .ok()?;
        String::from_utf8(body.to_bytes().to_vec()).ok()
    };
    tokio::time::timeout(TIMEOUT, read).await.ok().flatten()
}

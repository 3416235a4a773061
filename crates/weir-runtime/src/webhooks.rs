//! Rollouts' webhooks, called: an HTTP POST of Flagger's JSON to the
//! hook's `http://` URL, within its timeout, retried at most
//! [`ATTEMPTS`] times on a transport failure or a 5xx, the answer's body
//! read up to [`BODY_LIMIT`] bytes. Each call runs as a task of its own;
//! its answer is kept (the latest per Rollout and hook, at most one call
//! in flight each) for the Rollout controller to observe. What to call
//! when, and what an answer does, is `weir_rollout::hooks`'.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use weir_api::resource::ObjectRef;
use weir_api::rollout::{DEFAULT_WEBHOOK_TIMEOUT, Webhook};
use weir_rollout::hooks::HookAnswer;

/// Calls of one hook, at most.
pub const ATTEMPTS: u32 = 3;

/// The most of an answer's body kept (its start is shown in the status).
pub const BODY_LIMIT: usize = 4096;

/// A hook of a Rollout: what calls and answers are kept under.
pub type HookKey = (ObjectRef, String);

/// One hook's state.
#[derive(Clone, Debug, Default)]
pub struct HookState {
    /// Its latest answer.
    pub answer: Option<HookAnswer>,
    /// Whether a call is in flight.
    pub in_flight: bool,
}

/// The hooks' calls and answers, shared with the calls' tasks.
#[derive(Clone, Debug, Default)]
pub struct HookCalls(Arc<Mutex<HashMap<HookKey, HookState>>>);

impl HookCalls {
    /// Every hook's state now.
    pub fn snapshot(&self) -> HashMap<HookKey, HookState> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Forgets the hooks of a Rollout that is gone.
    pub fn forget(&self, rollout: &ObjectRef) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|(r, _), _| r != rollout);
        }
    }

    /// Calls `hook` of `rollout` with `payload`, unless a call is in
    /// flight; the answer is kept when it comes.
    pub fn call(&self, rollout: ObjectRef, hook: Webhook, payload: Vec<u8>) {
        let key = (rollout, hook.name.clone());
        {
            let Ok(mut m) = self.0.lock() else { return };
            let state = m.entry(key.clone()).or_default();
            if state.in_flight {
                return;
            }
            state.in_flight = true;
        }
        let calls = self.clone();
        tokio::spawn(async move {
            let sent = SystemTime::now();
            let timeout = hook
                .timeout
                .as_deref()
                .and_then(|t| weir_api::duration::parse(t).ok())
                .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT);
            let (ok, detail) = call_with_retries(&hook.url, &payload, timeout).await;
            if let Ok(mut m) = calls.0.lock() {
                let state = m.entry(key.clone()).or_default();
                state.in_flight = false;
                state.answer = Some(HookAnswer {
                    name: key.1.clone(),
                    sent,
                    ok,
                    detail,
                });
            }
        });
    }
}

/// Up to [`ATTEMPTS`] posts, 500 ms apart, while they fail in transport or
/// answer 5xx; whether the last answered 2xx, and what it answered.
async fn call_with_retries(url: &str, payload: &[u8], timeout: Duration) -> (bool, String) {
    let mut last = (false, String::new());
    for attempt in 1..=ATTEMPTS {
        match tokio::time::timeout(timeout, post(url, payload)).await {
            Ok(Ok((status, body))) => {
                let detail = if body.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {body}")
                };
                if !(500..600).contains(&status) {
                    return ((200..300).contains(&status), detail);
                }
                last = (false, detail);
            }
            Ok(Err(e)) => last = (false, e),
            Err(_) => {
                last = (
                    false,
                    format!("no answer within {}", humantime::format_duration(timeout)),
                );
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let (ok, detail) = last;
    (ok, format!("{detail} (after {ATTEMPTS} attempts)"))
}

/// One POST of `payload` as JSON; the status and the start of the body.
async fn post(url: &str, payload: &[u8]) -> Result<(u16, String), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url:?}: only http:// URLs are called"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url:?}: no host"))?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = http::Request::post(
        uri.path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str),
    )
    .header(http::header::HOST, authority.as_str())
    .header(http::header::CONTENT_TYPE, "application/json")
    .header(http::header::USER_AGENT, "weir")
    .body(Full::new(Bytes::copy_from_slice(payload)))
    .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), BODY_LIMIT)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .take(200)
        .collect::<String>()
        .trim()
        .to_owned();
    Ok((status, text))
}

//! One request: recorded, then answered by a scripted rule if one
//! matches, by the gateway stand-in if it is a port-forward, else by the
//! object store.

use std::convert::Infallible;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::Value;

use crate::gateway;
use crate::state::{Body, Recorded, Reply, Shared, full, json_response, lock, status_response};
use crate::store::store;

/// Answers `req`.
pub(crate) async fn handle(shared: &Shared, mut req: Request<Incoming>) -> Response<Body> {
    let upgrade = hyper::upgrade::on(&mut req);
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect(),
        content_type: header("content-type"),
        authorization: header("authorization"),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    lock(&shared.log).push(recorded.clone());
    if let Some(reply) = scripted(shared, &parts.method, &recorded.path) {
        return match reply {
            Reply::Status {
                code,
                reason,
                message,
            } => status_response(code, &reason, &message),
            Reply::Json(code, value) => json_response(code, &value),
            Reply::Text(code, text) => Response::builder()
                .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
                .body(full(text))
                .unwrap_or_default(),
            Reply::Events(events) => {
                let lines = futures::stream::iter(
                    events
                        .into_iter()
                        .map(|e| Ok::<_, Infallible>(Frame::data(Bytes::from(format!("{e}\n"))))),
                )
                .chain(futures::stream::pending());
                Response::builder()
                    .header("content-type", "application/json")
                    .body(BodyExt::boxed(StreamBody::new(lines)))
                    .unwrap_or_default()
            }
            Reply::EventsThenEnd(events) => {
                let lines = futures::stream::iter(
                    events
                        .into_iter()
                        .map(|e| Ok::<_, Infallible>(Frame::data(Bytes::from(format!("{e}\n"))))),
                );
                Response::builder()
                    .header("content-type", "application/json")
                    .body(BodyExt::boxed(StreamBody::new(lines)))
                    .unwrap_or_default()
            }
            Reply::Hang => {
                futures::future::pending::<()>().await;
                Response::default()
            }
        };
    }
    if let Some(pod) = recorded.path.strip_suffix("/portforward") {
        return gateway::port_forward(
            shared,
            pod,
            recorded.param("ports"),
            parts
                .headers
                .get(http::header::SEC_WEBSOCKET_KEY)
                .and_then(|k| k.to_str().ok()),
            upgrade,
        );
    }
    store(shared, &parts.method, &recorded)
}

fn scripted(shared: &Shared, method: &Method, path: &str) -> Option<Reply> {
    let mut rules = lock(&shared.rules);
    let rule = rules
        .iter_mut()
        .find(|r| r.method == method && r.path == path && r.remaining != Some(0))?;
    if let Some(n) = rule.remaining.as_mut() {
        *n -= 1;
    }
    Some(rule.reply.clone())
}

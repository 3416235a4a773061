//! `GET /metrics` on its own address, as Envoy's stats port serves them —
//! with the bounds of every downstream listener: the header deadline and
//! caps ([`crate::server::downstream_builder`]), the first-bytes and idle
//! deadlines ([`crate::conn_guard`]), and an accept loop that pauses on the
//! machine's errors (out of descriptors) instead of ending.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::Gateway;
use crate::conn_guard::{self, Activity, Guarded};
use crate::head_timer::HeadTimer;
use crate::server::ConnectionLimits;

/// Serves the gateway's metrics on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>, limits: ConnectionLimits) {
    let mut builder = crate::server::downstream_builder(&limits);
    builder.http1().timer(HeadTimer::new());
    let builder = Arc::new(builder);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                if let Some(pause) = conn_guard::accept_backoff(&e) {
                    tokio::time::sleep(pause).await;
                }
                continue;
            }
        };
        let gateway = gateway.clone();
        let builder = builder.clone();
        let activity = Activity::new();
        let io = TokioIo::new(Guarded::new(stream, activity.clone()));
        let connection = tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let gateway = gateway.clone();
                    async move {
                        let resp = if req.uri().path() == "/metrics" {
                            Response::builder()
                                .header(
                                    header::CONTENT_TYPE,
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                )
                                .body(Full::new(Bytes::from(gateway.metrics())))
                        } else {
                            Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(Full::new(Bytes::new()))
                        };
                        Ok::<_, Infallible>(resp.unwrap_or_default())
                    }
                });
            let _ = builder.serve_connection(io, service).await;
        });
        tokio::spawn(conn_guard::enforce(activity, limits.guard, connection));
    }
}

//! `GET /metrics` on its own address, as Envoy's stats port serves them.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::Gateway;

/// Serves the gateway's metrics on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    while let Ok((stream, _)) = listener.accept().await {
        let gateway = gateway.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
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
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

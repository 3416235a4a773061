//! The probe server: `/live` and `/ready`, answered as the Go app's
//! `heptiolabs/healthcheck` handler (with no checks registered) answers them.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};

use crate::serve::{Handler, Resp};

/// The probe endpoints' handler.
#[derive(Clone, Copy)]
pub struct Probe;

impl Handler for Probe {
    async fn handle(&self, req: Request<Incoming>) -> Resp {
        match req.uri().path() {
            "/live" | "/ready" if req.method() == Method::GET => Response::builder()
                .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                .body(Full::new(Bytes::from_static(b"{}\n")))
                .unwrap_or_default(),
            "/live" | "/ready" => crate::serve::text(
                StatusCode::METHOD_NOT_ALLOWED,
                Bytes::from_static(b"method not allowed\n"),
            ),
            _ => crate::serve::not_found(),
        }
    }
}

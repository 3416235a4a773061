//! One accept loop for the three servers, with graceful shutdown: on
//! [`Shutdown::trigger`] it stops accepting and lets open connections finish
//! their in-flight requests.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A response with a fully buffered body: every answer of this app is small.
pub type Resp = Response<Full<Bytes>>;

/// What each of the three servers does with a request.
pub trait Handler: Clone + Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, req: Request<Incoming>) -> impl Future<Output = Resp> + Send;
}

/// A one-shot broadcast that tells every accept loop to stop.
#[derive(Clone)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Shutdown {
    /// A shutdown that has not been triggered.
    pub fn new() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }

    /// Tells every loop to stop accepting and drain.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    async fn triggered(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|&stop| stop).await;
    }
}

/// Serves `handler` on `listener` until `shutdown` triggers, then waits for
/// the open connections to finish their in-flight requests.
pub async fn serve<H: Handler>(listener: TcpListener, handler: H, shutdown: Shutdown) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let handler = handler.clone();
                let service = hyper::service::service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler.handle(req).await) }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            () = shutdown.triggered() => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A plain-text answer, as Go's `fmt.Fprintf` to a `ResponseWriter` gives.
pub fn text(status: StatusCode, body: Bytes) -> Resp {
    let mut builder = Response::builder().status(status);
    if !body.is_empty() {
        builder = builder.header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
    }
    builder.body(Full::new(body)).unwrap_or_default()
}

/// Go's `http.NotFound`.
pub fn not_found() -> Resp {
    text(
        StatusCode::NOT_FOUND,
        Bytes::from_static(b"404 page not found\n"),
    )
}

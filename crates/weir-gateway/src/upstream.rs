//! Keep-alive HTTP/1.1 connections to upstream endpoints.
//!
//! Each endpoint keeps its idle connections in its own stacks
//! ([`ConnectionPool`]); a request takes the most recently used one, or opens
//! a new one, and its response body ([`PooledBody`]) puts the connection back
//! the moment the body ends. Nothing else runs per request: no pool lookup by
//! authority, no task spawned to wait for the connection to turn idle (which
//! is what hyper-util's legacy client does, and what this replaces for
//! speed). A response body dropped before its end closes its connection, as
//! the connection's state is then unknown.
//!
//! A request without a body, most of what a gateway forwards, is exchanged
//! on the socket by the request's own task ([`crate::exchange`]); one with a
//! body goes through hyper's client, whose connection task streams it. The
//! two kinds of connection are pooled apart.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::decode::{ExchangeError, Framing, Head};
use crate::endpoint::{UpstreamBody, UpstreamEndpoint, put_into, take_from};
use crate::exchange;

/// Any error, boxed: what a response body reports to the server writing it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How upstream connections are opened.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamSettings {
    /// Give up connecting after this long (Istio's default: 10 s).
    pub connect_timeout: Duration,
    /// Close a connection left idle this long, found when connections are returned.
    pub idle_timeout: Duration,
    /// How long an Ingress's request waits for its response head:
    /// ingress-nginx's `proxy-read-timeout` (60 s), then 504 `UT`.
    pub ingress_read_timeout: Duration,
    /// How long a body-less request on a route without a timeout waits for
    /// its response head: Envoy's stream idle timeout, then 504 `SI`.
    pub stream_idle_timeout: Duration,
}

/// Envoy's default stream idle timeout (its HTTP connection manager's
/// `stream_idle_timeout`, which Istio leaves at 5 minutes): a backend that
/// accepts a request and never answers holds it no longer than this.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            ingress_read_timeout: Duration::from_secs(60),
            stream_idle_timeout: STREAM_IDLE_TIMEOUT,
        }
    }
}

/// How long a request waits for a pooled connection whose last response
/// has ended but which is not idle yet: usually it only has to catch up,
/// but it may still be sending that request's body (the upstream answered
/// early). Past this it is left to finish on its own, then close, and the
/// request moves on, so one slow upload cannot hold up other requests.
const CATCH_UP: Duration = Duration::from_millis(250);

/// A bounded read buffer per connection keeps streamed bodies in small,
/// reused allocations, so peak memory stays flat however large they are.
const READ_BUFFER_LIMIT: usize = 64 * 1024;

/// Why a request got no response from upstream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be opened (Envoy's `UF`).
    #[error("upstream connect error: {0}")]
    Connect(std::io::Error),
    /// The connection failed before the response headers (Envoy's `UC`).
    #[error("upstream connection failed: {0}")]
    Connection(BoxError),
    /// A pooled connection closed after the request was written and before
    /// any of the response came: the server was closing it as it went out
    /// (a pod shutting down, an idle timeout). An idempotent request can be
    /// sent again.
    #[error("reused upstream connection closed before the response: {0}")]
    Stale(BoxError),
}

/// Sends `req` (origin-form URI, Host set) to `endpoint` over an idle
/// connection, or a new one. A request refused by an idle connection
/// before any of it was written (the server had just closed it) goes to the
/// next one, and so does one whose connection is not idle within
/// [`CATCH_UP`].
pub async fn send(
    endpoint: &Arc<UpstreamEndpoint>,
    settings: UpstreamSettings,
    req: Request<UpstreamBody>,
) -> Result<Response<PooledBody>, SendError> {
    if req.body().is_end_stream() {
        send_direct(endpoint, settings, &req).await
    } else {
        send_streaming(endpoint, settings, req).await
    }
}

/// A body-less request, exchanged by this task on a direct connection.
async fn send_direct(
    endpoint: &Arc<UpstreamEndpoint>,
    settings: UpstreamSettings,
    req: &Request<UpstreamBody>,
) -> Result<Response<PooledBody>, SendError> {
    loop {
        let (mut connection, reused) = match take_from(&endpoint.pool.direct, |c| c.is_usable()) {
            Some(c) => (c, true),
            None => {
                let stream = open(endpoint.addr, settings).await?;
                (Box::new(exchange::Connection::new(stream)), false)
            }
        };
        match connection.exchange(req).await {
            Ok(head) => return Ok(PooledBody::direct(head, connection, endpoint, settings)),
            // The server had closed this idle connection: the next one.
            Err(ExchangeError::NotSent(_)) if reused => continue,
            Err(e @ ExchangeError::ClosedBeforeResponse) => return Err(SendError::Stale(e.into())),
            Err(e) => return Err(SendError::Connection(e.into())),
        }
    }
}

/// A request with a body, streamed by hyper's client connection task.
async fn send_streaming(
    endpoint: &Arc<UpstreamEndpoint>,
    settings: UpstreamSettings,
    mut req: Request<UpstreamBody>,
) -> Result<Response<PooledBody>, SendError> {
    while let Some(mut sender) = take_from(&endpoint.pool.streaming, |s| !s.is_closed()) {
        if !sender.is_ready()
            && !matches!(
                tokio::time::timeout(CATCH_UP, sender.ready()).await,
                Ok(Ok(()))
            )
        {
            continue;
        }
        match sender.try_send_request(req).await {
            Ok(resp) => return Ok(PooledBody::streaming(resp, endpoint, sender, settings)),
            Err(mut e) => match e.take_message() {
                Some(unsent) => req = unsent,
                None => {
                    let e = e.into_error();
                    return Err(if e.is_incomplete_message() {
                        SendError::Stale(e.into())
                    } else {
                        SendError::Connection(e.into())
                    });
                }
            },
        }
    }
    let mut sender = handshake(open(endpoint.addr, settings).await?).await?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| SendError::Connection(e.into()))?;
    Ok(PooledBody::streaming(resp, endpoint, sender, settings))
}

/// Connects to `addr` within the connect timeout, with Nagle's algorithm off.
async fn open(addr: SocketAddr, settings: UpstreamSettings) -> Result<TcpStream, SendError> {
    let stream =
        match tokio::time::timeout(settings.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(SendError::Connect(e)),
            Err(_) => {
                return Err(SendError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {addr} timed out"),
                )));
            }
        };
    stream.set_nodelay(true).map_err(SendError::Connect)?;
    Ok(stream)
}

/// Starts hyper's client on `stream`, its connection driven on its own task.
async fn handshake(stream: TcpStream) -> Result<SendRequest<UpstreamBody>, SendError> {
    let (sender, connection) = http1::Builder::new()
        .writev(false)
        .max_buf_size(READ_BUFFER_LIMIT)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Connection(e.into()))?;
    tokio::spawn(async move {
        // Its errors reach the request that was using it.
        let _ = connection.await;
    });
    Ok(sender)
}

/// An upstream response body that returns its connection to the endpoint's
/// pool when it ends.
pub struct PooledBody {
    inner: Inner,
    /// The route timeout, when the body is still to come: Envoy's route
    /// timeout covers the whole response, not only its head.
    deadline: Option<Pin<Box<Sleep>>>,
}

/// The route timeout passed while the response body was still arriving;
/// the stream is reset, as Envoy does.
#[derive(Debug, thiserror::Error)]
#[error("upstream response not complete within the route timeout")]
pub struct ResponseTimeout;

enum Inner {
    /// A body read by hyper's client connection.
    Streaming {
        body: Incoming,
        checkin: Option<Checkin<SendRequest<UpstreamBody>>>,
    },
    /// A body this body reads from its direct connection itself.
    Direct {
        connection: Option<Box<exchange::Connection>>,
        framing: Framing,
        checkin: Option<Checkin<()>>,
    },
    /// A body that had fully arrived with its head, its connection already
    /// back in the pool.
    Buffered(Option<Bytes>),
}

struct Checkin<C> {
    endpoint: Arc<UpstreamEndpoint>,
    connection: C,
    idle_timeout: Duration,
}

impl PooledBody {
    fn streaming(
        resp: Response<Incoming>,
        endpoint: &Arc<UpstreamEndpoint>,
        sender: SendRequest<UpstreamBody>,
        settings: UpstreamSettings,
    ) -> Response<Self> {
        resp.map(|body| {
            let mut checkin = Some(Checkin {
                endpoint: endpoint.clone(),
                connection: sender,
                idle_timeout: settings.idle_timeout,
            });
            if body.is_end_stream() {
                check_in_streaming(&mut checkin);
            }
            Self {
                inner: Inner::Streaming { body, checkin },
                deadline: None,
            }
        })
    }

    fn direct(
        head: Head,
        mut connection: Box<exchange::Connection>,
        endpoint: &Arc<UpstreamEndpoint>,
        settings: UpstreamSettings,
    ) -> Response<Self> {
        let Head {
            response,
            mut framing,
            keep_alive,
        } = head;
        // The whole body is often in the buffer already: hand it on as one
        // piece and let the connection serve the next request at once.
        if let Some(buffered) = connection.take_whole_body(&mut framing) {
            if keep_alive && !connection.has_surplus() {
                put_into(&endpoint.pool.direct, connection, settings.idle_timeout);
            }
            return response.map(|()| Self {
                inner: Inner::Buffered(buffered),
                deadline: None,
            });
        }
        let checkin = keep_alive.then(|| Checkin {
            endpoint: endpoint.clone(),
            connection: (),
            idle_timeout: settings.idle_timeout,
        });
        response.map(|()| Self {
            inner: Inner::Direct {
                connection: Some(connection),
                framing,
                checkin,
            },
            deadline: None,
        })
    }
}

fn check_in_streaming(checkin: &mut Option<Checkin<SendRequest<UpstreamBody>>>) {
    if let Some(c) = checkin.take() {
        put_into(&c.endpoint.pool.streaming, c.connection, c.idle_timeout);
    }
}

impl PooledBody {
    /// Whether the whole body is here already, in memory (it came with the
    /// head): nothing more will be read for it.
    pub fn is_whole(&self) -> bool {
        matches!(self.inner, Inner::Buffered(_))
    }

    /// Ends the body with [`ResponseTimeout`] (and closes its connection)
    /// if it has not ended by `deadline`. A body already whole needs none.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        if !self.is_end_stream() && !matches!(self.inner, Inner::Buffered(_)) {
            self.deadline = Some(Box::pin(tokio::time::sleep_until(deadline)));
        }
        self
    }
}

impl Inner {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self {
            Inner::Streaming { body, checkin } => {
                let frame = ready!(Pin::new(&mut *body).poll_frame(cx));
                match &frame {
                    Some(Err(_)) => *checkin = None,
                    None => check_in_streaming(checkin),
                    Some(Ok(_)) if body.is_end_stream() => check_in_streaming(checkin),
                    Some(Ok(_)) => {}
                }
                Poll::Ready(frame.map(|f| f.map_err(BoxError::from)))
            }
            Inner::Direct {
                connection,
                framing,
                checkin,
            } => {
                let Some(conn) = connection.as_mut() else {
                    return Poll::Ready(None);
                };
                let frame = ready!(conn.poll_body(framing, cx));
                if matches!(frame, Some(Err(_))) {
                    *connection = None;
                } else if framing.is_done()
                    && let (Some(conn), Some(c)) = (connection.take(), checkin.take())
                    && !conn.has_surplus()
                {
                    put_into(&c.endpoint.pool.direct, conn, c.idle_timeout);
                }
                Poll::Ready(frame.map(|f| f.map_err(BoxError::from)))
            }
            Inner::Buffered(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let expired = this
            .deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready());
        if !expired {
            return Poll::Pending;
        }
        // Dropping the rest closes the upstream connection too.
        this.inner = Inner::Buffered(None);
        this.deadline = None;
        Poll::Ready(Some(Err(ResponseTimeout.into())))
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Streaming { body, .. } => body.is_end_stream(),
            Inner::Direct { framing, .. } => framing.is_done(),
            Inner::Buffered(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Streaming { body, .. } => body.size_hint(),
            Inner::Direct { framing, .. } => match framing.remaining() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
            Inner::Buffered(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Either, Empty, Full};
    use std::collections::BTreeMap;

    /// A real HTTP/1.1 server on loopback answering `ok` with keep-alive.
    async fn ok_server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    fn get() -> Request<UpstreamBody> {
        Request::get("/")
            .header(http::header::HOST, "test")
            .body(Either::Right(Empty::new()))
            .unwrap()
    }

    /// Two requests at once (two connections), each read to its end.
    async fn two_at_once(endpoint: &Arc<UpstreamEndpoint>, settings: UpstreamSettings) {
        let (a, b) = tokio::join!(
            send(endpoint, settings, get()),
            send(endpoint, settings, get())
        );
        for resp in [a.unwrap(), b.unwrap()] {
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
        }
    }

    fn endpoint(addr: SocketAddr) -> Arc<UpstreamEndpoint> {
        Arc::new(UpstreamEndpoint::new(
            addr,
            "ok-1".into(),
            "ok".into(),
            BTreeMap::new(),
        ))
    }

    #[tokio::test]
    async fn connections_return_to_the_pool_when_their_body_ends() {
        let endpoint = endpoint(ok_server().await);
        two_at_once(&endpoint, UpstreamSettings::default()).await;
        assert_eq!(endpoint.pool.idle_count(), 2);
        // Reused, not reopened: still two.
        two_at_once(&endpoint, UpstreamSettings::default()).await;
        assert_eq!(endpoint.pool.idle_count(), 2);
    }

    #[tokio::test]
    async fn a_connection_idle_past_the_timeout_is_closed_when_another_returns() {
        let endpoint = endpoint(ok_server().await);
        let settings = UpstreamSettings {
            idle_timeout: Duration::ZERO,
            ..UpstreamSettings::default()
        };
        two_at_once(&endpoint, settings).await;
        assert_eq!(endpoint.pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = send(&endpoint(addr), UpstreamSettings::default(), get())
            .await
            .err()
            .unwrap();
        assert!(matches!(err, SendError::Connect(_)), "{err}");
    }
}

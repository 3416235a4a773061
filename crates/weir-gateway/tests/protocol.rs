//! HTTP handling: h2c from clients, hop-by-hop and forwarding headers,
//! request header operations, mirroring, streaming bodies with bounded
//! memory, and metrics in valid Prometheus text.
//!
//! Where a test must see what reached the upstream (headers, body bytes) it
//! uses a small echo server inside the test process instead of `my-app`,
//! which cannot report those; it is a real HTTP server on a real socket.
//!
//! Over 600 lines: the echo server and its helpers serve every test here.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::time::Instant;

/// Echo server: `/headers` returns the request headers as `name: value`
/// lines; `/upload` returns the byte count of the body; `/download?n=N`
/// streams N bytes.
async fn echo_server(ip: &str) -> SocketAddr {
    echo_server_counting(ip, Arc::default(), true).await
}

/// The connections an echo server accepted and saw end.
#[derive(Default)]
struct Connections {
    accepted: AtomicUsize,
    ended: AtomicUsize,
    ended_signal: tokio::sync::Notify,
}

impl Connections {
    /// Waits until `n` connections have ended.
    async fn ended(&self, n: usize) {
        loop {
            let signal = self.ended_signal.notified();
            if self.ended.load(Ordering::SeqCst) >= n {
                return;
            }
            signal.await;
        }
    }
}

/// A gateway routing every request to the one upstream at `addr`.
async fn gateway_to(addr: SocketAddr) -> (Arc<weir_gateway::Gateway>, String) {
    gateway(&[GATEWAY, &to_echo(""), &echo_backend(addr)]).await
}

/// As [`echo_server`], counting its connections; `keep_alive: false`
/// answers every request with `Connection: close` and closes.
async fn echo_server_counting(
    ip: &str,
    connections: Arc<Connections>,
    keep_alive: bool,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            connections.accepted.fetch_add(1, Ordering::SeqCst);
            let connections = connections.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let path = req.uri().path().to_owned();
                    let query = req.uri().query().unwrap_or_default().to_owned();
                    let body: http_body_util::combinators::BoxBody<Bytes, Infallible> = match path
                        .as_str()
                    {
                        "/upload" => {
                            let mut body = req.into_body();
                            let mut n = 0usize;
                            while let Some(frame) = body.frame().await {
                                if let Ok(data) = frame.map(|f| f.into_data()) {
                                    n += data.map(|d| d.len()).unwrap_or(0);
                                }
                            }
                            Full::new(Bytes::from(n.to_string())).boxed()
                        }
                        // Answers at once and reads the body afterwards, as
                        // a server that rejects an upload early may.
                        "/early" => {
                            let mut body = req.into_body();
                            tokio::spawn(
                                async move { while let Some(Ok(_)) = body.frame().await {} },
                            );
                            Full::new(Bytes::from_static(b"early")).boxed()
                        }
                        "/download" => {
                            let total: usize = query.trim_start_matches("n=").parse().unwrap_or(0);
                            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                            let chunks = total / chunk.len();
                            let stream = futures_stream(chunk, chunks);
                            stream.boxed()
                        }
                        _ => {
                            let mut text = String::new();
                            for (k, v) in req.headers() {
                                text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
                            }
                            Full::new(Bytes::from(text)).boxed()
                        }
                    };
                    let mut resp = Response::new(body);
                    resp.headers_mut()
                        .insert("connection", "keep-alive, x-hop".parse().unwrap());
                    resp.headers_mut()
                        .insert("x-hop", "secret".parse().unwrap());
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(keep_alive)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                connections.ended.fetch_add(1, Ordering::SeqCst);
                connections.ended_signal.notify_waiters();
            });
        }
    });
    addr
}

/// A body of `n` copies of `chunk`, produced as it is read.
fn futures_stream(chunk: Bytes, n: usize) -> Repeat {
    Repeat { chunk, left: n }
}

/// See [`futures_stream`].
struct Repeat {
    chunk: Bytes,
    left: usize,
}

impl hyper::body::Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        self.left -= 1;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }
}

/// A gateway routing everything to a counting echo server on `ip`.
async fn gateway_to_counting_echo(
    ip: &str,
    keep_alive: bool,
) -> (Arc<Connections>, Arc<weir_gateway::Gateway>, String) {
    let connections = Arc::new(Connections::default());
    let echo = echo_server_counting(ip, connections.clone(), keep_alive).await;
    let (gw, url) = gateway_to(echo).await;
    (connections, gw, url)
}

/// A client connection of its own to `authority`, driven on a task.
async fn own_connection<B>(
    authority: &str,
) -> (
    hyper::client::conn::http1::SendRequest<B>,
    tokio::task::JoinHandle<()>,
)
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, driver)
}

fn echo_backend(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: echo\nspec:\n  ports:\n  - name: http\n    port: 80\n  selector:\n    app: echo\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: echo-1\nspec:\n  address: {}\n  ports:\n    http: {}\n  labels:\n    app: echo\n",
        addr.ip(),
        addr.port()
    )
}

fn to_echo(extra: &str) -> String {
    virtual_service(&format!(
        "  - route:\n    - destination:\n        host: echo\n{extra}"
    ))
}

#[tokio::test]
async fn forwarding_headers_hop_by_hop_and_trace_context() {
    let echo = echo_server("127.0.0.61").await;
    let (_gw, url) = gateway_to(echo).await;
    let (status, headers, body) = get(
        &format!("{url}/headers"),
        &[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "hop"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x-forwarded-for", "203.0.113.7"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let seen: Vec<&str> = body.lines().collect();
    let has = |line: &str| seen.contains(&line);
    assert!(
        !body.contains("x-secret"),
        "headers named by Connection are hop-by-hop:\n{body}"
    );
    assert!(!body.contains("keep-alive:"), "{body}");
    assert!(!body.contains("te: "), "{body}");
    assert!(has("x-forwarded-for: 203.0.113.7, 127.0.0.1"), "{body}");
    assert!(has("x-forwarded-proto: http"), "{body}");
    assert!(
        body.lines()
            .any(|l| l.starts_with("x-request-id: ") && l.len() == "x-request-id: ".len() + 36),
        "{body}"
    );
    assert!(has(
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ));
    assert!(has("x-b3-traceid: 80f198ee56343ba864fe8b2a57d3eff7"));
    assert!(has(
        "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"
    ));
    // Hop-by-hop headers from the upstream do not reach the client either.
    assert!(headers.get("x-hop").is_none());

    // A request id the client sent is kept.
    let (_, _, body) = get(&format!("{url}/headers"), &[("x-request-id", "abc-123")]).await;
    assert!(body.lines().any(|l| l == "x-request-id: abc-123"), "{body}");
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_kept_alive() {
    let (connections, _gw, url) = gateway_to_counting_echo("127.0.0.68", true).await;
    for _ in 0..50 {
        let (status, _, _) = get(&format!("{url}/headers"), &[("connection", "close")]).await;
        assert_eq!(status, 200);
    }
    // Each client connection was closed, yet one upstream connection served all 50.
    assert_eq!(connections.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_upstream_connection_left_mid_body_is_closed_not_reused() {
    let (connections, _gw, url) = gateway_to_counting_echo("127.0.0.71", true).await;
    let authority = url.trim_start_matches("http://").to_owned();

    // A client reads the first frame of a 100 MB download and goes away.
    let (mut sender, driver) = own_connection(&authority).await;
    let req = Request::get(format!("{url}/download?n={}", 100 * 1024 * 1024))
        .header("host", &authority)
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let mut body = resp.into_body();
    assert!(body.frame().await.unwrap().unwrap().is_data());
    drop((body, sender));
    driver.abort();

    // The gateway closes that upstream connection rather than pooling it.
    tokio::time::timeout(Duration::from_secs(10), connections.ended(1))
        .await
        .expect("the upstream connection stayed open");
    for _ in 0..5 {
        let (status, _, body) = get(&format!("{url}/headers"), &[]).await;
        assert_eq!(status, 200);
        assert!(body.contains("x-request-id:"), "{body}");
    }
    assert_eq!(connections.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_still_sending_an_upload_does_not_hold_up_the_next_request() {
    let (connections, _gw, url) = gateway_to_counting_echo("127.0.0.73", true).await;
    let authority = url.trim_start_matches("http://").to_owned();

    // An upload that stalls after its first chunk; the upstream answers it early.
    let (mut sender, driver) = own_connection(&authority).await;
    let (mut chunks, upload) = http_body_util::channel::Channel::<Bytes, Infallible>::new(1);
    chunks
        .send_data(Bytes::from(vec![b'u'; 1024]))
        .await
        .unwrap();
    let req = Request::post(format!("{url}/early"))
        .header("host", &authority)
        .header("content-length", "1048576")
        .body(upload)
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"early");

    // The upstream connection of that exchange is still busy with the upload;
    // a new request must not wait for it.
    let (status, _, _) =
        tokio::time::timeout(Duration::from_secs(5), get(&format!("{url}/headers"), &[]))
            .await
            .expect("the request waited behind a stalled upload");
    assert_eq!(status, 200);
    assert_eq!(connections.accepted.load(Ordering::SeqCst), 2);
    drop(chunks);
    driver.abort();
}

/// A raw TCP server on `ip` that counts its connections and serves each
/// with `serve` on its own task.
async fn raw_server<F, Fut>(ip: &str, connections: Arc<AtomicUsize>, serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });
    addr
}

/// The next request head on `stream` (bytes after it stay in `pending`);
/// `None` once the client has gone.
async fn next_head(stream: &mut tokio::net::TcpStream, pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(pending.drain(..end + 4).collect());
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends a body-less request; the response comes back with its body unread.
async fn response_to(method: Method, url: &str) -> Response<Incoming> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>()
        .request(
            Request::builder()
                .method(method)
                .uri(url)
                .body(http_body_util::Empty::new())
                .unwrap(),
        )
        .await
        .unwrap()
}

/// A server that answers the first request on each connection (keep-alive)
/// and closes the connection when the second arrives, unanswered: a server
/// shutting down as a pooled connection is reused. Counts connections.
async fn closes_on_second_request(ip: &str, connections: Arc<AtomicUsize>) -> SocketAddr {
    raw_server(ip, connections, |mut stream| async move {
        use tokio::io::AsyncWriteExt;
        let mut pending = Vec::new();
        if next_head(&mut stream, &mut pending).await.is_none() {
            return;
        }
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(answer).await.is_err() {
            return;
        }
        // The next request is read, then the connection is dropped.
        let _ = next_head(&mut stream, &mut pending).await;
    })
    .await
}

#[tokio::test]
async fn an_idempotent_request_on_a_pooled_connection_closed_under_it_is_sent_again() {
    let connections = Arc::new(AtomicUsize::new(0));
    let upstream = closes_on_second_request("127.0.0.74", connections.clone()).await;
    let (_gw, url) = gateway_to(upstream).await;
    for _ in 0..3 {
        let (status, _, body) = get(&format!("{url}/"), &[]).await;
        assert_eq!(status, 200);
        assert_eq!(body, "ok");
    }
    // First request: a new connection; each later one met the pooled
    // connection closing under it and went out again on a new one.
    assert_eq!(connections.load(Ordering::SeqCst), 3);

    // A POST is not idempotent: it is not sent twice.
    let resp = response_to(Method::POST, &format!("{url}/")).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

/// A raw HTTP/1 server answering each path with a different framing:
/// `/chunked` (with a trailer), `/interim` (a 100 and a 103 before the
/// answer), `/head` (a HEAD answered with a length and no body), and
/// `/close` (HTTP/1.0, no length: the body runs until it closes). Counts
/// connections.
async fn framing_server(ip: &str, connections: Arc<AtomicUsize>) -> SocketAddr {
    raw_server(ip, connections, |mut stream| async move {
        use tokio::io::AsyncWriteExt;
        let mut pending = Vec::new();
        while let Some(head) = next_head(&mut stream, &mut pending).await {
            let line = String::from_utf8_lossy(&head);
            let answer: &[u8] = match line.split(' ').nth(1).unwrap_or_default() {
                "/chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
                "/interim" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                "/head" => b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n",
                _ => b"HTTP/1.0 200 OK\r\n\r\nuntil it closes",
            };
            if stream.write_all(answer).await.is_err() || answer.starts_with(b"HTTP/1.0") {
                return;
            }
        }
    })
    .await
}

#[tokio::test]
async fn upstream_responses_in_every_framing_reach_the_client_whole() {
    let connections = Arc::new(AtomicUsize::new(0));
    let upstream = framing_server("127.0.0.75", connections.clone()).await;
    let (_gw, url) = gateway_to(upstream).await;

    let (status, _, body) = get(&format!("{url}/chunked"), &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "hello world"));
    let (status, _, body) = get(&format!("{url}/interim"), &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "ok"));
    let (status, headers, body) = request("HEAD", &format!("{url}/head"), &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, ""));
    assert_eq!(headers["content-length"], "10");
    let (_, _, body) = get(&format!("{url}/chunked"), &[]).await;
    assert_eq!(body, "hello world");
    // All of that on one upstream connection.
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    let (status, _, body) = get(&format!("{url}/close"), &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "until it closes"));
    let (_, _, body) = get(&format!("{url}/chunked"), &[]).await;
    assert_eq!(body, "hello world");
    // The body that ran until the close took the pooled connection with
    // it: the next request needed a second one.
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_route_timeout_also_bounds_a_response_body_still_arriving() {
    // `/stall` sends its head and part of its body, then nothing more.
    let upstream = raw_server("127.0.0.76", Arc::default(), |mut stream| async move {
        use tokio::io::AsyncWriteExt;
        let mut pending = Vec::new();
        while let Some(head) = next_head(&mut stream, &mut pending).await {
            let answer: &[u8] = if head.starts_with(b"GET /stall ") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nthe first part"
            } else {
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
            };
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let timeout = Duration::from_millis(500);
    let route = to_echo("    timeout: 500ms\n");
    let (_gw, url) = gateway(&[GATEWAY, &route, &echo_backend(upstream)]).await;

    // A response that completes in time is untouched.
    let (status, _, body) = get(&format!("{url}/ok"), &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "ok"));

    // The stalled one: its head comes through, its body is cut at the
    // deadline, as Envoy resets the stream.
    let started = Instant::now();
    let resp = response_to(Method::GET, &format!("{url}/stall")).await;
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .expect("the body still open well past the route timeout");
    assert!(body.is_err(), "a cut body must not look complete");
    assert!(started.elapsed() >= timeout, "cut before the deadline");
}

#[tokio::test]
async fn an_upstream_that_closes_after_each_response_gets_a_new_connection_each_time() {
    let (connections, _gw, url) = gateway_to_counting_echo("127.0.0.72", false).await;
    for _ in 0..20 {
        let (status, _, _) = get(&format!("{url}/headers"), &[]).await;
        assert_eq!(status, 200);
    }
    assert_eq!(connections.accepted.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn request_header_operations() {
    let echo = echo_server("127.0.0.62").await;
    let ops = "    headers:\n      request:\n        set:\n          x-env: canary\n        add:\n          x-added: one\n        remove: [x-drop]\n";
    let vs = virtual_service(&format!(
        "  - route:\n    - destination:\n        host: echo\n{ops}"
    ));
    let (_gw, url) = gateway(&[GATEWAY, &vs, &echo_backend(echo)]).await;
    let (_, _, body) = get(
        &format!("{url}/headers"),
        &[("x-env", "prod"), ("x-drop", "1"), ("x-added", "zero")],
    )
    .await;
    assert!(body.lines().any(|l| l == "x-env: canary"), "{body}");
    assert!(!body.contains("x-env: prod"));
    assert!(
        body.lines().any(|l| l == "x-added: zero") && body.lines().any(|l| l == "x-added: one"),
        "{body}"
    );
    assert!(!body.contains("x-drop"), "{body}");
}

#[tokio::test]
async fn http2_prior_knowledge_from_clients() {
    let v1 = App::start("127.0.0.63", "v1.0.0", "my-app-v1-a", &[]);
    let apps = backends(&[(&v1, &[("version", "v1.0.0")])]);
    let (_gw, url) = gateway(&[GATEWAY, &split(100, 0), SUBSETS, &apps]).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Empty<Bytes>>();
    for _ in 0..3 {
        let resp = client
            .get(format!("{url}/").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"Host: my-app-v1-a, Version: v1.0.0\n");
    }
}

#[tokio::test]
async fn mirror_copies_a_share_of_requests_to_the_shadow() {
    let (v1, v2) = (
        App::start("127.0.0.64", "v1.0.0", "my-app-v1-a", &[]),
        App::start("127.0.0.65", "v2.0.0", "my-app-v2-a", &[]),
    );
    let apps = backends(&[
        (&v1, &[("version", "v1.0.0")]),
        (&v2, &[("version", "v2.0.0")]),
    ]);
    let mirror = |pct: &str| {
        virtual_service(&format!(
            "  - route:\n    - destination:\n        host: my-app\n        subset: v1\n    mirror:\n      host: my-app\n      subset: v2\n{pct}"
        ))
    };
    let (gw, url) = gateway(&[GATEWAY, &mirror(""), SUBSETS, &apps]).await;
    let seen = versions(&format!("{url}/"), 50, &[]).await;
    assert_eq!(
        seen,
        std::collections::BTreeMap::from([("v1.0.0".to_owned(), 50)]),
        "clients only see the primary"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while v2.served().await < 50.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        v2.served().await,
        50.0,
        "absent mirrorPercentage mirrors 100%"
    );

    let (routes, endpoints) = inputs(&[
        GATEWAY,
        &mirror("    mirrorPercentage:\n      value: 20\n"),
        SUBSETS,
        &apps,
    ]);
    gw.set_all(routes, endpoints).await.unwrap();
    versions(&format!("{url}/"), 200, &[]).await;
    // Mirrors finish after their clients' answers: wait (bounded) until every
    // mirrored request the gateway recorded has been counted by v2 too.
    // They are recorded apart: the Istio metrics show only what clients saw.
    let recorded_v2 = |text: &str, metric: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with(&format!("{metric}{{"))
                    && l.contains("destination_version=\"v2.0.0\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let mirrors =
        |gw: &weir_gateway::Gateway| recorded_v2(&gw.metrics(), "weir_mirror_requests_total");
    let deadline = Instant::now() + Duration::from_secs(5);
    while v2.served().await != mirrors(&gw) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mirrored = v2.served().await - 50.0;
    assert_eq!(
        v2.served().await,
        mirrors(&gw),
        "every mirror is recorded, all 50 of the first round too"
    );
    assert_eq!(
        recorded_v2(&gw.metrics(), "istio_requests_total"),
        0.0,
        "no mirrored copy counts as a request to v2"
    );
    assert!(
        (15.0..=70.0).contains(&mirrored),
        "20% of 200 mirrored, got {mirrored}"
    );
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text_with_istio_names() {
    let v1 = App::start("127.0.0.66", "v1.0.0", "my-app-v1-a", &[]);
    let apps = backends(&[(&v1, &[("version", "v1.0.0")])]);
    let (gw, url) = gateway(&[GATEWAY, &split(100, 0), SUBSETS, &apps]).await;
    for _ in 0..3 {
        get(&format!("{url}/"), &[]).await;
    }
    get(&format!("{url}/nowhere"), &[]).await;
    let text = gw.metrics();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    assert!(
        text.contains("# HELP istio_requests Requests through the gateway.\n")
            && !text
                .lines()
                .any(|l| l.starts_with("# HELP") && l.ends_with("..")),
        "help texts end with one period\n{text}"
    );
    let total = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "istio_requests_total" && s.labels.get("response_code") == Some("200")
        })
        .expect("istio_requests_total for 200");
    // OpenMetrics names the counter family without `_total`; the parser then
    // reads the sample as untyped. The value is what matters.
    assert!(
        matches!(total.value, prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) if v == 3.0),
        "{total:?}"
    );
    // Istio's standard labels ("Istio Standard Metrics": every label of
    // istio_requests_total), valued as an ingress gateway without mTLS
    // reports them, the destination's from its labels.
    let istio_labels = [
        ("reporter", "source"),
        ("source_workload", "istio-ingressgateway"),
        ("source_workload_namespace", "istio-system"),
        ("source_principal", "unknown"),
        ("source_app", "istio-ingressgateway"),
        ("source_version", "unknown"),
        ("destination_workload", "my-app-v1-a"),
        ("destination_workload_namespace", "default"),
        ("destination_principal", "unknown"),
        ("destination_app", "my-app"),
        ("destination_version", "v1.0.0"),
        ("destination_service", "my-app.default.svc.cluster.local"),
        ("destination_service_name", "my-app"),
        ("destination_service_namespace", "default"),
        ("request_protocol", "http"),
        ("response_code", "200"),
        ("connection_security_policy", "unknown"),
        ("response_flags", "-"),
        ("source_canonical_service", "istio-ingressgateway"),
        ("destination_canonical_service", "my-app"),
        ("source_canonical_revision", "latest"),
        ("destination_canonical_revision", "v1.0.0"),
        ("source_cluster", "Kubernetes"),
        ("destination_cluster", "Kubernetes"),
    ];
    for (label, value) in istio_labels {
        assert_eq!(total.labels.get(label), Some(value), "{label}");
    }
    assert_eq!(
        total.labels.iter().count(),
        istio_labels.len(),
        "no other label: {:?}",
        total.labels
    );
    // The app's own 404 is still a request to it, with its labels.
    let not_found = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "istio_requests_total" && s.labels.get("response_code") == Some("404")
        })
        .expect("istio_requests_total for 404");
    assert_eq!(not_found.labels.get("destination_app"), Some("my-app"));
    assert_eq!(not_found.labels.get("response_flags"), Some("-"));
    for name in [
        "istio_request_duration_milliseconds",
        "istio_request_bytes",
        "istio_response_bytes",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == name),
            "{name} missing\n{text}"
        );
    }
    assert!(scrape.samples.iter().any(
        |s| s.metric == "istio_requests_total" && s.labels.get("response_code") == Some("404")
    ));
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Runs the standalone gateway binary (a separate process, so its memory
/// can be read from /proc) and streams 100 MB each way through it.
#[tokio::test]
async fn hundred_megabytes_stream_both_ways_in_bounded_memory() {
    let echo = echo_server("127.0.0.67").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("routes.yaml"),
        [GATEWAY, &to_echo(""), &echo_backend(echo)].join("\n---\n"),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = gateway_process(dir.path(), port, &[]);
    let url = format!("http://127.0.0.1:{port}");
    get(&format!("{url}/headers"), &[]).await;
    let baseline = vm_hwm_kib(child.id());

    const SIZE: usize = 100 * 1024 * 1024;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::combinators::BoxBody<Bytes, Infallible>>();
    let upload = futures_stream(Bytes::from(vec![b'y'; 64 * 1024]), SIZE / (64 * 1024)).boxed();
    let req = Request::post(format!("{url}/upload")).body(upload).unwrap();
    let resp = client.request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), SIZE.to_string());

    let resp = client
        .request(
            Request::get(format!("{url}/download?n={SIZE}"))
                .body(http_body_util::Empty::new().boxed())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    let mut received = 0;
    while let Some(frame) = body.frame().await {
        received += frame.unwrap().into_data().map(|d| d.len()).unwrap_or(0);
    }
    assert_eq!(received, SIZE);

    let grown = vm_hwm_kib(child.id()).saturating_sub(baseline);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        grown < 8 * 1024,
        "the gateway's peak RSS grew by {grown} KiB while streaming 200 MB"
    );
}

/// Writes `bytes` (a request the gateway answers with a close: HTTP/1.0,
/// `Connection: close`, or an error) on a fresh connection to `addr`, and
/// returns everything the gateway answered until it closed.
async fn raw_exchange(addr: &str, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the gateway closes the connection")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn one_authority_per_request_two_hosts_or_none_are_refused() {
    let echo = echo_server("127.0.0.73").await;
    let (gw, url) = gateway_to(echo).await;
    let addr = url.trim_start_matches("http://").to_owned();
    let cases: &[(&str, &str)] = &[
        // (request, what the answer must contain)
        (
            "GET /headers HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
            "HTTP/1.1 400",
        ),
        ("GET /headers HTTP/1.1\r\n\r\n", "HTTP/1.1 400"),
        // HTTP/1.0 needs no Host (upstream, HTTP/1.1, gets an empty one).
        ("GET /headers HTTP/1.0\r\n\r\n", "host: \n"),
        // Absolute form: the target's authority is the Host sent upstream.
        (
            "GET http://a.example/headers HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
            "host: a.example\n",
        ),
        (
            "GET http://a.example:8000/headers HTTP/1.1\r\nHost: b.example\r\nHost: c.example\r\nConnection: close\r\n\r\n",
            "host: a.example:8000\n",
        ),
        (
            "GET /headers HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
            "host: b.example\n",
        ),
    ];
    for (request, expected) in cases {
        let answer = raw_exchange(&addr, request.as_bytes()).await;
        assert!(answer.contains(expected), "{request:?} -> {answer:?}");
        assert_eq!(
            answer.matches("\nhost: ").count(),
            usize::from(expected.starts_with("host")),
            "exactly one Host upstream: {answer:?}"
        );
    }
    let metrics = gw.metrics();
    let bad: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("istio_requests_total{")
                && l.contains("response_code=\"400\"")
                && l.contains("response_flags=\"DPE\"")
                && l.contains("destination_service=\"unknown\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(bad, 2.0, "{metrics}");
}

#[tokio::test]
async fn a_malformed_request_body_is_the_clients_400_not_the_destinations_503() {
    let echo = echo_server("127.0.0.74").await;
    let (gw, url) = gateway_to(echo).await;
    let addr = url.trim_start_matches("http://").to_owned();
    for body in [
        // Not a chunk size.
        "zz\r\nhello\r\n0\r\n\r\n",
        // A chunk longer than announced.
        "2\r\nhello\r\n0\r\n\r\n",
    ] {
        let request = format!(
            "POST /upload HTTP/1.1\r\nHost: echo\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let answer = raw_exchange(&addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{body:?} -> {answer:?}");
    }
    let metrics = gw.metrics();
    let count = |code: &str, flags: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("istio_requests_total{")
                    && l.contains(&format!("response_code=\"{code}\""))
                    && l.contains(&format!("response_flags=\"{flags}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(count("400", "DPE"), 2.0, "{metrics}");
    assert_eq!(count("503", "UC"), 0.0, "{metrics}");
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total{")
                && l.contains("destination_service=\"echo")),
        "not counted against the destination: {metrics}"
    );
}

//! HTTP/1.1 exchanges of body-less requests, run in the request's own task.
//!
//! Most requests a gateway forwards carry no body: GETs, HEADs, retries and
//! mirrors. For them the gateway writes the request head to a pooled
//! upstream socket itself and reads the response from it as the downstream
//! side asks for it: no connection task, and no channels between the
//! request and its connection, which is what hyper's client needs to stream
//! request bodies and what cost the most per request in the profile
//! (`bench/README.md`). The response is decoded by [`crate::decode`]. Requests
//! with a body go through hyper's client (`upstream`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use http::Request;
use hyper::body::Frame;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use crate::decode::{BodyStep, ExchangeError, Framing, Head, Input};

/// An upstream HTTP/1.1 connection driven by whoever holds it.
pub struct Connection {
    stream: TcpStream,
    input: Input,
    write_buf: Vec<u8>,
}

impl Connection {
    /// Wraps a connected socket.
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            input: Input::default(),
            write_buf: Vec::with_capacity(512),
        }
    }

    /// Whether an idle connection can take a request: the server has
    /// neither closed it nor sent anything unasked. No system call unless
    /// the socket turned readable while the connection was idle.
    pub fn is_usable(&mut self) -> bool {
        if self.input.has_surplus() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Writes `req`'s head (origin form, its header fields as they are; the
    /// body is empty) and reads the response head.
    pub async fn exchange<B>(&mut self, req: &Request<B>) -> Result<Head, ExchangeError> {
        encode_head(req, &mut self.write_buf);
        let mut written = 0;
        while written < self.write_buf.len() {
            let n = std::future::poll_fn(|cx| {
                Pin::new(&mut self.stream).poll_write(cx, &self.write_buf[written..])
            })
            .await;
            match n {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => written += n,
                Err(e) if written == 0 => return Err(ExchangeError::NotSent(e)),
                Err(e) => return Err(e.into()),
            }
        }
        let mut received = false;
        loop {
            if let Some(head) = self.input.head(req.method())? {
                return Ok(head);
            }
            if std::future::poll_fn(|cx| self.poll_fill(cx)).await? == 0 {
                // After an interim response the server has seen the request.
                return Err(if received {
                    ExchangeError::Protocol("connection closed inside the response head")
                } else {
                    ExchangeError::ClosedBeforeResponse
                });
            }
            received = true;
        }
    }

    /// The next piece of a response body framed by `framing`, read from the
    /// socket when the buffer holds none of it.
    pub fn poll_body(
        &mut self,
        framing: &mut Framing,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        loop {
            match self.input.body(framing) {
                Err(e) => return Poll::Ready(Some(Err(e))),
                Ok(BodyStep::Frame(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(BodyStep::End) => return Poll::Ready(None),
                Ok(BodyStep::NeedMore) => {}
            }
            match ready!(self.poll_fill(cx)) {
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
                Ok(0) if matches!(framing, Framing::UntilClose) => {
                    *framing = Framing::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    return Poll::Ready(Some(Err(ExchangeError::Protocol(
                        "connection closed inside the response body",
                    ))));
                }
                Ok(_) => {}
            }
        }
    }

    /// The whole body, when the buffer holds all of it already (`Some(None)`
    /// when there is none): the exchange is then over.
    pub fn take_whole_body(&mut self, framing: &mut Framing) -> Option<Option<Bytes>> {
        self.input.whole_body(framing)
    }

    /// Whether bytes beyond the response are buffered (the server sent more
    /// than it framed), which makes the connection unusable.
    pub fn has_surplus(&self) -> bool {
        self.input.has_surplus()
    }

    /// Reads what the socket has into the buffer: `Ok(0)` at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let buf = self.input.spare();
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, buf)
    }
}

/// Writes the head of a body-less request: `METHOD path HTTP/1.1`, then its
/// header fields as they are (lower-case names, as hyper writes them).
fn encode_head<B>(req: &Request<B>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::READ_CHUNK;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A loopback server that answers each request head with `response`
    /// (then closes when `close_after` is set) and reports the bytes it got.
    async fn scripted(
        response: &'static [u8],
        close_after: bool,
    ) -> (TcpStream, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    return got;
                }
                got.extend_from_slice(&buf[..n]);
                if got.ends_with(b"\r\n\r\n") {
                    s.write_all(response).await.unwrap();
                    if close_after {
                        return got;
                    }
                }
            }
        });
        (TcpStream::connect(addr).await.unwrap(), server)
    }

    fn get(target: &str) -> Request<()> {
        Request::get(target).header("host", "svc").body(()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_carries_one_exchange_after_another() {
        let (stream, server) =
            scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false).await;
        let mut conn = Connection::new(stream);
        for _ in 0..2 {
            let mut head = conn.exchange(&get("/a?b=c")).await.unwrap();
            assert_eq!(head.response.status(), 200);
            let body = conn
                .take_whole_body(&mut head.framing)
                .expect("whole body buffered");
            assert_eq!(body.as_deref(), Some(&b"hello"[..]));
            assert!(head.keep_alive && conn.is_usable());
        }
        drop(conn);
        let got = server.await.unwrap();
        assert_eq!(got, b"GET /a?b=c HTTP/1.1\r\nhost: svc\r\n\r\n".repeat(2));
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_response_says_so() {
        let (stream, server) = scripted(b"", true).await;
        let mut conn = Connection::new(stream);
        let err = conn.exchange(&get("/")).await.err().expect("no response");
        assert!(matches!(err, ExchangeError::ClosedBeforeResponse), "{err}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_close_after_an_interim_response_is_not_taken_for_a_stale_connection() {
        let (stream, server) = scripted(b"HTTP/1.1 100 Continue\r\n\r\n", true).await;
        let mut conn = Connection::new(stream);
        let err = conn
            .exchange(&get("/"))
            .await
            .err()
            .expect("no final response");
        assert!(matches!(err, ExchangeError::Protocol(_)), "{err}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn an_idle_connection_the_server_closed_is_not_usable() {
        let (stream, server) =
            scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true).await;
        let mut conn = Connection::new(stream);
        conn.exchange(&get("/")).await.unwrap();
        server.await.unwrap();
        conn.stream.readable().await.unwrap();
        assert!(!conn.is_usable());
    }

    #[tokio::test]
    async fn a_large_body_is_handed_on_in_bounded_pieces() {
        const LEN: usize = 4 * 1024 * 1024;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\n\r\n");
            s.write_all(head.as_bytes()).await.unwrap();
            let piece = vec![7u8; 64 * 1024];
            for _ in 0..LEN / piece.len() {
                s.write_all(&piece).await.unwrap();
            }
        });
        let mut conn = Connection::new(TcpStream::connect(addr).await.unwrap());
        let mut head = conn.exchange(&get("/big")).await.unwrap();
        let (mut total, mut largest) = (0, 0);
        while let Some(frame) =
            std::future::poll_fn(|cx| conn.poll_body(&mut head.framing, cx)).await
        {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.iter().all(|&b| b == 7));
            total += data.len();
            largest = largest.max(data.len());
        }
        assert_eq!(total, LEN);
        assert!(largest <= 2 * READ_CHUNK, "largest piece {largest} bytes");
        assert!(head.framing.is_done());
    }
}

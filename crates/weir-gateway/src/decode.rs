//! Decoding upstream HTTP/1.1 responses from buffered bytes, with no I/O:
//! httparse for the head, as in hyper, and the body framed as RFC 9112
//! §6.3 says: no body after HEAD, 1xx, 204 and 304; chunked (with
//! trailers) when Transfer-Encoding ends in it; else Content-Length; else
//! until the server closes. With no I/O, every way the bytes can be split
//! across reads is testable. [`crate::exchange`] feeds it from the socket.
//!
//! Over 600 lines because its tests stay beside it: they drive the private
//! decoder with every response split at every byte.

use std::io;
use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use hyper::body::Frame;
use smallvec::SmallVec;

/// The most header fields accepted in a response head or trailer section
/// (hyper's default too).
const MAX_HEADERS: usize = 100;

/// The largest response head (or trailer section) accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Read buffer growth step; also about the largest body frame handed on, so
/// a streamed body is held in small pieces however large it is.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Writing the request failed before any of it was written, so the
    /// server never saw it (a pooled connection the server had closed).
    #[error("upstream connection refused the request: {0}")]
    NotSent(io::Error),
    /// The connection ended after the request went out and before any byte
    /// of the response.
    #[error("upstream connection closed before the response")]
    ClosedBeforeResponse,
    /// Reading or writing failed.
    #[error("upstream connection failed: {0}")]
    Io(#[from] io::Error),
    /// The response broke HTTP/1.1 framing.
    #[error("invalid upstream response: {0}")]
    Protocol(&'static str),
}

/// How the rest of a response body arrives.
#[derive(Debug)]
pub enum Framing {
    /// No more body.
    Done,
    /// This many bytes.
    Length(u64),
    /// Chunked transfer coding, at this point of it.
    Chunked(ChunkState),
    /// Everything until the server closes the connection.
    UntilClose,
}

/// Where a chunked body's decoding stands.
#[derive(Debug)]
pub enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk, this many data bytes to go.
    Data(u64),
    /// Expecting the CRLF that ends a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields, then the final CRLF.
    Trailers,
    /// The trailer section was handed on; the body has ended.
    Finished,
}

impl Framing {
    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        matches!(self, Framing::Done | Framing::Length(0))
    }

    /// The bytes still to come, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Framing::Done => Some(0),
            Framing::Length(n) => Some(*n),
            Framing::Chunked(_) | Framing::UntilClose => None,
        }
    }
}

/// A response head as read: the response without its body, how the body
/// is framed, and whether the connection can carry another request after it.
pub struct Head {
    /// Status, version and header fields.
    pub response: Response<()>,
    /// How the body arrives.
    pub framing: Framing,
    /// The server keeps the connection open after this response.
    pub keep_alive: bool,
}

/// What one decoding step over the buffered input gave.
#[derive(Debug)]
pub(crate) enum BodyStep {
    Frame(Frame<Bytes>),
    NeedMore,
    End,
}

/// Bytes read from the connection and not yet handed on, and their
/// decoding into response heads and bodies; no I/O, so every way the bytes
/// can be split across reads is testable.
#[derive(Default)]
pub(crate) struct Input {
    buf: BytesMut,
}

impl Input {
    /// The buffer, with room for the next read.
    pub(crate) fn spare(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        &mut self.buf
    }

    pub(crate) fn has_surplus(&self) -> bool {
        !self.buf.is_empty()
    }

    /// A complete final response head, if buffered; interim (1xx)
    /// responses are skipped.
    pub(crate) fn head(&mut self, method: &Method) -> Result<Option<Head>, ExchangeError> {
        loop {
            if self.buf.is_empty() {
                return Ok(None);
            }
            // Left uninitialised: httparse writes the fields it finds, so
            // no 3 KiB are zeroed per response.
            let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut []);
            let parse = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut parsed,
                &self.buf,
                &mut fields,
            );
            let len = match parse {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD_BYTES => {
                    return Ok(None);
                }
                Ok(httparse::Status::Partial) => {
                    return Err(ExchangeError::Protocol("response head too large"));
                }
                Err(_) => return Err(ExchangeError::Protocol("malformed response head")),
            };
            let status = parsed
                .code
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or(ExchangeError::Protocol("invalid status code"))?;
            if status.is_informational() {
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(ExchangeError::Protocol("unrequested protocol switch"));
                }
                self.buf.advance(len);
                continue;
            }
            let version = if parsed.version == Some(0) {
                Version::HTTP_10
            } else {
                Version::HTTP_11
            };
            let spans = field_spans(parsed.headers, &self.buf[..len])?;
            let head = self.buf.split_to(len).freeze();
            let mut response = Response::new(());
            *response.status_mut() = status;
            *response.version_mut() = version;
            *response.headers_mut() = header_map(&head, spans)?;
            return frame(method, response).map(Some);
        }
    }

    /// See [`Connection::take_whole_body`].
    pub(crate) fn whole_body(&mut self, framing: &mut Framing) -> Option<Option<Bytes>> {
        let data = match *framing {
            Framing::Done | Framing::Length(0) => None,
            Framing::Length(n) => {
                let n = usize::try_from(n).ok().filter(|&n| n <= self.buf.len())?;
                Some(self.buf.split_to(n).freeze())
            }
            Framing::Chunked(_) | Framing::UntilClose => return None,
        };
        *framing = Framing::Done;
        Some(data)
    }

    /// The next body frame the buffer holds, advancing `framing`.
    pub(crate) fn body(&mut self, framing: &mut Framing) -> Result<BodyStep, ExchangeError> {
        loop {
            match framing {
                Framing::Done => return Ok(BodyStep::End),
                Framing::Length(0) => {
                    *framing = Framing::Done;
                    return Ok(BodyStep::End);
                }
                Framing::Length(rest) => {
                    return Ok(self
                        .take_data(rest)
                        .map_or(BodyStep::NeedMore, |d| BodyStep::Frame(Frame::data(d))));
                }
                Framing::UntilClose if self.buf.is_empty() => return Ok(BodyStep::NeedMore),
                Framing::UntilClose => {
                    return Ok(BodyStep::Frame(Frame::data(self.buf.split().freeze())));
                }
                Framing::Chunked(state) => {
                    let step = self.chunked(state)?;
                    // Trailers end the body as the last chunk does: the
                    // server writing the response may not ask again.
                    if matches!(state, ChunkState::Finished) {
                        *framing = Framing::Done;
                    }
                    if let Some(step) = step {
                        return Ok(step);
                    }
                }
            }
        }
    }

    /// Up to `rest` buffered body bytes, counted off `rest`.
    pub(crate) fn take_data(&mut self, rest: &mut u64) -> Option<Bytes> {
        if self.buf.is_empty() {
            return None;
        }
        let n = usize::try_from(*rest).map_or(self.buf.len(), |r| r.min(self.buf.len()));
        *rest -= n as u64;
        Some(self.buf.split_to(n).freeze())
    }

    /// One step of chunked decoding: `Some` with what it gave, `None` when it
    /// only moved on (more may follow from the same buffer), `NeedMore` when
    /// the buffer ends inside a part that must be whole.
    pub(crate) fn chunked(
        &mut self,
        state: &mut ChunkState,
    ) -> Result<Option<BodyStep>, ExchangeError> {
        match state {
            ChunkState::Size => match httparse::parse_chunk_size(&self.buf) {
                Ok(httparse::Status::Complete((used, size))) => {
                    self.buf.advance(used);
                    *state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                    Ok(None)
                }
                Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD_BYTES => {
                    Ok(Some(BodyStep::NeedMore))
                }
                _ => Err(ExchangeError::Protocol("malformed chunk size")),
            },
            ChunkState::Data(rest) => {
                let data = self.take_data(rest);
                if *rest == 0 {
                    *state = ChunkState::DataEnd;
                }
                Ok(Some(data.map_or(BodyStep::NeedMore, |d| {
                    BodyStep::Frame(Frame::data(d))
                })))
            }
            ChunkState::DataEnd => {
                if self.buf.len() < 2 {
                    return Ok(Some(BodyStep::NeedMore));
                }
                if &self.buf[..2] != b"\r\n" {
                    return Err(ExchangeError::Protocol("chunk data longer than its size"));
                }
                self.buf.advance(2);
                *state = ChunkState::Size;
                Ok(None)
            }
            ChunkState::Trailers => {
                if self.buf.starts_with(b"\r\n") {
                    self.buf.advance(2);
                    *state = ChunkState::Finished;
                    return Ok(Some(BodyStep::End));
                }
                let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match httparse::parse_headers(&self.buf, &mut fields) {
                    Ok(httparse::Status::Complete((len, fields))) => {
                        let spans = field_spans(fields, &self.buf[..len])?;
                        let section = self.buf.split_to(len).freeze();
                        let trailers = header_map(&section, spans)?;
                        // The section's empty line ended the body too.
                        *state = ChunkState::Finished;
                        Ok(Some(BodyStep::Frame(Frame::trailers(trailers))))
                    }
                    Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD_BYTES => {
                        Ok(Some(BodyStep::NeedMore))
                    }
                    _ => Err(ExchangeError::Protocol("malformed trailer section")),
                }
            }
            ChunkState::Finished => Ok(Some(BodyStep::End)),
        }
    }
}

/// Parsed header fields: each name, and its value's start and end in the
/// buffer they were parsed from.
type FieldSpans = SmallVec<[(HeaderName, usize, usize); 16]>;

/// Each parsed field's name and where its value lies in `head`, the bytes
/// it was parsed from, so the values can share that buffer once it is
/// frozen instead of being copied.
fn field_spans(fields: &[httparse::Header<'_>], head: &[u8]) -> Result<FieldSpans, ExchangeError> {
    let base = head.as_ptr() as usize;
    fields
        .iter()
        .map(|f| {
            let name = HeaderName::from_bytes(f.name.as_bytes())
                .map_err(|_| ExchangeError::Protocol("invalid header name"))?;
            if f.value.is_empty() {
                return Ok((name, 0, 0));
            }
            let start = (f.value.as_ptr() as usize).wrapping_sub(base);
            let end = start
                .checked_add(f.value.len())
                .filter(|&end| end <= head.len())
                .ok_or(ExchangeError::Protocol("header value outside the head"))?;
            Ok((name, start, end))
        })
        .collect()
}

/// The header map of `fields`, each value a slice of `buf`.
fn header_map(buf: &Bytes, spans: FieldSpans) -> Result<HeaderMap, ExchangeError> {
    let mut map = HeaderMap::with_capacity(spans.len());
    for (name, start, end) in spans {
        let value = HeaderValue::from_maybe_shared(buf.slice(start..end))
            .map_err(|_| ExchangeError::Protocol("invalid header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Decides how the body of `response` (answering a `method` request)
/// arrives, and whether the connection stays open after it (RFC 9112 §6.3,
/// §9.3).
fn frame(method: &Method, mut response: Response<()>) -> Result<Head, ExchangeError> {
    let status = response.status();
    let mut keep_alive = keeps_alive(response.version(), response.headers());
    let headers = response.headers_mut();
    let framing = if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Done
    } else if headers.contains_key(http::header::TRANSFER_ENCODING) {
        // Transfer-Encoding overrides Content-Length, which must not reach
        // the client beside a body it no longer describes.
        headers.remove(http::header::CONTENT_LENGTH);
        if ends_in_chunked(headers) {
            Framing::Chunked(ChunkState::Size)
        } else {
            keep_alive = false;
            Framing::UntilClose
        }
    } else if let Some(len) = content_length(headers)? {
        Framing::Length(len)
    } else {
        keep_alive = false;
        Framing::UntilClose
    };
    Ok(Head {
        response,
        framing,
        keep_alive,
    })
}

/// Whether the server keeps the connection after this response: HTTP/1.1
/// unless it says `close`, HTTP/1.0 only when it says `keep-alive`.
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let (mut close, mut keep) = (false, false);
    for value in headers.get_all(http::header::CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            close |= token.eq_ignore_ascii_case(b"close");
            keep |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    !close && (version == Version::HTTP_11 || keep)
}

/// Whether the last transfer coding is chunked.
fn ends_in_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|v| v.as_bytes().rsplit(|&b| b == b',').next())
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// The Content-Length, if given: every value (also within lists) must be
/// the same decimal number, as RFC 9110 §8.6 requires.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ExchangeError> {
    let mut length = None;
    for value in headers.get_all(http::header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let item = item.trim_ascii();
            let n = std::str::from_utf8(item)
                .ok()
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or(ExchangeError::Protocol("invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(ExchangeError::Protocol("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What decoding one response gave.
    #[derive(Debug, Default)]
    struct Decoded {
        status: u16,
        headers: HeaderMap,
        keep_alive: bool,
        body: Vec<u8>,
        trailers: Option<HeaderMap>,
        ended: bool,
        surplus: bool,
    }

    /// Decodes `bytes` arriving `step` bytes at a time; the input ending is
    /// the connection closing.
    fn decode(method: &Method, bytes: &[u8], step: usize) -> Result<Decoded, ExchangeError> {
        let mut input = Input::default();
        let mut out = Decoded::default();
        let mut framing = None;
        for piece in bytes.chunks(step) {
            input.buf.extend_from_slice(piece);
            if framing.is_none() {
                let Some(head) = input.head(method)? else {
                    continue;
                };
                out.status = head.response.status().as_u16();
                out.headers = head.response.headers().clone();
                out.keep_alive = head.keep_alive;
                framing = Some(head.framing);
            }
            let framing = framing.as_mut().expect("framing set with the head");
            loop {
                match input.body(framing)? {
                    BodyStep::Frame(f) => match f.into_data() {
                        Ok(d) => out.body.extend_from_slice(&d),
                        Err(f) => out.trailers = f.into_trailers().ok(),
                    },
                    BodyStep::NeedMore => break,
                    BodyStep::End => {
                        out.ended = true;
                        break;
                    }
                }
            }
        }
        if matches!(framing, Some(Framing::UntilClose)) {
            out.ended = true;
        }
        out.surplus = input.has_surplus();
        Ok(out)
    }

    /// The same result however the bytes are split across reads.
    fn decode_every_way(method: &Method, bytes: &[u8]) -> Decoded {
        let whole = decode(method, bytes, bytes.len()).expect("decodes whole");
        for step in 1..bytes.len() {
            let split = decode(method, bytes, step).expect("decodes split");
            assert_eq!(split.body, whole.body, "step {step}");
            assert_eq!(split.trailers, whole.trailers, "step {step}");
            assert_eq!(split.ended, whole.ended, "step {step}");
            assert_eq!(split.status, whole.status, "step {step}");
        }
        whole
    }

    #[test]
    fn content_length_bodies_end_at_their_length() {
        let d = decode_every_way(
            &Method::GET,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
        );
        assert_eq!((d.status, &d.body[..], d.ended), (200, &b"hello"[..], true));
        assert_eq!(d.headers["x-a"], "1");
        assert!(d.keep_alive && !d.surplus);
        let extra = decode(
            &Method::GET,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiX",
            64,
        );
        assert!(
            extra.unwrap().surplus,
            "bytes past the body make the connection unusable"
        );
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers() {
        let d = decode_every_way(
            &Method::GET,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n\
              5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nGrpc-Status: 0\r\n\r\n",
        );
        assert_eq!(&d.body[..], b"hello, world");
        assert!(d.ended && d.keep_alive && !d.surplus);
        assert_eq!(d.trailers.expect("trailers")["grpc-status"], "0");
        assert!(
            !d.headers.contains_key("content-length"),
            "Content-Length beside chunked is dropped"
        );
        let plain = decode_every_way(
            &Method::GET,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        );
        assert_eq!(
            (&plain.body[..], plain.trailers.is_none(), plain.ended),
            (&b"abc"[..], true, true)
        );
    }

    #[test]
    fn bodies_without_length_run_until_the_connection_closes() {
        let d = decode_every_way(&Method::GET, b"HTTP/1.1 200 OK\r\n\r\nall of it");
        assert_eq!(&d.body[..], b"all of it");
        assert!(!d.keep_alive);
        let gzip_only = decode(
            &Method::GET,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz",
            64,
        )
        .unwrap();
        assert_eq!(
            (&gzip_only.body[..], gzip_only.keep_alive),
            (&b"xyz"[..], false)
        );
    }

    #[test]
    fn head_204_304_and_interim_responses_have_no_body() {
        let head = decode(
            &Method::HEAD,
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            64,
        )
        .unwrap();
        assert!(head.ended && head.body.is_empty() && !head.surplus);
        assert_eq!(
            head.headers["content-length"], "10",
            "HEAD keeps the length it describes"
        );
        for status in ["204 No Content", "304 Not Modified"] {
            let raw = format!("HTTP/1.1 {status}\r\nContent-Length: 3\r\n\r\n");
            let d = decode(&Method::GET, raw.as_bytes(), 64).unwrap();
            assert!(d.ended && d.body.is_empty(), "{status}");
        }
        let d = decode_every_way(
            &Method::GET,
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n\
              HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        );
        assert_eq!((d.status, &d.body[..]), (201, &b"ok"[..]));
    }

    #[test]
    fn connection_reuse_follows_version_and_connection_header() {
        let cases: [(&[u8], bool); 4] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true),
            (
                b"HTTP/1.1 200 OK\r\nConnection: foo, Close\r\nContent-Length: 0\r\n\r\n",
                false,
            ),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                true,
            ),
        ];
        for (raw, keep_alive) in cases {
            let d = decode(&Method::GET, raw, raw.len()).unwrap();
            assert_eq!(d.keep_alive, keep_alive, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn framing_errors_are_refused() {
        let bad: [&[u8]; 6] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
        ];
        for raw in bad {
            assert!(
                decode(&Method::GET, raw, raw.len()).is_err(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let endless = [
            b"HTTP/1.1 200 OK\r\nX: ".as_slice(),
            &[b'a'; MAX_HEAD_BYTES],
        ]
        .concat();
        assert!(
            decode(&Method::GET, &endless, 4096).is_err(),
            "an endless head is cut off"
        );
    }

    #[test]
    fn empty_header_values_are_kept() {
        let d = decode_every_way(
            &Method::GET,
            b"HTTP/1.1 200 OK\r\nX-Empty:\r\nX-Also: \r\nContent-Length: 1\r\n\r\n.",
        );
        assert_eq!(d.headers["x-empty"], "");
        assert_eq!(d.headers["x-also"], "");
        assert_eq!(&d.body[..], b".");
    }

    proptest::proptest! {
        /// Whatever an upstream sends, decoding ends in a result, never a panic.
        #[test]
        fn any_bytes_decode_without_panicking(
            start in 0usize..4,
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            step in 1usize..64,
        ) {
            let starts: [&[u8]; 4] = [
                b"",
                b"HTTP/1.1 200 OK\r\n",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            ];
            let _ = decode(&Method::GET, &[starts[start], &tail].concat(), step);
        }

        /// Any body in any chunks, its bytes split at any step, decodes to itself.
        #[test]
        fn chunked_bodies_decode_to_what_was_encoded(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 1..40), 0..8),
            step in 1usize..32,
        ) {
            let mut raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            for c in &chunks {
                raw.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                raw.extend_from_slice(c);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"0\r\n\r\n");
            let d = decode(&Method::GET, &raw, step).unwrap();
            proptest::prop_assert_eq!(d.body, chunks.concat());
            proptest::prop_assert!(d.ended && !d.surplus);
        }
    }
}

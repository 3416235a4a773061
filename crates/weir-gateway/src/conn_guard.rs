//! The deadlines hyper does not keep for a downstream connection.
//!
//! hyper-util's auto builder reads the first bytes of a connection to tell
//! HTTP/1.1 from h2c before hyper's own header timer starts, with no timer
//! of its own: a client that connects and sends nothing, or part of the h2
//! preface, was kept forever. And an open connection nobody uses holds a
//! socket and a task for as long as the client likes. [`Guarded`] counts the
//! bytes that cross the connection and notes when the protocol is known;
//! [`watch`] closes the connection when the first bytes do not decide the
//! protocol within [`GuardLimits::first_bytes_timeout`], or when nothing
//! crosses it for [`GuardLimits::idle_timeout`]. The decision is
//! [`Watch::observe`], a pure function of the observations and the time.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The h2 connection preface (RFC 9113 §3.4): what h2c with prior knowledge opens with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The two deadlines, configurable per gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardLimits {
    /// A connection's first bytes must tell HTTP/1.1 from h2 within this time.
    pub first_bytes_timeout: Duration,
    /// A connection across which no byte moves for this long is closed
    /// (Envoy's HTTP connection manager default: 1 hour).
    pub idle_timeout: Duration,
}

impl Default for GuardLimits {
    fn default() -> Self {
        Self {
            first_bytes_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
        }
    }
}

/// What the connection's IO has seen, shared with its watch.
#[derive(Debug, Default)]
pub struct Activity {
    bytes: AtomicU64,
    protocol_known: AtomicBool,
}

impl Activity {
    /// A fresh connection's.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// A connection with no protocol to tell (an L4 stream): only the idle
    /// timeout applies to it.
    pub fn opaque() -> Arc<Self> {
        let activity = Self::new();
        activity.protocol_known.store(true, Ordering::Relaxed);
        activity
    }

    fn moved(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Why a connection was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Its first bytes did not tell the protocol in time.
    FirstBytes,
    /// Nothing crossed it for the idle timeout.
    Idle,
}

/// How much of the h2 preface the first bytes matched, until the protocol is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff {
    /// This many bytes so far, all a prefix of the h2 preface.
    Undecided(usize),
    /// Enough is known: the whole preface, or a byte that is not in it.
    Known,
}

impl Sniff {
    /// The state after `bytes` more arrived.
    pub fn after(self, bytes: &[u8]) -> Self {
        let Self::Undecided(seen) = self else {
            return self;
        };
        let rest = &H2_PREFACE[seen..];
        let n = bytes.len().min(rest.len());
        if bytes[..n] != rest[..n] || seen + n == H2_PREFACE.len() {
            Self::Known
        } else {
            Self::Undecided(seen + n)
        }
    }
}

/// A connection's IO, counting what crosses it for [`watch`].
pub struct Guarded<IO> {
    inner: IO,
    activity: Arc<Activity>,
    sniff: Sniff,
}

impl<IO> Guarded<IO> {
    /// Wraps `inner`, reporting to `activity`.
    pub fn new(inner: IO, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            sniff: Sniff::Undecided(0),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.activity.moved(n);
            if self.sniff != Sniff::Known {
                self.sniff = self.sniff.after(&buf.filled()[before..]);
                if self.sniff == Sniff::Known {
                    self.activity.protocol_known.store(true, Ordering::Relaxed);
                }
            }
        }
        poll
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.activity.moved(n);
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll {
            self.activity.moved(n);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The watch's memory of one connection: when it opened, the byte count
/// last seen and when that count last changed.
#[derive(Clone, Copy, Debug)]
pub struct Watch {
    opened: Instant,
    bytes: u64,
    changed: Instant,
}

impl Watch {
    /// A connection opened at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            opened: now,
            bytes: 0,
            changed: now,
        }
    }

    /// Whether to close the connection at `now`, given the bytes moved so
    /// far and whether its protocol is known.
    pub fn observe(
        &mut self,
        now: Instant,
        bytes: u64,
        protocol_known: bool,
        limits: &GuardLimits,
    ) -> Option<CloseReason> {
        if bytes != self.bytes {
            self.bytes = bytes;
            self.changed = now;
        }
        if !protocol_known && now.duration_since(self.opened) >= limits.first_bytes_timeout {
            return Some(CloseReason::FirstBytes);
        }
        (now.duration_since(self.changed) >= limits.idle_timeout).then_some(CloseReason::Idle)
    }

    /// When to look next: the first-bytes deadline while the protocol is
    /// unknown, else an eighth of the idle timeout from now, so an idle
    /// connection closes within 1⅛ idle timeouts at one timer per connection
    /// (not one per byte moved).
    pub fn next_look(&self, now: Instant, protocol_known: bool, limits: &GuardLimits) -> Instant {
        let idle_step = now + (limits.idle_timeout / 8).max(Duration::from_millis(1));
        if protocol_known {
            idle_step
        } else {
            idle_step.min(self.opened + limits.first_bytes_timeout)
        }
    }
}

/// Resolves, with the reason, when the connection should be closed.
pub async fn watch(activity: Arc<Activity>, limits: GuardLimits) -> CloseReason {
    let mut state = Watch::new(Instant::now());
    loop {
        let known = activity.protocol_known.load(Ordering::Relaxed);
        tokio::time::sleep_until(state.next_look(Instant::now(), known, &limits)).await;
        let known = activity.protocol_known.load(Ordering::Relaxed);
        let bytes = activity.bytes.load(Ordering::Relaxed);
        if let Some(reason) = state.observe(Instant::now(), bytes, known, &limits) {
            return reason;
        }
    }
}

/// Watches `connection` (a task serving the connection that `activity`
/// counts) and aborts it — closing its socket — when [`watch`] says so;
/// returns when either ends. Run as a task of its own, so the connection's
/// task does no work for its deadlines.
pub async fn enforce(
    activity: Arc<Activity>,
    limits: GuardLimits,
    mut connection: tokio::task::JoinHandle<()>,
) {
    tokio::select! {
        _ = &mut connection => {}
        _ = watch(activity, limits) => connection.abort(),
    }
}

/// How long the accept loop waits after an accept error: connection-level
/// errors (the client gave up before the accept) not at all; anything else
/// (out of file descriptors, buffers or memory) is the machine's state and
/// retrying at once would spin, so wait — as hyper's and Go's servers do.
pub fn accept_backoff(error: &io::Error) -> Option<Duration> {
    match error.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionRefused
        | io::ErrorKind::Interrupted
        | io::ErrorKind::WouldBlock => None,
        _ => Some(Duration::from_millis(100)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_decide_the_protocol() {
        let start = Sniff::Undecided(0);
        for (chunks, expected) in [
            (&[&b""[..]][..], Sniff::Undecided(0)),
            (&[b"PRI * HT"], Sniff::Undecided(8)),
            (&[b"PRI * HT", b"TP/2.0\r\n"], Sniff::Undecided(16)),
            (&[H2_PREFACE], Sniff::Known),
            (&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00"], Sniff::Known),
            (&[b"GET / HTTP/1.1\r\n"], Sniff::Known),
            (&[b"P"], Sniff::Undecided(1)),
            (&[b"P", b"OST"], Sniff::Known),
            (&[b"PRI * HTTP/1.1"], Sniff::Known),
        ] {
            let end = chunks.iter().fold(start, |s, c| s.after(c));
            assert_eq!(end, expected, "{chunks:?}");
        }
        // Byte by byte, the preface is known exactly at its last byte.
        let mut s = start;
        for (i, b) in H2_PREFACE.iter().enumerate() {
            s = s.after(&[*b]);
            let expected = if i + 1 == H2_PREFACE.len() {
                Sniff::Known
            } else {
                Sniff::Undecided(i + 1)
            };
            assert_eq!(s, expected);
        }
    }

    #[test]
    fn connections_close_on_silence_and_on_undecided_first_bytes() {
        let limits = GuardLimits {
            first_bytes_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        };
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Observations as (second, bytes, protocol known), and the verdict at the last.
        type Case<'a> = (&'a [(u64, u64, bool)], Option<CloseReason>);
        let cases: &[Case] = &[
            (&[(9, 0, false)], None),
            (&[(10, 0, false)], Some(CloseReason::FirstBytes)),
            // Part of the h2 preface, then nothing: still undecided at 10 s.
            (
                &[(1, 8, false), (10, 8, false)],
                Some(CloseReason::FirstBytes),
            ),
            (&[(1, 18, true), (10, 18, true)], None),
            (&[(1, 18, true), (60, 18, true)], None),
            (&[(1, 18, true), (61, 18, true)], Some(CloseReason::Idle)),
            // Traffic keeps it open; silence after the last byte counts.
            (&[(1, 18, true), (50, 400, true), (100, 400, true)], None),
            (
                &[(1, 18, true), (50, 400, true), (110, 400, true)],
                Some(CloseReason::Idle),
            ),
        ];
        for (observations, expected) in cases {
            let mut watch = Watch::new(t0);
            let mut verdict = None;
            for &(s, bytes, known) in *observations {
                verdict = watch.observe(at(s), bytes, known, &limits);
            }
            assert_eq!(verdict, *expected, "{observations:?}");
        }
    }

    #[test]
    fn the_watch_looks_at_the_first_bytes_deadline_then_every_eighth_of_the_idle_timeout() {
        let limits = GuardLimits {
            first_bytes_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
        };
        let t0 = Instant::now();
        let watch = Watch::new(t0);
        assert_eq!(
            watch.next_look(t0, false, &limits),
            t0 + Duration::from_secs(10)
        );
        assert_eq!(
            watch.next_look(t0, true, &limits),
            t0 + Duration::from_secs(450)
        );
    }

    #[test]
    fn accept_errors_of_the_machine_back_off_and_those_of_one_client_do_not() {
        for (kind, waits) in [
            (io::ErrorKind::ConnectionAborted, false),
            (io::ErrorKind::ConnectionReset, false),
            (io::ErrorKind::Interrupted, false),
            (io::ErrorKind::Other, true),
            (io::ErrorKind::OutOfMemory, true),
        ] {
            assert_eq!(
                accept_backoff(&io::Error::from(kind)).is_some(),
                waits,
                "{kind:?}"
            );
        }
        // EMFILE: too many open files.
        assert!(accept_backoff(&io::Error::from_raw_os_error(24)).is_some());
    }
}

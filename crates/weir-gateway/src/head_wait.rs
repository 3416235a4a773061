//! The wait for a response head and what bounds it: the route's or the
//! try's deadline, ingress-nginx's read timeout, or Envoy's stream idle
//! timeout on the connection's one clock ([`HeadTimer`]). One await over
//! the send and its bound, so the request's future holds the send once.

use std::pin::Pin;
use std::task::Poll;

use tokio::time::Instant;

use crate::head_timer::HeadTimer;

/// What bounds one try's wait for its response head.
pub(crate) enum Bound {
    /// Nothing (a request still sending its body: the connection's idle
    /// timeout).
    None,
    /// The route's or the try's deadline, or ingress-nginx's read timeout.
    Timer(Pin<Box<tokio::time::Sleep>>),
    /// The stream idle timeout over h2, whose streams wait side by side.
    IdleTimer(Pin<Box<tokio::time::Sleep>>),
    /// The stream idle timeout over HTTP/1.1, on the connection's clock.
    IdleClock(Instant),
}

/// The response head `sent` gives, or `Err(())` once `bound` passes first:
/// one await over both, so the request's future holds the send once.
pub(crate) async fn wait_for_head<F: Future>(
    clock: &HeadTimer,
    sent: F,
    mut bound: Bound,
) -> Result<F::Output, ()> {
    let mut sent = std::pin::pin!(sent);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = sent.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match &mut bound {
            Bound::None => Poll::Pending,
            Bound::Timer(sleep) | Bound::IdleTimer(sleep) => sleep.as_mut().poll(cx).map(Err),
            Bound::IdleClock(at) => clock.poll_deadline(*at, cx).map(Err),
        }
    })
    .await
}

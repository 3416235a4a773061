//! A connection's one clock: a `hyper::rt::Timer` for the request-head
//! deadline that keeps one tokio timer per connection instead of one per
//! request, and the same timer for the wait for a response head
//! ([`HeadTimer::poll_deadline`], the stream idle timeout).
//!
//! hyper asks its timer for a fresh sleep every time it starts reading a
//! request head and drops it once the head is in. With tokio's timer that is
//! a heap allocation plus an insert into and a removal from the runtime's
//! timer wheel for every request (0.6 % of the gateway's user-space
//! instructions per proxied request, bench/README.md). Here each deadline is
//! a small handle onto its connection's one armed timer: a deadline later
//! than the armed one leaves the timer alone, and when the timer fires
//! early, the pending deadline re-arms it for itself. A keep-alive
//! connection thus touches the timer wheel about once per timeout period,
//! and the cut-off still comes exactly at each head's own deadline.
//!
//! The armed timer wakes the task that polled it last, so its deadlines are
//! for one task at a time: an HTTP/1.1 connection's, whose requests and
//! heads come one after another (h2's concurrent streams keep a timer
//! each).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

/// The timer a connection's deadlines lean on.
type Armed = Mutex<Option<Pin<Box<tokio::time::Sleep>>>>;

/// One connection's clock; give each connection its own.
#[derive(Clone, Default)]
pub struct HeadTimer {
    armed: Arc<Armed>,
}

impl HeadTimer {
    /// A clock with nothing armed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ready once `at` has passed; until then the polling task is woken
    /// when it does. For a wait that `poll`s its work and this together
    /// (the wait for a response head).
    pub fn poll_deadline(&self, at: tokio::time::Instant, cx: &mut Context<'_>) -> Poll<()> {
        poll_deadline(&self.armed, at, cx)
    }
}

#[expect(
    clippy::disallowed_types,
    reason = "hyper's Timer trait speaks std's Instant; deadlines become tokio's at once"
)]
impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline {
            at: tokio::time::Instant::from_std(deadline),
            armed: self.armed.clone(),
        })
    }

    /// tokio's clock, so that tests with paused time see consistent deadlines.
    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// One head's deadline: ready once `at` has passed.
struct Deadline {
    at: tokio::time::Instant,
    armed: Arc<Armed>,
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        poll_deadline(&self.armed, self.at, cx)
    }
}

/// Ready once `at` has passed, leaning on the connection's armed timer.
fn poll_deadline(armed: &Armed, at: tokio::time::Instant, cx: &mut Context<'_>) -> Poll<()> {
    let mut armed = armed.lock().unwrap_or_else(PoisonError::into_inner);
    let sleep = armed.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
    if sleep.deadline() > at {
        sleep.as_mut().reset(at);
    }
    // The armed timer is due no later than this deadline.
    if sleep.as_mut().poll(cx).is_pending() {
        return Poll::Pending;
    }
    if sleep.deadline() == at {
        return Poll::Ready(());
    }
    // It fired for an earlier deadline: arm it for this one.
    sleep.as_mut().reset(at);
    sleep.as_mut().poll(cx)
}

impl hyper::rt::Sleep for Deadline {}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;
    use std::future::poll_fn;

    fn is_ready(sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>) -> impl Future<Output = bool> {
        poll_fn(move |cx| Poll::Ready(sleep.as_mut().poll(cx).is_ready()))
    }

    /// A head that arrives in time: its deadline is armed, found pending,
    /// and dropped.
    async fn head_in_time(timer: &HeadTimer, within: Duration) {
        let mut sleep = timer.sleep(within);
        assert!(!is_ready(&mut sleep).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_is_ready_exactly_when_it_passes() {
        let timer = HeadTimer::new();
        let started = tokio::time::Instant::now();
        let mut sleep = timer.sleep(Duration::from_secs(10));
        assert!(!is_ready(&mut sleep).await);
        sleep.as_mut().await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_head_on_the_same_connection_gets_its_own_full_deadline() {
        let timer = HeadTimer::new();
        let started = tokio::time::Instant::now();
        // The first head arms the timer for t+10 s and arrives in time.
        head_in_time(&timer, Duration::from_secs(10)).await;
        // The next head starts at t+4 s: due at t+14 s, not at t+10 s.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let mut second = timer.sleep(Duration::from_secs(10));
        assert!(!is_ready(&mut second).await);
        second.as_mut().await;
        assert_eq!(started.elapsed(), Duration::from_secs(14));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_armed_timer_forward() {
        let timer = HeadTimer::new();
        let started = tokio::time::Instant::now();
        head_in_time(&timer, Duration::from_secs(60)).await;
        let mut short = timer.sleep(Duration::from_secs(1));
        short.as_mut().await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_for_an_answer_is_cut_off_exactly_at_its_own_deadline() {
        let timer = HeadTimer::new();
        let started = tokio::time::Instant::now();
        let timer = &timer;
        let wait = |at| std::future::poll_fn(move |cx| timer.poll_deadline(at, cx));
        // A first wait arms the timer for t+300 s and is answered in time.
        let first = started + Duration::from_secs(300);
        assert!(
            std::future::poll_fn(|cx| Poll::Ready(timer.poll_deadline(first, cx).is_pending()))
                .await
        );
        // The next leans on the same armed timer, and is cut off at its
        // own deadline, not the first's.
        tokio::time::sleep(Duration::from_secs(9)).await;
        wait(tokio::time::Instant::now() + Duration::from_secs(300)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(309));
    }
}

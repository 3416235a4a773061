//! Telling a listener's open connections to finish, at a cost of one atomic
//! load and one waker registration each time a connection wakes.
//!
//! A `watch` channel (or hyper-util's `GracefulShutdown`, built on one)
//! would do the job, but every poll of its change future takes the channel's
//! waiter lock; a proxied request wakes its connection several times, so that
//! was about 1 % of the gateway's user-space instructions per request
//! (bench/README.md). Here each connection keeps its own `AtomicWaker`, and
//! [`Drain::begin`] wakes them all once.

use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use atomic_waker::AtomicWaker;
use hyper_util::server::graceful::GracefulConnection;

/// One listener's connections and whether they should finish.
#[derive(Default)]
pub struct Drain {
    draining: AtomicBool,
    next_id: AtomicU64,
    connections: Mutex<HashMap<u64, Arc<AtomicWaker>>>,
}

impl Drain {
    /// Nothing draining yet.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Asks every connection, open now or opened later, to finish its
    /// current request and close.
    pub fn begin(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for waker in connections.values() {
            waker.wake();
        }
    }

    /// Runs `conn` to its end, shutting it down gracefully once
    /// [`Drain::begin`] is called.
    pub async fn run<C: GracefulConnection>(self: &Arc<Self>, conn: C) -> Result<(), C::Error> {
        let registration = Registration::new(self);
        let mut conn = pin!(conn);
        let mut shutting_down = false;
        poll_fn(|cx| {
            if !shutting_down {
                // Register before looking, so a `begin` in between still wakes us.
                registration.waker.register(cx.waker());
                if self.draining.load(Ordering::SeqCst) {
                    conn.as_mut().graceful_shutdown();
                    shutting_down = true;
                }
            }
            conn.as_mut().poll(cx)
        })
        .await
    }
}

/// A connection's place in its [`Drain`], removed when the connection ends.
struct Registration<'a> {
    drain: &'a Drain,
    id: u64,
    waker: Arc<AtomicWaker>,
}

impl<'a> Registration<'a> {
    fn new(drain: &'a Drain) -> Self {
        let id = drain.next_id.fetch_add(1, Ordering::Relaxed);
        let waker = Arc::new(AtomicWaker::new());
        drain
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, waker.clone());
        Self { drain, id, waker }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.drain
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

//! How many connections the Service proxies ([`crate::service_proxy`])
//! may hold: caps from the open-files limit with a reserve, the place each
//! connection holds under them, and the count of those refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many proxied connections the Service listeners may hold, in total
/// and at one Service address, so that clients of Services cannot take
/// the descriptors the node needs: each costs two (client and endpoint),
/// and a reserve stays for what must never starve — probes, the admin API,
/// the gateway, the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Across every Service listener.
    pub total: usize,
    /// At one Service address.
    pub per_address: usize,
}

impl ConnectionCaps {
    /// From the open-files limit: a quarter of it (at least 256) in
    /// reserve, half of the rest's pairs in total, half of those per
    /// address (one Service cannot take them all).
    pub fn from_open_files(limit: u64) -> Self {
        let reserve = (limit / 4).max(256);
        let total = usize::try_from(limit.saturating_sub(reserve) / 2).unwrap_or(usize::MAX);
        Self {
            total,
            per_address: (total / 2).max(1),
        }
    }

    /// From this process's open-files limit (its soft limit).
    pub fn of_this_process() -> Self {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(1 << 20);
        Self::from_open_files(limit)
    }
}

/// One proxied connection's place under the caps, given back when dropped.
pub(crate) struct Slot {
    total: Arc<AtomicUsize>,
    here: Arc<AtomicUsize>,
}

impl Slot {
    /// A place, if both counts are below their caps.
    pub(crate) fn take(
        total: &Arc<AtomicUsize>,
        here: &Arc<AtomicUsize>,
        caps: ConnectionCaps,
    ) -> Option<Self> {
        let slot = Self {
            total: total.clone(),
            here: here.clone(),
        };
        let over_total = total.fetch_add(1, Ordering::AcqRel) >= caps.total;
        let over_here = here.fetch_add(1, Ordering::AcqRel) >= caps.per_address;
        // Dropped over a cap, it gives both back.
        (!over_total && !over_here).then_some(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.total.fetch_sub(1, Ordering::AcqRel);
        self.here.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What every Service listener of a gateway shares: the connections held
/// across them, and the count of those refused at a cap.
#[derive(Clone, Debug, Default)]
pub struct SharedCounts {
    /// Connections held now.
    pub open: Arc<AtomicUsize>,
    /// Connections refused at a cap (`weir_service_connections_refused`).
    pub refused: prometheus_client::metrics::counter::Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_leave_a_reserve_and_share_the_rest() {
        let rows = [
            // (open-files limit, total, per address)
            (1024, 384, 192),
            (20_000, 7_500, 3_750),
            (512, 128, 64),
            (256, 0, 1),
            (100, 0, 1),
        ];
        for (limit, total, per_address) in rows {
            assert_eq!(
                ConnectionCaps::from_open_files(limit),
                ConnectionCaps { total, per_address },
                "{limit}"
            );
        }
    }

    #[test]
    fn a_slot_is_had_below_both_caps_and_given_back() {
        let caps = ConnectionCaps {
            total: 3,
            per_address: 2,
        };
        let (total, a, b) = (Arc::default(), Arc::default(), Arc::default());
        let a1 = Slot::take(&total, &a, caps).unwrap();
        let _a2 = Slot::take(&total, &a, caps).unwrap();
        assert!(Slot::take(&total, &a, caps).is_none(), "per address");
        let _b1 = Slot::take(&total, &b, caps).unwrap();
        assert!(Slot::take(&total, &b, caps).is_none(), "in total");
        drop(a1);
        assert!(Slot::take(&total, &b, caps).is_some(), "given back");
        assert_eq!(total.load(Ordering::Relaxed), 2);
    }
}

//! Choosing an endpoint inside a cluster (a Service subset and port), by the
//! DestinationRule's `loadBalancer`: ROUND_ROBIN, LEAST_REQUEST (two random
//! choices, Envoy's default), RANDOM, or consistent hashing (ring hash or
//! Maglev) of a header, cookie, source IP or query parameter. As in Istio,
//! hashing picks an endpoint within the subset the split already chose.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::HeaderMap;
use http::header::{COOKIE, HeaderName};

use crate::endpoint::UpstreamEndpoint;

/// What a consistent hash is computed from.
#[derive(Clone, Debug)]
pub enum HashKey {
    /// A request header's value.
    Header(HeaderName),
    /// A cookie; generated (and set on the response) when absent and `ttl`
    /// is set, `Some(0)` making it a session cookie.
    Cookie {
        /// Cookie name.
        name: String,
        /// Path for a generated cookie.
        path: Option<String>,
        /// Generate when absent with this lifetime.
        ttl: Option<Duration>,
    },
    /// The client's IP address.
    SourceIp,
    /// A query parameter's value.
    QueryParam(String),
}

/// The load-balancing policy of a cluster.
#[derive(Debug)]
pub enum Policy {
    /// In turn.
    RoundRobin(AtomicUsize),
    /// The less busy of two random endpoints.
    LeastRequest,
    /// Uniformly at random.
    Random,
    /// Consistent hashing over a ring of `(hash, endpoint)` points.
    RingHash {
        /// What to hash.
        key: HashKey,
        /// Sorted ring points.
        ring: Vec<(u64, u32)>,
    },
    /// Consistent hashing with a Maglev lookup table.
    Maglev {
        /// What to hash.
        key: HashKey,
        /// Endpoint index per slot.
        table: Vec<u32>,
    },
}

/// The request attributes a hash may need.
pub struct HashInput<'a> {
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The client's address.
    pub client: IpAddr,
    /// The query string.
    pub query: Option<&'a str>,
}

/// An endpoint pick, and a cookie to set when one was generated.
pub struct Pick {
    /// Index into the cluster's endpoints.
    pub index: usize,
    /// `Set-Cookie` value for a generated hash cookie.
    pub set_cookie: Option<String>,
}

fn hash_of(value: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

impl Policy {
    /// Builds a ring of at least `min_size` points (Envoy's default 1024).
    pub fn ring_hash(key: HashKey, endpoints: &[Arc<UpstreamEndpoint>], min_size: u64) -> Self {
        let mut ring = Vec::new();
        if !endpoints.is_empty() {
            let per = min_size.div_ceil(endpoints.len() as u64).max(1);
            for (i, e) in endpoints.iter().enumerate() {
                for replica in 0..per {
                    ring.push((hash_of((e.addr, replica)), i as u32));
                }
            }
            ring.sort_unstable();
        }
        Policy::RingHash { key, ring }
    }

    /// Builds a Maglev table of `size` slots (a prime; Envoy's default 65537).
    pub fn maglev(key: HashKey, endpoints: &[Arc<UpstreamEndpoint>], size: u64) -> Self {
        let m = size as usize;
        let n = endpoints.len();
        let mut table = vec![u32::MAX; if n == 0 { 0 } else { m }];
        if n > 0 {
            let perms: Vec<(usize, usize)> = endpoints
                .iter()
                .map(|e| {
                    let offset = (hash_of((e.addr, "offset")) % size) as usize;
                    let skip = (hash_of((e.addr, "skip")) % (size - 1) + 1) as usize;
                    (offset, skip)
                })
                .collect();
            let mut next = vec![0usize; n];
            let mut filled = 0;
            'fill: loop {
                for (i, &(offset, skip)) in perms.iter().enumerate() {
                    let mut slot = (offset + next[i] * skip) % m;
                    while table[slot] != u32::MAX {
                        next[i] += 1;
                        slot = (offset + next[i] * skip) % m;
                    }
                    table[slot] = i as u32;
                    next[i] += 1;
                    filled += 1;
                    if filled == m {
                        break 'fill;
                    }
                }
            }
        }
        Policy::Maglev { key, table }
    }

    /// Picks an endpoint among `endpoints` (non-empty).
    pub fn pick(&self, endpoints: &[Arc<UpstreamEndpoint>], input: &HashInput<'_>) -> Pick {
        let n = endpoints.len();
        let plain = |index| Pick {
            index,
            set_cookie: None,
        };
        match self {
            Policy::RoundRobin(next) => plain(next.fetch_add(1, Ordering::Relaxed) % n),
            Policy::Random => plain(fastrand::usize(..n)),
            Policy::LeastRequest => {
                if n == 1 {
                    return plain(0);
                }
                let a = fastrand::usize(..n);
                let b = (a + 1 + fastrand::usize(..n - 1)) % n;
                let load = |i: usize| endpoints[i].active.load(Ordering::Relaxed);
                plain(if load(b) < load(a) { b } else { a })
            }
            Policy::RingHash { key, ring } => {
                let (hash, set_cookie) = key_hash(key, input);
                let at = ring.partition_point(|&(h, _)| h < hash) % ring.len();
                Pick {
                    index: ring[at].1 as usize,
                    set_cookie,
                }
            }
            Policy::Maglev { key, table } => {
                let (hash, set_cookie) = key_hash(key, input);
                Pick {
                    index: table[(hash % table.len() as u64) as usize] as usize,
                    set_cookie,
                }
            }
        }
    }
}

/// The hash of the request's key; a missing key hashes a random value (a
/// random endpoint), except a cookie with a TTL, which is generated and
/// returned for `Set-Cookie` so the client sticks from then on.
fn key_hash(key: &HashKey, input: &HashInput<'_>) -> (u64, Option<String>) {
    match key {
        HashKey::Header(name) => match input.headers.get(name) {
            Some(v) => (hash_of(v.as_bytes()), None),
            None => (fastrand::u64(..), None),
        },
        HashKey::SourceIp => (hash_of(input.client), None),
        HashKey::QueryParam(name) => match crate::matcher::query_value(input.query, name) {
            Some(v) => (hash_of(v.as_bytes()), None),
            None => (fastrand::u64(..), None),
        },
        HashKey::Cookie { name, path, ttl } => match cookie_value(input.headers, name) {
            Some(v) => (hash_of(v.as_bytes()), None),
            None => {
                let value = format!("{:016x}", fastrand::u64(..));
                let hash = hash_of(value.as_bytes());
                let set = ttl.map(|ttl| set_cookie(name, &value, path.as_deref(), ttl));
                (hash, set)
            }
        },
    }
}

/// A `Set-Cookie` value as Envoy writes it for a generated hash cookie.
pub fn set_cookie(name: &str, value: &str, path: Option<&str>, ttl: Duration) -> String {
    let mut cookie = format!("{name}=\"{value}\"");
    if !ttl.is_zero() {
        cookie.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if let Some(path) = path {
        cookie.push_str(&format!("; Path={path}"));
    }
    cookie.push_str("; HttpOnly");
    cookie
}

/// The value of cookie `name` in the request's Cookie headers (quotes removed).
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"'))
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    use super::*;
    use http::HeaderValue;

    fn endpoints(n: u8) -> Vec<Arc<UpstreamEndpoint>> {
        (0..n)
            .map(|i| {
                Arc::new(UpstreamEndpoint::new(
                    SocketAddr::from(([127, 0, 0, 10 + i], 8080)),
                    format!("pod-{i}"),
                    "pods".into(),
                    BTreeMap::new(),
                ))
            })
            .collect()
    }

    fn input(headers: &HeaderMap) -> HashInput<'_> {
        HashInput {
            headers,
            client: IpAddr::from([127, 0, 0, 1]),
            query: None,
        }
    }

    #[test]
    fn round_robin_cycles() {
        let eps = endpoints(3);
        let p = Policy::RoundRobin(AtomicUsize::new(0));
        let h = HeaderMap::new();
        let picks: Vec<usize> = (0..6).map(|_| p.pick(&eps, &input(&h)).index).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_request_avoids_the_busy_endpoint() {
        let eps = endpoints(2);
        eps[0].active.store(100, Ordering::Relaxed);
        let h = HeaderMap::new();
        assert!((0..50).all(|_| Policy::LeastRequest.pick(&eps, &input(&h)).index == 1));
    }

    #[test]
    fn hashing_is_sticky_and_spreads() {
        let eps = endpoints(4);
        for policy in [
            Policy::ring_hash(
                HashKey::Header(HeaderName::from_static("x-user")),
                &eps,
                1024,
            ),
            Policy::maglev(
                HashKey::Header(HeaderName::from_static("x-user")),
                &eps,
                65537,
            ),
        ] {
            let mut seen = std::collections::HashSet::new();
            for user in 0..64 {
                let mut h = HeaderMap::new();
                h.insert(
                    "x-user",
                    HeaderValue::from_str(&format!("user-{user}")).unwrap(),
                );
                let first = policy.pick(&eps, &input(&h)).index;
                assert!((0..5).all(|_| policy.pick(&eps, &input(&h)).index == first));
                seen.insert(first);
            }
            assert_eq!(seen.len(), 4, "64 users should reach all 4 endpoints");
        }
    }

    #[test]
    fn a_missing_cookie_with_ttl_is_generated_and_then_sticks() {
        let eps = endpoints(3);
        let key = HashKey::Cookie {
            name: "user".into(),
            path: None,
            ttl: Some(Duration::ZERO),
        };
        let policy = Policy::ring_hash(key, &eps, 1024);
        let pick = policy.pick(&eps, &input(&HeaderMap::new()));
        let cookie = pick.set_cookie.expect("generated cookie");
        assert!(cookie.starts_with("user=\""), "{cookie}");
        assert!(
            !cookie.contains("Max-Age"),
            "ttl 0s is a session cookie: {cookie}"
        );
        let value = cookie.split('"').nth(1).unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("a=b; user=\"{value}\"")).unwrap(),
        );
        for _ in 0..5 {
            let again = policy.pick(&eps, &input(&h));
            assert_eq!(again.index, pick.index);
            assert!(again.set_cookie.is_none());
        }
    }
}

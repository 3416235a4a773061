//! Istio's retry policy as Envoy applies it: which failures `retryOn`
//! covers ([`should_retry`]) and the backoff between attempts. Pure: the
//! request path asks, with the failure it saw.

use std::time::Duration;

/// Which failures are retried.
#[derive(Clone, Debug, Default)]
pub struct RetryOn {
    /// Connection could not be made.
    pub connect_failure: bool,
    /// Any 5xx answer (and resets).
    pub five_xx: bool,
    /// 502, 503, 504.
    pub gateway_error: bool,
    /// The upstream reset the connection.
    pub reset: bool,
    /// 503 (Envoy's `unavailable` for gRPC; weir treats an HTTP 503 so too).
    pub unavailable: bool,
    /// These statuses.
    pub statuses: Vec<u16>,
}

/// A rule's retry policy.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Timeout per attempt.
    pub per_try_timeout: Option<Duration>,
    /// What is retried.
    pub on: RetryOn,
    /// Base backoff between attempts.
    pub backoff: Duration,
    /// Whether a retry avoids hosts already tried.
    pub ignore_previous_hosts: bool,
}

impl RetryPolicy {
    /// Istio's default when a route sets no `retries`: 2 attempts on
    /// connect-failure, refused-stream, unavailable, cancelled.
    pub fn istio_default() -> Self {
        Self {
            attempts: 2,
            per_try_timeout: None,
            on: RetryOn {
                connect_failure: true,
                reset: false,
                unavailable: true,
                ..RetryOn::default()
            },
            backoff: Duration::from_millis(25),
            ignore_previous_hosts: true,
        }
    }
}

impl RetryOn {
    /// Parses `retryOn`: Envoy's conditions, comma-separated, and HTTP
    /// status codes (Istio's retriable status codes). Unknown words
    /// (gRPC conditions, `retriable-4xx`, …) select nothing here.
    pub fn parse(text: Option<&str>) -> Self {
        let mut on = RetryOn::default();
        for token in text.unwrap_or("").split(',').map(str::trim) {
            match token {
                "connect-failure" => on.connect_failure = true,
                "5xx" => on.five_xx = true,
                "gateway-error" => on.gateway_error = true,
                "reset" | "reset-before-request" | "refused-stream" => on.reset = true,
                "unavailable" => on.unavailable = true,
                code => {
                    if let Ok(c) = code.parse() {
                        on.statuses.push(c);
                    }
                }
            }
        }
        on
    }
}

/// What went wrong with one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The upstream answered with this status.
    Status(u16),
    /// No connection could be made.
    ConnectFailure,
    /// The connection was reset or closed before a response.
    Reset,
    /// The per-try timeout fired (the route's own timeout is never retried).
    PerTryTimeout,
}

/// Whether `retryOn` covers a failure, as Envoy's router decides:
/// `5xx` covers every 5xx status, resets and per-try timeouts;
/// `gateway-error` 502–504 and per-try timeouts; `connect-failure` failed
/// connects; `reset` resets; `unavailable` a 503; listed codes themselves.
#[inline]
pub fn should_retry(on: &RetryOn, failure: Failure) -> bool {
    match failure {
        Failure::Status(code) => {
            (on.five_xx && code >= 500)
                || (on.gateway_error && matches!(code, 502..=504))
                || (on.unavailable && code == 503)
                || on.statuses.contains(&code)
        }
        Failure::ConnectFailure => on.connect_failure,
        Failure::Reset => on.reset || on.five_xx,
        Failure::PerTryTimeout => on.five_xx || on.gateway_error,
    }
}

/// Envoy's retry backoff: a random time up to base × 2^(attempt−1), capped at 10 × base.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let cap = base.saturating_mul(10);
    let ceiling = base
        .saturating_mul(1 << (attempt.saturating_sub(1)).min(10))
        .min(cap);
    Duration::from_nanos(fastrand::u64(..=ceiling.as_nanos() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_on_conditions_as_envoy_applies_them() {
        use Failure::*;
        let cases: &[(&str, Failure, bool)] = &[
            ("5xx", Status(500), true),
            ("5xx", Status(503), true),
            ("5xx", Status(404), false),
            ("5xx", Reset, true),
            ("5xx", PerTryTimeout, true),
            ("5xx", ConnectFailure, false),
            ("gateway-error", Status(500), false),
            ("gateway-error", Status(502), true),
            ("gateway-error", Status(503), true),
            ("gateway-error", Status(504), true),
            ("gateway-error", PerTryTimeout, true),
            ("gateway-error", Reset, false),
            ("connect-failure", ConnectFailure, true),
            ("connect-failure", Status(503), false),
            ("reset", Reset, true),
            ("reset", Status(500), false),
            ("refused-stream", Reset, true),
            ("reset-before-request", Reset, true),
            ("unavailable", Status(503), true),
            ("unavailable", Status(502), false),
            ("retriable-4xx", Status(409), false),
            ("409", Status(409), true),
            ("5xx,409", Status(409), true),
            (" connect-failure , 5xx ", Status(501), true),
            (" connect-failure , 5xx ", ConnectFailure, true),
            ("", Status(503), false),
            ("", ConnectFailure, false),
        ];
        for &(text, failure, expected) in cases {
            let on = RetryOn::parse(Some(text));
            assert_eq!(should_retry(&on, failure), expected, "{text:?} {failure:?}");
        }
    }

    #[test]
    fn istios_default_retries_connect_failures_and_unavailable() {
        let p = RetryPolicy::istio_default();
        assert_eq!(p.attempts, 2);
        assert!(should_retry(&p.on, Failure::ConnectFailure));
        assert!(should_retry(&p.on, Failure::Status(503)));
        assert!(!should_retry(&p.on, Failure::Status(500)));
        assert!(!should_retry(&p.on, Failure::Reset));
    }

    #[test]
    fn backoff_is_capped_at_ten_times_the_base() {
        let base = Duration::from_millis(25);
        for attempt in 1..20 {
            let ceiling = base * (1 << (attempt - 1).min(10)).min(10);
            assert!(backoff(base, attempt) <= ceiling, "attempt {attempt}");
        }
    }
}

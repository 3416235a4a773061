//! Durations as Istio's CRDs accept them (`10s`, `1.5s`, `100ms`, `1h30m`),
//! the Go `time.ParseDuration` syntax.

use std::time::Duration;

/// The longest duration Go's `time.ParseDuration` accepts (what Istio and
/// Argo Rollouts parse with): `i64::MAX` nanoseconds, ≈ 2,562,047 hours.
pub const MAX: Duration = Duration::from_nanos(i64::MAX as u64);

/// Parses a Go-style duration. Negative values, unknown units and what Go
/// would overflow on (beyond [`MAX`]) are errors.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?} (expected e.g. 10s, 1.5s, 100ms)");
    if text.is_empty() || text.starts_with('-') {
        return Err(bad());
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    if total > MAX.as_secs_f64() {
        return Err(format!(
            "invalid duration {text:?}: out of range (at most 2562047h47m16.854775807s)"
        ));
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        for bad in ["", "10", "ten", "-1s", "5d", "s", "1..5s"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounded_as_go_bounds_them() {
        assert_eq!(parse("2562047h"), Ok(Duration::from_secs(2_562_047 * 3600)));
        for beyond in ["2562048h", "5000000000000000h", "1e30s"] {
            let e = parse(beyond).unwrap_err();
            assert!(
                e.contains("out of range") || e.contains("invalid"),
                "{beyond}: {e}"
            );
        }
        assert!(parse("2562048h").unwrap_err().contains("out of range"));
    }
}

//! Kubernetes resource quantities for CPU (`5m`, `0.5`, `2`, `1500m`, and metrics-server's `1500000n`),
//! in millicores, the unit the HPA's utilization arithmetic uses.

/// Parses a CPU quantity to millicores, rounding up fractions of a
/// millicore as the API server does.
pub fn cpu_millis(text: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "quantities must match the regular expression \
             '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (got {text:?})"
        )
    };
    let suffixes = [("n", 1e-6), ("u", 1e-3), ("m", 1.0), ("k", 1_000_000.0)];
    let (number, scale) = suffixes
        .iter()
        .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((text, 1000.0));
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let millis = (value * scale).ceil();
    if !(0.0..=9.0e15).contains(&millis) {
        return Err(bad());
    }
    Ok(millis as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities() {
        assert_eq!(cpu_millis("5m"), Ok(5));
        assert_eq!(cpu_millis("0.5"), Ok(500));
        assert_eq!(cpu_millis("2"), Ok(2000));
        assert_eq!(cpu_millis("1500m"), Ok(1500));
        assert_eq!(cpu_millis("0.0005"), Ok(1));
        assert_eq!(
            cpu_millis("1500000n"),
            Ok(2),
            "metrics-server reports nanocores"
        );
        assert_eq!(cpu_millis("250u"), Ok(1));
        for bad in ["", "m", "five", "5x", "-1", "1Gi"] {
            assert!(cpu_millis(bad).is_err(), "{bad}");
        }
    }
}

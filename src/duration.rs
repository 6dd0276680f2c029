//! Parsing of human durations used in `doproxy.yml` (`90`, `1.5`, `500ms`, `30s`, `10m`, `1h`).

use std::time::Duration;

/// Parses a duration: a bare number is seconds; suffixes `ms`, `s`, `m`, `h` are accepted.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {text:?} (examples: 30, 2.5s, 500ms, 10m)"))?;
    from_secs(value * scale).ok_or_else(|| format!("invalid duration {text:?}: must be positive"))
}

/// Converts seconds to a `Duration`, refusing negative, NaN and absurd values.
pub fn from_secs(secs: f64) -> Option<Duration> {
    if secs.is_finite() && (0.0..=86_400.0 * 365.0).contains(&secs) {
        Some(Duration::from_secs_f64(secs))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes() {
        assert_eq!(parse("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("abc").is_err());
        assert!(parse("-5").is_err());
        assert!(parse("").is_err());
        assert!(parse("5x").is_err());
    }
}

//! Times as the API shows them: RFC 3339 timestamps with nanoseconds (the engine's and
//! the json-file log's), Docker's `sec.nanos` query values, and Docker's human
//! durations ("2 seconds", "About a minute").

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05.123Z`).
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    let secs = polis_image::config::parse_rfc3339(s)?;
    let nanos = match s.get(19..).and_then(|r| r.strip_prefix('.')) {
        Some(frac) => {
            let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
            fraction_nanos(&digits)?
        }
        None => 0,
    };
    Some(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
}

/// Nanoseconds since the epoch of Docker's timestamp query value: `SECONDS[.FRACTION]`,
/// as the CLI sends `--since` and `--until` once it has converted them. The error is
/// Go's, as Docker reports it.
pub fn parse_unix(value: &str) -> Result<i128, String> {
    let (secs, frac) = match value.split_once('.') {
        Some((s, f)) => (s, Some(f)),
        None => (value, None),
    };
    let secs: i64 = secs
        .parse()
        .map_err(|_| format!("strconv.ParseInt: parsing {secs:?}: invalid syntax"))?;
    let nanos = match frac {
        None => 0,
        Some(f) => fraction_nanos(f)
            .ok_or_else(|| format!("strconv.ParseInt: parsing {f:?}: invalid syntax"))?,
    };
    Ok(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
}

/// "5" → 500_000_000; at most nine digits count.
fn fraction_nanos(digits: &str) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut padded: String = digits.chars().take(9).collect();
    while padded.len() < 9 {
        padded.push('0');
    }
    padded.parse().ok()
}

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// The time from `earlier` to `later` (RFC 3339 both), zero if either is unreadable.
pub fn between(earlier: &str, later: &str) -> Duration {
    match (parse_rfc3339(earlier), parse_rfc3339(later)) {
        (Some(a), Some(b)) if b > a => Duration::from_nanos((b - a) as u64),
        _ => Duration::ZERO,
    }
}

/// Docker's `units.HumanDuration`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    let minutes = secs / 60;
    let hours = (d.as_secs_f64() / 3600.0 + 0.5) as u64;
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(
            parse_rfc3339("2024-01-02T03:04:05.000000007Z"),
            Some(1_704_164_645_000_000_007)
        );
        assert_eq!(parse_unix("12"), Ok(12_000_000_000));
        assert_eq!(parse_unix("12.000000003"), Ok(12_000_000_003));
        assert_eq!(parse_unix("12.25"), Ok(12_250_000_000));
        assert!(parse_unix("yesterday")
            .unwrap_err()
            .contains("invalid syntax"));
        assert!(parse_unix("1.x").is_err());
    }

    #[test]
    fn human_durations() {
        let s = Duration::from_secs;
        assert_eq!(human(Duration::from_millis(300)), "Less than a second");
        assert_eq!(human(s(1)), "1 second");
        assert_eq!(human(s(42)), "42 seconds");
        assert_eq!(human(s(90)), "About a minute");
        assert_eq!(human(s(600)), "10 minutes");
        assert_eq!(human(s(3600)), "About an hour");
        assert_eq!(human(s(5 * 3600)), "5 hours");
        assert_eq!(human(s(3 * 86400)), "3 days");
    }
}

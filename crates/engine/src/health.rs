//! Docker's container health check settings (`Config.Healthcheck`): the request's
//! merged over the image's `HEALTHCHECK`, checked as Docker checks them, and what a
//! probe runs with Docker's defaults applied.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// The shortest interval, timeout, start period or start interval Docker accepts.
const MINIMUM: Duration = Duration::from_millis(1);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_RETRIES: i64 = 3;

/// `Config.Healthcheck` as Docker's API carries it (durations in nanoseconds, 0 = inherit
/// or default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthConfig {
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub test: Vec<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// What a probe runs, how often and how long, with Docker's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub args: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: u32,
}

/// Docker's checks of a create request's health check.
pub fn validate(h: &HealthConfig) -> Result<()> {
    let too_small = |ns: i64| ns != 0 && ns < MINIMUM.as_nanos() as i64;
    for (name, ns) in [("Interval", h.interval), ("Timeout", h.timeout)] {
        if too_small(ns) {
            return Err(Error::InvalidInput(format!(
                "{name} in Healthcheck cannot be less than 1ms"
            )));
        }
    }
    if h.retries < 0 {
        return Err(Error::InvalidInput(
            "Retries in Healthcheck cannot be negative".into(),
        ));
    }
    for (name, ns) in [
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if too_small(ns) {
            return Err(Error::InvalidInput(format!(
                "{name} in Healthcheck cannot be less than 1ms"
            )));
        }
    }
    Ok(())
}

/// The request's health check over the image's, as Docker merges them: no request
/// takes the image's whole; an empty test or a zero field takes the image's.
pub fn merge(user: Option<HealthConfig>, image: Option<&HealthConfig>) -> Option<HealthConfig> {
    let Some(image) = image else {
        return user;
    };
    let Some(mut user) = user else {
        return Some(image.clone());
    };
    if user.test.is_empty() {
        user.test = image.test.clone();
    }
    let inherit = |mine: &mut i64, theirs: i64| {
        if *mine == 0 {
            *mine = theirs;
        }
    };
    inherit(&mut user.interval, image.interval);
    inherit(&mut user.timeout, image.timeout);
    inherit(&mut user.start_period, image.start_period);
    inherit(&mut user.start_interval, image.start_interval);
    inherit(&mut user.retries, image.retries);
    Some(user)
}

/// The image config's `Healthcheck` (kept as JSON in the image store).
pub fn from_image(value: Option<&serde_json::Value>) -> Result<Option<HealthConfig>> {
    match value.filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| Error::InvalidInput(format!("image Healthcheck: {e}"))),
    }
}

fn duration(ns: i64, default: Duration) -> Duration {
    if ns > 0 {
        Duration::from_nanos(ns as u64)
    } else {
        default
    }
}

/// The probe a container's health check asks for: none when it has none, when it is
/// disabled (`NONE`) or of a kind Docker does not run.
pub fn probe(h: Option<&HealthConfig>) -> Option<Probe> {
    let h = h?;
    let (kind, rest) = h.test.split_first()?;
    let args = match kind.as_str() {
        "CMD" if !rest.is_empty() => rest.to_vec(),
        "CMD-SHELL" if !rest.is_empty() => {
            vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
        }
        _ => return None,
    };
    Some(Probe {
        args,
        interval: duration(h.interval, DEFAULT_INTERVAL),
        timeout: duration(h.timeout, DEFAULT_TIMEOUT),
        start_period: duration(h.start_period, Duration::ZERO),
        start_interval: duration(h.start_interval, DEFAULT_START_INTERVAL),
        retries: if h.retries > 0 {
            u32::try_from(h.retries).unwrap_or(u32::MAX)
        } else {
            DEFAULT_RETRIES as u32
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(test: &[&str], interval: i64, retries: i64) -> HealthConfig {
        HealthConfig {
            test: test.iter().map(|s| s.to_string()).collect(),
            interval,
            retries,
            ..Default::default()
        }
    }

    #[test]
    fn merge_inherits_empty_fields_from_the_image() {
        let image = HealthConfig {
            timeout: 7,
            ..hc(&["CMD", "true"], 5_000_000_000, 4)
        };
        assert_eq!(merge(None, Some(&image)), Some(image.clone()));
        let user = hc(&[], 2_000_000_000, 0);
        let merged = merge(Some(user), Some(&image)).unwrap();
        assert_eq!(merged.test, ["CMD", "true"]);
        assert_eq!(merged.interval, 2_000_000_000);
        assert_eq!((merged.timeout, merged.retries), (7, 4));
        let none = merge(Some(hc(&["NONE"], 0, 0)), Some(&image)).unwrap();
        assert_eq!(probe(Some(&none)), None);
        assert_eq!(merge(Some(user_only()), None), Some(user_only()));
    }

    fn user_only() -> HealthConfig {
        hc(&["CMD-SHELL", "exit 1"], 0, 0)
    }

    #[test]
    fn probe_applies_docker_defaults_and_kinds() {
        let p = probe(Some(&user_only())).unwrap();
        assert_eq!(p.args, ["/bin/sh", "-c", "exit 1"]);
        assert_eq!(p.interval, DEFAULT_INTERVAL);
        assert_eq!(p.timeout, DEFAULT_TIMEOUT);
        assert_eq!(p.start_period, Duration::ZERO);
        assert_eq!(p.start_interval, DEFAULT_START_INTERVAL);
        assert_eq!(p.retries, 3);
        let p = probe(Some(&hc(&["CMD", "cat", "/x"], 200_000_000, 2))).unwrap();
        assert_eq!(p.args, ["cat", "/x"]);
        assert_eq!((p.interval, p.retries), (Duration::from_millis(200), 2));
        assert_eq!(probe(Some(&hc(&[], 0, 0))), None);
        assert_eq!(probe(Some(&hc(&["BOGUS", "x"], 0, 0))), None);
        assert_eq!(probe(None), None);
    }

    #[test]
    fn validation_uses_docker_messages() {
        let err = |h: HealthConfig| validate(&h).unwrap_err().to_string();
        assert!(err(hc(&[], 10, 0)).contains("Interval in Healthcheck cannot be less than 1ms"));
        assert!(err(hc(&[], -5, 0)).contains("Interval in Healthcheck cannot be less than 1ms"));
        assert!(err(hc(&[], 0, -1)).contains("Retries in Healthcheck cannot be negative"));
        let h = HealthConfig {
            timeout: 999_999,
            ..Default::default()
        };
        assert!(err(h).contains("Timeout in Healthcheck cannot be less than 1ms"));
        let h = HealthConfig {
            start_period: -1,
            ..Default::default()
        };
        assert!(err(h).contains("StartPeriod in Healthcheck"));
        let h = HealthConfig {
            start_interval: 1,
            ..Default::default()
        };
        assert!(err(h).contains("StartInterval in Healthcheck"));
        assert!(validate(&hc(&["CMD", "true"], 1_000_000, 0)).is_ok());
    }

    #[test]
    fn null_test_and_missing_fields_parse() {
        let h: HealthConfig =
            serde_json::from_str(r#"{"Test":null,"Interval":1000000000}"#).unwrap();
        assert!(h.test.is_empty());
        assert_eq!(h.interval, 1_000_000_000);
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"Interval":1000000000}"#
        );
    }
}

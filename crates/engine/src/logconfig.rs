//! A container's log driver and options (`--log-driver`, `--log-opt`) as Docker checks
//! and applies them. Polis has Docker's `json-file` (written by the shim, rotated by
//! size) and `none`; its options are Docker's, sizes in Docker's decimal units.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::hostconfig::LogConfig;

/// Docker's other drivers: known names, refused as not available here.
const OTHER_DRIVERS: [&str; 10] = [
    "local",
    "syslog",
    "journald",
    "gelf",
    "fluentd",
    "awslogs",
    "splunk",
    "etwlogs",
    "gcplogs",
    "logentries",
];

/// What the shim is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDriver {
    /// No log at all: `docker logs` has nothing to read.
    None,
    JsonFile {
        /// Rotate at this many bytes; 0: never.
        max_size: u64,
        /// Files kept, the live one included.
        max_file: u32,
        /// The `attrs` of every record (from labels, env and tag); empty: none.
        attrs: BTreeMap<String, String>,
    },
}

/// About the container, for the options that copy its labels, env or names into the
/// log records.
#[derive(Debug, Default, Clone)]
pub struct LogInfo {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub image_name: String,
    pub command: String,
    pub labels: BTreeMap<String, String>,
    /// The container's environment (`KEY=VALUE`), the image's included.
    pub env: Vec<String>,
}

/// The driver's name with Docker's default filled in.
pub fn driver_name(cfg: &LogConfig) -> &str {
    if cfg.kind.is_empty() {
        "json-file"
    } else {
        &cfg.kind
    }
}

/// Check a create request's log settings as Docker does when it creates and starts the
/// container (its messages), so that a bad option fails the create.
pub fn validate(cfg: &LogConfig) -> Result<()> {
    resolve(cfg, &LogInfo::default()).map(|_| ())
}

/// The driver and its settings for one container.
pub fn resolve(cfg: &LogConfig, info: &LogInfo) -> Result<LogDriver> {
    let invalid = |m: String| Err(Error::InvalidInput(m));
    let empty = BTreeMap::new();
    let opts = cfg.config.as_ref().unwrap_or(&empty);
    let name = driver_name(cfg);
    match name {
        // Docker takes any option with `none`: there is nothing to apply them to.
        "none" => return Ok(LogDriver::None),
        "json-file" => {}
        n if OTHER_DRIVERS.contains(&n) => {
            return invalid(format!(
                "log driver '{n}' is not supported by this daemon (json-file and none are)"
            ))
        }
        n => return invalid(format!("logger: no log driver named '{n}' is registered")),
    }
    // Options every Docker driver takes.
    match opts.get("mode").map(String::as_str) {
        None | Some("" | "blocking") => {}
        Some("non-blocking") => {
            return invalid("log opt mode=non-blocking is not supported by this daemon".into())
        }
        Some(m) => return invalid(format!("logger: logging mode not supported: {m}")),
    }
    if opts.contains_key("max-buffer-size") {
        return invalid(
            "logger: max-buffer-size option is only supported with 'mode=non-blocking'".into(),
        );
    }
    for key in opts.keys() {
        let known = [
            "mode",
            "max-file",
            "max-size",
            "compress",
            "labels",
            "labels-regex",
            "env",
            "env-regex",
            "tag",
        ];
        if !known.contains(&key.as_str()) {
            return invalid(format!("unknown log opt '{key}' for json-file log driver"));
        }
    }
    let max_size = match opts.get("max-size") {
        None => 0,
        Some(v) => match from_human_size(v) {
            Ok(n) if n > 0 => n as u64,
            Ok(_) => return invalid("max-size must be a positive number".into()),
            Err(e) => return invalid(format!("invalid log opt max-size={v}: {e}")),
        },
    };
    let max_file = match opts.get("max-file") {
        None => 1,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n < 1 => return invalid("max-file cannot be less than 1".into()),
            Ok(n) => u32::try_from(n).unwrap_or(u32::MAX),
            Err(_) => {
                return invalid(format!(
                    "invalid log opt max-file={v}: strconv.Atoi: parsing {v:?}: invalid syntax"
                ))
            }
        },
    };
    match opts.get("compress").map(|v| parse_bool(v)) {
        None | Some(Some(false)) => {}
        Some(Some(true)) if max_file == 1 || max_size == 0 => {
            return invalid(
                "compress cannot be true when max-file is less than 2 or max-size is not set"
                    .into(),
            )
        }
        Some(Some(true)) => {
            return invalid("log opt compress=true is not supported by this daemon".into())
        }
        Some(None) => {
            let v = &opts["compress"];
            return invalid(format!(
                "invalid log opt compress={v}: strconv.ParseBool: parsing {v:?}: invalid syntax"
            ));
        }
    }
    Ok(LogDriver::JsonFile {
        max_size,
        max_file,
        attrs: attrs(opts, info)?,
    })
}

/// Docker's `ExtraAttributes` plus the json-file `tag`.
fn attrs(opts: &BTreeMap<String, String>, info: &LogInfo) -> Result<BTreeMap<String, String>> {
    let mut extra = BTreeMap::new();
    let list = |key: &str| -> Vec<String> {
        opts.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| v.split(',').map(String::from).collect())
            .unwrap_or_default()
    };
    let pattern = |key: &str| -> Result<Option<regex::Regex>> {
        match opts.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(p) => regex::Regex::new(p)
                .map(Some)
                .map_err(|e| Error::InvalidInput(format!("invalid log opt {key}={p}: {e}"))),
        }
    };
    for key in list("labels") {
        if let Some(v) = info.labels.get(&key) {
            extra.insert(key, v.clone());
        }
    }
    if let Some(re) = pattern("labels-regex")? {
        for (k, v) in &info.labels {
            if re.is_match(k) {
                extra.insert(k.clone(), v.clone());
            }
        }
    }
    let env: BTreeMap<&str, &str> = info.env.iter().filter_map(|e| e.split_once('=')).collect();
    for key in list("env") {
        if let Some(v) = env.get(key.as_str()) {
            extra.insert(key, v.to_string());
        }
    }
    if let Some(re) = pattern("env-regex")? {
        for (k, v) in &env {
            if re.is_match(k) {
                extra.insert(k.to_string(), v.to_string());
            }
        }
    }
    if let Some(template) = opts.get("tag").filter(|t| !t.is_empty()) {
        let tag = expand_tag(template, info)?;
        if !tag.is_empty() {
            extra.insert("tag".into(), tag);
        }
    }
    Ok(extra)
}

/// The `tag` template: literal text and Docker's `{{.Field}}` placeholders.
fn expand_tag(template: &str, info: &LogInfo) -> Result<String> {
    let short = |s: &str| s.chars().take(12).collect::<String>();
    let image_hex = info
        .image_id
        .strip_prefix("sha256:")
        .unwrap_or(&info.image_id);
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| {
            Error::InvalidInput(format!("invalid log opt tag={template}: unclosed action"))
        })?;
        let value = match after[..close].trim() {
            ".ID" => short(&info.id),
            ".FullID" => info.id.clone(),
            ".Name" => info.name.trim_start_matches('/').to_string(),
            ".ImageID" => short(image_hex),
            ".ImageFullID" => info.image_id.clone(),
            ".ImageName" => info.image_name.clone(),
            ".Command" => info.command.clone(),
            ".DaemonName" => "docker".to_string(),
            other => {
                return Err(Error::InvalidInput(format!(
                    "invalid log opt tag={template}: {{{{{other}}}}} is not supported (fields: .ID, .FullID, .Name, .ImageID, .ImageFullID, .ImageName, .Command, .DaemonName)"
                )))
            }
        };
        out.push_str(&value);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Docker's `units.FromHumanSize`: a number (fractions allowed), an optional space,
/// then an optional decimal suffix (k, m, g, t, p, each optionally followed by b or ib;
/// or b alone), case-insensitive: "10m" is 10 000 000 bytes.
pub fn from_human_size(s: &str) -> std::result::Result<i64, String> {
    let Some(sep) = s.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ') else {
        return Err(format!("invalid size: '{s}'"));
    };
    let (num, suffix) = if s.as_bytes()[sep] == b' ' {
        (&s[..sep], &s[sep + 1..])
    } else {
        (&s[..=sep], &s[sep + 1..])
    };
    let size: f64 = num
        .parse()
        .map_err(|_| format!("strconv.ParseFloat: parsing {num:?}: invalid syntax"))?;
    if size < 0.0 {
        return Err(format!("invalid size: '{s}'"));
    }
    let bad = |sfx: &str| Err(format!("invalid suffix: '{sfx}'"));
    if suffix.is_empty() {
        return Ok(size as i64);
    }
    let lower = suffix.to_ascii_lowercase();
    if lower.len() > 3 {
        return bad(&lower);
    }
    if lower == "b" {
        return Ok(size as i64);
    }
    let mult = match lower.as_bytes()[0] {
        b'k' => 1e3,
        b'm' => 1e6,
        b'g' => 1e9,
        b't' => 1e12,
        b'p' => 1e15,
        _ => return bad(&lower),
    };
    match lower.len() {
        2 if &lower[1..] != "b" => return bad(&lower),
        3 if &lower[1..] != "ib" => return bad(&lower),
        _ => {}
    }
    Ok((size * mult) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: &str, opts: &[(&str, &str)]) -> LogConfig {
        LogConfig {
            kind: kind.into(),
            config: Some(
                opts.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }
    }

    fn err(c: LogConfig) -> String {
        validate(&c).unwrap_err().to_string()
    }

    #[test]
    fn sizes_as_docker_reads_them() {
        assert_eq!(from_human_size("10m"), Ok(10_000_000));
        assert_eq!(from_human_size("1k"), Ok(1000));
        assert_eq!(from_human_size("1.5KB"), Ok(1500));
        assert_eq!(from_human_size("2 GiB"), Ok(2_000_000_000));
        assert_eq!(from_human_size("512"), Ok(512));
        assert_eq!(from_human_size("7b"), Ok(7));
        assert_eq!(from_human_size("10x"), Err("invalid suffix: 'x'".into()));
        assert_eq!(from_human_size("abc"), Err("invalid size: 'abc'".into()));
        assert_eq!(
            from_human_size("10mbx"),
            Err("invalid suffix: 'mbx'".into())
        );
    }

    #[test]
    fn json_file_options() {
        let d = resolve(
            &cfg("json-file", &[("max-size", "10m"), ("max-file", "3")]),
            &LogInfo::default(),
        )
        .unwrap();
        assert_eq!(
            d,
            LogDriver::JsonFile {
                max_size: 10_000_000,
                max_file: 3,
                attrs: BTreeMap::new()
            }
        );
        // Docker's default driver, and max-file alone (kept, only effective with a size).
        assert!(validate(&cfg("", &[("max-file", "2")])).is_ok());
        assert_eq!(
            err(cfg("json-file", &[("max-size", "10x")])),
            "invalid log opt max-size=10x: invalid suffix: 'x'"
        );
        assert_eq!(
            err(cfg("json-file", &[("max-size", "0")])),
            "max-size must be a positive number"
        );
        assert_eq!(
            err(cfg("json-file", &[("max-file", "0")])),
            "max-file cannot be less than 1"
        );
        assert_eq!(
            err(cfg("json-file", &[("colour", "red")])),
            "unknown log opt 'colour' for json-file log driver"
        );
        assert_eq!(
            err(cfg("bogus", &[])),
            "logger: no log driver named 'bogus' is registered"
        );
        assert!(err(cfg("syslog", &[])).contains("'syslog' is not supported"));
        assert!(err(cfg("json-file", &[("compress", "true")])).contains("compress cannot be true"));
        assert_eq!(
            resolve(&cfg("none", &[("max-size", "x")]), &LogInfo::default()).unwrap(),
            LogDriver::None
        );
    }

    #[test]
    fn attributes_from_labels_env_and_tag() {
        let info = LogInfo {
            id: "0123456789abcdef".into(),
            name: "web".into(),
            image_id: "sha256:fedcba9876543210".into(),
            labels: [("app", "shop"), ("tier", "front"), ("x", "y")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            env: vec!["PATH=/bin".into(), "REGION=eu".into(), "RACK=r1".into()],
            ..LogInfo::default()
        };
        let d = resolve(
            &cfg(
                "json-file",
                &[
                    ("labels", "app,missing"),
                    ("labels-regex", "^ti"),
                    ("env", "REGION"),
                    ("env-regex", "^RA"),
                    ("tag", "{{.Name}}/{{ .ID }}/{{.ImageID}}"),
                ],
            ),
            &info,
        )
        .unwrap();
        let LogDriver::JsonFile { attrs, .. } = d else {
            panic!("{d:?}")
        };
        let want: BTreeMap<String, String> = [
            ("app", "shop"),
            ("tier", "front"),
            ("REGION", "eu"),
            ("RACK", "r1"),
            ("tag", "web/0123456789ab/fedcba987654"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(attrs, want);
        assert!(err(cfg("json-file", &[("tag", "{{.Nope}}")])).contains("not supported"));
        assert!(err(cfg("json-file", &[("env-regex", "(")])).contains("env-regex"));
    }
}

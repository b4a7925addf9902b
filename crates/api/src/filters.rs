//! Docker's `filters` query parameter (`{"status":{"exited":true}}`, or the older
//! `{"status":["exited"]}`) and its matching rules, shared by the list and prune
//! endpoints.

use std::collections::{BTreeMap, HashMap};

/// Filter values by key.
#[derive(Debug, Clone, Default)]
pub struct Filters(BTreeMap<String, BTreeMap<String, bool>>);

impl Filters {
    /// Parses the JSON of the `filters` parameter; absent or empty means no filter.
    pub fn parse(raw: Option<&str>) -> Result<Filters, String> {
        let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
            return Ok(Filters::default());
        };
        if let Ok(map) = serde_json::from_str::<BTreeMap<String, BTreeMap<String, bool>>>(raw) {
            return Ok(Filters(map));
        }
        match serde_json::from_str::<BTreeMap<String, Vec<String>>>(raw) {
            Ok(legacy) => Ok(Filters(
                legacy
                    .into_iter()
                    .map(|(k, vs)| (k, vs.into_iter().map(|v| (v, true)).collect()))
                    .collect(),
            )),
            Err(e) => Err(format!("invalid filter: {e}")),
        }
    }

    /// Docker's refusal of a key the endpoint does not know.
    /// The `filters` query parameter, parsed and checked against the `accepted` keys;
    /// Docker's 400 otherwise.
    pub fn from_query(
        q: &std::collections::HashMap<String, String>,
        accepted: &[&str],
    ) -> Result<Filters, axum::response::Response> {
        let bad = |e: String| crate::versioning::error(axum::http::StatusCode::BAD_REQUEST, e);
        let filters = Filters::parse(q.get("filters").map(String::as_str)).map_err(bad)?;
        filters.validate(accepted).map_err(bad)?;
        Ok(filters)
    }

    pub fn validate(&self, accepted: &[&str]) -> Result<(), String> {
        match self.0.keys().find(|k| !accepted.contains(&k.as_str())) {
            Some(k) => Err(format!("invalid filter '{k}'")),
            None => Ok(()),
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn values(&self, key: &str) -> Vec<&str> {
        self.0
            .get(key)
            .map(|vs| vs.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// True when `key` has no values, or one of them is exactly `source`.
    pub fn exact_match(&self, key: &str, source: &str) -> bool {
        match self.0.get(key) {
            None => true,
            Some(vs) if vs.is_empty() => true,
            Some(vs) => vs.get(source).copied().unwrap_or(false),
        }
    }

    /// Docker's `FuzzyMatch`: exact, or a value is a prefix of `source`.
    pub fn fuzzy_match(&self, key: &str, source: &str) -> bool {
        self.exact_match(key, source) || self.values(key).iter().any(|p| source.starts_with(p))
    }

    /// Docker's `Match`: exact, or any value as an (unanchored) regular expression.
    pub fn matches(&self, key: &str, source: &str) -> bool {
        if self.exact_match(key, source) {
            return true;
        }
        self.values(key).iter().any(|pattern| {
            regex::Regex::new(pattern)
                .map(|re| re.is_match(source))
                .unwrap_or(false)
        })
    }

    /// Docker's `MatchKVList`: every `k` or `k=v` value is among `labels`.
    pub fn match_labels(&self, key: &str, labels: &BTreeMap<String, String>) -> bool {
        let values = self.values(key);
        if values.is_empty() {
            return true;
        }
        if labels.is_empty() {
            return false;
        }
        values.iter().all(|v| match v.split_once('=') {
            Some((k, want)) => labels.get(k).is_some_and(|have| have == want),
            None => labels.contains_key(*v),
        })
    }
}

/// The `until` filter as Unix seconds (at most one may be given), None without one.
pub fn until(filters: &Filters) -> Result<Option<i64>, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    match filters.values("until").as_slice() {
        [] => Ok(None),
        [one] => timestamp(one, now).map(Some),
        _ => Err("more than one until filter specified".to_string()),
    }
}

/// A point in time from a filter value (`until`, `since`): a Go duration before now
/// (`10m`, `1h30m`), Unix seconds (`1700000000.5`), or an RFC 3339 date or time.
pub fn timestamp(value: &str, now: i64) -> Result<i64, String> {
    if let Some(d) = go_duration(value) {
        return Ok(now - d);
    }
    if let Some((secs, _)) = value.split_once('.').or(Some((value, ""))) {
        if let Ok(s) = secs.parse::<i64>() {
            return Ok(s);
        }
    }
    let full = match value.len() {
        10 => format!("{value}T00:00:00Z"),
        19 => format!("{value}Z"),
        _ => value.to_string(),
    };
    polis_image::config::parse_rfc3339(&full)
        .ok_or_else(|| format!("failed to parse value as time or duration: {value:?}"))
}

/// Seconds in a Go duration string (`300ms` counts as 0); None if it is not one.
pub(crate) fn go_duration(value: &str) -> Option<i64> {
    let units: HashMap<&str, f64> = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ]
    .into_iter()
    .collect();
    let (neg, mut rest) = match value.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        total += number * units.get(&rest[..unit_end])?;
        rest = &rest[unit_end..];
    }
    let secs = total as i64;
    Some(if neg { -secs } else { secs })
}

/// Go's `path.Match`, as Docker's `reference` filter uses it: `*` matches any run of
/// characters but `/`, `?` one such character, `[…]` a class (`^` negates, `a-z` ranges)
/// and `\` escapes. A malformed pattern is an error.
pub fn path_match(pattern: &str, name: &str) -> Result<bool, String> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Checked whole first, so a bad pattern fails whatever the name.
    let mut i = 0;
    while i < p.len() {
        i = match p[i] {
            '[' => class(&p, i + 1, None)?.1,
            '\\' if i + 1 < p.len() => i + 2,
            '\\' => return Err(bad(pattern)),
            _ => i + 1,
        };
    }
    Ok(glob(&p, &n))
}

fn bad(pattern: &str) -> String {
    format!("syntax error in pattern {pattern:?}")
}

fn glob(p: &[char], n: &[char]) -> bool {
    let Some(&first) = p.first() else {
        return n.is_empty();
    };
    match first {
        '*' => {
            let run = n.iter().take_while(|c| **c != '/').count();
            (0..=run).any(|k| glob(&p[1..], &n[k..]))
        }
        '?' => n.first().is_some_and(|c| *c != '/') && glob(&p[1..], &n[1..]),
        '[' => match n.first() {
            Some(c) if *c != '/' => match class(p, 1, Some(*c)) {
                Ok((true, next)) => glob(&p[next..], &n[1..]),
                _ => false,
            },
            _ => false,
        },
        '\\' => n.first() == p.get(1) && glob(&p[2..], &n[1..]),
        c => n.first() == Some(&c) && glob(&p[1..], &n[1..]),
    }
}

/// Reads the class starting after its `[` at `i`: whether `c` is in it, and the index
/// after its `]`.
fn class(p: &[char], mut i: usize, c: Option<char>) -> Result<(bool, usize), String> {
    let shown = || bad(&p.iter().collect::<String>());
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i).ok_or_else(shown)?;
        if ch == ']' && !first {
            return Ok((matched != negated, i + 1));
        }
        first = false;
        let one = |i: &mut usize| -> Result<char, String> {
            let mut ch = *p.get(*i).ok_or_else(shown)?;
            if ch == '\\' {
                *i += 1;
                ch = *p.get(*i).ok_or_else(shown)?;
            } else if ch == '-' || ch == ']' {
                return Err(shown());
            }
            *i += 1;
            Ok(ch)
        };
        let lo = one(&mut i)?;
        let hi = if p.get(i) == Some(&'-') {
            i += 1;
            one(&mut i)?
        } else {
            lo
        };
        if c.is_some_and(|c| lo <= c && c <= hi) {
            matched = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_and_match() {
        let f = Filters::parse(Some(r#"{"status":{"exited":true},"name":{"^we":true}}"#)).unwrap();
        assert!(f.exact_match("status", "exited"));
        assert!(!f.exact_match("status", "running"));
        assert!(f.matches("name", "web"));
        assert!(!f.matches("name", "aweb"));
        assert!(f.exact_match("label", "anything"));
        let legacy = Filters::parse(Some(r#"{"label":["a=1","b"]}"#)).unwrap();
        let mut labels = BTreeMap::new();
        labels.insert("a".to_string(), "1".to_string());
        assert!(!legacy.match_labels("label", &labels));
        labels.insert("b".to_string(), "x".to_string());
        assert!(legacy.match_labels("label", &labels));
        assert_eq!(
            f.validate(&["status"]).unwrap_err(),
            "invalid filter 'name'"
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp("10m", 1000), Ok(400));
        assert_eq!(timestamp("1h30m", 10_000), Ok(10_000 - 5400));
        assert_eq!(timestamp("1700000000", 0), Ok(1_700_000_000));
        assert_eq!(timestamp("1970-01-02", 0), Ok(86_400));
        assert_eq!(timestamp("1970-01-01T00:01:00Z", 0), Ok(60));
        assert!(timestamp("soon", 0).is_err());
    }

    #[test]
    fn globs_as_go_path_match() {
        let m = |p: &str, n: &str| path_match(p, n).unwrap();
        assert!(m("busybox*", "busybox:local"));
        assert!(m("*:1.0", "busybox:1.0"));
        assert!(!m("*:1.0", "127.0.0.1:5000/bb:1.0"), "* stops at /");
        assert!(m("*/bb:1.?", "127.0.0.1:5000/bb:1.0"));
        assert!(m("b[a-z]sybox", "busybox"));
        assert!(!m("b[^a-z]sybox", "busybox"));
        assert!(m("a\\*", "a*"));
        assert!(!m("a\\*", "ab"));
        assert!(path_match("[a-", "a").is_err());
        assert!(path_match("x[]", "x").is_err());
        assert!(path_match("ab\\", "ab").is_err());
    }
}

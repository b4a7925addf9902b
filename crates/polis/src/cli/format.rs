//! Output formatting as the docker CLI does it: a small subset of Go templates
//! (`{{.Field}}`, `{{json .Field}}`, `{{len .Field}}`, the `table` prefix), Go's
//! tabwriter alignment, human sizes ("2.13MB") and durations ("5 minutes ago").

use anyhow::{bail, Result};
use serde_json::Value;

/// What a template action does with the value it reaches.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Print,
    Json,
    Len,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    /// `pos`: where the action's last field starts, for docker's error messages.
    Action {
        func: Func,
        path: Vec<String>,
        pos: usize,
        /// A method's string argument: `{{.Label "com.example"}}`.
        arg: Option<String>,
    },
}

/// A parsed `--format` string.
#[derive(Debug, Clone)]
pub struct Template {
    table: bool,
    parts: Vec<Part>,
    /// Fields that are Go maps: a key they lack is no error (Go prints `<no value>`).
    maps: Vec<String>,
}

impl Template {
    /// Parses `format` as docker does: a leading `table` asks for a header and aligned
    /// columns, `json` alone means `{{json .}}`, and the escapes `\t` and `\n` are honoured.
    pub fn parse(format: &str) -> Result<Template> {
        let (table, body) = match format.strip_prefix("table") {
            Some(rest) => (true, rest.trim_matches(' ')),
            None => (false, format),
        };
        let body = if body == "json" { "{{json .}}" } else { body };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = body.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                bail!("template parsing error: template: :1: unclosed action");
            };
            let inner = &after[..end];
            let pos = body.len() - after.len() + inner.rfind('.').unwrap_or(0);
            parts.push(parse_action(inner.trim(), pos)?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template {
            table,
            parts,
            maps: Vec::new(),
        })
    }

    /// The same template, with the fields at `paths` (`Actor.Attributes`) taken as maps.
    pub fn with_maps(mut self, paths: &[&str]) -> Template {
        self.maps = paths.iter().map(|p| p.to_string()).collect();
        self
    }

    pub fn is_table(&self) -> bool {
        self.table
    }

    /// Whether an action reads the top-level field `name` (`{{.Size}}`).
    pub fn uses_field(&self, name: &str) -> bool {
        self.parts.iter().any(|p| {
            matches!(p, Part::Action { path, .. } if path.first().map(String::as_str) == Some(name))
        })
    }

    /// Renders one value. A missing field is an error, worded as Go words it for a
    /// typed row (`row_type`, as for images and history) or for a map (inspect).
    pub fn render(&self, value: &Value, row_type: Option<&str>) -> Result<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Action {
                    func,
                    path,
                    pos,
                    arg,
                } => {
                    let no_value = Value::String("<no value>".into());
                    let found = match lookup(value, path) {
                        Ok(v) => v,
                        Err(_) if self.in_map(path) => match func {
                            Func::Print => &no_value,
                            _ => &Value::Null,
                        },
                        Err(missing) => {
                            let at = format!(
                                "template parsing error: template: :1:{pos}: executing \"\" at <.{}>",
                                path.join(".")
                            );
                            match row_type {
                                Some(t) => {
                                    bail!("{at}: can't evaluate field {missing} in type {t}")
                                }
                                None => bail!("{at}: map has no entry for key \"{missing}\""),
                            }
                        }
                    };
                    let empty = Value::String(String::new());
                    let found = match arg {
                        Some(key) => found.get(key.as_str()).unwrap_or(&empty),
                        None => found,
                    };
                    // A row's hidden lookup tables are not part of its JSON.
                    let whole;
                    let found = if path.is_empty() && row_type.is_some() {
                        let mut v = found.clone();
                        if let Some(o) = v.as_object_mut() {
                            o.retain(|k, _| !HIDDEN_FIELDS.contains(&k.as_str()));
                        }
                        whole = v;
                        &whole
                    } else {
                        found
                    };
                    match func {
                        Func::Print => out.push_str(&go_print(found)),
                        Func::Json => out.push_str(&go_json(found)?),
                        Func::Len => {
                            let n = match found {
                                Value::Array(a) => a.len(),
                                Value::Object(o) => o.len(),
                                Value::String(s) => s.len(),
                                Value::Null => 0,
                                other => bail!(
                                    "template: :1: error calling len: len of type {}",
                                    kind(other)
                                ),
                            };
                            out.push_str(&n.to_string());
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether `path` is a key of one of the template's map fields.
    fn in_map(&self, path: &[String]) -> bool {
        path.split_last()
            .is_some_and(|(_, parent)| self.maps.contains(&parent.join(".")))
    }

    /// Renders the header line of a table: each field becomes its column title.
    pub fn render_header(&self, titles: &[(&str, &str)]) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Action { path, .. } => {
                    let name = path.join(".");
                    if let Some((_, title)) = titles.iter().find(|(f, _)| *f == name) {
                        out.push_str(title);
                    }
                }
            }
        }
        out
    }
}

/// Fields of a row that only serve method calls (`.Label "k"`), left out of `{{json .}}`.
const HIDDEN_FIELDS: [&str; 1] = ["Label"];

fn parse_action(action: &str, pos: usize) -> Result<Part> {
    let mut words = action.split_whitespace();
    let first = words.next().unwrap_or_default();
    let (func, field) = match first {
        "json" => (Func::Json, words.next()),
        "len" => (Func::Len, words.next()),
        f if f.starts_with('.') => (Func::Print, Some(f)),
        f => bail!("template parsing error: template: :1: function \"{f}\" not defined"),
    };
    let Some(field) = field.filter(|a| a.starts_with('.')) else {
        bail!("template parsing error: template: :1: unsupported action {{{{{action}}}}}");
    };
    // A quoted argument to a method, as in `.Label "com.example.key"`.
    let rest: Vec<&str> = words.collect();
    let arg = match rest.as_slice() {
        [] => None,
        words if func == Func::Print => {
            let joined = words.join(" ");
            match joined.strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
                Some(a) => Some(a.to_string()),
                None => bail!(
                    "template parsing error: template: :1: unsupported action {{{{{action}}}}}"
                ),
            }
        }
        _ => bail!("template parsing error: template: :1: unsupported action {{{{{action}}}}}"),
    };
    let path = field[1..]
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    Ok(Part::Action {
        func,
        path,
        pos,
        arg,
    })
}

/// JSON as Go's encoder writes it: `<`, `>` and `&` escaped for HTML safety.
fn go_json(v: &Value) -> Result<String> {
    Ok(serde_json::to_string(v)?
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029"))
}

/// The value at `path`, or the name of the first field that is not there.
fn lookup<'a>(value: &'a Value, path: &'a [String]) -> Result<&'a Value, &'a str> {
    path.iter().try_fold(value, |v, key| match v {
        Value::Object(map) => map.get(key).ok_or(key.as_str()),
        _ => Err(key.as_str()),
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        _ => "value",
    }
}

/// A value printed as Go's `fmt.Print` prints the decoded JSON: strings bare, lists
/// as `[a b]`, maps as `map[k:v]` with sorted keys.
fn go_print(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(go_print).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_print(&o[k])))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

/// Go's `text/tabwriter` as docker configures it for tables (minwidth 10, padding 3):
/// tab-terminated cells are aligned per column; the text after a line's last tab is not.
pub fn tabwrite(text: &str) -> String {
    tabwrite_with(text, 10, 3)
}

/// [`tabwrite`] with another minimum cell width and padding (`top` uses 20 and 3).
pub fn tabwrite_with(text: &str, min_width: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let columns = lines.iter().map(|c| c.len() - 1).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for cells in &lines {
        for (i, cell) in cells[..cells.len() - 1].iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count() + padding);
        }
    }
    let mut out = String::new();
    for cells in &lines {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let width = widths[i].max(min_width);
                out.push_str(&" ".repeat(width - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

/// Go's `%.{precision}g`: `precision` significant digits, trailing zeros dropped,
/// exponent form when the exponent is below -4 or at least `precision`.
fn format_g(x: f64, precision: usize) -> String {
    if x == 0.0 {
        return "0".to_string();
    }
    let sci = format!("{:.*e}", precision - 1, x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= precision as i32 {
        let mantissa = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let decimals = (precision as i32 - 1 - exp).max(0) as usize;
    trim_zeros(&format!("{x:.decimals$}")).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

fn scaled(size: f64, base: f64, units: &'static [&'static str]) -> (f64, &'static str) {
    let mut size = size;
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    (size, units[i])
}

/// docker's image sizes: decimal units, three significant digits ("1.98MB").
pub fn human_size(bytes: i64) -> String {
    human_size_precision(bytes, 3)
}

/// go-units' `HumanSizeWithPrecision`: decimal units, `precision` significant digits.
pub fn human_size_precision(bytes: i64, precision: usize) -> String {
    let (size, unit) = scaled(
        bytes as f64,
        1000.0,
        &["B", "kB", "MB", "GB", "TB", "PB", "EB"],
    );
    format!("{}{unit}", format_g(size, precision))
}

/// Go's `strconv.Quote`: double quotes, with `"`, `\\` and control characters escaped.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// docker's `GetTimestamp` for `--since`/`--until`: a unix time stays as it is, a
/// duration ("10m", "1h30m") counts back from `now`, a date ("2013-01-02",
/// "2013-01-02T13:23:37Z", with an offset or none for UTC) becomes "SECONDS.NANOS".
pub fn timestamp(value: &str, now: std::time::SystemTime) -> Result<String> {
    let is_number = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    match value.split_once('.') {
        Some((a, b)) if is_number(a) && is_number(b) => return Ok(value.to_string()),
        None if is_number(value) => return Ok(value.to_string()),
        _ => {}
    }
    if let Some(d) = go_duration(value) {
        let now = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        return Ok(format!("{}", (now - d).floor() as i64));
    }
    if let Some((secs, nanos)) = parse_date(value) {
        return Ok(format!("{secs}.{nanos:09}"));
    }
    bail!("invalid value for \"since\": failed to parse value as time or duration: \"{value}\"")
}

/// Go's `time.ParseDuration`, in seconds.
pub(crate) fn go_duration(s: &str) -> Option<f64> {
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * unit;
        rest = &rest[u_end..];
    }
    Some(if negative { -total } else { total })
}

/// `YYYY-MM-DD[THH[:MM[:SS[.fraction]]]][Z|±HH:MM]` → (unix seconds, nanoseconds).
fn parse_date(s: &str) -> Option<(i64, u32)> {
    let num = |t: &str| -> Option<i64> {
        (!t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut d = date.split('-');
    let (year, month, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if d.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (mut secs_of_day, mut nanos, mut offset) = (0i64, 0u32, 0i64);
    if let Some(t) = time {
        let (clock, zone) = if let Some(c) = t.strip_suffix('Z') {
            (c, None)
        } else if let Some(i) = t.rfind(['+', '-']) {
            (&t[..i], Some(&t[i..]))
        } else {
            (t, None)
        };
        if let Some(z) = zone {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (h, m) = z[1..].split_once(':')?;
            offset = sign * (num(h)? * 3600 + num(m)? * 60);
        }
        let (clock, fraction) = match clock.split_once('.') {
            Some((c, f)) => (c, Some(f)),
            None => (clock, None),
        };
        let parts: Vec<&str> = clock.split(':').collect();
        if parts.is_empty() || parts.len() > 3 {
            return None;
        }
        let units = [3600, 60, 1];
        for (p, unit) in parts.iter().zip(units) {
            secs_of_day += num(p)? * unit;
        }
        if let Some(f) = fraction {
            let digits: String = f.chars().take(9).collect();
            nanos = format!("{digits:0<9}").parse().ok()?;
        }
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + secs_of_day - offset, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Prints inspect results as docker does: the JSON array (indented), or one template
/// line per object (an empty line when nothing was printed, even when the template
/// fails).
pub fn print_inspect(raws: &[hyper::body::Bytes], template: Option<&Template>) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout();
    match template {
        Some(t) => {
            let mut text = String::new();
            let mut failed = None;
            for raw in raws {
                let value: Value = serde_json::from_slice(raw)?;
                match t.render(&value, None) {
                    Ok(line) => {
                        text.push_str(&line);
                        text.push('\n');
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if text.is_empty() {
                text.push('\n');
            }
            out.write_all(text.as_bytes())?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        None => {
            let mut joined = b"[".to_vec();
            for (i, raw) in raws.iter().enumerate() {
                if i > 0 {
                    joined.push(b',');
                }
                joined.extend_from_slice(raw);
            }
            joined.push(b']');
            writeln!(out, "{}", indent_json(&joined))?;
        }
    }
    Ok(())
}

/// docker's memory sizes: binary units, four significant digits ("7.763GiB").
pub fn bytes_size(bytes: i64) -> String {
    let (size, unit) = scaled(
        bytes as f64,
        1024.0,
        &["B", "KiB", "MiB", "GiB", "TiB", "PiB"],
    );
    format!("{}{unit}", format_g(size, 4))
}

/// go-units' `HumanDuration`.
pub fn human_duration(seconds: i64) -> String {
    let minutes = seconds / 60;
    let hours = (seconds as f64 / 3600.0).round() as i64;
    if seconds < 1 {
        "Less than a second".to_string()
    } else if seconds == 1 {
        "1 second".to_string()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".to_string()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".to_string()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", seconds / 3600 / 24 / 365)
    }
}

/// "5 minutes ago" for a unix time.
pub fn since(created: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    format!("{} ago", human_duration(now - created))
}

/// Go's `time.Time.String()` for a unix time, in UTC: "2026-11-28 15:44:21 +0000 UTC".
pub fn go_time(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = polis_runtime::state::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} +0000 UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// docker's `Ellipsis`: at most `width` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `sha256:0123456789abcdef…` → `0123456789ab`.
pub fn short_id(id: &str) -> String {
    let hex = id.split_once(':').map(|(_, h)| h).unwrap_or(id);
    hex.chars().take(12).collect()
}

/// Go's `json.Indent(…, "", "    ")`: the daemon's JSON re-indented, its key order kept.
pub fn indent_json(raw: &[u8]) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut need_indent = false;
    let text = String::from_utf8_lossy(raw);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"    ".repeat(depth));
    };
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c.is_ascii_whitespace() {
            continue;
        }
        if need_indent && c != ']' && c != '}' {
            need_indent = false;
            depth += 1;
            newline(&mut out, depth);
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                need_indent = true;
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            '}' | ']' => {
                if need_indent {
                    need_indent = false;
                } else {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_and_durations_as_docker_prints_them() {
        assert_eq!(human_size(2_130_000), "2.13MB");
        assert_eq!(human_size(1_984_187), "1.98MB");
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(12_000), "12kB");
        assert_eq!(human_size(999), "999B");
        assert_eq!(bytes_size(8_335_675_392), "7.763GiB");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(300), "5 minutes");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 86_400), "3 days");
        assert_eq!(go_time(1_795_880_661), "2026-11-28 15:44:21 +0000 UTC");
    }

    #[test]
    fn templates_and_tables() {
        let t = Template::parse("table {{.Repository}}\\t{{json .Tag}}").unwrap();
        assert!(t.is_table());
        let row = json!({"Repository": "busybox", "Tag": "local"});
        assert_eq!(t.render(&row, Some("row")).unwrap(), "busybox\t\"local\"");
        assert_eq!(
            t.render_header(&[("Repository", "REPOSITORY"), ("Tag", "TAG")]),
            "REPOSITORY\tTAG"
        );
        let e = t.render(&json!({}), Some("*formatter.imageContext"));
        assert_eq!(
            e.unwrap_err().to_string(),
            "template parsing error: template: :1:2: executing \"\" at <.Repository>: can't evaluate field Repository in type *formatter.imageContext"
        );
        let t = Template::parse("{{len .A}} {{.B.C}}").unwrap();
        let v = json!({"A": [1, 2], "B": {"C": ["x", "y"]}});
        assert_eq!(t.render(&v, None).unwrap(), "2 [x y]");
        let t = Template::parse("{{.Id}} {{.Nope.X}}").unwrap();
        assert_eq!(
            t.render(&json!({"Id": "x"}), None).unwrap_err().to_string(),
            "template parsing error: template: :1:15: executing \"\" at <.Nope.X>: map has no entry for key \"Nope\""
        );
        assert!(Template::parse("{{nosuch .A}}").is_err());
        assert_eq!(
            tabwrite("REPOSITORY\tTAG\tSIZE\nbusybox\tlocal\t1.98MB\n"),
            "REPOSITORY   TAG       SIZE\nbusybox      local     1.98MB\n"
        );
    }

    #[test]
    fn quotes_labels_and_timestamps() {
        assert_eq!(go_quote("sh -c \"x\"\n"), "\"sh -c \\\"x\\\"\\n\"");
        let t = Template::parse("{{.Label \"a.b\"}}|{{.Label \"nope\"}}|{{json .}}").unwrap();
        let row = json!({"Label": {"a.b": "v"}, "ID": "x"});
        assert_eq!(t.render(&row, Some("row")).unwrap(), "v||{\"ID\":\"x\"}");
        let epoch = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        assert_eq!(timestamp("10m", epoch).unwrap(), "999400");
        assert_eq!(timestamp("1700000000", epoch).unwrap(), "1700000000");
        assert_eq!(
            timestamp("2020-01-01T00:00:00Z", epoch).unwrap(),
            "1577836800.000000000"
        );
        assert_eq!(
            timestamp("2020-01-01", epoch).unwrap(),
            "1577836800.000000000"
        );
        assert_eq!(
            timestamp("2020-01-01T01:00:00.5+01:00", epoch).unwrap(),
            "1577836800.500000000"
        );
        assert!(timestamp("yesterday", epoch).is_err());
        assert_eq!(
            tabwrite_with("UID\tPID\tCMD\nroot\t1\tsleep\n", 20, 3),
            "UID                 PID                 CMD\nroot                1                   sleep\n"
        );
    }

    #[test]
    fn json_indented_as_go_does() {
        let raw = br#"[{"Id":"x","A":[],"B":{"C":[1,2]},"S":"a,b:{"}]"#;
        assert_eq!(
            indent_json(raw),
            "[\n    {\n        \"Id\": \"x\",\n        \"A\": [],\n        \"B\": {\n            \"C\": [\n                1,\n                2\n            ]\n        },\n        \"S\": \"a,b:{\"\n    }\n]"
        );
    }
}

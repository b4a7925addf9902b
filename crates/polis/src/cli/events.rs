//! `polis events`: the daemon's event stream, printed as docker prints it (a line per
//! event: its time, type, action, actor and attributes) or through a Go template.

use std::io::Write;

use anyhow::{anyhow, Result};
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use super::client::{body_reader, empty, query, Client};
use super::format::{self, Template};
use super::StatusError;

#[derive(Args)]
pub struct EventsArgs {
    /// Filter output based on conditions provided.
    #[arg(short, long, value_name = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template: 'json' prints each event as JSON, or a
    /// Go template such as '{{.Type}} {{.Action}}'.
    #[arg(long, value_name = "string")]
    format: Option<String>,
    /// Show all events created since timestamp.
    #[arg(long, value_name = "string")]
    since: Option<String>,
    /// Stream events until this timestamp.
    #[arg(long, value_name = "string")]
    until: Option<String>,
}

/// How an event is printed.
enum Output {
    Plain,
    /// The event's JSON as the daemon sent it (`json`, `{{json .}}`).
    Json,
    Template(Template),
}

/// An event as docker's templates see it: its Go field names.
fn template_value(e: &Value) -> Value {
    let text = |k: &str| e.get(k).cloned().unwrap_or(json!(""));
    json!({
        "Status": text("status"),
        "ID": text("id"),
        "From": text("from"),
        "Type": text("Type"),
        "Action": text("Action"),
        "Actor": {
            "ID": e["Actor"].get("ID").cloned().unwrap_or(json!("")),
            "Attributes": e["Actor"].get("Attributes").cloned().unwrap_or(json!({})),
        },
        "Scope": text("scope"),
        "Time": e.get("time").cloned().unwrap_or(json!(0)),
        "TimeNano": e.get("timeNano").cloned().unwrap_or(json!(0)),
    })
}

/// The format asked for, checked on an empty event as docker checks it (exit 64).
fn output(format: Option<&str>) -> Result<Output> {
    let bad = |e: anyhow::Error| StatusError {
        code: 64,
        message: format!("Error parsing format: {e:#}"),
    };
    match format.map(str::trim) {
        None | Some("") => Ok(Output::Plain),
        Some("json" | "{{json .}}") => Ok(Output::Json),
        Some(f) => {
            let t = Template::parse(f)
                .map_err(bad)?
                .with_maps(&["Actor.Attributes"]);
            t.render(&template_value(&json!({})), Some("events.Message"))
                .map_err(bad)?;
            Ok(Output::Template(t))
        }
    }
}

/// docker's `2006-01-02T15:04:05.000000000Z07:00`, in UTC.
fn event_time(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = polis_runtime::state::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// docker's plain line: time, type, action, actor ID, then the attributes sorted by key.
fn plain(e: &Value) -> String {
    let nanos = e["timeNano"].as_i64().unwrap_or(0);
    let secs = e["time"].as_i64().unwrap_or(0);
    let mut line = String::new();
    if nanos != 0 {
        line.push_str(&event_time(nanos));
        line.push(' ');
    } else if secs != 0 {
        line.push_str(&event_time(secs * 1_000_000_000));
        line.push(' ');
    }
    let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
    line.push_str(&format!(
        "{} {} {}",
        s("Type"),
        s("Action"),
        e["Actor"]["ID"].as_str().unwrap_or_default()
    ));
    if let Some(attrs) = e["Actor"]["Attributes"]
        .as_object()
        .filter(|a| !a.is_empty())
    {
        let mut keys: Vec<&String> = attrs.keys().collect();
        keys.sort();
        let pairs: Vec<String> = keys
            .iter()
            .map(|k| format!("{k}={}", attrs[*k].as_str().unwrap_or_default()))
            .collect();
        line.push_str(&format!(" ({})", pairs.join(", ")));
    }
    line
}

/// A `--since`/`--until` value as the daemon takes it (`SECONDS[.NANOS]`).
fn when(value: Option<&str>, now: std::time::SystemTime) -> Result<Option<String>> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            format::timestamp(v, now).map_err(|e| {
                let text = e.to_string();
                anyhow!(
                    "{}",
                    text.trim_start_matches("invalid value for \"since\": ")
                )
            })
        })
        .transpose()
}

pub async fn events(c: &Client, a: EventsArgs) -> Result<()> {
    let out = output(a.format.as_deref())?;
    let now = std::time::SystemTime::now();
    let since = when(a.since.as_deref(), now)?;
    let until = when(a.until.as_deref(), now)?;
    let filters = super::containers::filters_query(&a.filter)?;
    let mut pairs = Vec::new();
    if let Some(f) = &filters {
        pairs.push(("filters", f.as_str()));
    }
    if let Some(s) = &since {
        pairs.push(("since", s.as_str()));
    }
    if let Some(u) = &until {
        pairs.push(("until", u.as_str()));
    }
    let path = if pairs.is_empty() {
        "/events".to_string()
    } else {
        format!("/events?{}", query(&pairs))
    };
    let response = c.send(Method::GET, &path, empty(), None).await?;
    let mut lines = tokio::io::BufReader::new(body_reader(response)).lines();
    let mut stdout = std::io::stdout();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let event: Value = serde_json::from_str(line)?;
        let text = match &out {
            Output::Plain => plain(&event),
            Output::Json => line.to_string(),
            Output::Template(t) => t.render(&template_value(&event), Some("events.Message"))?,
        };
        // A reader that went away (`| head`) ends the stream, as it would docker's.
        match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            r => r?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_docker_prints_them() {
        let e: Value = serde_json::from_str(r#"{"status":"die","id":"c0","from":"busybox:local","Type":"container","Action":"die","Actor":{"ID":"c0","Attributes":{"name":"evt","image":"busybox:local","exitCode":"0"}},"scope":"local","time":1795868826,"timeNano":1795868826662325006}"#).unwrap();
        assert_eq!(
            plain(&e),
            "2026-11-28T12:27:06.662325006Z container die c0 (exitCode=0, image=busybox:local, name=evt)"
        );
        let n: Value = serde_json::from_str(
            r#"{"Type":"network","Action":"create","Actor":{"ID":"n1","Attributes":{}},"scope":"local","time":1,"timeNano":1000000005}"#,
        )
        .unwrap();
        assert_eq!(
            plain(&n),
            "1970-01-01T00:00:01.000000005Z network create n1"
        );
        let Output::Template(t) = output(Some(
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.ID}}",
        ))
        .unwrap() else {
            panic!("a template");
        };
        assert_eq!(
            t.render(&template_value(&e), Some("events.Message"))
                .unwrap(),
            "container die evt c0"
        );
        // A key an event's attributes lack prints as Go prints it.
        let n_named = t
            .render(&template_value(&n), Some("events.Message"))
            .unwrap();
        assert_eq!(n_named, "network create <no value> ");
        assert!(matches!(output(Some("json")), Ok(Output::Json)));
        let bad = output(Some("{{.Nope}}")).err().unwrap();
        assert_eq!(bad.downcast_ref::<StatusError>().unwrap().code, 64);
    }
}

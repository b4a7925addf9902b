//! `polis volume create|ls|inspect|rm|prune`: the requests docker sends for the same
//! flags, and its output (table, templates, JSON).

use std::io::{BufRead, Write};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Map, Value};

use super::client::{self, path_escape, query, Client, DaemonError};
use super::format::{self, Template};
use super::netopts::natural_less;
use super::StatusError;

const LS_FORMAT: &str = "table {{.Driver}}\t{{.Name}}";
const LS_TITLES: &[(&str, &str)] = &[
    ("Name", "VOLUME NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
    ("Group", "GROUP"),
    ("Availability", "AVAILABILITY"),
    ("Status", "STATUS"),
];

#[derive(Args)]
pub struct VolumeArgs {
    #[command(subcommand)]
    command: VolumeCommand,
}

/// `polis volume <verb>`.
#[derive(Subcommand)]
enum VolumeCommand {
    /// Create a volume.
    Create(CreateArgs),
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes.
    Inspect(InspectArgs),
    /// Remove one or more volumes. You cannot remove a volume that is in use by a
    /// container.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes.
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Specify volume driver name.
    #[arg(short, long, value_name = "string", default_value = "local")]
    driver: String,
    /// Set metadata for a volume.
    #[arg(long = "label", value_name = "list")]
    labels: Vec<String>,
    /// Set driver specific options.
    #[arg(short = 'o', long = "opt", value_name = "map")]
    opts: Vec<String>,
    /// Specify volume name.
    #[arg(long = "name", value_name = "string", hide = true)]
    name_flag: Option<String>,
    #[arg(value_name = "VOLUME")]
    name: Option<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Provide filter values (e.g. "dangling=true").
    #[arg(short, long, value_name = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or a
    /// Go template.
    #[arg(long, value_name = "string")]
    format: Option<String>,
    /// Only display volume names.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a custom template: 'json' or a Go template.
    #[arg(short, long, value_name = "string")]
    format: Option<String>,
    #[arg(value_name = "VOLUME", required = true)]
    volumes: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes.
    #[arg(short, long)]
    force: bool,
    #[arg(value_name = "VOLUME", required = true)]
    volumes: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones.
    #[arg(short, long)]
    all: bool,
    /// Provide filter values (e.g. "label=<label>").
    #[arg(long, value_name = "filter")]
    filter: Vec<String>,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
}

pub async fn volume(c: &Client, a: VolumeArgs) -> Result<()> {
    match a.command {
        VolumeCommand::Create(a) => create(c, a).await,
        VolumeCommand::Ls(a) => ls(c, a).await,
        VolumeCommand::Inspect(a) => inspect(c, a).await,
        VolumeCommand::Rm(a) => remove(c, a).await,
        VolumeCommand::Prune(a) => prune(c, a).await,
    }
}

/// `KEY=VALUE` strings as a map (a bare key maps to ""; the last one wins).
fn kv_map(list: &[String]) -> Map<String, Value> {
    list.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), json!(v)),
            None => (l.clone(), json!("")),
        })
        .collect()
}

/// The create body as docker's (empty fields left out).
fn create_body(a: &CreateArgs) -> Result<Value> {
    let name = match (&a.name, &a.name_flag) {
        (Some(n), Some(f)) if n != f => anyhow::bail!(
            "conflicting options: cannot specify a volume-name through both --name and as a positional arg"
        ),
        (Some(n), _) | (None, Some(n)) => n.clone(),
        (None, None) => String::new(),
    };
    let mut body = Map::new();
    body.insert("Driver".into(), json!(a.driver));
    let opts = kv_map(&a.opts);
    if !opts.is_empty() {
        body.insert("DriverOpts".into(), Value::Object(opts));
    }
    let labels = kv_map(&a.labels);
    if !labels.is_empty() {
        body.insert("Labels".into(), Value::Object(labels));
    }
    if !name.is_empty() {
        body.insert("Name".into(), json!(name));
    }
    Ok(Value::Object(body))
}

async fn create(c: &Client, a: CreateArgs) -> Result<()> {
    let body = create_body(&a)?;
    let created = c.post_json("/volumes/create", &body).await?;
    println!("{}", created["Name"].as_str().unwrap_or_default());
    Ok(())
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// One row of `volume ls` with the fields docker's template knows.
fn volume_row(v: &Value) -> Value {
    let labels = v["Labels"].as_object().cloned().unwrap_or_default();
    let mut joined: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    joined.sort();
    let usage = |key: &str| match v["UsageData"][key].as_i64() {
        Some(n) if key == "Size" => format::human_size_precision(n, 4),
        Some(n) => n.to_string(),
        None => "N/A".to_string(),
    };
    json!({
        "Name": text(v, "Name"),
        "Driver": text(v, "Driver"),
        "Scope": text(v, "Scope"),
        "Mountpoint": text(v, "Mountpoint"),
        "Labels": joined.join(","),
        "Label": labels,
        "Links": usage("RefCount"),
        "Size": usage("Size"),
        // Cluster volumes only.
        "Group": "N/A",
        "Availability": "N/A",
        "Status": "N/A",
    })
}

async fn ls(c: &Client, a: LsArgs) -> Result<()> {
    let path = match super::containers::filters_query(&a.filter)? {
        Some(f) => format!("/volumes?{}", query(&[("filters", &f)])),
        None => "/volumes".to_string(),
    };
    let list = c.json(&path).await?;
    for w in list["Warnings"].as_array().into_iter().flatten() {
        eprintln!("{}", w.as_str().unwrap_or_default());
    }
    let mut volumes = list["Volumes"].as_array().cloned().unwrap_or_default();
    volumes.sort_by(|x, y| {
        let (x, y) = (text(x, "Name"), text(y, "Name"));
        if natural_less(x, y) {
            std::cmp::Ordering::Less
        } else if natural_less(y, x) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    let rows: Vec<Value> = volumes.iter().map(volume_row).collect();
    let format = match a.format.as_deref().unwrap_or("table") {
        "table" if a.quiet => "{{.Name}}",
        "table" => LS_FORMAT,
        f => f,
    };
    super::images::print_rows(format, LS_TITLES, "*formatter.volumeContext", &rows)
}

fn not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<DaemonError>()
        .is_some_and(|d| d.status == hyper::StatusCode::NOT_FOUND)
}

/// A template sees docker's typed volume, where a null map is an empty one (`map[]`).
fn typed_maps(raw: &[u8]) -> Result<hyper::body::Bytes> {
    let mut v: Value = serde_json::from_slice(raw).context("decode the volume")?;
    for key in ["Labels", "Options"] {
        if v.get(key).is_some_and(Value::is_null) {
            v[key] = json!({});
        }
    }
    Ok(serde_json::to_vec(&v)?.into())
}

async fn inspect(c: &Client, a: InspectArgs) -> Result<()> {
    let template = match a.format.as_deref() {
        None | Some("") => None,
        Some(f) => Some(Template::parse(f)?),
    };
    let mut raws = Vec::new();
    let mut errors = Vec::new();
    for name in &a.volumes {
        let path = format!("/volumes/{}", path_escape(name));
        match c.bytes(Method::GET, &path).await {
            Ok(raw) if template.is_some() => raws.push(typed_maps(&raw)?),
            Ok(raw) => raws.push(raw),
            Err(e) if not_found(&e) => errors.push(format!("{e:#}")),
            Err(e) => return Err(e),
        }
    }
    format::print_inspect(&raws, template.as_ref())?;
    if !errors.is_empty() {
        return Err(StatusError {
            code: 1,
            message: errors.join("\n"),
        }
        .into());
    }
    Ok(())
}

async fn remove(c: &Client, a: RmArgs) -> Result<()> {
    let mut errors = Vec::new();
    for name in &a.volumes {
        let mut path = format!("/volumes/{}", path_escape(name));
        if a.force {
            path.push_str("?force=1");
        }
        match c.send(Method::DELETE, &path, client::empty(), None).await {
            Ok(_) => println!("{name}"),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        return Err(StatusError {
            code: 1,
            message: errors.join("\n"),
        }
        .into());
    }
    Ok(())
}

async fn prune(c: &Client, a: PruneArgs) -> Result<()> {
    let mut filters = a.filter.clone();
    let mut warning =
        "WARNING! This will remove anonymous local volumes not used by at least one container.";
    if a.all {
        if filters.iter().any(|f| {
            f.split('=')
                .next()
                .is_some_and(|k| k.trim().eq_ignore_ascii_case("all"))
        }) {
            anyhow::bail!("conflicting options: cannot specify both --all and --filter all=1");
        }
        filters.push("all=true".into());
        warning = "WARNING! This will remove all local volumes not used by at least one container.";
    }
    if !a.force {
        let mut out = std::io::stdout();
        write!(out, "{warning}\nAre you sure you want to continue? [y/N] ")?;
        out.flush()?;
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("read the answer")?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Err(StatusError {
                code: 1,
                message: "volume prune has been cancelled".into(),
            }
            .into());
        }
    }
    let path = match super::containers::filters_query(&filters)? {
        Some(f) => format!("/volumes/prune?{}", query(&[("filters", &f)])),
        None => "/volumes/prune".to_string(),
    };
    let report = c.post_json(&path, &Value::Null).await?;
    let deleted: Vec<&str> = report["VolumesDeleted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut out = String::new();
    let mut reclaimed = 0;
    if !deleted.is_empty() {
        out.push_str("Deleted Volumes:\n");
        for name in deleted {
            out.push_str(name);
            out.push('\n');
        }
        out.push('\n');
        reclaimed = report["SpaceReclaimed"].as_i64().unwrap_or(0);
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        format::human_size_precision(reclaimed, 4)
    ));
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_is_dockers() {
        let a = CreateArgs {
            driver: "local".into(),
            labels: vec!["a=b".into(), "c".into()],
            opts: vec!["type=tmpfs".into()],
            name_flag: None,
            name: Some("v".into()),
        };
        assert_eq!(
            create_body(&a).unwrap(),
            json!({"Driver":"local","DriverOpts":{"type":"tmpfs"},"Labels":{"a":"b","c":""},"Name":"v"})
        );
        let bare = CreateArgs {
            driver: "local".into(),
            labels: vec![],
            opts: vec![],
            name_flag: None,
            name: None,
        };
        assert_eq!(create_body(&bare).unwrap(), json!({"Driver":"local"}));
    }
}

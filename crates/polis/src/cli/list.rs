//! `ps` and `inspect`: containers listed and shown as docker prints them (its table
//! columns and truncation, its template fields, its JSON).

use anyhow::{bail, Result};
use clap::Args;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::client::{path_escape, query, Client, DaemonError};
use super::format::{self, Template};

const PS_FORMAT: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";
const PS_TITLES: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Names", "NAMES"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Networks", "NETWORKS"),
];

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    all: bool,
    /// Filter output based on conditions provided.
    #[arg(short, long, value_name = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or a
    /// Go template such as '{{.Names}} {{.Status}}'.
    #[arg(long, value_name = "string")]
    format: Option<String>,
    /// Show n last created containers (includes all states).
    #[arg(short = 'n', long, value_name = "int", default_value_t = -1, allow_negative_numbers = true)]
    last: i64,
    /// Show the latest created container (includes all states).
    #[arg(short, long)]
    latest: bool,
    /// Don't truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// Only display container IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Display total file sizes.
    #[arg(short, long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    size: Option<bool>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a Go template such as '{{.State.Status}}' or '{{json .Config}}'.
    #[arg(short, long, value_name = "string")]
    format: Option<String>,
    /// Display total file sizes if the type is container.
    #[arg(short, long)]
    size: bool,
    /// Only inspect objects of the given type.
    #[arg(long = "type", value_name = "string")]
    kind: Option<String>,
    #[arg(value_name = "NAME|ID", required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct ContainerInspectArgs {
    /// Format output using a Go template such as '{{.State.Status}}' or '{{json .Config}}'.
    #[arg(short, long, value_name = "string")]
    format: Option<String>,
    /// Display total file sizes.
    #[arg(short, long)]
    size: bool,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The image column: the short id when the container was made from an id, else the
/// name without a digest and without docker.io's default prefixes.
fn image_column(image: &str, image_id: &str, trunc: bool) -> String {
    if image.is_empty() {
        return "<no image>".to_string();
    }
    if !trunc {
        return image.to_string();
    }
    if format::short_id(image_id) == format::short_id(image) {
        return format::short_id(image);
    }
    let name = match image.split_once('@') {
        Some((name, _)) => name,
        None => image,
    };
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
        .to_string()
}

/// docker's `DisplayablePorts`: "0.0.0.0:8080->80/tcp, 9000-9001/tcp".
fn ports_column(ports: &[Value]) -> String {
    let mut ports: Vec<(u16, String, u16, String)> = ports
        .iter()
        .map(|p| {
            (
                p["PrivatePort"].as_u64().unwrap_or(0) as u16,
                text(p, "IP").to_string(),
                p["PublicPort"].as_u64().unwrap_or(0) as u16,
                text(p, "Type").to_string(),
            )
        })
        .collect();
    ports.sort();
    let join_host = |ip: &str, port: &str| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    let form = |key: &(String, String), first: u16, last: u16| {
        let range = if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        };
        if key.0.is_empty() {
            format!("{range}/{}", key.1)
        } else {
            format!("{}->{range}/{}", join_host(&key.0, &range), key.1)
        }
    };
    let mut groups: Vec<((String, String), u16, u16)> = Vec::new();
    let mut result = Vec::new();
    let mut mappings = Vec::new();
    for (private, ip, public, kind) in ports {
        if !ip.is_empty() && public != private {
            mappings.push(format!(
                "{}->{private}/{kind}",
                join_host(&ip, &public.to_string())
            ));
            continue;
        }
        let key = (ip, kind);
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) if private == g.2.wrapping_add(1) => g.2 = private,
            Some(g) => {
                result.push(form(&g.0, g.1, g.2));
                g.1 = private;
                g.2 = private;
            }
            None => groups.push((key, private, private)),
        }
    }
    for g in &groups {
        result.push(form(&g.0, g.1, g.2));
    }
    result.extend(mappings);
    result.join(", ")
}

/// One row per container with every field docker's templates know.
fn container_row(c: &Value, trunc: bool) -> Value {
    let id = text(c, "Id");
    let created = c["Created"].as_i64().unwrap_or(0);
    let names: Vec<String> = c["Names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|n| n.trim_start_matches('/').to_string())
        .collect();
    let names = if trunc {
        names
            .iter()
            .find(|n| !n.contains('/'))
            .cloned()
            .unwrap_or_default()
    } else {
        names.join(",")
    };
    let command = text(c, "Command");
    let command = if trunc {
        format::ellipsis(command, 20)
    } else {
        command.to_string()
    };
    let labels = c["Labels"].as_object().cloned().unwrap_or_default();
    let mut joined: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    joined.sort();
    let mounts = c["Mounts"].as_array().cloned().unwrap_or_default();
    let mount_names: Vec<String> = mounts
        .iter()
        .map(|m| {
            let name = match text(m, "Name") {
                "" => text(m, "Source"),
                n => n,
            };
            if trunc {
                format::ellipsis(name, 15)
            } else {
                name.to_string()
            }
        })
        .collect();
    let local_volumes = mounts
        .iter()
        .filter(|m| text(m, "Driver") == "local")
        .count();
    let mut networks: Vec<&String> = c["NetworkSettings"]["Networks"]
        .as_object()
        .map(|n| n.keys().collect())
        .unwrap_or_default();
    networks.sort();
    let size_rw = c["SizeRw"].as_i64().unwrap_or(0);
    let size_root = c["SizeRootFs"].as_i64().unwrap_or(0);
    let mut size = format::human_size(size_rw);
    if size_root > 0 {
        size = format!("{size} (virtual {})", format::human_size(size_root));
    }
    json!({
        "Command": format::go_quote(&command),
        "CreatedAt": format::go_time(created),
        "ID": if trunc { format::short_id(id) } else { id.to_string() },
        "Image": image_column(text(c, "Image"), text(c, "ImageID"), trunc),
        "Labels": joined.join(","),
        "Label": labels,
        "LocalVolumes": local_volumes.to_string(),
        "Mounts": mount_names.join(","),
        "Names": names,
        "Platform": null,
        "Networks": networks.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
        "Ports": ports_column(c["Ports"].as_array().map(Vec::as_slice).unwrap_or_default()),
        "RunningFor": format::since(created),
        "Size": size,
        "State": text(c, "State"),
        "Status": text(c, "Status"),
    })
}

pub async fn ps(c: &Client, a: PsArgs) -> Result<()> {
    let mut format = a.format.clone().unwrap_or_default();
    if !format.is_empty() && a.quiet {
        eprintln!("WARNING: Ignoring custom format, because both --format and --quiet are set.");
    }
    // As docker: a template that shows sizes asks the daemon for them.
    let mut size = a.size.unwrap_or(false);
    if !format.is_empty() {
        let template = Template::parse(if format == "table" {
            PS_FORMAT
        } else {
            &format
        })?;
        if !a.quiet && a.size.is_none() && template.uses_field("Size") {
            size = true;
        }
    }
    let last = if a.latest && a.last == -1 { 1 } else { a.last };
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if a.all {
        pairs.push(("all", "1".into()));
    }
    if let Some(f) = super::containers::filters_query(&a.filter)? {
        pairs.push(("filters", f));
    }
    if last > 0 {
        pairs.push(("limit", last.to_string()));
    }
    if size {
        pairs.push(("size", "1".into()));
    }
    let q: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let path = if q.is_empty() {
        "/containers/json".to_string()
    } else {
        format!("/containers/json?{}", query(&q))
    };
    let list = c.json(&path).await?;
    let rows: Vec<Value> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|ct| container_row(ct, !a.no_trunc))
        .collect();
    if a.quiet {
        format = "{{.ID}}".to_string();
    } else if format.is_empty() || format == "table" {
        format = PS_FORMAT.to_string();
        if size {
            format.push_str("\t{{.Size}}");
        }
    }
    super::images::print_rows(&format, PS_TITLES, "*formatter.ContainerContext", &rows)
}

/// `polis inspect`: each name as a container, else as an image (or as `--type` says).
pub async fn inspect(c: &Client, a: InspectArgs) -> Result<()> {
    let template = a.format.as_deref().map(Template::parse).transpose()?;
    let kind = a.kind.as_deref().unwrap_or("");
    if !matches!(kind, "" | "container" | "image") {
        bail!("\"{kind}\" is not a valid value for --type");
    }
    let mut raws = Vec::new();
    let mut errors = Vec::new();
    for name in &a.names {
        let container_path = if a.size {
            format!("/containers/{}/json?size=1", path_escape(name))
        } else {
            format!("/containers/{}/json", path_escape(name))
        };
        let found = match kind {
            "container" => c.bytes(Method::GET, &container_path).await,
            "image" => {
                c.bytes(Method::GET, &format!("/images/{}/json", path_escape(name)))
                    .await
            }
            _ => match c.bytes(Method::GET, &container_path).await {
                Err(e) if not_found(&e) => c
                    .bytes(Method::GET, &format!("/images/{}/json", path_escape(name)))
                    .await
                    .map_err(|e| {
                        if not_found(&e) {
                            anyhow::anyhow!("Error: No such object: {name}")
                        } else {
                            e
                        }
                    }),
                other => other,
            },
        };
        match found {
            Ok(raw) => raws.push(raw),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    format::print_inspect(&raws, template.as_ref())?;
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

fn not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<DaemonError>()
        .is_some_and(|d| d.status == StatusCode::NOT_FOUND)
}

pub async fn container_inspect(c: &Client, a: ContainerInspectArgs) -> Result<()> {
    inspect(
        c,
        InspectArgs {
            format: a.format,
            size: a.size,
            kind: Some("container".into()),
            names: a.containers,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_as_docker_shows_them() {
        let c = json!({
            "Id": "145bbd5e0b2ad2c1e593b5531839ccfe76591db7da66c5a5627bd7845dd5218a",
            "Names": ["/web"], "Image": "docker.io/library/busybox:local",
            "ImageID": "sha256:f9c26bc7fc32641e6ba65f32ed539592d831277df73f1ef92bdef247222c45e5",
            "Command": "sh -c 'while true; do sleep 1; done'", "Created": 1795868775,
            "Ports": [
                {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                {"PrivatePort": 9000, "Type": "tcp"}, {"PrivatePort": 9001, "Type": "tcp"}
            ],
            "Labels": {"b": "2", "a": "1"}, "State": "running", "Status": "Up 4 seconds",
            "NetworkSettings": {"Networks": {"bridge": {}}}, "Mounts": []
        });
        let row = container_row(&c, true);
        assert_eq!(row["ID"], "145bbd5e0b2a");
        assert_eq!(row["Image"], "busybox:local");
        assert_eq!(row["Command"], "\"sh -c 'while true; …\"");
        assert_eq!(row["Labels"], "a=1,b=2");
        assert_eq!(
            row["Ports"],
            "9000-9001/tcp, 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"
        );
        assert_eq!(row["Networks"], "bridge");
        assert_eq!(row["Size"], "0B");
        let full = container_row(&c, false);
        assert_eq!(full["Command"], "\"sh -c 'while true; do sleep 1; done'\"");
    }
}

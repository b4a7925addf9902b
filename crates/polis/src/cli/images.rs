//! The image verbs: images, import, tag, rmi, save, load, history, image inspect and
//! image prune, each printing what docker prints.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};

use super::client::{self, path_escape, query, Client};
use super::format::{self, Template};

const IMAGES_FORMAT: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
const IMAGES_DIGESTS_FORMAT: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
const IMAGES_TITLES: &[(&str, &str)] = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Digest", "DIGEST"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
];
const HISTORY_FORMAT: &str =
    "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
const HISTORY_TITLES: &[(&str, &str)] = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

#[derive(Args)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images).
    #[arg(short, long)]
    all: bool,
    /// Don't truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Show digests.
    #[arg(long)]
    digests: bool,
    /// Filter output based on conditions provided (dangling, label, before, since,
    /// reference).
    #[arg(short, long = "filter", value_name = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or a
    /// Go template such as '{{.Repository}}:{{.Tag}}'.
    #[arg(long)]
    format: Option<String>,
    /// Only images whose reference matches (a glob such as `busybox*`).
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones.
    #[arg(short, long)]
    all: bool,
    /// Provide filter values (e.g. "until=<timestamp>").
    #[arg(long, value_name = "filter")]
    filter: Vec<String>,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction to the created image.
    #[arg(short, long = "change", value_name = "CHANGE")]
    changes: Vec<String>,
    /// Set commit message for imported image.
    #[arg(short, long)]
    message: Option<String>,
    /// A root filesystem tarball, or - for STDIN.
    #[arg(value_name = "file|-")]
    source: String,
    /// The new image's name.
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

#[derive(Args)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    source: String,
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    target: String,
}

#[derive(Args)]
pub struct RmiArgs {
    /// Force removal of the image.
    #[arg(short, long)]
    force: bool,
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT.
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN.
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Suppress the load output.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Don't truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or a
    /// Go template such as '{{.ID}} {{.CreatedBy}}'.
    #[arg(long)]
    format: Option<String>,
    #[arg(value_name = "IMAGE")]
    image: String,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a Go template such as '{{.Id}}' or '{{json .Config}}'.
    #[arg(short, long)]
    format: Option<String>,
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

/// Prints `rows` with `format` (a table gets its header and aligned columns).
pub(super) fn print_rows(
    format: &str,
    titles: &[(&str, &str)],
    row_type: &str,
    rows: &[Value],
) -> Result<()> {
    let template = Template::parse(format)?;
    let mut text = String::new();
    if template.is_table() {
        text.push_str(&template.render_header(titles));
        text.push('\n');
    }
    for row in rows {
        text.push_str(&template.render(row, Some(row_type))?);
        text.push('\n');
    }
    if template.is_table() {
        text = format::tabwrite(&text);
    }
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

/// `busybox:local` → (`busybox`, `local`); a registry port is not a tag.
fn split_tag(reference: &str) -> (&str, &str) {
    let name_start = reference.rfind('/').map(|i| i + 1).unwrap_or(0);
    match reference[name_start..].rfind(':') {
        Some(i) => (
            &reference[..name_start + i],
            &reference[name_start + i + 1..],
        ),
        None => (reference, ""),
    }
}

fn str_list(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.starts_with("<none>"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// One row per repository and tag of each image, as docker's image formatter makes them
/// (with `digests`, one per tag and digest of the repository).
fn image_rows(images: &[Value], trunc: bool, digests_shown: bool) -> Vec<Value> {
    let mut rows = Vec::new();
    for image in images {
        let id = image.get("Id").and_then(Value::as_str).unwrap_or_default();
        let created = image.get("Created").and_then(Value::as_i64).unwrap_or(0);
        let size = image.get("Size").and_then(Value::as_i64).unwrap_or(0);
        let shared = image
            .get("SharedSize")
            .and_then(Value::as_i64)
            .unwrap_or(-1);
        let containers = image
            .get("Containers")
            .and_then(Value::as_i64)
            .unwrap_or(-1);
        let row = |repo: &str, tag: &str, digest: &str| {
            json!({
                "ID": if trunc { format::short_id(id) } else { id.to_string() },
                "Repository": repo,
                "Tag": tag,
                "Digest": digest,
                "CreatedSince": format::since(created),
                "CreatedAt": format::go_time(created),
                "Size": format::human_size(size),
                "VirtualSize": format::human_size(size),
                "SharedSize": if shared < 0 { "N/A".to_string() } else { format::human_size(shared) },
                "UniqueSize": if shared < 0 { "N/A".to_string() } else { format::human_size(size - shared) },
                "Containers": if containers < 0 { "N/A".to_string() } else { containers.to_string() },
            })
        };
        let tags = str_list(image, "RepoTags");
        let digests = str_list(image, "RepoDigests");
        if tags.is_empty() && digests.is_empty() {
            rows.push(row("<none>", "<none>", "<none>"));
            continue;
        }
        let digests_of = |repo: &str| -> Vec<&str> {
            digests
                .iter()
                .filter_map(|d| d.split_once('@'))
                .filter(|(r, _)| *r == repo)
                .map(|(_, d)| d)
                .collect()
        };
        let mut tagged_repos = Vec::new();
        for reference in &tags {
            let (repo, tag) = split_tag(reference);
            tagged_repos.push(repo.to_string());
            let repo_digests = digests_of(repo);
            if !digests_shown || repo_digests.is_empty() {
                rows.push(row(repo, tag, "<none>"));
            }
            for d in repo_digests.into_iter().filter(|_| digests_shown) {
                rows.push(row(repo, tag, d));
            }
        }
        // Digest-only references get rows of their own.
        for reference in &digests {
            let (repo, digest) = reference.split_once('@').unwrap_or((reference, ""));
            if tagged_repos.iter().any(|r| r == repo) {
                continue;
            }
            if digests_shown {
                rows.push(row(repo, "<none>", digest));
            } else {
                tagged_repos.push(repo.to_string());
                rows.push(row(repo, "<none>", ""));
            }
        }
    }
    rows
}

pub async fn list(c: &Client, a: ImagesArgs) -> Result<()> {
    let mut filter = a.filter.clone();
    if let Some(r) = &a.reference {
        filter.push(format!("reference={r}"));
    }
    let mut pairs = Vec::new();
    if a.all {
        pairs.push(("all", "1".to_string()));
    }
    if let Some(f) = super::containers::filters_query(&filter)? {
        pairs.push(("filters", f));
    }
    let path = if pairs.is_empty() {
        "/images/json".to_string()
    } else {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        format!("/images/json?{}", query(&pairs))
    };
    let images = c.json(&path).await?;
    let images = images.as_array().cloned().unwrap_or_default();
    let rows = image_rows(&images, !a.no_trunc, a.digests);
    let table = if a.digests {
        IMAGES_DIGESTS_FORMAT
    } else {
        IMAGES_FORMAT
    };
    let format = match (&a.format, a.quiet) {
        (Some(f), _) if f == "table" => table,
        (Some(f), _) => f.as_str(),
        (None, true) => "{{.ID}}",
        (None, false) => table,
    };
    print_rows(format, IMAGES_TITLES, "*formatter.imageContext", &rows)
}

pub async fn import(c: &Client, a: ImportArgs) -> Result<()> {
    let body = if a.source == "-" {
        client::streamed(tokio::io::stdin())
    } else {
        let file = tokio::fs::File::open(&a.source)
            .await
            .with_context(|| format!("open {}", a.source))?;
        client::streamed(file)
    };
    let mut pairs = vec![("fromSrc", "-")];
    if let Some(r) = &a.reference {
        pairs.push(("repo", r));
    }
    if let Some(m) = &a.message {
        pairs.push(("message", m));
    }
    for change in &a.changes {
        pairs.push(("changes", change));
    }
    let path = format!("/images/create?{}", query(&pairs));
    let response = c
        .send(Method::POST, &path, body, Some("text/plain"))
        .await?;
    let body = response.into_body().collect().await?.to_bytes();
    client::display_json_messages(&body, &mut std::io::stdout())
}

pub async fn tag(c: &Client, a: TagArgs) -> Result<()> {
    if a.target.contains('@') {
        bail!("refusing to create a tag with a digest reference");
    }
    let (repo, tag) = split_tag(&a.target);
    let tag = if tag.is_empty() { "latest" } else { tag };
    let path = format!(
        "/images/{}/tag?{}",
        path_escape(&a.source),
        query(&[("repo", repo), ("tag", tag)])
    );
    c.send(Method::POST, &path, client::empty(), None).await?;
    Ok(())
}

pub async fn remove(c: &Client, a: RmiArgs) -> Result<()> {
    let mut errors = Vec::new();
    // As docker: with --force, an image that does not exist is reported, not a failure.
    let mut fatal = false;
    let mut out = std::io::stdout();
    for image in &a.images {
        let mut path = format!("/images/{}", path_escape(image));
        if a.force {
            path.push_str("?force=1");
        }
        let result = async {
            let body = c.bytes(Method::DELETE, &path).await?;
            let items: Vec<Value> = serde_json::from_slice(&body)
                .with_context(|| format!("decode the answer to DELETE {path}"))?;
            Ok::<_, anyhow::Error>(items)
        }
        .await;
        match result {
            Ok(items) => {
                for item in items {
                    if let Some(t) = item.get("Untagged").and_then(Value::as_str) {
                        writeln!(out, "Untagged: {t}")?;
                    }
                    if let Some(d) = item.get("Deleted").and_then(Value::as_str) {
                        writeln!(out, "Deleted: {d}")?;
                    }
                }
            }
            Err(e) => {
                let not_found = e
                    .downcast_ref::<client::DaemonError>()
                    .is_some_and(|d| d.status == hyper::StatusCode::NOT_FOUND);
                fatal |= !a.force || !not_found;
                errors.push(format!("{e:#}"));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else if fatal {
        bail!("{}", errors.join("\n"))
    } else {
        eprintln!("{}", errors.join("\n"));
        Ok(())
    }
}

/// `image prune [-a]`: docker's warning and answer, then its report.
pub async fn prune(c: &Client, a: PruneArgs) -> Result<()> {
    if !a.force {
        use std::io::BufRead;
        let warning = if a.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("read the answer")?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Err(super::StatusError {
                code: 1,
                message: "Total reclaimed space: 0B".into(),
            }
            .into());
        }
    }
    let mut filter = a.filter.clone();
    filter.push(format!("dangling={}", !a.all));
    let f = super::containers::filters_query(&filter)?.unwrap_or_default();
    let path = format!("/images/prune?{}", query(&[("filters", &f)]));
    let report = c.post_json(&path, &Value::Null).await?;
    let mut out = String::new();
    let deleted = report["ImagesDeleted"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !deleted.is_empty() {
        out.push_str("Deleted Images:\n");
        for item in &deleted {
            if let Some(t) = item.get("Untagged").and_then(Value::as_str) {
                out.push_str(&format!("untagged: {t}\n"));
            }
            if let Some(d) = item.get("Deleted").and_then(Value::as_str) {
                out.push_str(&format!("deleted: {d}\n"));
            }
        }
        out.push('\n');
    }
    let space = report["SpaceReclaimed"].as_i64().unwrap_or(0);
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        format::human_size_precision(space, 4)
    ));
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

pub async fn save(c: &Client, a: SaveArgs) -> Result<()> {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let names: Vec<(&str, &str)> = a.images.iter().map(|n| ("names", n.as_str())).collect();
    let path = format!("/images/get?{}", query(&names));
    let response = c.send(Method::GET, &path, client::empty(), None).await?;
    let mut body = response.into_body();
    match &a.output {
        Some(output) => {
            // Written beside the target and renamed, so a failed save leaves no half file.
            let dir = output
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let (temp, mut file) = tempfile_in(dir)?;
            let written = async {
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame?.into_data() {
                        file.write_all(&data)
                            .with_context(|| format!("write {}", temp.display()))?;
                    }
                }
                file.sync_all()
                    .with_context(|| format!("sync {}", temp.display()))?;
                std::fs::rename(&temp, output)
                    .with_context(|| format!("rename {} to {}", temp.display(), output.display()))
            }
            .await;
            if written.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            written?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    out.write_all(&data).context("write to stdout")?;
                }
            }
            out.flush().context("write to stdout")?;
        }
    }
    Ok(())
}

/// A new file in `dir` for a save in progress.
pub(super) fn tempfile_in(dir: &std::path::Path) -> Result<(PathBuf, std::fs::File)> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let path = dir.join(format!(".polis-save-{}-{nanos}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    Ok((path, file))
}

pub async fn load(c: &Client, a: LoadArgs) -> Result<()> {
    let body = match &a.input {
        Some(input) => {
            let file = tokio::fs::File::open(input)
                .await
                .with_context(|| format!("open {}", input.display()))?;
            client::streamed(file)
        }
        None => {
            if std::io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            client::streamed(tokio::io::stdin())
        }
    };
    let quiet = a.quiet || !std::io::stdout().is_terminal();
    let path = if quiet {
        "/images/load?quiet=1"
    } else {
        "/images/load"
    };
    let response = c
        .send(Method::POST, path, body, Some("application/x-tar"))
        .await?;
    let body = response.into_body().collect().await?.to_bytes();
    client::display_json_messages(&body, &mut std::io::stdout())
}

pub async fn history(c: &Client, a: HistoryArgs) -> Result<()> {
    let path = format!("/images/{}/history", path_escape(&a.image));
    let items = c.json(&path).await?;
    let trunc = !a.no_trunc;
    let rows: Vec<Value> = items
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|h| {
            let id = h.get("Id").and_then(Value::as_str).unwrap_or_default();
            let created = h.get("Created").and_then(Value::as_i64).unwrap_or(0);
            let created_by = h
                .get("CreatedBy")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .replace('\t', " ");
            json!({
                "ID": if trunc { format::short_id(id) } else { id.to_string() },
                "CreatedSince": format::since(created),
                "CreatedAt": format::go_time(created)
                    .replacen(' ', "T", 1)
                    .replace(" +0000 UTC", "Z"),
                "CreatedBy": if trunc { format::ellipsis(&created_by, 45) } else { created_by },
                "Size": format::human_size(h.get("Size").and_then(Value::as_i64).unwrap_or(0)),
                "Comment": h.get("Comment").and_then(Value::as_str).unwrap_or_default(),
            })
        })
        .collect();
    let format = match (&a.format, a.quiet) {
        (Some(f), _) if f == "table" => HISTORY_FORMAT,
        (Some(f), _) => f.as_str(),
        (None, true) => "{{.ID}}",
        (None, false) => HISTORY_FORMAT,
    };
    print_rows(format, HISTORY_TITLES, "*image.historyContext", &rows)
}

pub async fn inspect(c: &Client, a: InspectArgs) -> Result<()> {
    let template = a.format.as_deref().map(Template::parse).transpose()?;
    let mut raws = Vec::new();
    let mut errors = Vec::new();
    for image in &a.images {
        let path = format!("/images/{}/json", path_escape(image));
        match c.bytes(Method::GET, &path).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references() {
        assert_eq!(split_tag("busybox:local"), ("busybox", "local"));
        assert_eq!(split_tag("127.0.0.1:5000/bb"), ("127.0.0.1:5000/bb", ""));
        assert_eq!(
            split_tag("127.0.0.1:5000/bb:v1"),
            ("127.0.0.1:5000/bb", "v1")
        );
    }
}

//! A container's filesystem: `export` (its rootfs as a tar), `commit` (a new image
//! from it) and `diff` (what changed since it was created).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;

use super::client::{self, path_escape, query, Client};

#[derive(Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT.
    #[arg(short, long, value_name = "string")]
    output: Option<PathBuf>,
    #[arg(value_name = "CONTAINER")]
    container: String,
}

#[derive(Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>").
    #[arg(short, long, value_name = "string")]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image.
    #[arg(short, long = "change", value_name = "list")]
    changes: Vec<String>,
    /// Commit message.
    #[arg(short, long, value_name = "string")]
    message: Option<String>,
    /// Pause container during commit.
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pause: bool,
    #[arg(value_name = "CONTAINER")]
    container: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

#[derive(Args)]
pub struct DiffArgs {
    #[arg(value_name = "CONTAINER")]
    container: String,
}

pub async fn export(c: &Client, a: ExportArgs) -> Result<()> {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let path = format!("/containers/{}/export", path_escape(&a.container));
    let response = c.send(Method::GET, &path, client::empty(), None).await?;
    let mut body = response.into_body();
    match &a.output {
        Some(output) => {
            // Written beside the target and renamed: a failed export leaves no half file.
            let dir = output
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let (temp, mut file) = super::images::tempfile_in(dir)?;
            let written = async {
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame?.into_data() {
                        file.write_all(&data)
                            .with_context(|| format!("write {}", temp.display()))?;
                    }
                }
                file.sync_all()?;
                std::fs::rename(&temp, output)
                    .with_context(|| format!("rename {} to {}", temp.display(), output.display()))
            }
            .await;
            if written.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            written
        }
        None => {
            let mut out = std::io::stdout().lock();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    out.write_all(&data).context("write to stdout")?;
                }
            }
            out.flush().context("write to stdout")
        }
    }
}

/// docker's `ParseNormalizedNamed`: a familiar name with docker.io's prefixes, split
/// into repository and tag (None when no tag was given).
fn normalize(reference: &str) -> (String, Option<String>) {
    let name_start = reference.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (repo, tag) = match reference[name_start..].rfind(':') {
        Some(i) => (
            &reference[..name_start + i],
            Some(reference[name_start + i + 1..].to_string()),
        ),
        None => (reference, None),
    };
    let repo = match repo.split_once('/') {
        None => format!("docker.io/library/{repo}"),
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => repo.to_string(),
        Some(_) => format!("docker.io/{repo}"),
    };
    (repo, tag)
}

pub async fn commit(c: &Client, a: CommitArgs) -> Result<()> {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    pairs.push(("author", a.author.clone().unwrap_or_default()));
    for change in &a.changes {
        pairs.push(("changes", change.clone()));
    }
    pairs.push(("comment", a.message.clone().unwrap_or_default()));
    pairs.push(("container", a.container.clone()));
    if !a.pause {
        pairs.push(("pause", "0".into()));
    }
    if let Some(r) = &a.reference {
        let (repo, tag) = normalize(r);
        pairs.push(("repo", repo));
        pairs.push(("tag", tag.unwrap_or_else(|| "latest".into())));
    }
    let q: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let answer = c
        .post_json(&format!("/commit?{}", query(&q)), &Value::Null)
        .await?;
    println!("{}", answer["Id"].as_str().unwrap_or_default());
    Ok(())
}

pub async fn diff(c: &Client, a: DiffArgs) -> Result<()> {
    let changes = c
        .json(&format!(
            "/containers/{}/changes",
            path_escape(&a.container)
        ))
        .await?;
    let mut out = String::new();
    for change in changes.as_array().into_iter().flatten() {
        let kind = match change["Kind"].as_u64() {
            Some(0) => "C",
            Some(1) => "A",
            Some(2) => "D",
            _ => "?",
        };
        out.push_str(&format!(
            "{kind} {}\n",
            change["Path"].as_str().unwrap_or_default()
        ));
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalized_as_docker_sends_them() {
        assert_eq!(
            normalize("repo:tag"),
            ("docker.io/library/repo".into(), Some("tag".into()))
        );
        assert_eq!(normalize("me/app"), ("docker.io/me/app".into(), None));
        assert_eq!(
            normalize("127.0.0.1:5000/app:v1"),
            ("127.0.0.1:5000/app".into(), Some("v1".into()))
        );
        assert_eq!(normalize("localhost/app"), ("localhost/app".into(), None));
    }
}

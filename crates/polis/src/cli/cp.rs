//! `polis cp`: files between a container and the local filesystem as tar streams
//! (`GET`/`HEAD`/`PUT /containers/{id}/archive`), placed and renamed as docker's
//! `cp` does; `-` streams the tar itself on stdin or stdout.

use std::io::IsTerminal;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use hyper::Method;
use serde_json::Value;

use super::client::{self, path_escape, query, Client};

#[derive(Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information).
    #[arg(short, long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH.
    #[arg(short = 'L', long = "follow-link")]
    follow_link: bool,
    /// Suppress progress output during copy. Progress output is automatically
    /// suppressed if no terminal is attached.
    #[arg(short, long)]
    quiet: bool,
    #[arg(value_name = "SRC")]
    source: String,
    #[arg(value_name = "DEST")]
    destination: String,
}

/// `CONTAINER:PATH` → (container, path); a local path (even with a colon, when it
/// starts with `/` or `.`) → None.
fn split_container_path(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (container, path) = arg.split_once(':')?;
    (!container.is_empty()).then_some((container, path))
}

pub async fn cp(c: &Client, a: CpArgs) -> Result<()> {
    match (
        split_container_path(&a.source),
        split_container_path(&a.destination),
    ) {
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
        (Some((container, path)), None) => from_container(c, &a, container, path).await,
        (None, Some((container, path))) => to_container(c, &a, container, path).await,
    }
}

/// The `X-Docker-Container-Path-Stat` header: base64 of a JSON object.
fn path_stat(response: &hyper::Response<hyper::body::Incoming>) -> Option<Value> {
    let header = response
        .headers()
        .get("X-Docker-Container-Path-Stat")?
        .to_str()
        .ok()?;
    serde_json::from_slice(&base64_decode(header)?).ok()
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes().filter(|b| *b != b'=' && !b.is_ascii_whitespace()) {
        let v = ALPHABET.iter().position(|a| *a == b)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn is_dir_mode(stat: &Value) -> bool {
    // Go's os.ModeDir bit.
    stat["mode"].as_u64().is_some_and(|m| m & (1 << 31) != 0)
}

async fn from_container(c: &Client, a: &CpArgs, container: &str, src: &str) -> Result<()> {
    let path = format!(
        "/containers/{}/archive?{}",
        path_escape(container),
        query(&[("path", src)])
    );
    let response = c.send(Method::GET, &path, client::empty(), None).await?;
    let stat = path_stat(&response).unwrap_or(Value::Null);
    let mut reader = client::body_reader(response);
    if a.destination == "-" {
        let mut out = tokio::io::stdout();
        tokio::io::copy(&mut reader, &mut out).await?;
        tokio::io::AsyncWriteExt::flush(&mut out).await?;
        return Ok(());
    }
    let dest = PathBuf::from(&a.destination);
    let src_name = stat["name"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| base_name(src));
    let contents_only = src.ends_with("/.");
    // Into an existing directory under its own name; anywhere else, renamed to DEST.
    let (into, root_name) = if dest.is_dir() && !contents_only {
        (dest.clone(), None)
    } else {
        if a.destination.ends_with('/') && !dest.exists() {
            bail!("destination directory {} does not exist", dest.display());
        }
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        if !parent.is_dir() {
            bail!("no such directory {}", parent.display());
        }
        (
            parent,
            Some(
                dest.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
        )
    };
    let archive_mode = a.archive;
    let sync = tokio_util::io::SyncIoBridge::new(reader);
    let copied = tokio::task::spawn_blocking(move || {
        extract(sync, &into, &src_name, root_name.as_deref(), archive_mode)
    })
    .await
    .map_err(|e| anyhow!("copy: {e}"))??;
    if !a.quiet && std::io::stderr().is_terminal() {
        eprintln!(
            "Successfully copied {} to {}",
            super::format::human_size_precision(copied as i64, 3),
            a.destination
        );
    }
    Ok(())
}

/// Unpacks the archive into `dir`, its top entry `src_name` renamed to `rename` when
/// given; nothing may land outside `dir`. Returns the bytes written.
fn extract(
    reader: impl std::io::Read,
    dir: &Path,
    src_name: &str,
    rename: Option<&str>,
    archive_mode: bool,
) -> Result<u64> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    let mut total = 0;
    for entry in archive.entries().context("read the archive")? {
        let mut entry = entry.context("read the archive")?;
        let name = entry.path().context("an entry's path")?.into_owned();
        let mut parts: Vec<Component> = name
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        if parts.iter().any(|c| {
            matches!(
                c,
                Component::ParentDir | Component::RootDir | Component::Prefix(_)
            )
        }) {
            bail!("archive entry {} escapes the destination", name.display());
        }
        let renamed;
        if let Some(new) = rename {
            let matches_root = parts
                .first()
                .is_some_and(|p| p.as_os_str() == std::ffi::OsStr::new(src_name));
            if matches_root || src_name == "." {
                renamed = std::ffi::OsString::from(new);
                if matches_root {
                    parts[0] = Component::Normal(&renamed);
                } else {
                    parts.insert(0, Component::Normal(&renamed));
                }
            }
        }
        let target: PathBuf = parts.iter().fold(dir.to_path_buf(), |p, c| p.join(c));
        if target == dir {
            continue;
        }
        total += entry.header().size().unwrap_or(0);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create {}", parent.display()))?;
        }
        entry
            .unpack(&target)
            .with_context(|| format!("write {}", target.display()))?;
        if archive_mode {
            let h = entry.header();
            if let (Ok(uid), Ok(gid)) = (h.uid(), h.gid()) {
                let _ = std::os::unix::fs::lchown(&target, Some(uid as u32), Some(gid as u32));
            }
        }
    }
    Ok(total)
}

fn base_name(path: &str) -> String {
    Path::new(path.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".to_string())
}

async fn to_container(c: &Client, a: &CpArgs, container: &str, dst: &str) -> Result<()> {
    let name = path_escape(container);
    // Where DEST is, and what it is: a directory receives SRC under its own name.
    let stat_path = format!("/containers/{name}/archive?{}", query(&[("path", dst)]));
    let stat = match c
        .send(Method::HEAD, &stat_path, client::empty(), None)
        .await
    {
        Ok(r) => path_stat(&r),
        Err(e)
            if e.downcast_ref::<client::DaemonError>()
                .is_some_and(|d| d.status == hyper::StatusCode::NOT_FOUND)
                && !e.to_string().contains("No such container") =>
        {
            None
        }
        Err(e) => return Err(e),
    };
    let dst_is_dir = stat.as_ref().is_some_and(is_dir_mode);
    let mut pairs = Vec::new();
    let (upload_dir, body) = if a.source == "-" {
        if !dst_is_dir {
            bail!("destination \"{container}:{dst}\" must be a directory");
        }
        (dst.to_string(), client::streamed(tokio::io::stdin()))
    } else {
        let src = PathBuf::from(&a.source);
        let meta = if a.follow_link {
            std::fs::metadata(&src)
        } else {
            std::fs::symlink_metadata(&src)
        }
        .map_err(|e| {
            anyhow!(
                "could not find the file {} in the local filesystem: {}",
                a.source,
                super::io_error_text(&e)
            )
        })?;
        if stat.is_some() && !dst_is_dir && meta.is_dir() {
            bail!("cannot copy a directory to an existing file: {container}:{dst}");
        }
        let contents_only = a.source.ends_with("/.");
        let (upload_dir, root_name) = if dst_is_dir {
            let root = if contents_only {
                None
            } else {
                Some(base_name(&a.source))
            };
            (dst.to_string(), root)
        } else {
            if dst.ends_with('/') {
                bail!("destination directory {container}:{dst} does not exist");
            }
            let parent = Path::new(dst)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into());
            (parent, Some(base_name(dst)))
        };
        let (reader, writer) = tokio::io::duplex(64 * 1024);
        let follow = a.follow_link;
        tokio::task::spawn_blocking(move || {
            let sync = tokio_util::io::SyncIoBridge::new(writer);
            let mut builder = tar::Builder::new(sync);
            builder.follow_symlinks(follow);
            let built = match (&root_name, meta.is_dir()) {
                (Some(root), true) => builder.append_dir_all(root, &src),
                (Some(root), false) => builder.append_path_with_name(&src, root),
                (None, _) => builder.append_dir_all(".", &src),
            };
            if let Err(e) = built.and_then(|_| builder.finish()) {
                eprintln!("archive {}: {e}", src.display());
            }
        });
        (upload_dir, client::streamed(reader))
    };
    if a.archive {
        pairs.push(("copyUIDGID", "true"));
    }
    pairs.push(("noOverwriteDirNonDir", "true"));
    pairs.push(("path", upload_dir.as_str()));
    let path = format!("/containers/{name}/archive?{}", query(&pairs));
    c.send(Method::PUT, &path, body, Some("application/x-tar"))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_stats() {
        assert_eq!(
            split_container_path("box:/etc/passwd"),
            Some(("box", "/etc/passwd"))
        );
        assert_eq!(split_container_path("./a:b"), None);
        assert_eq!(split_container_path("/tmp/x"), None);
        assert_eq!(split_container_path("plain"), None);
        assert_eq!(
            base64_decode("eyJuYW1lIjoieCJ9").unwrap(),
            br#"{"name":"x"}"#
        );
        assert_eq!(base_name("/etc/"), "etc");
        assert!(is_dir_mode(&serde_json::json!({"mode": 2147484141u64})));
    }
}

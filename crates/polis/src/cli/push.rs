//! `polis push`: asks the daemon to push an image and prints its progress stream as plain
//! lines, with the credentials `docker login` saved for the image's registry.

use anyhow::{bail, Context, Result};
use clap::Args;
use hyper::Method;
use polis_image::Reference;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use super::client::{self, query, Client};
use super::pull::registry_auth_header;

#[derive(Args)]
pub struct PushArgs {
    /// Push all tags of an image to the repository.
    #[arg(short = 'a', long)]
    all_tags: bool,
    #[arg(value_name = "NAME[:TAG]")]
    name: String,
}

pub async fn push(c: &Client, a: PushArgs) -> Result<()> {
    let reference = Reference::parse(&a.name).map_err(|e| anyhow::anyhow!("{e}"))?;
    if reference.digest().is_some() {
        bail!(
            "invalid reference {:?}: a push takes a tag, not a digest",
            a.name
        );
    }
    // Without a tag the daemon pushes every tag of the repository.
    let tag = match (a.all_tags, Reference::parse_named(&a.name).ok()) {
        (true, Some(named)) if named.tag().is_some() => {
            bail!("tag can't be used with --all-tags/-a")
        }
        (true, _) => "",
        (false, _) => reference.tag().unwrap_or("latest"),
    };
    let auth = registry_auth_header(reference.domain())?;
    let path = format!(
        "/images/{}/push?{}",
        reference.repository(),
        query(&[("tag", tag)])
    );
    let response = c
        .send_with(
            Method::POST,
            &path,
            client::empty(),
            None,
            &[("X-Registry-Auth", &auth)],
        )
        .await?;
    let mut lines = tokio::io::BufReader::new(client::body_reader(response)).lines();
    while let Some(line) = lines.next_line().await.context("read the push progress")? {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let m: Value = serde_json::from_str(line).context("decode the push progress")?;
        if let Some(e) = m.get("error").and_then(Value::as_str) {
            bail!("{e}");
        }
        // Byte counts and the result record are for terminals and programs.
        if m.get("progress").is_some() || m.get("aux").is_some() {
            continue;
        }
        let status = m.get("status").and_then(Value::as_str).unwrap_or_default();
        match m.get("id").and_then(Value::as_str) {
            Some(id) => println!("{id}: {status}"),
            None => println!("{status}"),
        }
    }
    Ok(())
}

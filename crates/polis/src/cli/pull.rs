//! `polis pull`: asks the daemon to pull an image and shows its progress stream (live bars
//! on a terminal, plain `ID: status` lines otherwise), as docker does. Credentials
//! saved by `docker login` (config.json `auths`) are sent along for the image's registry.

use anyhow::Result;
use base64::Engine;
use clap::Args;
use hyper::Method;
use polis_image::Reference;
use serde_json::{json, Value};

use super::client::{self, query, Client};
use super::progress::{self, Display, Output};

#[derive(Args)]
pub struct PullArgs {
    /// Set platform if server is multi-platform capable (os/arch[/variant]).
    #[arg(long)]
    platform: Option<String>,
    /// Suppress verbose output.
    #[arg(short, long)]
    quiet: bool,
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    name: String,
}

pub async fn pull(c: &Client, a: PullArgs) -> Result<()> {
    pull_image(c, &a.name, a.platform.as_deref(), a.quiet, Output::Stdout).await?;
    if a.quiet {
        let reference = Reference::parse(&a.name).map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("{}", reference.familiar());
    }
    Ok(())
}

/// Pulls `name` through the daemon, writing the progress lines to `out` unless `quiet`
/// (also used by `run` and `create` for a missing image).
pub async fn pull_image(
    c: &Client,
    name: &str,
    platform: Option<&str>,
    quiet: bool,
    output: Output,
) -> Result<()> {
    let reference = Reference::parse(name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (tag_key, tag) = match (reference.digest(), reference.tag()) {
        (Some(d), _) => ("tag", d.to_string()),
        (None, Some(t)) => ("tag", t.to_string()),
        (None, None) => ("tag", "latest".to_string()),
    };
    let repository = reference.repository();
    let mut pairs = vec![("fromImage", repository.as_str()), (tag_key, tag.as_str())];
    if let Some(p) = platform {
        pairs.push(("platform", p));
    }
    let auth = registry_auth_header(reference.domain())?;
    let path = format!("/images/create?{}", query(&pairs));
    let response = c
        .send_with(
            Method::POST,
            &path,
            client::empty(),
            None,
            &[("X-Registry-Auth", &auth)],
        )
        .await?;
    let display = Display {
        output,
        quiet,
        what: "pull",
    };
    progress::show(response, display).await?;
    Ok(())
}

/// `X-Registry-Auth` for `domain`: the credentials config.json (or its credential
/// helper) keeps for it, else `{}`.
pub(super) fn registry_auth_header(domain: &str) -> Result<String> {
    let encode = |v: &Value| base64::engine::general_purpose::URL_SAFE.encode(v.to_string());
    let key = super::credentials::key_for(domain);
    let Some((username, password)) = super::credentials::ConfigFile::load()?.get(&key)? else {
        return Ok(encode(&json!({})));
    };
    Ok(encode(&json!({
        "username": username,
        "password": password,
        "serveraddress": key,
    })))
}

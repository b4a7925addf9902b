//! `polis push`: asks the daemon to push an image and shows its progress stream as docker
//! does, with the credentials `docker login` saved for the image's registry.

use anyhow::{bail, Result};
use clap::Args;
use hyper::Method;
use polis_image::Reference;

use super::client::{self, query, Client};
use super::progress::{self, Display, Output};
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
    let display = Display {
        output: Output::Stdout,
        quiet: false,
        what: "push",
    };
    progress::show(response, display).await?;
    Ok(())
}

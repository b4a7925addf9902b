//! `polis login` and `polis logout`: the daemon checks the credentials against the
//! registry (`POST /auth`), then they are kept in config.json as the docker CLI keeps them.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use super::client::Client;
use super::credentials::{server_key, ConfigFile, HUB_KEY};

#[derive(Args)]
pub struct LoginArgs {
    /// Username.
    #[arg(short, long)]
    username: Option<String>,
    /// Password.
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin.
    #[arg(long = "password-stdin")]
    password_stdin: bool,
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

#[derive(Args)]
pub struct LogoutArgs {
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

pub async fn login(c: &Client, a: LoginArgs) -> Result<()> {
    if a.password.is_some() && a.password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    let Some(username) = a.username.filter(|u| !u.is_empty()) else {
        if a.password_stdin {
            bail!("Must provide --username with --password-stdin");
        }
        // No prompt: the user name and password come from flags or stdin.
        bail!("Cannot perform an interactive login: give --username and --password or --password-stdin");
    };
    let password = match (a.password, a.password_stdin) {
        (Some(p), _) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p
        }
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("read the password from stdin")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) if std::io::stdin().is_terminal() => {
            bail!("Cannot perform an interactive login: give --password or --password-stdin")
        }
        (None, false) => bail!("Cannot perform an interactive login from a non TTY device"),
    };
    if password.is_empty() {
        bail!("Error: Password Required");
    }
    let key = server_key(a.server.as_deref().unwrap_or_default());
    let address = if key == HUB_KEY { HUB_KEY } else { &key };
    c.post_json(
        "/auth",
        &json!({ "username": username, "password": password, "serveraddress": address }),
    )
    .await?;
    let mut config = ConfigFile::load()?;
    config.store(&key, &username, &password)?;
    println!("Login Succeeded");
    Ok(())
}

/// Needs no daemon: only config.json changes.
pub fn logout(a: LogoutArgs) -> Result<()> {
    let key = server_key(a.server.as_deref().unwrap_or_default());
    let mut config = ConfigFile::load()?;
    if config.erase(&key)? {
        println!("Removing login credentials for {key}");
    } else {
        println!("Not logged in to {key}");
    }
    Ok(())
}

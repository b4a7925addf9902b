//! `polis exec`: a process in a running container, attached through a hijacked
//! connection (or detached), ending with the process's own exit code.

use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};

use super::client::{path_escape, Client};
use super::opts;
use super::stream::{self, Ended, StreamOptions};
use super::StatusError;

#[derive(Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background.
    #[arg(short, long)]
    detach: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long = "detach-keys", value_name = "string")]
    detach_keys: Option<String>,
    /// Set environment variables.
    #[arg(short = 'e', long = "env", value_name = "list", value_parser = opts::parse_env)]
    env: Vec<String>,
    /// Read in a file of environment variables.
    #[arg(long = "env-file", value_name = "list")]
    env_file: Vec<std::path::PathBuf>,
    /// Keep STDIN open even if not attached.
    #[arg(short, long)]
    interactive: bool,
    /// Give extended privileges to the command.
    #[arg(long)]
    privileged: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]").
    #[arg(short, long, value_name = "string")]
    user: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long, value_name = "string")]
    workdir: Option<String>,
    /// The container, then the command and its arguments.
    #[arg(
        value_name = "CONTAINER COMMAND [ARG...]",
        num_args = 2..,
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    container_and_command: Vec<String>,
}

pub async fn exec(c: &Client, a: ExecArgs) -> Result<()> {
    use std::io::IsTerminal;
    opts::unknown_flag(&a.container_and_command[0])?;
    let container = &a.container_and_command[0];
    let command = &a.container_and_command[1..];
    let name = path_escape(container);
    // Fails early, with docker's message, on a container that is not there.
    c.json(&format!("/containers/{name}/json")).await?;
    let mut env = Vec::new();
    for file in &a.env_file {
        env.extend(opts::read_kv_file(file, true)?);
    }
    env.extend(a.env.iter().cloned());
    let attach = !a.detach;
    if attach && a.tty && a.interactive && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY");
    }
    let console = if a.tty && std::io::stdout().is_terminal() {
        stream::terminal_size()
    } else {
        None
    };
    let console_json = console.map(|(h, w)| json!([h, w])).unwrap_or(json!([0, 0]));
    let mut body = json!({
        "User": a.user.clone().unwrap_or_default(),
        "Privileged": a.privileged,
        "Tty": a.tty,
        "AttachStdin": a.interactive && attach,
        "AttachStderr": attach,
        "AttachStdout": attach,
        "Detach": a.detach,
        "DetachKeys": a.detach_keys.clone().unwrap_or_default(),
        "Env": if env.is_empty() { Value::Null } else { json!(env) },
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "Cmd": command,
    });
    if a.tty {
        body["ConsoleSize"] = console_json.clone();
    }
    let created = c
        .post_json(&format!("/containers/{name}/exec"), &body)
        .await?;
    let id = created["Id"]
        .as_str()
        .ok_or_else(|| anyhow!("the daemon answered exec create without an Id"))?
        .to_string();
    let mut start = json!({ "Detach": a.detach, "Tty": a.tty });
    if a.tty {
        start["ConsoleSize"] = console_json;
    }
    if a.detach {
        c.send_json(Method::POST, &format!("/exec/{id}/start"), &start)
            .await?;
        return Ok(());
    }
    let conn = c.hijack(&format!("/exec/{id}/start"), Some(&start)).await?;
    let c = Arc::new(c.clone());
    if a.tty && console.is_some() {
        stream::monitor_size(c.clone(), format!("/exec/{id}"), true);
    }
    let o = StreamOptions {
        stdin: a.interactive,
        stdout: true,
        stderr: true,
        tty: a.tty,
        detach_keys: a.detach_keys.clone(),
    };
    if stream::stream(conn, o).await? == Ended::Detached {
        return Ok(());
    }
    let info = c.json(&format!("/exec/{id}/json")).await?;
    let code = info["ExitCode"].as_i64().unwrap_or(0) as i32;
    if code != 0 {
        return Err(StatusError {
            code,
            message: String::new(),
        }
        .into());
    }
    Ok(())
}

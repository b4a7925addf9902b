//! `polis version` and `polis info`: the client's and the daemon's identity.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use super::client::Client;
use super::format::{self, Template};

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Args)]
pub struct VersionArgs {
    /// Format output using a Go template such as '{{.Server.Version}}'.
    #[arg(short, long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InfoArgs {
    /// Format output using a Go template such as '{{.ServerVersion}}'.
    #[arg(short, long)]
    format: Option<String>,
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn number(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

pub async fn version(host: &str, a: VersionArgs) -> Result<()> {
    let connected = Client::connect(host).await;
    let api = match &connected {
        Ok(c) => c.api_version().to_string(),
        Err(_) => "1.47".to_string(),
    };
    let client_info = json!({
        "Platform": { "Name": "Polis" },
        "Version": VERSION,
        "ApiVersion": api,
        "APIVersion": api,
        "DefaultAPIVersion": "1.47",
        "Os": "linux",
        "Arch": arch(),
    });
    let fetched = match connected {
        Ok(c) => c.json("/version").await,
        Err(e) => Err(e),
    };
    let (server, error) = match fetched {
        Ok(mut s) => {
            // docker's templates name the field APIVersion.
            if let Some(obj) = s.as_object_mut() {
                let api = obj.get("ApiVersion").cloned().unwrap_or(Value::Null);
                obj.insert("APIVersion".to_string(), api);
            }
            (s, None)
        }
        Err(e) => (Value::Null, Some(e)),
    };
    let mut out = std::io::stdout();
    if let Some(f) = &a.format {
        let t = Template::parse(f)?;
        let all = json!({ "Client": client_info, "Server": server });
        writeln!(out, "{}", t.render(&all, None)?)?;
    } else {
        writeln!(out, "Client: Polis")?;
        for (k, v) in [
            ("Version:", VERSION.to_string()),
            ("API version:", api.clone()),
            ("OS/Arch:", format!("linux/{}", arch())),
        ] {
            writeln!(out, " {k:<19}{v}")?;
        }
        if !server.is_null() {
            let engine = server
                .get("Components")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| text(c, "Name") == "Engine"))
                .and_then(|c| c.get("Details"))
                .cloned()
                .unwrap_or(Value::Null);
            writeln!(out)?;
            writeln!(
                out,
                "Server: {}",
                server
                    .get("Platform")
                    .map(|p| text(p, "Name"))
                    .unwrap_or_default()
            )?;
            writeln!(out, " Engine:")?;
            for (k, v) in [
                ("Version:", text(&server, "Version").to_string()),
                (
                    "API version:",
                    format!(
                        "{} (minimum version {})",
                        text(&server, "ApiVersion"),
                        text(&server, "MinAPIVersion")
                    ),
                ),
                (
                    "OS/Arch:",
                    format!("{}/{}", text(&server, "Os"), text(&server, "Arch")),
                ),
                ("Experimental:", text(&engine, "Experimental").to_string()),
            ] {
                writeln!(out, "  {k:<18}{v}")?;
            }
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub async fn info(host: &str, a: InfoArgs) -> Result<()> {
    let c = Client::connect(host).await?;
    let info = c.json("/info").await?;
    let mut out = std::io::stdout();
    if let Some(f) = &a.format {
        let t = Template::parse(f)?;
        writeln!(out, "{}", t.render(&info, None)?)?;
        return Ok(());
    }
    writeln!(out, "Client:")?;
    writeln!(out, " Version:    {VERSION}")?;
    writeln!(out)?;
    writeln!(out, "Server:")?;
    writeln!(out, " Containers: {}", number(&info, "Containers"))?;
    writeln!(out, "  Running: {}", number(&info, "ContainersRunning"))?;
    writeln!(out, "  Paused: {}", number(&info, "ContainersPaused"))?;
    writeln!(out, "  Stopped: {}", number(&info, "ContainersStopped"))?;
    writeln!(out, " Images: {}", number(&info, "Images"))?;
    for (label, key) in [
        ("Server Version", "ServerVersion"),
        ("Storage Driver", "Driver"),
        ("Cgroup Driver", "CgroupDriver"),
        ("Cgroup Version", "CgroupVersion"),
        ("Default Runtime", "DefaultRuntime"),
        ("Kernel Version", "KernelVersion"),
        ("Operating System", "OperatingSystem"),
        ("OSType", "OSType"),
        ("Architecture", "Architecture"),
    ] {
        writeln!(out, " {label}: {}", text(&info, key))?;
    }
    writeln!(out, " CPUs: {}", number(&info, "NCPU"))?;
    writeln!(
        out,
        " Total Memory: {}",
        format::bytes_size(number(&info, "MemTotal"))
    )?;
    writeln!(out, " Name: {}", text(&info, "Name"))?;
    writeln!(out, " ID: {}", text(&info, "ID"))?;
    writeln!(out, " Docker Root Dir: {}", text(&info, "DockerRootDir"))?;
    if let Some(warnings) = info.get("Warnings").and_then(Value::as_array) {
        for w in warnings.iter().filter_map(Value::as_str) {
            eprintln!("{w}");
        }
    }
    Ok(())
}

//! `polis shim`: starts the detached monitor of one container (see `polis_shim`) and
//! prints its report line once the container is created, or why it could not be.

use std::path::PathBuf;

use clap::Args;
use polis_shim::logfile::LogOptions;

#[derive(Args, Debug)]
pub struct ShimCli {
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub bundle: PathBuf,
    /// Socket, pid file, exit status and the shim's own log go here.
    #[arg(long = "state-dir")]
    pub state_dir: PathBuf,
    /// The runtime's --root.
    #[arg(long = "runtime-root")]
    pub runtime_root: PathBuf,
    /// The container's json-file log.
    #[arg(long = "log-path")]
    pub log_path: Option<PathBuf>,
    /// Rotate the log at this size: bytes, or with a k, m or g suffix; 0 = never.
    #[arg(long = "log-max-size", default_value = "0")]
    pub log_max_size: String,
    /// Log files to keep, the live one included.
    #[arg(long = "log-max-file", default_value_t = 1)]
    pub log_max_file: u32,
    /// The `attrs` JSON object every log record carries (labels, env, tag).
    #[arg(long = "log-attrs")]
    pub log_attrs: Option<String>,
    /// Give the container a stdin pipe.
    #[arg(long)]
    pub stdin: bool,
    /// Start the container once created.
    #[arg(long)]
    pub start: bool,
}

pub fn main(cli: ShimCli) -> i32 {
    if let Err(e) = polis_runtime::cloned_exe::reexec_sealed() {
        eprintln!("polis shim: {e}");
        return 1;
    }
    let max_size = match parse_size(&cli.log_max_size) {
        Some(n) => n,
        None => {
            eprintln!(
                "polis shim: --log-max-size {:?}: not a size",
                cli.log_max_size
            );
            return 1;
        }
    };
    if let Some(attrs) = &cli.log_attrs {
        if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(attrs).is_err() {
            eprintln!("polis shim: --log-attrs {attrs:?}: not a JSON object");
            return 1;
        }
    }
    let opts = polis_shim::Options {
        id: cli.id,
        bundle: cli.bundle,
        state_dir: cli.state_dir,
        runtime_root: cli.runtime_root,
        log: cli.log_path.map(|path| LogOptions {
            path,
            max_size,
            max_file: cli.log_max_file.max(1),
            attrs: cli.log_attrs,
        }),
        stdin: cli.stdin,
        start: cli.start,
    };
    match polis_shim::spawn(&opts) {
        Ok(ready) => {
            println!("{}", serde_json::to_string(&ready).unwrap_or_default());
            if ready.ready {
                0
            } else {
                eprintln!("polis shim: {}", ready.error.unwrap_or_default());
                1
            }
        }
        Err(e) => {
            eprintln!("polis shim: {e}");
            1
        }
    }
}

/// Docker's size syntax: 100, 10k, 20m, 1g (powers of 1024).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

//! `polis`: one binary, several faces. `polis runtime …` is the OCI runtime with runc's
//! command line; invoked as `polis-runtime` (a symlink) the binary is that runtime.
//! `polis shim` is the per-container monitor.

mod daemon;
mod runtime;
mod shim;

use std::path::Path;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "polis", version, about = "Polis container platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The OCI runtime (runc's command line).
    Runtime(Box<runtime::RuntimeCli>),
    /// Run the engine: the Docker-compatible API on a unix socket.
    Daemon(daemon::DaemonArgs),
    /// The per-container monitor the engine starts (not for direct use).
    #[command(hide = true)]
    Shim(shim::ShimCli),
}

fn main() {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let invoked_as = Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code = if invoked_as == "polis-runtime" {
        runtime::main(runtime::RuntimeCli::parse())
    } else {
        match Cli::parse().command {
            Command::Runtime(cli) => runtime::main(*cli),
            Command::Daemon(args) => daemon::main(args).unwrap_or_else(|e| {
                eprintln!("polis daemon: {e:#}");
                1
            }),
            Command::Shim(cli) => shim::main(cli),
        }
    };
    std::process::exit(code);
}

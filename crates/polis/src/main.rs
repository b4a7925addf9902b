//! `polis`: one binary, several faces. `polis runtime …` is the OCI runtime with runc's
//! command line; invoked as `polis-runtime` (a symlink) the binary is that runtime.
//! `polis shim` is the per-container monitor. The other verbs (`polis images`, …) are
//! the docker-compatible client of the daemon's API.

mod cli;
mod daemon;
mod runtime;
mod shim;

use std::path::Path;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "polis", version, about = "Polis container platform")]
struct Cli {
    /// Daemon socket to connect to (default unix:///run/polis/polis.sock, or $POLIS_HOST,
    /// or $DOCKER_HOST).
    #[arg(short = 'H', long = "host", value_name = "unix://PATH")]
    host: Option<String>,
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
    #[command(flatten)]
    Client(cli::ClientCommand),
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
        let parsed = Cli::parse();
        match parsed.command {
            Command::Runtime(cli) => runtime::main(*cli),
            Command::Daemon(args) => daemon::main(args).unwrap_or_else(|e| {
                eprintln!("polis daemon: {e:#}");
                1
            }),
            Command::Shim(cli) => shim::main(cli),
            Command::Client(command) => cli::main(parsed.host.as_deref(), command),
        }
    };
    std::process::exit(code);
}

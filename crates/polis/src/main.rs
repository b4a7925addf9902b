//! `polis`: one binary, several faces. `polis runtime …` is the OCI runtime with runc's
//! command line; invoked as `polis-runtime` (a symlink) the binary is that runtime.
//! `polis shim` is the per-container monitor. The other verbs (`polis images`, …) are
//! the docker-compatible client of the daemon's API.

#![recursion_limit = "256"]

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
        let parsed = match Cli::try_parse() {
            Ok(p) => p,
            Err(e) => usage_error(e),
        };
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

/// A command line clap refused. The client verbs exit as docker's do: 125 for a bad
/// flag or value, 1 for a missing or extra argument; the other faces keep clap's code.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    let face = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let client_verb = !matches!(face.as_str(), "runtime" | "daemon" | "shim");
    if !client_verb
        || matches!(
            e.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        )
    {
        e.exit();
    }
    // A refused value, worded as docker words it.
    let value_error = matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    );
    let arg = e.get(clap::error::ContextKind::InvalidArg);
    let value = e.get(clap::error::ContextKind::InvalidValue);
    match (value_error, arg, value, std::error::Error::source(&e)) {
        (true, Some(arg), Some(value), Some(why)) => {
            let flag = arg.to_string();
            let flag = flag.split(' ').next().unwrap_or_default();
            eprintln!("invalid argument \"{value}\" for \"{flag}\" flag: {why}");
            eprintln!("\nRun 'polis {face} --help' for more information");
        }
        _ => {
            let _ = e.print();
        }
    }
    let code = match e.kind() {
        ErrorKind::MissingRequiredArgument
        | ErrorKind::MissingSubcommand
        | ErrorKind::InvalidSubcommand
        | ErrorKind::TooFewValues
        | ErrorKind::WrongNumberOfValues => 1,
        _ => 125,
    };
    std::process::exit(code);
}

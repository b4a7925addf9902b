//! Starting the shim: fork, new session, fork again (so it is no session leader and
//! no child of its caller), every inherited descriptor closed, then report on a pipe
//! once the container is created (or could not be).

use std::io::BufRead;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::logfile::LogOptions;

/// The socket clients connect to, in the state directory.
pub const SOCKET: &str = "shim.sock";
/// The container's exit status, written before anyone is told of the exit.
pub const EXIT_FILE: &str = "exit.json";
/// The shim's pid.
pub const PID_FILE: &str = "shim.pid";
/// The shim's own diagnostics.
pub const LOG_FILE: &str = "shim.log";

#[derive(Debug, Clone)]
pub struct Options {
    pub id: String,
    pub bundle: PathBuf,
    /// Where the socket, pid file, exit status and the shim's own log go.
    pub state_dir: PathBuf,
    /// The runtime's `--root`.
    pub runtime_root: PathBuf,
    /// The container's json-file log, if any.
    pub log: Option<LogOptions>,
    /// Give the container a stdin pipe (otherwise /dev/null, unless it has a terminal).
    pub stdin: bool,
    /// Start the container right after creating it.
    pub start: bool,
}

/// What the shim reports once the container is created (or failed to be).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    pub ready: bool,
    /// The shim's pid.
    pub shim_pid: i32,
    /// The container init's host pid.
    pub pid: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Start a detached shim for the container and wait until it reports. The caller must
/// be single-threaded. Returns the shim's report (with `ready: false` and the reason
/// when the container could not be created).
pub fn spawn(opts: &Options) -> Result<Ready> {
    std::fs::create_dir_all(&opts.state_dir)
        .map_err(|e| Error::io("create", &opts.state_dir, e))?;
    let (reader, writer) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe", e))?;
    // SAFETY: the caller is single-threaded; the child goes on to become the shim and
    // never returns into the caller's code.
    match unsafe { fork() }.map_err(|e| Error::sys("fork", e))? {
        ForkResult::Child => {
            drop(reader);
            let code = detach_and_serve(opts, writer);
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            drop(writer);
            let _ = waitpid(child, None);
            // One line, not up to end of file: a created container's init still holds
            // the (close-on-exec) write end until it execs.
            let mut report = String::new();
            let mut file = std::io::BufReader::new(std::fs::File::from(reader));
            file.read_line(&mut report)
                .map_err(|e| Error::io("read shim report from", "pipe", e))?;
            if report.trim().is_empty() {
                return Err(Error::Refused(format!(
                    "shim for {} exited before it was ready (see {})",
                    opts.id,
                    opts.state_dir.join(LOG_FILE).display()
                )));
            }
            serde_json::from_str(report.trim())
                .map_err(|e| Error::Protocol(format!("shim report {report:?}: {e}")))
        }
    }
}

/// In the first child: new session, second fork, clean descriptors, then serve.
fn detach_and_serve(opts: &Options, report: OwnedFd) -> i32 {
    if nix::unistd::setsid().is_err() {
        return 1;
    }
    // SAFETY: single-threaded (we are a fresh fork of a single-threaded caller); the
    // intermediate process only exits.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => return 0,
        Ok(ForkResult::Child) => {}
        Err(_) => return 1,
    }
    let _ = nix::unistd::chdir("/");
    close_inherited_fds(report.as_raw_fd());
    if let Err(e) = redirect_stdio(opts) {
        crate::server::send_report(
            report,
            &Ready {
                error: Some(e.to_string()),
                ..Ready::default()
            },
        );
        return 1;
    }
    crate::server::serve(opts, report)
}

/// Close everything the caller left open except stdio and `keep`.
fn close_inherited_fds(keep: i32) {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        if fd > 2 && fd != keep {
            // SAFETY: closing a descriptor number; none of them is owned by a Rust
            // object in this freshly forked process (the directory iterator's own
            // descriptor is already closed, and closing it again is harmless).
            unsafe { libc::close(fd) };
        }
    }
}

/// stdin and stdout to /dev/null, stderr to the shim's log.
fn redirect_stdio(opts: &Options) -> Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| Error::io("open", "/dev/null", e))?;
    let log_path = opts.state_dir.join(LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io("open", &log_path, e))?;
    nix::unistd::dup2_stdin(&null).map_err(|e| Error::sys("dup2 /dev/null to stdin", e))?;
    nix::unistd::dup2_stdout(&null).map_err(|e| Error::sys("dup2 /dev/null to stdout", e))?;
    nix::unistd::dup2_stderr(&log).map_err(|e| Error::sys("dup2 shim log to stderr", e))?;
    Ok(())
}

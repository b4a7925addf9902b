//! `polis shim`: the monitor of one container. It detaches from whoever started it,
//! creates the container through the runtime library with stdio it holds (pipes, or
//! the pty master when the process has a terminal), is the parent of the container's
//! processes (child subreaper), writes their output to a json-file log, records the
//! exit status durably in `<state-dir>/exit.json`, and serves clients on
//! `<state-dir>/shim.sock` (see [`protocol`]). It outlives its caller and exits after
//! a `delete` request.
//!
//! It is single-threaded: one poll(2) loop over the socket, the container's stdio,
//! the clients and a signalfd for SIGCHLD.

mod daemon;
pub mod error;
pub mod logfile;
pub mod protocol;
mod server;

pub use daemon::{spawn, Options, Ready, EXIT_FILE, LOG_FILE, PID_FILE, SOCKET};
pub use error::{Error, Result};
pub use protocol::{Client, ExitStatus, Request, Response};

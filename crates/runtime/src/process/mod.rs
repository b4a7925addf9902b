//! Starting container processes: `create` builds a container's init through a chain of
//! forked stages (parent, namespace stage, init); `exec` adds a process to a running one.

pub mod create;
pub mod exec;
pub mod finalize;
pub mod namespaces;

use std::os::fd::OwnedFd;
use std::path::PathBuf;

pub use create::{create, CreateOptions};
pub use exec::{exec, ExecOptions};

/// A container process the runtime has just made.
pub struct Started {
    /// Host pid of the process.
    pub pid: i32,
    /// The pty master, when the process has a terminal and no console socket took it.
    pub pty_master: Option<OwnedFd>,
}

/// End a forked stage without running the parent's destructors or atexit handlers.
pub(crate) fn exit_child(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// Where the stdio of a process comes from.
#[derive(Debug, Clone, Default)]
pub struct Terminal {
    /// Hand the pty master to this socket (runc's --console-socket).
    pub console_socket: Option<PathBuf>,
}

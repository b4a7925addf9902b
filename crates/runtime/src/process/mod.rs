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

/// fork(2), optionally straight into new namespaces (clone(2) without a new stack).
/// Returns None in the child. The caller must be single-threaded: unlike glibc's fork
/// this runs no atfork handlers.
pub(crate) fn clone_process(
    namespaces: nix::sched::CloneFlags,
) -> crate::Result<Option<nix::unistd::Pid>> {
    if namespaces.is_empty() {
        // SAFETY: single-threaded caller; the child runs only our code and ends in exec
        // or _exit.
        return match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => Ok(None),
            Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Some(child)),
            Err(e) => Err(crate::Error::sys("fork", e)),
        };
    }
    let flags = namespaces.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: clone with a NULL stack behaves as fork: the child continues on a copy of
    // our stack. The caller is single-threaded, so no lock can be held by a thread that
    // does not exist in the child.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match ret {
        -1 => Err(crate::Error::sys(
            format!("clone into new namespaces {namespaces:?}"),
            nix::errno::Errno::last(),
        )),
        0 => Ok(None),
        pid => Ok(Some(nix::unistd::Pid::from_raw(pid as i32))),
    }
}

/// The last fork of a chain of stages: the parent stage reports the child's pid over
/// `ch`, and only then does the child go on, so that its own messages can never reach
/// the runtime before its pid does. Returns true in the child.
pub(crate) fn fork_reporting_pid(ch: &crate::sync::Channel) -> crate::Result<bool> {
    let (gate_read, gate_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| crate::Error::sys("pipe", e))?;
    match clone_process(nix::sched::CloneFlags::empty())? {
        None => {
            drop(gate_write);
            // One byte, or end of file if the parent stage failed: either way, go on.
            let mut byte = [0u8; 1];
            let _ = nix::unistd::read(&gate_read, &mut byte);
            Ok(true)
        }
        Some(child) => {
            drop(gate_read);
            ch.send(&crate::sync::Message::InitPid(child.as_raw()))?;
            let _ = nix::unistd::write(&gate_write, b"1");
            Ok(false)
        }
    }
}

/// Where the stdio of a process comes from.
#[derive(Debug, Clone, Default)]
pub struct Terminal {
    /// Hand the pty master to this socket (runc's --console-socket).
    pub console_socket: Option<PathBuf>,
}

//! Network namespaces kept as files (bind mounts of `/proc/thread-self/ns/net`), as
//! `ip netns` and Docker keep them: a container's namespace exists before its process,
//! so its interfaces are configured before it starts, and it outlives a daemon crash so
//! the next daemon can find and remove it. Namespace switches happen on a thread of
//! their own, never on a runtime worker.

use std::fs::File;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::{Error, Result};

/// Makes a new network namespace and keeps it at `path` (whose directory must exist).
pub fn create(path: &Path) -> Result<()> {
    std::fs::File::create(path).map_err(|e| io("create", path, e))?;
    let made = std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| sys("unshare network namespace", path, e))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| sys("bind-mount network namespace", path, e))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::InvalidArgument(
                "network namespace thread panicked".into(),
            ))
        })
    });
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Unmounts and deletes the namespace file at `path`; a missing file is not an error.
pub fn remove(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(sys("unmount network namespace", path, e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", path, e)),
    }
}

/// Runs `f` on a new thread inside the namespace at `path`; the thread ends with `f`, so
/// no other code ever runs in the wrong namespace.
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let ns = File::open(path).map_err(|e| io("open network namespace", path, e))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| sys("enter network namespace", path, e))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::InvalidArgument(
                "network namespace thread panicked".into(),
            ))
        })
    })
}

fn io(op: &str, path: &Path, e: std::io::Error) -> Error {
    Error::System(format!("{op} {}: {e}", path.display()))
}

fn sys(op: &str, path: &Path, e: nix::errno::Errno) -> Error {
    Error::System(format!("{op} {}: {e}", path.display()))
}

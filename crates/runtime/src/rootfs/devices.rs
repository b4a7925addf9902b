//! Device nodes in the container's /dev: the defaults every container gets, the config's
//! `linux.devices`, and the usual symlinks. In a user namespace, where mknod is not
//! allowed, the host's nodes are bind-mounted instead (as runc does).

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::stat::{makedev, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::safe_path::{fd_path, RootDir};
use crate::error::{Error, Result};

/// The nodes every container gets: (path, major, minor).
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

const LINKS: [(&str, &str); 5] = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
];

struct Node {
    path: PathBuf,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

pub fn create(
    root: &RootDir,
    dev_is_tmpfs: bool,
    extra: &[LinuxDevice],
    in_user_ns: bool,
) -> Result<()> {
    let mut nodes: Vec<Node> = Vec::new();
    if dev_is_tmpfs {
        for (path, major, minor) in DEFAULT_DEVICES {
            nodes.push(Node {
                path: path.into(),
                kind: SFlag::S_IFCHR,
                major,
                minor,
                mode: 0o666,
                uid: 0,
                gid: 0,
            });
        }
    }
    for d in extra {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(Error::InvalidConfig(format!(
                    "linux.devices {}: type 'a' is for cgroup rules only",
                    d.path().display()
                )))
            }
        };
        if !d.path().starts_with("/dev") {
            return Err(Error::InvalidConfig(format!(
                "linux.devices {}: device nodes must be under /dev",
                d.path().display()
            )));
        }
        // A config entry for a default device replaces it.
        nodes.retain(|n| n.path != *d.path());
        nodes.push(Node {
            path: d.path().clone(),
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    let old_umask = nix::sys::stat::umask(Mode::empty());
    let result = nodes.iter().try_for_each(|n| {
        if in_user_ns {
            bind_host_node(root, n)
        } else {
            make_node(root, n)
        }
    });
    nix::sys::stat::umask(old_umask);
    result?;
    if dev_is_tmpfs {
        for (target, link) in LINKS {
            symlink(root, target, Path::new(link))?;
        }
        if Path::new("/proc/kcore").exists() {
            symlink(root, "/proc/kcore", Path::new("/dev/core"))?;
        }
    }
    Ok(())
}

fn parent_of(root: &RootDir, path: &Path) -> Result<std::os::fd::OwnedFd> {
    root.mkdir_all(path.parent().unwrap_or(Path::new("/")))
}

fn make_node(root: &RootDir, n: &Node) -> Result<()> {
    let parent = parent_of(root, &n.path)?;
    // mknodat needs a real directory descriptor, not an O_PATH one.
    let dir = nix::fcntl::open(
        fd_path(&parent).as_str(),
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open parent of {}", n.path.display()), e))?;
    let name = n.path.file_name().unwrap_or_default();
    let _ = nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    let result = nix::sys::stat::mknodat(
        &dir,
        name,
        n.kind,
        Mode::from_bits_truncate(n.mode),
        makedev(n.major, n.minor),
    )
    .map_err(|e| Error::sys(format!("mknod {}", n.path.display()), e))
    .and_then(|()| {
        nix::unistd::fchownat(
            &dir,
            name,
            Some(n.uid.into()),
            Some(n.gid.into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::sys(format!("chown {}", n.path.display()), e))
    });
    result
}

fn bind_host_node(root: &RootDir, n: &Node) -> Result<()> {
    let target = root.create_file(&n.path)?;
    nix::mount::mount(
        Some(n.path.as_path()),
        fd_path(&target).as_str(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| Error::sys(format!("bind mount host {}", n.path.display()), e))
}

fn symlink(root: &RootDir, target: &str, link: &Path) -> Result<()> {
    let parent = parent_of(root, link)?;
    match nix::unistd::symlinkat(target, &parent, link.file_name().unwrap_or_default()) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(Error::sys(
            format!("symlink {} -> {target}", link.display()),
            e,
        )),
    }
}

//! The config's `mounts`, performed inside the rootfs: options parsed as mount(8) and
//! runc do, bind mounts remounted for their flags, propagation applied last.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

use super::safe_path::{fd_path, RootDir};
use crate::cgroups::CgroupMount;
use crate::error::{Error, Result};

/// Mount options split into what mount(2) takes.
#[derive(Debug, PartialEq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Flags explicitly turned off (`rw`, `suid`, …): these must not be inherited on remount.
    pub cleared: MsFlags,
    pub propagation: Vec<MsFlags>,
    /// Everything else, for the filesystem (`size=64m`, `mode=755`).
    pub data: Vec<String>,
    /// `tmpcopyup`: fill a new tmpfs with what the directory under it held.
    pub copy_up: bool,
    /// Recursive attributes (`rro`, `rnosuid`, …), set with mount_setattr(2) on the
    /// whole tree: (attributes to set, attributes to clear).
    pub recursive: (u64, u64),
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// A recursive option: (attributes to set, attributes to clear).
fn recursive_attr(opt: &str) -> Option<(u64, u64)> {
    Some(match opt {
        "rro" => (MOUNT_ATTR_RDONLY, 0),
        "rrw" => (0, MOUNT_ATTR_RDONLY),
        "rnosuid" => (MOUNT_ATTR_NOSUID, 0),
        "rsuid" => (0, MOUNT_ATTR_NOSUID),
        "rnodev" => (MOUNT_ATTR_NODEV, 0),
        "rdev" => (0, MOUNT_ATTR_NODEV),
        "rnoexec" => (MOUNT_ATTR_NOEXEC, 0),
        "rexec" => (0, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
        "rdiratime" => (0, MOUNT_ATTR_NODIRATIME),
        "rrelatime" => (MOUNT_ATTR_RELATIME, MOUNT_ATTR_ATIME_MASK),
        "rnorelatime" | "ratime" | "rnostrictatime" => (MOUNT_ATTR_RELATIME, MOUNT_ATTR_ATIME_MASK),
        "rnoatime" => (MOUNT_ATTR_NOATIME, MOUNT_ATTR_ATIME_MASK),
        "rstrictatime" => (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR_ATIME_MASK),
        "rnosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0),
        "rsymfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW),
        _ => return None,
    })
}

/// Set recursive attributes on the mount tree at `target` (an O_PATH handle).
fn set_recursive_attrs(target: &OwnedFd, (set, clear): (u64, u64), what: &Path) -> Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, attr, size): the fd is
    // ours, the path a valid empty C string, and attr a mount_attr of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            std::os::fd::AsRawFd::as_raw_fd(target),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret != 0 {
        return Err(Error::sys(
            format!("set recursive mount attributes on {}", what.display()),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

impl MountOptions {
    pub fn parse(options: &[String]) -> Result<Self> {
        let mut o = MountOptions {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
            recursive: (0, 0),
            copy_up: false,
        };
        for opt in options {
            let (set, clear): (MsFlags, MsFlags) = match opt.as_str() {
                "defaults" => (MsFlags::empty(), MsFlags::empty()),
                "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
                "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
                "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
                "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
                "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
                "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
                "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
                "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
                "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
                "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
                "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
                "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
                "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
                "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
                "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
                "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
                "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
                "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
                "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
                "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
                "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
                "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
                "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
                "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
                "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
                "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
                "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
                | "unbindable" | "runbindable" => {
                    o.propagation.push(propagation_flag(opt)?);
                    continue;
                }
                r if recursive_attr(r).is_some() => {
                    let (set, clear) = recursive_attr(r).unwrap_or_default();
                    o.recursive.0 = (o.recursive.0 & !clear) | set;
                    o.recursive.1 = (o.recursive.1 & !set) | clear;
                    continue;
                }
                "tmpcopyup" => {
                    o.copy_up = true;
                    continue;
                }
                "idmap" | "ridmap" => {
                    return Err(Error::Unsupported(format!(
                        "mount option {opt:?} is not supported"
                    )))
                }
                _ => {
                    o.data.push(opt.clone());
                    continue;
                }
            };
            o.flags.insert(set);
            o.flags.remove(clear);
            o.cleared.insert(clear);
        }
        Ok(o)
    }

    fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
}

/// The propagation flag for a `rootfsPropagation` or mount option value.
pub fn propagation_flag(name: &str) -> Result<MsFlags> {
    Ok(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        other => {
            return Err(Error::InvalidConfig(format!(
                "unknown propagation {other:?}"
            )))
        }
    })
}

/// What mounts need to know about the container being built.
pub struct MountContext<'a> {
    pub bundle: &'a Path,
    pub in_user_ns: bool,
    pub cgroup_ns: bool,
    pub cgroup_mounts: &'a [CgroupMount],
}

fn sys_mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    what: &Path,
) -> Result<()> {
    mount(source, target, fstype, flags, data).map_err(|e| {
        Error::sys(
            format!(
                "mount {} on {} (type {}, flags {:?}, data {:?})",
                source.unwrap_or("none"),
                what.display(),
                fstype.unwrap_or("none"),
                flags,
                data.unwrap_or("")
            ),
            e,
        )
    })
}

/// Flags the kernel locks on a mount made in another user namespace: a remount that
/// dropped them would fail with EPERM.
fn locked_flags(path: &str) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(path) else {
        return MsFlags::empty();
    };
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out.insert(ms);
        }
    }
    out
}

/// Remount a bind mount with `flags` (plus whatever the kernel locked on it).
pub fn remount_bind(target: &str, flags: MsFlags, what: &Path) -> Result<()> {
    let flags = flags & !(MsFlags::MS_REC | MsFlags::MS_REMOUNT | MsFlags::MS_BIND);
    let first = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags;
    sys_mount(None, target, None, first, None, what)
        .or_else(|_| sys_mount(None, target, None, first | locked_flags(target), None, what))
}

/// Perform one entry of the config's `mounts` inside `root`.
pub fn mount_entry(root: &RootDir, m: &Mount, ctx: &MountContext) -> Result<()> {
    let opts = MountOptions::parse(m.options().as_deref().unwrap_or_default())?;
    let fstype = m.typ().as_deref().unwrap_or("");
    let dest = m.destination();
    if fstype == "cgroup" || fstype == "cgroup2" && !ctx.cgroup_ns {
        return mount_cgroups(root, m, &opts, ctx);
    }
    if opts.is_bind() || fstype == "bind" {
        return mount_bind(root, m, &opts, ctx);
    }
    let target = root.mkdir_all(dest)?;
    if opts.copy_up && fstype != "tmpfs" {
        return Err(Error::InvalidConfig(format!(
            "mount on {}: tmpcopyup is only for tmpfs",
            dest.display()
        )));
    }
    // Held across the mount, this handle still sees the directory underneath.
    let underneath = if opts.copy_up {
        Some(reopen_dir(&target, dest)?)
    } else {
        None
    };
    let data = opts.data.join(",");
    let data = (!data.is_empty()).then_some(data.as_str());
    let source = m
        .source()
        .as_ref()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| fstype.to_string());
    let result = sys_mount(
        Some(&source),
        &fd_path(&target),
        Some(fstype),
        opts.flags,
        data,
        &root.path().join(relative(dest)),
    );
    match result {
        // sysfs cannot be mounted in a user namespace that does not own the network
        // namespace: show the host's, read-only, as runc does.
        Err(_) if fstype == "sysfs" && ctx.in_user_ns => {
            sys_mount(
                Some("/sys"),
                &fd_path(&target),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
                dest,
            )?;
            let again = root
                .resolve(dest)
                .map_err(|e| Error::sys("reopen /sys", e))?;
            remount_bind(&fd_path(&again), opts.flags | MsFlags::MS_RDONLY, dest)?;
        }
        // mqueue likewise needs an ipc namespace owned by the user namespace.
        Err(_) if fstype == "mqueue" && ctx.in_user_ns => {
            sys_mount(
                Some("/dev/mqueue"),
                &fd_path(&target),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
                dest,
            )?;
        }
        other => other?,
    }
    if let Some(old) = underneath {
        let new = root
            .resolve(dest)
            .map_err(|e| Error::sys(format!("reopen {}", dest.display()), e))?;
        copy_tree(Path::new(&fd_path(&old)), Path::new(&fd_path(&new)))
            .map_err(|e| Error::io("tmpcopyup: copy into", dest, e))?;
    }
    apply_propagation(root, dest, &opts)
}

fn reopen_dir(fd: &OwnedFd, what: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        fd_path(fd).as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {}", what.display()), e))
}

/// Copy a directory tree with modes and owners; symlinks are copied, never followed.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(from)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let m = std::fs::symlink_metadata(&src)?;
        if m.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
        } else if m.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
            std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()))?;
        } else if m.is_file() {
            std::fs::copy(&src, &dst)?;
            std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()))?;
        }
    }
    Ok(())
}

fn relative(p: &Path) -> PathBuf {
    p.strip_prefix("/").unwrap_or(p).to_path_buf()
}

/// The last step of every mount: recursive attributes, then propagation.
fn apply_propagation(root: &RootDir, dest: &Path, opts: &MountOptions) -> Result<()> {
    if opts.propagation.is_empty() && opts.recursive == (0, 0) {
        return Ok(());
    }
    let target = root
        .resolve(dest)
        .map_err(|e| Error::sys(format!("reopen {}", dest.display()), e))?;
    if opts.recursive != (0, 0) {
        set_recursive_attrs(&target, opts.recursive, dest)?;
    }
    for flag in &opts.propagation {
        sys_mount(None, &fd_path(&target), None, *flag, None, dest)?;
    }
    Ok(())
}

fn mount_bind(root: &RootDir, m: &Mount, opts: &MountOptions, ctx: &MountContext) -> Result<()> {
    let source = m.source().as_ref().ok_or_else(|| {
        Error::InvalidConfig(format!(
            "mount on {}: bind mount without a source",
            m.destination().display()
        ))
    })?;
    let source = if source.is_absolute() {
        source.clone()
    } else {
        ctx.bundle.join(source)
    };
    let meta =
        std::fs::metadata(&source).map_err(|e| Error::io("bind mount source", &source, e))?;
    let target: OwnedFd = if meta.is_dir() {
        root.mkdir_all(m.destination())?
    } else {
        root.create_file(m.destination())?
    };
    let dest = m.destination();
    let src = source.to_string_lossy();
    sys_mount(
        Some(&src),
        &fd_path(&target),
        None,
        MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC),
        None,
        dest,
    )?;
    let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if !extra.is_empty() {
        let again = root
            .resolve(dest)
            .map_err(|e| Error::sys(format!("reopen {}", dest.display()), e))?;
        remount_bind(&fd_path(&again), extra, dest)?;
    }
    apply_propagation(root, dest, opts)
}

/// /sys/fs/cgroup in the container: one entry per hierarchy, showing only the
/// container's own cgroup (a fresh cgroup mount in a cgroup namespace, else a bind).
fn mount_cgroups(root: &RootDir, m: &Mount, opts: &MountOptions, ctx: &MountContext) -> Result<()> {
    let dest = m.destination();
    let flags = opts.flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let pure_v2 = ctx.cgroup_mounts.len() == 1 && ctx.cgroup_mounts[0].v1_options.is_none();
    if !pure_v2 {
        let target = root.mkdir_all(dest)?;
        sys_mount(
            Some("tmpfs"),
            &fd_path(&target),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=755"),
            dest,
        )?;
    }
    for cg in ctx.cgroup_mounts {
        let sub = if cg.name.is_empty() {
            dest.to_path_buf()
        } else {
            dest.join(&cg.name)
        };
        let target = root.mkdir_all(&sub)?;
        // A v1 cgroup mount is refused in a user namespace; cgroup2 is fine there.
        let fresh = if ctx.cgroup_ns && (!ctx.in_user_ns || cg.v1_options.is_none()) {
            let (fstype, data) = match &cg.v1_options {
                Some(o) => ("cgroup", Some(o.as_str())),
                None => ("cgroup2", None),
            };
            sys_mount(
                Some(fstype),
                &fd_path(&target),
                Some(fstype),
                flags,
                data,
                &sub,
            )
            .is_ok()
        } else {
            false
        };
        if !fresh {
            let src = cg.host_dir.to_string_lossy();
            sys_mount(
                Some(&src),
                &fd_path(&target),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
                &sub,
            )?;
            let again = root
                .resolve(&sub)
                .map_err(|e| Error::sys(format!("reopen {}", sub.display()), e))?;
            remount_bind(&fd_path(&again), flags, &sub)?;
        }
        // Where cpu and cpuacct share a hierarchy, runc adds the usual symlinks.
        if let Some(o) = &cg.v1_options {
            if cg.name.contains(',') {
                for part in o.split(',') {
                    let link = dest.join(part);
                    if let Ok(parent) = root.resolve(dest) {
                        let _ = nix::unistd::symlinkat(
                            cg.name.as_str(),
                            &parent,
                            link.file_name().unwrap_or_default(),
                        );
                    }
                }
            }
        }
    }
    if !pure_v2 && opts.flags.contains(MsFlags::MS_RDONLY) {
        let again = root
            .resolve(dest)
            .map_err(|e| Error::sys(format!("reopen {}", dest.display()), e))?;
        sys_mount(
            None,
            &fd_path(&again),
            None,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            Some("mode=755"),
            dest,
        )?;
    }
    apply_propagation(root, dest, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        MountOptions::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_and_data() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        let o = opts(&["rbind", "ro", "rw"]);
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert!(o.cleared.contains(MsFlags::MS_RDONLY));
        let o = opts(&["rslave"]);
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
    }

    #[test]
    fn recursive_options() {
        let o = opts(&["rbind", "rro", "rnosuid", "rnoatime"]);
        assert_eq!(
            o.recursive.0,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOATIME
        );
        assert_eq!(o.recursive.1, MOUNT_ATTR_ATIME_MASK);
        let o = opts(&["rro", "rrw"]);
        assert_eq!(o.recursive, (0, MOUNT_ATTR_RDONLY));
    }

    #[test]
    fn unsupported_option_is_an_error() {
        assert!(MountOptions::parse(&["idmap".to_string()]).is_err());
    }
}

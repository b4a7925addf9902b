//! The container's root filesystem: propagation, the config's mounts, /dev, pivot_root,
//! then the finishing touches that need the new root (masked and read-only paths,
//! sysctls, a read-only root).

pub mod devices;
pub mod mounts;
pub mod safe_path;

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::Spec;

use crate::error::{Error, Result};
use mounts::{propagation_flag, MountContext};
use safe_path::{fd_path, RootDir};

/// Everything up to (not including) pivot_root.
pub fn prepare(spec: &Spec, rootfs: &Path, ctx: &MountContext) -> Result<()> {
    let linux = spec.linux().as_ref();
    let propagation = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .unwrap_or("rslave");
    let flag = propagation_flag(propagation)?;
    // Never let our mounts propagate back to the host; shared root comes back at the end.
    let host_flag = if flag.contains(MsFlags::MS_SHARED) {
        MsFlags::MS_SLAVE | MsFlags::MS_REC
    } else {
        flag | MsFlags::MS_REC
    };
    mount(None::<&str>, "/", None::<&str>, host_flag, None::<&str>)
        .map_err(|e| Error::sys(format!("make / {propagation}"), e))?;
    make_parent_mount_private(rootfs)?;
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::sys(format!("bind mount rootfs {}", rootfs.display()), e))?;
    let root = RootDir::open(rootfs)?;
    let mut dev_is_tmpfs = false;
    for m in spec.mounts().as_deref().unwrap_or_default() {
        mounts::mount_entry(&root, m, ctx)?;
        if m.destination() == Path::new("/dev") {
            dev_is_tmpfs = true;
        }
    }
    let extra = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
    devices::create(&root, dev_is_tmpfs, &extra, ctx.in_user_ns)?;
    Ok(())
}

/// pivot_root's new root must not sit on a shared mount: make the mount under the
/// rootfs private (only that one, which is already a slave of the host).
fn make_parent_mount_private(rootfs: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    let mut best: Option<&str> = None;
    for line in info.lines() {
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        if rootfs.starts_with(mp) && best.is_none_or(|b| mp.len() > b.len()) {
            best = Some(mp);
        }
    }
    if let Some(mp) = best {
        let shared = info
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some(mp))
            .any(|l| l.contains(" shared:"));
        if shared {
            mount(
                None::<&str>,
                mp,
                None::<&str>,
                MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(|e| Error::sys(format!("make {mp} private"), e))?;
        }
    }
    Ok(())
}

/// Make `rootfs` the container's `/`.
pub fn enter(rootfs: &Path, no_pivot: bool) -> Result<()> {
    if no_pivot {
        nix::unistd::chdir(rootfs)
            .map_err(|e| Error::sys(format!("chdir {}", rootfs.display()), e))?;
        mount(
            Some(rootfs),
            "/",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(|e| Error::sys("move rootfs to /", e))?;
        nix::unistd::chroot(".").map_err(|e| Error::sys("chroot", e))?;
    } else {
        let old = nix::fcntl::open(
            "/",
            nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::sys("open /", e))?;
        nix::unistd::chdir(rootfs)
            .map_err(|e| Error::sys(format!("chdir {}", rootfs.display()), e))?;
        // pivot_root(".", ".") stacks the old root on top of the new one; unmounting
        // "." afterwards drops it without needing a directory for it in the image.
        nix::unistd::pivot_root(".", ".")
            .map_err(|e| Error::sys(format!("pivot_root {}", rootfs.display()), e))?;
        nix::unistd::fchdir(&old).map_err(|e| Error::sys("fchdir old root", e))?;
        drop(old);
        mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| Error::sys("make old root rslave", e))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(|e| Error::sys("unmount old root", e))?;
    }
    nix::unistd::chdir("/").map_err(|e| Error::sys("chdir /", e))
}

/// After the pivot: sysctls, masked and read-only paths, the root's own propagation and
/// read-only flag.
pub fn finish(spec: &Spec) -> Result<()> {
    let root = RootDir::open(Path::new("/"))?;
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    if let Some(sysctl) = linux.sysctl() {
        for (key, value) in sysctl {
            let path = Path::new("/proc/sys").join(key.replace('.', "/"));
            std::fs::write(&path, value).map_err(|e| Error::io("sysctl: write", &path, e))?;
        }
    }
    for p in linux.readonly_paths().as_deref().unwrap_or_default() {
        readonly_path(&root, Path::new(p))?;
    }
    for p in linux.masked_paths().as_deref().unwrap_or_default() {
        mask_path(&root, Path::new(p))?;
    }
    if let Some(prop) = linux.rootfs_propagation() {
        let flag = propagation_flag(prop)?;
        if flag.contains(MsFlags::MS_SHARED) {
            mount(None::<&str>, "/", None::<&str>, flag, None::<&str>)
                .map_err(|e| Error::sys(format!("make / {prop}"), e))?;
        }
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        mounts::remount_bind("/", MsFlags::MS_RDONLY, Path::new("/"))?;
    }
    Ok(())
}

fn readonly_path(root: &RootDir, path: &Path) -> Result<()> {
    let fd = match root.resolve(path) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => {
            return Err(Error::sys(
                format!("readonlyPaths: open {}", path.display()),
                e,
            ))
        }
    };
    mount(
        Some(fd_path(&fd).as_str()),
        fd_path(&fd).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::sys(format!("readonlyPaths: bind {}", path.display()), e))?;
    let again = root
        .resolve(path)
        .map_err(|e| Error::sys(format!("readonlyPaths: reopen {}", path.display()), e))?;
    mounts::remount_bind(
        &fd_path(&again),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        path,
    )
}

fn mask_path(root: &RootDir, path: &Path) -> Result<()> {
    let fd = match root.resolve(path) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => {
            return Err(Error::sys(
                format!("maskedPaths: open {}", path.display()),
                e,
            ))
        }
    };
    let is_dir = nix::sys::stat::fstat(&fd)
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .unwrap_or(false);
    let result = if is_dir {
        mount(
            Some("tmpfs"),
            fd_path(&fd).as_str(),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            fd_path(&fd).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    result.map_err(|e| Error::sys(format!("maskedPaths: mask {}", path.display()), e))
}

/// hostname and domainname, in the container's uts namespace.
pub fn set_names(spec: &Spec) -> Result<()> {
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).map_err(|e| Error::sys(format!("sethostname {h:?}"), e))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        let c = std::ffi::CString::new(d)
            .map_err(|_| Error::InvalidConfig("domainname contains NUL".into()))?;
        // SAFETY: `c` is a valid buffer of the given length; the kernel copies it.
        let ret = unsafe { libc::setdomainname(c.as_ptr(), d.len()) };
        if ret != 0 {
            return Err(Error::sys(
                format!("setdomainname {d:?}"),
                nix::errno::Errno::last(),
            ));
        }
    }
    Ok(())
}

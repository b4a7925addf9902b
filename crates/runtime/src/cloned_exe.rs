//! Guard against CVE-2019-5736: before the runtime starts a container process it
//! re-executes itself from a sealed view of its binary, so /proc/PID/exe of anything
//! it forks can never be opened for writing to reach the binary on the host's disk.
//!
//! The cheap way (no copy) is the binary's directory seen through a private,
//! read-only overlayfs that is mounted nowhere (fsopen/fsmount): the overlay cannot
//! be remounted writable and /proc/PID/exe points at an overlay inode. Where that is
//! unavailable (no overlayfs, no new mount API, not privileged) the runtime copies
//! itself into a sealed memfd instead.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Set on the re-exec from the overlay; checked together with the filesystem type of
/// /proc/self/exe, then removed so nothing we start inherits it.
const SEALED_ENV: &str = "_POLIS_SEALED_EXE";

// Kernel ABI of the new mount API (linux/mount.h).
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 2;
const MOUNT_ATTR_NODEV: libc::c_uint = 4;

/// Whether we already run from a sealed memfd or from the read-only overlay.
pub fn is_cloned() -> bool {
    let memfd = std::fs::read_link("/proc/self/exe")
        .map(|p| p.as_os_str().as_encoded_bytes().starts_with(b"/memfd:"))
        .unwrap_or(false);
    memfd || (std::env::var_os(SEALED_ENV).is_some() && exe_on_overlayfs())
}

/// A binary on a read-only mount (an install on a read-only /usr, or a read-only bind
/// mount made for the purpose) cannot be written through /proc/PID/exe: the write
/// fails with EROFS, and a container cannot remount a mount of another namespace. No
/// sealed copy is needed then.
fn exe_on_readonly_mount() -> bool {
    nix::sys::statvfs::statvfs("/proc/self/exe")
        .map(|fs| fs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(false)
}

fn exe_on_overlayfs() -> bool {
    nix::sys::statfs::statfs("/proc/self/exe")
        .map(|fs| fs.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC)
        .unwrap_or(false)
}

/// Re-exec from a sealed view of ourselves unless already done. Returns only on error.
pub fn reexec_sealed() -> Result<()> {
    if is_cloned() {
        if std::env::var_os(SEALED_ENV).is_some() {
            // SAFETY: called before the runtime starts any thread (first thing a
            // create, run or exec command does), so nothing reads the environment
            // concurrently.
            unsafe { std::env::remove_var(SEALED_ENV) };
        }
        return Ok(());
    }
    if exe_on_readonly_mount() {
        return Ok(());
    }
    if let Some(exe) = overlay_exe() {
        let _ = exec_fd(&exe, true);
    }
    reexec_memfd()
}

fn reexec_memfd() -> Result<()> {
    let name = CString::new("polis").unwrap_or_default();
    // SAFETY: memfd_create with a valid C string and flags; returns a new fd or -1.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(Error::sys("memfd_create", nix::errno::Errno::last()));
    }
    // SAFETY: the descriptor is new and owned by nothing else.
    let mut copy = unsafe { File::from_raw_fd(fd) };
    let mut exe =
        File::open("/proc/self/exe").map_err(|e| Error::io("open", "/proc/self/exe", e))?;
    std::io::copy(&mut exe, &mut copy).map_err(|e| Error::io("copy", "/proc/self/exe", e))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our own descriptor with integer arguments.
    if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(Error::sys(
            "seal the runtime copy",
            nix::errno::Errno::last(),
        ));
    }
    exec_fd(&copy, false)
}

/// Exec the binary behind `fd` with our arguments and environment (plus the overlay
/// marker when `overlay`). Returns only on error.
fn exec_fd(fd: &impl AsFd, overlay: bool) -> Result<()> {
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_encoded_bytes()).unwrap_or_default())
        .collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != SEALED_ENV)
        .map(|(k, v)| {
            let mut kv = k.as_encoded_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_encoded_bytes());
            CString::new(kv).unwrap_or_default()
        })
        .collect();
    if overlay {
        env.push(CString::new(format!("{SEALED_ENV}=1")).unwrap_or_default());
    }
    // fexecve needs a readable fd; the overlay file is held as O_PATH, which execveat
    // with AT_EMPTY_PATH accepts.
    let res = nix::unistd::execveat(fd, c"", &args, &env, nix::fcntl::AtFlags::AT_EMPTY_PATH);
    match res {
        Err(e) => Err(Error::sys("re-exec the sealed runtime copy", e)),
        Ok(never) => match never {},
    }
}

/// Our binary opened (O_PATH) through a read-only overlay of its directory that is
/// mounted nowhere; None when the kernel or our privileges do not allow it.
fn overlay_exe() -> Option<OwnedFd> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let running = std::fs::metadata("/proc/self/exe").ok()?;
    let dir = exe.parent()?;
    let name = exe.file_name()?;
    // An overlay without upper layer needs two lower layers: an empty tmpfs on top.
    let empty = fs_mount(c"tmpfs", &[])?;
    let empty_path = format!("/proc/self/fd/{}", empty.as_raw_fd());
    let lower = format!(
        "{}:{}",
        escape_layer(Path::new(&empty_path)),
        escape_layer(dir)
    );
    let overlay = fs_mount(c"overlay", &[("lowerdir", &lower)])?;
    let name = CString::new(name.as_encoded_bytes()).ok()?;
    let file = nix::fcntl::openat(
        &overlay,
        name.as_c_str(),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    // Make sure the overlay shows the very file we run (the path may have been
    // replaced since we started).
    let seen = nix::sys::stat::fstat(&file).ok()?;
    if seen.st_ino != running.ino() || seen.st_size as u64 != running.size() {
        return None;
    }
    Some(file)
}

/// Overlayfs splits lowerdir on ':' and treats a backslash as an escape.
fn escape_layer(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if c == ':' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A new read-only, nosuid, nodev mount of filesystem `fstype`, attached nowhere.
fn fs_mount(fstype: &CStr, options: &[(&str, &str)]) -> Option<OwnedFd> {
    // SAFETY: fsopen with a valid C string; returns a new fd or -1.
    let ctx = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
    if ctx < 0 {
        return None;
    }
    // SAFETY: the descriptor is new and owned by nothing else.
    let ctx = unsafe { OwnedFd::from_raw_fd(ctx as i32) };
    for (key, value) in options {
        let key = CString::new(*key).ok()?;
        let value = CString::new(*value).ok()?;
        // SAFETY: fsconfig on our fs context with valid C strings.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                ctx.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        };
        if rc != 0 {
            return None;
        }
    }
    // SAFETY: fsconfig on our fs context with null key and value, as CMD_CREATE wants.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if rc != 0 {
        return None;
    }
    let attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    // SAFETY: fsmount on our created fs context; returns a new fd or -1.
    let mnt = unsafe { libc::syscall(libc::SYS_fsmount, ctx.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) };
    if mnt < 0 {
        return None;
    }
    // SAFETY: the descriptor is new and owned by nothing else.
    Some(unsafe { OwnedFd::from_raw_fd(mnt as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_paths_escape_separators() {
        assert_eq!(escape_layer(Path::new("/a:b\\c,d")), "/a\\:b\\\\c,d");
    }

    #[test]
    fn overlay_view_is_our_binary_and_read_only() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let Some(exe) = overlay_exe() else {
            panic!("no overlay view of the test binary");
        };
        let running = std::fs::metadata("/proc/self/exe").expect("stat /proc/self/exe");
        let seen = nix::sys::stat::fstat(&exe).expect("fstat overlay file");
        assert_eq!(seen.st_ino, running.ino());
        let reopen = format!("/proc/self/fd/{}", exe.as_raw_fd());
        let err = std::fs::OpenOptions::new()
            .write(true)
            .open(&reopen)
            .expect_err("overlay view opened for writing");
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    }
}

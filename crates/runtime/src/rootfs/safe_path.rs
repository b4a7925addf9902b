//! Paths inside a container's rootfs, resolved by the kernel with RESOLVE_IN_ROOT so
//! that no symlink (or `..`) in the image can lead a mount or a device node out of it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;

use crate::error::{Error, Result};

/// An open handle on a rootfs directory, and paths resolved beneath it.
pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// The `/proc/self/fd/N` name of `fd`: mounting onto it mounts on exactly that inode.
pub fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::InvalidConfig(format!("path {p:?} contains a NUL byte")))
}

fn openat2(
    dirfd: i32,
    path: &Path,
    flags: i32,
    resolve: u64,
) -> std::result::Result<OwnedFd, Errno> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    let mut how: libc::open_how = {
        // SAFETY: open_how is a plain C struct of integers; all-zero is a valid value.
        unsafe { std::mem::zeroed() }
    };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: `c` is a valid NUL-terminated string and `how` a valid open_how of the
        // size we pass; the kernel only reads them.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if ret >= 0 {
            // SAFETY: the kernel returned a new descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) });
        }
        match Errno::last() {
            Errno::EINTR | Errno::EAGAIN => continue,
            e => return Err(e),
        }
    }
}

/// Strip the leading `/` and any `.`; `..` is left for the kernel to clamp at the root.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect()
}

impl RootDir {
    pub fn open(path: &Path) -> Result<Self> {
        let fd = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::sys(format!("open rootfs {}", path.display()), e))?;
        Ok(RootDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An O_PATH handle on `path` inside the root; symlinks resolve as if the root were `/`.
    pub fn resolve(&self, path: &Path) -> std::result::Result<OwnedFd, Errno> {
        let rel = relative(path);
        let rel = if rel.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            rel
        };
        openat2(
            self.fd.as_raw_fd(),
            &rel,
            libc::O_PATH,
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        )
    }

    /// Make every missing directory of `path` inside the root; return a handle on the last.
    pub fn mkdir_all(&self, path: &Path) -> Result<OwnedFd> {
        self.mkdir_all_depth(path, 0)
    }

    fn mkdir_all_depth(&self, path: &Path, depth: u32) -> Result<OwnedFd> {
        let rel = relative(path);
        let mut prefix = PathBuf::new();
        let mut current = self
            .resolve(Path::new("."))
            .map_err(|e| self.err("open", path, e))?;
        for comp in rel.components() {
            prefix.push(comp);
            match self.resolve(&prefix) {
                Ok(fd) => current = fd,
                Err(Errno::ENOENT) => {
                    let name = cstr(Path::new(comp.as_os_str()))?;
                    // SAFETY: `current` is a directory handle we own and `name` a valid
                    // NUL-terminated single component.
                    let ret = unsafe { libc::mkdirat(current.as_raw_fd(), name.as_ptr(), 0o755) };
                    if ret != 0 && Errno::last() != Errno::EEXIST {
                        return Err(self.err("mkdir", &prefix, Errno::last()));
                    }
                    current = match self.resolve(&prefix) {
                        Ok(fd) => fd,
                        // A dangling symlink: make its target, inside the root, then retry.
                        Err(Errno::ENOENT) if depth < 40 => {
                            let target = nix::fcntl::readlinkat(&current, comp.as_os_str())
                                .map_err(|e| self.err("readlink", &prefix, e))?;
                            let target = Path::new(&target);
                            let inside = if target.is_absolute() {
                                target.to_path_buf()
                            } else {
                                prefix.parent().unwrap_or(Path::new("")).join(target)
                            };
                            self.mkdir_all_depth(&inside, depth + 1)?;
                            self.resolve(&prefix)
                                .map_err(|e| self.err("open", &prefix, e))?
                        }
                        Err(e) => return Err(self.err("open", &prefix, e)),
                    };
                }
                Err(e) => return Err(self.err("open", &prefix, e)),
            }
        }
        Ok(current)
    }

    /// Make `path` an (empty) file inside the root if it is missing, with its parents.
    pub fn create_file(&self, path: &Path) -> Result<OwnedFd> {
        if let Ok(fd) = self.resolve(path) {
            return Ok(fd);
        }
        let rel = relative(path);
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel
            .file_name()
            .ok_or_else(|| Error::InvalidConfig(format!("{}: not a file name", path.display())))?;
        let dir = self.mkdir_all(parent)?;
        // O_PATH handles cannot create files: reopen the directory for real.
        let dir = openat2(
            dir.as_raw_fd(),
            Path::new("."),
            libc::O_DIRECTORY | libc::O_RDONLY,
            0,
        )
        .map_err(|e| self.err("open", parent, e))?;
        let cname = cstr(Path::new(name))?;
        // SAFETY: `dir` is an open directory and `cname` a valid single component.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                cname.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd < 0 && Errno::last() != Errno::EEXIST {
            return Err(self.err("create", path, Errno::last()));
        }
        if fd >= 0 {
            // SAFETY: a fresh descriptor from openat, closed right away.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        self.resolve(path).map_err(|e| self.err("open", path, e))
    }

    fn err(&self, op: &str, path: &Path, e: Errno) -> Error {
        Error::sys(
            format!("{op} {} in rootfs {}", path.display(), self.path.display()),
            e,
        )
    }
}

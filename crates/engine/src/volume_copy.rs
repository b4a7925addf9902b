//! Docker's copy-up: an empty volume mounted where the image has content gets a copy
//! of it (files, directories, symlinks, devices; owners, modes and times) at first
//! mount. The image side is resolved inside the rootfs (RESOLVE_IN_ROOT) and walked
//! through directory handles with O_NOFOLLOW, so no symlink leads out of the rootfs;
//! symlinks are copied as links, never followed.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, mkdirat, mknodat, FchmodatFlags, FileStat, Mode,
    SFlag,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, symlinkat, Gid, Uid};
use polis_runtime::rootfs::safe_path::RootDir;

use crate::error::{Error, Result};

fn fail(op: &'static str, what: &Path, e: Errno) -> Error {
    Error::io(op, what, std::io::Error::from(e))
}

fn open_dir(dir: impl AsFd, name: &OsStr) -> std::result::Result<OwnedFd, Errno> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn names(dir: &OwnedFd) -> std::io::Result<Vec<std::ffi::OsString>> {
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(dir));
    std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.file_name()))
        .collect()
}

fn perm(st: &FileStat) -> Mode {
    Mode::from_bits_truncate(st.st_mode & 0o7777)
}

fn owner(st: &FileStat) -> (Option<Uid>, Option<Gid>) {
    (
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

/// Copy what the image has at `destination` (inside `rootfs`) into `data` if `data` is
/// empty and the image has a directory there; returns whether anything was copied.
pub fn copy_up(rootfs: &Path, destination: &str, data: &Path) -> Result<bool> {
    let dst = nix::fcntl::open(
        data,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail("open", data, e))?;
    if !names(&dst)
        .map_err(|e| Error::io("read dir", data, e))?
        .is_empty()
    {
        return Ok(false);
    }
    let root = RootDir::open(rootfs).map_err(|e| Error::InvalidInput(e.to_string()))?;
    let src = match root.resolve(Path::new(destination)) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(fail("resolve", Path::new(destination), e)),
    };
    let src = match open_dir(&src, OsStr::new(".")) {
        Ok(fd) => fd,
        // A file where the volume goes: the runtime refuses the mount, not us.
        Err(Errno::ENOTDIR) => return Ok(false),
        Err(e) => return Err(fail("open", Path::new(destination), e)),
    };
    let shown = Path::new(destination);
    copy_children(&src, &dst, shown)?;
    // The volume's root takes the image directory's owner and mode, as with Docker.
    let st = fstat(&src).map_err(|e| fail("stat", shown, e))?;
    let (uid, gid) = owner(&st);
    fchown(&dst, uid, gid).map_err(|e| fail("chown", data, e))?;
    fchmod(&dst, perm(&st)).map_err(|e| fail("chmod", data, e))?;
    Ok(true)
}

fn copy_children(src: &OwnedFd, dst: &OwnedFd, shown: &Path) -> Result<()> {
    for name in names(src).map_err(|e| Error::io("read dir", shown, e))? {
        copy_entry(src, dst, &name, &shown.join(&name))?;
    }
    Ok(())
}

fn copy_entry(src: &OwnedFd, dst: &OwnedFd, name: &OsStr, shown: &Path) -> Result<()> {
    let st = match fstatat(src, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(fail("stat", shown, e)),
    };
    let (uid, gid) = owner(&st);
    let (atime, mtime) = times(&st);
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            mkdirat(dst, name, Mode::from_bits_truncate(0o700))
                .map_err(|e| fail("mkdir", shown, e))?;
            let s = open_dir(src, name).map_err(|e| fail("open", shown, e))?;
            let d = open_dir(dst, name).map_err(|e| fail("open", shown, e))?;
            copy_children(&s, &d, shown)?;
            fchown(&d, uid, gid).map_err(|e| fail("chown", shown, e))?;
            fchmod(&d, perm(&st)).map_err(|e| fail("chmod", shown, e))?;
            futimens(&d, &atime, &mtime).map_err(|e| fail("set times of", shown, e))?;
        }
        libc::S_IFREG => {
            let s = openat(
                src,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| fail("open", shown, e))?;
            let d = openat(
                dst,
                name,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(|e| fail("create", shown, e))?;
            let (mut s, mut d) = (File::from(s), File::from(d));
            std::io::copy(&mut s, &mut d).map_err(|e| Error::io("copy", shown, e))?;
            fchown(&d, uid, gid).map_err(|e| fail("chown", shown, e))?;
            fchmod(&d, perm(&st)).map_err(|e| fail("chmod", shown, e))?;
            futimens(&d, &atime, &mtime).map_err(|e| fail("set times of", shown, e))?;
        }
        libc::S_IFLNK => {
            let target = readlinkat(src, name).map_err(|e| fail("readlink", shown, e))?;
            symlinkat(target.as_bytes(), dst, name).map_err(|e| fail("symlink", shown, e))?;
            fchownat(dst, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| fail("lchown", shown, e))?;
        }
        kind @ (libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK) => {
            let sflag = SFlag::from_bits_truncate(kind);
            mknodat(dst, name, sflag, perm(&st), st.st_rdev)
                .map_err(|e| fail("mknod", shown, e))?;
            fchownat(dst, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| fail("chown", shown, e))?;
            fchmodat(dst, name, perm(&st), FchmodatFlags::NoFollowSymlink)
                .map_err(|e| fail("chmod", shown, e))?;
        }
        // Sockets are not content.
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn copies_content_and_keeps_links_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(rootfs.join("srv/sub")).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(rootfs.join("srv/sub/f"), "hello").unwrap();
        std::fs::set_permissions(rootfs.join("srv/sub/f"), PermissionsExt::from_mode(0o640))
            .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", rootfs.join("srv/link")).unwrap();
        std::fs::set_permissions(rootfs.join("srv"), PermissionsExt::from_mode(0o750)).unwrap();
        // A link out of the rootfs resolves inside it: /out is the rootfs's /etc.
        std::os::unix::fs::symlink("/etc", rootfs.join("out")).unwrap();
        assert!(copy_up(&rootfs, "/srv", &data).unwrap());
        assert_eq!(
            std::fs::read_to_string(data.join("sub/f")).unwrap(),
            "hello"
        );
        assert_eq!(
            std::fs::metadata(data.join("sub/f")).unwrap().mode() & 0o777,
            0o640
        );
        assert_eq!(std::fs::metadata(&data).unwrap().mode() & 0o777, 0o750);
        assert_eq!(
            std::fs::read_link(data.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        // Not empty any more: a second copy does nothing.
        assert!(!copy_up(&rootfs, "/srv", &data).unwrap());
        let other = tmp.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        assert!(!copy_up(&rootfs, "/out", &other).unwrap());
        assert_eq!(std::fs::read_dir(&other).unwrap().count(), 0);
        assert!(!copy_up(&rootfs, "/missing", &other).unwrap());
    }
}

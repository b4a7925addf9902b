//! What a container changed, read from its overlay upper directory against the image
//! layers below it: Docker's `docker diff` list (added, modified, deleted paths) and the
//! size of the changes (`docker ps -s`).
//!
//! The walk goes through directory fds with `O_NOFOLLOW`, in Docker's order (depth
//! first, names sorted), so a running container that swaps files for symlinks cannot
//! make it read outside the upper directory.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};
use xattr::FileExt;

use crate::error::{Error, Result};
use crate::snapshot::Snapshotter;
use crate::unpack::{fd_path, open_dir, OPAQUE_XATTR};

/// How a path changed, with Docker's numbers (`Kind` in the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Modified = 0,
    Added = 1,
    Deleted = 2,
}

/// One changed path, absolute inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

impl Snapshotter {
    /// Container `key`'s changes, in Docker's order.
    pub fn changes(&self, key: &str) -> Result<Vec<Change>> {
        changes(&self.upper_dir(key)?, &self.lower_dirs(key)?)
    }

    /// Bytes of the files in container `key`'s upper directory (their apparent sizes,
    /// each inode once), as Docker's `SizeRw`.
    pub fn changes_size(&self, key: &str) -> Result<u64> {
        apparent_size(&self.upper_dir(key)?)
    }

    /// Bytes of the files of the layer snapshot `chain_id` (apparent sizes, each inode
    /// once), as Docker's layer `Size`.
    pub fn layer_size(&self, chain_id: &str) -> Result<u64> {
        apparent_size(&self.snapshot_path(chain_id)?)
    }
}

/// Apparent bytes of everything but directories under `dir` (Docker's `directory.Size`):
/// each inode once, symlinks not followed, other file systems mounted below left out.
pub fn apparent_size(dir: &Path) -> Result<u64> {
    fn walk(
        dir: &OwnedFd,
        shown: &Path,
        dev: u64,
        seen: &mut HashSet<(u64, u64)>,
        total: &mut u64,
    ) -> Result<()> {
        for name in sorted_names(dir, shown)? {
            let here = shown.join(&name);
            let st = match fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(Error::sys("stat", &here, e)),
            };
            if st.st_dev != dev {
                continue;
            }
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                if seen.insert((st.st_dev, st.st_ino)) {
                    *total += st.st_size.max(0) as u64;
                }
            } else if let Some(sub) = open_subdir(dir, &name, &here)? {
                walk(&sub, &here, dev, seen, total)?;
            }
        }
        Ok(())
    }
    let root = open_dir(dir)?;
    let dev = nix::sys::stat::fstat(&root)
        .map_err(|e| Error::sys("stat", dir, e))?
        .st_dev;
    let mut total = 0;
    walk(&root, dir, dev, &mut HashSet::new(), &mut total)?;
    Ok(total)
}

/// What [`apparent_size`] would count once the layer tar `layer` (compressed or not) is
/// unpacked: regular files' sizes and symlinks' target lengths; hard links add nothing.
pub fn layer_tar_size(layer: impl std::io::Read) -> Result<u64> {
    let mut archive = tar::Archive::new(crate::unpack::decompress(layer)?);
    let entries = archive
        .entries()
        .map_err(|e| Error::Layer(format!("read layer: {e}")))?;
    let mut total = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::Layer(format!("read layer: {e}")))?;
        let header = entry.header();
        total += match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => entry.size(),
            tar::EntryType::Symlink => entry.link_name_bytes().map(|l| l.len() as u64).unwrap_or(0),
            _ => 0,
        };
    }
    Ok(total)
}

/// The changes recorded in the overlay upper directory `upper` over `lowers` (top first).
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    let mut walk = ChangeWalk {
        upper,
        lowers,
        changes: Vec::new(),
        changed_dirs: HashSet::new(),
    };
    walk.dir(&open_dir(upper)?, "")?;
    Ok(walk.changes)
}

fn sorted_names(dir: &OwnedFd, shown: &Path) -> Result<Vec<OsString>> {
    let mut names: Vec<OsString> = std::fs::read_dir(fd_path(dir))
        .map_err(|e| Error::io("read dir", shown, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io("read dir", shown, e))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// A subdirectory, or None if it went away or is no longer a directory.
fn open_subdir(dir: &OwnedFd, name: &OsStr, shown: &Path) -> Result<Option<OwnedFd>> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => Ok(None),
        Err(e) => Err(Error::sys("open", shown, e)),
    }
}

fn is_whiteout(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

fn is_opaque(dir: &OwnedFd, name: &OsStr, shown: &Path) -> Result<bool> {
    let Some(fd) = open_subdir(dir, name, shown)? else {
        return Ok(false);
    };
    let file = std::fs::File::from(fd);
    let value = file
        .get_xattr(OPAQUE_XATTR)
        .map_err(|e| Error::io("get xattr of", shown, e))?;
    Ok(value.as_deref() == Some(b"y"))
}

/// Docker's times match when equal, or when one side lost its nanoseconds in a tar.
fn same_time(a: &FileStat, b: &FileStat) -> bool {
    a.st_mtime == b.st_mtime
        && (a.st_mtime_nsec == b.st_mtime_nsec || a.st_mtime_nsec == 0 || b.st_mtime_nsec == 0)
}

/// What the image layers hold at a path.
enum Below {
    Nothing,
    Entry(FileStat),
}

/// Looks `rel` up in the layers top down as overlay does: the first layer that has it
/// wins; a whiteout, a non-directory on the way or an opaque directory hides the layers
/// beneath. Components are opened without following symlinks.
fn lookup_below(lowers: &[PathBuf], rel: &str) -> Result<Below> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let Some((last, dirs)) = parts.split_last() else {
        return Ok(Below::Nothing);
    };
    'layers: for lower in lowers {
        let mut dir = open_dir(lower)?;
        let mut shown = lower.clone();
        let mut hidden_below = false;
        for part in dirs {
            shown.push(part);
            match fstatat(&dir, *part, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                    hidden_below |= is_opaque(&dir, OsStr::new(part), &shown)?;
                    match open_subdir(&dir, OsStr::new(part), &shown)? {
                        Some(sub) => dir = sub,
                        None => return Ok(Below::Nothing),
                    }
                }
                // A whiteout or a file where a directory would be hides the rest.
                Ok(_) => return Ok(Below::Nothing),
                Err(Errno::ENOENT) => {
                    if hidden_below {
                        return Ok(Below::Nothing);
                    }
                    continue 'layers;
                }
                Err(e) => return Err(Error::sys("stat", &shown, e)),
            }
        }
        shown.push(last);
        match fstatat(&dir, *last, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if is_whiteout(&st) => return Ok(Below::Nothing),
            Ok(st) => return Ok(Below::Entry(st)),
            Err(Errno::ENOENT) if !hidden_below => {}
            Err(Errno::ENOENT) => return Ok(Below::Nothing),
            Err(e) => return Err(Error::sys("stat", &shown, e)),
        }
    }
    Ok(Below::Nothing)
}

struct ChangeWalk<'a> {
    upper: &'a Path,
    lowers: &'a [PathBuf],
    changes: Vec<Change>,
    /// Directories already listed or walked: their parents need no extra entry.
    changed_dirs: HashSet<String>,
}

impl ChangeWalk<'_> {
    fn dir(&mut self, dir: &OwnedFd, prefix: &str) -> Result<()> {
        let shown_dir = self.upper.join(prefix.trim_start_matches('/'));
        for name in sorted_names(dir, &shown_dir)? {
            let path = format!("{prefix}/{}", String::from_utf8_lossy(name.as_bytes()));
            let shown = shown_dir.join(&name);
            let st = match fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(Error::sys("stat", &shown, e)),
            };
            let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            self.entry(dir, &name, &path, &st, is_dir, &shown)?;
            // Even an unchanged directory holds changes below it.
            if is_dir {
                if let Some(sub) = open_subdir(dir, &name, &shown)? {
                    self.dir(&sub, &path)?;
                }
            }
        }
        Ok(())
    }

    /// Records the change at `path`, if any.
    fn entry(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &str,
        st: &FileStat,
        is_dir: bool,
        shown: &Path,
    ) -> Result<()> {
        // Docker lists a whiteout, and an opaque directory, as the deletion of its path.
        let deleted = is_whiteout(st) || (is_dir && is_opaque(dir, name, shown)?);
        let kind = if deleted {
            ChangeKind::Deleted
        } else {
            match lookup_below(self.lowers, path)? {
                Below::Nothing => ChangeKind::Added,
                Below::Entry(below) => {
                    let below_dir = below.st_mode & libc::S_IFMT == libc::S_IFDIR;
                    if is_dir
                        && below_dir
                        && below.st_size == st.st_size
                        && below.st_mode == st.st_mode
                        && same_time(&below, st)
                    {
                        return Ok(());
                    }
                    ChangeKind::Modified
                }
            }
        };
        if is_dir {
            self.changed_dirs.insert(path.to_string());
        }
        if kind != ChangeKind::Modified {
            // The parents of an added or deleted path count as modified.
            let mut parents = Vec::new();
            let mut parent = parent_of(path);
            while parent != "/" {
                if self.changed_dirs.insert(parent.to_string()) {
                    parents.push(Change {
                        path: parent.to_string(),
                        kind: ChangeKind::Modified,
                    });
                }
                parent = parent_of(parent);
            }
            self.changes.extend(parents.into_iter().rev());
        }
        self.changes.push(Change {
            path: path.to_string(),
            kind,
        });
        Ok(())
    }
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        assert_eq!(parent_of("/a/b"), "/a");
        assert_eq!(parent_of("/a"), "/");
    }

    fn kinds(list: &[Change]) -> Vec<(String, u8)> {
        list.iter()
            .map(|c| (c.path.clone(), c.kind as u8))
            .collect()
    }

    #[test]
    fn changes_as_docker_lists_them() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        for d in [
            "lower/etc",
            "lower/bin",
            "lower/old/sub",
            "upper/etc",
            "upper/bin",
            "upper/tmp/new",
        ] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        std::fs::write(lower.join("etc/passwd"), "root").unwrap();
        std::fs::write(lower.join("bin/ls"), "ls").unwrap();
        std::fs::write(lower.join("old/sub/f"), "f").unwrap();
        // /etc/passwd changed, /bin/ls deleted, /tmp/new/x added, /old replaced.
        std::fs::write(upper.join("etc/passwd"), "root2").unwrap();
        nix::sys::stat::mknod(
            &upper.join("bin/ls"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        std::fs::write(upper.join("tmp/new/x"), "x").unwrap();
        std::fs::create_dir(upper.join("old")).unwrap();
        xattr::set(upper.join("old"), OPAQUE_XATTR, b"y").unwrap();
        // Directories unchanged but for their times are listed as Docker does.
        for d in ["etc", "bin"] {
            let m = std::fs::metadata(lower.join(d)).unwrap();
            let times = std::fs::FileTimes::new().set_modified(m.modified().unwrap());
            std::fs::File::open(upper.join(d))
                .unwrap()
                .set_times(times)
                .unwrap();
        }
        let list = changes(&upper, &[lower]).unwrap();
        let expected: Vec<(String, u8)> = [
            ("/bin", 0),
            ("/bin/ls", 2),
            ("/etc/passwd", 0),
            ("/old", 2),
            ("/tmp", 1),
            ("/tmp/new", 1),
            ("/tmp/new/x", 1),
        ]
        .iter()
        .map(|(p, k)| (p.to_string(), *k))
        .collect();
        assert_eq!(kinds(&list), expected);
    }
}

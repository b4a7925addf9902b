//! Turns a container's overlay upper directory back into a layer tar, for commit and export.
//!
//! Overlay whiteouts (character devices 0:0) become `.wh.NAME` entries and opaque
//! directories get a `.wh..wh..opq` entry, so the tar applies with [`crate::unpack`].
//! The upper directory may belong to a running container that swaps files for symlinks, so
//! the walk goes through directory fds with `O_NOFOLLOW` and never reads outside it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};
use xattr::FileExt;

use crate::error::{Error, Result};
use crate::unpack::{fd_path, open_dir, OPAQUE_WHITEOUT, OPAQUE_XATTR, WHITEOUT_PREFIX};

/// Writes the changes recorded in the overlay upper directory `upper` to `out` as an
/// uncompressed layer tar, entries in a stable (sorted) order.
pub fn diff(upper: &Path, out: impl Write) -> Result<()> {
    let root = open_dir(upper)?;
    let mut writer = DiffWriter {
        upper,
        builder: tar::Builder::new(out),
        links: HashMap::new(),
    };
    writer.walk(&root, "")?;
    writer
        .builder
        .into_inner()
        .and_then(|mut out| out.flush())
        .map_err(|e| Error::io("write layer tar of", upper, e))
}

struct DiffWriter<'a, W: Write> {
    upper: &'a Path,
    builder: tar::Builder<W>,
    /// First path seen for each multiply-linked inode.
    links: HashMap<(u64, u64), String>,
}

/// Where an entry's xattrs are read from: an open file, or a symlink by path.
enum XattrSource<'a> {
    File(&'a File),
    Symlink(&'a Path),
}

impl<W: Write> DiffWriter<'_, W> {
    fn walk(&mut self, dir: &OwnedFd, prefix: &str) -> Result<()> {
        let listing = fd_path(dir);
        let shown = self.upper.join(prefix);
        let mut names: Vec<OsString> = std::fs::read_dir(&listing)
            .map_err(|e| Error::io("read dir", &shown, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(|e| Error::io("read dir", &shown, e))?;
        names.sort();
        for name in names {
            let name_str = String::from_utf8_lossy(name.as_bytes()).into_owned();
            let rel = format!("{prefix}{name_str}");
            let shown = self.upper.join(&rel);
            let st = match fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Removed while we looked: nothing to record.
                Err(nix::errno::Errno::ENOENT) => continue,
                Err(e) => return Err(Error::sys("stat", &shown, e)),
            };
            match st.st_mode & libc::S_IFMT {
                libc::S_IFCHR if st.st_rdev == 0 => {
                    let mut header = header(&st, tar::EntryType::Regular);
                    header.set_mode(0o644);
                    let whiteout = format!("{prefix}{WHITEOUT_PREFIX}{name_str}");
                    self.append(&shown, header, &whiteout, io::empty())?;
                }
                libc::S_IFDIR => {
                    let fd = openat(
                        dir,
                        name.as_os_str(),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| Error::sys("open", &shown, e))?;
                    let st = fstat(&fd).map_err(|e| Error::sys("stat", &shown, e))?;
                    let file = File::from(fd.try_clone().map_err(|e| Error::io("dup", &shown, e))?);
                    self.append_xattrs(&shown, XattrSource::File(&file))?;
                    self.append(
                        &shown,
                        header(&st, tar::EntryType::Directory),
                        &format!("{rel}/"),
                        io::empty(),
                    )?;
                    let opaque = file
                        .get_xattr(OPAQUE_XATTR)
                        .map_err(|e| Error::io("get xattr of", &shown, e))?;
                    if opaque.as_deref() == Some(b"y") {
                        let mut header = header(&st, tar::EntryType::Regular);
                        header.set_mode(0o644);
                        self.append(
                            &shown,
                            header,
                            &format!("{rel}/{OPAQUE_WHITEOUT}"),
                            io::empty(),
                        )?;
                    }
                    self.walk(&fd, &format!("{rel}/"))?;
                }
                libc::S_IFLNK => {
                    let target = readlinkat(dir, name.as_os_str())
                        .map_err(|e| Error::sys("readlink", &shown, e))?;
                    self.append_xattrs(&shown, XattrSource::Symlink(&fd_path(dir).join(&name)))?;
                    let mut header = header(&st, tar::EntryType::Symlink);
                    self.builder
                        .append_link(&mut header, &rel, &target)
                        .map_err(|e| Error::io("write tar entry for", &shown, e))?;
                }
                libc::S_IFREG => {
                    let inode = (st.st_dev, st.st_ino);
                    if st.st_nlink > 1 {
                        if let Some(first) = self.links.get(&inode).cloned() {
                            let mut header = header(&st, tar::EntryType::Link);
                            self.builder
                                .append_link(&mut header, &rel, &first)
                                .map_err(|e| Error::io("write tar entry for", &shown, e))?;
                            continue;
                        }
                        self.links.insert(inode, rel.clone());
                    }
                    let fd = openat(
                        dir,
                        name.as_os_str(),
                        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| Error::sys("open", &shown, e))?;
                    let st = fstat(&fd).map_err(|e| Error::sys("stat", &shown, e))?;
                    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                        return Err(Error::Conflict(format!(
                            "{} changed type while the diff was taken",
                            shown.display()
                        )));
                    }
                    let file = File::from(fd);
                    self.append_xattrs(&shown, XattrSource::File(&file))?;
                    let size = st.st_size as u64;
                    let mut header = header(&st, tar::EntryType::Regular);
                    header.set_size(size);
                    // Exactly `size` bytes even if the file changes under us, or the tar breaks.
                    let data = (&file).take(size).chain(io::repeat(0)).take(size);
                    self.append(&shown, header, &rel, data)?;
                }
                kind @ (libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK) => {
                    let entry_type = match kind {
                        libc::S_IFIFO => tar::EntryType::Fifo,
                        libc::S_IFCHR => tar::EntryType::Char,
                        _ => tar::EntryType::Block,
                    };
                    self.append_xattrs(&shown, XattrSource::Symlink(&fd_path(dir).join(&name)))?;
                    let mut header = header(&st, entry_type);
                    header
                        .set_device_major(libc::major(st.st_rdev))
                        .and_then(|()| header.set_device_minor(libc::minor(st.st_rdev)))
                        .map_err(|e| Error::io("write tar entry for", &shown, e))?;
                    self.append(&shown, header, &rel, io::empty())?;
                }
                // Sockets are not content; they are left out, as docker does.
                _ => {}
            }
        }
        Ok(())
    }

    fn append(
        &mut self,
        shown: &Path,
        mut header: tar::Header,
        name: &str,
        data: impl Read,
    ) -> Result<()> {
        self.builder
            .append_data(&mut header, name, data)
            .map_err(|e| Error::io("write tar entry for", shown, e))
    }

    /// Emits the xattrs of an entry (except overlay's own) as a PAX header for the next entry.
    fn append_xattrs(&mut self, shown: &Path, source: XattrSource<'_>) -> Result<()> {
        let fail = |e| Error::io("read xattrs of", shown, e);
        let names: Vec<OsString> = match source {
            XattrSource::File(file) => file.list_xattr().map_err(fail)?.collect(),
            XattrSource::Symlink(path) => xattr::list(path).map_err(fail)?.collect(),
        };
        let mut records = Vec::new();
        for name in names {
            let name_str = name.to_string_lossy().into_owned();
            if name_str.starts_with("trusted.overlay.") {
                continue;
            }
            let value = match source {
                XattrSource::File(file) => file.get_xattr(&name),
                XattrSource::Symlink(path) => xattr::get(path, &name),
            }
            .map_err(fail)?;
            if let Some(value) = value {
                records.push((format!("SCHILY.xattr.{name_str}"), value));
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        self.builder
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(|e| Error::io("write xattrs of", shown, e))
    }
}

fn header(st: &FileStat, entry_type: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(st.st_mode & 0o7777);
    header.set_uid(st.st_uid.into());
    header.set_gid(st.st_gid.into());
    header.set_mtime(st.st_mtime.max(0) as u64);
    header.set_size(0);
    header
}

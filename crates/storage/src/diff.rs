//! Turns a container's overlay upper directory back into a layer tar, for commit and export.
//!
//! Overlay whiteouts (character devices 0:0) become `.wh.NAME` entries and opaque
//! directories get a `.wh..wh..opq` entry, so the tar applies with [`crate::unpack`].

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::unpack::{OPAQUE_WHITEOUT, OPAQUE_XATTR, WHITEOUT_PREFIX};

/// Writes the changes recorded in the overlay upper directory `upper` to `out` as an
/// uncompressed layer tar, entries in a stable (sorted) order.
pub fn diff(upper: &Path, out: impl Write) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut writer = DiffWriter {
        builder,
        links: HashMap::new(),
    };
    writer.walk(upper, "")?;
    writer
        .builder
        .into_inner()
        .and_then(|mut out| out.flush())
        .map_err(|e| Error::io("write layer tar of", upper, e))
}

struct DiffWriter<W: Write> {
    builder: tar::Builder<W>,
    /// First path seen for each multiply-linked inode.
    links: HashMap<(u64, u64), String>,
}

impl<W: Write> DiffWriter<W> {
    fn walk(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| Error::io("read dir", dir, e))?
            .collect::<io::Result<_>>()
            .map_err(|e| Error::io("read dir", dir, e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name();
            let rel = format!("{prefix}{}", String::from_utf8_lossy(name.as_bytes()));
            let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
            let kind = meta.file_type();
            if kind.is_char_device() && meta.rdev() == 0 {
                let whiteout = format!(
                    "{prefix}{WHITEOUT_PREFIX}{}",
                    String::from_utf8_lossy(name.as_bytes())
                );
                let mut header = self.header(&meta, tar::EntryType::Regular);
                header.set_mode(0o644);
                self.append(&path, header, &whiteout, io::empty())?;
            } else if kind.is_dir() {
                let header = self.header(&meta, tar::EntryType::Directory);
                self.append_xattrs(&path)?;
                self.append(&path, header, &format!("{rel}/"), io::empty())?;
                let opaque = xattr::get(&path, OPAQUE_XATTR)
                    .map_err(|e| Error::io("get xattr of", &path, e))?;
                if opaque.as_deref() == Some(b"y") {
                    let mut header = self.header(&meta, tar::EntryType::Regular);
                    header.set_mode(0o644);
                    self.append(
                        &path,
                        header,
                        &format!("{rel}/{OPAQUE_WHITEOUT}"),
                        io::empty(),
                    )?;
                }
                self.walk(&path, &format!("{rel}/"))?;
            } else if kind.is_symlink() {
                let target =
                    std::fs::read_link(&path).map_err(|e| Error::io("readlink", &path, e))?;
                let mut header = self.header(&meta, tar::EntryType::Symlink);
                self.append_xattrs(&path)?;
                self.builder
                    .append_link(&mut header, &rel, &target)
                    .map_err(|e| Error::io("write tar entry for", &path, e))?;
            } else if meta.nlink() > 1
                && !kind.is_dir()
                && self.links.contains_key(&(meta.dev(), meta.ino()))
            {
                let first = self.links[&(meta.dev(), meta.ino())].clone();
                let mut header = self.header(&meta, tar::EntryType::Link);
                header.set_size(0);
                self.builder
                    .append_link(&mut header, &rel, &first)
                    .map_err(|e| Error::io("write tar entry for", &path, e))?;
            } else {
                if meta.nlink() > 1 {
                    self.links.insert((meta.dev(), meta.ino()), rel.clone());
                }
                self.append_xattrs(&path)?;
                if kind.is_file() {
                    let mut header = self.header(&meta, tar::EntryType::Regular);
                    header.set_size(meta.len());
                    let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
                    self.append(&path, header, &rel, file)?;
                } else if kind.is_fifo() || kind.is_char_device() || kind.is_block_device() {
                    let entry_type = if kind.is_fifo() {
                        tar::EntryType::Fifo
                    } else if kind.is_char_device() {
                        tar::EntryType::Char
                    } else {
                        tar::EntryType::Block
                    };
                    let mut header = self.header(&meta, entry_type);
                    let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
                    header
                        .set_device_major(major)
                        .and_then(|()| header.set_device_minor(minor))
                        .map_err(|e| Error::io("write tar entry for", &path, e))?;
                    self.append(&path, header, &rel, io::empty())?;
                }
                // Sockets are not content; they are left out like docker does.
            }
        }
        Ok(())
    }

    fn header(&self, meta: &Metadata, entry_type: tar::EntryType) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(entry_type);
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(meta.uid().into());
        header.set_gid(meta.gid().into());
        header.set_mtime(meta.mtime().max(0) as u64);
        header.set_size(0);
        header
    }

    fn append(
        &mut self,
        path: &Path,
        mut header: tar::Header,
        name: &str,
        data: impl io::Read,
    ) -> Result<()> {
        self.builder
            .append_data(&mut header, name, data)
            .map_err(|e| Error::io("write tar entry for", path, e))
    }

    /// Emits the xattrs of `path` (except overlay's own) as a PAX header for the next entry.
    fn append_xattrs(&mut self, path: &Path) -> Result<()> {
        let names = xattr::list(path).map_err(|e| Error::io("list xattrs of", path, e))?;
        let mut records = Vec::new();
        for name in names {
            let name_str = name.to_string_lossy().into_owned();
            if name_str.starts_with("trusted.overlay.") {
                continue;
            }
            if let Some(value) =
                xattr::get(path, &name).map_err(|e| Error::io("get xattr of", path, e))?
            {
                records.push((format!("SCHILY.xattr.{name_str}"), value));
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        self.builder
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(|e| Error::io("write xattrs of", path, e))
    }
}

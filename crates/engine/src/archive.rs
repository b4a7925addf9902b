//! A container's files seen from the host, for `docker cp` and `docker export`: stat a
//! path, archive it, extract an archive into a directory, archive the whole root
//! filesystem. Paths are resolved by the kernel inside the container's rootfs
//! (RESOLVE_IN_ROOT), as if it were `/`, so no symlink or `..` the container planted
//! leads out of it; entries are then created and changed through directory handles,
//! never by following a name the container could swap meanwhile.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::UtimensatFlags;
use nix::sys::stat::{fstat, fstatat, mkdirat, mknodat, utimensat, FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use polis_runtime::rootfs::safe_path::RootDir;
use serde::Serialize;
use xattr::FileExt;

use crate::error::{Error, Result};

/// What `HEAD /containers/{id}/archive` reports about a path (the base64 JSON of the
/// `X-Docker-Container-Path-Stat` header), in Docker's shapes: `mode` is a Go
/// `os.FileMode`, `mtime` RFC 3339 with nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// Go's `os.FileMode` bits for a unix `st_mode`.
pub fn go_file_mode(st_mode: u32) -> u32 {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const DEVICE: u32 = 1 << 26;
    const NAMED_PIPE: u32 = 1 << 25;
    const SOCKET: u32 = 1 << 24;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const CHAR_DEVICE: u32 = 1 << 21;
    const STICKY: u32 = 1 << 20;
    let mut mode = st_mode & 0o777;
    mode |= match st_mode & libc::S_IFMT {
        libc::S_IFBLK => DEVICE,
        libc::S_IFCHR => DEVICE | CHAR_DEVICE,
        libc::S_IFDIR => DIR,
        libc::S_IFIFO => NAMED_PIPE,
        libc::S_IFLNK => SYMLINK,
        libc::S_IFSOCK => SOCKET,
        _ => 0,
    };
    if st_mode & libc::S_ISUID != 0 {
        mode |= SETUID;
    }
    if st_mode & libc::S_ISGID != 0 {
        mode |= SETGID;
    }
    if st_mode & libc::S_ISVTX != 0 {
        mode |= STICKY;
    }
    mode
}

/// A time as Go's RFC3339Nano in UTC: fraction without trailing zeros, none if zero.
pub fn rfc3339_nano(secs: i64, nanos: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = polis_runtime::state::civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// `/` + `path`, cleaned lexically as Go's `filepath.Clean` does.
fn clean_abs(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Docker's `PreserveTrailingDotOrSeparator`: a trailing `/.` or `/` of the request
/// survives cleaning, because it changes what is copied.
fn preserve_trailing(mut cleaned: String, original: &str) -> String {
    let current_dir = |p: &str| p == "." || p.ends_with("/.");
    if !current_dir(&cleaned) && current_dir(original) {
        if !cleaned.ends_with('/') {
            cleaned.push('/');
        }
        cleaned.push('.');
    }
    if !cleaned.ends_with('/') && original.ends_with('/') {
        cleaned.push('/');
    }
    cleaned
}

/// Go's `filepath.Base`.
fn go_base(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".to_string();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

/// The parent of an absolute cleaned path without trailing separator.
fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn lower_desc(e: Errno) -> String {
    let d = e.desc();
    let mut chars = d.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn not_found(path: &str, container: &str) -> Error {
    Error::FileNotFound {
        path: path.to_string(),
        container: container.to_string(),
    }
}

fn open_root(rootfs: &Path) -> Result<RootDir> {
    RootDir::open(rootfs).map_err(|e| Error::InvalidInput(e.to_string()))
}

/// A real directory handle for an O_PATH one.
fn reopen_dir(fd: &OwnedFd, shown: &str) -> std::result::Result<OwnedFd, Error> {
    openat(
        fd,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::InvalidInput(format!("open {shown}: {}", lower_desc(e))))
}

fn open_subdir(dir: &OwnedFd, name: &OsStr) -> std::result::Result<OwnedFd, Errno> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn proc_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn is_type(st: &FileStat, kind: u32) -> bool {
    st.st_mode & libc::S_IFMT == kind
}

/// The container's root filesystem, mounted if it is not (it stays mounted while the
/// container exists; a host restart unmounts it).
pub fn mounted_rootfs(layout: &crate::containers::Layout, id: &str) -> Result<PathBuf> {
    let rootfs = layout.bundle(id).join("rootfs");
    if !crate::containers::is_mounted(&rootfs) {
        let snapshots =
            polis_storage::Snapshotter::new(layout.snapshots()).map_err(Error::Storage)?;
        for m in snapshots.mounts(id).map_err(Error::Storage)? {
            m.mount_at(&rootfs).map_err(Error::Storage)?;
        }
    }
    Ok(rootfs)
}

/// What a GET of a path archives: a directory (with its contents) or one entry.
enum Source {
    Dir {
        fd: OwnedFd,
        top: String,
    },
    Entry {
        parent: OwnedFd,
        name: OsString,
        top: String,
    },
}

/// A path found in a container, ready to be archived.
pub struct Resource {
    pub stat: PathStat,
    source: Source,
}

/// Docker's stat of `path` in the container (the last element not followed unless the
/// path ends in `/` or `/.`). `container` names the container in errors.
pub fn stat(rootfs: &Path, path: &str, container: &str) -> Result<PathStat> {
    Ok(open(rootfs, path, container)?.stat)
}

/// Finds `path` in the container for archiving; a missing path is Docker's 404.
pub fn open(rootfs: &Path, path: &str, container: &str) -> Result<Resource> {
    let root = open_root(rootfs)?;
    let abs = preserve_trailing(clean_abs(path), path);
    let name = go_base(&abs);
    // Docker's errors for a path that cannot be looked at: 404 when it is missing.
    let lstat_err = |e: Errno| match e {
        Errno::ENOENT => not_found(path, container),
        e => Error::InvalidInput(format!("lstat {abs}: {}", lower_desc(e))),
    };
    let follow = abs == "/" || abs.ends_with('/') || abs.ends_with("/.");
    let (st, source) = if follow {
        let fd = root.resolve(Path::new(&abs)).map_err(lstat_err)?;
        let st = fstat(&fd).map_err(lstat_err)?;
        if !is_type(&st, libc::S_IFDIR) {
            return Err(lstat_err(Errno::ENOTDIR));
        }
        let fd = reopen_dir(&fd, &abs)?;
        let top = name.clone();
        (st, Source::Dir { fd, top })
    } else {
        let parent_path = parent_of(&abs);
        let parent = root.resolve(Path::new(parent_path)).map_err(lstat_err)?;
        let parent = reopen_dir(&parent, parent_path).map_err(|_| lstat_err(Errno::ENOTDIR))?;
        let base = OsString::from(&name);
        let st =
            fstatat(&parent, base.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(lstat_err)?;
        let top = name.clone();
        if is_type(&st, libc::S_IFDIR) {
            let fd = open_subdir(&parent, &base).map_err(lstat_err)?;
            (st, Source::Dir { fd, top })
        } else {
            let name = base;
            (st, Source::Entry { parent, name, top })
        }
    };
    let link_target = if is_type(&st, libc::S_IFLNK) {
        follow_in_scope(&root, &abs)?
    } else {
        String::new()
    };
    let stat = PathStat {
        name,
        size: st.st_size,
        mode: go_file_mode(st.st_mode),
        mtime: rfc3339_nano(st.st_mtime, st.st_mtime_nsec),
        link_target,
    };
    Ok(Resource { stat, source })
}

/// Where `path` leads once every symlink is followed inside the root, as far as the
/// path exists (Docker's `FollowSymlinkInScope`).
fn follow_in_scope(root: &RootDir, path: &str) -> Result<String> {
    let mut resolved = String::from("/");
    let mut pending: Vec<String> = path.split('/').rev().map(str::to_string).collect();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                resolved = parent_of(&resolved).to_string();
                continue;
            }
            _ => {}
        }
        let candidate = join(&resolved, &part);
        let link = root
            .resolve(Path::new(&resolved))
            .ok()
            .and_then(|dir| readlinkat(&dir, part.as_str()).ok());
        match link {
            Some(target) => {
                links += 1;
                if links > 255 {
                    return Err(Error::InvalidInput(format!(
                        "evaluating symlinks in {path}: too many links"
                    )));
                }
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    resolved = "/".to_string();
                }
                pending.extend(target.split('/').rev().map(str::to_string));
            }
            None => resolved = candidate,
        }
    }
    Ok(resolved)
}

impl Resource {
    /// Writes the resource as Docker's archive of it: entries named from the requested
    /// path's last element (`etc/…`, `./…` for a path ending in `/.`).
    pub fn write_tar(self, out: impl Write) -> Result<()> {
        let mut w = TarWriter::new(out);
        match self.source {
            Source::Dir { fd, top } => {
                let st = fstat(&fd).map_err(|e| Error::io("stat", &top, e.into()))?;
                let dir_name = if top.ends_with('/') {
                    top
                } else {
                    format!("{top}/")
                };
                w.append(
                    header(&st, tar::EntryType::Directory),
                    dir_name.as_bytes(),
                    None,
                    io::empty(),
                )?;
                w.children(&fd, dir_name.as_bytes())?;
            }
            Source::Entry { parent, name, top } => w.entry(&parent, &name, top.into_bytes())?,
        }
        w.finish()
    }
}

/// Writes the container's whole filesystem (`docker export`): entries named relative to
/// the root, without a `./` prefix, as Docker writes them.
pub fn export(rootfs: &Path, out: impl Write) -> Result<()> {
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open", rootfs, e.into()))?;
    let mut w = TarWriter::new(out);
    w.children(&root, b"")?;
    w.finish()
}

fn header(st: &FileStat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid.into());
    h.set_gid(st.st_gid.into());
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

fn tar_err(what: &[u8], e: io::Error) -> Error {
    Error::io(
        "write tar entry for",
        String::from_utf8_lossy(what).into_owned(),
        e,
    )
}

/// A tar writer that names entries byte for byte (tar's own path setters refuse `./`
/// and absolute names, which Docker's archives have).
struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
    /// First name written for each multiply-linked inode.
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl<W: Write> TarWriter<W> {
    fn new(out: W) -> Self {
        TarWriter {
            builder: tar::Builder::new(out),
            links: HashMap::new(),
        }
    }

    fn finish(self) -> Result<()> {
        self.builder
            .into_inner()
            .and_then(|mut out| out.flush())
            .map_err(|e| Error::io("write", "archive", e))
    }

    /// A GNU long-name (`L`) or long-link (`K`) record for a value that does not fit.
    fn long(&mut self, kind: tar::EntryType, value: &[u8]) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(value.len() as u64 + 1);
        h.set_entry_type(kind);
        h.set_cksum();
        self.builder.append(&h, value.chain(&[0u8][..]))
    }

    fn append(
        &mut self,
        mut h: tar::Header,
        name: &[u8],
        link: Option<&[u8]>,
        data: impl Read,
    ) -> Result<()> {
        let fill = |field: &mut [u8; 100], value: &[u8]| {
            let n = value.len().min(100);
            field[..n].copy_from_slice(&value[..n]);
        };
        if let Some(link) = link {
            if link.len() >= 100 {
                self.long(tar::EntryType::GNULongLink, link)
                    .map_err(|e| tar_err(name, e))?;
            }
            fill(&mut h.as_old_mut().linkname, link);
        }
        if name.len() >= 100 {
            self.long(tar::EntryType::GNULongName, name)
                .map_err(|e| tar_err(name, e))?;
        }
        fill(&mut h.as_old_mut().name, name);
        h.set_cksum();
        self.builder.append(&h, data).map_err(|e| tar_err(name, e))
    }

    /// Every entry of `dir`, sorted by name, each named `prefix` + its name.
    fn children(&mut self, dir: &OwnedFd, prefix: &[u8]) -> Result<()> {
        let shown = String::from_utf8_lossy(prefix).into_owned();
        let mut names: Vec<OsString> = std::fs::read_dir(proc_path(dir))
            .map_err(|e| Error::io("read dir", &shown, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(|e| Error::io("read dir", &shown, e))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let mut entry_name = prefix.to_vec();
            entry_name.extend_from_slice(name.as_bytes());
            self.entry(dir, &name, entry_name)?;
        }
        Ok(())
    }

    /// One entry (a directory with everything below it).
    fn entry(&mut self, dir: &OwnedFd, name: &OsStr, entry_name: Vec<u8>) -> Result<()> {
        let shown = String::from_utf8_lossy(&entry_name).into_owned();
        let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Removed while we looked: nothing to archive.
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(Error::io("stat", &shown, e.into())),
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                let sub = match open_subdir(dir, name) {
                    Ok(fd) => fd,
                    Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => return Ok(()),
                    Err(e) => return Err(Error::io("open", &shown, e.into())),
                };
                let mut dir_name = entry_name;
                dir_name.push(b'/');
                self.append(
                    header(&st, tar::EntryType::Directory),
                    &dir_name,
                    None,
                    io::empty(),
                )?;
                self.children(&sub, &dir_name)?;
            }
            libc::S_IFREG => {
                let inode = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&inode).cloned() {
                        let h = header(&st, tar::EntryType::Link);
                        return self.append(h, &entry_name, Some(&first), io::empty());
                    }
                    self.links.insert(inode, entry_name.clone());
                }
                let fd = match openat(
                    dir,
                    name,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::ENOENT) => return Ok(()),
                    Err(e) => return Err(Error::io("open", &shown, e.into())),
                };
                let st = fstat(&fd).map_err(|e| Error::io("stat", &shown, e.into()))?;
                if !is_type(&st, libc::S_IFREG) {
                    return Ok(());
                }
                let file = File::from(fd);
                // Docker keeps file capabilities, and only them.
                if let Ok(Some(cap)) = file.get_xattr("security.capability") {
                    self.builder
                        .append_pax_extensions([("SCHILY.xattr.security.capability", &cap[..])])
                        .map_err(|e| tar_err(&entry_name, e))?;
                }
                let size = st.st_size.max(0) as u64;
                let mut h = header(&st, tar::EntryType::Regular);
                h.set_size(size);
                // Exactly `size` bytes even if the file changes under us, or the tar breaks.
                let data = (&file).take(size).chain(io::repeat(0)).take(size);
                self.append(h, &entry_name, None, data)?;
            }
            libc::S_IFLNK => {
                let target = match readlinkat(dir, name) {
                    Ok(t) => t,
                    Err(Errno::ENOENT) => return Ok(()),
                    Err(e) => return Err(Error::io("readlink", &shown, e.into())),
                };
                let h = header(&st, tar::EntryType::Symlink);
                self.append(h, &entry_name, Some(target.as_bytes()), io::empty())?;
            }
            kind @ (libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK) => {
                let entry_type = match kind {
                    libc::S_IFIFO => tar::EntryType::Fifo,
                    libc::S_IFCHR => tar::EntryType::Char,
                    _ => tar::EntryType::Block,
                };
                let mut h = header(&st, entry_type);
                h.set_device_major(libc::major(st.st_rdev))
                    .and_then(|()| h.set_device_minor(libc::minor(st.st_rdev)))
                    .map_err(|e| tar_err(&entry_name, e))?;
                self.append(h, &entry_name, None, io::empty())?;
            }
            // Sockets are not content; Docker leaves them out too.
            _ => {}
        }
        Ok(())
    }
}

/// How an archive is extracted into a container.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtractOptions {
    /// Refuse to replace a directory with a non-directory and the other way round
    /// (what `docker cp` asks for).
    pub no_overwrite_dir_non_dir: bool,
    /// Owner of everything extracted, instead of the archive's (`docker cp -a`).
    pub owner: Option<(u32, u32)>,
}

/// Extracts the tar (plain, gzip or zstd) read from `input` into the directory `path` of
/// the container, as Docker does: the last element of `path` may be a symlink to a
/// directory; entries replace what is there; symlinks and hardlinks in the archive may
/// not point above `path`.
pub fn extract(
    rootfs: &Path,
    path: &str,
    container: &str,
    opts: ExtractOptions,
    input: impl Read,
) -> Result<()> {
    let root = open_root(rootfs)?;
    let abs = preserve_trailing(clean_abs(path), path);
    let dest_fd = match root.resolve(Path::new(&abs)) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Err(not_found(path, container)),
        Err(e) => {
            return Err(Error::InvalidInput(format!(
                "lstat {abs}: {}",
                lower_desc(e)
            )))
        }
    };
    let st = fstat(&dest_fd).map_err(|e| Error::io("stat", &abs, e.into()))?;
    if !is_type(&st, libc::S_IFDIR) {
        return Err(Error::InvalidInput(
            "extraction point is not a directory".into(),
        ));
    }
    let dest = path_in_root(&dest_fd, rootfs)?;
    let mut ex = Extractor {
        root,
        dest,
        opts,
        dirs: Vec::new(),
    };
    let stream =
        polis_storage::decompress(input).map_err(|e| Error::InvalidInput(e.to_string()))?;
    let mut archive = tar::Archive::new(stream);
    let entries = archive
        .entries()
        .map_err(|e| Error::InvalidInput(format!("read archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::InvalidInput(format!("read archive: {e}")))?;
        ex.apply(&mut entry)?;
    }
    ex.finish()
}

/// The container path of a handle opened inside the root.
fn path_in_root(fd: &OwnedFd, rootfs: &Path) -> Result<String> {
    let real =
        std::fs::read_link(proc_path(fd)).map_err(|e| Error::io("readlink", proc_path(fd), e))?;
    let root = std::fs::canonicalize(rootfs).map_err(|e| Error::io("resolve", rootfs, e))?;
    let rel = real.strip_prefix(&root).map_err(|_| {
        Error::InvalidInput(format!(
            "{} is outside of {}",
            real.display(),
            root.display()
        ))
    })?;
    Ok(clean_abs(&rel.to_string_lossy()))
}

/// Docker's lexical containment check (`strings.HasPrefix` on cleaned paths).
fn within(path: &str, dir: &str) -> bool {
    path.starts_with(dir)
}

struct Extractor {
    root: RootDir,
    /// The extraction directory, as a container path.
    dest: String,
    opts: ExtractOptions,
    /// Directories extracted, with their times: set last, as creating entries in them
    /// changes them.
    dirs: Vec<(String, TimeSpec)>,
}

impl Extractor {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        // Go's filepath.Clean of the name, then joined to the destination.
        let absolute = raw.starts_with('/');
        let mut parts: Vec<&str> = Vec::new();
        let mut above = 0usize;
        for p in raw.split('/') {
            match p {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() && !absolute {
                        above += 1;
                    }
                }
                p => parts.push(p),
            }
        }
        let cleaned = if parts.is_empty() {
            ".".to_string()
        } else {
            parts.join("/")
        };
        if above > 0 {
            let shown = format!("{}{}", "../".repeat(above), parts.join("/"));
            return Err(Error::InvalidInput(format!(
                "{:?} is outside of {:?}",
                shown.trim_end_matches('/'),
                self.dest
            )));
        }
        let mtime = TimeSpec::new(entry.header().mtime().unwrap_or(0) as i64, 0);
        let is_dir = kind == tar::EntryType::Directory;
        if parts.is_empty() {
            // The destination itself: Docker keeps it as it is.
            if is_dir {
                return Ok(());
            }
            return Err(Error::InvalidInput(format!(
                "cannot overwrite directory {:?} with non-directory {:?}",
                self.dest, self.dest
            )));
        }
        let path = join(&self.dest, &cleaned);
        let parent_path = parent_of(&path).to_string();
        let name = OsString::from(parts[parts.len() - 1]);
        let parent = self
            .root
            .mkdir_all(Path::new(&parent_path))
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let parent = reopen_dir(&parent, &parent_path)?;
        let fail =
            |what: &str, e: Errno| Error::InvalidInput(format!("{what} {path}: {}", lower_desc(e)));
        match fstatat(&parent, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(existing) => {
                let existing_dir = is_type(&existing, libc::S_IFDIR);
                if self.opts.no_overwrite_dir_non_dir && existing_dir && !is_dir {
                    return Err(Error::InvalidInput(format!(
                        "cannot overwrite directory {path:?} with non-directory {:?}",
                        self.dest
                    )));
                }
                if self.opts.no_overwrite_dir_non_dir && !existing_dir && is_dir {
                    return Err(Error::InvalidInput(format!(
                        "cannot overwrite non-directory {path:?} with directory {:?}",
                        self.dest
                    )));
                }
                if existing_dir && !is_dir {
                    std::fs::remove_dir_all(proc_path(&parent).join(&name))
                        .map_err(|e| Error::io("remove", &path, e))?;
                } else if !existing_dir {
                    unlinkat(&parent, name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                        .map_err(|e| fail("remove", e))?;
                }
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(fail("lstat", e)),
        }
        let header = entry.header().clone();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = self.opts.owner.unwrap_or((
            header.uid().unwrap_or(0) as u32,
            header.gid().unwrap_or(0) as u32,
        ));
        let xattrs = pax_xattrs(entry);
        match kind {
            tar::EntryType::Directory => {
                match mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(fail("mkdir", e)),
                }
                self.dirs.push((path.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = openat(
                    &parent,
                    name.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| fail("create", e))?;
                let mut file = File::from(fd);
                io::copy(entry, &mut file).map_err(|e| Error::io("write", &path, e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default();
                let lands = clean_abs(&join(&parent_path, &target));
                if !within(&lands, &self.dest) {
                    return Err(Error::InvalidInput(format!(
                        "invalid symlink {path:?} -> {target:?}"
                    )));
                }
                symlinkat(target.as_str(), &parent, name.as_os_str())
                    .map_err(|e| fail("symlink", e))?;
                fchownat(
                    &parent,
                    name.as_os_str(),
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| fail("lchown", e))?;
                utimensat(
                    &parent,
                    name.as_os_str(),
                    &mtime,
                    &mtime,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| fail("set times of", e))?;
                return Ok(());
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default();
                let target_path = clean_abs(&join(&self.dest, &target));
                if !within(&target_path, &self.dest) {
                    return Err(Error::InvalidInput(format!(
                        "invalid hardlink {path:?} -> {target:?}"
                    )));
                }
                let tparent_path = parent_of(&target_path);
                let tparent = self
                    .root
                    .resolve(Path::new(tparent_path))
                    .map_err(|e| Error::InvalidInput(format!("link {path}: {}", lower_desc(e))))?;
                let tname = go_base(&target_path);
                linkat(
                    &tparent,
                    tname.as_str(),
                    &parent,
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| fail("link", e))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let sflag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                mknodat(
                    &parent,
                    name.as_os_str(),
                    sflag,
                    Mode::from_bits_truncate(0o600),
                    libc::makedev(major, minor),
                )
                .map_err(|e| fail("mknod", e))?;
            }
            other => {
                return Err(Error::InvalidInput(format!(
                    "unhandled tar header type {:?} for {path}",
                    other
                )))
            }
        }
        // Owner, xattrs, mode and times, on exactly what was made (never through a
        // name the container could have turned into a symlink since).
        let fd = match openat(
            &parent,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) => return Err(fail("open", e)),
        };
        let st = fstat(&fd).map_err(|e| fail("stat", e))?;
        if is_type(&st, libc::S_IFLNK) {
            return Ok(());
        }
        let at = proc_path(&fd);
        // Owner first (chown clears set-id bits and capabilities), then mode, then xattrs.
        std::os::unix::fs::chown(&at, Some(uid), Some(gid))
            .map_err(|e| Error::io("chown", &path, e))?;
        std::fs::set_permissions(&at, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("chmod", &path, e))?;
        for (key, value) in xattrs {
            if let Err(e) = xattr::set(&at, &key, &value) {
                // As Docker: file systems without xattrs, or names we may not set.
                if !matches!(e.raw_os_error(), Some(libc::ENOTSUP | libc::EPERM)) {
                    return Err(Error::io("set xattr of", &path, e));
                }
            }
        }
        if !is_dir {
            utimensat(AT_FDCWD, &at, &mtime, &mtime, UtimensatFlags::FollowSymlink)
                .map_err(|e| fail("set times of", e))?;
        }
        Ok(())
    }

    /// Directory times, once nothing more is created in them.
    fn finish(self) -> Result<()> {
        for (path, mtime) in self.dirs {
            let Ok(parent) = self.root.resolve(Path::new(parent_of(&path))) else {
                continue;
            };
            let name = go_base(&path);
            let Ok(fd) = openat(
                &parent,
                name.as_str(),
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            if fstat(&fd).is_ok_and(|st| is_type(&st, libc::S_IFDIR)) {
                let _ = utimensat(
                    AT_FDCWD,
                    &proc_path(&fd),
                    &mtime,
                    &mtime,
                    UtimensatFlags::FollowSymlink,
                );
            }
        }
        Ok(())
    }
}

/// The `SCHILY.xattr.*` records of an entry's PAX header.
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return Vec::new();
    };
    exts.filter_map(|e| e.ok())
        .filter_map(|e| {
            let key = e.key().ok()?;
            let name = key.strip_prefix("SCHILY.xattr.")?;
            Some((name.to_string(), e.value_bytes().to_vec()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_clean_as_docker() {
        assert_eq!(preserve_trailing(clean_abs("etc"), "etc"), "/etc");
        assert_eq!(preserve_trailing(clean_abs("/etc/"), "/etc/"), "/etc/");
        assert_eq!(preserve_trailing(clean_abs("/etc/."), "/etc/."), "/etc/.");
        assert_eq!(
            preserve_trailing(clean_abs("/a/../../b"), "/a/../../b"),
            "/b"
        );
        assert_eq!(preserve_trailing(clean_abs("/"), "/"), "/");
        assert_eq!(go_base("/etc/"), "etc");
        assert_eq!(go_base("/etc/."), ".");
        assert_eq!(go_base("/"), "/");
    }

    fn names(tar: &[u8]) -> Vec<(String, String)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                let link = e
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default();
                (name, link)
            })
            .collect()
    }

    #[test]
    fn archives_name_entries_as_docker_and_extract_stays_inside() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("rootfs");
        let long = "n".repeat(120);
        std::fs::create_dir_all(root.join("etc/sub")).unwrap();
        std::fs::write(root.join("etc/sub").join(&long), "x").unwrap();
        std::os::unix::fs::symlink("/".to_string() + &"t".repeat(110), root.join("etc/ln"))
            .unwrap();
        std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();

        let mut out = Vec::new();
        open(&root, "/etc", "c")
            .unwrap()
            .write_tar(&mut out)
            .unwrap();
        let got = names(&out);
        assert_eq!(got[0], ("etc/".to_string(), String::new()));
        assert!(got.contains(&("etc/ln".to_string(), "/".to_string() + &"t".repeat(110))));
        assert!(got.contains(&(format!("etc/sub/{long}"), String::new())));
        let mut out = Vec::new();
        open(&root, "/etc/.", "c")
            .unwrap()
            .write_tar(&mut out)
            .unwrap();
        assert_eq!(names(&out)[0].0, "./");
        assert!(names(&out).iter().any(|(n, _)| n == "./sub/"));
        let stat = stat(&root, "/escape/sub", "c").unwrap();
        assert_eq!(stat.mode & (1 << 31), 1 << 31);
        assert_eq!(stat.name, "sub");
        assert_eq!(
            self::stat(&root, "/escape", "c").unwrap().link_target,
            "/etc"
        );
        assert!(matches!(
            self::stat(&root, "/nope", "c"),
            Err(Error::FileNotFound { .. })
        ));

        // Extracting through the planted link lands in the rootfs's /etc.
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o600);
        tar.append_data(&mut h, "in", &b"ok"[..]).unwrap();
        let tar = tar.into_inner().unwrap();
        extract(&root, "/escape", "c", ExtractOptions::default(), &tar[..]).unwrap();
        assert_eq!(std::fs::read(root.join("etc/in")).unwrap(), b"ok");
        let mode = std::fs::metadata(root.join("etc/in"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let opts = ExtractOptions {
            no_overwrite_dir_non_dir: true,
            owner: Some((1000, 1000)),
        };
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o644);
        tar.append_data(&mut h, "sub", &b""[..]).unwrap();
        let tar = tar.into_inner().unwrap();
        let err = extract(&root, "/etc", "c", opts, &tar[..]).unwrap_err();
        assert!(
            err.to_string().contains("cannot overwrite directory"),
            "{err}"
        );
    }

    #[test]
    fn modes_and_times_as_go() {
        assert_eq!(go_file_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(libc::S_IFREG | 0o4755), (1 << 23) | 0o755);
        assert_eq!(go_file_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
        assert_eq!(rfc3339_nano(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(1709210096, 120_000_000),
            "2024-02-29T12:34:56.12Z"
        );
    }
}

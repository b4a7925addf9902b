//! Applies one OCI/Docker layer tar onto a fresh directory that becomes an overlay lower layer.
//!
//! Every path is resolved component by component with `O_NOFOLLOW`, so no entry can reach
//! outside the layer directory, through `..`, an absolute path or a symlink the layer made.
//! The layer is unpacked into a temporary directory beside the target and renamed into place
//! only when it was applied completely.

use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmodat, fstatat, mkdirat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The xattr overlayfs reads to treat a directory as opaque.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Prefix of a whiteout entry in a layer tar.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the entry that makes its directory opaque.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Limits and permissions for unpacking a layer.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Allow character and block device nodes (fifos are always allowed).
    pub allow_devices: bool,
    /// Cap on the uncompressed size of the layer tar, and separately on the total size of
    /// its files once sparse entries are expanded, in bytes.
    pub max_bytes: u64,
    /// Cap on the number of entries in the layer.
    pub max_entries: u64,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            allow_devices: false,
            max_bytes: 64 << 30,
            max_entries: 2_000_000,
        }
    }
}

/// What unpacking a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// `sha256:<hex>` of the uncompressed tar stream.
    pub diff_id: String,
    /// Size of the uncompressed tar stream.
    pub tar_bytes: u64,
    /// Number of tar entries applied.
    pub entries: u64,
}

/// Unpacks `layer` (gzip, zstd or plain tar, detected by magic bytes) into `target`, which
/// must not exist yet. On error nothing is left behind.
pub fn unpack(layer: impl Read, target: &Path, opts: &UnpackOptions) -> Result<Unpacked> {
    let staging = staging_path(target)?;
    std::fs::create_dir(&staging).map_err(|e| Error::io("mkdir", &staging, e))?;
    let mut guard = RemoveOnDrop::new(&staging);
    let root = open_dir(&staging)?;
    let unpacked = apply_layer(layer, &root, opts)?;
    drop(root);
    std::fs::rename(&staging, target).map_err(|e| Error::io("rename into place", target, e))?;
    guard.disarm();
    Ok(unpacked)
}

static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

fn staging_path(target: &Path) -> Result<PathBuf> {
    let name = target
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("unpack target {}", target.display())))?;
    let parent = target.parent().unwrap_or(Path::new("."));
    let n = STAGING_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut staging = OsString::from(".");
    staging.push(name);
    staging.push(format!(".unpack-{}-{n}", std::process::id()));
    Ok(parent.join(staging))
}

/// Removes a directory tree when dropped, unless disarmed.
#[derive(Debug)]
pub(crate) struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    pub(crate) fn new(path: &Path) -> Self {
        RemoveOnDrop(Some(path.to_path_buf()))
    }

    pub(crate) fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

pub(crate) fn open_dir(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys("open", path, e))
}

/// Counts and hashes the uncompressed tar stream, and stops it at the size cap.
struct Measured<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    max: u64,
    over_limit: Rc<Cell<bool>>,
}

impl<R: Read> Read for Measured<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        if self.bytes > self.max {
            self.over_limit.set(true);
            return Err(io::Error::other("layer over its size limit"));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Wraps `layer` in the decompressor its first bytes call for.
pub fn decompress<'a>(mut layer: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mut magic = [0u8; 4];
    let mut have = 0;
    while have < magic.len() {
        match layer.read(&mut magic[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Layer(format!("read: {e}"))),
        }
    }
    let stream = io::Cursor::new(magic[..have].to_vec()).chain(layer);
    if magic[..have].starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(stream)))
    } else if magic[..have] == [0x28, 0xb5, 0x2f, 0xfd] {
        let decoder = zstd::stream::read::Decoder::new(stream)
            .map_err(|e| Error::Layer(format!("zstd: {e}")))?;
        Ok(Box::new(decoder))
    } else {
        Ok(Box::new(stream))
    }
}

/// Applies `layer` onto the directory `root`, which should be empty.
pub(crate) fn apply_layer(
    layer: impl Read,
    root: &OwnedFd,
    opts: &UnpackOptions,
) -> Result<Unpacked> {
    let over_limit = Rc::new(Cell::new(false));
    let measured = Measured {
        inner: decompress(layer)?,
        hasher: Sha256::new(),
        bytes: 0,
        max: opts.max_bytes,
        over_limit: over_limit.clone(),
    };
    let too_big = || {
        Error::TooLarge(format!(
            "uncompressed layer exceeds the limit of {} bytes",
            opts.max_bytes
        ))
    };
    let mut archive = tar::Archive::new(measured);
    let mut applier = Applier {
        root,
        opts,
        dir_times: Vec::new(),
        file_bytes: 0,
    };
    let mut entries = 0u64;
    let iter = archive
        .entries()
        .map_err(|e| Error::Layer(format!("read tar: {e}")))?;
    for entry in iter {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(_) if over_limit.get() => return Err(too_big()),
            Err(e) => return Err(Error::Layer(format!("read tar: {e}"))),
        };
        entries += 1;
        if entries > opts.max_entries {
            return Err(Error::Layer(format!(
                "layer has more than {} entries",
                opts.max_entries
            )));
        }
        match applier.apply(&mut entry) {
            Err(_) if over_limit.get() => return Err(too_big()),
            other => other?,
        }
    }
    applier.finish()?;
    let mut measured = archive.into_inner();
    // The diff ID covers the whole stream, including the end-of-archive padding.
    if let Err(e) = io::copy(&mut measured, &mut io::sink()) {
        if over_limit.get() {
            return Err(too_big());
        }
        return Err(Error::Layer(format!("read tar: {e}")));
    }
    Ok(Unpacked {
        diff_id: format!("sha256:{}", hex(&measured.hasher.finalize())),
        tar_bytes: measured.bytes,
        entries,
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits a tar path into its components, refusing `..` and absolute paths.
fn clean_path(raw: &[u8], display: &str, what: &str) -> Result<Vec<OsString>> {
    if raw.first() == Some(&b'/') {
        return Err(Error::entry(
            display,
            format!("{what} is an absolute path, which would escape the layer"),
        ));
    }
    let mut components = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(Error::entry(
                    display,
                    format!("{what} contains \"..\", which could escape the layer"),
                ))
            }
            _ => components.push(OsString::from_vec(part.to_vec())),
        }
    }
    Ok(components)
}

struct Applier<'a> {
    root: &'a OwnedFd,
    opts: &'a UnpackOptions,
    /// Directory times are set last: creating children changes them.
    dir_times: Vec<(Vec<OsString>, TimeSpec)>,
    /// Bytes of file content written so far, holes included.
    file_bytes: u64,
}

impl Applier<'_> {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let display = String::from_utf8_lossy(&raw_path).into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let components = clean_path(&raw_path, &display, "path")?;
        let Some((name, dirs)) = components.split_last() else {
            // The layer root itself: only its metadata applies.
            if kind.is_dir() {
                let meta = Meta::from_entry(entry, &display)?;
                meta.apply(self.root, OsStr::new("."), &display, false)?;
                self.dir_times.push((Vec::new(), meta.mtime));
            }
            return Ok(());
        };
        let parent = self.open_parent(dirs, true, &display)?;
        let name_bytes = name.as_bytes();

        if name_bytes.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&parent, name, &display);
        }

        let meta = Meta::from_entry(entry, &display)?;
        match kind {
            tar::EntryType::Directory => {
                if !replace_existing(&parent, name, true, &display)? {
                    mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o700))
                        .map_err(|e| Error::entry(&display, format!("mkdir: {e}")))?;
                }
                meta.apply(&parent, name, &display, false)?;
                self.dir_times.push((components.clone(), meta.mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                replace_existing(&parent, name, false, &display)?;
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
                .map_err(|e| Error::entry(&display, format!("create: {e}")))?;
                let mut file = File::from(fd);
                let budget = self.opts.max_bytes.saturating_sub(self.file_bytes);
                match copy_sparse(entry, &mut file, budget) {
                    Ok(written) => self.file_bytes += written,
                    Err(CopyError::OverBudget) => {
                        return Err(Error::TooLarge(format!(
                            "files in the layer exceed the limit of {} bytes (at {display:?})",
                            self.opts.max_bytes
                        )))
                    }
                    Err(CopyError::Io(e)) => {
                        return Err(Error::entry(&display, format!("write: {e}")))
                    }
                }
                drop(file);
                meta.apply(&parent, name, &display, false)?;
                meta.set_times(&parent, name, &display)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::entry(&display, "symlink without a target"))?
                    .into_owned();
                replace_existing(&parent, name, false, &display)?;
                symlinkat(OsStr::from_bytes(&target), &parent, name.as_os_str())
                    .map_err(|e| Error::entry(&display, format!("symlink: {e}")))?;
                meta.apply(&parent, name, &display, true)?;
                meta.set_times(&parent, name, &display)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::entry(&display, "hardlink without a target"))?
                    .into_owned();
                let target_display = String::from_utf8_lossy(&target).into_owned();
                let target_parts = clean_path(
                    &target,
                    &display,
                    &format!("hardlink target {target_display:?}"),
                )?;
                let Some((target_name, target_dirs)) = target_parts.split_last() else {
                    return Err(Error::entry(&display, "hardlink to the layer root"));
                };
                let target_parent = self.open_parent(target_dirs, false, &display)?;
                match fstatat(
                    &target_parent,
                    target_name.as_os_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                ) {
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                        return Err(Error::entry(
                            &display,
                            format!("hardlink target {target_display:?} is a directory"),
                        ))
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return Err(Error::entry(
                            &display,
                            format!("hardlink target {target_display:?} is not in this layer"),
                        ))
                    }
                }
                if components == target_parts {
                    return Ok(());
                }
                replace_existing(&parent, name, false, &display)?;
                linkat(
                    &target_parent,
                    target_name.as_os_str(),
                    &parent,
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| Error::entry(&display, format!("hardlink: {e}")))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (sflag, what) = match kind {
                    tar::EntryType::Char => (SFlag::S_IFCHR, "character device"),
                    tar::EntryType::Block => (SFlag::S_IFBLK, "block device"),
                    _ => (SFlag::S_IFIFO, "fifo"),
                };
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                if sflag != SFlag::S_IFIFO && !self.opts.allow_devices {
                    return Err(Error::entry(
                        &display,
                        format!("{what} {major}:{minor} refused: device nodes are not allowed in this layer"),
                    ));
                }
                replace_existing(&parent, name, false, &display)?;
                let dev = if sflag == SFlag::S_IFIFO {
                    0
                } else {
                    libc::makedev(major, minor)
                };
                mknodat(
                    &parent,
                    name.as_os_str(),
                    sflag,
                    Mode::from_bits_truncate(0o600),
                    dev,
                )
                .map_err(|e| Error::entry(&display, format!("mknod: {e}")))?;
                meta.apply(&parent, name, &display, false)?;
                meta.set_times(&parent, name, &display)?;
            }
            other => {
                return Err(Error::entry(
                    &display,
                    format!("unsupported tar entry type {other:?}"),
                ))
            }
        }
        Ok(())
    }

    /// Turns `.wh.NAME` into an overlay whiteout and `.wh..wh..opq` into an opaque directory.
    fn whiteout(&mut self, parent: &OwnedFd, name: &OsStr, display: &str) -> Result<()> {
        let bytes = name.as_bytes();
        if bytes == OPAQUE_WHITEOUT.as_bytes() {
            let dir = File::from(
                parent
                    .try_clone()
                    .map_err(|e| Error::entry(display, format!("dup: {e}")))?,
            );
            return xattr::FileExt::set_xattr(&dir, OPAQUE_XATTR, b"y")
                .map_err(|e| Error::entry(display, format!("set {OPAQUE_XATTR}: {e}")));
        }
        if bytes.starts_with(b".wh..wh.") {
            // Other aufs metadata (hardlink stores and the like) has no overlay meaning.
            return Ok(());
        }
        let hidden = OsStr::from_bytes(&bytes[WHITEOUT_PREFIX.len()..]);
        if hidden.is_empty() || hidden == "." || hidden == ".." {
            return Err(Error::entry(display, "whiteout without a valid name"));
        }
        replace_existing(parent, hidden, false, display)?;
        mknodat(parent, hidden, SFlag::S_IFCHR, Mode::empty(), 0)
            .map_err(|e| Error::entry(display, format!("mknod whiteout: {e}")))
    }

    /// Opens the directory `dirs` below the root without following any symlink, creating
    /// missing directories when `create` is set.
    fn open_parent(&self, dirs: &[OsString], create: bool, display: &str) -> Result<OwnedFd> {
        let mut current = self
            .root
            .try_clone()
            .map_err(|e| Error::entry(display, format!("dup: {e}")))?;
        for (depth, dir) in dirs.iter().enumerate() {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let opened = match openat(&current, dir.as_os_str(), flags, Mode::empty()) {
                Err(Errno::ENOENT) if create => {
                    mkdirat(&current, dir.as_os_str(), Mode::from_bits_truncate(0o755))
                        .map_err(|e| Error::entry(display, format!("mkdir parent: {e}")))?;
                    fchmodat(
                        &current,
                        dir.as_os_str(),
                        Mode::from_bits_truncate(0o755),
                        FchmodatFlags::FollowSymlink,
                    )
                    .map_err(|e| Error::entry(display, format!("chmod parent: {e}")))?;
                    openat(&current, dir.as_os_str(), flags, Mode::empty())
                }
                other => other,
            };
            let prefix = || {
                dirs[..=depth]
                    .iter()
                    .map(|d| d.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            };
            current = match opened {
                Ok(fd) => fd,
                Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                    let is_link = fstatat(&current, dir.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK)
                        .unwrap_or(false);
                    let reason = if is_link {
                        format!(
                            "path goes through the symlink {:?}, which is refused",
                            prefix()
                        )
                    } else {
                        format!("{:?} is not a directory", prefix())
                    };
                    return Err(Error::entry(display, reason));
                }
                Err(Errno::ENOENT) => {
                    return Err(Error::entry(
                        display,
                        format!("{:?} does not exist in this layer", prefix()),
                    ))
                }
                Err(e) => return Err(Error::entry(display, format!("open {:?}: {e}", prefix()))),
            };
        }
        Ok(current)
    }

    /// Stamps directory times, deepest first so parents are not touched again.
    fn finish(&mut self) -> Result<()> {
        let dir_times = std::mem::take(&mut self.dir_times);
        for (components, mtime) in dir_times.into_iter().rev() {
            let (parent, name) = match components.split_last() {
                None => (self.root.try_clone().ok(), OsString::from(".")),
                Some((name, dirs)) => (self.open_parent(dirs, false, "").ok(), name.clone()),
            };
            // A directory replaced later in the layer has nothing left to stamp.
            if let Some(parent) = parent {
                let _ = utimensat(
                    &parent,
                    name.as_os_str(),
                    &mtime,
                    &mtime,
                    UtimensatFlags::NoFollowSymlink,
                );
            }
        }
        Ok(())
    }
}

/// Removes whatever sits at `name` so the entry can take its place. Returns true when an
/// existing directory was kept because the entry is a directory too.
fn replace_existing(parent: &OwnedFd, name: &OsStr, keep_dir: bool, display: &str) -> Result<bool> {
    let st = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(Error::entry(display, format!("stat: {e}"))),
    };
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        if keep_dir {
            return Ok(true);
        }
        let path = fd_path(parent).join(name);
        std::fs::remove_dir_all(&path)
            .map_err(|e| Error::entry(display, format!("remove the directory it replaces: {e}")))?;
    } else {
        unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| Error::entry(display, format!("remove the file it replaces: {e}")))?;
    }
    Ok(false)
}

/// A path naming the directory behind `fd`; resolving it never follows layer symlinks.
pub(crate) fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

enum CopyError {
    OverBudget,
    Io(io::Error),
}

impl From<io::Error> for CopyError {
    fn from(e: io::Error) -> Self {
        CopyError::Io(e)
    }
}

/// Copies file data, leaving holes where whole blocks are zero so sparse files stay sparse.
/// Stops once more than `budget` bytes came out: a small sparse entry can expand to any size.
fn copy_sparse(
    src: &mut impl Read,
    dst: &mut File,
    budget: u64,
) -> std::result::Result<u64, CopyError> {
    const BLOCK: usize = 64 * 1024;
    let mut buf = vec![0u8; BLOCK];
    let mut pending_hole = false;
    let mut written = 0u64;
    loop {
        let mut filled = 0;
        while filled < BLOCK {
            match src.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if filled == 0 {
            break;
        }
        written += filled as u64;
        if written > budget {
            return Err(CopyError::OverBudget);
        }
        if buf[..filled].iter().all(|b| *b == 0) {
            dst.seek(SeekFrom::Current(filled as i64))?;
            pending_hole = true;
        } else {
            dst.write_all(&buf[..filled])?;
            pending_hole = false;
        }
        if filled < BLOCK {
            break;
        }
    }
    if pending_hole {
        let end = dst.stream_position()?;
        dst.set_len(end)?;
    }
    Ok(written)
}

/// Owner, mode, xattrs and times of one entry.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: TimeSpec,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    fn from_entry<R: Read>(entry: &mut tar::Entry<'_, R>, display: &str) -> Result<Self> {
        let header = entry.header();
        let bad = |what: &str, e: io::Error| Error::entry(display, format!("bad {what}: {e}"));
        let uid = header.uid().map_err(|e| bad("uid", e))?;
        let gid = header.gid().map_err(|e| bad("gid", e))?;
        let mode = header.mode().map_err(|e| bad("mode", e))? & 0o7777;
        let mut mtime = TimeSpec::new(header.mtime().map_err(|e| bad("mtime", e))? as i64, 0);
        let uid = u32::try_from(uid)
            .map_err(|_| Error::entry(display, format!("uid {uid} out of range")))?;
        let gid = u32::try_from(gid)
            .map_err(|_| Error::entry(display, format!("gid {gid} out of range")))?;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(|e| bad("pax header", e))? {
            for ext in pax {
                let ext = ext.map_err(|e| bad("pax header", e))?;
                let Ok(key) = ext.key() else { continue };
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    // Overlay's own attributes would let a layer steer the overlay mount.
                    if !name.starts_with("trusted.overlay.") {
                        xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                    }
                } else if key == "mtime" {
                    if let Some(ts) = ext.value().ok().and_then(parse_pax_time) {
                        mtime = ts;
                    }
                }
            }
        }
        Ok(Meta {
            uid,
            gid,
            mode,
            mtime,
            xattrs,
        })
    }

    /// Owner, then mode (chown clears set-id bits), then xattrs (chown clears capabilities).
    fn apply(&self, parent: &OwnedFd, name: &OsStr, display: &str, is_symlink: bool) -> Result<()> {
        fchownat(
            parent,
            name,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::entry(display, format!("chown {}:{}: {e}", self.uid, self.gid)))?;
        if !is_symlink {
            fchmodat(
                parent,
                name,
                Mode::from_bits_truncate(self.mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| Error::entry(display, format!("chmod {:o}: {e}", self.mode)))?;
        }
        if !self.xattrs.is_empty() {
            let path = fd_path(&parent.as_fd()).join(name);
            for (key, value) in &self.xattrs {
                xattr::set(&path, key, value)
                    .map_err(|e| Error::entry(display, format!("set xattr {key}: {e}")))?;
            }
        }
        Ok(())
    }

    fn set_times(&self, parent: &OwnedFd, name: &OsStr, display: &str) -> Result<()> {
        utimensat(
            parent,
            name,
            &self.mtime,
            &self.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| Error::entry(display, format!("set times: {e}")))
    }
}

fn parse_pax_time(value: &str) -> Option<TimeSpec> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse::<i64>().ok()?
    };
    Some(TimeSpec::new(secs, if secs < 0 { -nanos } else { nanos }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_refuses_escapes() {
        assert!(clean_path(b"../evil", "x", "path").is_err());
        assert!(clean_path(b"a/../../evil", "x", "path").is_err());
        assert!(clean_path(b"/etc/x", "x", "path").is_err());
        let parts = clean_path(b"./a//b/./c/", "x", "path").unwrap();
        assert_eq!(parts, vec!["a", "b", "c"]);
    }

    #[test]
    fn pax_times() {
        let ts = parse_pax_time("1700000000.5").unwrap();
        assert_eq!((ts.tv_sec(), ts.tv_nsec()), (1700000000, 500_000_000));
        assert_eq!(parse_pax_time("12").unwrap().tv_sec(), 12);
    }
}

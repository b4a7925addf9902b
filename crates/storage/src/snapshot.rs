//! Overlayfs snapshots of image layers keyed by chain ID, and per-container upper layers.
//!
//! Layout under the root, with short numeric snapshot ids so overlay's `lowerdir` option
//! stays within the kernel's one-page limit:
//!
//! ```text
//! lock                      flock held while records change
//! index/<chain hex>         symlink whose target is the snapshot id
//! snapshots/<id>/fs         the unpacked layer
//! snapshots/<id>/info.json  SnapshotInfo: parent, children and containers using it
//! containers/<key>/{upper,work,info.json}
//! staging/                  layers being unpacked
//! ```
//!
//! Like containerd's snapshotters, this returns the mounts to perform and mounts nothing.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::mount::Mount;
use crate::unpack::{hex, unpack, RemoveOnDrop, UnpackOptions};

/// The record kept beside each committed snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Short numeric id, also the directory name.
    pub id: u64,
    pub chain_id: String,
    pub diff_id: String,
    /// Chain ID of the layer below, if any.
    pub parent: Option<String>,
    pub parent_id: Option<u64>,
    /// Ids of snapshots committed on top of this one.
    pub children: Vec<u64>,
    /// Keys of containers whose top layer this is.
    pub containers: Vec<String>,
}

/// The record kept beside each container's upper layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub key: String,
    pub top_chain_id: String,
    /// Snapshot ids from the top layer down.
    pub lowers: Vec<u64>,
    /// An init layer of the container's own sits above the image: the mount points of the
    /// files the engine binds in (/etc/hosts, /etc/hostname, /etc/resolv.conf), so they
    /// never show up as the container's changes (Docker's `-init` layer).
    #[serde(default)]
    pub init: bool,
}

/// Disk usage of a snapshot or container layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of allocated blocks.
    pub bytes: u64,
    /// Distinct inodes.
    pub inodes: u64,
}

/// A layer unpacked and verified in the staging area, not yet a snapshot; its files go
/// when it is dropped uncommitted.
#[derive(Debug)]
pub struct StagedLayer {
    dir: PathBuf,
    guard: RemoveOnDrop,
    diff_id: String,
    tar_bytes: u64,
}

impl StagedLayer {
    /// `sha256:<hex>` of the uncompressed tar.
    pub fn diff_id(&self) -> &str {
        &self.diff_id
    }

    /// Size of the uncompressed tar.
    pub fn tar_bytes(&self) -> u64 {
        self.tar_bytes
    }
}

/// Computes an OCI chain ID: the diff ID for the first layer, otherwise
/// `sha256(parent_chain + " " + diff_id)`.
pub fn chain_id(parent: Option<&str>, diff_id: &str) -> String {
    match parent {
        None => diff_id.to_string(),
        Some(parent) => {
            let mut hasher = Sha256::new();
            hasher.update(parent.as_bytes());
            hasher.update(b" ");
            hasher.update(diff_id.as_bytes());
            format!("sha256:{}", hex(&hasher.finalize()))
        }
    }
}

/// `sha256:<hex>` of `data`, the form of diff IDs and chain IDs.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn digest_hex(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
        {
            Ok(hex)
        }
        _ => Err(Error::InvalidArgument(format!(
            "{digest:?} is not a sha256 digest"
        ))),
    }
}

fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "container key {key:?} (use 1-128 of [A-Za-z0-9_.-], not starting with '.')"
        )))
    }
}

static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Layer snapshots and container layers under one root directory.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    root: PathBuf,
    unpack_options: UnpackOptions,
}

impl Snapshotter {
    /// Opens (creating if needed) a snapshotter rooted at `root`, with default unpack limits.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        Self::with_options(root, UnpackOptions::default())
    }

    /// Opens a snapshotter that unpacks layers with `unpack_options`.
    pub fn with_options(root: impl Into<PathBuf>, unpack_options: UnpackOptions) -> Result<Self> {
        let root = root.into();
        for dir in ["", "index", "snapshots", "containers", "staging"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(|e| Error::io("mkdir", &path, e))?;
        }
        // Overlay options need absolute paths, free of their separators.
        let root = std::fs::canonicalize(&root).map_err(|e| Error::io("resolve", &root, e))?;
        let shown = root.display().to_string();
        if shown.contains([',', ':', '\\']) || shown.chars().any(char::is_whitespace) {
            return Err(Error::InvalidArgument(format!(
                "storage root {shown:?}: overlay options cannot name paths with ',', ':', '\\' or spaces"
            )));
        }
        let snapshotter = Snapshotter {
            root,
            unpack_options,
        };
        snapshotter.clean_leftovers()?;
        Ok(snapshotter)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes what an interrupted operation left: layers staged by processes that are gone,
    /// half-made or half-removed snapshots and containers (those change only under the lock).
    fn clean_leftovers(&self) -> Result<()> {
        let _lock = self.lock()?;
        for dir in ["staging", "snapshots", "containers", "index"] {
            let path = self.root.join(dir);
            let entries = std::fs::read_dir(&path).map_err(|e| Error::io("read dir", &path, e))?;
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let stale = if dir == "staging" {
                    // Staged names start with the pid of the process unpacking them.
                    let pid: String = name
                        .trim_start_matches('.')
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    pid.is_empty() || !Path::new("/proc").join(&pid).exists()
                } else {
                    name.starts_with(".tmp-") || name.starts_with(".del-")
                };
                if stale {
                    let path = entry.path();
                    let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    removed.map_err(|e| Error::io("remove leftover", &path, e))?;
                }
            }
        }
        Ok(())
    }

    fn lock(&self) -> Result<Flock<File>> {
        let path = self.root.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| Error::sys("flock", &path, e))
    }

    fn snapshot_dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    /// Directory holding the unpacked files of snapshot `id`.
    fn fs_dir(&self, id: u64) -> PathBuf {
        self.snapshot_dir(id).join("fs")
    }

    fn lookup(&self, chain_id: &str) -> Result<Option<u64>> {
        let link = self.root.join("index").join(digest_hex(chain_id)?);
        match std::fs::read_link(&link) {
            Ok(target) => target
                .to_str()
                .and_then(|t| t.parse().ok())
                .map(Some)
                .ok_or_else(|| Error::Layer(format!("corrupt index entry {}", link.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("readlink", &link, e)),
        }
    }

    fn require(&self, chain_id: &str) -> Result<u64> {
        self.lookup(chain_id)?
            .ok_or_else(|| Error::NotFound(format!("snapshot {chain_id}")))
    }

    /// Whether a committed snapshot exists for `chain_id`.
    pub fn has(&self, chain_id: &str) -> bool {
        matches!(self.lookup(chain_id), Ok(Some(_)))
    }

    /// The record of the snapshot for `chain_id`.
    pub fn snapshot_info(&self, chain_id: &str) -> Result<SnapshotInfo> {
        let id = self.require(chain_id)?;
        read_json(&self.snapshot_dir(id).join("info.json"))
    }

    /// The unpacked files of the snapshot for `chain_id`.
    pub fn snapshot_path(&self, chain_id: &str) -> Result<PathBuf> {
        Ok(self.fs_dir(self.require(chain_id)?))
    }

    /// Unpacks `layer` as a new snapshot on top of `parent_chain` and returns its
    /// `(chain_id, diff_id)`. When that snapshot already exists it is kept and returned.
    pub fn commit_layer(
        &self,
        parent_chain: Option<&str>,
        layer: impl Read,
    ) -> Result<(String, String)> {
        self.commit(parent_chain, None, layer)
    }

    /// Like [`Snapshotter::commit_layer`] for a layer whose diff ID is known (from the image
    /// config): returns at once when the snapshot exists, and refuses a layer whose content
    /// does not match `diff_id`.
    pub fn commit_layer_verified(
        &self,
        parent_chain: Option<&str>,
        diff_id: &str,
        layer: impl Read,
    ) -> Result<String> {
        digest_hex(diff_id)?;
        let chain = chain_id(parent_chain, diff_id);
        if self.has(&chain) {
            return Ok(chain);
        }
        self.commit(parent_chain, Some(diff_id), layer)
            .map(|(chain, _)| chain)
    }

    fn commit(
        &self,
        parent_chain: Option<&str>,
        expected_diff_id: Option<&str>,
        layer: impl Read,
    ) -> Result<(String, String)> {
        // Checked first too, so a missing parent fails before the layer is unpacked.
        if let Some(parent) = parent_chain {
            self.require(parent)?;
        }
        let staged = self.stage_layer(expected_diff_id, layer)?;
        let diff_id = staged.diff_id.clone();
        let (chain, _) = self.commit_staged(parent_chain, staged)?;
        Ok((chain, diff_id))
    }

    /// Unpacks `layer` into the staging area, refusing it when its content is not
    /// `expected_diff_id`. Needs no parent: layers of one image can be staged side by side
    /// and committed bottom first with [`Snapshotter::commit_staged`]. Dropping the result
    /// removes the staged files.
    pub fn stage_layer(
        &self,
        expected_diff_id: Option<&str>,
        layer: impl Read,
    ) -> Result<StagedLayer> {
        if let Some(expected) = expected_diff_id {
            digest_hex(expected)?;
        }
        let n = STAGING_COUNTER.fetch_add(1, Ordering::Relaxed);
        let staged = self
            .root
            .join("staging")
            .join(format!("{}-{n}", std::process::id()));
        let guard = RemoveOnDrop::new(&staged);
        // A layer that cannot fit is refused before it fills the disk for everyone else.
        let staging = self.root.join("staging");
        let free = free_bytes(&staging)?;
        let mut options = self.unpack_options.clone();
        let space_bound = free < options.max_bytes;
        options.max_bytes = options.max_bytes.min(free);
        let unpacked = match unpack(layer, &staged, &options) {
            Err(Error::TooLarge(_)) if space_bound => {
                return Err(Error::TooLarge(format!(
                    "uncompressed layer does not fit in the {free} bytes free on {}",
                    staging.display()
                )))
            }
            other => other?,
        };
        if let Some(expected) = expected_diff_id {
            if unpacked.diff_id != expected {
                return Err(Error::Layer(format!(
                    "content has diff ID {}, expected {expected}",
                    unpacked.diff_id
                )));
            }
        }
        Ok(StagedLayer {
            dir: staged,
            guard,
            diff_id: unpacked.diff_id,
            tar_bytes: unpacked.tar_bytes,
        })
    }

    /// Makes a staged layer the snapshot on top of `parent_chain`, which must exist, and
    /// returns its chain ID and whether this call made it (false: it existed already, and
    /// the staged files are dropped).
    pub fn commit_staged(
        &self,
        parent_chain: Option<&str>,
        mut staged: StagedLayer,
    ) -> Result<(String, bool)> {
        let chain = chain_id(parent_chain, &staged.diff_id);
        let _lock = self.lock()?;
        if self.lookup(&chain)?.is_some() {
            return Ok((chain, false));
        }
        // The parent may have been removed while the layer was unpacking.
        let parent_id = match parent_chain {
            Some(parent) => Some(self.require(parent)?),
            None => None,
        };
        let id = self.next_id()?;
        let info = SnapshotInfo {
            id,
            chain_id: chain.clone(),
            diff_id: staged.diff_id.clone(),
            parent: parent_chain.map(str::to_string),
            parent_id,
            children: Vec::new(),
            containers: Vec::new(),
        };
        let final_dir = self.snapshot_dir(id);
        let tmp_dir = self.root.join("snapshots").join(format!(".tmp-{id}"));
        std::fs::create_dir(&tmp_dir).map_err(|e| Error::io("mkdir", &tmp_dir, e))?;
        let mut tmp_guard = RemoveOnDrop::new(&tmp_dir);
        let fs = tmp_dir.join("fs");
        std::fs::rename(&staged.dir, &fs).map_err(|e| Error::io("rename", &fs, e))?;
        staged.guard.disarm();
        write_json_atomic(&tmp_dir.join("info.json"), &info)?;
        std::fs::rename(&tmp_dir, &final_dir).map_err(|e| Error::io("rename", &final_dir, e))?;
        tmp_guard.disarm();
        if let Some(parent_id) = parent_id {
            self.update_snapshot(parent_id, |p| p.children.push(id))?;
        }
        let link = self.root.join("index").join(digest_hex(&chain)?);
        let link_tmp = self.root.join("index").join(format!(".tmp-{id}"));
        let _ = std::fs::remove_file(&link_tmp);
        std::os::unix::fs::symlink(id.to_string(), &link_tmp)
            .map_err(|e| Error::io("symlink", &link_tmp, e))?;
        std::fs::rename(&link_tmp, &link).map_err(|e| Error::io("rename", &link, e))?;
        Ok((chain, true))
    }

    fn next_id(&self) -> Result<u64> {
        let dir = self.root.join("snapshots");
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("read dir", &dir, e))?;
        let max = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()))
            .max()
            .unwrap_or(0);
        Ok(max + 1)
    }

    fn update_snapshot(&self, id: u64, change: impl FnOnce(&mut SnapshotInfo)) -> Result<()> {
        let path = self.snapshot_dir(id).join("info.json");
        let mut info: SnapshotInfo = read_json(&path)?;
        change(&mut info);
        write_json_atomic(&path, &info)
    }

    fn container_dir(&self, key: &str) -> PathBuf {
        self.root.join("containers").join(key)
    }

    /// Creates the upper and work directories of container `key` over the image whose top
    /// layer is `top_chain_id`, and returns the one overlay mount of its root file system.
    pub fn prepare(&self, key: &str, top_chain_id: &str) -> Result<Vec<Mount>> {
        check_key(key)?;
        let _lock = self.lock()?;
        let top = self.require(top_chain_id)?;
        let dir = self.container_dir(key);
        if dir.exists() {
            return Err(Error::Conflict(format!(
                "container storage {key} already exists"
            )));
        }
        let mut lowers = vec![top];
        let mut current: SnapshotInfo = read_json(&self.snapshot_dir(top).join("info.json"))?;
        while let Some(parent) = current.parent_id {
            lowers.push(parent);
            current = read_json(&self.snapshot_dir(parent).join("info.json"))?;
        }
        let info = ContainerInfo {
            key: key.to_string(),
            top_chain_id: top_chain_id.to_string(),
            lowers,
            init: true,
        };
        let mount = self.overlay_mount(&info);
        let (_, data) = mount.flags_and_data();
        if data.len() > crate::mount::MAX_MOUNT_DATA {
            return Err(Error::Unsupported(format!(
                "image {top_chain_id} has too many layers ({}) for one overlay mount",
                info.lowers.len()
            )));
        }
        let tmp = self.root.join("containers").join(format!(".tmp-{key}"));
        let _ = std::fs::remove_dir_all(&tmp);
        let mut guard = RemoveOnDrop::new(&tmp);
        for sub in ["upper", "work"] {
            let path = tmp.join(sub);
            std::fs::create_dir_all(&path).map_err(|e| Error::io("mkdir", &path, e))?;
        }
        self.make_init_layer(&tmp.join("init"), &info)?;
        write_json_atomic(&tmp.join("info.json"), &info)?;
        std::fs::rename(&tmp, &dir).map_err(|e| Error::io("rename", &dir, e))?;
        guard.disarm();
        self.update_snapshot(top, |s| s.containers.push(key.to_string()))?;
        Ok(vec![mount])
    }

    /// The init layer at `dir`: an `etc` with the image's own mode and owner, holding
    /// empty mount points for the files bound in at start.
    fn make_init_layer(&self, dir: &Path, info: &ContainerInfo) -> Result<()> {
        let etc = dir.join("etc");
        std::fs::create_dir_all(&etc).map_err(|e| Error::io("mkdir", &etc, e))?;
        let image_etc = info
            .lowers
            .iter()
            .map(|id| self.fs_dir(*id).join("etc"))
            .find_map(|p| std::fs::symlink_metadata(&p).ok().filter(|m| m.is_dir()));
        if let Some(m) = image_etc {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(m.mode() & 0o7777))
                .map_err(|e| Error::io("chmod", &etc, e))?;
            std::os::unix::fs::lchown(&etc, Some(m.uid()), Some(m.gid()))
                .map_err(|e| Error::io("chown", &etc, e))?;
        }
        for name in ["hosts", "hostname", "resolv.conf"] {
            let path = etc.join(name);
            std::fs::File::create(&path).map_err(|e| Error::io("create", &path, e))?;
        }
        Ok(())
    }

    /// The container's lower directories, top first: its init layer, then the image's.
    fn lower_paths(&self, info: &ContainerInfo) -> Vec<PathBuf> {
        let init = info
            .init
            .then(|| self.container_dir(&info.key).join("init"));
        init.into_iter()
            .chain(info.lowers.iter().map(|id| self.fs_dir(*id)))
            .collect()
    }

    fn overlay_mount(&self, info: &ContainerInfo) -> Mount {
        let lowerdir = self
            .lower_paths(info)
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let dir = self.container_dir(&info.key);
        let mut options = vec![
            format!("lowerdir={lowerdir}"),
            format!("upperdir={}", dir.join("upper").display()),
            format!("workdir={}", dir.join("work").display()),
        ];
        // Whatever the host's defaults, keep the upper layer a plain record of changes that
        // `diff` can read: no inode index, no directory redirects, no metadata-only copy-up.
        for feature in ["index", "redirect_dir", "metacopy"] {
            if Path::new("/sys/module/overlay/parameters")
                .join(feature)
                .exists()
            {
                options.push(format!("{feature}=off"));
            }
        }
        Mount {
            typ: "overlay".to_string(),
            source: "overlay".to_string(),
            target: None,
            options,
        }
    }

    /// The record of container `key`.
    pub fn container_info(&self, key: &str) -> Result<ContainerInfo> {
        check_key(key)?;
        let path = self.container_dir(key).join("info.json");
        if !path.exists() {
            return Err(Error::NotFound(format!("container storage {key}")));
        }
        read_json(&path)
    }

    /// The mounts of an already prepared container.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        Ok(vec![self.overlay_mount(&self.container_info(key)?)])
    }

    /// The upper directory of container `key`: its changes, input to [`crate::diff`].
    pub fn upper_dir(&self, key: &str) -> Result<PathBuf> {
        self.container_info(key)?;
        Ok(self.container_dir(key).join("upper"))
    }

    /// The image layers under container `key`'s upper directory, top first.
    pub fn lower_dirs(&self, key: &str) -> Result<Vec<PathBuf>> {
        Ok(self.lower_paths(&self.container_info(key)?))
    }

    /// Writes container `key`'s changes as an uncompressed layer tar.
    pub fn diff(&self, key: &str, out: impl Write) -> Result<()> {
        crate::diff::diff(&self.upper_dir(key)?, out)
    }

    /// Removes container `key`'s upper layer. It must no longer be mounted.
    pub fn remove_container(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let _lock = self.lock()?;
        let info = self.container_info(key)?;
        let dir = self.container_dir(key);
        if let Some(target) = overlay_mounted_with_upper(&dir.join("upper"))? {
            return Err(Error::Conflict(format!(
                "container storage {key} is still mounted at {target}"
            )));
        }
        let doomed = self.root.join("containers").join(format!(".del-{key}"));
        std::fs::rename(&dir, &doomed).map_err(|e| Error::io("rename", &dir, e))?;
        if let Some(top) = self.lookup(&info.top_chain_id)? {
            self.update_snapshot(top, |s| s.containers.retain(|k| k != key))?;
        }
        std::fs::remove_dir_all(&doomed).map_err(|e| Error::io("remove", &doomed, e))
    }

    /// Removes the snapshot for `chain_id`; refused while a container or a child snapshot
    /// uses it.
    pub fn remove_snapshot(&self, chain_id: &str) -> Result<()> {
        let _lock = self.lock()?;
        let id = self.require(chain_id)?;
        let dir = self.snapshot_dir(id);
        let info: SnapshotInfo = read_json(&dir.join("info.json"))?;
        if !info.containers.is_empty() || !info.children.is_empty() {
            let mut users: Vec<String> = info
                .containers
                .iter()
                .map(|k| format!("container {k}"))
                .collect();
            users.extend(info.children.iter().map(|c| format!("snapshot {c}")));
            return Err(Error::Conflict(format!(
                "snapshot {chain_id} is in use by {}",
                users.join(", ")
            )));
        }
        let link = self.root.join("index").join(digest_hex(chain_id)?);
        std::fs::remove_file(&link).map_err(|e| Error::io("remove", &link, e))?;
        if let Some(parent) = info.parent_id {
            self.update_snapshot(parent, |p| p.children.retain(|c| *c != id))?;
        }
        let doomed = self.root.join("snapshots").join(format!(".del-{id}"));
        std::fs::rename(&dir, &doomed).map_err(|e| Error::io("rename", &dir, e))?;
        std::fs::remove_dir_all(&doomed).map_err(|e| Error::io("remove", &doomed, e))
    }

    /// Disk usage of the snapshot for `chain_id` (its own layer only).
    pub fn usage(&self, chain_id: &str) -> Result<Usage> {
        disk_usage(&self.snapshot_path(chain_id)?)
    }

    /// Disk usage of container `key`'s upper layer.
    pub fn container_usage(&self, key: &str) -> Result<Usage> {
        disk_usage(&self.upper_dir(key)?)
    }

    /// Records of all committed snapshots, oldest first.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let dir = self.root.join("snapshots");
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("read dir", &dir, e))?;
        let mut infos = Vec::new();
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some()
            {
                infos.push(read_json::<SnapshotInfo>(&entry.path().join("info.json"))?);
            }
        }
        infos.sort_by_key(|i| i.id);
        Ok(infos)
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `path`.
fn free_bytes(path: &Path) -> Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| Error::sys("statvfs", path, e))?;
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// Sums allocated blocks under `path`, counting hardlinked inodes once, without following
/// symlinks or crossing into other file systems.
pub fn disk_usage(path: &Path) -> Result<Usage> {
    let mut seen = std::collections::HashSet::new();
    let mut usage = Usage::default();
    let mut stack = vec![path.to_path_buf()];
    let root_dev = std::fs::symlink_metadata(path)
        .map_err(|e| Error::io("stat", path, e))?
        .dev();
    while let Some(current) = stack.pop() {
        let meta =
            std::fs::symlink_metadata(&current).map_err(|e| Error::io("stat", &current, e))?;
        if meta.dev() != root_dev {
            continue;
        }
        if seen.insert((meta.dev(), meta.ino())) {
            usage.bytes += meta.blocks() * 512;
            usage.inodes += 1;
        }
        if meta.is_dir() {
            let entries =
                std::fs::read_dir(&current).map_err(|e| Error::io("read dir", &current, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io("read dir", &current, e))?;
                stack.push(entry.path());
            }
        }
    }
    Ok(usage)
}

/// The mount point of an overlay in this mount namespace whose upper directory is `upper`.
fn overlay_mounted_with_upper(upper: &Path) -> Result<Option<String>> {
    let path = Path::new("/proc/self/mountinfo");
    let table = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    let wanted = format!("upperdir={}", upper.display());
    for line in table.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut fields = right.split(' ');
        if fields.next() != Some("overlay") {
            continue;
        }
        let super_options = fields.nth(1).unwrap_or("");
        if super_options.split(',').any(|o| o == wanted) {
            return Ok(Some(left.split(' ').nth(4).unwrap_or("?").to_string()));
        }
    }
    Ok(None)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Metadata {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `value` to a temporary file, syncs it and renames it over `path`.
fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Metadata {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    let mut file = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_oci() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        assert_eq!(chain_id(None, &a), a);
        let mut hasher = Sha256::new();
        hasher.update(format!("{a} {b}").as_bytes());
        assert_eq!(
            chain_id(Some(&a), &b),
            format!("sha256:{}", hex(&hasher.finalize()))
        );
    }

    #[test]
    fn keys_and_digests_are_checked() {
        assert!(check_key("abc-1_2.x").is_ok());
        for bad in ["", ".", "..", ".tmp-x", "a/b", "a,b", "a:b"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        assert!(digest_hex("sha256:../../x").is_err());
    }
}

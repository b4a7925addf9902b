//! The image store: blobs in a [`ContentStore`], images and their references in a redb
//! index. Images are keyed by ID (the config digest); references (`name:tag`,
//! `name@digest`) point at image IDs.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::config::{parse_rfc3339, ImageConfig};
use crate::content::ContentStore;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::lease::{Lease, Pins};
use crate::reference::Reference;

/// An image ID: the digest of its config blob.
pub type ImageId = Digest;

/// image ID → JSON [`ImageRecord`].
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// normalised reference → image ID.
const REFS: TableDefinition<&str, &str> = TableDefinition::new("refs");

/// One layer of an image, as the index records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    pub digest: Digest,
    pub media_type: String,
    /// Size of the blob as stored.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
}

/// What the index knows about one image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    pub id: ImageId,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub layers: Vec<LayerRecord>,
    /// `created` of the config, as written there.
    pub created: Option<String>,
    /// Sum of the uncompressed layer sizes.
    pub size: u64,
}

impl ImageRecord {
    pub(crate) fn blobs(&self) -> impl Iterator<Item = &Digest> {
        [&self.id, &self.manifest_digest]
            .into_iter()
            .chain(self.layers.iter().map(|l| &l.digest))
    }
}

/// A layer as the engine needs it to build a root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// The blob file (possibly compressed, see `media_type`).
    pub path: PathBuf,
    pub media_type: String,
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
}

/// One row of `docker images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    pub id: ImageId,
    /// Familiar `repo:tag` forms (`busybox:latest`).
    pub repo_tags: Vec<String>,
    /// Familiar `repo@digest` forms.
    pub repo_digests: Vec<String>,
    /// Seconds since the epoch (0 when unknown).
    pub created: i64,
    pub size: u64,
    pub labels: BTreeMap<String, String>,
}

/// `docker image inspect` output, with Docker's field names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub parent: String,
    pub comment: String,
    pub created: String,
    pub docker_version: String,
    pub author: String,
    pub config: crate::config::ContainerConfig,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub os: String,
    pub size: u64,
    #[serde(rename = "RootFS")]
    pub root_fs: InspectRootFs,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct InspectRootFs {
    #[serde(rename = "Type")]
    pub fs_type: String,
    pub layers: Vec<String>,
}

/// One row of `docker history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    /// The image ID for the top row, `<missing>` for the others (as Docker shows).
    pub id: String,
    pub created: i64,
    pub created_by: String,
    pub tags: Vec<String>,
    pub size: u64,
    pub comment: String,
}

/// One step of a removal, as Docker reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A reference that no longer points at the image (familiar form).
    Untagged(String),
    /// An image or blob digest that is gone.
    Deleted(String),
}

/// What `gc` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed: Vec<Digest>,
    pub bytes: u64,
}

/// A container that uses an image, as removal conflicts name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUser {
    pub id: String,
    pub running: bool,
}

/// What a removal did: Docker's report lines and the bytes of blobs it deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    pub items: Vec<Removed>,
    pub bytes: u64,
}

/// The OCI chain IDs of `layers` (bottom first): the first diff ID, then
/// `sha256(parent chain + " " + diff ID)`. Snapshots are keyed by them.
pub fn chain_ids(layers: &[LayerRecord]) -> Vec<Digest> {
    chain_ids_of(layers.iter().map(|l| &l.diff_id))
}

/// The chain IDs of layers with these diff IDs, bottom first.
pub(crate) fn chain_ids_of<'a>(diff_ids: impl IntoIterator<Item = &'a Digest>) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::new();
    for diff_id in diff_ids {
        let chain = match out.last() {
            None => diff_id.clone(),
            Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
        };
        out.push(chain);
    }
    out
}

/// The local image store.
pub struct ImageStore {
    root: PathBuf,
    pub(crate) content: ContentStore,
    db: Database,
    /// Blobs being downloaded, so that concurrent pulls fetch each one once.
    pub(crate) downloads: crate::fetch::InFlight,
    /// Blobs unfinished ingests hold; never collected (see [`crate::lease`]).
    pub(crate) pins: Pins,
    /// Held while the index is read and the blobs it no longer references are deleted, and
    /// while a lease lets its pins go: short sections, never a whole download.
    gc_lock: Mutex<()>,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| Error::io("create directory", root, e))?;
        // The index first: redb refuses a second opener, which must not go on to clean
        // up the first one's temporary blob files.
        let db_path = root.join("images.redb");
        let db = Database::create(&db_path).map_err(|e| Error::index("open", e))?;
        let content = ContentStore::open(root)?;
        let tx = db.begin_write().map_err(|e| Error::index("begin", e))?;
        {
            tx.open_table(IMAGES)
                .map_err(|e| Error::index("open table", e))?;
            tx.open_table(REFS)
                .map_err(|e| Error::index("open table", e))?;
        }
        tx.commit().map_err(|e| Error::index("commit", e))?;
        Ok(ImageStore {
            root: root.to_path_buf(),
            content,
            db,
            downloads: Default::default(),
            pins: Pins::default(),
            gc_lock: Mutex::new(()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The blob store (for streaming layers out).
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// A new set of pins for an ingest; see [`crate::lease`].
    pub fn lease(&self) -> Lease<'_> {
        Lease::new(self)
    }

    /// Whether an unfinished ingest holds the blob `d`.
    pub fn is_pinned(&self, d: &Digest) -> bool {
        self.pins.is_pinned(d)
    }

    fn gc_guard(&self) -> MutexGuard<'_, ()> {
        self.gc_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops a lease's pins and collects, among those blobs, the ones no image references.
    pub(crate) fn release_pins(&self, held: &HashSet<Digest>) -> Result<GcReport> {
        let _guard = self.gc_guard();
        self.pins.remove(held);
        self.gc_locked(Some(held))
    }

    /// Finds the image that `name` designates: a reference (`busybox`, `a/b:tag`,
    /// `repo@sha256:…`), a full ID (`sha256:…` or 64 hex) or a unique ID prefix.
    pub fn resolve(&self, name: &str) -> Result<ImageId> {
        let tx = self.db.begin_read().map_err(|e| Error::index("begin", e))?;
        let refs = tx
            .open_table(REFS)
            .map_err(|e| Error::index("open table", e))?;
        let images = tx
            .open_table(IMAGES)
            .map_err(|e| Error::index("open table", e))?;
        let id_prefix = |prefix: &str| -> Result<Option<ImageId>> {
            let start = format!("sha256:{prefix}");
            let mut found = None;
            for item in images
                .range(start.as_str()..)
                .map_err(|e| Error::index("read", e))?
            {
                let (k, _) = item.map_err(|e| Error::index("read", e))?;
                if !k.value().starts_with(&start) {
                    break;
                }
                if found.is_some() {
                    return Err(Error::AmbiguousId(prefix.to_string()));
                }
                found = Some(Digest::parse(k.value())?);
            }
            Ok(found)
        };
        if let Some(hex) = name.strip_prefix("sha256:") {
            if is_hex(hex) {
                if let Some(id) = id_prefix(hex)? {
                    return Ok(id);
                }
            }
            return Err(Error::ImageNotFound(name.to_string()));
        }
        if let Ok(r) = Reference::parse(name) {
            if let Some(id) = refs
                .get(r.to_string().as_str())
                .map_err(|e| Error::index("read", e))?
            {
                return Digest::parse(id.value());
            }
            if let Some(d) = r.digest() {
                // A digest reference not recorded as such: match the manifest digest.
                for item in images.iter().map_err(|e| Error::index("read", e))? {
                    let (_, v) = item.map_err(|e| Error::index("read", e))?;
                    let rec = decode_record(v.value())?;
                    if rec.manifest_digest == *d {
                        return Ok(rec.id);
                    }
                }
            }
        }
        if is_hex(name) {
            if let Some(id) = id_prefix(name)? {
                return Ok(id);
            }
        }
        // Named as Docker names it: `nosuch` is reported as `nosuch:latest`.
        let shown = Reference::parse(name).map_or_else(|_| name.to_string(), |r| r.familiar());
        Err(Error::ImageNotFound(shown))
    }

    /// The index record of an image.
    pub fn record(&self, id: &ImageId) -> Result<ImageRecord> {
        let tx = self.db.begin_read().map_err(|e| Error::index("begin", e))?;
        let images = tx
            .open_table(IMAGES)
            .map_err(|e| Error::index("open table", e))?;
        let v = images
            .get(id.as_str())
            .map_err(|e| Error::index("read", e))?
            .ok_or_else(|| Error::ImageNotFound(id.to_string()))?;
        decode_record(v.value())
    }

    /// The parsed config of the image `name` designates, with its ID.
    pub fn config(&self, name: &str) -> Result<(ImageId, ImageConfig)> {
        let id = self.resolve(name)?;
        let cfg = self.read_config(&id)?;
        Ok((id, cfg))
    }

    pub(crate) fn read_config(&self, id: &ImageId) -> Result<ImageConfig> {
        let bytes = self.content.read_blob(id)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::metadata(format!("config {id}"), e))
    }

    /// The layers of an image, bottom first, for the engine to unpack.
    pub fn layers(&self, name: &str) -> Result<Vec<LayerInfo>> {
        let rec = self.record(&self.resolve(name)?)?;
        Ok(rec
            .layers
            .iter()
            .map(|l| LayerInfo {
                path: self.content.path(&l.digest),
                media_type: l.media_type.clone(),
                digest: l.digest.clone(),
                diff_id: l.diff_id.clone(),
                size: l.size,
            })
            .collect())
    }

    /// References pointing at `id`, normalised.
    pub fn references(&self, id: &ImageId) -> Result<Vec<Reference>> {
        Ok(self.all_refs()?.remove(id).unwrap_or_default())
    }

    pub(crate) fn all_refs(&self) -> Result<BTreeMap<ImageId, Vec<Reference>>> {
        let tx = self.db.begin_read().map_err(|e| Error::index("begin", e))?;
        let refs = tx
            .open_table(REFS)
            .map_err(|e| Error::index("open table", e))?;
        let mut out: BTreeMap<ImageId, Vec<Reference>> = BTreeMap::new();
        for item in refs.iter().map_err(|e| Error::index("read", e))? {
            let (k, v) = item.map_err(|e| Error::index("read", e))?;
            let r = Reference::parse(k.value())?;
            out.entry(Digest::parse(v.value())?).or_default().push(r);
        }
        Ok(out)
    }

    fn all_records(&self) -> Result<Vec<ImageRecord>> {
        let tx = self.db.begin_read().map_err(|e| Error::index("begin", e))?;
        let images = tx
            .open_table(IMAGES)
            .map_err(|e| Error::index("open table", e))?;
        let mut out = Vec::new();
        for item in images.iter().map_err(|e| Error::index("read", e))? {
            let (_, v) = item.map_err(|e| Error::index("read", e))?;
            out.push(decode_record(v.value())?);
        }
        Ok(out)
    }

    /// Records an image whose blobs are all in the content store, and points `refs` at it
    /// (moving them from any other image), in one transaction.
    pub(crate) fn commit_image(&self, rec: &ImageRecord, refs: &[Reference]) -> Result<()> {
        // Pinned until indexed, whatever the caller pinned: then the index holds them.
        let lease = self.lease();
        lease.pin_all(rec.blobs());
        for d in rec.blobs() {
            if !self.content.has(d) {
                return Err(Error::BlobNotFound(d.to_string()));
            }
        }
        let json = serde_json::to_vec(rec).map_err(|e| Error::metadata("image record", e))?;
        let tx = self
            .db
            .begin_write()
            .map_err(|e| Error::index("begin", e))?;
        {
            let mut images = tx
                .open_table(IMAGES)
                .map_err(|e| Error::index("open table", e))?;
            images
                .insert(rec.id.as_str(), json.as_slice())
                .map_err(|e| Error::index("write", e))?;
            let mut table = tx
                .open_table(REFS)
                .map_err(|e| Error::index("open table", e))?;
            for r in refs {
                table
                    .insert(r.to_string().as_str(), rec.id.as_str())
                    .map_err(|e| Error::index("write", e))?;
            }
        }
        tx.commit().map_err(|e| Error::index("commit", e))?;
        lease.release().map(|_| ())
    }

    /// Points `new_ref` at the image `source` designates (`docker tag`).
    pub fn tag(&self, source: &str, new_ref: &str) -> Result<Reference> {
        let id = self.resolve(source)?;
        let r = Reference::parse(new_ref)?;
        if r.digest().is_some() {
            return Err(Error::InvalidReference(format!(
                "{new_ref:?}: refusing to create a tag with a digest reference"
            )));
        }
        let tx = self
            .db
            .begin_write()
            .map_err(|e| Error::index("begin", e))?;
        {
            let images = tx
                .open_table(IMAGES)
                .map_err(|e| Error::index("open table", e))?;
            if images
                .get(id.as_str())
                .map_err(|e| Error::index("read", e))?
                .is_none()
            {
                return Err(Error::ImageNotFound(source.to_string()));
            }
            let mut refs = tx
                .open_table(REFS)
                .map_err(|e| Error::index("open table", e))?;
            refs.insert(r.to_string().as_str(), id.as_str())
                .map_err(|e| Error::index("write", e))?;
        }
        tx.commit().map_err(|e| Error::index("commit", e))?;
        Ok(r)
    }

    /// `docker rmi`, with Docker's rules. Given a reference, that reference goes; when it
    /// was the last tag of its repository the digest references of that repository go too
    /// (`repo@sha256:…` of a pull), and once no reference is left the image is deleted with
    /// the blobs only it used. Given an ID, an image whose references are all in one
    /// repository (at most one tag) is untagged and deleted; one referenced in several
    /// repositories needs `force`. While `using` names a container of the image, removing
    /// its last reference or removing it by ID needs `force` and then only untags (the
    /// image stays, dangling, for the container); a running container refuses even that
    /// by ID.
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        using: &dyn Fn(&ImageId) -> Option<ImageUser>,
    ) -> Result<Vec<Removed>> {
        Ok(self.remove_reclaiming(name, force, using)?.items)
    }

    /// [`ImageStore::remove`], also counting the bytes of the blobs deleted.
    pub fn remove_reclaiming(
        &self,
        name: &str,
        force: bool,
        using: &dyn Fn(&ImageId) -> Option<ImageUser>,
    ) -> Result<Removal> {
        let _guard = self.gc_guard();
        let id = self.resolve(name)?;
        let mut refs = self.references(&id)?;
        // Given as a reference (not as an ID): only that reference goes, unless it is the last.
        let by_ref = Reference::parse(name)
            .ok()
            .filter(|r| refs.contains(r) && !name.starts_with("sha256:"));
        let mut out = Removal::default();
        let untag = |r: &Reference, out: &mut Removal| -> Result<()> {
            self.drop_ref(r)?;
            out.items.push(Removed::Untagged(r.familiar()));
            Ok(())
        };
        let user = using(&id);
        if let Some(r) = by_ref {
            if let (false, true, Some(u)) = (force, single_reference(&refs), &user) {
                return Err(Error::Conflict(format!(
                    "unable to remove repository reference {name:?} (must force) - \
                     container {} is using its referenced image {}",
                    short(&u.id),
                    short_id(&id)
                )));
            }
            untag(&r, &mut out)?;
            refs.retain(|x| *x != r);
            // The last tag of a repository takes that repository's digests with it.
            let repo = r.repository();
            let tag_left = refs
                .iter()
                .any(|x| x.digest().is_none() && x.repository() == repo);
            if r.digest().is_none() && !tag_left {
                for d in refs.iter().filter(|x| x.repository() == repo) {
                    untag(d, &mut out)?;
                }
                refs.retain(|x| x.repository() != repo);
            }
            // Forced, a stopped container does not keep the image (Docker's soft
            // conflict); a running one does.
            if !refs.is_empty() || user.as_ref().is_some_and(|u| u.running || !force) {
                return Ok(out);
            }
        } else {
            if let Some(u) = &user {
                if u.running {
                    return Err(Error::Conflict(format!(
                        "unable to delete {} (cannot be forced) - image is being used by \
                         running container {}",
                        short_id(&id),
                        short(&u.id)
                    )));
                }
                if !force {
                    return Err(Error::Conflict(format!(
                        "unable to delete {} (must be forced) - image is being used by \
                         stopped container {}",
                        short_id(&id),
                        short(&u.id)
                    )));
                }
            }
            if !single_reference(&refs) && !refs.is_empty() && !force {
                return Err(Error::Conflict(format!(
                    "unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    short_id(&id)
                )));
            }
            for r in &refs {
                untag(r, &mut out)?;
            }
        }
        // Forced past a stopped container: every reference and the image go; the
        // container keeps the layers it sits on, so they are not reported deleted.
        let mut deleted = self.delete_image_locked(&id)?;
        if user.is_some() {
            deleted.items.truncate(1);
        }
        out.items.extend(deleted.items);
        out.bytes += deleted.bytes;
        Ok(out)
    }

    fn drop_ref(&self, r: &Reference) -> Result<()> {
        let tx = self
            .db
            .begin_write()
            .map_err(|e| Error::index("begin", e))?;
        {
            let mut refs = tx
                .open_table(REFS)
                .map_err(|e| Error::index("open table", e))?;
            refs.remove(r.to_string().as_str())
                .map_err(|e| Error::index("write", e))?;
        }
        tx.commit().map_err(|e| Error::index("commit", e))
    }

    /// Deletes the image record and the blobs no other image uses (and no ingest pins).
    /// Reports the image ID, then the chain ID of each of its layers (top first) that no
    /// other image has, as Docker reports the layers it releases. The caller holds the GC
    /// lock.
    fn delete_image_locked(&self, id: &ImageId) -> Result<Removal> {
        let rec = self.record(id)?;
        let tx = self
            .db
            .begin_write()
            .map_err(|e| Error::index("begin", e))?;
        {
            let mut images = tx
                .open_table(IMAGES)
                .map_err(|e| Error::index("open table", e))?;
            images
                .remove(id.as_str())
                .map_err(|e| Error::index("write", e))?;
        }
        tx.commit().map_err(|e| Error::index("commit", e))?;
        let others = self.all_records()?;
        let chains_left: HashSet<Digest> =
            others.iter().flat_map(|r| chain_ids(&r.layers)).collect();
        let mut out = Removal::default();
        out.items.push(Removed::Deleted(id.to_string()));
        for chain in chain_ids(&rec.layers).into_iter().rev() {
            if !chains_left.contains(&chain) {
                out.items.push(Removed::Deleted(chain.to_string()));
            }
        }
        let mine: HashSet<Digest> = rec.blobs().cloned().collect();
        out.bytes = self.delete_unused_locked(&others, mine.into_iter())?.bytes;
        Ok(out)
    }

    /// Removes every blob no image references (and no ingest pins).
    pub fn gc(&self) -> Result<GcReport> {
        let _guard = self.gc_guard();
        self.gc_locked(None)
    }

    /// Removes, among `only` (or all blobs), those no image references and nothing pins.
    /// The caller holds the GC lock.
    fn gc_locked(&self, only: Option<&HashSet<Digest>>) -> Result<GcReport> {
        let records = self.all_records()?;
        match only {
            Some(set) => self.delete_unused_locked(&records, set.iter().cloned()),
            None => self.delete_unused_locked(&records, self.content.list()?.into_iter()),
        }
    }

    fn delete_unused_locked(
        &self,
        records: &[ImageRecord],
        candidates: impl Iterator<Item = Digest>,
    ) -> Result<GcReport> {
        let used: HashSet<&Digest> = records.iter().flat_map(ImageRecord::blobs).collect();
        let mut report = GcReport::default();
        // Held across check and unlink: an ingest pins before it looks (crate::lease).
        let pins = self.pins.lock();
        for d in candidates {
            if used.contains(&d) || pins.contains_key(&d) {
                continue;
            }
            let Ok(size) = self.content.size(&d) else {
                continue;
            };
            self.content.delete(&d)?;
            report.bytes += size;
            report.removed.push(d);
        }
        Ok(report)
    }

    /// Chain IDs of the layers of every image, the snapshots worth keeping.
    pub fn chain_ids_in_use(&self) -> Result<HashSet<Digest>> {
        Ok(self
            .all_records()?
            .iter()
            .flat_map(|r| chain_ids(&r.layers))
            .collect())
    }

    /// All images, newest first (`docker images -a`).
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let mut refs = self.all_refs()?;
        let mut out = Vec::new();
        for rec in self.all_records()? {
            let labels = self
                .read_config(&rec.id)
                .ok()
                .and_then(|c| c.config.and_then(|c| c.labels))
                .unwrap_or_default();
            let (repo_tags, repo_digests) = split_refs(refs.remove(&rec.id).unwrap_or_default());
            out.push(ImageSummary {
                created: rec.created.as_deref().and_then(parse_rfc3339).unwrap_or(0),
                id: rec.id,
                repo_tags,
                repo_digests,
                size: rec.size,
                labels,
            });
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// `docker image inspect`.
    pub fn inspect(&self, name: &str) -> Result<ImageInspect> {
        let id = self.resolve(name)?;
        let rec = self.record(&id)?;
        let cfg = self.read_config(&id)?;
        let (repo_tags, repo_digests) = split_refs(self.references(&id)?);
        let comment = cfg
            .history
            .last()
            .and_then(|h| h.comment.clone())
            .unwrap_or_default();
        Ok(ImageInspect {
            id: id.to_string(),
            repo_tags,
            repo_digests,
            parent: String::new(),
            comment,
            created: cfg.created.clone().unwrap_or_default(),
            docker_version: String::new(),
            author: cfg.author.clone().unwrap_or_default(),
            config: cfg.config.clone().unwrap_or_default(),
            architecture: cfg.architecture.clone(),
            variant: cfg.variant.clone(),
            os: cfg.os.clone(),
            size: rec.size,
            root_fs: InspectRootFs {
                fs_type: cfg.rootfs.fs_type.clone(),
                layers: cfg.rootfs.diff_ids.clone(),
            },
        })
    }

    /// `docker history`, newest first.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryItem>> {
        self.history_sized(name, None)
    }

    /// As [`ImageStore::history`], with each layer's size (bottom first) as the caller
    /// measured it (the unpacked size Docker shows) in place of its tar's.
    pub fn history_sized(&self, name: &str, sizes: Option<&[u64]>) -> Result<Vec<HistoryItem>> {
        let id = self.resolve(name)?;
        let rec = self.record(&id)?;
        let cfg = self.read_config(&id)?;
        let (tags, _) = split_refs(self.references(&id)?);
        let size_of = |i: usize, l: &LayerRecord| {
            sizes
                .and_then(|s| s.get(i).copied())
                .unwrap_or(l.uncompressed_size)
        };
        let mut layer_sizes = rec.layers.iter().enumerate().map(|(i, l)| size_of(i, l));
        let mut items: Vec<HistoryItem> = cfg
            .history
            .iter()
            .map(|h| HistoryItem {
                id: "<missing>".to_string(),
                created: h.created.as_deref().and_then(parse_rfc3339).unwrap_or(0),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: Vec::new(),
                size: if h.empty_layer {
                    0
                } else {
                    layer_sizes.next().unwrap_or(0)
                },
                comment: h.comment.clone().unwrap_or_default(),
            })
            .collect();
        if items.is_empty() {
            // No history in the config: one row per layer.
            items = rec
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| HistoryItem {
                    id: "<missing>".to_string(),
                    created: rec.created.as_deref().and_then(parse_rfc3339).unwrap_or(0),
                    created_by: String::new(),
                    tags: Vec::new(),
                    size: size_of(i, l),
                    comment: String::new(),
                })
                .collect();
        }
        items.reverse();
        if let Some(top) = items.first_mut() {
            top.id = id.to_string();
            top.tags = tags;
        }
        Ok(items)
    }
}

fn split_refs(refs: Vec<Reference>) -> (Vec<String>, Vec<String>) {
    let mut tags = Vec::new();
    let mut digests = Vec::new();
    for r in refs {
        if r.digest().is_some() {
            digests.push(r.familiar());
        } else {
            tags.push(r.familiar());
        }
    }
    tags.sort();
    digests.sort();
    (tags, digests)
}

fn decode_record(v: &[u8]) -> Result<ImageRecord> {
    serde_json::from_slice(v).map_err(|e| Error::metadata("image index record", e))
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Docker's `isSingleReference`: at most one tag, and every reference in one repository.
fn single_reference(refs: &[Reference]) -> bool {
    let tags = refs.iter().filter(|r| r.digest().is_none()).count();
    let repos: BTreeSet<String> = refs.iter().map(Reference::repository).collect();
    !refs.is_empty() && tags <= 1 && repos.len() == 1
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The 12-hex short form Docker shows.
pub fn short_id(id: &ImageId) -> &str {
    &id.hex()[..12]
}

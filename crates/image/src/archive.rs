//! `load` and `save` of image archives: the docker-archive format (`manifest.json` with
//! Config/RepoTags/Layers, plus `repositories`) and the OCI image layout (`index.json`,
//! `oci-layout`, `blobs/sha256/…`) that Docker 25+ writes beside it.
//!
//! A load streams every archive member into the content store (hashing as it goes),
//! then checks the whole archive (files present, digests, diff IDs, layer tars) before
//! indexing anything; blobs of a failed load are removed again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, BufReader, Read, Write};

use serde::{Deserialize, Serialize};

use crate::config::ImageConfig;
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::import::{
    check_tar_stream, decompressed, detect_compression, has_parent_component, Compression,
    MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR, MEDIA_LAYER_ZSTD, MEDIA_MANIFEST,
};
use crate::lease::Lease;
use crate::reference::Reference;
use crate::store::{ImageId, ImageStore, LayerRecord};

const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// How many symlinks in a row a member name may go through.
const MAX_LINK_DEPTH: usize = 16;

/// One entry of a docker-archive `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An image found in a loaded archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub id: ImageId,
    /// The references the archive gave it (now pointing at it).
    pub references: Vec<Reference>,
}

/// An image of the archive, checked and ready to be indexed.
pub(crate) struct PendingImage {
    pub(crate) config_bytes: Vec<u8>,
    pub(crate) created_at: Option<String>,
    pub(crate) layers: Vec<LayerRecord>,
    pub(crate) refs: Vec<Reference>,
}

/// The members of an archive: regular files stored as blobs, links by target.
#[derive(Default)]
struct Members {
    files: HashMap<String, Digest>,
    links: HashMap<String, String>,
}

impl Members {
    /// The blob of member `name`, following links.
    fn blob(&self, name: &str) -> Result<&Digest> {
        let mut name = normalize_member(name)?;
        for _ in 0..MAX_LINK_DEPTH {
            if let Some(d) = self.files.get(&name) {
                return Ok(d);
            }
            match self.links.get(&name) {
                Some(target) => name = target.clone(),
                None => return Err(Error::archive(format!("missing file {name:?}"))),
            }
        }
        Err(Error::archive(format!(
            "too many levels of links at {name:?}"
        )))
    }
}

/// `a/./b` → `a/b`; refuses absolute names and `..`.
fn normalize_member(name: &str) -> Result<String> {
    if name.starts_with('/') || has_parent_component(name.as_bytes()) {
        return Err(Error::archive(format!(
            "member name {name:?} is absolute or escapes the archive"
        )));
    }
    Ok(name
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/"))
}

/// Resolves a link target against the member that holds it, staying inside the archive.
fn resolve_link(member: &str, target: &str, symlink: bool) -> Result<String> {
    let mut parts: Vec<&str> = if symlink {
        let mut p: Vec<&str> = member.split('/').collect();
        p.pop();
        p
    } else {
        Vec::new()
    };
    if target.starts_with('/') {
        return Err(Error::archive(format!(
            "link {member:?} points outside the archive ({target:?})"
        )));
    }
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(Error::archive(format!(
                        "link {member:?} points outside the archive ({target:?})"
                    )));
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// The digest a member name announces: `blobs/sha256/<hex>`, `<hex>.json`, `<hex>.tar`.
fn digest_in_name(name: &str) -> Option<Digest> {
    let base = name.rsplit('/').next()?;
    let hex = base
        .strip_suffix(".json")
        .or_else(|| base.strip_suffix(".tar"))
        .unwrap_or(base);
    if name.starts_with("blobs/sha256/") || base != hex {
        Digest::from_hex(hex).ok()
    } else {
        None
    }
}

fn check_named_digest(name: &str, actual: &Digest) -> Result<()> {
    match digest_in_name(name) {
        Some(expected) if expected != *actual => Err(Error::DigestMismatch {
            what: format!("archive member {name:?}"),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}

impl ImageStore {
    /// `docker load`: reads a docker-archive or OCI-layout tar (plain or gzip) and indexes
    /// its images. A malformed archive is refused as a whole and leaves the store as it was.
    pub fn load(&self, reader: &mut dyn Read) -> Result<Vec<LoadedImage>> {
        let lease = self.lease();
        let result = self.load_inner(reader, &lease);
        // Members that are no image's blob (manifest.json, repositories, …) and everything
        // of a failed load go.
        lease.release()?;
        result
    }

    fn load_inner(&self, reader: &mut dyn Read, lease: &Lease<'_>) -> Result<Vec<LoadedImage>> {
        let members = self.read_members(reader, lease)?;
        let pending = if members.blob("manifest.json").is_ok() {
            self.docker_archive_images(&members)?
        } else if members.blob("index.json").is_ok() {
            self.oci_layout_images(&members)?
        } else {
            return Err(Error::archive(
                "neither manifest.json nor index.json found: not a docker-archive or OCI layout",
            ));
        };
        let mut loaded = Vec::new();
        for p in pending {
            let id = self.store_image(&p.config_bytes, p.layers, p.created_at, &p.refs, lease)?;
            loaded.push(LoadedImage {
                id,
                references: p.refs,
            });
        }
        Ok(loaded)
    }

    fn read_members(&self, reader: &mut dyn Read, lease: &Lease<'_>) -> Result<Members> {
        let stream = decompressed(BufReader::new(reader), "archive")?;
        let mut archive = tar::Archive::new(stream);
        let mut members = Members::default();
        let entries = archive
            .entries()
            .map_err(|e| Error::archive(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::archive(format!("bad tar member: {e}")))?;
            let raw = entry.path_bytes().into_owned();
            let name =
                String::from_utf8(raw).map_err(|_| Error::archive("member name is not UTF-8"))?;
            let name = normalize_member(&name)?;
            let kind = entry.header().entry_type();
            match kind {
                tar::EntryType::Directory => {}
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let announced = entry.size();
                    let mut w = self.content.writer()?;
                    let copied = io::copy(&mut entry, &mut w)
                        .map_err(|e| Error::archive(format!("reading member {name:?}: {e}")))?;
                    if copied != announced {
                        return Err(Error::archive(format!(
                            "member {name:?} is truncated: {copied} of {announced} bytes"
                        )));
                    }
                    let blob = lease.commit(w, None)?;
                    check_named_digest(&name, &blob.digest)?;
                    members.files.insert(name, blob.digest);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .ok_or_else(|| Error::archive(format!("link {name:?} has no target")))?;
                    let target = String::from_utf8(target.into_owned()).map_err(|_| {
                        Error::archive(format!("link {name:?}: target is not UTF-8"))
                    })?;
                    let resolved = resolve_link(&name, &target, kind == tar::EntryType::Symlink)?;
                    members.links.insert(name, resolved);
                }
                other => {
                    return Err(Error::archive(format!(
                        "member {name:?} has unsupported type {other:?}"
                    )))
                }
            }
        }
        Ok(members)
    }

    fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        members: &Members,
        name: &str,
    ) -> Result<(Digest, Vec<u8>, T)> {
        let d = members.blob(name)?.clone();
        let bytes = self.content.read_blob(&d)?;
        let v =
            serde_json::from_slice(&bytes).map_err(|e| Error::archive(format!("{name}: {e}")))?;
        Ok((d, bytes, v))
    }

    fn docker_archive_images(&self, members: &Members) -> Result<Vec<PendingImage>> {
        let (_, _, entries): (_, _, Vec<ArchiveManifestEntry>) =
            self.read_json(members, "manifest.json")?;
        let mut out = Vec::new();
        for e in entries {
            let (_, config_bytes, config): (_, _, ImageConfig) =
                self.read_json(members, &e.config)?;
            let mut refs = Vec::new();
            for t in e.repo_tags.unwrap_or_default() {
                refs.push(Reference::parse(&t)?);
            }
            let layer_blobs = e
                .layers
                .iter()
                .map(|l| members.blob(l).cloned())
                .collect::<Result<Vec<_>>>()?;
            out.push(self.check_image(config_bytes, config, &layer_blobs, refs)?);
        }
        Ok(out)
    }

    fn oci_layout_images(&self, members: &Members) -> Result<Vec<PendingImage>> {
        let (_, _, index): (_, _, serde_json::Value) = self.read_json(members, "index.json")?;
        let mut out = Vec::new();
        for desc in index["manifests"].as_array().cloned().unwrap_or_default() {
            let mut refs = Vec::new();
            let ann = &desc["annotations"];
            if let Some(n) = ann[ANNOTATION_CONTAINERD_NAME].as_str() {
                refs.push(Reference::parse(n)?);
            } else if let Some(n) = ann[ANNOTATION_REF_NAME].as_str() {
                // A bare tag here names nothing we could use as a reference.
                if n.contains('/') || n.contains(':') {
                    refs.push(Reference::parse(n)?);
                }
            }
            let manifest = self.oci_manifest_for(members, &desc, 0)?;
            let config_digest = manifest["config"]["digest"]
                .as_str()
                .ok_or_else(|| Error::archive("manifest without config digest"))?;
            let (_, config_bytes, config): (_, _, ImageConfig) =
                self.read_json(members, &blob_member(config_digest)?)?;
            let layer_blobs = manifest["layers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|l| {
                    let d = l["digest"]
                        .as_str()
                        .ok_or_else(|| Error::archive("layer without digest"))?;
                    members.blob(&blob_member(d)?).cloned()
                })
                .collect::<Result<Vec<_>>>()?;
            // Two index entries (two tags) for one image become one image with two refs.
            let p = self.check_image(config_bytes, config, &layer_blobs, refs)?;
            match out
                .iter_mut()
                .find(|o: &&mut PendingImage| o.config_bytes == p.config_bytes)
            {
                Some(o) => o.refs.extend(p.refs),
                None => out.push(p),
            }
        }
        if out.is_empty() {
            return Err(Error::archive("index.json lists no image"));
        }
        Ok(out)
    }

    /// The image manifest a descriptor designates, descending into a nested index for
    /// linux/amd64.
    fn oci_manifest_for(
        &self,
        members: &Members,
        desc: &serde_json::Value,
        depth: usize,
    ) -> Result<serde_json::Value> {
        let digest = desc["digest"]
            .as_str()
            .ok_or_else(|| Error::archive("index entry without digest"))?;
        let (_, _, m): (_, _, serde_json::Value) =
            self.read_json(members, &blob_member(digest)?)?;
        let media = m["mediaType"].as_str().or(desc["mediaType"].as_str());
        let is_index = matches!(media, Some(MEDIA_INDEX | DOCKER_MANIFEST_LIST))
            || (media.is_none() && m.get("manifests").is_some());
        if !is_index {
            return Ok(m);
        }
        if depth > 2 {
            return Err(Error::archive("image indexes nested too deep"));
        }
        let manifests = m["manifests"].as_array().cloned().unwrap_or_default();
        let pick = manifests
            .iter()
            .find(|d| {
                d["platform"]["os"] == "linux"
                    && d["platform"]["architecture"] == "amd64"
                    && members
                        .blob(&blob_member(d["digest"].as_str().unwrap_or("")).unwrap_or_default())
                        .is_ok()
            })
            .or_else(|| {
                manifests.iter().find(|d| {
                    blob_member(d["digest"].as_str().unwrap_or(""))
                        .is_ok_and(|n| members.blob(&n).is_ok())
                })
            })
            .ok_or_else(|| Error::archive("no linux/amd64 manifest in the image index"))?;
        self.oci_manifest_for(members, pick, depth + 1)
    }

    /// Checks the layers against the config's diff IDs (and that they are tars).
    pub(crate) fn check_image(
        &self,
        config_bytes: Vec<u8>,
        config: ImageConfig,
        layer_blobs: &[Digest],
        refs: Vec<Reference>,
    ) -> Result<PendingImage> {
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != layer_blobs.len() {
            return Err(Error::archive(format!(
                "image config lists {} layers (diff_ids) but the manifest {}",
                diff_ids.len(),
                layer_blobs.len()
            )));
        }
        let mut layers = Vec::new();
        for (blob, expected) in layer_blobs.iter().zip(diff_ids) {
            layers.push(self.check_layer(blob, &Digest::parse(expected)?)?);
        }
        Ok(PendingImage {
            created_at: config.created.clone(),
            config_bytes,
            layers,
            refs,
        })
    }

    /// Reads a stored layer blob through: a tar (after decompression) whose digest is
    /// the `expected` diff ID.
    pub(crate) fn check_layer(&self, blob: &Digest, expected: &Digest) -> Result<LayerRecord> {
        let compression = self.layer_compression(blob)?;
        let file = self.content.open_blob(blob)?;
        let plain = decompressed(BufReader::new(file), &format!("layer {blob}"))?;
        let mut hashing = HashingReader::new(plain);
        check_tar_stream(&mut hashing, &format!("layer {blob}"))?;
        let (diff_id, uncompressed_size) = hashing.finish();
        if diff_id != *expected {
            return Err(Error::DigestMismatch {
                what: format!("layer {blob} (diff ID)"),
                expected: expected.to_string(),
                actual: diff_id.to_string(),
            });
        }
        Ok(LayerRecord {
            digest: blob.clone(),
            media_type: layer_media_type(compression).to_string(),
            size: self.content.size(blob)?,
            diff_id,
            uncompressed_size,
        })
    }

    /// How a stored layer blob is compressed, from its first bytes; refuses the kinds
    /// that cannot be read (bzip2, xz).
    pub(crate) fn layer_compression(&self, blob: &Digest) -> Result<Compression> {
        let path = self.content.path(blob);
        let file = self.content.open_blob(blob)?;
        let mut head = [0u8; 6];
        let n = read_up_to(&file, &mut head).map_err(|e| Error::io("read", &path, e))?;
        detect_compression(&head[..n], &format!("layer {blob}"))
    }

    /// `docker save`: writes the images `names` designate as one archive with both
    /// docker-archive (`manifest.json`, `repositories`) and OCI layout (`index.json`,
    /// `oci-layout`) metadata over shared `blobs/sha256/` files.
    pub fn save(&self, names: &[&str], writer: &mut dyn Write) -> Result<()> {
        // Image ID → tags to record, in first-mentioned order.
        let mut images: Vec<(ImageId, Vec<Reference>)> = Vec::new();
        for name in names {
            let id = self.resolve(name)?;
            let tag = Reference::parse(name)
                .ok()
                .filter(|r| r.tag().is_some() && r.digest().is_none())
                .filter(|r| self.references(&id).is_ok_and(|refs| refs.contains(r)));
            match images.iter_mut().find(|(i, _)| *i == id) {
                Some((_, tags)) => tags.extend(tag),
                None => images.push((id, tag.into_iter().collect())),
            }
        }
        // Read to the end even if the images are removed meanwhile.
        let lease = self.lease();
        for (id, _) in &images {
            lease.pin_all(self.record(id)?.blobs());
        }
        let mut builder = tar::Builder::new(writer);
        let tar_err = |e: io::Error| Error::io("write", "image archive", e);
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(0);
            builder
                .append_data(&mut h, dir, io::empty())
                .map_err(tar_err)?;
        }
        let mut written = HashSet::new();
        let mut manifest_json = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut index_manifests = Vec::new();
        for (id, tags) in &images {
            let rec = self.record(id)?;
            for d in rec
                .layers
                .iter()
                .map(|l| &l.digest)
                .chain([&rec.id, &rec.manifest_digest])
            {
                if written.insert(d.clone()) {
                    let size = self.content.size(d)?;
                    let file = self.content.open_blob(d)?;
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(size);
                    h.set_mtime(0);
                    builder
                        .append_data(&mut h, blob_member(d.as_str())?, file)
                        .map_err(tar_err)?;
                }
            }
            manifest_json.push(ArchiveManifestEntry {
                config: blob_member(id.as_str())?,
                repo_tags: if tags.is_empty() {
                    None
                } else {
                    // Full names: podman reads a bare `busybox` as `localhost/busybox`.
                    Some(tags.iter().map(Reference::to_string).collect())
                },
                layers: rec
                    .layers
                    .iter()
                    .map(|l| blob_member(l.digest.as_str()))
                    .collect::<Result<_>>()?,
            });
            let manifest_size = self.content.size(&rec.manifest_digest)?;
            let descriptor = |annotations: Option<serde_json::Value>| {
                let mut d = serde_json::json!({
                    "mediaType": MEDIA_MANIFEST,
                    "digest": rec.manifest_digest.as_str(),
                    "size": manifest_size,
                });
                if let Some(a) = annotations {
                    d["annotations"] = a;
                }
                d
            };
            if tags.is_empty() {
                index_manifests.push(descriptor(None));
            }
            for t in tags {
                let tag = t.tag().unwrap_or("latest");
                if let Some(top) = rec.layers.last() {
                    repositories
                        .entry(t.repository())
                        .or_default()
                        .insert(tag.to_string(), top.digest.hex().to_string());
                }
                index_manifests.push(descriptor(Some(serde_json::json!({
                    ANNOTATION_CONTAINERD_NAME: t.to_string(),
                    ANNOTATION_REF_NAME: tag,
                }))));
            }
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": index_manifests,
        });
        let json = |v: &dyn erased::Json| v.to_vec();
        let files: [(&str, Vec<u8>); 4] = [
            ("index.json", json(&index)?),
            ("manifest.json", json(&manifest_json)?),
            (
                "oci-layout",
                json(&serde_json::json!({"imageLayoutVersion": "1.0.0"}))?,
            ),
            ("repositories", json(&repositories)?),
        ];
        for (name, data) in files {
            if name == "repositories" && repositories.is_empty() {
                continue;
            }
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(0);
            builder
                .append_data(&mut h, name, data.as_slice())
                .map_err(tar_err)?;
        }
        builder
            .into_inner()
            .map_err(tar_err)?
            .flush()
            .map_err(tar_err)?;
        Ok(())
    }
}

mod erased {
    //! Serialising differently typed metadata through one closure.
    pub(super) trait Json {
        fn to_vec(&self) -> crate::error::Result<Vec<u8>>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_vec(&self) -> crate::error::Result<Vec<u8>> {
            serde_json::to_vec(self)
                .map_err(|e| crate::error::Error::metadata("archive metadata", e))
        }
    }
}

/// `blobs/sha256/<hex>` for a `sha256:<hex>` digest string.
fn blob_member(digest: &str) -> Result<String> {
    let d = Digest::parse(digest)?;
    Ok(format!("blobs/sha256/{}", d.hex()))
}

/// The media type recorded for a layer blob compressed so.
pub(crate) fn layer_media_type(compression: Compression) -> &'static str {
    match compression {
        Compression::Gzip => MEDIA_LAYER_GZIP,
        Compression::Zstd => MEDIA_LAYER_ZSTD,
        Compression::None => MEDIA_LAYER_TAR,
    }
}

fn read_up_to(mut file: &std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names() {
        assert_eq!(normalize_member("./a//b/./c").unwrap(), "a/b/c");
        assert!(normalize_member("../x").is_err());
        assert!(normalize_member("a/../../x").is_err());
        assert!(normalize_member("/etc/passwd").is_err());
        assert_eq!(
            resolve_link("abc/layer.tar", "../def/layer.tar", true).unwrap(),
            "def/layer.tar"
        );
        assert!(resolve_link("abc/layer.tar", "../../x", true).is_err());
        assert!(resolve_link("a", "/etc/passwd", false).is_err());
    }

    #[test]
    fn digests_in_names() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(digest_in_name(&format!("blobs/sha256/{hex}")).is_some());
        assert!(digest_in_name(&format!("{hex}.json")).is_some());
        assert!(digest_in_name(&format!("{hex}.tar")).is_some());
        assert!(digest_in_name(&format!("{hex}/layer.tar")).is_none());
        assert!(digest_in_name("manifest.json").is_none());
    }
}

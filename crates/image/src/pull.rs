//! `docker pull`: the manifest (through an index, for the wanted platform), the config and
//! the layers are streamed from the registry into the content store, each blob verified
//! against its digest while it is written; the layers are unpacked (checked against the
//! config's diff IDs as they are) before the image is indexed, see [`crate::pull_layers`].
//! A failed pull leaves no blob or snapshot it created behind.

use std::collections::HashSet;
use std::fmt;

use serde_json::Value;
use tokio::runtime::Handle;

use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fetch;
use crate::reference::Reference;
use crate::registry::{self, Credentials};
use crate::store::{ImageId, ImageRecord, ImageStore};
use crate::unpacker::LayerUnpacker;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST_TYPES: &[&str] = &[DOCKER_MANIFEST, OCI_MANIFEST];
const ANY_TYPES: &[&str] = &[
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
];
/// Layer kinds whose blob is a (possibly gzipped) tar served by the registry.
const LAYER_TYPES: &[&str] = &[
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
];
/// Manifests and configs are small; anything bigger is refused before it is read.
const MAX_METADATA_SIZE: u64 = 8 << 20;

/// An `os/architecture[/variant]` to pick from an image index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl Platform {
    /// Parses `linux/amd64`, `linux/arm64/v8`.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || {
            Error::Registry(format!(
                "invalid platform {s:?}: expected os/architecture[/variant]"
            ))
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform {
                os: os.to_lowercase(),
                architecture: arch.to_lowercase(),
                variant: None,
            }),
            [os, arch, variant] => Ok(Platform {
                os: os.to_lowercase(),
                architecture: arch.to_lowercase(),
                variant: Some(variant.to_lowercase()),
            }),
            _ => Err(bad()),
        }
    }

    fn matches(&self, p: &Value) -> bool {
        p["os"] == self.os.as_str()
            && p["architecture"] == self.architecture.as_str()
            && self
                .variant
                .as_deref()
                .is_none_or(|v| p["variant"].as_str() == Some(v))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// One progress message of a pull, as Docker's JSON progress stream carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    /// The tag (first message) or the short layer digest the message is about.
    pub id: Option<String>,
    pub status: String,
    /// Bytes done and total, for "Downloading".
    pub progress: Option<(u64, u64)>,
}

impl PullProgress {
    pub fn new(id: Option<&str>, status: impl Into<String>) -> Self {
        PullProgress {
            id: id.map(str::to_string),
            status: status.into(),
            progress: None,
        }
    }
}

/// What a pull produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub id: ImageId,
    /// The digest the reference resolved to in the registry (the index's, for an index).
    pub digest: Digest,
    /// False when the reference already designated this image.
    pub updated: bool,
}

/// A blob as the manifest describes it.
pub(crate) struct Descriptor {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    /// Where else a foreign layer may be fetched from.
    pub(crate) urls: Vec<String>,
}

impl Descriptor {
    fn from_json(v: &Value, what: &str) -> Result<Descriptor> {
        let digest = v["digest"]
            .as_str()
            .ok_or_else(|| Error::metadata(what, "descriptor without a digest"))?;
        Ok(Descriptor {
            digest: Digest::parse(digest)?,
            size: v["size"]
                .as_u64()
                .ok_or_else(|| Error::metadata(what, "descriptor without a size"))?,
            // Only foreign layers are fetched from elsewhere than the registry.
            urls: v["urls"]
                .as_array()
                .filter(|_| {
                    v["mediaType"]
                        .as_str()
                        .is_some_and(|t| fetch::FOREIGN_LAYER_TYPES.contains(&t))
                })
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect(),
        })
    }

    pub(crate) fn short(&self) -> &str {
        &self.digest.hex()[..12]
    }
}

/// The network side of one pull.
pub(crate) struct Remote<'a> {
    pub(crate) rt: &'a Handle,
    pub(crate) client: oci_client::Client,
    /// The registry or docker.io mirror (`host[:port]`) this attempt pulls from.
    pub(crate) registry: String,
    auth: oci_client::secrets::RegistryAuth,
    pub(crate) reference: &'a Reference,
    /// The reference as messages show it.
    pub(crate) shown: String,
}

impl Remote<'_> {
    /// The manifest, retried as blobs are when the failure is transient.
    fn manifest(&self, digest: Option<&str>, accept: &[&str]) -> Result<(Vec<u8>, Digest)> {
        let oref = registry::oci_reference_at(&self.registry, self.reference, digest);
        let (bytes, digest) = fetch::with_retries(
            "manifest",
            None,
            None,
            |_| {
                self.rt
                    .block_on(self.client.pull_manifest_raw(&oref, &self.auth, accept))
                    .map_err(|e| {
                        fetch::Failure::classify_first(e, |e| {
                            registry::registry_error(&self.shown, e)
                        })
                    })
            },
            |tries, why| {
                Error::Registry(format!(
                    "{}: manifest: {why} (gave up after {tries} attempts)",
                    self.shown
                ))
            },
        )?;
        if bytes.len() as u64 > MAX_METADATA_SIZE {
            return Err(Error::metadata(
                format!("manifest of {}", self.shown),
                "larger than 8 MiB",
            ));
        }
        Ok((bytes.to_vec(), Digest::parse(&digest)?))
    }
}

impl ImageStore {
    /// Pulls `reference` (normalised, with a tag or a digest) into the store; `unpacker`
    /// unpacks the layers (and so verifies them) before the image is recorded. Runs on a blocking
    /// thread: the network I/O is driven on `rt`.
    pub fn pull(
        &self,
        rt: &Handle,
        reference: &Reference,
        credentials: Option<&Credentials>,
        platform: &Platform,
        unpacker: &dyn LayerUnpacker,
        progress: &mut dyn FnMut(PullProgress),
    ) -> Result<Pulled> {
        let endpoints = rt.block_on(registry::pull_endpoints(reference.domain()))?;
        let mut created = HashSet::new();
        let lease = self.lease();
        let mut result = Err(Error::Registry(format!(
            "{reference}: no registry to pull from"
        )));
        // docker.io's mirrors first: as with Docker, a mirror that fails or lacks the
        // image is no error, the next endpoint is tried.
        for endpoint in &endpoints {
            result = endpoint.client(false).and_then(|client| {
                let remote = Remote {
                    rt,
                    client,
                    registry: endpoint.host.clone(),
                    auth: registry::auth(credentials),
                    reference,
                    shown: reference.familiar(),
                };
                self.pull_inner(&remote, platform, unpacker, progress, &mut created, &lease)
            });
            match &result {
                Err(e) if endpoint.mirror => {
                    tracing::info!(mirror = %endpoint.url(), error = %e, "pull from mirror failed, trying the next endpoint");
                }
                _ => break,
            }
        }
        // On success every blob is referenced and stays; on failure all of them go.
        let cleanup = lease.release();
        let pulled = result?;
        cleanup?;
        Ok(pulled)
    }

    fn pull_inner(
        &self,
        remote: &Remote<'_>,
        platform: &Platform,
        unpacker: &dyn LayerUnpacker,
        progress: &mut dyn FnMut(PullProgress),
        created: &mut HashSet<Digest>,
        lease: &crate::lease::Lease<'_>,
    ) -> Result<Pulled> {
        let (top, repo_digest) = remote.manifest(None, ANY_TYPES)?;
        let (manifest_bytes, manifest_digest, manifest) = match parse_manifest(&top, &remote.shown)?
        {
            Parsed::Manifest(m) => (top, repo_digest.clone(), m),
            Parsed::Index(index) => {
                let entry = index["manifests"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|d| platform.matches(&d["platform"]))
                    .ok_or_else(|| {
                        Error::ManifestUnknown(format!(
                            "no matching manifest for {platform} in the manifest list entries"
                        ))
                    })?;
                let digest = entry["digest"].as_str().unwrap_or_default().to_string();
                let (bytes, digest) = remote.manifest(Some(&digest), MANIFEST_TYPES)?;
                match parse_manifest(&bytes, &remote.shown)? {
                    Parsed::Manifest(m) => (bytes, digest, m),
                    Parsed::Index(_) => {
                        return Err(Error::UnsupportedManifest(format!(
                            "{}: an image index inside an image index is not supported",
                            remote.shown
                        )))
                    }
                }
            }
        };
        let media_type = manifest["mediaType"]
            .as_str()
            .unwrap_or(OCI_MANIFEST)
            .to_string();
        let config = Descriptor::from_json(&manifest["config"], "manifest config")?;
        let layers = manifest["layers"]
            .as_array()
            .ok_or_else(|| Error::metadata(format!("manifest of {}", remote.shown), "no layers"))?
            .iter()
            .map(|l| {
                let kind = l["mediaType"].as_str().unwrap_or_default();
                if !LAYER_TYPES.contains(&kind) && !fetch::FOREIGN_LAYER_TYPES.contains(&kind) {
                    return Err(Error::UnsupportedManifest(format!(
                        "{}: layer {} has media type {kind:?}, which cannot be pulled yet \
                         (supported: gzip, zstd or uncompressed tar layers, foreign or not)",
                        remote.shown,
                        l["digest"].as_str().unwrap_or("?")
                    )));
                }
                Descriptor::from_json(l, "manifest layer")
            })
            .collect::<Result<Vec<_>>>()?;

        let tag_or_digest = match (remote.reference.tag(), remote.reference.digest()) {
            (Some(t), _) => t.to_string(),
            (None, Some(d)) => d.to_string(),
            (None, None) => crate::reference::DEFAULT_TAG.to_string(),
        };
        progress(PullProgress::new(
            Some(&tag_or_digest),
            format!("Pulling from {}", remote.reference.path()),
        ));
        let mut refs = vec![remote.reference.with_digest(repo_digest.clone())];
        if let Some(tag) = remote.reference.tag() {
            refs.push(remote.reference.with_tag(tag)?);
        }
        let previous = self.resolve(&refs[refs.len() - 1].to_string()).ok();
        // Pinned before anything looks for them: collection skips them until the end.
        lease.pin_all([&config.digest, &manifest_digest]);
        lease.pin_all(layers.iter().map(|l| &l.digest));
        // This very manifest already indexed: nothing to download or check again.
        if let Ok(existing) = self.record(&config.digest) {
            if existing.manifest_digest == manifest_digest {
                self.commit_image(&existing, &refs)?;
                return Ok(finish(remote, existing.id, repo_digest, previous, progress));
            }
        }
        let missing: Vec<bool> = layers
            .iter()
            .map(|l| !self.content.has(&l.digest))
            .collect();
        for (l, missing) in layers.iter().zip(&missing) {
            let status = if *missing {
                "Pulling fs layer"
            } else {
                "Already exists"
            };
            progress(PullProgress::new(Some(l.short()), status));
        }

        if config.size > MAX_METADATA_SIZE {
            return Err(Error::metadata(
                format!("config of {}", remote.shown),
                "larger than 8 MiB",
            ));
        }
        if !self.content.has(&config.digest) {
            let ingested = self.fetch_blob(remote, &config, "config", None, None)?;
            if ingested.created {
                created.insert(ingested.digest);
            }
        }
        let config_bytes = self.content.read_blob(&config.digest)?;
        let image_config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::metadata(format!("config {}", config.digest), e))?;

        let diff_ids = image_config
            .rootfs
            .diff_ids
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<Result<Vec<_>>>()?;
        if diff_ids.len() != layers.len() {
            return Err(Error::archive(format!(
                "image config lists {} layers (diff_ids) but the manifest {}",
                diff_ids.len(),
                layers.len()
            )));
        }
        // Only the missing layers are downloaded (and reported); every layer is unpacked
        // (which checks it) or, when its snapshot exists, checked.
        let (records, made) = self.fetch_layers(
            remote, &layers, &missing, &diff_ids, unpacker, progress, created,
        )?;
        let recorded = self
            .content
            .ingest(&mut manifest_bytes.as_slice(), Some(&manifest_digest))
            .and_then(|m| {
                if m.created {
                    created.insert(m.digest);
                }
                let rec = ImageRecord {
                    id: config.digest.clone(),
                    manifest_digest,
                    manifest_media_type: media_type,
                    size: records.iter().map(|l| l.uncompressed_size).sum(),
                    layers: records,
                    created: image_config.created.clone(),
                };
                self.commit_image(&rec, &refs).map(|()| rec)
            });
        let rec = match recorded {
            Ok(rec) => rec,
            Err(e) => {
                let made: Vec<Digest> = made.into_iter().rev().collect();
                unpacker.discard(&made);
                return Err(e);
            }
        };
        Ok(finish(remote, rec.id, repo_digest, previous, progress))
    }
}

/// The closing messages of a pull.
fn finish(
    remote: &Remote<'_>,
    id: ImageId,
    digest: Digest,
    previous: Option<ImageId>,
    progress: &mut dyn FnMut(PullProgress),
) -> Pulled {
    let updated = previous.as_ref() != Some(&id);
    progress(PullProgress::new(None, format!("Digest: {digest}")));
    let status = if updated {
        "Downloaded newer image for"
    } else {
        "Image is up to date for"
    };
    progress(PullProgress::new(
        None,
        format!("Status: {status} {}", remote.shown),
    ));
    Pulled {
        id,
        digest,
        updated,
    }
}

enum Parsed {
    Manifest(Value),
    Index(Value),
}

/// Tells an image manifest from an index; refuses schema 1 and anything else.
fn parse_manifest(bytes: &[u8], shown: &str) -> Result<Parsed> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::metadata(format!("manifest of {shown}"), e))?;
    if v["schemaVersion"] == 1 {
        return Err(Error::UnsupportedManifest(format!(
            "{shown}: Docker Image manifest version 2, schema 1 is not supported; \
             push the image again with a current client to get a schema 2 or OCI manifest",
        )));
    }
    match v["mediaType"].as_str() {
        Some(DOCKER_MANIFEST_LIST | OCI_INDEX) => Ok(Parsed::Index(v)),
        Some(DOCKER_MANIFEST | OCI_MANIFEST) => Ok(Parsed::Manifest(v)),
        None if v.get("manifests").is_some() => Ok(Parsed::Index(v)),
        None if v.get("layers").is_some() => Ok(Parsed::Manifest(v)),
        other => Err(Error::UnsupportedManifest(format!(
            "{shown}: unsupported manifest media type {:?}",
            other.unwrap_or("(none)")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(p.matches(&serde_json::json!({"os":"linux","architecture":"arm64","variant":"v8"})));
        assert!(!p.matches(&serde_json::json!({"os":"linux","architecture":"arm64"})));
        let d = Platform::default();
        assert!(d.matches(&serde_json::json!({"os":"linux","architecture":"amd64"})));
        assert!(!d.matches(&serde_json::json!({"os":"windows","architecture":"amd64"})));
        for bad in ["linux", "linux/", "a/b/c/d", ""] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn manifest_kinds() {
        let schema1 = br#"{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[]}"#;
        let e = parse_manifest(schema1, "x:1").err().unwrap();
        assert!(e.to_string().contains("schema 1 is not supported"), "{e}");
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(matches!(
            parse_manifest(index, "x").unwrap(),
            Parsed::Index(_)
        ));
        let list = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_manifest(list, "x").unwrap(),
            Parsed::Index(_)
        ));
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[]}"#;
        assert!(matches!(
            parse_manifest(m, "x").unwrap(),
            Parsed::Manifest(_)
        ));
        let other = br#"{"schemaVersion":2,"mediaType":"application/vnd.example+json"}"#;
        assert!(parse_manifest(other, "x").is_err());
    }
}

//! `docker push`: the layers (as the store keeps them, with the media types the stored
//! manifest gives them), the config and the stored manifest, byte for byte, so the digest
//! the registry records is the one the image already has. A blob the registry already has
//! is not sent again; one held by another repository of the same registry (known from the
//! image's other references) is mounted from there. Foreign (non-distributable) layers
//! are not uploaded, as Docker does: the manifest keeps their URLs.

use std::collections::HashSet;
use std::sync::mpsc;

use futures_util::StreamExt;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::RegistryOperation;
use tokio::runtime::Handle;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fetch::FOREIGN_LAYER_TYPES;
use crate::pull::PullProgress;
use crate::reference::{Reference, DEFAULT_TAG};
use crate::registry::{self, Credentials};
use crate::store::{ImageId, ImageStore};

/// How often "Pushing" progress is reported.
const PROGRESS_STEP: u64 = 512 * 1024;

/// What a push produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub tag: String,
    /// The manifest digest, as the registry now serves it.
    pub digest: Digest,
    /// The manifest size in bytes.
    pub size: u64,
}

/// The network side of one push.
struct Target<'a> {
    rt: &'a Handle,
    client: oci_client::Client,
    /// The repository pushed to (any tag of it).
    reference: &'a Reference,
    /// The repository for blob requests.
    oref: oci_client::Reference,
}

impl Target<'_> {
    fn run<T>(
        &self,
        f: impl std::future::Future<Output = std::result::Result<T, OciDistributionError>>,
    ) -> Result<T> {
        self.rt
            .block_on(f)
            .map_err(|e| push_error(self.reference, e))
    }
}

impl ImageStore {
    /// Pushes the image `reference` (normalised) names to its registry; without a tag,
    /// every tag of that repository (`docker push --all-tags`). Runs on a blocking thread:
    /// the network I/O is driven on `rt`.
    pub fn push(
        &self,
        rt: &Handle,
        reference: &Reference,
        credentials: Option<&Credentials>,
        progress: &mut dyn FnMut(PullProgress),
    ) -> Result<Vec<Pushed>> {
        if reference.digest().is_some() {
            return Err(Error::InvalidReference(format!(
                "{}: cannot push a digest reference",
                reference.familiar()
            )));
        }
        let not_local = || Error::NotLocal(reference.familiar_repository());
        let tags: Vec<(Reference, ImageId)> = match reference.tag() {
            Some(_) => {
                let id = self
                    .resolve(&reference.to_string())
                    .map_err(|_| not_local())?;
                vec![(reference.clone(), id)]
            }
            None => {
                let mut all: Vec<_> = self
                    .all_refs()?
                    .into_iter()
                    .flat_map(|(id, refs)| refs.into_iter().map(move |r| (r, id.clone())))
                    .filter(|(r, _)| {
                        r.tag().is_some()
                            && r.domain() == reference.domain()
                            && r.path() == reference.path()
                    })
                    .collect();
                all.sort_by_key(|(r, _)| r.to_string());
                all
            }
        };
        if tags.is_empty() {
            return Err(not_local());
        }
        // Blobs must not be collected while they are read.
        let lease = self.lease();
        for (_, id) in &tags {
            lease.pin_all(self.record(id)?.blobs());
        }
        let client = rt.block_on(registry::push_client(reference.domain()))?;
        let target = Target {
            rt,
            client,
            reference,
            oref: registry::oci_reference(&tags[0].0, None),
        };
        progress(PullProgress::new(
            None,
            format!("The push refers to repository [{}]", reference.repository()),
        ));
        target.run(target.client.auth(
            &target.oref,
            &registry::auth(credentials),
            RegistryOperation::Push,
        ))?;
        tags.iter()
            .map(|(r, id)| self.push_tag(&target, r, id, progress))
            .collect()
    }

    /// Pushes one tag: the layers and config the registry lacks, then the manifest.
    fn push_tag(
        &self,
        target: &Target<'_>,
        reference: &Reference,
        id: &ImageId,
        progress: &mut dyn FnMut(PullProgress),
    ) -> Result<Pushed> {
        let tag = reference.tag().unwrap_or(DEFAULT_TAG).to_string();
        let oref = registry::oci_reference(reference, None);
        let rec = self.record(id)?;
        let manifest = self.content.read_blob(&rec.manifest_digest)?;
        // Other repositories of this registry the image is known in: mount sources.
        let sources: Vec<oci_client::Reference> = self
            .references(id)?
            .into_iter()
            .filter(|r| r.domain() == reference.domain() && r.path() != reference.path())
            .map(|r| registry::oci_reference(&r, None))
            .collect();

        let foreign = foreign_layers(&manifest);
        // Docker lists layers top-down.
        let layers: Vec<_> = rec.layers.iter().rev().collect();
        for l in &layers {
            progress(PullProgress::new(Some(short(&l.diff_id)), "Preparing"));
        }
        for l in &layers {
            let id = short(&l.diff_id);
            // Foreign layers stay where their URLs say; the manifest keeps those URLs.
            if foreign.contains(l.digest.as_str()) {
                progress(PullProgress::new(Some(id), "Skipped foreign layer"));
                continue;
            }
            if target.run(target.client.blob_exists(&oref, l.digest.as_str()))? {
                progress(PullProgress::new(Some(id), "Layer already exists"));
                continue;
            }
            if let Some(from) = mount(target, &sources, &l.digest) {
                progress(PullProgress::new(
                    Some(id),
                    format!("Mounted from {}", from.repository()),
                ));
                continue;
            }
            self.upload(target, &l.digest, Some((id, &mut *progress)))?;
            progress(PullProgress::new(Some(id), "Pushed"));
        }
        if !target.run(target.client.blob_exists(&oref, rec.id.as_str()))? {
            self.upload(target, &rec.id, None)?;
        }

        let content_type = rec.manifest_media_type.parse().map_err(|_| {
            Error::metadata(
                format!("manifest {}", rec.manifest_digest),
                format!("invalid media type {:?}", rec.manifest_media_type),
            )
        })?;
        let size = manifest.len() as u64;
        target.run(
            target
                .client
                .push_manifest_raw(&oref, manifest, content_type),
        )?;
        // The image now has a digest in this repository, as after a pull.
        self.commit_image(&rec, &[reference.with_digest(rec.manifest_digest.clone())])?;
        progress(PullProgress::new(
            None,
            format!("{tag}: digest: {} size: {size}", rec.manifest_digest),
        ));
        Ok(Pushed {
            tag,
            digest: rec.manifest_digest,
            size,
        })
    }

    /// Streams one blob from the content store to the registry in one PUT.
    fn upload(
        &self,
        target: &Target<'_>,
        digest: &Digest,
        mut progress: Option<(&str, &mut dyn FnMut(PullProgress))>,
    ) -> Result<()> {
        let size = self.content.size(digest)?;
        let file = tokio::fs::File::from_std(self.content.open_blob(digest)?);
        let (sent_tx, sent_rx) = mpsc::channel::<u64>();
        let mut sent = 0u64;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |c| {
            let c = c.map_err(OciDistributionError::IoError)?;
            sent += c.len() as u64;
            let _ = sent_tx.send(sent);
            Ok(c)
        });
        let (client, oref, d) = (
            target.client.clone(),
            target.oref.clone(),
            digest.to_string(),
        );
        let task = target
            .rt
            .spawn(async move { client.push_blob_stream(&oref, body, &d, Some(size)).await });
        // The sender goes with the body: this ends when the upload is over.
        let mut reported = 0u64;
        for done in sent_rx {
            if let Some((id, p)) = progress.as_mut() {
                if done - reported >= PROGRESS_STEP || done == size {
                    reported = done;
                    p(PullProgress {
                        id: Some(id.to_string()),
                        status: "Pushing".into(),
                        progress: Some((done, size)),
                    });
                }
            }
        }
        match target.rt.block_on(task) {
            Ok(r) => r.map(|_| ()).map_err(|e| push_error(target.reference, e)),
            Err(e) => Err(Error::Registry(format!(
                "{}: upload of {digest} failed: {e}",
                target.reference.familiar()
            ))),
        }
    }
}

/// Mounts `digest` into the target repository from the first source that has it.
fn mount<'a>(
    target: &Target<'_>,
    sources: &'a [oci_client::Reference],
    digest: &Digest,
) -> Option<&'a oci_client::Reference> {
    sources.iter().find(|from| {
        // A registry that cannot mount answers 202 (an upload session): just upload.
        target
            .rt
            .block_on(
                target
                    .client
                    .mount_blob(&target.oref, from, digest.as_str()),
            )
            .is_ok()
    })
}

/// The digests of the manifest's non-distributable layers, which Docker never uploads.
fn foreign_layers(manifest: &[u8]) -> HashSet<String> {
    let v: serde_json::Value = serde_json::from_slice(manifest).unwrap_or_default();
    v["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| {
            l["mediaType"]
                .as_str()
                .is_some_and(|t| FOREIGN_LAYER_TYPES.contains(&t))
        })
        .filter_map(|l| l["digest"].as_str().map(str::to_string))
        .collect()
}

fn short(d: &Digest) -> &str {
    &d.hex()[..12]
}

/// A registry error during a push, in Docker's words.
fn push_error(r: &Reference, e: OciDistributionError) -> Error {
    let denied = match &e {
        OciDistributionError::UnauthorizedError { .. } => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|err| matches!(err.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        OciDistributionError::ServerError { code: 401, .. } => true,
        OciDistributionError::RequestError(e) => {
            e.status() == Some(reqwest::StatusCode::UNAUTHORIZED)
        }
        _ => false,
    };
    if denied {
        return Error::Unauthorized("unauthorized: authentication required".into());
    }
    match registry::registry_error(&r.familiar(), e) {
        Error::ManifestUnknown(m) => Error::Registry(m),
        other => other,
    }
}

//! `commit`: a new image made of a parent image's layers and one more layer (a
//! container's changes), with a config derived from the parent's.

use std::io::Write;

use crate::config::{rfc3339_now, ContainerConfig, HistoryEntry};
use crate::error::{Error, Result};
use crate::import::MEDIA_LAYER_TAR;
use crate::lease::Lease;
use crate::reference::Reference;
use crate::store::{ImageId, ImageStore, LayerRecord};

/// The digest of an empty layer: a tar of nothing but its two end blocks. Docker adds no
/// layer for it, only a history entry marked empty.
pub const EMPTY_LAYER_DIGEST: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// What a commit records besides the layer.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The new image's `config` (what containers made from it run).
    pub config: ContainerConfig,
    pub author: Option<String>,
    pub comment: Option<String>,
    /// The history entry's `created_by`.
    pub created_by: Option<String>,
    /// `repo:tag` to point at the new image.
    pub reference: Option<String>,
}

impl ImageStore {
    /// Stores the uncompressed layer tar that `write_layer` writes as a child of image
    /// `parent`, and indexes the new image. Nothing is left behind on failure.
    pub fn commit(
        &self,
        parent: &ImageId,
        write_layer: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
        options: CommitOptions,
    ) -> Result<ImageId> {
        let refs = match &options.reference {
            Some(r) => {
                let parsed = Reference::parse(r)?;
                if parsed.digest().is_some() {
                    return Err(Error::InvalidReference(format!(
                        "{r:?}: refusing to create a tag with a digest reference"
                    )));
                }
                vec![parsed]
            }
            None => Vec::new(),
        };
        let lease = self.lease();
        let result = self.commit_inner(parent, write_layer, options, &refs, &lease);
        lease.release()?;
        result
    }

    fn commit_inner(
        &self,
        parent: &ImageId,
        write_layer: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
        options: CommitOptions,
        refs: &[Reference],
        lease: &Lease<'_>,
    ) -> Result<ImageId> {
        let parent_rec = self.record(parent)?;
        // The parent's layers are the new image's too: kept even if the parent goes.
        lease.pin_all(parent_rec.layers.iter().map(|l| &l.digest));
        let mut config = self.read_config(parent)?;
        let mut blob = self.content.writer()?;
        write_layer(&mut blob).map_err(|e| Error::io("write layer of", parent.as_str(), e))?;
        let layer = lease.commit(blob, None)?;
        let empty = layer.digest.as_str() == EMPTY_LAYER_DIGEST;
        let now = rfc3339_now();
        let mut layers = parent_rec.layers.clone();
        if !empty {
            config.rootfs.diff_ids.push(layer.digest.to_string());
            layers.push(LayerRecord {
                digest: layer.digest.clone(),
                media_type: MEDIA_LAYER_TAR.to_string(),
                size: layer.size,
                diff_id: layer.digest.clone(),
                uncompressed_size: layer.size,
            });
        }
        config.created = Some(now.clone());
        config.author = options.author.clone().filter(|a| !a.is_empty());
        config.config = Some(options.config);
        config.history.push(HistoryEntry {
            created: Some(now.clone()),
            created_by: options.created_by.filter(|c| !c.is_empty()),
            author: options.author.filter(|a| !a.is_empty()),
            comment: options.comment.filter(|c| !c.is_empty()),
            empty_layer: empty,
        });
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| Error::metadata("image config", e))?;
        self.store_image(&config_bytes, layers, Some(now), refs, lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_adds_a_layer_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let mut base = Vec::new();
        {
            let mut b = tar::Builder::new(&mut base);
            let mut h = tar::Header::new_gnu();
            h.set_size(2);
            h.set_mode(0o644);
            b.append_data(&mut h, "a", &b"hi"[..]).unwrap();
            b.finish().unwrap();
        }
        let parent = store
            .import(&mut &base[..], Some("base:1"), &[], None)
            .unwrap();
        let mut layer = |w: &mut dyn Write| {
            let mut b = tar::Builder::new(w);
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mode(0o600);
            b.append_data(&mut h, "b", &b"new"[..])?;
            b.finish()
        };
        let options = CommitOptions {
            config: ContainerConfig {
                cmd: Some(vec!["echo".into(), "hi".into()]),
                ..Default::default()
            },
            comment: Some("c".into()),
            created_by: Some("sh".into()),
            reference: Some("child:2".into()),
            ..Default::default()
        };
        let id = store.commit(&parent, &mut layer, options).unwrap();
        assert_eq!(store.resolve("child:2").unwrap(), id);
        let cfg = store.read_config(&id).unwrap();
        assert_eq!(cfg.rootfs.diff_ids.len(), 2);
        assert_eq!(cfg.history.len(), 2);
        assert_eq!(cfg.history[1].comment.as_deref(), Some("c"));
        assert_eq!(store.layers("child:2").unwrap().len(), 2);
        // No changes: no layer, an empty history entry.
        let mut empty = |w: &mut dyn Write| tar::Builder::new(w).finish();
        let id2 = store
            .commit(&id, &mut empty, CommitOptions::default())
            .unwrap();
        let cfg2 = store.read_config(&id2).unwrap();
        assert_eq!(cfg2.rootfs.diff_ids.len(), 2);
        assert!(cfg2.history[2].empty_layer);
    }
}

//! An image's layers unpacked into snapshots keyed by chain ID: at pull, where a hostile
//! layer is refused before the image exists (the pull drives the order and the progress,
//! see `polis_image::LayerUnpacker`), and at create, for images that came in without a
//! pull (load, import, commit).

use std::io::Read;
use std::sync::Arc;

use polis_image::{Digest, LayerInfo, LayerUnpacker, StagedLayer};
use polis_storage::Snapshotter;

use crate::containers::Layout;
use crate::error::{Error, Result};
use crate::snapshot_gc::Pins;

/// Unpacks the layers that have no snapshot yet, bottom first, and returns the image's
/// top chain ID and the chain IDs of the snapshots it made. On error, those it made are
/// removed again.
pub fn unpack(snapshots: &Snapshotter, layers: &[LayerInfo]) -> Result<(String, Vec<String>)> {
    let mut made = Vec::new();
    let mut parent: Option<String> = None;
    for layer in layers {
        let diff_id = layer.diff_id.as_str();
        let chain = polis_storage::chain_id(parent.as_deref(), diff_id);
        if !snapshots.has(&chain) {
            let result = std::fs::File::open(&layer.path)
                .map_err(|e| Error::io("open", &layer.path, e))
                .and_then(|blob| {
                    snapshots
                        .commit_layer_verified(parent.as_deref(), diff_id, blob)
                        .map_err(|e| refused(layer, e))
                });
            match result {
                Ok(_) => made.push(chain.clone()),
                Err(e) => {
                    discard(snapshots, &made);
                    return Err(e);
                }
            }
        }
        parent = Some(chain);
    }
    let top = parent.ok_or_else(|| Error::InvalidInput("image has no layers".into()))?;
    Ok((top, made))
}

/// Removes snapshots made by an unpack that did not go through, top first.
fn discard(snapshots: &Snapshotter, made: &[String]) {
    for chain in made.iter().rev() {
        // One another image took on meanwhile (a container on it, a child) stays.
        let _ = snapshots.remove_snapshot(chain);
    }
}

/// Names the layer in a storage error: which blob, then which entry and why.
fn refused(layer: &LayerInfo, e: polis_storage::Error) -> Error {
    use polis_storage::Error as E;
    let hint = match &e {
        E::TooLarge(m) if m.contains("exceeds the limit") => {
            " (max-layer-size in the daemon config)"
        }
        E::Entry { reason, .. } if reason.contains("device nodes are not allowed") => {
            " (layer-device-nodes in the daemon config)"
        }
        _ => "",
    };
    let why = match e {
        E::Layer(m) | E::TooLarge(m) => m,
        other => other.to_string(),
    };
    Error::Layer(format!(
        "failed to register layer {}: {why}{hint}",
        layer.digest
    ))
}

fn image_error(e: Error) -> polis_image::Error {
    polis_image::Error::Unpack(e.to_string())
}

/// Unpacks a pull's layers into the engine's snapshots, which stay pinned against
/// collection until the unpacker is dropped (after the pull recorded its image).
pub struct PullUnpacker {
    snapshots: Snapshotter,
    pins: Arc<Pins>,
}

impl PullUnpacker {
    pub fn new(layout: &Layout) -> Result<Self> {
        Ok(PullUnpacker {
            snapshots: layout.snapshotter()?,
            pins: Arc::default(),
        })
    }
}

impl LayerUnpacker for PullUnpacker {
    fn has(&self, chain_id: &Digest) -> bool {
        self.pins.pin(chain_id.as_str());
        self.snapshots.has(chain_id.as_str())
    }

    fn stage(
        &self,
        layer: &LayerInfo,
        blob: &mut dyn Read,
    ) -> polis_image::Result<Box<dyn StagedLayer>> {
        let staged = self
            .snapshots
            .stage_layer(Some(layer.diff_id.as_str()), blob)
            .map_err(|e| image_error(refused(layer, e)))?;
        Ok(Box::new(Staged {
            snapshots: self.snapshots.clone(),
            pins: self.pins.clone(),
            layer: layer.clone(),
            staged,
        }))
    }

    fn discard(&self, chain_ids: &[Digest]) {
        for chain in chain_ids {
            let _ = self.snapshots.remove_snapshot(chain.as_str());
        }
    }
}

/// A pulled layer unpacked in the staging area.
struct Staged {
    snapshots: Snapshotter,
    pins: Arc<Pins>,
    layer: LayerInfo,
    staged: polis_storage::StagedLayer,
}

impl StagedLayer for Staged {
    fn tar_bytes(&self) -> u64 {
        self.staged.tar_bytes()
    }

    fn commit(self: Box<Self>, parent: Option<&Digest>) -> polis_image::Result<(Digest, bool)> {
        let Staged {
            snapshots,
            pins,
            layer,
            staged,
        } = *self;
        let diff_id = layer.diff_id.as_str();
        pins.pin(&polis_storage::chain_id(
            parent.map(Digest::as_str),
            diff_id,
        ));
        let (chain, made) = snapshots
            .commit_staged(parent.map(Digest::as_str), staged)
            .map_err(|e| image_error(refused(&layer, e)))?;
        let chain = Digest::parse(&chain).map_err(|e| image_error(Error::Image(e)))?;
        Ok((chain, made))
    }
}

//! The hook through which a pull has its layers unpacked (and so checked) before the image
//! is recorded, as Docker does. The store knows blobs, not file systems: the engine, which
//! owns the snapshots, implements it.
//!
//! A layer is unpacked off to the side as soon as its blob is there, beside the other
//! downloads and unpacks (its content needs no parent), and becomes a snapshot only once
//! the layers below it are snapshots: the pull commits them bottom first.

use std::io::Read;

use crate::digest::Digest;
use crate::error::Result;
use crate::store::LayerInfo;

/// Unpacks the layers of an image being pulled into snapshots keyed by chain ID.
pub trait LayerUnpacker: Sync {
    /// Whether the snapshot of `chain_id` exists already.
    fn has(&self, chain_id: &Digest) -> bool;

    /// Unpacks `blob`, the content of `layer`, into a staging area, refusing it (with
    /// nothing left) when its uncompressed digest is not `layer.diff_id`. Called from
    /// several threads at once.
    fn stage(&self, layer: &LayerInfo, blob: &mut dyn Read) -> Result<Box<dyn StagedLayer>>;

    /// Removes snapshots a failed pull made, given top first. One that something else
    /// took on meanwhile (a container, a child) stays.
    fn discard(&self, chain_ids: &[Digest]);
}

/// A layer unpacked and verified but not yet a snapshot; dropping it removes its files.
pub trait StagedLayer: Send {
    /// Size of the uncompressed tar.
    fn tar_bytes(&self) -> u64;

    /// Makes it the snapshot on top of `parent` (whose snapshot must exist); returns its
    /// chain ID and whether this call made it (false: it existed already).
    fn commit(self: Box<Self>, parent: Option<&Digest>) -> Result<(Digest, bool)>;
}

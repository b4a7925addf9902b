//! The hook through which a pull has its layers unpacked (and so checked) before the image
//! is recorded, as Docker does. The store knows blobs, not file systems: the engine, which
//! owns the snapshots, implements it.

use crate::error::Result;
use crate::pull::PullProgress;
use crate::store::LayerInfo;

/// Undoes what an unpack made, for a pull that fails after it.
pub type UndoUnpack = Box<dyn FnOnce() + Send>;

/// Unpacks the layers of an image being pulled.
pub trait LayerUnpacker {
    /// Called once every layer is downloaded and verified, before the image is recorded.
    /// `layers` are bottom first; `downloaded[i]` tells whether this pull fetched layer `i`.
    /// Reports Docker's "Extracting" and "Pull complete" messages. On error nothing it
    /// made may stay; on success it returns how to undo it, should the pull fail later.
    fn unpack(
        &self,
        layers: &[LayerInfo],
        downloaded: &[bool],
        progress: &mut dyn FnMut(PullProgress),
    ) -> Result<UndoUnpack>;
}

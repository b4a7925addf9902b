//! Image layer storage for Polis: unpacking OCI/Docker layer tars into overlay lower layers,
//! snapshots keyed by chain ID that images share, per-container overlay upper layers, and
//! layer diffs and change lists of a container's changes. Synchronous; mounts are
//! returned, not performed.

pub mod changes;
pub mod diff;
mod error;
pub mod mount;
pub mod snapshot;
pub mod unpack;

pub use changes::{apparent_size, layer_tar_size, Change, ChangeKind};
pub use diff::diff;
pub use error::{Error, Result};
pub use mount::{unmount, Mount};
pub use snapshot::{
    chain_id, disk_usage, sha256_digest, ContainerInfo, SnapshotInfo, Snapshotter, StagedLayer,
    Usage,
};
pub use unpack::{decompress, unpack, UnpackOptions, Unpacked};

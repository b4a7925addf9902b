//! Polis's local image store: content-addressed blobs, an index of images and references,
//! `import` of root filesystem tars, `commit` of a container's changes, `load` and `save`
//! of docker-archive tars, `pull` from and `push` to registries, and the mapping of an image config onto
//! an OCI runtime process.

mod archive;
pub use archive::LoadedImage;
mod commit;
pub use commit::{CommitOptions, EMPTY_LAYER_DIGEST};
pub mod config;
mod content;
mod digest;
mod error;
mod fetch;
mod import;
pub mod lease;
mod pull;
mod pull_layers;
mod push;
pub mod reference;
pub mod registry;
pub mod spec;
mod store;
mod unpacker;

pub use content::{BlobWriter, ContentStore, Ingested};
pub use digest::Digest;
pub use error::{Error, Result};
pub use import::apply_changes;
pub use pull::{Platform, PullProgress, Pulled};
pub use push::Pushed;
pub use reference::Reference;
pub use registry::Credentials;
pub use store::{
    chain_ids, short_id, GcReport, HistoryItem, ImageId, ImageInspect, ImageRecord, ImageStore,
    ImageSummary, ImageUser, InspectRootFs, LayerInfo, LayerRecord, Removal, Removed,
};
pub use unpacker::{LayerUnpacker, StagedLayer};

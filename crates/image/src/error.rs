//! The image store's single error type.

use std::path::PathBuf;

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A reference (name, tag, digest) that Docker's grammar refuses.
    #[error("invalid reference format: {0}")]
    InvalidReference(String),
    /// A digest string that is not `sha256:<64 lowercase hex>`.
    #[error("invalid digest: {0}")]
    InvalidDigest(String),
    /// Content whose hash is not the one it was announced with.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("blob not found: {0}")]
    BlobNotFound(String),
    /// No image matches a reference or ID.
    #[error("No such image: {0}")]
    ImageNotFound(String),
    /// An ID prefix that matches more than one image.
    #[error("ambiguous image ID prefix {0}: matches more than one image")]
    AmbiguousId(String),
    /// Removal refused: a container uses the image, or several tags need `force`.
    #[error("conflict: {0}")]
    Conflict(String),
    /// An archive (docker-archive, OCI layout, rootfs tar) that cannot be used.
    #[error("invalid archive: {0}")]
    InvalidArchive(String),
    /// Image metadata (manifest, config) that cannot be parsed or is inconsistent.
    #[error("invalid image metadata {what}: {reason}")]
    InvalidMetadata { what: String, reason: String },
    /// The image and the overrides give no command to run.
    #[error("no command specified")]
    NoCommand,
    /// A user or group that `/etc/passwd` / `/etc/group` of the rootfs do not know.
    #[error("unable to find {0}")]
    UserNotFound(String),
    /// `docker push` of a name no local image has (Docker's message).
    #[error("An image does not exist locally with the tag: {0}")]
    NotLocal(String),
    /// A tag or digest the registry does not have (Docker's message, whole).
    #[error("{0}")]
    ManifestUnknown(String),
    /// The registry refused the credentials, or asked for some.
    #[error("{0}")]
    Unauthorized(String),
    /// Any other registry or transport failure, naming the registry or reference.
    #[error("{0}")]
    Registry(String),
    /// A manifest kind or layer kind that cannot be pulled (schema 1, foreign layers, …).
    #[error("{0}")]
    UnsupportedManifest(String),
    /// A layer refused or not unpacked at pull, naming the layer and the entry.
    #[error("{0}")]
    Unpack(String),
    /// The redb index failed.
    #[error("image index {op}: {reason}")]
    Index { op: &'static str, reason: String },
}

impl Error {
    /// An I/O error on a path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn index(op: &'static str, e: impl Into<redb::Error>) -> Self {
        Error::Index {
            op,
            reason: e.into().to_string(),
        }
    }

    pub(crate) fn archive(msg: impl Into<String>) -> Self {
        Error::InvalidArchive(msg.into())
    }

    pub(crate) fn metadata(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::InvalidMetadata {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

//! The storage crate's error type: every failure names what was done and on what.

use std::path::PathBuf;

/// Everything that can go wrong while unpacking layers or managing snapshots.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation failed on a path.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A system call failed on a path.
    #[error("{op} {}: {source}", path.display())]
    Sys {
        op: &'static str,
        path: PathBuf,
        source: nix::errno::Errno,
    },
    /// A layer entry was refused or could not be applied.
    #[error("layer entry {entry:?}: {reason}")]
    Entry { entry: String, reason: String },
    /// The layer as a whole is unusable (corrupt, wrong digest).
    #[error("layer: {0}")]
    Layer(String),
    /// The layer unpacks to more than a size limit allows (a decompression bomb, or too
    /// big for the disk).
    #[error("layer: {0}")]
    TooLarge(String),
    /// A snapshot or container storage that does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A snapshot or container storage that exists when it must not, or is still used.
    #[error("{0}")]
    Conflict(String),
    /// A caller-supplied value that is malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A metadata record that cannot be read or written.
    #[error("metadata {}: {source}", path.display())]
    Metadata {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Something this crate cannot do on this system.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: nix::errno::Errno,
    ) -> Self {
        Error::Sys {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn entry(entry: &str, reason: impl Into<String>) -> Self {
        Error::Entry {
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }
}

/// Result with the storage error.
pub type Result<T> = std::result::Result<T, Error>;

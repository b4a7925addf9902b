//! The engine's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("another polis daemon (pid {pid}) already uses root {root}")]
    AlreadyRunning { root: PathBuf, pid: String },
    #[error("metadata store {path}: {reason}")]
    Metadata { path: PathBuf, reason: String },
    #[error(transparent)]
    Image(polis_image::Error),
    #[error(transparent)]
    Storage(polis_storage::Error),
    #[error(transparent)]
    Network(polis_network::Error),
    /// Docker's 403: an operation on something that may not be changed (a predefined
    /// network, a network with containers on it).
    #[error("{0}")]
    Forbidden(String),
    /// An image layer refused or not unpacked, naming the layer (and the entry).
    #[error("{0}")]
    Layer(String),
    /// The shim or the runtime refused or failed.
    #[error("{0}")]
    Container(String),
    /// Docker's 409: a name taken, a running container removed without force.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("No such container: {0}")]
    NotFound(String),
    /// Docker's 404 for a volume (or a volume driver) that does not exist, in its words.
    #[error("{0}")]
    NoSuchVolume(String),
    /// A path missing in a container (`docker cp`), named as the client gave both.
    #[error("Could not find the file {path} in container {container}")]
    FileNotFound { path: String, container: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

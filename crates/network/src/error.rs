//! The network crate's error type: every failure says what was asked and why it cannot be.

/// Everything that can go wrong while managing networks and addresses.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller-supplied value that is malformed or inconsistent (subnet, gateway, range, IP).
    #[error("{0}")]
    InvalidArgument(String),
    /// An address, subnet or name already taken.
    #[error("{0}")]
    Conflict(String),
    /// A network, address pool or allocation that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Every address (or every default subnet) is in use.
    #[error("{0}")]
    Exhausted(String),
    /// A kernel operation (netlink, namespaces, sysctl) failed.
    #[error("{0}")]
    System(String),
    /// The network database could not be read or written.
    #[error("network database: {op}: {detail}")]
    Database { op: &'static str, detail: String },
}

impl Error {
    pub(crate) fn db(op: &'static str, e: impl std::fmt::Display) -> Error {
        Error::Database {
            op,
            detail: e.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

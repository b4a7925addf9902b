//! The runtime's one error type: every failure says what was attempted and on what.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while creating, running or tearing down a container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("load {path}: {source}")]
    Spec {
        path: PathBuf,
        source: oci_spec::OciSpecError,
    },
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    #[error("container \"{0}\" already exists")]
    Exists(String),
    #[error("invalid container id \"{0}\": use letters, digits, '_', '-', '+' and '.' only")]
    InvalidId(String),
    #[error("container \"{id}\" is {state}: {action} needs it {wanted}")]
    BadState {
        id: String,
        state: String,
        action: &'static str,
        wanted: &'static str,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{op}: {source}")]
    Sys { op: String, source: nix::Error },
    #[error("cgroup: {0}")]
    Cgroup(String),
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("container init: {0}")]
    Init(String),
    #[error("hook {path}: {reason}")]
    Hook { path: PathBuf, reason: String },
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(op: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            op: op.into(),
            source,
        }
    }
}

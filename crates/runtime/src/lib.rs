//! Polis's OCI runtime core: an OCI bundle in, a running container out.
//!
//! The library is synchronous (no async runtime): the per-container shim and the
//! runc-compatible command line call it in-process.

pub mod cgroups;
pub mod error;
pub mod seccomp;

pub use error::{Error, Result};

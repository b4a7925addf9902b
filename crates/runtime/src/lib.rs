//! Polis's OCI runtime core: an OCI bundle in, a running container out.
//!
//! The library is synchronous (no async runtime): the per-container shim and the
//! runc-compatible command line call it in-process.

pub mod capabilities;
pub mod cgroups;
pub mod cloned_exe;
pub mod console;
pub mod container;
pub mod error;
pub mod hooks;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod sync;

pub use error::{Error, Result};

//! Seccomp: the OCI profile compiled with libseccomp and loaded in the container's init.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::LinuxSeccomp;

use crate::error::Result;

/// A compiled filter, built before the init drops privileges and loaded at the last moment.
pub struct SeccompProgram {
    _private: (),
}

impl SeccompProgram {
    /// Check and compile `seccomp`; every bad name, action or argument is an error here.
    pub fn compile(_seccomp: &LinuxSeccomp) -> Result<Self> {
        unimplemented!()
    }
    /// Whether loading yields a notify listener fd (some rule uses SCMP_ACT_NOTIFY).
    pub fn needs_listener(&self) -> bool {
        unimplemented!()
    }
    /// Load into the calling thread's process; returns the listener fd for SCMP_ACT_NOTIFY.
    pub fn load(self) -> Result<Option<OwnedFd>> {
        unimplemented!()
    }
}

/// Hand the notify listener to the agent at `listener_path` as the spec says: SCM_RIGHTS
/// with the container process state (JSON) as the message.
pub fn send_listener(
    _listener_path: &Path,
    _state_json: &[u8],
    _listener: BorrowedFd<'_>,
) -> Result<()> {
    unimplemented!()
}

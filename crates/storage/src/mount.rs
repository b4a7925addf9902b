//! Mounts as data: the snapshotter says what to mount, callers decide when and where.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One mount to perform, in the shape of containerd's `Mount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// File system type, e.g. `overlay`.
    #[serde(rename = "type")]
    pub typ: String,
    /// Mount source, e.g. `overlay`.
    pub source: String,
    /// Where to mount relative to the target given to [`Mount::mount_at`]; `None` mounts
    /// onto the target itself (the root file system).
    pub target: Option<PathBuf>,
    /// Mount options: flag words such as `ro` and data such as `lowerdir=...`.
    pub options: Vec<String>,
}

/// Longest mount data the kernel accepts (one page).
pub const MAX_MOUNT_DATA: usize = 4095;

impl Mount {
    /// Splits the options into mount flags and the data string passed to the file system.
    pub fn flags_and_data(&self) -> (MsFlags, String) {
        let mut flags = MsFlags::empty();
        let mut data = Vec::new();
        for option in &self.options {
            match option.as_str() {
                "ro" => flags |= MsFlags::MS_RDONLY,
                "rw" => flags &= !MsFlags::MS_RDONLY,
                "nosuid" => flags |= MsFlags::MS_NOSUID,
                "nodev" => flags |= MsFlags::MS_NODEV,
                "noexec" => flags |= MsFlags::MS_NOEXEC,
                "bind" => flags |= MsFlags::MS_BIND,
                "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
                other => data.push(other),
            }
        }
        (flags, data.join(","))
    }

    /// Performs the mount onto `target` (joined with [`Mount::target`] when that is set).
    pub fn mount_at(&self, target: &Path) -> Result<()> {
        let at = match &self.target {
            Some(sub) => target.join(sub.strip_prefix("/").unwrap_or(sub)),
            None => target.to_path_buf(),
        };
        let (flags, data) = self.flags_and_data();
        if data.len() > MAX_MOUNT_DATA {
            return Err(Error::Unsupported(format!(
                "{} mount data for {} is {} bytes, over the kernel's limit of {MAX_MOUNT_DATA}",
                self.typ,
                at.display(),
                data.len()
            )));
        }
        let data = (!data.is_empty()).then_some(data.as_str());
        nix::mount::mount(
            Some(self.source.as_str()),
            &at,
            Some(self.typ.as_str()),
            flags,
            data,
        )
        .map_err(|e| Error::sys("mount", &at, e))
    }
}

/// Unmounts `target`, detaching it lazily if it is busy.
pub fn unmount(target: &Path) -> Result<()> {
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => nix::mount::umount2(target, MntFlags::MNT_DETACH)
            .map_err(|e| Error::sys("umount", target, e)),
        Err(e) => Err(Error::sys("umount", target, e)),
    }
}

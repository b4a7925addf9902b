//! One daemon per root: an exclusive flock on `<root>/polisd.lock`, held for the
//! daemon's lifetime and released by the kernel however the daemon ends.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub struct RootLock {
    _file: File,
    pub path: PathBuf,
}

impl RootLock {
    pub fn acquire(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| Error::io("create", root, e))?;
        let path = root.join("polisd.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        // SAFETY: flock on a descriptor we own, with integer flags.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(Error::AlreadyRunning {
                root: root.to_path_buf(),
                pid: pid.trim().to_string(),
            });
        }
        file.set_len(0)
            .map_err(|e| Error::io("truncate", &path, e))?;
        file.rewind().map_err(|e| Error::io("rewind", &path, e))?;
        write!(file, "{}", std::process::id()).map_err(|e| Error::io("write", &path, e))?;
        Ok(RootLock { _file: file, path })
    }
}

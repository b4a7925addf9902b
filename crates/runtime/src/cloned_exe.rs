//! Guard against CVE-2019-5736: before the runtime starts a container process it
//! re-executes itself from a sealed in-memory copy, so /proc/PID/exe of anything it
//! forks points at that copy, never at the binary on the host's disk.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};

use crate::error::{Error, Result};

/// Whether we already run from a sealed memfd.
pub fn is_cloned() -> bool {
    std::fs::read_link("/proc/self/exe")
        .map(|p| p.as_os_str().as_encoded_bytes().starts_with(b"/memfd:"))
        .unwrap_or(false)
}

/// Re-exec from a sealed copy of ourselves unless already done. Returns only on error.
pub fn reexec_sealed() -> Result<()> {
    if is_cloned() {
        return Ok(());
    }
    let name = CString::new("polis").unwrap_or_default();
    // SAFETY: memfd_create with a valid C string and flags; returns a new fd or -1.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(Error::sys("memfd_create", nix::errno::Errno::last()));
    }
    // SAFETY: the descriptor is new and owned by nothing else.
    let mut copy = unsafe { File::from_raw_fd(fd) };
    let mut exe =
        File::open("/proc/self/exe").map_err(|e| Error::io("open", "/proc/self/exe", e))?;
    std::io::copy(&mut exe, &mut copy).map_err(|e| Error::io("copy", "/proc/self/exe", e))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our own descriptor with integer arguments.
    if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(Error::sys(
            "seal the runtime copy",
            nix::errno::Errno::last(),
        ));
    }
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_encoded_bytes()).unwrap_or_default())
        .collect();
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_encoded_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_encoded_bytes());
            CString::new(kv).unwrap_or_default()
        })
        .collect();
    match nix::unistd::fexecve(&copy, &args, &env) {
        Err(e) => Err(Error::sys("re-exec the sealed runtime copy", e)),
        Ok(never) => match never {},
    }
}

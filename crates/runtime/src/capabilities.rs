//! The five capability sets of a container process.

use std::str::FromStr;

use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use crate::error::{Error, Result};

/// Capability sets as bitmasks, ready for capset(2).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

fn mask(set: &Option<Capabilities>) -> Result<u64> {
    let mut m = 0u64;
    for cap in set.iter().flatten() {
        let name = serde_json::to_value(cap)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let c = caps::Capability::from_str(&name)
            .map_err(|_| Error::InvalidConfig(format!("unknown capability {name:?}")))?;
        m |= 1u64 << c.index();
    }
    Ok(m)
}

/// The capabilities this kernel knows, as a mask.
fn kernel_known() -> u64 {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40);
    if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    }
}

impl CapSets {
    /// The config's sets, limited to what this process may hold (a capability outside our
    /// own bounding set can never be granted, e.g. CAP_SYS_RESOURCE on some hosts).
    pub fn from_spec(caps: Option<&LinuxCapabilities>) -> Result<Self> {
        let Some(c) = caps else {
            return Ok(CapSets::default());
        };
        let ours = current_bounding() & kernel_known();
        Ok(CapSets {
            bounding: mask(c.bounding())? & ours,
            effective: mask(c.effective())? & ours,
            permitted: mask(c.permitted())? & ours,
            inheritable: mask(c.inheritable())? & ours,
            ambient: mask(c.ambient())? & ours,
        })
    }

    /// Drop everything outside the bounding set. Needs CAP_SETPCAP, so it runs before the
    /// switch to the container user.
    pub fn apply_bounding(&self) -> Result<()> {
        let known = kernel_known();
        for bit in 0..64u32 {
            if known & (1 << bit) != 0 && self.bounding & (1 << bit) == 0 {
                // SAFETY: prctl with integer arguments only.
                let ret =
                    unsafe { libc::prctl(libc::PR_CAPBSET_DROP, bit as libc::c_ulong, 0, 0, 0) };
                if ret != 0 && nix::errno::Errno::last() != nix::errno::Errno::EINVAL {
                    return Err(Error::sys(
                        format!("drop capability {bit} from the bounding set"),
                        nix::errno::Errno::last(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Set effective, permitted and inheritable in one capset(2), then raise ambient.
    pub fn apply(&self) -> Result<()> {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        let mut header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let split = |m: u64| (m as u32, (m >> 32) as u32);
        let (e0, e1) = split(self.effective);
        let (p0, p1) = split(self.permitted);
        let (i0, i1) = split(self.inheritable);
        let data = [
            Data {
                effective: e0,
                permitted: p0,
                inheritable: i0,
            },
            Data {
                effective: e1,
                permitted: p1,
                inheritable: i1,
            },
        ];
        // SAFETY: header and data are the v3 layout capset(2) expects (one header, two
        // data words); the kernel only reads them.
        let ret =
            unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
        if ret != 0 {
            return Err(Error::sys("capset", nix::errno::Errno::last()));
        }
        // SAFETY: prctl with integer arguments only.
        unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            )
        };
        // An ambient capability must also be permitted and inheritable; like runc, one
        // that is not is left out rather than failing the container.
        for bit in 0..64u32 {
            if self.ambient & (1 << bit) != 0 {
                // SAFETY: prctl with integer arguments only.
                unsafe {
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE,
                        bit as libc::c_ulong,
                        0,
                        0,
                    )
                };
            }
        }
        Ok(())
    }
}

/// Names of every capability this kernel knows (for `features`).
pub fn known_names() -> Vec<String> {
    let known = kernel_known();
    let mut names: Vec<(u8, String)> = caps::all()
        .into_iter()
        .filter(|c| c.index() < 64 && known & (1u64 << c.index()) != 0)
        .map(|c| (c.index(), c.to_string()))
        .collect();
    names.sort();
    names.into_iter().map(|(_, n)| n).collect()
}

/// Our own bounding set, read from /proc/self/status.
pub fn current_bounding() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Capability;

    #[test]
    fn masks_from_names() {
        let set: Capabilities = [Capability::Chown, Capability::Kill].into_iter().collect();
        assert_eq!(mask(&Some(set)).unwrap(), (1 << 0) | (1 << 5));
    }
}

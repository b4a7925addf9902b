//! The `local` volume driver's options (`type`, `device`, `o`): checked as Docker checks
//! them at create, and mounted on the volume's `_data` directory, mount(8)-like, when a
//! container first uses it.

use std::collections::BTreeMap;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Error, Result};

/// The option keys the local driver knows.
const VALID: [&str; 4] = ["type", "o", "device", "size"];

/// Docker's check of a local volume's options (its messages).
pub fn validate(opts: &BTreeMap<String, String>) -> Result<()> {
    for k in opts.keys() {
        if !VALID.contains(&k.as_str()) {
            return Err(Error::InvalidInput(format!("invalid option: {k:?}")));
        }
    }
    if opts.contains_key("size") {
        // Docker sets quotas only on xfs/ext4 project quotas, which this daemon does not.
        return Err(Error::InvalidInput(
            "quota size requested but no quota support".into(),
        ));
    }
    for (opt, required) in [
        ("device", &["type"][..]),
        ("type", &["device"][..]),
        ("o", &["device", "type"][..]),
    ] {
        if opts.contains_key(opt) {
            if let Some(missing) = required.iter().find(|r| !opts.contains_key(**r)) {
                return Err(Error::InvalidInput(format!(
                    "missing required option: {missing:?}"
                )));
            }
        }
    }
    if let Some(o) = opts.get("o") {
        parse_options(o)?;
    }
    Ok(())
}

/// Whether the volume is mounted from somewhere (else `_data` is a plain directory).
pub fn needs_mount(opts: &BTreeMap<String, String>) -> bool {
    opts.contains_key("type") || opts.contains_key("device")
}

/// The flags mount(8) takes by name: (flag, set or clear).
fn flag(name: &str) -> Option<(MsFlags, bool)> {
    Some(match name {
        "defaults" => (MsFlags::empty(), true),
        "ro" => (MsFlags::MS_RDONLY, true),
        "rw" => (MsFlags::MS_RDONLY, false),
        "suid" => (MsFlags::MS_NOSUID, false),
        "nosuid" => (MsFlags::MS_NOSUID, true),
        "dev" => (MsFlags::MS_NODEV, false),
        "nodev" => (MsFlags::MS_NODEV, true),
        "exec" => (MsFlags::MS_NOEXEC, false),
        "noexec" => (MsFlags::MS_NOEXEC, true),
        "sync" => (MsFlags::MS_SYNCHRONOUS, true),
        "async" => (MsFlags::MS_SYNCHRONOUS, false),
        "dirsync" => (MsFlags::MS_DIRSYNC, true),
        "mand" => (MsFlags::MS_MANDLOCK, true),
        "nomand" => (MsFlags::MS_MANDLOCK, false),
        "atime" => (MsFlags::MS_NOATIME, false),
        "noatime" => (MsFlags::MS_NOATIME, true),
        "diratime" => (MsFlags::MS_NODIRATIME, false),
        "nodiratime" => (MsFlags::MS_NODIRATIME, true),
        "bind" => (MsFlags::MS_BIND, true),
        "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, true),
        "relatime" => (MsFlags::MS_RELATIME, true),
        "norelatime" => (MsFlags::MS_RELATIME, false),
        "strictatime" => (MsFlags::MS_STRICTATIME, true),
        "nostrictatime" => (MsFlags::MS_STRICTATIME, false),
        _ => return None,
    })
}

/// Propagation options, applied by a second mount call as the kernel requires.
fn propagation(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// `o=`: mount flags, propagation, and the rest as the filesystem's data.
#[derive(Debug, PartialEq)]
struct Parsed {
    flags: MsFlags,
    propagation: MsFlags,
    data: String,
}

fn parse_options(o: &str) -> Result<Parsed> {
    let mut p = Parsed {
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: String::new(),
    };
    let mut data = Vec::new();
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        if let Some((f, set)) = flag(opt) {
            if set {
                p.flags |= f;
            } else {
                p.flags &= !f;
            }
        } else if let Some(f) = propagation(opt) {
            p.propagation |= f;
        } else {
            data.push(opt);
        }
    }
    p.data = data.join(",");
    Ok(p)
}

/// Mount the volume's source on `data` as its options say.
pub fn mount_on(opts: &BTreeMap<String, String>, data: &Path) -> Result<()> {
    let device = opts.get("device").map(String::as_str).unwrap_or_default();
    if device.is_empty() {
        return Err(Error::InvalidInput(
            "failed to mount local volume: missing device in volume options".into(),
        ));
    }
    let kind = opts.get("type").map(String::as_str).unwrap_or_default();
    let p = parse_options(opts.get("o").map(String::as_str).unwrap_or_default())?;
    let fail = |e: nix::errno::Errno| {
        Error::Container(format!(
            "failed to mount local volume: mount {device}:{} (type {kind}, options {:?}): {}",
            data.display(),
            opts.get("o").map(String::as_str).unwrap_or_default(),
            e.desc().to_lowercase()
        ))
    };
    let bind = p.flags.contains(MsFlags::MS_BIND);
    let fstype = (!bind && !kind.is_empty() && kind != "none").then_some(kind);
    let extra = (!p.data.is_empty()).then_some(p.data.as_str());
    mount(Some(device), data, fstype, p.flags, extra).map_err(fail)?;
    // A bind ignores MS_RDONLY and the like until remounted.
    let remount_flags = p.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
    if bind && !remount_flags.is_empty() {
        if let Err(e) = mount(
            None::<&str>,
            data,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | remount_flags,
            None::<&str>,
        ) {
            let _ = umount2(data, MntFlags::MNT_DETACH);
            return Err(fail(e));
        }
    }
    if !p.propagation.is_empty() {
        if let Err(e) = mount(
            None::<&str>,
            data,
            None::<&str>,
            p.propagation,
            None::<&str>,
        ) {
            let _ = umount2(data, MntFlags::MNT_DETACH);
            return Err(fail(e));
        }
    }
    Ok(())
}

/// Unmount what `mount_on` mounted (nothing mounted: nothing to do).
pub fn unmount(data: &Path) -> Result<()> {
    while crate::containers::is_mounted(data) {
        umount2(data, MntFlags::MNT_DETACH)
            .map_err(|e| Error::io("unmount", data, std::io::Error::from(e)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_are_checked_as_docker() {
        assert!(validate(&opts(&[])).is_ok());
        assert!(validate(&opts(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=1m")
        ]))
        .is_ok());
        assert_eq!(
            validate(&opts(&[("bogus", "1")])).unwrap_err().to_string(),
            "invalid option: \"bogus\""
        );
        assert_eq!(
            validate(&opts(&[("type", "tmpfs")]))
                .unwrap_err()
                .to_string(),
            "missing required option: \"device\""
        );
        assert_eq!(
            validate(&opts(&[("o", "size=1m"), ("device", "x")]))
                .unwrap_err()
                .to_string(),
            "missing required option: \"type\""
        );
        assert!(needs_mount(&opts(&[("type", "none"), ("device", "/x")])));
        assert!(!needs_mount(&opts(&[])));
    }

    #[test]
    fn o_splits_flags_from_data() {
        let p = parse_options("size=64m,uid=1000,ro,noexec,rshared").unwrap();
        assert_eq!(p.data, "size=64m,uid=1000");
        assert_eq!(p.flags, MsFlags::MS_RDONLY | MsFlags::MS_NOEXEC);
        assert_eq!(p.propagation, MsFlags::MS_SHARED | MsFlags::MS_REC);
        let p = parse_options("bind").unwrap();
        assert_eq!((p.flags, p.data.as_str()), (MsFlags::MS_BIND, ""));
    }
}

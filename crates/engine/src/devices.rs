//! `--device HOST[:CONTAINER[:PERMISSIONS]]` (HostConfig.Devices): the host's device
//! node (or every node under a host directory) made in the container, with a device
//! cgroup rule granting the asked permissions, as Docker does.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, Spec};

use crate::error::{Error, Result};
use crate::hostconfig::{DeviceMapping, HostConfig};

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidInput(msg.into())
}

/// "r", "w", "m" each at most once, as the device cgroup takes them.
fn valid_permissions(p: &str) -> bool {
    !p.is_empty()
        && p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
        && p.chars().count() == p.chars().collect::<std::collections::BTreeSet<_>>().len()
}

/// The device node at `path` (symlinks followed), if it is one.
fn node(path: &Path, in_container: &Path) -> std::io::Result<Option<LinuxDevice>> {
    let meta = std::fs::metadata(path)?;
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Ok(None);
    };
    let rdev = meta.rdev();
    let mut d = LinuxDevice::default();
    d.set_path(in_container.to_path_buf());
    d.set_typ(typ);
    d.set_major(nix::sys::stat::major(rdev) as i64);
    d.set_minor(nix::sys::stat::minor(rdev) as i64);
    d.set_file_mode(Some(meta.mode() & 0o7777));
    d.set_uid(Some(meta.uid()));
    d.set_gid(Some(meta.gid()));
    Ok(Some(d))
}

/// Every device node under a host directory, at the same place under `to`.
fn nodes_under(dir: &Path, to: &Path, out: &mut Vec<LinuxDevice>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let (host, inside) = (e.path(), to.join(e.file_name()));
        match e.file_type() {
            Ok(t) if t.is_dir() => nodes_under(&host, &inside, out),
            Ok(t) if t.is_symlink() => {}
            _ => {
                if let Ok(Some(d)) = node(&host, &inside) {
                    out.push(d);
                }
            }
        }
    }
}

/// The nodes one `--device` gives, checked (Docker's messages).
fn resolve(m: &DeviceMapping) -> Result<Vec<LinuxDevice>> {
    let host = Path::new(&m.path_on_host);
    let inside = if m.path_in_container.is_empty() {
        host.to_path_buf()
    } else {
        PathBuf::from(&m.path_in_container)
    };
    if !host.is_absolute() || !inside.is_absolute() {
        return Err(invalid(format!(
            "invalid device mapping {}:{}: both paths must be absolute",
            m.path_on_host, m.path_in_container
        )));
    }
    let gather = |why: String| {
        invalid(format!(
            "error gathering device information while adding custom device \"{}\": {why}",
            m.path_on_host
        ))
    };
    match node(host, &inside) {
        Ok(Some(d)) => Ok(vec![d]),
        Ok(None) if host.is_dir() => {
            let mut out = Vec::new();
            nodes_under(host, &inside, &mut out);
            if out.is_empty() {
                return Err(gather("not a device node".into()));
            }
            Ok(out)
        }
        Ok(None) => Err(gather("not a device node".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(gather("no such file or directory".into()))
        }
        Err(e) => Err(gather(e.to_string())),
    }
}

fn permissions(m: &DeviceMapping) -> Result<String> {
    let p = if m.cgroup_permissions.is_empty() {
        "rwm"
    } else {
        m.cgroup_permissions.as_str()
    };
    if !valid_permissions(p) {
        return Err(invalid(format!("invalid device mode: {p}")));
    }
    Ok(p.to_string())
}

/// Check every `--device` before anything is made.
pub fn check(host: &HostConfig) -> Result<()> {
    for m in host.devices.iter().flatten() {
        permissions(m)?;
        resolve(m)?;
    }
    Ok(())
}

/// The nodes into `linux.devices`, each with its cgroup rule.
pub fn apply(host: &HostConfig, spec: &mut Spec) -> Result<()> {
    let mut nodes = Vec::new();
    let mut rules = Vec::new();
    for m in host.devices.iter().flatten() {
        let access = permissions(m)?;
        for d in resolve(m)? {
            let mut rule = LinuxDeviceCgroup::default();
            rule.set_allow(true);
            rule.set_typ(Some(d.typ()));
            rule.set_major(Some(d.major()));
            rule.set_minor(Some(d.minor()));
            rule.set_access(Some(access.clone()));
            rules.push(rule);
            nodes.push(d);
        }
    }
    if nodes.is_empty() {
        return Ok(());
    }
    let Some(linux) = spec.linux_mut() else {
        return Ok(());
    };
    let mut all = linux.devices().clone().unwrap_or_default();
    all.retain(|d| !nodes.iter().any(|n| n.path() == d.path()));
    all.extend(nodes);
    linux.set_devices(Some(all));
    let mut resources = linux.resources().clone().unwrap_or_default();
    let mut cgroup = resources.devices().clone().unwrap_or_default();
    cgroup.extend(rules);
    resources.set_devices(Some(cgroup));
    linux.set_resources(Some(resources));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host: &str, inside: &str, perms: &str) -> DeviceMapping {
        DeviceMapping {
            path_on_host: host.into(),
            path_in_container: inside.into(),
            cgroup_permissions: perms.into(),
        }
    }

    #[test]
    fn null_becomes_a_node_with_its_rule() {
        let host = HostConfig {
            devices: Some(vec![mapping("/dev/null", "/dev/mynull", "rw")]),
            ..Default::default()
        };
        let mut spec = polis_runtime::spec::example(false);
        apply(&host, &mut spec).unwrap();
        let linux = spec.linux().clone().unwrap();
        let d = &linux.devices().clone().unwrap()[0];
        assert_eq!(d.path(), Path::new("/dev/mynull"));
        assert_eq!((d.major(), d.minor()), (1, 3));
        let rule = linux
            .resources()
            .clone()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        let last = rule.last().unwrap();
        assert_eq!(last.access().as_deref(), Some("rw"));
        assert_eq!((last.major(), last.minor()), (Some(1), Some(3)));
    }

    #[test]
    fn bad_devices_are_refused() {
        let err = |m: DeviceMapping| {
            check(&HostConfig {
                devices: Some(vec![m]),
                ..Default::default()
            })
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            err(mapping("/dev/nonexistent-polis", "", "rwm")),
            "error gathering device information while adding custom device \"/dev/nonexistent-polis\": no such file or directory"
        );
        assert_eq!(
            err(mapping("/dev/null", "", "rwx")),
            "invalid device mode: rwx"
        );
        assert!(err(mapping("/etc/hostname", "", "rwm")).ends_with("not a device node"));
    }
}

//! `--network host` and `--network none`. With "none" (and, until networks exist,
//! "default" and "bridge") the container gets a network namespace of its own with only
//! lo. With "host" it has none: it sees the host's interfaces, takes the host's name
//! unless given one, and gets copies of the host's /etc/hosts and /etc/resolv.conf,
//! bind-mounted as Docker does, with its /etc/hostname.

use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

use crate::containers::{ContainerSpec, Layout};
use crate::error::{Error, Result};

/// Whether the container shares the host's network namespace.
pub fn is_host(spec: &ContainerSpec) -> bool {
    spec.host.network_mode == "host"
}

/// At create: a host-network container without a hostname takes the host's (Docker).
pub fn prepare(spec: &mut ContainerSpec) -> Result<()> {
    if is_host(spec) && spec.hostname.is_none() {
        let name = nix::unistd::gethostname()
            .map_err(|e| Error::Container(format!("gethostname: {e}")))?;
        spec.hostname = Some(name.to_string_lossy().into_owned());
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    match std::fs::read(from) {
        Ok(data) => std::fs::write(to, data).map_err(|e| Error::io("write", to, e)),
        // A host without the file gives the container an empty one.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(to, b"").map_err(|e| Error::io("write", to, e))
        }
        Err(e) => Err(Error::io("read", from, e)),
    }
}

/// The spec's namespaces for this network mode, and the mounts it adds.
pub fn apply(
    layout: &Layout,
    id: &str,
    spec: &ContainerSpec,
    oci: &mut Spec,
) -> Result<Vec<Mount>> {
    if !is_host(spec) {
        return Ok(Vec::new());
    }
    if let Some(linux) = oci.linux_mut() {
        let namespaces = linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.typ() != LinuxNamespaceType::Network)
            .collect();
        linux.set_namespaces(Some(namespaces));
    }
    let dir = layout.container_dir(id);
    let hostname = spec.hostname.clone().unwrap_or_default();
    let hostname_path = dir.join("hostname");
    std::fs::write(&hostname_path, format!("{hostname}\n"))
        .map_err(|e| Error::io("write", &hostname_path, e))?;
    copy_file(Path::new("/etc/hosts"), &dir.join("hosts"))?;
    copy_file(Path::new("/etc/resolv.conf"), &dir.join("resolv.conf"))?;
    let mode = if spec.host.readonly_rootfs {
        "ro"
    } else {
        "rw"
    };
    Ok(["resolv.conf", "hostname", "hosts"]
        .iter()
        .map(|name| {
            let mut m = Mount::default();
            m.set_destination(Path::new("/etc").join(name));
            m.set_typ(Some("bind".into()));
            m.set_source(Some(dir.join(name)));
            m.set_options(Some(vec!["rbind".into(), "rprivate".into(), mode.into()]));
            m
        })
        .collect())
}

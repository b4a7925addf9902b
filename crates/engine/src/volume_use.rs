//! Containers and their volumes: at create, the volumes a container asks for (`-v`,
//! `--mount`, `Config.Volumes`, its image's VOLUMEs) are found or made and recorded with
//! it; before its runtime container is made they are mounted (a `local` volume with
//! options on its `_data`) and an empty one is filled from the image; when the last
//! container using a mounted volume stops, it is unmounted. `rm -v` removes the
//! anonymous ones.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::containers::{Container, ContainerSpec, Layout};
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::mounts;
use crate::volumes::{CreateVolume, Volumes};

/// One volume a container mounts, as recorded with the container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeMount {
    pub name: String,
    pub destination: String,
    pub read_only: bool,
    /// Not filled with the image's content.
    pub nocopy: bool,
    /// Inspect's Mode.
    pub mode: String,
    /// Made for this container: `rm -v` (and `--rm`) remove it.
    pub anonymous: bool,
    /// Made by the create that returned this record (not stored): for its events.
    #[serde(skip)]
    pub created: bool,
}

/// Find or make the volumes `spec` asks for, with `image_volumes` (the image's VOLUME
/// paths) as anonymous volumes where nothing else is mounted. Volumes made are pushed
/// onto `made` (so a failed create can remove the anonymous ones).
pub fn attach(
    layout: &Layout,
    md: &Metadata,
    spec: &ContainerSpec,
    image_volumes: &[String],
    made: &mut Vec<String>,
) -> Result<Vec<VolumeMount>> {
    let store = Volumes::new(&layout.root);
    let user = mounts::parse(&spec.host)?;
    let from = volumes_from(md, spec)?;
    let mut wanted: Vec<(String, mounts::VolumeRequest, bool)> = mounts::volume_requests(&user)
        .into_iter()
        .map(|(d, r)| (d, r, false))
        .collect();
    // Config.Volumes, then the image's: anonymous, where nothing else is mounted.
    for path in spec.volumes.keys().chain(image_volumes) {
        let d = clean_target(path)?;
        let taken = mounts::mounted_at(&user, &d) || from.iter().any(|f| f.destination == d);
        if !taken && !wanted.iter().any(|(w, _, _)| *w == d) {
            wanted.push((d, mounts::VolumeRequest::default(), true));
        }
    }
    // --volumes-from, under what the container mounts itself.
    let mut out: Vec<VolumeMount> = from
        .into_iter()
        .filter(|f| !mounts::mounted_at(&user, &f.destination))
        .collect();
    for (destination, r, implicit) in wanted {
        let anonymous = r.name.is_none();
        let (v, created) = store.create(CreateVolume {
            name: r.name.clone(),
            driver: r.driver.clone(),
            options: r.options.clone(),
            labels: r.labels.clone(),
        })?;
        if created {
            made.push(v.name.clone());
        }
        out.push(VolumeMount {
            name: v.name,
            destination,
            read_only: r.read_only,
            nocopy: r.nocopy,
            mode: if implicit { String::new() } else { r.mode },
            anonymous,
            created,
        });
    }
    Ok(out)
}

/// The volumes of the containers `--volumes-from` names, read-only or read-write as
/// the suffix says (else as they were). Their other mounts (binds, tmpfs) are refused
/// by name rather than left out.
fn volumes_from(md: &Metadata, spec: &ContainerSpec) -> Result<Vec<VolumeMount>> {
    let mut out: Vec<VolumeMount> = Vec::new();
    for entry in spec.host.volumes_from.iter().flatten() {
        let (key, mode) = match entry.rsplit_once(':') {
            Some((k, m)) => (k, Some(m)),
            None => (entry.as_str(), None),
        };
        let read_only = match mode {
            None => None,
            Some("ro") => Some(true),
            Some("rw") => Some(false),
            Some(m) => {
                return Err(Error::InvalidInput(format!(
                    "invalid mode for volumes-from: {m}"
                )))
            }
        };
        let source = md.find(key)?;
        let h = &source.spec.host;
        if h.binds.iter().flatten().any(|b| b.starts_with('/'))
            || h.tmpfs.as_ref().is_some_and(|t| !t.is_empty())
            || h.mounts.iter().flatten().any(|m| m.kind != "volume")
        {
            return Err(Error::InvalidInput(format!(
                "volumes-from {key}: only its volumes can be shared by this daemon, not its bind or tmpfs mounts"
            )));
        }
        for v in &source.spec.volume_mounts {
            if out.iter().any(|o| o.destination == v.destination) {
                continue;
            }
            out.push(VolumeMount {
                read_only: read_only.unwrap_or(v.read_only),
                mode: mode.map(str::to_string).unwrap_or_else(|| v.mode.clone()),
                // Still the source container's own.
                anonymous: false,
                created: false,
                ..v.clone()
            });
        }
    }
    Ok(out)
}

/// A VOLUME path or `Config.Volumes` key, checked as a mount target and cleaned.
fn clean_target(path: &str) -> Result<String> {
    if !path.starts_with('/') {
        return Err(Error::InvalidInput(format!(
            "invalid mount config for type \"volume\": invalid mount path: '{path}' mount path must be absolute"
        )));
    }
    let cleaned: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if cleaned.is_empty() {
        return Err(Error::InvalidInput(
            "invalid mount config for type \"volume\": invalid specification: destination can't be '/'".into(),
        ));
    }
    Ok(format!("/{}", cleaned.join("/")))
}

/// Before the runtime container is made: each volume mounted (if its options say so)
/// and, empty and not `nocopy`, filled from the image at its path in `rootfs`.
pub fn mount_all(layout: &Layout, spec: &ContainerSpec, rootfs: &Path) -> Result<()> {
    let store = Volumes::new(&layout.root);
    for v in &spec.volume_mounts {
        store.mount(&v.name)?;
        if !v.nocopy {
            crate::volume_copy::copy_up(rootfs, &v.destination, &store.mountpoint(&v.name))?;
        }
    }
    Ok(())
}

fn live(layout: &Layout, id: &str) -> bool {
    matches!(
        crate::containers::state(layout, id).status.as_str(),
        "created" | "running" | "paused"
    )
}

/// Container `id` no longer runs: each of its volumes that no other live container
/// uses is unmounted. Every volume is tried; the first error is returned.
pub fn release(layout: &Layout, md: &Metadata, id: &str) -> Result<()> {
    let all = md.containers()?;
    let Some(me) = all.iter().find(|c| c.id == id) else {
        return Ok(());
    };
    let store = Volumes::new(&layout.root);
    let mut first = None;
    for v in &me.spec.volume_mounts {
        let used = all.iter().any(|c| {
            c.id != id
                && c.spec.volume_mounts.iter().any(|o| o.name == v.name)
                && live(layout, &c.id)
        });
        if !used {
            if let Err(e) = store.unmount(&v.name) {
                if !matches!(e, Error::NoSuchVolume(_)) {
                    first.get_or_insert(e);
                }
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// The containers (ids) whose records name volume `name`, running or not.
pub fn users(md: &Metadata, name: &str) -> Result<Vec<String>> {
    Ok(md
        .containers()?
        .into_iter()
        .filter(|c| c.spec.volume_mounts.iter().any(|v| v.name == name))
        .map(|c| c.id)
        .collect())
}

/// Remove volume `name` unless a container uses it (Docker's 409 then).
pub fn remove_volume(layout: &Layout, md: &Metadata, name: &str, force: bool) -> Result<()> {
    let store = Volumes::new(&layout.root);
    match store.get(name) {
        Ok(_) => {}
        Err(Error::NoSuchVolume(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    }
    let users = users(md, name)?;
    if !users.is_empty() {
        return Err(Error::Conflict(format!(
            "remove {name}: volume is in use - [{}]",
            users.join(" ")
        )));
    }
    store.remove(name).map(|_| ())
}

/// After container `c` was removed: its anonymous volumes, unless another container
/// uses them too; returns the names removed. Every volume is tried; the first error
/// is returned.
pub fn remove_anonymous(layout: &Layout, md: &Metadata, c: &Container) -> Result<Vec<String>> {
    let mut first = None;
    let mut removed = Vec::new();
    for v in c.spec.volume_mounts.iter().filter(|v| v.anonymous) {
        let present = Volumes::new(&layout.root).get(&v.name).is_ok();
        match remove_volume(layout, md, &v.name, true) {
            Ok(()) if present => removed.push(v.name.clone()),
            Ok(()) | Err(Error::Conflict(_)) => {}
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(removed), Err)
}

/// The image VOLUME paths of an image config.
pub fn image_volumes(config: &polis_image::config::ImageConfig) -> Vec<String> {
    config
        .config
        .as_ref()
        .and_then(|c| c.volumes.as_ref())
        .map(|v: &BTreeMap<String, serde_json::Value>| v.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_cleaned_and_checked() {
        assert_eq!(clean_target("/data//x/").unwrap(), "/data/x");
        assert!(clean_target("data")
            .unwrap_err()
            .to_string()
            .contains("must be absolute"));
        assert!(clean_target("/")
            .unwrap_err()
            .to_string()
            .contains("can't be '/'"));
    }
}

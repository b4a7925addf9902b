//! The volume store: one directory per volume under ROOT/volumes, its data in `_data`
//! (the Mountpoint) and its record in `volume.json`, written whole to a temporary file
//! and renamed into place. A directory without a record is not a volume (a create cut
//! short); a removal renames the directory away first, so no half-removed volume is
//! ever listed. Only the `local` driver exists.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::volume_driver;

/// The label Docker puts on volumes made for one container.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

const RECORD: &str = "volume.json";

/// Store changes (and mounts) one at a time: the directory layout is the state.
static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// One volume, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// RFC 3339, seconds.
    pub created_at: String,
}

impl Volume {
    pub fn anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

/// What a create asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateVolume {
    /// None: a random 64-hex name.
    pub name: Option<String>,
    /// "" means local.
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// Docker's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    crate::containers::valid_name(name)
}

/// Docker's refusal of a name the local driver cannot take.
pub fn invalid_name(name: &str) -> Error {
    Error::InvalidInput(format!(
        "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    ))
}

/// Docker's 404 for a volume that does not exist.
pub fn no_such_volume(op: &str, name: &str) -> Error {
    Error::NoSuchVolume(format!("{op} {name}: no such volume"))
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    crate::archive::rfc3339_nano(secs, 0)
}

/// The volumes under one root.
#[derive(Debug, Clone)]
pub struct Volumes {
    dir: PathBuf,
}

impl Volumes {
    /// The store of the daemon whose root is `root`.
    pub fn new(root: &Path) -> Volumes {
        Volumes {
            dir: root.join("volumes"),
        }
    }

    fn volume_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where the volume's data lives (Docker's Mountpoint).
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.volume_dir(name).join("_data")
    }

    fn read(&self, name: &str) -> Result<Option<Volume>> {
        if !valid_name(name) {
            return Ok(None);
        }
        let path = self.volume_dir(name).join(RECORD);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::Metadata {
                    path,
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    /// The volume named `name`; Docker's 404 otherwise.
    pub fn get(&self, name: &str) -> Result<Volume> {
        self.read(name)?.ok_or_else(|| no_such_volume("get", name))
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read dir", &self.dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read dir", &self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(v) = self.read(&name)? {
                out.push(v);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Create a volume, or return the one of that name (`false`: it existed). One that
    /// exists with other options or driver is refused.
    pub fn create(&self, mut req: CreateVolume) -> Result<(Volume, bool)> {
        let name = match &req.name {
            Some(n) if !n.is_empty() => n.clone(),
            // A volume without a name is anonymous, as Docker labels it.
            _ => {
                req.labels
                    .insert(ANONYMOUS_LABEL.to_string(), String::new());
                crate::metadata::random_hex(32)
            }
        };
        if !valid_name(&name) {
            return Err(invalid_name(&name));
        }
        let driver = if req.driver.is_empty() {
            "local"
        } else {
            req.driver.as_str()
        };
        if driver != "local" {
            return Err(Error::NoSuchVolume(format!(
                "create {name}: error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        volume_driver::validate(&req.options)
            .map_err(|e| Error::InvalidInput(format!("create {name}: {e}")))?;
        let _guard = lock();
        if let Some(existing) = self.read(&name)? {
            if !req.options.is_empty() && req.options != existing.options {
                return Err(Error::Conflict(format!(
                    "create {name}: volume name must be unique: a volume with this name already exists with other options"
                )));
            }
            return Ok((existing, false));
        }
        let v = Volume {
            name: name.clone(),
            driver: "local".into(),
            labels: req.labels,
            options: req.options,
            created_at: now(),
        };
        let dir = self.volume_dir(&name);
        let data = self.mountpoint(&name);
        // A directory left by a create cut short holds no record: it is taken over.
        std::fs::create_dir_all(&data).map_err(|e| Error::io("create", &data, e))?;
        self.write_record(&v)?;
        let _ = std::fs::File::open(&dir).and_then(|d| d.sync_all());
        Ok((v, true))
    }

    fn write_record(&self, v: &Volume) -> Result<()> {
        let dir = self.volume_dir(&v.name);
        let tmp = dir.join(format!(".{RECORD}.tmp"));
        let text = serde_json::to_vec_pretty(v).map_err(|e| Error::InvalidInput(e.to_string()))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("write", &tmp, e))?;
        let path = dir.join(RECORD);
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))
    }

    /// Remove a volume and its data (the caller checked no container uses it): its
    /// source unmounted, its directory renamed out of the store, then deleted.
    pub fn remove(&self, name: &str) -> Result<Volume> {
        let _guard = lock();
        let v = self
            .read(name)?
            .ok_or_else(|| no_such_volume("get", name))?;
        let data = self.mountpoint(name);
        volume_driver::unmount(&data)
            .map_err(|e| Error::Container(format!("remove {name}: {e}")))?;
        let dir = self.volume_dir(name);
        let trash = self.dir.join(format!(
            ".removing-{name}-{}",
            crate::metadata::random_hex(4)
        ));
        std::fs::rename(&dir, &trash).map_err(|e| Error::io("rename", &dir, e))?;
        std::fs::remove_dir_all(&trash).map_err(|e| Error::io("remove", &trash, e))?;
        Ok(v)
    }

    /// Mount the volume's source on its `_data` if its options ask for one and it is
    /// not mounted yet.
    pub fn mount(&self, name: &str) -> Result<()> {
        let _guard = lock();
        let v = self.get(name)?;
        let data = self.mountpoint(name);
        if volume_driver::needs_mount(&v.options) && !crate::containers::is_mounted(&data) {
            volume_driver::mount_on(&v.options, &data)?;
        }
        Ok(())
    }

    /// Unmount the volume's source (a plain directory stays as it is).
    pub fn unmount(&self, name: &str) -> Result<()> {
        let _guard = lock();
        let v = self.get(name)?;
        if volume_driver::needs_mount(&v.options) {
            volume_driver::unmount(&self.mountpoint(name))?;
        }
        Ok(())
    }

    /// The bytes the volume's data takes (Docker's UsageData.Size: apparent sizes, each
    /// inode once, symlinks not followed); -1 when it cannot be measured.
    pub fn size(&self, name: &str) -> i64 {
        polis_storage::apparent_size(&self.mountpoint(name))
            .map(|n| n as i64)
            .unwrap_or(-1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str) -> CreateVolume {
        CreateVolume {
            name: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn create_get_list_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Volumes::new(tmp.path());
        assert!(store.list().unwrap().is_empty());
        let (v, created) = store.create(req("data")).unwrap();
        assert!(created);
        assert_eq!(v.driver, "local");
        assert!(store.mountpoint("data").is_dir());
        std::fs::write(store.mountpoint("data").join("f"), "x").unwrap();
        assert_eq!(store.size("data"), 1);
        let (again, created) = store.create(req("data")).unwrap();
        assert!(!created);
        assert_eq!(again, v);
        let (anon, _) = store.create(CreateVolume::default()).unwrap();
        assert_eq!(anon.name.len(), 64);
        assert!(anon.anonymous());
        assert_eq!(store.list().unwrap().len(), 2);
        assert_eq!(store.get("data").unwrap(), v);
        store.remove("data").unwrap();
        assert_eq!(
            store.get("data").unwrap_err().to_string(),
            "get data: no such volume"
        );
        assert_eq!(
            store.remove("data").unwrap_err().to_string(),
            "get data: no such volume"
        );
        store.remove(&anon.name).unwrap();
        assert_eq!(
            std::fs::read_dir(tmp.path().join("volumes"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn bad_requests_are_refused_in_dockers_words() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Volumes::new(tmp.path());
        assert!(store
            .create(req("a/b"))
            .unwrap_err()
            .to_string()
            .starts_with(
                "create a/b: \"a/b\" includes invalid characters for a local volume name"
            ));
        let mut r = req("x1");
        r.driver = "nfsplug".into();
        assert_eq!(
            store.create(r).unwrap_err().to_string(),
            "create x1: error looking up volume plugin nfsplug: plugin \"nfsplug\" not found"
        );
        let mut r = req("x1");
        r.options.insert("foo".into(), "bar".into());
        assert_eq!(
            store.create(r).unwrap_err().to_string(),
            "create x1: invalid option: \"foo\""
        );
        store.create(req("x1")).unwrap();
        let mut r = req("x1");
        r.options.insert("type".into(), "tmpfs".into());
        r.options.insert("device".into(), "tmpfs".into());
        assert!(matches!(store.create(r), Err(Error::Conflict(_))));
    }

    #[test]
    fn a_directory_without_record_is_no_volume() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Volumes::new(tmp.path());
        std::fs::create_dir_all(store.mountpoint("half")).unwrap();
        assert!(store.list().unwrap().is_empty());
        let (_, created) = store.create(req("half")).unwrap();
        assert!(created);
        assert_eq!(store.list().unwrap().len(), 1);
    }
}

//! The daemon's metadata store (redb): one file under the root, opened once by the
//! daemon that holds the root lock.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::containers::Container;

use crate::error::{Error, Result};

const DAEMON: TableDefinition<&str, &str> = TableDefinition::new("daemon");
/// Container id → its record (JSON).
const CONTAINERS: TableDefinition<&str, &str> = TableDefinition::new("containers");
/// Container name → id.
const NAMES: TableDefinition<&str, &str> = TableDefinition::new("names");

pub struct Metadata {
    db: Database,
    path: PathBuf,
}

impl Metadata {
    pub fn open(root: &Path) -> Result<Self> {
        let path = root.join("metadata.redb");
        let db = Database::create(&path).map_err(|e| Error::Metadata {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Metadata { db, path })
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Metadata {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// This daemon's identity, made on first start and kept for good (`docker info` ID).
    pub fn daemon_id(&self) -> Result<String> {
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        if let Ok(table) = read.open_table(DAEMON) {
            if let Some(v) = table.get("id").map_err(|e| self.err(e))? {
                return Ok(v.value().to_string());
            }
        }
        drop(read);
        let id = random_hex(16);
        let write = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = write.open_table(DAEMON).map_err(|e| self.err(e))?;
            table.insert("id", id.as_str()).map_err(|e| self.err(e))?;
        }
        write.commit().map_err(|e| self.err(e))?;
        Ok(id)
    }
}

impl Metadata {
    /// Claim `name` for container `id`; Docker's 409 if another container has it.
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<()> {
        let write = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut names = write.open_table(NAMES).map_err(|e| self.err(e))?;
            if let Some(owner) = names.get(name).map_err(|e| self.err(e))? {
                return Err(Error::Conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                    owner.value()
                )));
            }
            names.insert(name, id).map_err(|e| self.err(e))?;
        }
        write.commit().map_err(|e| self.err(e))
    }

    /// Every name with the id that holds it.
    pub fn names(&self) -> Result<Vec<(String, String)>> {
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        let Ok(table) = read.open_table(NAMES) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((k.value().to_string(), v.value().to_string()));
        }
        Ok(out)
    }

    /// Free a name whatever holds it (a create that never finished).
    pub fn release_name(&self, name: &str) -> Result<()> {
        let write = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut names = write.open_table(NAMES).map_err(|e| self.err(e))?;
            names.remove(name).map_err(|e| self.err(e))?;
        }
        write.commit().map_err(|e| self.err(e))
    }

    pub fn save_container(&self, c: &Container) -> Result<()> {
        let json = serde_json::to_string(c).map_err(|e| self.err(e))?;
        let write = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = write.open_table(CONTAINERS).map_err(|e| self.err(e))?;
            table
                .insert(c.id.as_str(), json.as_str())
                .map_err(|e| self.err(e))?;
        }
        write.commit().map_err(|e| self.err(e))
    }

    /// Change a container's record in one transaction, so concurrent changes of other
    /// fields (start time, restart count, stop flag) are not lost. The updated record,
    /// or NotFound once it is gone.
    pub fn update_container(
        &self,
        id: &str,
        change: impl FnOnce(&mut Container),
    ) -> Result<Container> {
        let write = self.db.begin_write().map_err(|e| self.err(e))?;
        let updated = {
            let mut table = write.open_table(CONTAINERS).map_err(|e| self.err(e))?;
            let current = table
                .get(id)
                .map_err(|e| self.err(e))?
                .map(|v| v.value().to_string());
            let Some(current) = current else {
                return Err(Error::NotFound(id.to_string()));
            };
            let mut c: Container = serde_json::from_str(&current).map_err(|e| self.err(e))?;
            change(&mut c);
            let json = serde_json::to_string(&c).map_err(|e| self.err(e))?;
            table.insert(id, json.as_str()).map_err(|e| self.err(e))?;
            c
        };
        write.commit().map_err(|e| self.err(e))?;
        Ok(updated)
    }

    pub fn remove_container(&self, id: &str, name: &str) -> Result<()> {
        let write = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = write.open_table(CONTAINERS).map_err(|e| self.err(e))?;
            table.remove(id).map_err(|e| self.err(e))?;
            let mut names = write.open_table(NAMES).map_err(|e| self.err(e))?;
            let owned = names
                .get(name)
                .map_err(|e| self.err(e))?
                .is_some_and(|v| v.value() == id);
            if owned {
                names.remove(name).map_err(|e| self.err(e))?;
            }
        }
        write.commit().map_err(|e| self.err(e))
    }

    /// Renames container `id` to `new` in one transaction: its record and the name
    /// index change together. Docker's 409 if another container has the name.
    pub fn rename(&self, id: &str, new: &str) -> Result<Container> {
        let write = self.db.begin_write().map_err(|e| self.err(e))?;
        let renamed = {
            let mut names = write.open_table(NAMES).map_err(|e| self.err(e))?;
            if let Some(owner) = names.get(new).map_err(|e| self.err(e))? {
                return Err(Error::Conflict(format!(
                    "Error when allocating new name: Conflict. The container name \"/{new}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                    owner.value()
                )));
            }
            let mut table = write.open_table(CONTAINERS).map_err(|e| self.err(e))?;
            let mut c: Container = match table.get(id).map_err(|e| self.err(e))? {
                Some(v) => serde_json::from_str(v.value()).map_err(|e| self.err(e))?,
                None => return Err(Error::NotFound(id.to_string())),
            };
            let owned = names
                .get(c.name.as_str())
                .map_err(|e| self.err(e))?
                .is_some_and(|v| v.value() == id);
            if owned {
                names.remove(c.name.as_str()).map_err(|e| self.err(e))?;
            }
            names.insert(new, id).map_err(|e| self.err(e))?;
            c.name = new.to_string();
            let json = serde_json::to_string(&c).map_err(|e| self.err(e))?;
            table.insert(id, json.as_str()).map_err(|e| self.err(e))?;
            c
        };
        write.commit().map_err(|e| self.err(e))?;
        Ok(renamed)
    }

    pub fn containers(&self) -> Result<Vec<Container>> {
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        let Ok(table) = read.open_table(CONTAINERS) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.err(e))? {
            let (_, v) = row.map_err(|e| self.err(e))?;
            out.push(serde_json::from_str(v.value()).map_err(|e| self.err(e))?);
        }
        Ok(out)
    }

    /// A container by full id, name (with or without '/'), or unique id prefix.
    pub fn find(&self, key: &str) -> Result<Container> {
        let key = key.trim_start_matches('/');
        let all = self.containers()?;
        if let Some(c) = all.iter().find(|c| c.id == key || c.name == key) {
            return Ok(c.clone());
        }
        let matches: Vec<&Container> = all.iter().filter(|c| c.id.starts_with(key)).collect();
        match matches.as_slice() {
            [one] if !key.is_empty() => Ok((*one).clone()),
            [] | [_] => Err(Error::NotFound(key.to_string())),
            _ => Err(Error::InvalidInput(format!(
                "Multiple IDs found with provided prefix: {key}"
            ))),
        }
    }
}

/// `bytes` random bytes from the kernel, as hex: daemon, container and exec ids.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // SAFETY: getrandom fills the buffer we pass, of the length we pass.
    unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_id_is_stable() {
        let dir = std::env::temp_dir().join(format!("polis-md-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = Metadata::open(&dir).unwrap().daemon_id().unwrap();
        let again = Metadata::open(&dir).unwrap().daemon_id().unwrap();
        assert_eq!(first, again);
        assert_eq!(first.len(), 32);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

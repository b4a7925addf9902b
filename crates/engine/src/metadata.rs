//! The daemon's metadata store (redb): one file under the root, opened once by the
//! daemon that holds the root lock.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};

use crate::error::{Error, Result};

const DAEMON: TableDefinition<&str, &str> = TableDefinition::new("daemon");

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
        let id = new_id();
        let write = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = write.open_table(DAEMON).map_err(|e| self.err(e))?;
            table.insert("id", id.as_str()).map_err(|e| self.err(e))?;
        }
        write.commit().map_err(|e| self.err(e))?;
        Ok(id)
    }
}

/// 32 random hex digits from the kernel.
fn new_id() -> String {
    let mut buf = [0u8; 16];
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

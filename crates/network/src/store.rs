//! The networks of a daemon, kept in redb: each change to a network (an endpoint attached,
//! an address given or freed) is one write transaction, so allocations survive a crash or
//! a restart exactly as they were and no address is ever handed out twice.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::{Error, Result};
use crate::record::Network;

/// Network id → the network (JSON).
const NETWORKS: TableDefinition<&str, &str> = TableDefinition::new("networks");

pub struct NetworkStore {
    db: Database,
}

impl NetworkStore {
    /// Opens (creating if needed) `root/networks.redb`.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| Error::db("create directory", e))?;
        let db = Database::create(root.join("networks.redb")).map_err(|e| Error::db("open", e))?;
        let tx = db.begin_write().map_err(|e| Error::db("begin", e))?;
        tx.open_table(NETWORKS)
            .map_err(|e| Error::db("open table", e))?;
        tx.commit().map_err(|e| Error::db("commit", e))?;
        Ok(NetworkStore { db })
    }

    /// Every network, in name order.
    pub fn list(&self) -> Result<Vec<Network>> {
        let tx = self.db.begin_read().map_err(|e| Error::db("begin", e))?;
        let table = tx
            .open_table(NETWORKS)
            .map_err(|e| Error::db("open table", e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| Error::db("read", e))? {
            let (_, v) = row.map_err(|e| Error::db("read", e))?;
            out.push(decode(v.value())?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The network `name_or_id` designates, as Docker looks networks up: full id, exact
    /// name, then a unique id prefix.
    pub fn find(&self, name_or_id: &str) -> Result<Network> {
        let all = self.list()?;
        if let Some(n) = all.iter().find(|n| n.id == name_or_id) {
            return Ok(n.clone());
        }
        if let Some(n) = all.iter().find(|n| n.name == name_or_id) {
            return Ok(n.clone());
        }
        let matching: Vec<&Network> = all
            .iter()
            .filter(|n| !name_or_id.is_empty() && n.id.starts_with(name_or_id))
            .collect();
        match matching.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::NotFound(format!("network {name_or_id} not found"))),
            _ => Err(Error::Conflict(format!(
                "network {name_or_id} is ambiguous ({} matches found based on ID prefix)",
                matching.len()
            ))),
        }
    }

    /// Adds a network; refused if its name is taken.
    pub fn create(&self, network: &Network) -> Result<()> {
        let tx = self.db.begin_write().map_err(|e| Error::db("begin", e))?;
        {
            let mut table = tx
                .open_table(NETWORKS)
                .map_err(|e| Error::db("open table", e))?;
            for row in table.iter().map_err(|e| Error::db("read", e))? {
                let (_, v) = row.map_err(|e| Error::db("read", e))?;
                if decode(v.value())?.name == network.name {
                    return Err(Error::Conflict(format!(
                        "network with name {} already exists",
                        network.name
                    )));
                }
            }
            table
                .insert(network.id.as_str(), encode(network)?.as_str())
                .map_err(|e| Error::db("write", e))?;
        }
        tx.commit().map_err(|e| Error::db("commit", e))
    }

    /// Changes network `id` with `change`, all or nothing: when `change` fails, nothing
    /// is written.
    pub fn update<T>(&self, id: &str, change: impl FnOnce(&mut Network) -> Result<T>) -> Result<T> {
        let tx = self.db.begin_write().map_err(|e| Error::db("begin", e))?;
        let out = {
            let mut table = tx
                .open_table(NETWORKS)
                .map_err(|e| Error::db("open table", e))?;
            let mut network = match table.get(id).map_err(|e| Error::db("read", e))? {
                Some(v) => decode(v.value())?,
                None => return Err(Error::NotFound(format!("network {id} not found"))),
            };
            let out = change(&mut network)?;
            table
                .insert(id, encode(&network)?.as_str())
                .map_err(|e| Error::db("write", e))?;
            out
        };
        tx.commit().map_err(|e| Error::db("commit", e))?;
        Ok(out)
    }

    /// Deletes network `id` (nothing if it is gone already).
    pub fn remove(&self, id: &str) -> Result<()> {
        let tx = self.db.begin_write().map_err(|e| Error::db("begin", e))?;
        {
            let mut table = tx
                .open_table(NETWORKS)
                .map_err(|e| Error::db("open table", e))?;
            table.remove(id).map_err(|e| Error::db("write", e))?;
        }
        tx.commit().map_err(|e| Error::db("commit", e))
    }
}

fn encode(n: &Network) -> Result<String> {
    serde_json::to_string(n).map_err(|e| Error::db("encode", e))
}

fn decode(s: &str) -> Result<Network> {
    serde_json::from_str(s).map_err(|e| Error::db("decode", e))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ipam::{AddressPool, Allocations};
    use crate::record::{Endpoint, Family};

    fn network(id: &str, name: &str) -> Network {
        Network {
            id: id.into(),
            name: name.into(),
            driver: "bridge".into(),
            created: String::new(),
            bridge: None,
            internal: false,
            attachable: false,
            enable_ipv6: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            ipv4: Some(Family {
                pool: AddressPool::new("10.8.0.0/24".parse().unwrap(), None, None).unwrap(),
                allocations: Allocations::default(),
                auto: false,
            }),
            ipv6: None,
            endpoints: BTreeMap::new(),
        }
    }

    #[test]
    fn allocations_survive_reopening_and_failed_updates_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = NetworkStore::open(dir.path()).unwrap();
        store.create(&network("abc123", "front")).unwrap();
        let e = store.create(&network("def456", "front")).unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        let ep = Endpoint {
            id: "e1".into(),
            container: "c1".into(),
            ..Endpoint::default()
        };
        let got = store.update("abc123", |n| n.attach(ep.clone())).unwrap();
        assert_eq!(got.ipv4, Some("10.8.0.2".parse().unwrap()));
        let failed: Result<()> = store.update("abc123", |n| {
            n.detach("c1");
            Err(Error::Conflict("changed my mind".into()))
        });
        assert!(failed.is_err());
        drop(store);

        let store = NetworkStore::open(dir.path()).unwrap();
        let n = store.find("front").unwrap();
        assert!(n.endpoints.contains_key("c1"), "{n:?}");
        let next = store
            .update(&n.id, |n| {
                n.attach(Endpoint {
                    id: "e2".into(),
                    container: "c2".into(),
                    ..Endpoint::default()
                })
            })
            .unwrap();
        assert_eq!(next.ipv4, Some("10.8.0.3".parse().unwrap()));
        assert_eq!(store.find("abc").unwrap().id, "abc123");
        assert!(store.find("zzz").is_err());
        store.remove("abc123").unwrap();
        assert!(store.list().unwrap().is_empty());
    }
}

//! Removes the layer snapshots no image needs, after images are removed or pruned and at
//! daemon start (what a crash left). A snapshot stays while an image has its chain ID, a
//! container's root file system sits on it, a kept snapshot sits on it, or a pull in
//! progress made it or relies on it (its image is not recorded yet).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use polis_image::ImageStore;
use polis_storage::Snapshotter;

use crate::containers::Layout;
use crate::error::{Error, Result};

/// Collections hold it exclusively; a container create holds it shared from its first
/// layer commit to its mount, so no snapshot goes between the two.
static SNAPSHOTS: RwLock<()> = RwLock::new(());

/// Held by a create while it commits and prepares its snapshots.
pub fn create_guard() -> RwLockReadGuard<'static, ()> {
    SNAPSHOTS.read().unwrap_or_else(|p| p.into_inner())
}

/// Chain IDs pulls in progress made or rely on, with how many pulls do.
static PINNED: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

fn pinned() -> std::sync::MutexGuard<'static, BTreeMap<String, usize>> {
    PINNED.lock().unwrap_or_else(|p| p.into_inner())
}

/// The snapshots one pull pins, until it is dropped (its image recorded, or the pull
/// failed). A chain is pinned before it is looked for or made, so a collection never
/// sees a pull's snapshot unpinned.
#[derive(Debug, Default)]
pub struct Pins {
    chains: Mutex<Vec<String>>,
}

impl Pins {
    pub fn pin(&self, chain: &str) {
        *pinned().entry(chain.to_string()).or_insert(0) += 1;
        self.chains
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(chain.to_string());
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let chains = std::mem::take(self.chains.get_mut().unwrap_or_else(|p| p.into_inner()));
        let mut all = pinned();
        for chain in chains {
            if let Some(n) = all.get_mut(&chain) {
                *n -= 1;
                if *n == 0 {
                    all.remove(&chain);
                }
            }
        }
    }
}

/// What a collection removed, and what it could not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Chain IDs of the removed snapshots, in removal order (tops first).
    pub removed: Vec<String>,
    /// Bytes the removed snapshots took on disk.
    pub bytes: u64,
    /// One line per snapshot that could not be removed; the others still were.
    pub errors: Vec<String>,
}

/// Removes every snapshot whose chain ID no image in `images` has and that nothing sits
/// on; going on past failures, which it reports.
pub fn remove_unused(layout: &Layout, images: &ImageStore) -> Result<Report> {
    let _guard = SNAPSHOTS.write().unwrap_or_else(|p| p.into_inner());
    let snapshots = Snapshotter::new(layout.snapshots()).map_err(Error::Storage)?;
    let keep: HashSet<String> = images
        .chain_ids_in_use()
        .map_err(Error::Image)?
        .into_iter()
        .map(|d| d.to_string())
        .collect();
    let mut report = Report::default();
    let mut failed = HashSet::new();
    // Removing a top frees its parent for the next round.
    loop {
        let mut progress = false;
        for info in snapshots.list().map_err(Error::Storage)? {
            let chain = info.chain_id;
            if keep.contains(&chain)
                || !info.containers.is_empty()
                || !info.children.is_empty()
                || failed.contains(&chain)
                || pinned().contains_key(&chain)
            {
                continue;
            }
            let bytes = snapshots.usage(&chain).map(|u| u.bytes).unwrap_or(0);
            match snapshots.remove_snapshot(&chain) {
                Ok(()) => {
                    report.bytes += bytes;
                    report.removed.push(chain);
                    progress = true;
                }
                Err(e) => {
                    report.errors.push(format!("remove snapshot {chain}: {e}"));
                    failed.insert(chain);
                }
            }
        }
        if !progress {
            return Ok(report);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-file layer tar and its diff ID.
    fn layer(name: &str) -> (Vec<u8>, String) {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, &b"hi"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let digest = polis_image::Digest::of(&data).to_string();
        (data, digest)
    }

    #[test]
    fn pinned_snapshots_outlive_a_collection() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout {
            root: dir.path().join("root"),
            run_root: dir.path().join("run"),
            init_path: dir.path().join("init"),
            unpack: Default::default(),
        };
        let images = ImageStore::open(&layout.root.join("images")).unwrap();
        let snapshots = layout.snapshotter().unwrap();
        let (tar, diff_id) = layer("pinned-file");
        let pins = Pins::default();
        let chain = polis_storage::chain_id(None, &diff_id);
        pins.pin(&chain);
        snapshots
            .commit_layer_verified(None, &diff_id, &tar[..])
            .unwrap();
        let report = remove_unused(&layout, &images).unwrap();
        assert!(!report.removed.contains(&chain), "{report:?}");
        assert!(snapshots.has(&chain));
        drop(pins);
        let report = remove_unused(&layout, &images).unwrap();
        assert!(report.removed.contains(&chain), "{report:?}");
        assert!(!snapshots.has(&chain));
    }
}

//! Removes the layer snapshots no image needs, after images are removed or pruned and at
//! daemon start (what a crash left). A snapshot stays while an image has its chain ID, a
//! container's root file system sits on it, or a kept snapshot sits on it.

use std::collections::HashSet;
use std::sync::{RwLock, RwLockReadGuard};

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

//! Pins on the blobs an unfinished ingest (pull, push, import, load, commit, save) writes
//! or relies on. Collection (`rmi`, prune, `gc`) skips pinned blobs instead of waiting for
//! the ingest; when the ingest ends its pins go, and those of its blobs that no image then
//! references are collected.
//!
//! Why this is safe: a blob is deleted only while the store's GC lock is held, when no
//! index record references it and, checked under the pin table's lock held across the
//! delete, nothing pins it. An ingest pins a digest *before* it looks for the blob or makes
//! it appear, and lets the pin go only under the GC lock, once its image is indexed (or it
//! failed). So either the collector saw the pin, or the ingest sees the blob gone.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Mutex, MutexGuard};

use crate::content::{BlobWriter, Ingested};
use crate::digest::Digest;
use crate::error::Result;
use crate::store::{GcReport, ImageStore};

/// How many leases pin each digest.
#[derive(Debug, Default)]
pub(crate) struct Pins(Mutex<HashMap<Digest, usize>>);

impl Pins {
    /// The table, locked: deletions hold it while they check and unlink.
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<Digest, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, d: &Digest) {
        *self.lock().entry(d.clone()).or_default() += 1;
    }

    /// Drops one pin of each digest. The caller holds the GC lock.
    pub(crate) fn remove(&self, digests: &HashSet<Digest>) {
        let mut table = self.lock();
        for d in digests {
            if let Some(n) = table.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    table.remove(d);
                }
            }
        }
    }

    /// Whether any lease pins `d`.
    pub fn is_pinned(&self, d: &Digest) -> bool {
        self.lock().contains_key(d)
    }
}

/// The pins of one ingest; see the module documentation. Dropping a lease without
/// [`Lease::release`] releases it too, ignoring errors.
pub struct Lease<'a> {
    store: &'a ImageStore,
    held: Mutex<HashSet<Digest>>,
}

impl<'a> Lease<'a> {
    pub(crate) fn new(store: &'a ImageStore) -> Self {
        Lease {
            store,
            held: Mutex::new(HashSet::new()),
        }
    }

    /// Pins `d` (once per lease, however often it is asked).
    pub fn pin(&self, d: &Digest) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.insert(d.clone()) {
            self.store.pins.add(d);
        }
    }

    pub fn pin_all<'d>(&self, digests: impl IntoIterator<Item = &'d Digest>) {
        for d in digests {
            self.pin(d);
        }
    }

    /// Streams `reader` into the content store, the blob pinned before it can be seen.
    pub fn ingest(&self, reader: &mut dyn Read, expected: Option<&Digest>) -> Result<Ingested> {
        if let Some(d) = expected {
            self.pin(d);
        }
        self.store
            .content()
            .ingest_pinned(reader, expected, &|d| self.pin(d))
    }

    /// Stores a small in-memory blob, pinned.
    pub fn ingest_bytes(&self, data: &[u8]) -> Result<Ingested> {
        let d = Digest::of(data);
        self.pin(&d);
        self.store.content().ingest(&mut &data[..], Some(&d))
    }

    /// Commits a blob written through [`crate::ContentStore::writer`], pinned.
    pub fn commit(&self, writer: BlobWriter<'_>, expected: Option<&Digest>) -> Result<Ingested> {
        writer.commit_pinned(expected, &|d| self.pin(d))
    }

    /// Lets the pins go and collects those of the blobs no image references.
    pub fn release(mut self) -> Result<GcReport> {
        self.release_held()
    }

    fn release_held(&mut self) -> Result<GcReport> {
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|p| p.into_inner()));
        if held.is_empty() {
            return Ok(GcReport::default());
        }
        self.store.release_pins(&held)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let _ = self.release_held();
    }
}

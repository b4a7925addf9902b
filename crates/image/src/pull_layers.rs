//! The layers of a pull: downloaded up to [`PARALLEL_DOWNLOADS`] at a time, each unpacked
//! into a staging area as soon as its blob is there (beside the other downloads and
//! unpacks; the unpack checks the diff ID, so the blob is decompressed once), and made
//! snapshots bottom first. Progress follows dockerd's order: each layer's download
//! messages as they happen, then "Extracting" and "Pull complete" layer after layer,
//! bottom first; a layer unpacked before the ones below it reports when its turn comes.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};

use crate::archive::layer_media_type;
use crate::digest::Digest;
use crate::error::Result;
use crate::pull::{Descriptor, PullProgress, Remote};
use crate::store::{chain_ids_of, ImageStore, LayerInfo, LayerRecord};
use crate::unpacker::{LayerUnpacker, StagedLayer};

/// Layers downloaded at once, as dockerd's default `max-concurrent-downloads`.
const PARALLEL_DOWNLOADS: usize = 3;
/// How often "Extracting" progress is reported, in bytes of the (compressed) blob.
const PROGRESS_STEP: u64 = 512 * 1024;

/// A verified layer: its record and, when it was unpacked, its staged files.
type Verified = (LayerRecord, Option<Box<dyn StagedLayer>>);

/// What the workers tell the pull's thread.
enum Event {
    Progress(PullProgress),
    Created(Digest),
    /// Bytes of layer `i`'s blob unpacked so far, of its size.
    Extracting(usize, u64, u64),
    /// Layer `i` verified: unpacked and waiting to be committed, or checked (its snapshot
    /// exists already).
    Ready(usize, Result<Verified>),
}

/// Where the in-order part of a pull stands: layers below `next` are snapshots.
struct InOrder {
    next: usize,
    /// The last "Extracting" progress of a layer above `next`, not shown yet.
    held: Vec<Option<(u64, u64)>>,
    ready: Vec<Option<Verified>>,
    records: Vec<Option<LayerRecord>>,
    /// Snapshots this pull made, bottom first.
    made: Vec<Digest>,
}

impl ImageStore {
    /// Downloads the `missing` layers and has every layer whose snapshot does not exist
    /// unpacked; layers with a snapshot are checked against their diff ID instead. Returns
    /// the records and the snapshots made (bottom first); on error, removes those.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fetch_layers(
        &self,
        remote: &Remote<'_>,
        layers: &[Descriptor],
        missing: &[bool],
        diff_ids: &[Digest],
        unpacker: &dyn LayerUnpacker,
        progress: &mut dyn FnMut(PullProgress),
        created: &mut HashSet<Digest>,
    ) -> Result<(Vec<LayerRecord>, Vec<Digest>)> {
        let chains = chain_ids_of(diff_ids);
        let unpack: Vec<bool> = chains.iter().map(|c| !unpacker.has(c)).collect();
        let next = AtomicUsize::new(0);
        let abort = AtomicBool::new(false);
        let n = layers.len();
        let mut state = InOrder {
            next: 0,
            held: vec![None; n],
            ready: (0..n).map(|_| None).collect(),
            records: vec![None; n],
            made: Vec::new(),
        };
        let mut first_error = None;
        // Downloaded layers wait here for an unpacker.
        let (jobs, queue) = mpsc::channel::<usize>();
        let queue = Mutex::new(queue);
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<Event>();
            let unpackers = std::thread::available_parallelism().map_or(2, |p| p.get());
            for _ in 0..unpackers.min(unpack.iter().filter(|u| **u).count()) {
                let (tx, queue, abort) = (tx.clone(), &queue, &abort);
                scope.spawn(move || loop {
                    let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(i) = job else { break };
                    if abort.load(Ordering::Relaxed) {
                        continue;
                    }
                    let mut report = |done, total| {
                        let _ = tx.send(Event::Extracting(i, done, total));
                    };
                    let result = self
                        .stage(&layers[i], &diff_ids[i], unpacker, abort, &mut report)
                        .map(|(record, staged)| (record, Some(staged)));
                    let _ = tx.send(Event::Ready(i, result));
                });
            }
            for _ in 0..PARALLEL_DOWNLOADS.min(n) {
                let (tx, jobs) = (tx.clone(), jobs.clone());
                let (next, abort, unpack) = (&next, &abort, &unpack);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || abort.load(Ordering::Relaxed) {
                        break;
                    }
                    let l = &layers[i];
                    let fetched = if missing[i] {
                        let mut report = |p| {
                            let _ = tx.send(Event::Progress(p));
                        };
                        self.fetch_blob(remote, l, "layer", Some(&mut report), Some(abort))
                            .map(|ingested| {
                                if ingested.created {
                                    let _ = tx.send(Event::Created(ingested.digest));
                                }
                                report(PullProgress::new(Some(l.short()), "Verifying Checksum"));
                                report(PullProgress::new(Some(l.short()), "Download complete"));
                            })
                    } else {
                        Ok(())
                    };
                    match fetched {
                        Ok(()) if unpack[i] => {
                            let _ = jobs.send(i);
                        }
                        // Not unpacked: the blob is read through for its diff ID instead.
                        Ok(()) => {
                            let result = self.check_layer(&l.digest, &diff_ids[i]);
                            let _ = tx.send(Event::Ready(i, result.map(|r| (r, None))));
                        }
                        Err(e) => {
                            let _ = tx.send(Event::Ready(i, Err(e)));
                        }
                    }
                });
            }
            drop((tx, jobs));
            for event in rx {
                let failed = first_error.is_some();
                let outcome = match event {
                    Event::Progress(p) => {
                        progress(p);
                        Ok(())
                    }
                    Event::Created(d) => {
                        created.insert(d);
                        Ok(())
                    }
                    Event::Extracting(..) | Event::Ready(_, Ok(_)) if failed => Ok(()),
                    Event::Extracting(i, done, total) if i == state.next => {
                        progress(extracting(&layers[i], done, total));
                        Ok(())
                    }
                    Event::Extracting(i, done, total) => {
                        state.held[i] = Some((done, total));
                        Ok(())
                    }
                    Event::Ready(i, Ok(ready)) => {
                        state.ready[i] = Some(ready);
                        state.advance(layers, missing, &chains, progress)
                    }
                    Event::Ready(_, Err(e)) => Err(e),
                };
                if let Err(e) = outcome {
                    abort.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
        });
        if let Some(e) = first_error {
            // Staged layers went with `state.ready`; the snapshots go now.
            let made: Vec<Digest> = state.made.into_iter().rev().collect();
            unpacker.discard(&made);
            return Err(e);
        }
        let records = state
            .records
            .into_iter()
            .map(|r| r.expect("every layer verified"))
            .collect();
        Ok((records, state.made))
    }

    /// Unpacks layer `l` through `unpacker`, reporting how much of its blob was read;
    /// stops once `abort` is set.
    fn stage(
        &self,
        l: &Descriptor,
        diff_id: &Digest,
        unpacker: &dyn LayerUnpacker,
        abort: &AtomicBool,
        report: &mut dyn FnMut(u64, u64),
    ) -> Result<(LayerRecord, Box<dyn StagedLayer>)> {
        let compression = self.layer_compression(&l.digest)?;
        let path = self.content.path(&l.digest);
        let file = self.content.open_blob(&l.digest)?;
        let size = self.content.size(&l.digest)?;
        let info = LayerInfo {
            path,
            media_type: layer_media_type(compression).to_string(),
            digest: l.digest.clone(),
            diff_id: diff_id.clone(),
            size,
        };
        let mut blob = Counted {
            inner: file,
            done: 0,
            reported: 0,
            total: size,
            abort,
            report,
        };
        let staged = unpacker.stage(&info, &mut blob)?;
        let record = LayerRecord {
            digest: info.digest,
            media_type: info.media_type,
            size,
            diff_id: info.diff_id,
            uncompressed_size: staged.tar_bytes(),
        };
        Ok((record, staged))
    }
}

impl InOrder {
    /// Completes, bottom first, the layers that are ready: shows their held "Extracting"
    /// progress, commits their snapshot and reports "Pull complete".
    fn advance(
        &mut self,
        layers: &[Descriptor],
        missing: &[bool],
        chains: &[Digest],
        progress: &mut dyn FnMut(PullProgress),
    ) -> Result<()> {
        while let Some((record, staged)) = self.ready.get_mut(self.next).and_then(Option::take) {
            let i = self.next;
            let l = &layers[i];
            if let Some((done, total)) = self.held[i].take() {
                progress(extracting(l, done, total));
            }
            let extracted = staged.is_some();
            if let Some(staged) = staged {
                let parent = i.checked_sub(1).map(|p| &chains[p]);
                let (chain, made) = staged.commit(parent)?;
                debug_assert_eq!(chain, chains[i]);
                if made {
                    self.made.push(chain);
                }
            }
            // A layer that was here already said so ("Already exists") at the start.
            if extracted || missing[i] {
                progress(PullProgress::new(Some(l.short()), "Pull complete"));
            }
            self.records[i] = Some(record);
            self.next += 1;
            // The next layer's unpack may be under way: what it did so far shows now.
            if let Some((done, total)) = self.held.get_mut(self.next).and_then(Option::take) {
                progress(extracting(&layers[self.next], done, total));
            }
        }
        Ok(())
    }
}

fn extracting(l: &Descriptor, done: u64, total: u64) -> PullProgress {
    PullProgress {
        progress: Some((done, total)),
        ..PullProgress::new(Some(l.short()), "Extracting")
    }
}

/// A layer blob as it is unpacked: reports how far, and fails once the pull is aborted.
struct Counted<'a> {
    inner: File,
    done: u64,
    reported: u64,
    total: u64,
    abort: &'a AtomicBool,
    report: &'a mut dyn FnMut(u64, u64),
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.abort.load(Ordering::Relaxed) {
            return Err(io::Error::other("another layer of this pull failed"));
        }
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if n > 0 && (self.done - self.reported >= PROGRESS_STEP || self.done == self.total) {
            self.reported = self.done;
            (self.report)(self.done, self.total);
        }
        Ok(n)
    }
}

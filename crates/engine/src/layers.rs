//! An image's layers unpacked into snapshots keyed by chain ID: at pull, where a hostile
//! layer is refused before the image exists (with Docker's "Extracting" progress), and
//! at create, for images that came in without a pull (load, import, commit).

use std::io::Read;

use polis_image::{LayerInfo, LayerUnpacker, PullProgress, UndoUnpack};
use polis_storage::Snapshotter;

use crate::containers::Layout;
use crate::error::{Error, Result};

/// How often "Extracting" progress is reported, in bytes of the (compressed) blob.
const PROGRESS_STEP: u64 = 512 * 1024;

/// What an unpack reports about layer `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Bytes of the blob read so far, of its size.
    Extracting(u64, u64),
    /// The layer has its snapshot; `extracted` when this unpack made it.
    Done { extracted: bool },
}

/// Unpacks the layers that have no snapshot yet, bottom first, and returns the image's
/// top chain ID and the chain IDs of the snapshots it made. On error, those it made are
/// removed again.
pub fn unpack(
    snapshots: &Snapshotter,
    layers: &[LayerInfo],
    mut progress: Option<&mut dyn FnMut(usize, Event)>,
) -> Result<(String, Vec<String>)> {
    let mut made = Vec::new();
    let mut parent: Option<String> = None;
    for (i, layer) in layers.iter().enumerate() {
        let diff_id = layer.diff_id.as_str();
        let chain = polis_storage::chain_id(parent.as_deref(), diff_id);
        let extracted = !snapshots.has(&chain);
        if extracted {
            let result = std::fs::File::open(&layer.path)
                .map_err(|e| Error::io("open", &layer.path, e))
                .and_then(|blob| {
                    let reader = Counted {
                        inner: blob,
                        done: 0,
                        reported: 0,
                        total: layer.size,
                        report: progress
                            .as_mut()
                            .map(|p| move |d, t| p(i, Event::Extracting(d, t))),
                    };
                    snapshots
                        .commit_layer_verified(parent.as_deref(), diff_id, reader)
                        .map_err(|e| refused(layer, e))
                });
            match result {
                Ok(_) => made.push(chain.clone()),
                Err(e) => {
                    discard(snapshots, &made);
                    return Err(e);
                }
            }
        }
        if let Some(p) = progress.as_mut() {
            p(i, Event::Done { extracted });
        }
        parent = Some(chain);
    }
    let top = parent.ok_or_else(|| Error::InvalidInput("image has no layers".into()))?;
    Ok((top, made))
}

/// Removes snapshots made by an unpack that did not go through, top first.
fn discard(snapshots: &Snapshotter, made: &[String]) {
    for chain in made.iter().rev() {
        // One another image took on meanwhile (a container on it, a child) stays.
        let _ = snapshots.remove_snapshot(chain);
    }
}

/// Names the layer in a storage error: which blob, then which entry and why.
fn refused(layer: &LayerInfo, e: polis_storage::Error) -> Error {
    use polis_storage::Error as E;
    let hint = match &e {
        E::TooLarge(m) if m.contains("exceeds the limit") => {
            " (max-layer-size in the daemon config)"
        }
        E::Entry { reason, .. } if reason.contains("device nodes are not allowed") => {
            " (layer-device-nodes in the daemon config)"
        }
        _ => "",
    };
    let why = match e {
        E::Layer(m) | E::TooLarge(m) => m,
        other => other.to_string(),
    };
    Error::Layer(format!(
        "failed to register layer {}: {why}{hint}",
        layer.digest
    ))
}

/// The blob as it is read, reporting how far.
struct Counted<R, F> {
    inner: R,
    done: u64,
    reported: u64,
    total: u64,
    report: Option<F>,
}

impl<R: Read, F: FnMut(u64, u64)> Read for Counted<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if let Some(report) = self.report.as_mut() {
            if n > 0 && (self.done - self.reported >= PROGRESS_STEP || self.done == self.total) {
                self.reported = self.done;
                report(self.done, self.total);
            }
        }
        Ok(n)
    }
}

/// Unpacks a pull's layers into the engine's snapshots.
pub struct PullUnpacker<'a> {
    pub layout: &'a Layout,
}

impl LayerUnpacker for PullUnpacker<'_> {
    fn unpack(
        &self,
        layers: &[LayerInfo],
        downloaded: &[bool],
        progress: &mut dyn FnMut(PullProgress),
    ) -> polis_image::Result<UndoUnpack> {
        let failed = |e: Error| polis_image::Error::Unpack(e.to_string());
        let snapshots = self.layout.snapshotter().map_err(failed)?;
        let mut report = |i: usize, event: Event| {
            let short = &layers[i].digest.hex()[..12];
            let p = match event {
                Event::Extracting(done, total) => PullProgress {
                    progress: Some((done, total)),
                    ..PullProgress::new(Some(short), "Extracting")
                },
                Event::Done { extracted } if extracted || downloaded[i] => {
                    PullProgress::new(Some(short), "Pull complete")
                }
                // A layer that was here already said so ("Already exists") at the start.
                Event::Done { .. } => return,
            };
            progress(p);
        };
        let (_, made) = unpack(&snapshots, layers, Some(&mut report)).map_err(failed)?;
        Ok(Box::new(move || discard(&snapshots, &made)))
    }
}

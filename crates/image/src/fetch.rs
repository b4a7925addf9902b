//! Downloading one blob of a pull, resiliently: transient failures (refused or reset
//! connections, cut streams, timeouts, HTTP 5xx and 429) are retried with a growing
//! back-off, a cut stream is resumed with a `Range` request into the same temporary file,
//! non-distributable (foreign) layers come from their descriptor's URLs when the registry
//! lacks them, and concurrent pulls download a blob once: the others wait for it.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::{BlobResponse, SizedStream};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};

use crate::content::{BlobWriter, Ingested};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::pull::{Descriptor, PullProgress, Remote};
use crate::registry;
use crate::store::ImageStore;

/// The pause before each retry of a failed download. Docker waits 5 s, 10 s, 15 s…; the
/// steps here are shorter but grow the same way, and stop at the last one.
pub(crate) const RETRY_DELAYS: [Duration; 4] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];
/// How often "Downloading" progress is reported.
const PROGRESS_STEP: u64 = 512 * 1024;
/// How often a waiting download looks at its pull's abort flag.
const POLL: Duration = Duration::from_millis(100);

/// Layer media types whose blob a registry need not hold: it comes from the URLs of
/// the descriptor. They are never pushed.
pub(crate) const FOREIGN_LAYER_TYPES: &[&str] = &[
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

/// Why one attempt failed: worth another try, or not.
#[derive(Debug)]
pub(crate) enum Failure {
    Transient(String),
    Permanent(Error),
}

impl Failure {
    /// Sorts an `oci-client` error: transport failures and 5xx/429 answers are transient.
    pub(crate) fn classify(
        e: OciDistributionError,
        permanent: impl FnOnce(OciDistributionError) -> Error,
    ) -> Failure {
        Failure::sort(e, true, permanent)
    }

    /// As `classify`, but a registry that refuses connections is not waited for: the
    /// first request of a pull fails at once when nothing listens (as Docker's does),
    /// and a dead mirror is passed over without delay.
    pub(crate) fn classify_first(
        e: OciDistributionError,
        permanent: impl FnOnce(OciDistributionError) -> Error,
    ) -> Failure {
        Failure::sort(e, false, permanent)
    }

    fn sort(
        e: OciDistributionError,
        retry_connect: bool,
        permanent: impl FnOnce(OciDistributionError) -> Error,
    ) -> Failure {
        // A certificate refused (either side) does not mend by trying again, and its
        // message is the one worth showing.
        let refused = registry::tls_refusal(&registry::with_causes(&e));
        let transient = match &e {
            _ if refused => false,
            OciDistributionError::RequestError(r) if r.is_connect() && !retry_connect => false,
            OciDistributionError::RequestError(r) => {
                !r.is_builder() && status_transient(r.status())
            }
            OciDistributionError::IoError(_) => true,
            OciDistributionError::ServerError { code, .. } => code_transient(*code),
            OciDistributionError::RegistryError { envelope, .. } => {
                !envelope.errors.is_empty()
                    && envelope
                        .errors
                        .iter()
                        .all(|err| matches!(err.code, OciErrorCode::Toomanyrequests))
            }
            _ => false,
        };
        if transient {
            Failure::Transient(registry::with_causes(&e))
        } else {
            Failure::Permanent(permanent(e))
        }
    }
}

fn code_transient(code: u16) -> bool {
    code >= 500 || code == 429 || code == 408
}

fn status_transient(status: Option<reqwest::StatusCode>) -> bool {
    status.is_none_or(|s| code_transient(s.as_u16()))
}

/// Runs `attempt` until it succeeds, fails for good, or has failed transiently
/// `RETRY_DELAYS.len() + 1` times; waits the growing delays in between, reported as
/// Docker's "Retrying in N seconds" under `id` when there is `progress` (which each
/// attempt is lent too). `describe` words the final error from the number of attempts
/// and the last cause.
pub(crate) fn with_retries<T>(
    id: &str,
    mut progress: Option<&mut dyn FnMut(PullProgress)>,
    abort: Option<&AtomicBool>,
    mut attempt: impl FnMut(Option<&mut dyn FnMut(PullProgress)>) -> std::result::Result<T, Failure>,
    describe: impl Fn(usize, &str) -> Error,
) -> Result<T> {
    let mut tries = 0;
    loop {
        tries += 1;
        let why = match attempt(reborrow(&mut progress)) {
            Ok(v) => return Ok(v),
            Err(Failure::Permanent(e)) => return Err(e),
            Err(Failure::Transient(why)) => why,
        };
        let Some(delay) = RETRY_DELAYS.get(tries - 1) else {
            return Err(describe(tries, &why));
        };
        back_off(*delay, id, reborrow(&mut progress), abort).map_err(|()| describe(tries, &why))?;
    }
}

/// Lends the progress callback out for a shorter while.
fn reborrow<'a>(
    p: &'a mut Option<&mut dyn FnMut(PullProgress)>,
) -> Option<&'a mut dyn FnMut(PullProgress)> {
    match p {
        Some(f) => Some(&mut **f),
        None => None,
    }
}

/// Sleeps `delay`, counting down the whole seconds left as Docker shows them; stops early
/// (with an error) once `abort` is set.
fn back_off(
    delay: Duration,
    id: &str,
    mut progress: Option<&mut dyn FnMut(PullProgress)>,
    abort: Option<&AtomicBool>,
) -> std::result::Result<(), ()> {
    let end = Instant::now() + delay;
    let mut shown = None;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        if abort.is_some_and(|a| a.load(Ordering::Relaxed)) {
            return Err(());
        }
        let secs = left.as_secs_f64().ceil() as u64;
        if shown != Some(secs) {
            shown = Some(secs);
            if let Some(p) = progress.as_mut() {
                let s = if secs == 1 { "" } else { "s" };
                p(PullProgress::new(
                    Some(id),
                    format!("Retrying in {secs} second{s}"),
                ));
            }
        }
        std::thread::sleep(left.min(POLL));
    }
}

/// The blobs being downloaded right now, by any pull of this store.
#[derive(Default)]
pub(crate) struct InFlight {
    downloads: Mutex<HashMap<Digest, Arc<Download>>>,
}

/// One download in progress; waiters are woken when it ends (well or not).
#[derive(Default)]
struct Download {
    done: Mutex<bool>,
    ended: Condvar,
}

/// Whose turn it is to download a blob.
enum Turn<'a> {
    /// This caller downloads; the claim ends the download (for the waiters) when dropped.
    Mine(Claim<'a>),
    /// Another pull is downloading it.
    Wait(Arc<Download>),
}

struct Claim<'a> {
    table: &'a InFlight,
    digest: Digest,
    download: Arc<Download>,
}

impl InFlight {
    fn begin(&self, digest: &Digest) -> Turn<'_> {
        let mut map = self.downloads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = map.get(digest) {
            return Turn::Wait(d.clone());
        }
        let download = Arc::new(Download::default());
        map.insert(digest.clone(), download.clone());
        Turn::Mine(Claim {
            table: self,
            digest: digest.clone(),
            download,
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.table
            .downloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.digest);
        *self.download.done.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.download.ended.notify_all();
    }
}

impl Download {
    /// Waits for the download to end; false if `abort` was set first.
    fn wait(&self, abort: Option<&AtomicBool>) -> bool {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        while !*done {
            if abort.is_some_and(|a| a.load(Ordering::Relaxed)) {
                return false;
            }
            done = self
                .ended
                .wait_timeout(done, POLL)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

/// A blob's bytes as one source serves them.
struct Opened {
    stream: SizedStream,
    /// True when the stream starts at the requested offset (HTTP 206), false when it
    /// holds the whole blob.
    partial: bool,
}

impl ImageStore {
    /// Streams one blob into the content store, verifying its digest and size; stops
    /// early once `abort` is set (another download of the same pull failed). A blob
    /// another pull is downloading is waited for, then used as stored; if that download
    /// failed, this one is tried.
    pub(crate) fn fetch_blob(
        &self,
        remote: &Remote<'_>,
        desc: &Descriptor,
        what: &str,
        mut progress: Option<&mut dyn FnMut(PullProgress)>,
        abort: Option<&AtomicBool>,
    ) -> Result<Ingested> {
        let stored = || Ingested {
            digest: desc.digest.clone(),
            size: desc.size,
            created: false,
        };
        loop {
            match self.downloads.begin(&desc.digest) {
                Turn::Mine(_claim) => {
                    // Finished by another pull between our look and our claim.
                    if self.content.has(&desc.digest) {
                        return Ok(stored());
                    }
                    return self.download(remote, desc, what, progress, abort);
                }
                Turn::Wait(download) => {
                    if let Some(p) = progress.as_mut() {
                        p(PullProgress::new(Some(desc.short()), "Waiting"));
                    }
                    if !download.wait(abort) {
                        return Err(failed(
                            remote,
                            desc,
                            what,
                            &"another layer of this pull failed",
                        ));
                    }
                    if self.content.has(&desc.digest) {
                        return Ok(stored());
                    }
                }
            }
        }
    }

    /// Downloads `desc` into one temporary file over as many attempts as it takes.
    fn download(
        &self,
        remote: &Remote<'_>,
        desc: &Descriptor,
        what: &str,
        progress: Option<&mut dyn FnMut(PullProgress)>,
        abort: Option<&AtomicBool>,
    ) -> Result<Ingested> {
        let mut writer = self.content.writer()?;
        with_retries(
            desc.short(),
            progress,
            abort,
            |p| self.attempt(remote, desc, what, &mut writer, p, abort),
            |tries, why| {
                failed(
                    remote,
                    desc,
                    what,
                    &format_args!("{why} (gave up after {tries} attempts)"),
                )
            },
        )?;
        writer.commit(Some(&desc.digest)).map_err(|e| match e {
            Error::DigestMismatch { actual, .. } => Error::DigestMismatch {
                what: format!("{}: {what} {}", remote.shown, desc.digest),
                expected: desc.digest.to_string(),
                actual,
            },
            other => other,
        })
    }

    /// One attempt: from where the previous one stopped if the source allows it, else
    /// from the start.
    fn attempt(
        &self,
        remote: &Remote<'_>,
        desc: &Descriptor,
        what: &str,
        writer: &mut BlobWriter<'_>,
        mut progress: Option<&mut dyn FnMut(PullProgress)>,
        abort: Option<&AtomicBool>,
    ) -> std::result::Result<(), Failure> {
        let offset = writer.written();
        let opened = open(remote, desc, what, offset)?;
        if !opened.partial && offset > 0 {
            writer.restart().map_err(Failure::Permanent)?;
        }
        let mut stream = opened.stream;
        let mut done = writer.written();
        let mut reported = done;
        while let Some(chunk) = remote.rt.block_on(stream.next()) {
            let chunk = chunk.map_err(|e| stream_failure(remote, desc, what, e, done))?;
            if abort.is_some_and(|a| a.load(Ordering::Relaxed)) {
                return Err(Failure::Permanent(failed(
                    remote,
                    desc,
                    what,
                    &"another layer of this pull failed",
                )));
            }
            done += chunk.len() as u64;
            if done > desc.size {
                return Err(Failure::Permanent(failed(
                    remote,
                    desc,
                    what,
                    &format_args!(
                        "the registry sent more than the {} bytes the manifest announces",
                        desc.size
                    ),
                )));
            }
            writer.write_all(&chunk).map_err(|e| {
                Failure::Permanent(Error::io("write", self.content.path(&desc.digest), e))
            })?;
            if let Some(p) = progress.as_mut() {
                if done - reported >= PROGRESS_STEP || done == desc.size {
                    reported = done;
                    p(PullProgress {
                        id: Some(desc.short().to_string()),
                        status: "Downloading".into(),
                        progress: Some((done, desc.size)),
                    });
                }
            }
        }
        if done != desc.size {
            return Err(Failure::Permanent(failed(
                remote,
                desc,
                what,
                &format_args!(
                    "got {done} bytes where the manifest announces {}",
                    desc.size
                ),
            )));
        }
        Ok(())
    }
}

/// The blob from the registry or, for a foreign layer the registry lacks, from the first
/// of its URLs that serves it (without credentials: they are for the registry only).
fn open(
    remote: &Remote<'_>,
    desc: &Descriptor,
    what: &str,
    offset: u64,
) -> std::result::Result<Opened, Failure> {
    let from_registry = open_registry(remote, desc, offset);
    if desc.urls.is_empty() {
        return from_registry;
    }
    let mut last = match from_registry {
        Ok(o) => return Ok(o),
        Err(f) => f,
    };
    for url in &desc.urls {
        match open_url(remote, desc, what, url, offset) {
            Ok(o) => return Ok(o),
            Err(f) => last = f,
        }
    }
    Err(last)
}

fn open_registry(
    remote: &Remote<'_>,
    desc: &Descriptor,
    offset: u64,
) -> std::result::Result<Opened, Failure> {
    let oref = registry::oci_reference_at(&remote.registry, remote.reference, None);
    let digest = desc.digest.as_str();
    let shown = &remote.shown;
    let result = if offset == 0 {
        remote
            .rt
            .block_on(remote.client.pull_blob_stream(&oref, digest))
            .map(|stream| Opened {
                stream,
                partial: false,
            })
    } else {
        remote
            .rt
            .block_on(
                remote
                    .client
                    .pull_blob_stream_partial(&oref, digest, offset, None),
            )
            .map(|r| match r {
                BlobResponse::Full(stream) => Opened {
                    stream,
                    partial: false,
                },
                BlobResponse::Partial(stream) => Opened {
                    stream,
                    partial: true,
                },
            })
    };
    result.map_err(|e| Failure::classify(e, |e| registry::registry_error(shown, e)))
}

/// A plain GET of a foreign layer's URL (http or https), ranged when resuming.
fn open_url(
    remote: &Remote<'_>,
    desc: &Descriptor,
    what: &str,
    url: &str,
    offset: u64,
) -> std::result::Result<Opened, Failure> {
    let bad = |why: &dyn fmt::Display| {
        Failure::Permanent(failed(remote, desc, what, &format_args!("{url}: {why}")))
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(&"only http and https URLs are fetched"));
    }
    // reqwest's connector needs the runtime it will run on.
    let _runtime = remote.rt.enter();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| bad(&e))?;
    let mut request = client.get(parsed);
    if offset > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
    }
    let response = remote.rt.block_on(request.send()).map_err(|e| {
        let why = format!("{url}: {}", registry::with_causes(&e));
        if status_transient(e.status()) && !e.is_builder() {
            Failure::Transient(why)
        } else {
            bad(&registry::with_causes(&e))
        }
    })?;
    let status = response.status();
    let partial = match status {
        reqwest::StatusCode::OK => false,
        reqwest::StatusCode::PARTIAL_CONTENT if offset > 0 => true,
        s if code_transient(s.as_u16()) => {
            return Err(Failure::Transient(format!("{url}: status {s}")))
        }
        s => return Err(bad(&format_args!("status {s}"))),
    };
    Ok(Opened {
        stream: SizedStream {
            content_length: response.content_length(),
            digest_header_value: None,
            stream: Box::pin(response.bytes_stream().map_err(io::Error::other)),
        },
        partial,
    })
}

/// A stream that broke after `done` bytes: transient, unless it is `oci-client`
/// reporting that a whole blob did not match its digest.
fn stream_failure(
    remote: &Remote<'_>,
    desc: &Descriptor,
    what: &str,
    e: io::Error,
    done: u64,
) -> Failure {
    if let Some(DigestError::VerificationError { actual, .. }) =
        e.get_ref().and_then(|i| i.downcast_ref::<DigestError>())
    {
        return Failure::Permanent(Error::DigestMismatch {
            what: format!("{}: {what} {}", remote.shown, desc.digest),
            expected: desc.digest.to_string(),
            actual: actual.clone(),
        });
    }
    Failure::Transient(format!(
        "the stream broke after {done} of {} bytes: {}",
        desc.size,
        registry::with_causes(&e)
    ))
}

/// A download error naming the pull, the blob and the cause.
fn failed(remote: &Remote<'_>, desc: &Descriptor, what: &str, why: &dyn fmt::Display) -> Error {
    Error::Registry(format!(
        "{}: download of {what} {} failed: {why}",
        remote.shown, desc.digest
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_schedule_grows() {
        assert!(RETRY_DELAYS.windows(2).all(|w| w[0] < w[1]));
        // Short enough for a pull that keeps failing to end in seconds.
        assert!(RETRY_DELAYS.iter().sum::<Duration>() < Duration::from_secs(10));
    }

    #[test]
    fn retries_transient_failures_only() {
        let mut calls = 0;
        let r: Result<u32> = with_retries(
            "abc",
            None,
            None,
            |_| {
                calls += 1;
                if calls < 3 {
                    Err(Failure::Transient("cut".into()))
                } else {
                    Ok(7)
                }
            },
            |_, why| Error::Registry(why.into()),
        );
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls, 3);

        let mut calls = 0;
        let r: Result<u32> = with_retries(
            "abc",
            None,
            None,
            |_| {
                calls += 1;
                Err(Failure::Permanent(Error::BlobNotFound("x".into())))
            },
            |_, why| Error::Registry(why.into()),
        );
        assert!(matches!(r, Err(Error::BlobNotFound(_))));
        assert_eq!(calls, 1);
    }

    #[test]
    fn back_off_counts_down_and_stops_on_abort() {
        let mut seen = Vec::new();
        let mut calls = 0;
        let mut report = |p: PullProgress| seen.push(p.status);
        let r: Result<()> = with_retries(
            "abc",
            Some(&mut report),
            None,
            |_| {
                calls += 1;
                if calls == 1 {
                    Err(Failure::Transient("reset".into()))
                } else {
                    Ok(())
                }
            },
            |_, why| Error::Registry(why.into()),
        );
        r.unwrap();
        assert_eq!(seen, ["Retrying in 1 second"]);

        let abort = AtomicBool::new(true);
        let mut calls = 0;
        let r: Result<()> = with_retries(
            "abc",
            None,
            Some(&abort),
            |_| {
                calls += 1;
                Err(Failure::Transient("reset".into()))
            },
            |tries, why| Error::Registry(format!("{why} after {tries}")),
        );
        assert_eq!(r.unwrap_err().to_string(), "reset after 1");
        assert_eq!(calls, 1);
    }

    #[test]
    fn status_codes() {
        for c in [500, 502, 503, 429, 408] {
            assert!(code_transient(c), "{c}");
        }
        for c in [400, 401, 403, 404, 416] {
            assert!(!code_transient(c), "{c}");
        }
    }

    #[test]
    fn one_download_per_digest() {
        let table = InFlight::default();
        let d = Digest::of(b"layer");
        let Turn::Mine(claim) = table.begin(&d) else {
            panic!("first caller downloads")
        };
        let Turn::Wait(download) = table.begin(&d) else {
            panic!("second caller waits")
        };
        let other = Digest::of(b"other");
        assert!(matches!(table.begin(&other), Turn::Mine(_)));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| download.wait(None));
            std::thread::sleep(Duration::from_millis(50));
            drop(claim);
            assert!(waiter.join().unwrap());
        });
        assert!(matches!(table.begin(&d), Turn::Mine(_)));
        let abort = AtomicBool::new(true);
        let _claim = table.begin(&d);
        let Turn::Wait(download) = table.begin(&d) else {
            panic!("claimed")
        };
        assert!(!download.wait(Some(&abort)));
    }
}

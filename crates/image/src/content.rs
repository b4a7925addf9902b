//! Content-addressed blob store: `<root>/blobs/sha256/<hex>`. Blobs are hashed while they
//! are streamed into a temporary file in the same directory, fsynced, and renamed into
//! place only when the digest is the expected one, so a blob file is always complete.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, Result};

const TEMP_PREFIX: &str = ".ingest-";

/// The blob directory of an image store.
#[derive(Debug)]
pub struct ContentStore {
    dir: PathBuf,
}

/// What an ingest produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    pub digest: Digest,
    pub size: u64,
    /// False when a blob with this digest was already there.
    pub created: bool,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ContentStore {
    /// Opens (creating if needed) the blob store under `root`, removing temporary files
    /// left by an interrupted ingest.
    pub fn open(root: &Path) -> Result<Self> {
        let dir = root.join("blobs").join("sha256");
        fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        let store = ContentStore { dir };
        for name in store.entries()? {
            if name.starts_with(TEMP_PREFIX) {
                let p = store.dir.join(&name);
                fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
            }
        }
        Ok(store)
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn size(&self, digest: &Digest) -> Result<u64> {
        let p = self.path(digest);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::BlobNotFound(digest.to_string()))
            }
            Err(e) => Err(Error::io("stat", &p, e)),
        }
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.path(digest);
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobNotFound(digest.to_string()),
            _ => Error::io("open", &p, e),
        })
    }

    /// Reads a whole (small) blob: manifests and configs.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("read", self.path(digest), e))?;
        Ok(buf)
    }

    /// Removes a blob; a missing blob is not an error.
    pub fn delete(&self, digest: &Digest) -> Result<()> {
        let p = self.path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &p, e)),
        }
    }

    /// Every blob digest in the store.
    pub fn list(&self) -> Result<Vec<Digest>> {
        Ok(self
            .entries()?
            .into_iter()
            .filter_map(|n| Digest::from_hex(&n).ok())
            .collect())
    }

    /// Streams `reader` into the store. With `expected`, a different digest is refused and
    /// nothing is stored.
    pub fn ingest(&self, reader: &mut dyn Read, expected: Option<&Digest>) -> Result<Ingested> {
        self.ingest_pinned(reader, expected, &|_| {})
    }

    /// [`ContentStore::ingest`], with `pin` as in [`BlobWriter::commit_pinned`].
    pub fn ingest_pinned(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
        pin: &dyn Fn(&Digest),
    ) -> Result<Ingested> {
        let mut w = self.writer()?;
        io::copy(reader, &mut w).map_err(|e| Error::io("write", w.temp_path.clone(), e))?;
        w.commit_pinned(expected, pin)
    }

    /// Stores a small in-memory blob.
    pub fn ingest_bytes(&self, data: &[u8]) -> Result<Ingested> {
        self.ingest(&mut &data[..], Some(&Digest::of(data)))
    }

    /// A writer whose content becomes a blob on [`BlobWriter::commit`]; dropping it
    /// without committing removes the temporary file.
    pub fn writer(&self) -> Result<BlobWriter<'_>> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp_path = self
            .dir
            .join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .map_err(|e| Error::io("create", &temp_path, e))?;
        Ok(BlobWriter {
            store: self,
            inner: Some(HashingWriter::new(io::BufWriter::with_capacity(
                256 * 1024,
                file,
            ))),
            temp_path,
        })
    }

    fn entries(&self) -> Result<Vec<String>> {
        let rd = fs::read_dir(&self.dir).map_err(|e| Error::io("read directory", &self.dir, e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("read directory", &self.dir, e))?;
            if let Some(n) = entry.file_name().to_str() {
                out.push(n.to_string());
            }
        }
        Ok(out)
    }
}

/// A blob being written; see [`ContentStore::writer`].
pub struct BlobWriter<'a> {
    store: &'a ContentStore,
    inner: Option<HashingWriter<io::BufWriter<File>>>,
    temp_path: PathBuf,
}

impl BlobWriter<'_> {
    /// Bytes written (and hashed) so far: where a resumed download goes on from.
    pub fn written(&self) -> u64 {
        self.inner.as_ref().map_or(0, HashingWriter::written)
    }

    /// Drops everything written so far, for a download that starts over.
    pub fn restart(&mut self) -> Result<()> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(());
        };
        let buf = inner.get_mut();
        let rewind = |buf: &mut io::BufWriter<File>| -> io::Result<()> {
            buf.flush()?;
            buf.get_mut().set_len(0)?;
            buf.get_mut().seek(io::SeekFrom::Start(0)).map(|_| ())
        };
        rewind(buf).map_err(|e| Error::io("truncate", &self.temp_path, e))?;
        inner.reset();
        Ok(())
    }

    /// Verifies the digest, fsyncs and moves the blob into place.
    pub fn commit(self, expected: Option<&Digest>) -> Result<Ingested> {
        self.commit_pinned(expected, &|_| {})
    }

    /// [`BlobWriter::commit`], calling `pin` with the digest once it is known and before
    /// the blob can be seen in the store, so a collector never sees it unpinned.
    pub fn commit_pinned(
        mut self,
        expected: Option<&Digest>,
        pin: &dyn Fn(&Digest),
    ) -> Result<Ingested> {
        let Some(inner) = self.inner.take() else {
            return Err(Error::io(
                "commit",
                &self.temp_path,
                io::Error::other("already committed"),
            ));
        };
        let (buf, digest, size) = inner.finish();
        let file = buf
            .into_inner()
            .map_err(|e| Error::io("write", &self.temp_path, e.into_error()))?;
        if let Some(exp) = expected {
            if *exp != digest {
                return Err(Error::DigestMismatch {
                    what: "blob".to_string(),
                    expected: exp.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        pin(&digest);
        let target = self.store.path(&digest);
        if target.is_file() {
            // Same content already stored: keep the existing file.
            return Ok(Ingested {
                digest,
                size,
                created: false,
            });
        }
        file.sync_all()
            .map_err(|e| Error::io("fsync", &self.temp_path, e))?;
        drop(file);
        fs::rename(&self.temp_path, &target).map_err(|e| Error::io("rename", &target, e))?;
        let dir = &self.store.dir;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("fsync", dir, e))?;
        Ok(Ingested {
            digest,
            size,
            created: true,
        })
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("blob already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        // Uncommitted, refused or already-present content: the temp file goes.
        let _ = fs::remove_file(&self.temp_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_verifies_and_stores() {
        let tmp = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(tmp.path()).unwrap();
        let data = b"hello blob";
        let d = Digest::of(data);
        let r = cs.ingest(&mut &data[..], Some(&d)).unwrap();
        assert!(r.created);
        assert_eq!(r.size, data.len() as u64);
        assert!(cs.has(&d));
        assert_eq!(cs.size(&d).unwrap(), data.len() as u64);
        assert_eq!(cs.read_blob(&d).unwrap(), data);
        assert!(!cs.ingest(&mut &data[..], Some(&d)).unwrap().created);
        cs.delete(&d).unwrap();
        assert!(!cs.has(&d));
    }

    #[test]
    fn restart_forgets_what_was_written() {
        let tmp = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(tmp.path()).unwrap();
        let mut w = cs.writer().unwrap();
        w.write_all(b"half of something else").unwrap();
        assert_eq!(w.written(), 22);
        w.restart().unwrap();
        assert_eq!(w.written(), 0);
        w.write_all(b"the ").unwrap();
        w.write_all(b"blob").unwrap();
        let r = w.commit(Some(&Digest::of(b"the blob"))).unwrap();
        assert_eq!(r.size, 8);
        assert_eq!(cs.read_blob(&r.digest).unwrap(), b"the blob");
    }

    #[test]
    fn mismatch_stores_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(tmp.path()).unwrap();
        let wrong = Digest::of(b"other");
        let e = cs.ingest(&mut &b"data"[..], Some(&wrong)).unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
        assert!(cs.list().unwrap().is_empty());
        assert_eq!(
            fs::read_dir(tmp.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }
}

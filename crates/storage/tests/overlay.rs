//! Real overlay tests (run as root): layers built with the tar crate and GNU tar are
//! committed, mounted through overlayfs and checked file by file; hostile layers are refused;
//! a container's diff round-trips.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use polis_storage::{unmount, Snapshotter, UnpackOptions};
use tar::{EntryType, Header};

/// Unmounts on drop, so a failing test leaves no mount behind.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = unmount(&self.0);
    }
}

fn mount(snapshotter: &Snapshotter, key: &str, at: &Path) -> MountGuard {
    fs::create_dir_all(at).unwrap();
    let mounts = snapshotter.mounts(key).unwrap();
    assert_eq!(mounts.len(), 1);
    mounts[0].mount_at(at).unwrap();
    MountGuard(at.to_path_buf())
}

/// Builds layer tars entry by entry, writing names raw so hostile paths can be made too.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn entry(
        &mut self,
        name: &str,
        kind: EntryType,
        link: Option<&str>,
        data: &[u8],
        mode: u32,
        owner: (u64, u64),
    ) -> &mut Self {
        let mut header = Header::new_gnu();
        {
            let old = header.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_uid(owner.0);
        header.set_gid(owner.1);
        header.set_mtime(1_600_000_000);
        header.set_cksum();
        self.0.append(&header, data).unwrap();
        self
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name, EntryType::Directory, None, b"", 0o755, (0, 0))
    }

    fn file(&mut self, name: &str, data: &str) -> &mut Self {
        self.entry(
            name,
            EntryType::Regular,
            None,
            data.as_bytes(),
            0o644,
            (0, 0),
        )
    }

    fn xattrs(&mut self, pairs: &[(&str, &[u8])]) -> &mut Self {
        self.0.append_pax_extensions(pairs.iter().copied()).unwrap();
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()))
            .into_inner()
            .unwrap()
    }
}

fn base_layer() -> Vec<u8> {
    let mut layer = Layer::new();
    layer
        .dir("etc/")
        .entry(
            "etc/owned",
            EntryType::Regular,
            None,
            b"secret",
            0o640,
            (1000, 1001),
        )
        .entry(
            "etc/setuid",
            EntryType::Regular,
            None,
            b"#!",
            0o4755,
            (0, 0),
        )
        .file("deleteme", "gone soon")
        .dir("opq/")
        .file("opq/old1", "old")
        .dir("opq/sub/")
        .file("opq/sub/old2", "old")
        .dir("keepdir/")
        .file("keepdir/a", "a")
        .file("keepdir/b", "b")
        .file("hl1", "shared")
        .entry("hl2", EntryType::Link, Some("hl1"), b"", 0o644, (0, 0))
        .entry(
            "link",
            EntryType::Symlink,
            Some("etc/owned"),
            b"",
            0o777,
            (0, 0),
        )
        .entry(
            "abs",
            EntryType::Symlink,
            Some("/etc/passwd"),
            b"",
            0o777,
            (0, 0),
        )
        .entry("pipe", EntryType::Fifo, None, b"", 0o600, (7, 7))
        .xattrs(&[("SCHILY.xattr.user.test", b"hello")])
        .file("xa", "with xattr");
    layer.finish()
}

fn second_layer() -> Vec<u8> {
    let mut layer = Layer::new();
    layer
        .file(".wh.deleteme", "")
        .dir("opq/")
        .file("opq/.wh..wh..opq", "")
        .file("opq/new", "new")
        .file("keepdir/.wh.a", "")
        .file("etc/added", "added");
    layer.finish()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap();
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// A gzip layer made by GNU tar with xattrs and owners (POSIX format).
fn gnu_tar_xattr_layer(work: &Path) -> Vec<u8> {
    let src = work.join("gnu-src");
    fs::create_dir_all(src.join("gnu")).unwrap();
    fs::write(src.join("gnu/xattr-file"), "gnu").unwrap();
    xattr::set(src.join("gnu/xattr-file"), "user.gnu", b"yes").unwrap();
    std::os::unix::fs::chown(src.join("gnu/xattr-file"), Some(2000), Some(2001)).unwrap();
    let tgz = work.join("gnu.tar.gz");
    run(Command::new("tar")
        .args([
            "--format=posix",
            "--xattrs",
            "--xattrs-include=user.*",
            "-czf",
        ])
        .arg(&tgz)
        .arg("-C")
        .arg(&src)
        .arg("."));
    fs::read(tgz).unwrap()
}

/// A plain layer made by GNU tar with a 1 GiB sparse file (GNU format: the tar crate reads
/// GNU sparse entries).
fn gnu_tar_sparse_layer(work: &Path) -> Vec<u8> {
    let sparse_src = work.join("sparse-src");
    fs::create_dir_all(&sparse_src).unwrap();
    let file = fs::File::create(sparse_src.join("big.sparse")).unwrap();
    file.set_len(1 << 30).unwrap();
    use std::os::unix::fs::FileExt;
    file.write_at(b"middle", 512 << 20).unwrap();
    file.write_at(b"end", (1 << 30) - 3).unwrap();
    let sparse_tar = work.join("sparse.tar");
    run(Command::new("tar")
        .args(["--format=gnu", "--sparse", "-cf"])
        .arg(&sparse_tar)
        .arg("-C")
        .arg(&sparse_src)
        .arg("big.sparse"));
    fs::read(sparse_tar).unwrap()
}

fn ls(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn multi_layer_image_mounts_as_overlay() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshotter = Snapshotter::new(tmp.path().join("storage")).unwrap();
    let gnu_layer = gnu_tar_xattr_layer(tmp.path());
    let sparse_layer = gnu_tar_sparse_layer(tmp.path());

    let base = base_layer();
    let (c1, d1) = snapshotter.commit_layer(None, base.as_slice()).unwrap();
    assert_eq!(c1, d1, "the first layer's chain ID is its diff ID");
    let (c2, d2) = snapshotter
        .commit_layer(Some(&c1), zstd(&second_layer()).as_slice())
        .unwrap();
    assert_eq!(d2, polis_storage::sha256_digest(&second_layer()));
    assert_eq!(c2, polis_storage::chain_id(Some(&c1), &d2));
    let (c3, _) = snapshotter
        .commit_layer(Some(&c2), gnu_layer.as_slice())
        .unwrap();
    let (c4, _) = snapshotter
        .commit_layer(Some(&c3), sparse_layer.as_slice())
        .unwrap();
    assert!(snapshotter.has(&c4));

    // Committing a layer again returns the existing snapshot.
    assert_eq!(
        snapshotter.commit_layer(None, base.as_slice()).unwrap().0,
        c1
    );
    assert_eq!(snapshotter.list().unwrap().len(), 4);

    let mounts = snapshotter.prepare("web-1", &c4).unwrap();
    assert_eq!(mounts[0].typ, "overlay");
    assert_eq!(mounts[0].source, "overlay");
    assert!(mounts[0].options[0].starts_with("lowerdir="));
    // The container's init layer, then the image's four.
    assert_eq!(mounts[0].options[0].matches(':').count(), 4);
    let merged = tmp.path().join("merged");
    let _guard = mount(&snapshotter, "web-1", &merged);

    // Whiteouts and opaque directories.
    assert!(!merged.join("deleteme").exists());
    assert_eq!(ls(&merged.join("opq")), ["new"]);
    assert_eq!(ls(&merged.join("keepdir")), ["b"]);
    assert_eq!(
        fs::read_to_string(merged.join("etc/added")).unwrap(),
        "added"
    );

    // Owners, modes and times.
    let owned = fs::metadata(merged.join("etc/owned")).unwrap();
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o7777),
        (1000, 1001, 0o640)
    );
    assert_eq!(owned.mtime(), 1_600_000_000);
    assert_eq!(
        fs::metadata(merged.join("etc/setuid")).unwrap().mode() & 0o7777,
        0o4755
    );
    let etc_in_layer = fs::metadata(snapshotter.snapshot_path(&c1).unwrap().join("etc")).unwrap();
    assert_eq!(
        etc_in_layer.mtime(),
        1_600_000_000,
        "directory times survive their children"
    );

    // Links, fifo, xattrs.
    let (hl1, hl2) = (
        fs::metadata(merged.join("hl1")).unwrap(),
        fs::metadata(merged.join("hl2")).unwrap(),
    );
    assert_eq!(hl1.ino(), hl2.ino());
    assert_eq!(hl1.nlink(), 2);
    assert_eq!(
        fs::read_link(merged.join("link")).unwrap(),
        Path::new("etc/owned")
    );
    assert_eq!(fs::read_to_string(merged.join("link")).unwrap(), "secret");
    assert_eq!(
        fs::read_link(merged.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    let pipe = fs::symlink_metadata(merged.join("pipe")).unwrap();
    assert!(pipe.file_type().is_fifo());
    assert_eq!((pipe.uid(), pipe.mode() & 0o777), (7, 0o600));
    assert_eq!(
        xattr::get(merged.join("xa"), "user.test").unwrap().unwrap(),
        b"hello"
    );

    // GNU tar layer: gzip, xattrs, owners.
    let gnu = merged.join("gnu/xattr-file");
    assert_eq!(fs::read_to_string(&gnu).unwrap(), "gnu");
    assert_eq!(xattr::get(&gnu, "user.gnu").unwrap().unwrap(), b"yes");
    let gnu_meta = fs::metadata(&gnu).unwrap();
    assert_eq!((gnu_meta.uid(), gnu_meta.gid()), (2000, 2001));

    // The sparse file keeps its size and content but not its holes' blocks.
    let big = merged.join("big.sparse");
    let big_meta = fs::metadata(&big).unwrap();
    assert_eq!(big_meta.len(), 1 << 30);
    assert!(
        big_meta.blocks() * 512 < 4 << 20,
        "sparse file took {} blocks",
        big_meta.blocks()
    );
    use std::os::unix::fs::FileExt;
    let file = fs::File::open(&big).unwrap();
    let mut buf = [0u8; 6];
    file.read_exact_at(&mut buf, 512 << 20).unwrap();
    assert_eq!(&buf, b"middle");
    file.read_exact_at(&mut buf[..3], (1 << 30) - 3).unwrap();
    assert_eq!(&buf[..3], b"end");

    // Writes go to the container's upper layer only.
    fs::write(merged.join("etc/owned"), "changed").unwrap();
    assert_eq!(
        fs::read_to_string(snapshotter.snapshot_path(&c1).unwrap().join("etc/owned")).unwrap(),
        "secret"
    );
    assert!(snapshotter.container_usage("web-1").unwrap().inodes >= 3);
    assert!(snapshotter.usage(&c1).unwrap().inodes >= 15);

    // Snapshots in use cannot go.
    let err = snapshotter.remove_snapshot(&c4).unwrap_err().to_string();
    assert!(err.contains("in use by container web-1"), "{err}");
    let err = snapshotter.remove_snapshot(&c1).unwrap_err().to_string();
    assert!(err.contains("in use by snapshot"), "{err}");
    assert!(snapshotter.prepare("web-1", &c4).is_err());

    let err = snapshotter
        .remove_container("web-1")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("container storage web-1 is still mounted at"),
        "{err}"
    );
    drop(_guard);
    snapshotter.remove_container("web-1").unwrap();
    for chain in [&c4, &c3, &c2, &c1] {
        snapshotter.remove_snapshot(chain).unwrap();
        assert!(!snapshotter.has(chain));
    }
    let root = snapshotter.root();
    for dir in ["snapshots", "index", "containers", "staging"] {
        assert!(
            ls(&root.join(dir)).is_empty(),
            "{dir} not empty: {:?}",
            ls(&root.join(dir))
        );
    }
}

#[test]
fn single_layer_image_still_uses_overlay() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshotter = Snapshotter::new(tmp.path().join("storage")).unwrap();
    let (chain, _) = snapshotter
        .commit_layer(None, base_layer().as_slice())
        .unwrap();
    let mounts = snapshotter.prepare("one", &chain).unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].typ, "overlay");
    let merged = tmp.path().join("m");
    let _guard = mount(&snapshotter, "one", &merged);
    assert_eq!(
        fs::read_to_string(merged.join("deleteme")).unwrap(),
        "gone soon"
    );
}

fn assert_refused(name: &str, layer: &[u8], options: UnpackOptions, expected: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("storage");
    let snapshotter = Snapshotter::with_options(&root, options).unwrap();
    let err = snapshotter
        .commit_layer(None, layer)
        .expect_err(&format!("{name}: layer was accepted"))
        .to_string();
    assert!(
        err.contains(expected),
        "{name}: error {err:?} lacks {expected:?}"
    );
    for dir in ["snapshots", "index", "staging", "containers"] {
        assert!(
            ls(&root.join(dir)).is_empty(),
            "{name}: {dir} not empty: {:?}",
            ls(&root.join(dir))
        );
    }
    assert_eq!(ls(tmp.path()), ["storage"], "{name}: something escaped");
    assert!(
        !Path::new("/etc/polis-evil").exists(),
        "{name}: wrote into /etc"
    );
}

#[test]
fn hostile_layers_are_refused_and_leave_nothing() {
    let defaults = UnpackOptions::default;
    let mut layer = Layer::new();
    layer.file("ok", "fine").file("../evil", "x");
    assert_refused(
        "dotdot",
        &layer.finish(),
        defaults(),
        "\"../evil\": path contains \"..\"",
    );

    layer.file("a/../../evil", "x");
    assert_refused(
        "inner dotdot",
        &layer.finish(),
        defaults(),
        "contains \"..\"",
    );

    layer.file("/etc/polis-evil", "x");
    assert_refused(
        "absolute",
        &layer.finish(),
        defaults(),
        "\"/etc/polis-evil\": path is an absolute path",
    );

    layer
        .entry("a", EntryType::Symlink, Some("/"), b"", 0o777, (0, 0))
        .file("a/etc/polis-evil", "x");
    assert_refused(
        "through symlink",
        &layer.finish(),
        defaults(),
        "goes through the symlink \"a\"",
    );

    layer
        .entry("up", EntryType::Symlink, Some(".."), b"", 0o777, (0, 0))
        .file("up/evil", "x");
    assert_refused(
        "through relative symlink",
        &layer.finish(),
        defaults(),
        "goes through the symlink \"up\"",
    );

    layer.entry(
        "pw",
        EntryType::Link,
        Some("/etc/passwd"),
        b"",
        0o644,
        (0, 0),
    );
    assert_refused(
        "absolute hardlink",
        &layer.finish(),
        defaults(),
        "hardlink target \"/etc/passwd\" is an absolute path",
    );

    layer.entry(
        "pw",
        EntryType::Link,
        Some("../../../../etc/passwd"),
        b"",
        0o644,
        (0, 0),
    );
    assert_refused(
        "dotdot hardlink",
        &layer.finish(),
        defaults(),
        "contains \"..\"",
    );

    layer.entry(
        "pw",
        EntryType::Link,
        Some("etc/passwd"),
        b"",
        0o644,
        (0, 0),
    );
    assert_refused(
        "hardlink outside the layer",
        &layer.finish(),
        defaults(),
        "does not exist in this layer",
    );

    layer
        .entry("l", EntryType::Symlink, Some("/etc"), b"", 0o777, (0, 0))
        .entry("pw", EntryType::Link, Some("l/passwd"), b"", 0o644, (0, 0));
    assert_refused(
        "hardlink through symlink",
        &layer.finish(),
        defaults(),
        "goes through the symlink \"l\"",
    );

    layer.entry("dev/mem", EntryType::Char, None, b"", 0o600, (0, 0));
    assert_refused(
        "device",
        &layer.finish(),
        defaults(),
        "\"dev/mem\": character device 0:0 refused",
    );

    // A gzip bomb: 64 MiB of zeros compress to a few tens of KiB.
    let zeros = vec![0u8; 64 << 20];
    layer.entry("bomb", EntryType::Regular, None, &zeros, 0o644, (0, 0));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&layer.finish()).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let capped = UnpackOptions {
        max_bytes: 16 << 20,
        ..UnpackOptions::default()
    };
    assert_refused(
        "gzip bomb",
        &bomb,
        capped,
        "exceeds the limit of 16777216 bytes",
    );

    for i in 0..20 {
        layer.file(&format!("f{i}"), "x");
    }
    let few = UnpackOptions {
        max_entries: 10,
        ..UnpackOptions::default()
    };
    assert_refused(
        "too many entries",
        &layer.finish(),
        few,
        "more than 10 entries",
    );
}

#[test]
fn devices_are_created_when_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let options = UnpackOptions {
        allow_devices: true,
        ..UnpackOptions::default()
    };
    let mut layer = Layer::new();
    let mut header = Header::new_gnu();
    header.set_path("null").unwrap();
    header.set_entry_type(EntryType::Char);
    header.set_device_major(1).unwrap();
    header.set_device_minor(3).unwrap();
    header.set_mode(0o666);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(0);
    header.set_cksum();
    layer.0.append(&header, &b""[..]).unwrap();
    let target = tmp.path().join("layer");
    polis_storage::unpack(layer.finish().as_slice(), &target, &options).unwrap();
    let meta = fs::symlink_metadata(target.join("null")).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(meta.rdev(), libc::makedev(1, 3));
}

/// What a tree looks like, file by file, for comparisons.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path).unwrap();
        let kind = meta.file_type();
        let content = if kind.is_symlink() {
            format!("-> {}", fs::read_link(&path).unwrap().display())
        } else if kind.is_file() {
            format!(
                "{:?} mtime {}",
                fs::read_to_string(&path).unwrap(),
                meta.mtime()
            )
        } else if kind.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(rel.join(entry.unwrap().file_name()));
            }
            "dir".to_string()
        } else {
            format!("special {:?}", kind)
        };
        let mut xattrs: Vec<String> = xattr::list(&path)
            .unwrap()
            .filter(|n| n.to_string_lossy().starts_with("user."))
            .map(|n| {
                format!(
                    "{}={:?}",
                    n.to_string_lossy(),
                    xattr::get(&path, &n).unwrap()
                )
            })
            .collect();
        xattrs.sort();
        let mode = if kind.is_symlink() {
            0
        } else {
            meta.mode() & 0o7777
        };
        out.insert(
            rel.display().to_string(),
            format!(
                "{content} {}:{} {mode:o} nlink {} {xattrs:?}",
                meta.uid(),
                meta.gid(),
                meta.nlink()
            ),
        );
    }
    out
}

#[test]
fn diff_round_trips_container_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshotter = Snapshotter::new(tmp.path().join("storage")).unwrap();
    let (base, _) = snapshotter
        .commit_layer(None, base_layer().as_slice())
        .unwrap();
    snapshotter.prepare("changer", &base).unwrap();
    let m1 = tmp.path().join("m1");
    let guard1 = mount(&snapshotter, "changer", &m1);

    fs::write(m1.join("new.txt"), "brand new").unwrap();
    std::os::unix::fs::chown(m1.join("new.txt"), Some(123), Some(456)).unwrap();
    fs::set_permissions(m1.join("new.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    xattr::set(m1.join("new.txt"), "user.note", b"kept").unwrap();
    fs::write(m1.join("etc/owned"), "changed").unwrap();
    fs::remove_file(m1.join("deleteme")).unwrap();
    fs::remove_dir_all(m1.join("opq")).unwrap();
    fs::create_dir(m1.join("opq")).unwrap();
    fs::write(m1.join("opq/fresh"), "fresh").unwrap();
    fs::remove_file(m1.join("keepdir/a")).unwrap();
    std::os::unix::fs::symlink("new.txt", m1.join("newlink")).unwrap();
    fs::write(m1.join("pair1"), "pair").unwrap();
    fs::hard_link(m1.join("pair1"), m1.join("pair2")).unwrap();
    nix::unistd::mkfifo(
        &m1.join("newpipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    fs::create_dir_all(m1.join("deep/er/dir")).unwrap();
    fs::write(m1.join("deep/er/dir/f"), "deep").unwrap();
    let long = format!("deep/er/dir/{}", "long-name-".repeat(15));
    fs::write(m1.join(&long), "long").unwrap();
    xattr::set(m1.join(&long), "user.long", b"name").unwrap();
    let upper = snapshotter.upper_dir("changer").unwrap();
    assert_eq!(
        xattr::get(upper.join("opq"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..]),
        "overlay marks a recreated directory opaque"
    );

    let mut layer = Vec::new();
    snapshotter.diff("changer", &mut layer).unwrap();
    // The diff's entries in the tar, as they would appear to other tools.
    let names: Vec<String> = tar::Archive::new(layer.as_slice())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    for expected in [
        ".wh.deleteme",
        "opq/.wh..wh..opq",
        "keepdir/.wh.a",
        "new.txt",
        "pair2",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    let before = describe(&m1);
    drop(guard1);

    let (next, _) = snapshotter
        .commit_layer(Some(&base), layer.as_slice())
        .unwrap();
    snapshotter.prepare("replay", &next).unwrap();
    let m2 = tmp.path().join("m2");
    let _guard2 = mount(&snapshotter, "replay", &m2);
    let mut after = describe(&m2);
    let mut before = before;
    // The root directory's own times and links differ between the two upper layers.
    before.remove("");
    after.remove("");
    assert_eq!(before, after);
    assert_eq!(
        fs::metadata(m2.join("pair1")).unwrap().ino(),
        fs::metadata(m2.join("pair2")).unwrap().ino()
    );
    assert_eq!(ls(&m2.join("opq")), ["fresh"]);
    assert!(!m2.join("deleteme").exists());
}

#[test]
fn sparse_expansion_is_capped() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = gnu_tar_sparse_layer(tmp.path());
    assert!(layer.len() < 1 << 20);
    let capped = UnpackOptions {
        max_bytes: 64 << 20,
        ..UnpackOptions::default()
    };
    assert_refused(
        "sparse bomb",
        &layer,
        capped,
        "files in the layer exceed the limit of 67108864 bytes",
    );
}

#[test]
fn verified_commit_refuses_wrong_content_and_leftovers_are_cleaned() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("storage");
    let snapshotter = Snapshotter::new(&root).unwrap();
    let wrong = polis_storage::sha256_digest(b"something else");
    let err = snapshotter
        .commit_layer_verified(None, &wrong, base_layer().as_slice())
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected sha256:"), "{err}");
    assert!(ls(&root.join("snapshots")).is_empty());
    assert!(ls(&root.join("staging")).is_empty());

    let right = polis_storage::sha256_digest(&base_layer());
    let chain = snapshotter
        .commit_layer_verified(None, &right, base_layer().as_slice())
        .unwrap();
    assert_eq!(chain, right);
    // Known layers are not read again.
    assert_eq!(
        snapshotter
            .commit_layer_verified(None, &right, std::io::empty())
            .unwrap(),
        chain
    );

    // What a killed process left behind goes when the store is opened again.
    fs::create_dir_all(root.join("staging/999999999-0/x")).unwrap();
    fs::create_dir_all(root.join("snapshots/.tmp-7/fs")).unwrap();
    fs::create_dir_all(root.join("containers/.del-old/upper")).unwrap();
    let reopened = Snapshotter::new(&root).unwrap();
    assert!(ls(&root.join("staging")).is_empty());
    assert_eq!(ls(&root.join("snapshots")), ["1"]);
    assert!(ls(&root.join("containers")).is_empty());
    assert!(reopened.has(&chain));
}

fn json_file(layout: &Path, digest: &str) -> serde_json::Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// An image made by umoci: two gzip layers, the second deleting a file and replacing a
/// directory; diff IDs come from umoci's image config and must match ours.
#[test]
fn umoci_image_layers_match_their_diff_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("img");
    let image = format!("{}:t", layout.display());
    let umoci = |args: &[&str]| {
        run(Command::new("umoci")
            .args(args)
            .stdout(std::process::Stdio::null()));
    };
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &image]);
    let b1 = tmp.path().join("b1");
    umoci(&["unpack", "--image", &image, b1.to_str().unwrap()]);
    let rootfs = b1.join("rootfs");
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::create_dir_all(rootfs.join("dir/sub")).unwrap();
    fs::write(rootfs.join("etc/hello"), "hi").unwrap();
    fs::write(rootfs.join("gone"), "x").unwrap();
    fs::write(rootfs.join("dir/sub/o"), "o").unwrap();
    fs::hard_link(rootfs.join("etc/hello"), rootfs.join("hl")).unwrap();
    std::os::unix::fs::symlink("etc/hello", rootfs.join("sl")).unwrap();
    std::os::unix::fs::chown(rootfs.join("etc/hello"), Some(1234), Some(5678)).unwrap();
    umoci(&["repack", "--image", &image, b1.to_str().unwrap()]);
    let b2 = tmp.path().join("b2");
    umoci(&["unpack", "--image", &image, b2.to_str().unwrap()]);
    let rootfs = b2.join("rootfs");
    fs::remove_file(rootfs.join("gone")).unwrap();
    fs::remove_dir_all(rootfs.join("dir")).unwrap();
    fs::create_dir(rootfs.join("dir")).unwrap();
    fs::write(rootfs.join("dir/new"), "n").unwrap();
    umoci(&["repack", "--image", &image, b2.to_str().unwrap()]);

    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = json_file(&layout, index["manifests"][0]["digest"].as_str().unwrap());
    let config = json_file(&layout, manifest["config"]["digest"].as_str().unwrap());
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);

    let snapshotter = Snapshotter::new(tmp.path().join("storage")).unwrap();
    let mut parent: Option<String> = None;
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        let blob = layer["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        let file = fs::File::open(layout.join("blobs/sha256").join(blob)).unwrap();
        let chain = snapshotter
            .commit_layer_verified(parent.as_deref(), diff_id.as_str().unwrap(), file)
            .unwrap();
        parent = Some(chain);
    }
    let top = parent.unwrap();
    snapshotter.prepare("umoci", &top).unwrap();
    let merged = tmp.path().join("merged");
    let _guard = mount(&snapshotter, "umoci", &merged);
    assert!(!merged.join("gone").exists());
    assert_eq!(ls(&merged.join("dir")), ["new"]);
    let hello = fs::metadata(merged.join("etc/hello")).unwrap();
    assert_eq!((hello.uid(), hello.gid()), (1234, 5678));
    assert_eq!(hello.ino(), fs::metadata(merged.join("hl")).unwrap().ino());
    assert_eq!(fs::read_to_string(merged.join("sl")).unwrap(), "hi");
}

#[test]
fn concurrent_commits_of_one_layer_share_a_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshotter = Snapshotter::new(tmp.path().join("storage")).unwrap();
    let layer = base_layer();
    let chains: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let snapshotter = snapshotter.clone();
                let layer = &layer;
                scope.spawn(move || snapshotter.commit_layer(None, layer.as_slice()).unwrap().0)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(chains.iter().all(|c| *c == chains[0]));
    assert_eq!(snapshotter.list().unwrap().len(), 1);
    assert!(ls(&snapshotter.root().join("staging")).is_empty());
}

#[test]
fn whiteouts_and_metadata_never_reach_through_symlinks() {
    let defaults = UnpackOptions::default;
    let mut layer = Layer::new();
    layer
        .entry("a", EntryType::Symlink, Some("/etc"), b"", 0o777, (0, 0))
        .file("a/.wh.passwd", "");
    assert_refused(
        "whiteout through symlink",
        &layer.finish(),
        defaults(),
        "\"a/.wh.passwd\": path goes through the symlink \"a\"",
    );

    layer
        .entry("a", EntryType::Symlink, Some("/etc"), b"", 0o777, (0, 0))
        .file("a/.wh..wh..opq", "");
    assert_refused(
        "opaque through symlink",
        &layer.finish(),
        defaults(),
        "goes through the symlink \"a\"",
    );

    // An xattr on a symlink entry must land on the link, never on what it points at.
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    fs::write(&victim, "untouched").unwrap();
    layer
        .xattrs(&[("SCHILY.xattr.user.polis-evil", b"1")])
        .entry(
            "s",
            EntryType::Symlink,
            Some(victim.to_str().unwrap()),
            b"",
            0o777,
            (0, 0),
        );
    assert_refused(
        "xattr through symlink",
        &layer.finish(),
        defaults(),
        "\"s\": set xattr user.polis-evil",
    );
    assert!(xattr::get(&victim, "user.polis-evil").unwrap().is_none());

    // A file whose name is a symlink the layer made replaces the link, not its target.
    layer
        .entry(
            "s",
            EntryType::Symlink,
            Some(victim.to_str().unwrap()),
            b"",
            0o777,
            (0, 0),
        )
        .file("s", "replaced");
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("layer");
    polis_storage::unpack(layer.finish().as_slice(), &target, &defaults()).unwrap();
    assert_eq!(fs::read_to_string(target.join("s")).unwrap(), "replaced");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
}

/// Unmounts a small tmpfs on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = unmount(&self.0);
    }
}

#[test]
fn layers_bigger_than_the_free_space_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small");
    fs::create_dir(&small).unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&small));
    let _guard = Tmpfs(small.clone());
    let root = small.join("storage");
    let snapshotter = Snapshotter::new(&root).unwrap();

    // 32 MiB of zeros gzip to a few tens of KiB but cannot unpack into 8 MiB.
    let mut layer = Layer::new();
    layer.entry(
        "big",
        EntryType::Regular,
        None,
        &vec![0x5a; 32 << 20],
        0o644,
        (0, 0),
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&layer.finish()).unwrap();
    let err = snapshotter
        .commit_layer(None, gz.finish().unwrap().as_slice())
        .unwrap_err();
    assert!(matches!(err, polis_storage::Error::TooLarge(_)), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("bytes free on"), "{err}");
    for dir in ["snapshots", "index", "staging"] {
        assert!(
            ls(&root.join(dir)).is_empty(),
            "{dir}: {:?}",
            ls(&root.join(dir))
        );
    }

    // A layer that fits still goes in.
    let chain = snapshotter
        .commit_layer(None, base_layer().as_slice())
        .unwrap()
        .0;
    assert!(snapshotter.has(&chain));
}

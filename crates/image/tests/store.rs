//! The image store end to end: a busybox root filesystem imported, listed, inspected,
//! tagged, saved, loaded (also to and from Podman), and corrupt archives refused.

use std::fs;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use polis_image::{Digest, Error, ImageStore, ImageUser, Removed};

const APPLETS: &[&str] = &["sh", "ls", "echo", "cat", "true", "false", "id", "env"];

/// A root filesystem tar: /bin/busybox with applet symlinks, /etc/passwd and /etc/group.
fn busybox_rootfs_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, p: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, p, std::io::empty()).unwrap();
    };
    let file = |b: &mut tar::Builder<Vec<u8>>, p: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, p, data).unwrap();
    };
    for d in ["bin", "etc", "tmp", "root"] {
        dir(&mut b, d);
    }
    let busybox = fs::read("/bin/busybox").expect("busybox-static at /bin/busybox");
    file(&mut b, "bin/busybox", &busybox, 0o755);
    for a in APPLETS {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{a}"), "busybox")
            .unwrap();
    }
    file(
        &mut b,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
        0o644,
    );
    file(&mut b, "etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644);
    b.into_inner().unwrap()
}

fn store() -> (tempfile::TempDir, ImageStore) {
    let t = tempfile::tempdir().unwrap();
    let s = ImageStore::open(&t.path().join("images")).unwrap();
    (t, s)
}

/// Everything observable about a store: images and blob files.
fn snapshot(s: &ImageStore) -> (Vec<String>, Vec<String>) {
    let images = s
        .list()
        .unwrap()
        .iter()
        .map(|i| format!("{} {:?}", i.id, i.repo_tags))
        .collect();
    let mut blobs: Vec<String> = fs::read_dir(s.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    (images, blobs)
}

fn never(_: &Digest) -> Option<ImageUser> {
    None
}

#[test]
fn import_list_inspect_tag_rmi() {
    let (_t, s) = store();
    let tar = busybox_rootfs_tar();
    let id = s
        .import(
            &mut Cursor::new(&tar),
            Some("busybox"),
            &[r#"CMD ["sh"]"#.to_string(), "ENV A=b".to_string()],
            None,
        )
        .unwrap();
    assert_eq!(s.resolve("busybox").unwrap(), id);
    assert_eq!(s.resolve("docker.io/library/busybox:latest").unwrap(), id);
    assert_eq!(s.resolve(id.as_str()).unwrap(), id);
    assert_eq!(s.resolve(&id.hex()[..12]).unwrap(), id);
    assert_eq!(s.resolve(&id.hex()[..3]).unwrap(), id);
    assert!(matches!(s.resolve("nope"), Err(Error::ImageNotFound(_))));

    let list = s.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].repo_tags, vec!["busybox:latest"]);
    assert_eq!(list[0].size, tar.len() as u64);
    assert!(list[0].created > 1_600_000_000);

    let info = s.inspect("busybox").unwrap();
    assert_eq!(info.id, id.to_string());
    assert_eq!(info.os, "linux");
    assert_eq!(info.architecture, "amd64");
    assert_eq!(info.config.cmd.as_deref(), Some(&["sh".to_string()][..]));
    assert_eq!(info.config.env.as_deref(), Some(&["A=b".to_string()][..]));
    assert_eq!(info.root_fs.fs_type, "layers");
    assert_eq!(info.root_fs.layers, vec![Digest::of(&tar).to_string()]);
    let json = serde_json::to_value(&info).unwrap();
    assert!(
        json.get("RootFS").is_some() && json.get("RepoTags").is_some(),
        "{json}"
    );

    let layers = s.layers("busybox").unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(fs::read(&layers[0].path).unwrap(), tar);
    assert_eq!(layers[0].diff_id, Digest::of(&tar));

    let hist = s.history("busybox").unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].id, id.to_string());
    assert_eq!(hist[0].comment, "Imported from -");
    assert_eq!(hist[0].tags, vec!["busybox:latest"]);

    s.tag("busybox", "localhost:5000/a/b:v1").unwrap();
    s.tag(&id.hex()[..12], "other").unwrap();
    assert_eq!(
        s.inspect(id.as_str()).unwrap().repo_tags,
        vec!["busybox:latest", "localhost:5000/a/b:v1", "other:latest"]
    );
    assert!(s.tag("busybox", "Bad:tag").is_err());

    // Several repositories: by ID only with force; by name just untags.
    assert!(matches!(
        s.remove(&id.hex()[..12], false, &never),
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        s.remove("other", false, &never).unwrap(),
        vec![Removed::Untagged("other:latest".into())]
    );
    // A container uses it: neither the last tag nor the ID go without force.
    s.remove("localhost:5000/a/b:v1", false, &never).unwrap();
    let used = |d: &Digest| {
        (*d == id).then(|| ImageUser {
            id: "c0ffee".repeat(10),
            running: false,
        })
    };
    assert!(matches!(
        s.remove("busybox", false, &used),
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        s.remove(id.as_str(), false, &used),
        Err(Error::Conflict(_))
    ));
    // Forced while a running container uses it: untagged, kept; by ID not at all.
    let running = |d: &Digest| {
        (*d == id).then(|| ImageUser {
            id: "c0ffee".repeat(10),
            running: true,
        })
    };
    let removed = s.remove("busybox", true, &running).unwrap();
    assert_eq!(removed, vec![Removed::Untagged("busybox:latest".into())]);
    assert!(s.list().unwrap()[0].repo_tags.is_empty());
    s.tag(id.as_str(), "busybox").unwrap();
    assert!(matches!(
        s.remove(id.as_str(), true, &running),
        Err(Error::Conflict(_))
    ));
    assert_eq!(s.list().unwrap().len(), 1);
    // (Forced past a stopped container the image is deleted: crates/polis/tests/image_gc.rs.)
    let removed = s.remove("busybox", false, &never).unwrap();
    assert_eq!(removed[0], Removed::Untagged("busybox:latest".into()));
    // The image, then its one layer's chain ID (its diff ID), as Docker reports them.
    assert_eq!(
        removed[1..],
        [
            Removed::Deleted(id.to_string()),
            Removed::Deleted(Digest::of(&tar).to_string())
        ]
    );
    assert!(s.list().unwrap().is_empty());
    assert_eq!(snapshot(&s).1, Vec::<String>::new(), "no blob is left");
}

#[test]
fn import_gzip_and_reject_garbage() {
    let (_t, s) = store();
    let tar = busybox_rootfs_tar();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let gz = gz.finish().unwrap();
    let id = s
        .import(&mut Cursor::new(gz), None, &[], Some("msg"))
        .unwrap();
    assert_eq!(
        s.inspect(id.as_str()).unwrap().root_fs.layers,
        vec![Digest::of(&tar).to_string()]
    );
    assert!(s.inspect(id.as_str()).unwrap().repo_tags.is_empty());
    let before = snapshot(&s);
    let err = s
        .import(&mut Cursor::new(vec![7u8; 2000]), Some("x"), &[], None)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArchive(_)), "{err}");
    assert!(s
        .import(
            &mut Cursor::new(&tar[..tar.len() / 2]),
            Some("x"),
            &[],
            None
        )
        .is_err());
    assert!(s
        .import(
            &mut Cursor::new(&tar),
            Some("x"),
            &["RUN true".to_string()],
            None
        )
        .is_err());
    assert_eq!(snapshot(&s), before);
}

#[test]
fn gc_removes_only_unreferenced_blobs() {
    let (_t, s) = store();
    s.import(
        &mut Cursor::new(busybox_rootfs_tar()),
        Some("bb"),
        &[],
        None,
    )
    .unwrap();
    let before = snapshot(&s);
    let orphan = s.content().ingest_bytes(b"orphan").unwrap().digest;
    let report = s.gc().unwrap();
    assert_eq!(report.removed, vec![orphan]);
    assert_eq!(snapshot(&s), before);
}

#[test]
fn save_then_load_round_trip() {
    let (t, s) = store();
    let id = s
        .import(
            &mut Cursor::new(busybox_rootfs_tar()),
            Some("busybox"),
            &[r#"CMD ["sh"]"#.to_string()],
            None,
        )
        .unwrap();
    s.tag("busybox", "localhost/bb:2").unwrap();
    let mut out = Vec::new();
    s.save(&["busybox", "localhost/bb:2"], &mut out).unwrap();
    let names = member_names(&out);
    for n in ["manifest.json", "index.json", "oci-layout", "repositories"] {
        assert!(names.contains(&n.to_string()), "{n} in {names:?}");
    }
    let other = ImageStore::open(&t.path().join("other")).unwrap();
    let loaded = other.load(&mut Cursor::new(&out)).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, id);
    assert_eq!(
        other.inspect("busybox").unwrap().repo_tags,
        vec!["busybox:latest", "localhost/bb:2"]
    );
    assert_eq!(
        other.inspect("busybox").unwrap().config,
        s.inspect("busybox").unwrap().config
    );

    // A gzipped archive loads too (as docker load accepts).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &out).unwrap();
    let gz_store = ImageStore::open(&t.path().join("gz")).unwrap();
    let loaded = gz_store
        .load(&mut Cursor::new(gz.finish().unwrap()))
        .unwrap();
    assert_eq!(loaded[0].id, id);

    // The OCI layout alone (no manifest.json) loads too.
    let oci_only = rewrite(&out, |name, data| {
        (name != "manifest.json").then(|| data.to_vec())
    });
    let third = ImageStore::open(&t.path().join("third")).unwrap();
    let loaded = third.load(&mut Cursor::new(oci_only)).unwrap();
    assert_eq!(loaded[0].id, id);
    assert_eq!(
        third.inspect(id.as_str()).unwrap().repo_tags,
        vec!["busybox:latest", "localhost/bb:2"]
    );
}

#[test]
fn corrupt_archives_leave_the_store_unchanged() {
    let (_t, s) = store();
    s.import(
        &mut Cursor::new(busybox_rootfs_tar()),
        Some("keep"),
        &[],
        None,
    )
    .unwrap();
    let (t2, src) = store();
    let _ = t2;
    let id = src
        .import(
            &mut Cursor::new(busybox_rootfs_tar()),
            Some("busybox"),
            &["ENV X=1".to_string()],
            None,
        )
        .unwrap();
    let mut good = Vec::new();
    src.save(&["busybox"], &mut good).unwrap();
    let before = snapshot(&s);
    let layer = src.layers("busybox").unwrap().remove(0);
    let layer_member = format!("blobs/sha256/{}", layer.digest.hex());

    // Truncated in the middle of the layer.
    let cut = find(&good, b"ELF").unwrap() + 100_000;
    let err = s.load(&mut Cursor::new(&good[..cut])).unwrap_err();
    assert!(matches!(err, Error::InvalidArchive(_)), "{err}");
    assert_eq!(snapshot(&s), before);

    // A layer whose bytes are not those its name announces.
    let flipped = rewrite(&good, |name, data| {
        let mut d = data.to_vec();
        if name == layer_member {
            let i = d.len() / 2;
            d[i] ^= 0xff;
        }
        Some(d)
    });
    let err = s.load(&mut Cursor::new(flipped)).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert_eq!(snapshot(&s), before);

    // A layer renamed consistently but not matching the config's diff ID.
    let other_layer = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "x", &b"abc"[..]).unwrap();
        b.into_inner().unwrap()
    };
    let swapped = rewrite(&good, |name, data| {
        Some(if name == layer_member {
            other_layer.clone()
        } else {
            data.to_vec()
        })
    });
    let swapped = rename_member(&swapped, &layer_member, "layer.tar", "manifest.json");
    let err = s.load(&mut Cursor::new(swapped)).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert_eq!(snapshot(&s), before);

    // A member that climbs out of the archive.
    let mut evil = good.clone();
    append_member(&mut evil, "../../etc/evil", b"x");
    let err = s.load(&mut Cursor::new(evil)).unwrap_err();
    assert!(err.to_string().contains("escapes"), "{err}");
    assert_eq!(snapshot(&s), before);

    // The config is missing.
    let no_config = rewrite(&good, |name, data| {
        (name != format!("blobs/sha256/{}", id.hex())).then(|| data.to_vec())
    });
    let err = s.load(&mut Cursor::new(no_config)).unwrap_err();
    assert!(err.to_string().contains("missing file"), "{err}");
    assert_eq!(snapshot(&s), before);

    // Not an archive at all.
    assert!(s.load(&mut Cursor::new(b"hello".repeat(300))).is_err());
    assert_eq!(snapshot(&s), before);

    // And the good one still loads.
    s.load(&mut Cursor::new(good)).unwrap();
    assert_eq!(s.resolve("busybox").unwrap(), id);
}

// ---- Podman and skopeo interoperability -------------------------------------------------

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Self {
        Podman {
            dir: tempfile::Builder::new()
                .prefix("polis-image-podman")
                .tempdir_in("/tmp")
                .unwrap(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        let d = self.dir.path();
        c.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"));
        c.args([
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            "--storage-driver=vfs",
        ]);
        c
    }

    fn run(&self, args: &[&str], stdin: Option<&Path>) -> String {
        let mut c = self.cmd();
        c.args(args);
        if let Some(p) = stdin {
            c.stdin(fs::File::open(p).unwrap());
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // vfs storage leaves no mounts; the temp dir removal does the rest.
        let _ = self.cmd().args(["rmi", "-a", "-f"]).output();
    }
}

#[test]
fn loads_what_podman_saves() {
    if !have("podman") {
        eprintln!("podman not installed: skipped");
        return;
    }
    let p = Podman::new();
    let rootfs = p.path("rootfs.tar");
    fs::write(&rootfs, busybox_rootfs_tar()).unwrap();
    p.run(
        &["import", "--change", "CMD [\"sh\"]", "-", "localhost/bb:1"],
        Some(&rootfs),
    );
    let archive = p.path("x.tar");
    p.run(
        &[
            "save",
            "--format",
            "docker-archive",
            "-o",
            archive.to_str().unwrap(),
            "localhost/bb:1",
        ],
        None,
    );
    let podman_id = p.run(
        &["image", "inspect", "--format", "{{.Id}}", "localhost/bb:1"],
        None,
    );

    let (_t, s) = store();
    let loaded = s.load(&mut fs::File::open(&archive).unwrap()).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id.hex(), podman_id.trim());
    let info = s.inspect("localhost/bb:1").unwrap();
    assert_eq!(info.repo_tags, vec!["localhost/bb:1"]);
    assert_eq!(info.config.cmd.as_deref(), Some(&["sh".to_string()][..]));
    assert_eq!(info.os, "linux");
    assert_eq!(info.root_fs.layers.len(), 1);
    let layer = s.layers("localhost/bb:1").unwrap().remove(0);
    assert_eq!(layer.diff_id.as_str(), info.root_fs.layers[0]);

    // Podman's OCI archive format goes through the OCI layout path.
    let oci = p.path("oci.tar");
    p.run(
        &[
            "save",
            "--format",
            "oci-archive",
            "-o",
            oci.to_str().unwrap(),
            "localhost/bb:1",
        ],
        None,
    );
    let (_t2, s2) = store();
    let loaded = s2.load(&mut fs::File::open(&oci).unwrap()).unwrap();
    assert_eq!(loaded[0].id.hex(), podman_id.trim());
}

#[test]
fn podman_and_skopeo_read_what_we_save() {
    if !have("podman") || !have("skopeo") {
        eprintln!("podman or skopeo not installed: skipped");
        return;
    }
    let (_t, s) = store();
    let id = s
        .import(
            &mut Cursor::new(busybox_rootfs_tar()),
            Some("localhost/ours:v2"),
            &[r#"CMD ["echo","hi"]"#.to_string()],
            None,
        )
        .unwrap();
    s.tag("localhost/ours:v2", "busybox").unwrap();
    let p = Podman::new();
    let archive = p.path("ours.tar");
    s.save(
        &["localhost/ours:v2", "busybox"],
        &mut fs::File::create(&archive).unwrap(),
    )
    .unwrap();

    let sk = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("docker-archive:{}", archive.display()))
        .output()
        .unwrap();
    assert!(
        sk.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&sk.stderr)
    );
    let sk = Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!(
            "docker-archive:{}:localhost/ours:v2",
            archive.display()
        ))
        .output()
        .unwrap();
    assert!(
        sk.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&sk.stderr)
    );
    let cfg: serde_json::Value = serde_json::from_slice(&sk.stdout).unwrap();
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["echo", "hi"]));

    let out = p.run(&["load", "-i", archive.to_str().unwrap()], None);
    assert!(out.contains("localhost/ours:v2"), "{out}");
    let pid = p.run(
        &[
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            "localhost/ours:v2",
        ],
        None,
    );
    assert_eq!(pid.trim(), id.hex());
    let tags = p.run(
        &["image", "inspect", "--format", "{{.RepoTags}}", id.hex()],
        None,
    );
    assert!(tags.contains("docker.io/library/busybox:latest"), "{tags}");
}

// ---- archive surgery helpers ------------------------------------------------------------

fn member_names(archive: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(archive);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Rebuilds an archive, passing each regular member through `f` (None drops it).
fn rewrite(archive: &[u8], f: impl Fn(&str, &[u8]) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut a = tar::Archive::new(archive);
    let mut b = tar::Builder::new(Vec::new());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let mut h = e.header().clone();
        if h.entry_type() == tar::EntryType::Directory {
            b.append_data(&mut h, &name, std::io::empty()).unwrap();
            continue;
        }
        if let Some(d) = f(&name, &data) {
            h.set_size(d.len() as u64);
            b.append_data(&mut h, &name, d.as_slice()).unwrap();
        }
    }
    b.into_inner().unwrap()
}

/// Renames member `from` to `to` and rewrites references to it inside member `json`.
fn rename_member(archive: &[u8], from: &str, to: &str, json: &str) -> Vec<u8> {
    let mut a = tar::Archive::new(archive);
    let mut b = tar::Builder::new(Vec::new());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if name == json {
            data = String::from_utf8(data)
                .unwrap()
                .replace(from, to)
                .into_bytes();
        }
        if name == from {
            name = to.to_string();
        }
        let mut h = e.header().clone();
        h.set_size(data.len() as u64);
        b.append_data(&mut h, &name, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

/// Appends a member with a raw (unchecked) name before the end-of-archive blocks.
fn append_member(archive: &mut Vec<u8>, name: &str, data: &[u8]) {
    let end = archive_end(archive);
    archive.truncate(end);
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    archive.extend_from_slice(h.as_bytes());
    let mut block = data.to_vec();
    block.resize(512, 0);
    archive.extend_from_slice(&block);
    archive.extend_from_slice(&[0u8; 1024]);
}

/// Offset of the end-of-archive zero blocks.
fn archive_end(archive: &[u8]) -> usize {
    let mut a = tar::Archive::new(archive);
    let mut end = 0;
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        end = e.raw_file_position() as usize + (e.size() as usize).div_ceil(512) * 512;
    }
    end
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The pre-25 `docker save` layout: `<v1 id>/layer.tar` directories, `<hex>.json` configs,
/// and a symlink where two images share a layer.
#[test]
fn loads_legacy_docker_archives_with_linked_layers() {
    let layer = busybox_rootfs_tar();
    let diff_id = Digest::of(&layer).to_string();
    let config = |cmd: &str| {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z",
            "config": {"Cmd": [cmd], "Env": null},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": "2024-01-02T03:04:05Z", "created_by": "/bin/sh -c #(nop) ADD file"}]
        }))
        .unwrap()
    };
    let (c1, c2) = (config("sh"), config("ls"));
    let (d1, d2) = (Digest::of(&c1), Digest::of(&c2));
    let v1a = "a".repeat(64);
    let v1b = "b".repeat(64);
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": format!("{}.json", d1.hex()), "RepoTags": ["one:latest"], "Layers": [format!("{v1a}/layer.tar")]},
        {"Config": format!("{}.json", d2.hex()), "RepoTags": ["two:latest", "localhost:5000/two:x"], "Layers": [format!("{v1b}/layer.tar")]}
    ]))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    add(&mut b, &format!("{v1a}/layer.tar"), &layer);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(
        &mut h,
        format!("{v1b}/layer.tar"),
        format!("../{v1a}/layer.tar"),
    )
    .unwrap();
    add(&mut b, &format!("{}.json", d1.hex()), &c1);
    add(&mut b, &format!("{}.json", d2.hex()), &c2);
    add(&mut b, "manifest.json", &manifest);
    add(&mut b, "repositories", br#"{"one":{"latest":"aaaa"}}"#);
    let archive = b.into_inner().unwrap();

    let (_t, s) = store();
    let loaded = s.load(&mut Cursor::new(&archive)).unwrap();
    assert_eq!(
        loaded.iter().map(|l| l.id.clone()).collect::<Vec<_>>(),
        vec![d1.clone(), d2.clone()]
    );
    assert_eq!(
        s.inspect("two").unwrap().repo_tags,
        vec!["localhost:5000/two:x", "two:latest"]
    );
    assert_eq!(
        s.layers("one").unwrap()[0].digest,
        s.layers("two").unwrap()[0].digest
    );
    let hist = s.history("one").unwrap();
    assert_eq!(hist[0].created_by, "/bin/sh -c #(nop) ADD file");
    assert_eq!(hist[0].size, layer.len() as u64);
    // Layer, 2 configs, 2 manifests: nothing else (manifest.json, repositories) stays.
    assert_eq!(snapshot(&s).1.len(), 5);

    // A link out of the archive is refused.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "x/layer.tar", "../../../etc/shadow")
        .unwrap();
    let err = s
        .load(&mut Cursor::new(b.into_inner().unwrap()))
        .unwrap_err();
    assert!(err.to_string().contains("outside the archive"), "{err}");
}

/// A one-file layer tar.
fn one_file_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn pinned_blobs_outlive_collection_until_their_lease_ends() {
    let (_t, s) = store();
    let id = s
        .import(
            &mut Cursor::new(one_file_tar("a", b"A")),
            Some("bb"),
            &[],
            None,
        )
        .unwrap();
    let layer = s.layers("bb").unwrap().remove(0).digest;
    // An ingest in flight: a blob of its own, and the layer it found already there.
    let lease = s.lease();
    let in_flight = lease.ingest_bytes(b"half a pull").unwrap().digest;
    lease.pin(&layer);
    assert!(s.is_pinned(&in_flight) && s.is_pinned(&layer));
    assert!(s.gc().unwrap().removed.is_empty(), "pinned blobs are kept");
    // rmi does not wait for the lease: the image goes, the pinned layer stays.
    let removed = s.remove("bb", false, &never).unwrap();
    assert!(removed.contains(&Removed::Deleted(id.to_string())));
    assert!(s.list().unwrap().is_empty());
    let mut left = snapshot(&s).1;
    left.sort();
    let mut want = vec![in_flight.hex().to_string(), layer.hex().to_string()];
    want.sort();
    assert_eq!(left, want);
    // The ingest ends without indexing anything: its blobs go with it.
    let report = lease.release().unwrap();
    assert_eq!(report.removed.len(), 2);
    assert!(!s.is_pinned(&layer));
    assert_eq!(snapshot(&s).1, Vec::<String>::new());
}

#[test]
fn rmi_reports_the_chain_ids_only_the_image_had() {
    let (_t, s) = store();
    let base = s
        .import(
            &mut Cursor::new(one_file_tar("a", b"A")),
            Some("base"),
            &[],
            None,
        )
        .unwrap();
    let top = one_file_tar("b", b"B");
    let mut write = |w: &mut dyn std::io::Write| w.write_all(&top);
    let child = s
        .commit(
            &base,
            &mut write,
            polis_image::CommitOptions {
                reference: Some("child".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let chains = polis_image::chain_ids(&s.record(&child).unwrap().layers);
    assert_eq!(chains.len(), 2);
    assert_eq!(chains[0], Digest::of(&one_file_tar("a", b"A")));
    assert_eq!(
        chains[1],
        Digest::of(format!("{} {}", chains[0], Digest::of(&top)).as_bytes())
    );
    assert_eq!(s.chain_ids_in_use().unwrap().len(), 2);
    // The bottom layer is base's too: only the top chain is released.
    assert_eq!(
        s.remove("child", false, &never).unwrap(),
        vec![
            Removed::Untagged("child:latest".into()),
            Removed::Deleted(child.to_string()),
            Removed::Deleted(chains[1].to_string()),
        ]
    );
    assert_eq!(
        s.remove("base", false, &never).unwrap(),
        vec![
            Removed::Untagged("base:latest".into()),
            Removed::Deleted(base.to_string()),
            Removed::Deleted(chains[0].to_string()),
        ]
    );
    assert!(s.chain_ids_in_use().unwrap().is_empty());
    assert_eq!(snapshot(&s), (Vec::new(), Vec::new()));
}

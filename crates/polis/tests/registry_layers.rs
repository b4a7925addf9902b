//! Layers are unpacked (and so checked) at pull, as Docker does. Multi-layer images built
//! by umoci (an independent tool) with whiteouts, an opaque directory, hardlinks, symlinks,
//! xattrs, modes, owners and times are pushed by skopeo to Debian's docker-registry, pulled
//! through polisd and checked file by file in a running container; hostile layers are
//! refused at pull with nothing left behind, and a retry with a good image succeeds.

mod common;

use common::daemon::{busybox_tar, import_busybox, wait_for, Daemon};
use common::registry::{docker, ok, Registry};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use tar::{EntryType, Header};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh(dir: &Path, script: &str) {
    run(Command::new("sh").arg("-ec").arg(script).current_dir(dir));
}

/// A polisd whose config file holds `config` (TOML).
fn daemon_with_config(name: &str, config: &str) -> Daemon {
    let dir = std::env::temp_dir().join(format!("polis-daemon-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("polisd.toml");
    std::fs::write(&file, config).unwrap();
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_polis"))
        .args(["daemon", "--bridge", "none", "--root"])
        .arg(dir.join("root"))
        .arg("--run-root")
        .arg(dir.join("run"))
        .arg("--config-file")
        .arg(&file)
        .stderr(log)
        .spawn()
        .unwrap();
    let d = Daemon {
        child: Some(child),
        socket: dir.join("run/polis.sock"),
        dir,
    };
    wait_for(&d.socket);
    d
}

/// Names in a directory, sorted (none if it does not exist).
fn ls(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort_by_key(|n| (n.parse::<u64>().unwrap_or(u64::MAX), n.clone()));
    names
}

fn storage(d: &Daemon) -> PathBuf {
    d.dir.join("root/storage")
}

/// Committed snapshots (numeric directories).
fn snapshots(d: &Daemon) -> Vec<String> {
    ls(&storage(d).join("snapshots"))
        .into_iter()
        .filter(|n| n.parse::<u64>().is_ok())
        .collect()
}

fn blobs(d: &Daemon) -> Vec<String> {
    ls(&d.dir.join("root/images/blobs/sha256"))
}

/// The pull's JSON progress stream, straight from the API.
fn pull_stream(d: &Daemon, repo: &str, tag: &str) -> Vec<Value> {
    let url = format!(
        "http://localhost/v1.41/images/create?fromImage={}&tag={tag}",
        repo.replace(':', "%3A").replace('/', "%2F")
    );
    let out = run(Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            "-H",
            "X-Registry-Auth: e30=",
            "--unix-socket",
        ])
        .arg(&d.socket)
        .arg(url));
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// The statuses the stream gave layer `short`, in order.
fn statuses(stream: &[Value], short: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in stream.iter().filter(|m| m["id"] == short) {
        let s = m["status"].as_str().unwrap().to_string();
        // Repeated progress lines fold into one.
        if out.last() != Some(&s) {
            out.push(s);
        }
    }
    out
}

fn layer_shorts(reg: &Registry, name: &str, tag: &str) -> Vec<(String, u64)> {
    reg.manifest(name, tag, None)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let digest = l["digest"].as_str().unwrap();
            (
                digest["sha256:".len().."sha256:".len() + 12].to_string(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Layer tars written entry by entry, names raw so hostile paths can be made too.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn entry(&mut self, name: &str, kind: EntryType, link: Option<&str>, data: &[u8]) -> &mut Self {
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
        let mode = if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        };
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        if matches!(kind, EntryType::Char | EntryType::Block) {
            header.set_device_major(1).unwrap();
            header.set_device_minor(3).unwrap();
        }
        header.set_cksum();
        self.0.append(&header, data).unwrap();
        self
    }

    fn file(&mut self, name: &str, data: &str) -> &mut Self {
        self.entry(name, EntryType::Regular, None, data.as_bytes())
    }

    fn finish(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()))
            .into_inner()
            .unwrap()
    }
}

fn sha256(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// Writes an OCI layout at `dir` holding one image, tag `t`, of gzipped `layers`; returns
/// the layer digests.
fn oci_layout(dir: &Path, layers: &[Vec<u8>]) -> Vec<String> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    oci_layout_claiming(dir, layers, &diff_ids)
}

/// As `oci_layout`, with the config claiming `diff_ids`.
fn oci_layout_claiming(dir: &Path, layers: &[Vec<u8>], diff_ids: &[String]) -> Vec<String> {
    let _ = std::fs::remove_dir_all(dir);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let digest = sha256(data);
        std::fs::write(blobs.join(&digest["sha256:".len()..]), data).unwrap();
        json!({ "digest": digest, "size": data.len() })
    };
    let mut descriptors = Vec::new();
    for tar in layers {
        let mut d = put(&gzip(tar));
        d["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar+gzip");
        descriptors.push(d);
    }
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["/bin/sh"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let mut config = put(config.to_string().as_bytes());
    config["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": descriptors,
    });
    let mut m = put(manifest.to_string().as_bytes());
    m["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
    m["annotations"] = json!({ "org.opencontainers.image.ref.name": "t" });
    let index = json!({ "schemaVersion": 2, "manifests": [m] });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    descriptors
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect()
}

fn skopeo_push(layout: &Path, tag: &str, dest: &str) {
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{dest}")));
}

/// Three layers: busybox plus files (umoci repack), deletions and a hardlink (umoci
/// repack), an opaque directory, a whiteout and a device node (a tar added verbatim by
/// `umoci raw add-layer`); tag `t2` adds a fourth layer on top.
fn umoci_image(work: &Path) -> PathBuf {
    let layout = work.join("oci");
    let tar = busybox_tar(work);
    let busybox = tar.parent().unwrap().join("rootfs");
    run(Command::new("umoci")
        .arg("init")
        .arg("--layout")
        .arg(&layout));
    let image = format!("{}:t", layout.display());
    run(Command::new("umoci").args(["new", "--image", &image]));

    let b1 = work.join("b1");
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&b1));
    run(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", busybox.display()))
        .arg(b1.join("rootfs")));
    sh(
        &b1.join("rootfs"),
        "mkdir -p data opq/sub links other modes
         echo del > data/del.txt; echo keep > data/keep.txt
         echo o1 > opq/old1; echo o2 > opq/sub/old2
         echo hl > links/a; ln links/a links/b; ln links/a other/c
         ln -s a links/sym; ln -s /data/keep.txt links/abs
         echo s > modes/suid; chown 1000:1000 modes/suid; chmod 4755 modes/suid
         echo r > modes/ro; chown 123:456 modes/ro; chmod 0400 modes/ro
         mkdir modes/d; chown 7:8 modes/d; chmod 0700 modes/d
         echo x > modes/x
         touch -h -d @1500000000 modes/suid modes/ro modes/d modes/x links/sym",
    );
    xattr::set(b1.join("rootfs/modes/x"), "user.polis", b"kept").unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&b1));

    let b2 = work.join("b2");
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&b2));
    sh(
        &b2.join("rootfs"),
        "rm data/del.txt links/abs
         echo changed > data/keep.txt; ln data/keep.txt other/keep-link
         chmod 0640 modes/ro",
    );
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&b2));

    let mut layer = Layer::new();
    layer
        .entry("opq", EntryType::Directory, None, b"")
        .file("opq/.wh..wh..opq", "")
        .file("opq/new", "fresh")
        .file("links/.wh.sym", "")
        .entry("devnull", EntryType::Char, None, b"");
    let raw = work.join("layer3.tar");
    std::fs::write(&raw, layer.finish()).unwrap();
    run(Command::new("umoci")
        .args(["raw", "add-layer", "--image", &image])
        .arg(&raw));

    let mut layer = Layer::new();
    layer.file("top.txt", "top");
    let raw = work.join("layer4.tar");
    std::fs::write(&raw, layer.finish()).unwrap();
    run(Command::new("umoci")
        .args(["raw", "add-layer", "--image", &image, "--tag", "t2"])
        .arg(&raw));
    layout
}

#[test]
fn umoci_layers_unpack_at_pull_and_run_file_by_file() {
    let d = Daemon::start("layers-umoci");
    let reg = Registry::start(&d.dir.join("registry"), None);
    let layout = umoci_image(&d.dir.join("build"));
    let host = reg.host();
    let repo = format!("{host}/layers");
    skopeo_push(&layout, "t", &format!("{repo}:t"));
    skopeo_push(&layout, "t2", &format!("{repo}:t2"));

    // The stream as dockerd sends it: per layer, download, then Extracting with the
    // compressed blob's byte progress, then Pull complete; layers extract bottom first.
    let stream = pull_stream(&d, &repo, "t");
    let layers = layer_shorts(&reg, "layers", "t");
    assert_eq!(layers.len(), 3, "{stream:?}");
    let position = |short: &str, status: &str| {
        stream
            .iter()
            .position(|m| m["id"] == short && m["status"] == status)
            .unwrap_or_else(|| panic!("no {status:?} for {short}: {stream:#?}"))
    };
    for (short, size) in &layers {
        assert_eq!(
            statuses(&stream, short),
            [
                "Pulling fs layer",
                "Downloading",
                "Verifying Checksum",
                "Download complete",
                "Extracting",
                "Pull complete"
            ],
            "{stream:#?}"
        );
        let extracting: Vec<&Value> = stream
            .iter()
            .filter(|m| m["id"] == short.as_str() && m["status"] == "Extracting")
            .collect();
        let last = extracting.last().unwrap();
        assert_eq!(
            last["progressDetail"],
            json!({ "current": size, "total": size }),
            "{last}"
        );
        assert!(
            last["progress"].as_str().unwrap().starts_with("[=====")
                && last["progress"].as_str().unwrap().contains("B/"),
            "{last}"
        );
        assert_eq!(
            stream
                .iter()
                .filter(|m| m["id"] == short.as_str() && m["status"] == "Pull complete")
                .count(),
            1
        );
        assert_eq!(
            stream
                .iter()
                .find(|m| m["id"] == short.as_str() && m["status"] == "Pull complete")
                .unwrap(),
            &json!({ "status": "Pull complete", "progressDetail": {}, "id": short })
        );
    }
    for pair in layers.windows(2) {
        assert!(position(&pair[0].0, "Pull complete") < position(&pair[1].0, "Extracting"));
    }
    let tail: Vec<&str> = stream[stream.len() - 2..]
        .iter()
        .map(|m| m["status"].as_str().unwrap())
        .collect();
    assert!(tail[0].starts_with("Digest: sha256:"), "{tail:?}");
    assert_eq!(
        tail[1],
        format!("Status: Downloaded newer image for {repo}:t")
    );
    // The snapshots exist once the pull is done, before any container.
    assert_eq!(snapshots(&d).len(), 3, "{:?}", snapshots(&d));

    // File by file in a running container.
    let script = r#"
        echo "data=$(ls -A /data | tr '\n' ' ')"
        echo "keep=$(cat /data/keep.txt)"
        echo "opq=$(ls -A /opq | tr '\n' ' ')"
        echo "links=$(ls -A /links | tr '\n' ' ')"
        echo "abc=$(stat -c %i /links/a /links/b /other/c | sort -u | wc -l) $(stat -c %h /links/a)"
        echo "keeplink=$(stat -c %i /data/keep.txt /other/keep-link | sort -u | wc -l) $(cat /other/keep-link)"
        echo "suid=$(stat -c '%a %u %g %Y' /modes/suid)"
        echo "ro=$(stat -c '%a %u %g %Y' /modes/ro)"
        echo "d=$(stat -c '%a %u %g %Y' /modes/d)"
        echo "dev=$(stat -c '%F %t:%T' /devnull)"
    "#;
    let out = ok(
        &d,
        &["run", "--rm", &format!("{repo}:t"), "/bin/sh", "-c", script],
    );
    let expected = [
        "data=keep.txt ",
        "keep=changed",
        "opq=new ",
        "links=a b ",
        "abc=1 3",
        "keeplink=1 changed",
        "suid=4755 1000 1000 1500000000",
        "ro=640 123 456 1500000000",
        "d=700 7 8 1500000000",
        "dev=character special file 1:3",
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "{out}");
    // umoci keeps user xattrs; so does the snapshot.
    let with_x: Vec<PathBuf> = snapshots(&d)
        .iter()
        .map(|s| storage(&d).join("snapshots").join(s).join("fs/modes/x"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(with_x.len(), 1);
    assert_eq!(
        xattr::get(&with_x[0], "user.polis").unwrap().as_deref(),
        Some(&b"kept"[..])
    );

    // t2 shares three layers: they already exist, only the fourth is extracted.
    let stream = pull_stream(&d, &repo, "t2");
    let layers2 = layer_shorts(&reg, "layers", "t2");
    for (short, _) in &layers2[..3] {
        assert_eq!(statuses(&stream, short), ["Already exists"], "{stream:#?}");
    }
    assert_eq!(
        statuses(&stream, &layers2[3].0),
        [
            "Pulling fs layer",
            "Downloading",
            "Verifying Checksum",
            "Download complete",
            "Extracting",
            "Pull complete"
        ]
    );
    assert_eq!(snapshots(&d).len(), 4);
    let again = ok(&d, &["pull", &format!("{repo}:t2")]);
    assert!(again.contains("Image is up to date"), "{again}");
    assert!(!again.contains("Extracting"), "{again}");

    // An imported image has no snapshot until a container is created from it.
    import_busybox(&d);
    assert_eq!(snapshots(&d).len(), 4);
    let out = ok(&d, &["run", "--rm", "busybox:local", "echo", "created"]);
    assert_eq!(out.trim(), "created");
    assert_eq!(snapshots(&d).len(), 5);
}

#[test]
fn hostile_layers_are_refused_at_pull_and_leave_nothing() {
    let d = daemon_with_config(
        "layers-hostile",
        "max-layer-size = \"16MiB\"\nlayer-device-nodes = false\n",
    );
    let reg = Registry::start(&d.dir.join("registry"), None);
    let name = format!("{}/hostile:t", reg.host());
    let layout = d.dir.join("oci");
    let outside = d.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let mut base = Layer::new();
    base.entry("etc", EntryType::Directory, None, b"")
        .file("etc/base.txt", "base");
    let base = base.finish();

    let mut layer = Layer::new();
    let zeros = vec![0u8; 64 << 20];
    let outside_str = outside.to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            layer
                .file("ok.txt", "fine")
                .file("../polis-evil", "x")
                .finish(),
            "layer entry \"../polis-evil\": path contains \"..\", which could escape the layer",
        ),
        (
            "absolute climbing out",
            layer.file("/../../polis-evil", "x").finish(),
            "layer entry \"/../../polis-evil\": path is an absolute path",
        ),
        (
            "absolute path",
            layer.file("/polis-evil", "x").finish(),
            "layer entry \"/polis-evil\": path is an absolute path",
        ),
        (
            "symlink escape",
            layer
                .entry("esc", EntryType::Symlink, Some(&outside_str), b"")
                .file("esc/pwned", "x")
                .finish(),
            "layer entry \"esc/pwned\": path goes through the symlink \"esc\"",
        ),
        (
            "hardlink outside",
            layer
                .entry("pw", EntryType::Link, Some("/etc/passwd"), b"")
                .finish(),
            "layer entry \"pw\": hardlink target \"/etc/passwd\" is an absolute path",
        ),
        (
            "device node",
            layer.entry("dev/mem", EntryType::Char, None, b"").finish(),
            "layer entry \"dev/mem\": character device 1:3 refused",
        ),
        (
            "block device",
            layer.entry("sda", EntryType::Block, None, b"").finish(),
            "layer entry \"sda\": block device 1:3 refused",
        ),
        (
            "decompression bomb",
            layer
                .entry("bomb", EntryType::Regular, None, &zeros)
                .finish(),
            "uncompressed layer exceeds the limit of 16777216 bytes (max-layer-size",
        ),
    ];

    for (what, hostile, expected) in &cases {
        let digests = oci_layout(&layout, &[base.clone(), hostile.clone()]);
        skopeo_push(&layout, "t", &name);
        let (code, out, err) = docker(&d, &["pull", &name]);
        assert_eq!(code, 1, "{what}: {out}{err}");
        assert!(
            err.contains(&format!("layer {}", digests[1])),
            "{what}: {err}"
        );
        assert!(err.contains(expected), "{what}: {err}");
        let whole = format!("failed to register layer {}: {expected}", digests[1]);
        assert!(err.contains(&whole), "{what}: {err}");
        if *what == "device node" {
            assert!(
                err.contains("(layer-device-nodes in the daemon config)"),
                "{err}"
            );
        }
        // None of it stays: no snapshot (the good base layer's neither), nothing staged,
        // no blob, no image, no reference; nothing written outside.
        assert!(snapshots(&d).is_empty(), "{what}: {:?}", snapshots(&d));
        for dir in ["staging", "index"] {
            assert!(ls(&storage(&d).join(dir)).is_empty(), "{what}: {dir}");
        }
        assert!(ls(&storage(&d).join("snapshots")).is_empty(), "{what}");
        assert!(blobs(&d).is_empty(), "{what}: {:?}", blobs(&d));
        assert_eq!(ok(&d, &["images", "-aq"]), "", "{what}");
        let (code, _, _) = docker(&d, &["image", "inspect", &name]);
        assert_ne!(code, 0, "{what}: the reference stayed");
        assert!(ls(&outside).is_empty(), "{what}: wrote outside");
        assert!(!Path::new("/polis-evil").exists());
        assert!(!d.dir.join("root/polis-evil").exists());
    }

    // The registry serves a good image under the same name: the pull goes through.
    let mut good = Layer::new();
    good.file("etc/good.txt", "good");
    oci_layout(&layout, &[base.clone(), good.finish()]);
    skopeo_push(&layout, "t", &name);
    let out = ok(&d, &["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    assert_eq!(snapshots(&d).len(), 2);
    let top = storage(&d).join("snapshots").join(&snapshots(&d)[1]);
    assert_eq!(
        std::fs::read_to_string(top.join("fs/etc/good.txt")).unwrap(),
        "good"
    );
    assert!(!ok(&d, &["images", "-q"]).trim().is_empty());
}

#[test]
fn a_layer_that_is_not_its_diff_id_is_refused_and_nothing_stays() {
    let d = Daemon::start("layers-diffid");
    let reg = Registry::start(&d.dir.join("registry"), None);
    let name = format!("{}/diffid:t", reg.host());
    let layout = d.dir.join("oci");
    // Big enough that the layers unpack side by side, not one after the other.
    let mut data = vec![0u8; 2 << 20];
    let mut x = 0x2545f491u32;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let layers: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            let mut layer = Layer::new();
            layer
                .entry(&format!("layer{i}"), EntryType::Regular, None, &data[i..])
                .finish()
        })
        .collect();
    let right: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    // The bottom layer wrong (the others may be unpacked already), then the top one (the
    // ones below are snapshots by then).
    for wrong in [0, 2] {
        let mut claimed = right.clone();
        claimed[wrong] = sha256(b"something else");
        let digests = oci_layout_claiming(&layout, &layers, &claimed);
        skopeo_push(&layout, "t", &name);
        let (code, out, err) = docker(&d, &["pull", &name]);
        assert_eq!(code, 1, "{wrong}: {out}{err}");
        let expected = format!(
            "failed to register layer {}: content has diff ID {}, expected {}",
            digests[wrong], right[wrong], claimed[wrong]
        );
        assert!(err.contains(&expected), "{wrong}: {err}");
        assert!(snapshots(&d).is_empty(), "{wrong}: {:?}", snapshots(&d));
        for dir in ["staging", "index", "snapshots"] {
            assert!(ls(&storage(&d).join(dir)).is_empty(), "{wrong}: {dir}");
        }
        assert!(blobs(&d).is_empty(), "{wrong}: {:?}", blobs(&d));
        assert_eq!(ok(&d, &["images", "-aq"]), "", "{wrong}");
    }

    // The right diff IDs: three snapshots, each layer's file in its own.
    oci_layout(&layout, &layers);
    skopeo_push(&layout, "t", &name);
    let stream = pull_stream(&d, &format!("{}/diffid", reg.host()), "t");
    let shorts = layer_shorts(&reg, "diffid", "t");
    for (short, _) in &shorts {
        assert_eq!(
            statuses(&stream, short),
            [
                "Pulling fs layer",
                "Downloading",
                "Verifying Checksum",
                "Download complete",
                "Extracting",
                "Pull complete"
            ],
            "{stream:#?}"
        );
    }
    let position = |short: &str, status: &str| {
        stream
            .iter()
            .position(|m| m["id"] == short && m["status"] == status)
            .unwrap()
    };
    for pair in shorts.windows(2) {
        assert!(position(&pair[0].0, "Pull complete") < position(&pair[1].0, "Extracting"));
    }
    let snaps = snapshots(&d);
    assert_eq!(snaps.len(), 3, "{snaps:?}");
    for (i, snap) in snaps.iter().enumerate() {
        let fs = storage(&d).join("snapshots").join(snap).join("fs");
        assert_eq!(ls(&fs), [format!("layer{i}")]);
    }
    // Docker's size: the unpacked files of every layer.
    let size = ok(&d, &["image", "inspect", "-f", "{{.Size}}", &name]);
    let expected: u64 = snaps
        .iter()
        .enumerate()
        .map(|(i, snap)| {
            let file = storage(&d).join("snapshots").join(snap).join("fs");
            std::fs::metadata(file.join(format!("layer{i}")))
                .unwrap()
                .len()
        })
        .sum();
    assert!(expected > 0);
    assert_eq!(size.trim(), expected.to_string());
}

//! Image lifetimes through the docker CLI: `rmi` of a pulled tag takes its digest
//! reference and the layer snapshots with it, `image prune` (dangling, `-a`, label and
//! until filters) spares images containers use, `images` filters, nothing left on disk
//! once everything is removed, orphan snapshots removed at daemon start, and `rmi` not
//! waiting for a pull in flight.

mod common;

use common::daemon::{busybox_tar, import_busybox, Daemon};
use common::registry::{ok, polis, Registry};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Blob files in the daemon's content store.
fn blobs(d: &Daemon) -> Vec<String> {
    names(&d.dir.join("root/images/blobs/sha256"))
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// Committed layer snapshots (numbered directories) of the daemon's snapshotter.
fn snapshots(d: &Daemon) -> Vec<String> {
    names(&d.dir.join("root/storage/snapshots"))
        .into_iter()
        .filter(|n| n.parse::<u64>().is_ok())
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.is_empty()).collect()
}

/// The full ID of an image.
fn image_id(d: &Daemon, name: &str) -> String {
    ok(d, &["image", "inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_string()
}

/// A one-layer image `name` in the registry, pushed by skopeo from a docker-archive the
/// daemon saved; the daemon's own copy is removed again.
fn push_busybox(d: &Daemon, reg: &Registry, name: &str) {
    import_busybox(d);
    let archive = d.dir.join("bb.tar");
    ok(
        d,
        &["save", "-o", archive.to_str().unwrap(), "busybox:local"],
    );
    reg.push(&archive, name, &[]);
    ok(d, &["rmi", "busybox:local"]);
    assert!(blobs(d).is_empty(), "{:?}", blobs(d));
}

#[test]
fn rmi_of_a_pulled_tag_takes_its_digest_layers_and_snapshots() {
    let d = Daemon::start("gc-rmi-pulled");
    let reg = Registry::start(&d.dir.join("registry"), None);
    push_busybox(&d, &reg, "bb:1");
    let name = format!("{}/bb:1", reg.host());
    ok(&d, &["pull", &name]);
    let id = image_id(&d, &name);
    let digests = ok(
        &d,
        &["image", "inspect", "-f", "{{json .RepoDigests}}", &name],
    );
    let digest_ref: Vec<String> = serde_json::from_str(digests.trim()).unwrap();
    assert_eq!(digest_ref.len(), 1, "{digests}");
    let diff_id = ok(
        &d,
        &[
            "image",
            "inspect",
            "-f",
            "{{index .RootFS.Layers 0}}",
            &name,
        ],
    );
    // The pull unpacked the layer into a snapshot; a container on it leaves it there.
    assert_eq!(snapshots(&d).len(), 1);
    ok(&d, &["run", "--rm", &name, "true"]);
    assert_eq!(snapshots(&d).len(), 1);
    assert_eq!(blobs(&d).len(), 3, "config, manifest, layer");

    // A second tag of the repository: only that tag goes.
    let other = format!("{}/bb:2", reg.host());
    ok(&d, &["tag", &name, &other]);
    assert_eq!(ok(&d, &["rmi", &other]), format!("Untagged: {other}\n"));
    // The last tag takes the digest reference, the image and its layer with it.
    let out = ok(&d, &["rmi", &name]);
    assert_eq!(
        lines(&out),
        vec![
            format!("Untagged: {name}"),
            format!("Untagged: {}", digest_ref[0]),
            format!("Deleted: {id}"),
            format!("Deleted: {}", diff_id.trim()),
        ],
        "{out}"
    );
    assert_eq!(ok(&d, &["images", "-aq"]), "");
    assert!(blobs(&d).is_empty(), "{:?}", blobs(&d));
    assert!(snapshots(&d).is_empty(), "{:?}", snapshots(&d));

    // Pulled again: the digest reference alone (no tag) still names the image, and
    // removing it removes the image.
    ok(&d, &["pull", &name]);
    ok(&d, &["rmi", &name]);
    ok(&d, &["pull", &digest_ref[0]]);
    let out = ok(&d, &["rmi", &digest_ref[0]]);
    assert!(
        out.starts_with(&format!("Untagged: {}\nDeleted: {id}\n", digest_ref[0])),
        "{out}"
    );
    assert!(blobs(&d).is_empty() && snapshots(&d).is_empty());
}

/// An image imported from the busybox rootfs with `changes`, untagged unless `name`.
fn import(d: &Daemon, changes: &[&str], name: Option<&str>) -> String {
    let tar = d.dir.join("rootfs.tar");
    if !tar.exists() {
        busybox_tar(&d.dir);
    }
    let mut args = vec!["import"];
    for c in changes {
        args.extend(["-c", c]);
    }
    args.push(tar.to_str().unwrap());
    args.extend(name);
    ok(d, &args).trim().to_string()
}

#[test]
fn prune_dangling_then_all_sparing_images_in_use() {
    let d = Daemon::start("gc-prune");
    import_busybox(&d);
    let base = image_id(&d, "busybox:local");
    // Dangling: one imported with a label, one committed from a container.
    let labelled = import(&d, &["LABEL keep=1", "CMD [\"sh\"]"], None);
    ok(
        &d,
        &[
            "run",
            "--name",
            "c1",
            "busybox:local",
            "sh",
            "-c",
            "echo 1 > /f",
        ],
    );
    let committed = ok(&d, &["commit", "c1"]).trim().to_string();
    // In use by a stopped container only.
    ok(
        &d,
        &[
            "run",
            "--name",
            "c2",
            "busybox:local",
            "sh",
            "-c",
            "echo 2 > /g",
        ],
    );
    ok(&d, &["commit", "c2", "used:1"]);
    let used = image_id(&d, "used:1");
    ok(&d, &["rm", "c1", "c2"]);
    ok(&d, &["create", "--name", "holder", "used:1", "true"]);
    let all = |d: &Daemon| {
        let mut v: Vec<String> = lines(&ok(d, &["images", "-aq", "--no-trunc"]))
            .into_iter()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    assert_eq!(all(&d).len(), 4);

    let (code, _, err) = d.docker(&["image", "prune", "-f", "--filter", "foo=bar"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid filter 'foo'"), "{err}");
    // Nothing is older than an hour.
    assert_eq!(
        ok(&d, &["image", "prune", "-f", "--filter", "until=1h"]),
        "Total reclaimed space: 0B\n"
    );
    // label!: the committed one only; the removed layer is its own.
    let out = ok(&d, &["image", "prune", "-f", "--filter", "label!=keep=1"]);
    assert!(
        out.starts_with(&format!(
            "Deleted Images:\ndeleted: {committed}\ndeleted: sha256:"
        )),
        "{out}"
    );
    assert!(out.contains("\n\nTotal reclaimed space: "), "{out}");
    assert!(!out.contains("Total reclaimed space: 0B"), "{out}");
    // label, by the polis CLI: the labelled one, whose layer busybox:local still has.
    let (code, out, err) = polis(&d, &["image", "prune", "-f", "--filter", "label=keep=1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!(
            "Deleted Images:\ndeleted: {labelled}\n\nTotal reclaimed space: "
        )),
        "{out}"
    );
    // Dangling only: tagged images stay.
    assert_eq!(
        ok(&d, &["image", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
    let mut want = vec![base.clone(), used.clone()];
    want.sort();
    assert_eq!(all(&d), want);

    // -a: every image no container uses; the stopped container keeps its image.
    let out = ok(&d, &["image", "prune", "-a", "-f"]);
    assert!(
        out.starts_with(&format!(
            "Deleted Images:\nuntagged: busybox:local\ndeleted: {base}\n"
        )),
        "{out}"
    );
    assert_eq!(all(&d), vec![used.clone()]);
    assert_eq!(ok(&d, &["start", "-a", "holder"]), "");
    // The stopped container's image cannot go without force; once it is removed, it can.
    let (code, _, err) = d.docker(&["rmi", "used:1"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unable to remove repository reference \"used:1\" (must force) - container"),
        "{err}"
    );
    ok(&d, &["rm", "holder"]);
    let (code, out, err) = polis(&d, &["image", "prune", "-a", "-f"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("untagged: used:1\ndeleted: {used}\n")),
        "{out}"
    );
    assert!(all(&d).is_empty());
    assert!(blobs(&d).is_empty(), "{:?}", blobs(&d));
    assert!(snapshots(&d).is_empty(), "{:?}", snapshots(&d));
}

#[test]
fn images_filters() {
    let d = Daemon::start("gc-images-filters");
    import_busybox(&d);
    ok(&d, &["tag", "busybox:local", "busybox:1.0"]);
    ok(&d, &["tag", "busybox:local", "other:1.0"]);
    let base = image_id(&d, "busybox:local");
    // Created a second later: before/since tell them apart.
    std::thread::sleep(Duration::from_millis(1100));
    let dangling = import(&d, &["LABEL a=b"], None);
    let q = |args: &[&str]| -> Vec<String> {
        let mut all = vec![
            "images",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Repository}}:{{.Tag}}",
        ];
        all.extend_from_slice(args);
        let (code, out, err) = d.docker(&all);
        assert_eq!(code, 0, "{args:?}: {err}");
        let (pcode, pout, perr) = polis(&d, &all);
        assert_eq!(pcode, 0, "polis {args:?}: {perr}");
        // Docker's order of one image's rows is its map order: compared sorted.
        let mut rows: Vec<String> = lines(&out).into_iter().map(str::to_string).collect();
        rows.sort();
        let mut polis_rows: Vec<String> = lines(&pout).into_iter().map(str::to_string).collect();
        polis_rows.sort();
        assert_eq!(polis_rows, rows, "polis and docker differ on {args:?}");
        rows
    };
    let row = |id: &str, r: &str| format!("{id} {r}");
    assert_eq!(
        q(&["--filter", "reference=busybox*"]),
        vec![row(&base, "busybox:1.0"), row(&base, "busybox:local")]
    );
    assert_eq!(
        q(&["--filter", "reference=*:1.0"]),
        vec![row(&base, "busybox:1.0"), row(&base, "other:1.0")]
    );
    assert_eq!(
        q(&["other"]),
        vec![row(&base, "other:1.0")],
        "a positional name filters by reference"
    );
    assert_eq!(
        q(&["--filter", "dangling=true"]),
        vec![row(&dangling, "<none>:<none>")]
    );
    assert_eq!(q(&["--filter", "dangling=false"]).len(), 3);
    assert_eq!(
        q(&["-f", "label=a=b"]),
        vec![row(&dangling, "<none>:<none>")]
    );
    assert_eq!(q(&["-f", "label=a"]), vec![row(&dangling, "<none>:<none>")]);
    assert!(q(&["-f", "label=a=c"]).is_empty());
    assert!(q(&["-f", "before=busybox:local"]).is_empty());
    assert_eq!(q(&["-f", &format!("before={dangling}")]).len(), 3);
    assert_eq!(
        q(&["-f", "since=busybox:local"]),
        vec![row(&dangling, "<none>:<none>")]
    );
    let quiet = ok(&d, &["images", "-q", "-f", "dangling=true"]);
    assert_eq!(quiet, format!("{}\n", &dangling["sha256:".len()..][..12]));

    for (filter, msg) in [
        ("foo=bar", "invalid filter 'foo'"),
        ("dangling=maybe", "Invalid filter 'dangling=[maybe]'"),
        ("before=nosuch", "No such image: nosuch:latest"),
    ] {
        let (code, _, err) = d.docker(&["images", "-f", filter]);
        assert_eq!(code, 1, "{filter}");
        assert!(err.contains(msg), "{filter}: {err}");
    }
}

/// A loopback TCP relay to `target` that sends at most `rate` bytes a second towards
/// the client, counting what it relayed.
struct SlowProxy {
    port: u16,
    relayed: Arc<AtomicU64>,
}

impl SlowProxy {
    fn start(target: u16, rate: u64) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let relayed = Arc::new(AtomicU64::new(0));
        let counter = relayed.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    return;
                };
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let counter = counter.clone();
                let (mut s_read, mut c_write) = (server, client);
                std::thread::spawn(move || {
                    let chunk = 16 * 1024;
                    let pause = Duration::from_secs_f64(chunk as f64 / rate as f64);
                    let mut buf = vec![0u8; chunk];
                    loop {
                        let n = match s_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        counter.fetch_add(n as u64, Ordering::SeqCst);
                        std::thread::sleep(pause);
                    }
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        SlowProxy { port, relayed }
    }
}

/// A tar of one file of `size` pseudo-random bytes (which compression cannot shrink: the
/// registry copy of the layer is gzipped).
fn big_tar(dir: &Path, size: usize) -> PathBuf {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..size / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    let path = dir.join("big.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    // Owner and time too: a pull unpacks the layer, and refuses empty numeric fields.
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, "big", &data[..]).unwrap();
    b.finish().unwrap();
    path
}

#[test]
fn rmi_does_not_wait_for_a_pull_in_flight() {
    let d = Daemon::start("gc-rmi-during-pull");
    let reg = Registry::start(&d.dir.join("registry"), None);
    // An 8 MB layer, served at 2 MB/s: a pull of about four seconds.
    let size = 8 << 20;
    let tar = big_tar(&d.dir, size);
    ok(&d, &["import", tar.to_str().unwrap(), "big:1"]);
    let archive = d.dir.join("big-archive.tar");
    ok(&d, &["save", "-o", archive.to_str().unwrap(), "big:1"]);
    reg.push(&archive, "big:1", &[]);
    ok(&d, &["rmi", "big:1"]);
    import_busybox(&d);
    let busybox_blobs = blobs(&d);
    assert_eq!(busybox_blobs.len(), 3);

    let proxy = SlowProxy::start(reg.port, 2 << 20);
    let name = format!("127.0.0.1:{}/big:1", proxy.port);
    let pull = {
        let host = d.host();
        let name = name.clone();
        std::thread::spawn(move || {
            std::process::Command::new(common::daemon::DOCKER)
                .env("DOCKER_HOST", host)
                .args(["pull", &name])
                .output()
                .unwrap()
        })
    };
    // Under way: a good part of a megabyte through.
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.relayed.load(Ordering::SeqCst) < 1 << 20 {
        if pull.is_finished() {
            panic!(
                "the pull ended early: {:?}\n{}",
                pull.join().unwrap(),
                d.log()
            );
        }
        assert!(Instant::now() < deadline, "the pull never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let out = ok(&d, &["rmi", "busybox:local"]);
    let took = started.elapsed();
    assert!(out.contains("Deleted: sha256:"), "{out}");
    assert!(
        !pull.is_finished() && proxy.relayed.load(Ordering::SeqCst) < size as u64,
        "rmi waited for the pull ({took:?})"
    );
    assert!(took < Duration::from_secs(2), "rmi took {took:?}");
    // busybox's blobs went; the pull's temporary file did not.
    assert!(blobs(&d).iter().all(|b| !busybox_blobs.contains(b)));

    let pulled = pull.join().unwrap();
    assert!(pulled.status.success(), "{pulled:?}\n{}", d.log());
    // All of it came: the size shown is the one file's (as Docker, files unpacked).
    let size_shown = ok(&d, &["image", "inspect", "-f", "{{.Size}}", &name]);
    assert_eq!(size_shown.trim(), size.to_string());
    ok(&d, &["rmi", &name]);
    assert!(blobs(&d).is_empty(), "{:?}", blobs(&d));
}

#[test]
fn daemon_start_removes_snapshots_no_image_uses() {
    let mut d = Daemon::start("gc-orphan-snapshots");
    import_busybox(&d);
    ok(&d, &["run", "--rm", "busybox:local", "true"]);
    ok(&d, &["create", "--name", "keep", "busybox:local"]);
    let kept = snapshots(&d);
    assert_eq!(kept.len(), 1);
    d.stop();
    // A snapshot whose image is gone, as a crash in the middle of a removal leaves it.
    let root = d.dir.join("root/storage");
    let chain_hex = "f".repeat(64);
    let orphan = root.join("snapshots/99");
    std::fs::create_dir_all(orphan.join("fs")).unwrap();
    std::fs::write(orphan.join("fs/file"), "x").unwrap();
    let info = serde_json::json!({
        "id": 99, "chain_id": format!("sha256:{chain_hex}"), "diff_id": format!("sha256:{chain_hex}"),
        "parent": null, "parent_id": null, "children": [], "containers": []
    });
    std::fs::write(orphan.join("info.json"), info.to_string()).unwrap();
    std::os::unix::fs::symlink("99", root.join("index").join(&chain_hex)).unwrap();
    d.spawn();
    assert_eq!(snapshots(&d), kept, "{}", d.log());
    assert!(!root.join("index").join(&chain_hex).exists());
    // The container still runs on its own snapshot.
    ok(&d, &["start", "-a", "keep"]);
    ok(&d, &["rm", "keep"]);
    ok(&d, &["rmi", "busybox:local"]);
    assert!(snapshots(&d).is_empty());
}

#[test]
fn rmi_force_deletes_an_image_a_stopped_container_uses() {
    let d = Daemon::start("gc-force");
    let id = import(&d, &[], Some("forced:1"));
    ok(&d, &["tag", "forced:1", "forced:2"]);
    ok(
        &d,
        &[
            "create", "--name", "holder", "forced:1", "sh", "-c", "echo ran",
        ],
    );
    // Without force refused; forced by ID, every reference and the image go, and the
    // layers the container sits on are not reported deleted.
    let (code, _, err) = d.docker(&["rmi", &id]);
    assert_eq!(code, 1);
    assert!(err.contains("must be forced"), "{err}");
    let out = ok(&d, &["rmi", "-f", &id]);
    assert_eq!(
        lines(&out),
        [
            "Untagged: forced:1",
            "Untagged: forced:2",
            &format!("Deleted: {id}"),
        ],
        "{out}"
    );
    assert_eq!(ok(&d, &["images", "-q"]), "");
    // The container still runs on its layers, and shows its image by ID.
    assert_eq!(ok(&d, &["start", "-a", "holder"]), "ran\n");
    let shown = ok(&d, &["ps", "-a", "--format", "{{.Image}}"]);
    assert_eq!(shown.trim(), &id["sha256:".len().."sha256:".len() + 12]);
    assert!(!snapshots(&d).is_empty());
    // Removing the container frees its layers.
    ok(&d, &["rm", "holder"]);
    assert!(snapshots(&d).is_empty(), "{:?}", snapshots(&d));
    assert!(blobs(&d).is_empty(), "{:?}", blobs(&d));

    // By its only reference, forced: untagged and deleted too.
    let id = import(&d, &[], Some("again:1"));
    ok(&d, &["create", "--name", "holder2", "again:1", "true"]);
    let out = ok(&d, &["rmi", "-f", "again:1"]);
    assert_eq!(
        lines(&out),
        ["Untagged: again:1", &format!("Deleted: {id}")],
        "{out}"
    );
    ok(&d, &["rm", "holder2"]);
    assert!(snapshots(&d).is_empty(), "{:?}", snapshots(&d));
}

#[test]
fn images_named_as_routes_can_be_removed() {
    let d = Daemon::start("gc-routes");
    import(&d, &[], Some("base:1"));
    for name in ["prune", "json", "get", "load", "create"] {
        ok(&d, &["tag", "base:1", name]);
        let out = ok(&d, &["rmi", name]);
        assert_eq!(out, format!("Untagged: {name}:latest\n"), "{name}");
    }
}

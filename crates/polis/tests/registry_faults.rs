//! Pulling through faults: a proxy in front of Debian's `docker-registry` (all on
//! 127.0.0.1) cuts blob streams, answers 503 or holds responses back, and counts blob
//! GETs. A cut that lasts fails the pull cleanly after the growing back-off; a cut once is
//! resumed with a `Range` request; a 503 is retried; two pulls sharing a layer download it
//! once. A foreign layer comes from its URL (a tiny loopback server) and is not pushed.

mod common;

use common::daemon::{import_busybox, Daemon};
use common::faultproxy::{BlobServer, Fault, FaultProxy};
use common::registry::{docker, ok, store_blobs, Registry};
use std::process::Command;
use std::time::{Duration, Instant};

/// Removes the image `name` designates with all its references, and checks that its
/// blobs are gone.
fn remove_image(d: &Daemon, name: &str) {
    let id = ok(d, &["image", "inspect", "-f", "{{.Id}}", name]);
    ok(d, &["rmi", "-f", id.trim()]);
    assert_eq!(store_blobs(d), Vec::<String>::new());
}

/// The digest and size of the only (or first) layer of `name:tag` in `reg`.
fn first_layer(reg: &Registry, name: &str, tag: &str) -> (String, u64) {
    let m = reg.manifest(name, tag, None);
    let l = &m["layers"][0];
    (
        l["digest"].as_str().unwrap().to_string(),
        l["size"].as_u64().unwrap(),
    )
}

#[test]
fn cut_streams_and_unavailable_registry() {
    let b = Daemon::start("faults-build");
    let reg = Registry::start(&b.dir.join("registry"), None);
    import_busybox(&b);
    let direct = format!("{}/base:1", reg.host());
    ok(&b, &["tag", "busybox:local", &direct]);
    ok(&b, &["push", &direct]);
    let (layer, size) = first_layer(&reg, "base", "1");
    assert!(size > 100_000, "a layer big enough to cut: {size}");
    let short = &layer["sha256:".len()..][..12];
    let half = size / 2;

    let proxy = FaultProxy::start(reg.port);
    let d = Daemon::start("faults-pull");
    let name = format!("{}/base:1", proxy.host());

    // (a) A stream cut halfway, every time: resumed from the cut each time, retried after
    // a growing back-off, then a clear error naming the layer; nothing is kept.
    proxy.add(Fault::Cut {
        digest: layer.clone(),
        at: half,
        times: None,
    });
    let start = Instant::now();
    let (code, out, err) = docker(&d, &["pull", &name]);
    let took = start.elapsed();
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&layer), "names the layer: {err}");
    assert!(err.contains("gave up after 5 attempts"), "{err}");
    assert!(
        out.contains(&format!("{short}: Retrying in 1 second"))
            && out.contains(&format!("{short}: Retrying in 4 seconds")),
        "Docker's retry status: {out}"
    );
    assert!(
        took >= Duration::from_millis(7500),
        "back-off of 0.5+1+2+4 s: {took:?}"
    );
    assert_eq!(proxy.gets(&layer), 5);
    assert_eq!(
        proxy.ranges(&layer),
        vec![format!("bytes={half}-"); 4],
        "every retry resumes at the cut"
    );
    assert_eq!(
        store_blobs(&d),
        Vec::<String>::new(),
        "no blob, no temp file"
    );
    let (code, _, _) = docker(&d, &["image", "inspect", &name]);
    assert_eq!(code, 1);
    assert_eq!(ok(&d, &["images", "-aq"]), "");

    // The fault gone, the same pull succeeds.
    proxy.reset();
    let out = ok(&d, &["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_eq!(proxy.gets(&layer), 1);
    assert!(proxy.ranges(&layer).is_empty());
    assert_eq!(ok(&d, &["run", "--rm", &name, "echo", "hi"]), "hi\n");

    // (b) Cut once: the retry asks for the rest only, and the content is right.
    remove_image(&d, &name);
    proxy.reset();
    proxy.add(Fault::Cut {
        digest: layer.clone(),
        at: half,
        times: Some(1),
    });
    let out = ok(&d, &["pull", &name]);
    assert!(
        out.contains(&format!("{short}: Retrying in 1 second")),
        "{out}"
    );
    assert_eq!(proxy.gets(&layer), 2);
    assert_eq!(proxy.ranges(&layer), [format!("bytes={half}-")]);
    let stored = store_blobs(&d);
    assert!(
        stored.contains(&layer["sha256:".len()..].to_string()),
        "{stored:?}"
    );
    assert_eq!(
        ok(
            &d,
            &[
                "run",
                "--rm",
                &name,
                "sh",
                "-c",
                "head -1 /etc/passwd; ls /bin/busybox"
            ]
        ),
        "root:x:0:0:root:/root:/bin/sh\n/bin/busybox\n"
    );

    // (c) A 503 for the manifest and one for the layer: both retried.
    remove_image(&d, &name);
    proxy.reset();
    proxy.add(Fault::Unavailable {
        path: "/manifests/1".into(),
        times: 1,
    });
    proxy.add(Fault::Unavailable {
        path: layer.clone(),
        times: 1,
    });
    let out = ok(&d, &["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert!(
        out.contains(&format!("{short}: Retrying in 1 second")),
        "{out}"
    );
    assert_eq!(proxy.gets(&layer), 2);
    assert!(
        proxy.ranges(&layer).is_empty(),
        "nothing to resume after a 503"
    );
    assert_eq!(ok(&d, &["run", "--rm", &name, "true"]), "");

    // A permanent error is not retried: a blob the registry does not have.
    remove_image(&d, &name);
    proxy.reset();
    std::fs::remove_file(reg.blob_path(&layer)).unwrap();
    let start = Instant::now();
    let (code, out, err) = docker(&d, &["pull", &name]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(start.elapsed() < Duration::from_secs(3), "no back-off");
    assert!(!out.contains("Retrying"), "{out}");
    assert_eq!(proxy.gets(&layer), 1);
    assert_eq!(store_blobs(&d), Vec::<String>::new());
}

#[test]
fn concurrent_pulls_download_a_shared_layer_once() {
    let b = Daemon::start("faults-share-build");
    let reg = Registry::start(&b.dir.join("registry"), None);
    import_busybox(&b);
    for tag in ["a", "b"] {
        let name = format!("{}/shared:{tag}", reg.host());
        let ctr = format!("ctr-{tag}");
        ok(
            &b,
            &[
                "run",
                "--name",
                &ctr,
                "busybox:local",
                "sh",
                "-c",
                &format!("echo {tag} > /{tag}.txt"),
            ],
        );
        ok(&b, &["commit", &ctr, &name]);
        ok(&b, &["push", &name]);
    }
    let (base, _) = first_layer(&reg, "shared", "a");
    assert_eq!(
        first_layer(&reg, "shared", "b").0,
        base,
        "a shared base layer"
    );
    let top = |tag: &str| {
        reg.manifest("shared", tag, None)["layers"][1]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let proxy = FaultProxy::start(reg.port);
    // The shared layer is slow to come: both pulls want it while it downloads.
    proxy.add(Fault::Delay {
        digest: base.clone(),
        delay: Duration::from_millis(1500),
    });
    let d = Daemon::start("faults-share");
    let names: Vec<String> = ["a", "b"]
        .iter()
        .map(|t| format!("{}/shared:{t}", proxy.host()))
        .collect();
    std::thread::scope(|s| {
        let pulls: Vec<_> = names
            .iter()
            .map(|n| s.spawn(|| docker(&d, &["pull", n])))
            .collect();
        for p in pulls {
            let (code, out, err) = p.join().unwrap();
            assert_eq!(code, 0, "{out}{err}\n{}", d.log());
        }
    });
    assert_eq!(proxy.gets(&base), 1, "the shared layer is downloaded once");
    assert_eq!(proxy.gets(&top("a")), 1);
    assert_eq!(proxy.gets(&top("b")), 1);
    assert_eq!(ok(&d, &["run", "--rm", &names[0], "cat", "/a.txt"]), "a\n");
    assert_eq!(ok(&d, &["run", "--rm", &names[1], "cat", "/b.txt"]), "b\n");
}

/// Uploads `data` as a blob of `repo` with the registry's monolithic upload.
fn upload_blob(reg: &Registry, repo: &str, data: &[u8]) -> String {
    let digest = polis_image::Digest::of(data).to_string();
    let out = Command::new("curl")
        .args(["-sf", "-X", "POST", "-o", "/dev/null", "-D", "-"])
        .arg(format!("http://{}/v2/{repo}/blobs/uploads/", reg.host()))
        .output()
        .unwrap();
    assert!(out.status.success(), "start upload: {out:?}");
    let headers = String::from_utf8_lossy(&out.stdout).into_owned();
    let location = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Location: {headers}"));
    let file = std::env::temp_dir().join(format!("polis-blob-{}", &digest[7..19]));
    std::fs::write(&file, data).unwrap();
    let sep = if location.contains('?') { '&' } else { '?' };
    let out = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("{location}{sep}digest={digest}"))
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "upload: {out:?}");
    digest
}

/// A gzipped tar of busybox's root filesystem and the digest of the plain tar.
fn rootfs_layer() -> (Vec<u8>, String) {
    let tar = Command::new("tar")
        .arg("-C")
        .arg(common::template_rootfs())
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let diff_id = polis_image::Digest::of(&tar.stdout).to_string();
    (gzip(&tar.stdout), diff_id)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .args(["-n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&data).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// A tar holding one file.
fn file_layer(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, name, content).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn foreign_layer_from_its_url_and_not_pushed() {
    let d = Daemon::start("faults-foreign");
    // The registry refuses manifests with layer URLs unless they are allowed (a
    // top-level setting, after the `http` section this YAML goes into).
    let reg = Registry::start_with(
        &d.dir.join("registry"),
        "validation:\n  manifests:\n    urls:\n      allow:\n        - '^http://127\\.0\\.0\\.1:'\n",
        "",
    );
    let (foreign, foreign_diff) = rootfs_layer();
    let foreign_digest = polis_image::Digest::of(&foreign).to_string();
    // The URL's server cuts its first answer and ignores Range: the retry starts over.
    let server = BlobServer::start(foreign.clone(), Some(foreign.len() as u64 / 3));
    let hello_tar = file_layer("hello.txt", b"hello from a normal layer\n");
    let hello = gzip(&hello_tar);
    let hello_digest = upload_blob(&reg, "foreign", &hello);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [
            foreign_diff, polis_image::Digest::of(&hello_tar).to_string()
        ]},
    })
    .to_string();
    let config_digest = upload_blob(&reg, "foreign", config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [
            {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
             "digest": foreign_digest, "size": foreign.len(),
             "urls": ["http://127.0.0.1:1/nothing-listens-here", server.url("layer.tar.gz")]},
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
             "digest": hello_digest, "size": hello.len()},
        ],
    })
    .to_string();
    let out = Command::new("curl")
        .args([
            "-sS",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.docker.distribution.manifest.v2+json",
            "--data-binary",
            &manifest,
        ])
        .arg(format!("http://{}/v2/foreign/manifests/1", reg.host()))
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "put manifest: {out:?}"
    );
    assert!(!reg.blob_path(&foreign_digest).exists());

    let name = format!("{}/foreign:1", reg.host());
    let (code, out, err) = docker(&d, &["pull", &name]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Downloaded newer image"),
        "{out}{err}{}",
        d.log()
    );
    assert_eq!(server.gets(), 2, "cut once, then whole");
    assert_eq!(
        server.ranges(),
        [format!("bytes={}-", foreign.len() / 3)],
        "the retry asked to resume; the server answered with the whole blob"
    );
    assert_eq!(
        ok(
            &d,
            &[
                "run",
                "--rm",
                &name,
                "sh",
                "-c",
                "cat /hello.txt; ls /bin/busybox"
            ]
        ),
        "hello from a normal layer\n/bin/busybox\n"
    );

    // Pushed elsewhere: the foreign layer is skipped, the manifest keeps its URLs.
    let copy = format!("{}/copy:1", reg.host());
    ok(&d, &["tag", &name, &copy]);
    let out = ok(&d, &["push", &copy]);
    let short = &foreign_diff["sha256:".len()..][..12];
    assert!(
        out.contains(&format!("{short}: Skipped foreign layer")),
        "{out}"
    );
    assert!(
        !reg.blob_path(&foreign_digest).exists(),
        "foreign blob uploaded"
    );
    let m = reg.manifest("copy", "1", None);
    assert_eq!(m["layers"][0]["digest"], foreign_digest.as_str());
    assert_eq!(
        m["layers"][0]["urls"][1],
        server.url("layer.tar.gz").as_str()
    );
    assert_eq!(server.gets(), 2, "the push fetched nothing");
}

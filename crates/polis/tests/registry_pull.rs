//! Pulling from a registry: Debian's `docker-registry` on 127.0.0.1, images pushed into it
//! by skopeo (an independent tool), pulled through polisd by the docker CLI and by
//! `polis pull`, anonymously and with htpasswd basic auth; missing tags and a corrupted
//! blob are refused with clear errors and leave nothing in the store.

mod common;

use common::daemon::{import_busybox, Daemon};
use common::registry::{docker, ok, polis, registry_with_basic_auth, store_blobs, Registry};
use std::path::PathBuf;
use std::process::Command;

/// busybox:local plus two committed layers (a file added, then one added and one
/// deleted), saved as a docker-archive.
fn layered_archive(d: &Daemon) -> PathBuf {
    import_busybox(d);
    ok(
        d,
        &[
            "run",
            "--name",
            "l1",
            "busybox:local",
            "sh",
            "-c",
            "echo one > /one.txt && echo keep > /keep.txt",
        ],
    );
    ok(d, &["commit", "l1", "layered:1"]);
    ok(
        d,
        &[
            "run",
            "--name",
            "l2",
            "layered:1",
            "sh",
            "-c",
            "echo two > /two.txt && rm /one.txt",
        ],
    );
    ok(d, &["commit", "l2", "layered:2"]);
    ok(d, &["rm", "l1", "l2"]);
    let archive = d.dir.join("layered.tar");
    ok(d, &["save", "-o", archive.to_str().unwrap(), "layered:2"]);
    archive
}

#[test]
fn pull_anonymous_run_missing_tag_and_corrupt_blob() {
    let d = Daemon::start("pull-anon");
    let reg = Registry::start(&d.dir.join("registry"), None);
    let archive = layered_archive(&d);
    reg.push(&archive, "layered:v1", &[]);
    reg.push(&archive, "layered:oci", &["--format", "oci"]);
    let host = reg.host();
    let name = format!("{host}/layered:v1");

    // docker pull: Docker's progress lines, then the image runs with all three layers.
    let out = ok(&d, &["pull", &name]);
    assert!(out.contains("v1: Pulling from layered"), "{out}");
    assert!(out.contains("Pull complete"), "{out}");
    let digest_line = out.lines().find(|l| l.starts_with("Digest: sha256:"));
    assert!(digest_line.is_some(), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}")),
        "{out}"
    );
    let run = ok(
        &d,
        &[
            "run",
            "--rm",
            &name,
            "sh",
            "-c",
            "cat /two.txt /keep.txt; ls /one.txt 2>&1; true",
        ],
    );
    assert_eq!(
        run.lines().take(2).collect::<Vec<_>>(),
        ["two", "keep"],
        "{run}"
    );
    assert!(run.contains("No such file"), "whiteout not applied: {run}");
    let images = ok(
        &d,
        &[
            "images",
            "--digests",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.Digest}}",
        ],
    );
    let digest = digest_line.unwrap().trim_start_matches("Digest: ");
    assert!(
        images.contains(&format!("{host}/layered:v1 {digest}")),
        "{images}"
    );
    // A second pull finds it up to date; so does a pull by digest.
    let again = ok(&d, &["pull", &name]);
    assert!(again.contains("Status: Image is up to date for"), "{again}");
    assert!(!again.contains("Already exists"), "{again}");
    let by_digest = format!("{host}/layered@{digest}");
    let out = ok(&d, &["pull", &by_digest]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    // A pulled image saves like any other.
    let saved = d.dir.join("pulled.tar");
    ok(&d, &["save", "-o", saved.to_str().unwrap(), &name]);

    // zstd layers, on a registry of their own: skopeo would reuse the gzip layers.
    let zreg = Registry::start(&d.dir.join("registry-zstd"), None);
    zreg.push(
        &archive,
        "layered:zstd",
        &["--format", "oci", "--dest-compress-format", "zstd"],
    );
    let z = zreg.manifest("layered", "zstd", None);
    assert!(
        z["layers"][0]["mediaType"]
            .as_str()
            .unwrap()
            .ends_with("+zstd"),
        "{z}"
    );
    let zname = format!("{}/layered:zstd", zreg.host());
    ok(&d, &["pull", &zname]);
    assert_eq!(ok(&d, &["run", "--rm", &zname, "cat", "/two.txt"]), "two\n");

    // An OCI manifest, pulled by the polis CLI, and an OCI index (platform selection)
    // pointing at both manifests.
    let (code, out, err) = polis(&d, &["pull", &format!("{host}/layered:oci")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("oci: Pulling from layered"), "{out}");
    assert!(
        !out.contains("Downloading"),
        "plain output has no bars: {out}"
    );
    let put_index = |entries: serde_json::Value| {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        });
        let out = Command::new("curl")
            .args([
                "-sf",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/vnd.oci.image.index.v1+json",
                "--data-binary",
            ])
            .arg(index.to_string())
            .arg(format!("http://{host}/v2/layered/manifests/multi"))
            .output()
            .unwrap();
        assert!(out.status.success(), "put index: {out:?}");
    };
    // The exact digests and sizes, as the registry serves the manifests.
    let head_digest = |tag: &str, accept: &str| {
        let out = Command::new("curl")
            .args(["-sfI", "-H"])
            .arg(format!("Accept: {accept}"))
            .arg(format!("http://{host}/v2/layered/manifests/{tag}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        let line = text
            .lines()
            .find(|l| l.starts_with("docker-content-digest:"))
            .unwrap_or_else(|| panic!("no digest header: {text}"))
            .to_string();
        line.split_once(':').unwrap().1.trim().to_string()
    };
    let oci_digest = head_digest("oci", "application/vnd.oci.image.manifest.v1+json");
    let v1_digest = head_digest("v1", "application/vnd.docker.distribution.manifest.v2+json");
    assert_ne!(oci_digest, v1_digest);
    let size = |tag: &str, accept: &str| -> u64 {
        let out = Command::new("curl")
            .args(["-sf", "-H"])
            .arg(format!("Accept: {accept}"))
            .arg(format!("http://{host}/v2/layered/manifests/{tag}"))
            .output()
            .unwrap();
        out.stdout.len() as u64
    };
    put_index(serde_json::json!([
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": oci_digest,
         "size": size("oci", "application/vnd.oci.image.manifest.v1+json"),
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": v1_digest,
         "size": size("v1", "application/vnd.docker.distribution.manifest.v2+json"),
         "platform": {"os": "linux", "architecture": "amd64"}},
    ]));
    let multi = format!("{host}/layered:multi");
    let out = ok(&d, &["pull", &multi]);
    assert!(out.contains("multi: Pulling from layered"), "{out}");
    let id_of = |r: &str| ok(&d, &["image", "inspect", "--format", "{{.Id}}", r]);
    assert_eq!(
        id_of(&multi),
        id_of(&name),
        "amd64 is the docker manifest's image"
    );
    let (code, out, err) = polis(&d, &["pull", "--platform", "linux/ppc64le", &multi]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("no matching manifest for linux/ppc64le"),
        "{err}"
    );

    // docker run of an image not pulled yet pulls it first.
    ok(&d, &["rmi", &name]);
    let (code, out, err) = docker(&d, &["run", "--rm", &name, "cat", "/two.txt"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "two\n");
    assert!(
        err.contains(&format!("Unable to find image '{name}' locally")),
        "{err}"
    );

    // So does polis run, sending the saved credentials (none here).
    ok(&d, &["rmi", &name]);
    let (code, out, err) = polis(&d, &["run", "--rm", &name, "cat", "/keep.txt"]);
    assert_eq!((code, out.as_str()), (0, "keep\n"), "{err}");
    assert!(err.contains("Pulling from layered"), "{err}");

    // A tag the registry does not have: Docker's message, exit 1 (pull) / 125 (run).
    let nope = format!("{host}/layered:nope");
    let (code, _, err) = docker(&d, &["pull", &nope]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.trim(),
        format!("Error response from daemon: manifest for {nope} not found: manifest unknown: manifest unknown")
    );
    let (code, _, err) = docker(&d, &["run", "--rm", &nope]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("manifest unknown"), "{err}");
    // No registry listening: the reference and the cause are named.
    let (code, _, err) = docker(&d, &["pull", "127.0.0.1:1/nothing:here"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("127.0.0.1:1/nothing:here"), "{err}");
    assert!(err.to_lowercase().contains("connect"), "{err}");

    // A corrupted layer in the registry is refused and nothing of it is kept; once the
    // fault is gone the pull succeeds.
    ok(
        &d,
        &[
            "run",
            "--name",
            "l3",
            "busybox:local",
            "sh",
            "-c",
            "echo three > /three.txt",
        ],
    );
    ok(&d, &["commit", "l3", "corrupt:1"]);
    ok(&d, &["rm", "l3"]);
    let carchive = d.dir.join("corrupt.tar");
    ok(&d, &["save", "-o", carchive.to_str().unwrap(), "corrupt:1"]);
    ok(&d, &["rmi", "corrupt:1"]);
    reg.push(&carchive, "corrupt:1", &[]);
    let m = reg.manifest("corrupt", "1", None);
    let top = m["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = reg.blob_path(&top);
    let good = std::fs::read(&blob).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&blob, &bad).unwrap();
    let before = store_blobs(&d);
    let cname = format!("{host}/corrupt:1");
    let (code, out, err) = docker(&d, &["pull", &cname]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&top[7..19]) || err.contains(&top),
        "names the blob: {err}"
    );
    assert!(err.to_lowercase().contains("digest"), "{err}");
    assert_eq!(store_blobs(&d), before, "a refused pull leaves nothing");
    let (code, _, _) = docker(&d, &["image", "inspect", &cname]);
    assert_eq!(code, 1);
    std::fs::write(&blob, &good).unwrap();
    let out = ok(&d, &["pull", &cname]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_eq!(
        ok(&d, &["run", "--rm", &cname, "cat", "/three.txt"]),
        "three\n"
    );
}

#[test]
fn pull_with_basic_auth_after_login() {
    let d = Daemon::start("pull-auth");
    let reg = registry_with_basic_auth(&d.dir.join("registry-auth"), "alice", "s3cret");
    import_busybox(&d);
    let archive = d.dir.join("busybox.tar");
    ok(
        &d,
        &["save", "-o", archive.to_str().unwrap(), "busybox:local"],
    );
    reg.push(&archive, "private:1", &["--dest-creds", "alice:s3cret"]);
    let host = reg.host();
    let name = format!("{host}/private:1");

    // No credentials: refused, saying so.
    let (code, out, err) = docker(&d, &["pull", &name]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("unauthorized") || err.contains("denied"),
        "{err}"
    );
    assert!(err.contains(&name), "{err}");

    // Wrong password: login fails.
    let (code, out, err) = docker(&d, &["login", "-u", "alice", "-p", "wrong", &host]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("401"), "{err}");

    let (code, out, err) = docker(&d, &["login", "-u", "alice", "-p", "s3cret", &host]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Login Succeeded"), "{out}");
    let out = ok(&d, &["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_eq!(ok(&d, &["run", "--rm", &name, "echo", "hi"]), "hi\n");

    // The polis CLI sends the saved credentials too.
    ok(&d, &["rmi", &name]);
    let (code, out, err) = polis(&d, &["pull", &name]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
}

/// On a terminal `polis pull` draws a live line per layer (redrawn in place), ending in
/// each layer's last status, as docker does.
#[test]
fn pull_on_a_terminal_draws_bars() {
    let d = Daemon::start("pull-tty");
    let reg = Registry::start(&d.dir.join("registry"), None);
    let archive = layered_archive(&d);
    reg.push(&archive, "layered:tty", &[]);
    let name = format!("{}/layered:tty", reg.host());
    let bin = env!("CARGO_BIN_EXE_polis");
    // util-linux's `script` gives the CLI a pseudo-terminal as stdout.
    let out = Command::new("script")
        .args(["-qec", &format!("{bin} pull {name}"), "/dev/null"])
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.join("docker-config"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("\x1b["), "no terminal redraws: {text:?}");
    assert!(text.contains("tty: Pulling from layered"), "{text:?}");
    assert!(text.contains("Pull complete"), "{text:?}");
    assert!(text.contains("Digest: sha256:"), "{text:?}");
    assert!(
        text.contains(&format!("Status: Downloaded newer image for {name}")),
        "{text:?}"
    );
}

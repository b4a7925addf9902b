//! Pushing to a registry: an image imported into polisd is pushed by the docker CLI (and
//! by `polis push`) to Debian's `docker-registry` on 127.0.0.1, read back by skopeo (an
//! independent tool) and pulled into a fresh polisd; blobs the registry has are skipped
//! or mounted from another repository; unknown images and missing credentials are refused.

mod common;

use common::daemon::{import_busybox, Daemon};
use common::registry::{docker, ok, polis, registry_with_basic_auth, Registry};
use std::process::Command;

/// `skopeo` with `args`, which must succeed; its stdout.
fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(out.status.success(), "skopeo {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The digests of a `docker image inspect` RootFS (the layers' diff IDs).
fn diff_ids(d: &Daemon, name: &str) -> Vec<String> {
    let out = ok(
        d,
        &["image", "inspect", "-f", "{{json .RootFS.Layers}}", name],
    );
    serde_json::from_str(out.trim()).unwrap()
}

#[test]
fn push_read_back_skip_mount_and_pull_into_fresh_daemon() {
    let d = Daemon::start("push");
    let reg = Registry::start(&d.dir.join("registry"), None);
    import_busybox(&d);
    let name = format!("{}/x/busybox:1", reg.host());
    ok(&d, &["tag", "busybox:local", &name]);
    let layers = diff_ids(&d, &name);

    let out = ok(&d, &["push", &name]);
    assert!(
        out.contains(&format!(
            "The push refers to repository [{}/x/busybox]",
            reg.host()
        )),
        "{out}"
    );
    let short = &layers[0]["sha256:".len()..][..12];
    assert!(out.contains(&format!("{short}: Pushed")), "{out}");
    let digest_line = out
        .lines()
        .find(|l| l.starts_with("1: digest: sha256:"))
        .unwrap_or_else(|| panic!("no digest line: {out}"));
    let digest = digest_line.split_whitespace().nth(2).unwrap().to_string();

    // skopeo reads back the same manifest digest and the same layer.
    let inspect: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ]))
    .unwrap();
    assert_eq!(inspect["Digest"], digest.as_str(), "{inspect}");
    let copy = d.dir.join("copy");
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{name}"),
        &format!("dir:{}", copy.display()),
    ]);
    // Imported layers are stored (and pushed) uncompressed: the blob is the tar itself.
    let layer = copy.join(&layers[0]["sha256:".len()..]);
    let listing = Command::new("tar").arg("-tf").arg(&layer).output().unwrap();
    assert!(listing.status.success(), "{listing:?}");
    let files = String::from_utf8_lossy(&listing.stdout);
    assert!(
        files
            .lines()
            .any(|l| l.trim_start_matches("./") == "bin/busybox"),
        "{files}"
    );
    // The pushed digest is now one of the image's repo digests.
    let digests = ok(
        &d,
        &["image", "inspect", "-f", "{{json .RepoDigests}}", &name],
    );
    assert!(digests.contains(&digest), "{digests}");

    // Again: every layer is already there.
    let out = ok(&d, &["push", &name]);
    assert!(
        out.contains(&format!("{short}: Layer already exists")),
        "{out}"
    );
    assert!(out.contains(&digest), "{out}");

    // Another repository of the same registry: mounted, not uploaded.
    let other = format!("{}/y/busybox:2", reg.host());
    ok(&d, &["tag", &name, &other]);
    let out = ok(&d, &["push", &other]);
    assert!(
        out.contains(&format!("{short}: Mounted from x/busybox")),
        "{out}"
    );
    assert!(!out.contains("Pushed"), "{out}");

    // --all-tags: every tag of the repository.
    let other_b = format!("{}/y/busybox:2b", reg.host());
    ok(&d, &["tag", &name, &other_b]);
    let out = ok(&d, &["push", "-a", &format!("{}/y/busybox", reg.host())]);
    assert!(out.contains(&format!("2: digest: {digest}")), "{out}");
    assert!(out.contains(&format!("2b: digest: {digest}")), "{out}");

    // A fresh daemon pulls it back and runs it.
    let fresh = Daemon::start("push-fresh");
    let out = ok(&fresh, &["pull", &other]);
    assert!(out.contains(&digest), "{out}");
    assert_eq!(ok(&fresh, &["run", "--rm", &other, "echo", "hi"]), "hi\n");

    // An image pulled with gzip layers and a Docker manifest (pushed by skopeo) goes to
    // another registry as it was: same manifest digest, compressed blobs as stored.
    let archive = d.dir.join("busybox.tar");
    ok(
        &d,
        &["save", "-o", archive.to_str().unwrap(), "busybox:local"],
    );
    reg.push(&archive, "gz/busybox:1", &[]);
    let gz = format!("{}/gz/busybox:1", reg.host());
    ok(&fresh, &["pull", &gz]);
    let second = Registry::start(&d.dir.join("registry2"), None);
    let moved = format!("{}/gz/busybox:1", second.host());
    ok(&fresh, &["tag", &gz, &moved]);
    // Through the API itself: Docker's JSON progress, byte counts and the result record.
    let out = Command::new("curl")
        .args(["-sf", "-X", "POST", "--unix-socket"])
        .arg(&fresh.socket)
        .arg(format!(
            "http://polis/images/{}/gz/busybox/push?tag=1",
            second.host()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let messages: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let has = |f: &dyn Fn(&serde_json::Value) -> bool| messages.iter().any(f);
    assert!(
        has(&|m| m["status"] == "Pushing" && m["progressDetail"]["total"].as_u64() > Some(0)),
        "{messages:?}"
    );
    assert!(has(&|m| m["status"] == "Pushed"), "{messages:?}");
    assert!(
        has(&|m| m["aux"]["Tag"] == "1" && m["aux"]["Digest"].as_str().is_some()),
        "{messages:?}"
    );
    let first = reg.manifest("gz/busybox", "1", None);
    let again = second.manifest("gz/busybox", "1", None);
    assert_eq!(first, again);
    assert_eq!(
        again["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let gz_layer = again["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(
        std::fs::read(reg.blob_path(gz_layer)).unwrap(),
        std::fs::read(second.blob_path(gz_layer)).unwrap()
    );

    // An image the daemon does not have.
    let missing = format!("{}/x/nope:1", reg.host());
    let (code, out, err) = docker(&d, &["push", &missing]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "An image does not exist locally with the tag: {}/x/nope",
            reg.host()
        )),
        "{err}"
    );

    // A digest reference names no tag to push.
    let out = Command::new("curl")
        .args(["-s", "-w", "%{http_code}", "-X", "POST", "--unix-socket"])
        .arg(&d.socket)
        .arg(format!(
            "http://polis/images/{}/x/busybox@{digest}/push",
            reg.host()
        ))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.ends_with("400"), "{body}");
    assert!(body.contains("cannot push a digest reference"), "{body}");

    // The polis CLI pushes too.
    let third = format!("{}/z/busybox:3", reg.host());
    ok(&d, &["tag", &name, &third]);
    let (code, out, err) = polis(&d, &["push", &third]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("3: digest: {digest}")), "{out}");
    let (code, out, err) = polis(&d, &["image", "push", &missing]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("An image does not exist locally"), "{err}");
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{third}"),
    ]);
}

#[test]
fn push_with_basic_auth_after_login() {
    let d = Daemon::start("push-auth");
    let reg = registry_with_basic_auth(&d.dir.join("registry-auth"), "alice", "s3cret");
    import_busybox(&d);
    let host = reg.host();
    let name = format!("{host}/private:1");
    ok(&d, &["tag", "busybox:local", &name]);

    let (code, out, err) = docker(&d, &["push", &name]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("unauthorized"), "{out}{err}");

    let (code, out, err) = docker(&d, &["login", "-u", "alice", "-p", "s3cret", &host]);
    assert_eq!(code, 0, "{out}{err}");
    let out = ok(&d, &["push", &name]);
    assert!(out.contains("1: digest: sha256:"), "{out}");
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        "alice:s3cret",
        &format!("docker://{name}"),
    ]);
    // The polis CLI sends the saved credentials too.
    let (code, out, err) = polis(&d, &["push", &name]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Layer already exists"), "{out}");
}

//! Registry endpoints as Docker configures them, each test in a network namespace of its
//! own: Debian's `docker-registry` listens on 10.123.0.1 (a dummy interface inside the
//! namespace, never the host's), and polisd, the docker CLI and skopeo run in the same
//! namespace. Covered: verified TLS with a test CA (refused without it in certs.d, with
//! Docker's x509 words), a registry asking for a client certificate (`certs.d/*.cert` +
//! `*.key`), `insecure-registries` as a CIDR, and docker.io mirrors (`registry-mirrors`)
//! tried in order, with pushes never sent to them.

mod common;

use common::daemon::{import_busybox, Daemon, DaemonOptions};
use common::netns::NetNs;
use common::registry::Registry;
use std::path::{Path, PathBuf};
use std::process::Command;

const IP: &str = "10.123.0.1";

/// `openssl` with `args` in `dir`, which must succeed.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A test CA in `dir` (ca.crt, ca.key), a server certificate for IP signed by it
/// (server.crt, server.key) and a client certificate (client.cert, client.key).
fn make_pki(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=polis test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    for (name, subject, ext) in [
        (
            "server",
            format!("/CN={IP}"),
            format!("subjectAltName=IP:{IP}\nextendedKeyUsage=serverAuth\n"),
        ),
        (
            "client",
            "/CN=polis test client".to_string(),
            "extendedKeyUsage=clientAuth\n".to_string(),
        ),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &subject,
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.crt"),
            ],
        );
    }
    // Docker's names for a client identity in certs.d (and skopeo's).
    std::fs::rename(dir.join("client.crt"), dir.join("client.cert")).unwrap();
}

/// A TLS registry on IP inside `ns`; with `client_cas`, it requires a client
/// certificate signed by the test CA.
fn tls_registry(ns: &NetNs, dir: &Path, pki: &Path, client_cas: bool) -> Registry {
    let mut http = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        pki.join("server.crt").display(),
        pki.join("server.key").display()
    );
    if client_cas {
        http.push_str(&format!(
            "    clientcas:\n      - {}\n",
            pki.join("ca.crt").display()
        ));
    }
    Registry::start_at(dir, Some(ns), IP, &http, "")
}

/// busybox:local saved as a docker-archive, to seed registries with skopeo.
fn busybox_archive(d: &Daemon) -> PathBuf {
    import_busybox(d);
    let archive = d.dir.join("busybox.tar");
    ok(
        d,
        &["save", "-o", archive.to_str().unwrap(), "busybox:local"],
    );
    archive
}

fn ok(d: &Daemon, args: &[&str]) -> String {
    let (code, out, err) = d.docker(args);
    assert_eq!(code, 0, "docker {args:?}: {out}{err}\n{}", d.log());
    out
}

/// Stops `d` and starts it again with the config file `toml`.
fn restart(d: &mut Daemon, toml: &str) {
    assert_eq!(d.stop(), 0, "{}", d.log());
    d.set_config(toml);
    let _ = std::fs::remove_file(&d.socket);
    d.spawn();
}

/// The daemon's certs.d entry for `host`, made empty.
fn certs_entry(d: &Daemon, host: &str) -> PathBuf {
    let dir = d.dir.join("certs.d").join(host);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn verified_tls_needs_the_ca_and_insecure_cidrs_skip_it() {
    let ns = NetNs::new("tls-ca", &format!("{IP}/16"));
    let mut d = Daemon::start_with(
        "tls-ca",
        &DaemonOptions {
            config: Some("certs-dir = \"@DIR@/certs.d\"\n"),
            netns: Some(&ns.name),
        },
    );
    let pki = d.dir.join("pki");
    make_pki(&pki);
    let reg = tls_registry(&ns, &d.dir.join("registry"), &pki, false);
    let host = reg.host();
    let archive = busybox_archive(&d);
    reg.push(&archive, "secure:1", &[]);
    let name = format!("{host}/secure:1");

    // Without the CA: refused, in Docker's words, naming the registry.
    let entry = certs_entry(&d, &host);
    let (code, out, err) = d.docker(&["pull", &name]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("x509: certificate signed by unknown authority"),
        "{err}"
    );
    assert!(err.contains(&host), "{err}");
    let (code, _, _) = d.docker(&["image", "inspect", &name]);
    assert_ne!(code, 0, "a refused pull left an image");

    // With certs.d/HOST:PORT/ca.crt: verified, and pulled.
    std::fs::copy(pki.join("ca.crt"), entry.join("ca.crt")).unwrap();
    let out = ok(&d, &["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_eq!(ok(&d, &["run", "--rm", &name, "echo", "tls"]), "tls\n");
    ok(&d, &["rmi", &name]);

    // The range in insecure-registries: no verification (and no CA) needed.
    std::fs::remove_dir_all(&entry).unwrap();
    restart(
        &mut d,
        "certs-dir = \"@DIR@/certs.d\"\ninsecure-registries = [\"10.123.0.0/16\"]\n",
    );
    let out = ok(&d, &["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    let info = ok(&d, &["info"]);
    let insecure = info
        .split("Insecure Registries:")
        .nth(1)
        .unwrap_or_else(|| panic!("{info}"));
    assert!(insecure.contains("10.123.0.0/16"), "{info}");
    assert!(insecure.contains("127.0.0.0/8"), "{info}");
}

#[test]
fn client_certificates_from_certs_d() {
    let ns = NetNs::new("tls-client", &format!("{IP}/16"));
    let d = Daemon::start_with(
        "tls-client",
        &DaemonOptions {
            config: Some("certs-dir = \"@DIR@/certs.d\"\n"),
            netns: Some(&ns.name),
        },
    );
    let pki = d.dir.join("pki");
    make_pki(&pki);
    let reg = tls_registry(&ns, &d.dir.join("registry"), &pki, true);
    let host = reg.host();
    let archive = busybox_archive(&d);
    // skopeo reads the same layout: ca.crt, client.cert + client.key.
    let skopeo_certs = d.dir.join("skopeo-certs");
    std::fs::create_dir_all(&skopeo_certs).unwrap();
    for f in ["ca.crt", "client.cert", "client.key"] {
        std::fs::copy(pki.join(f), skopeo_certs.join(f)).unwrap();
    }
    reg.push(
        &archive,
        "mtls:1",
        &["--dest-cert-dir", skopeo_certs.to_str().unwrap()],
    );
    let name = format!("{host}/mtls:1");

    // The CA alone: the registry wants a client certificate and says so.
    let entry = certs_entry(&d, &host);
    std::fs::copy(pki.join("ca.crt"), entry.join("ca.crt")).unwrap();
    let (code, out, err) = d.docker(&["pull", &name]);
    assert_eq!(code, 1, "{out}{err}");
    // (Go answers "bad certificate" over TLS 1.2, "certificate required" over 1.3.)
    assert!(
        err.contains("remote error: tls: bad certificate")
            || err.contains("remote error: tls: certificate required"),
        "{err}"
    );
    assert!(err.contains("client certificate"), "{err}");

    // A certificate without its key: Docker's error, naming both files.
    std::fs::copy(pki.join("client.cert"), entry.join("client.cert")).unwrap();
    let (code, out, err) = d.docker(&["pull", &name]);
    assert_eq!(code, 1, "{out}{err}");
    let key = entry.join("client.key");
    assert!(
        err.contains(&format!(
            "missing key {} for client certificate",
            key.display()
        )),
        "{err}"
    );
    assert!(err.contains("client.cert"), "{err}");

    // With the key: pulled, and pushed back under another name with the same identity.
    std::fs::copy(pki.join("client.key"), &key).unwrap();
    let out = ok(&d, &["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_eq!(ok(&d, &["run", "--rm", &name, "echo", "mtls"]), "mtls\n");
    let copy = format!("{host}/mtls-copy:2");
    ok(&d, &["tag", &name, &copy]);
    ok(&d, &["push", &copy]);
    ok(&d, &["rmi", &copy, &name]);
    let out = ok(&d, &["pull", &copy]);
    assert!(out.contains("Downloaded newer image"), "{out}");
}

#[test]
fn docker_io_pulls_go_through_mirrors() {
    let ns = NetNs::new("mirror", &format!("{IP}/16"));
    let mut d = Daemon::start_with(
        "mirror",
        &DaemonOptions {
            config: None,
            netns: Some(&ns.name),
        },
    );
    let mirror = Registry::start_at(&d.dir.join("mirror"), Some(&ns), IP, "", "");
    // The first mirror has nothing listening: a failing mirror is skipped.
    restart(
        &mut d,
        &format!(
            "registry-mirrors = [\"https://{IP}:4999\", \"http://{}\"]\n",
            mirror.host()
        ),
    );
    let archive = busybox_archive(&d);
    mirror.push(&archive, "library/busybox:mirrored", &[]);

    let info = ok(&d, &["info"]);
    let mirrors = info
        .split("Registry Mirrors:")
        .nth(1)
        .unwrap_or_else(|| panic!("{info}"));
    assert!(mirrors.contains(&format!("https://{IP}:4999/")), "{info}");
    assert!(
        mirrors.contains(&format!("http://{}/", mirror.host())),
        "{info}"
    );

    let out = ok(&d, &["pull", "busybox:mirrored"]);
    assert!(
        out.contains("Downloaded newer image for busybox:mirrored"),
        "{out}"
    );
    assert_eq!(
        ok(&d, &["run", "--rm", "busybox:mirrored", "echo", "mirrored"]),
        "mirrored\n"
    );
    let (_, refs, _) = d.docker(&[
        "image",
        "inspect",
        "-f",
        "{{json .RepoDigests}}",
        "busybox:mirrored",
    ]);
    assert!(refs.contains("busybox@sha256:"), "{refs}");

    // A tag the mirror lacks falls back to docker.io itself, unreachable here.
    let (code, out, err) = d.docker(&["pull", "busybox:absent"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("registry-1.docker.io"), "{err}");

    // Pushes never go to a mirror.
    ok(&d, &["tag", "busybox:mirrored", "busybox:pushed"]);
    let (code, out, err) = d.docker(&["push", "busybox:pushed"]);
    assert_ne!(code, 0, "{out}{err}");
    let tags = mirror
        .command("curl")
        .args(["-sf"])
        .arg(format!(
            "http://{}/v2/library/busybox/tags/list",
            mirror.host()
        ))
        .output()
        .unwrap();
    let tags = String::from_utf8_lossy(&tags.stdout);
    assert!(tags.contains("mirrored"), "{tags}");
    assert!(!tags.contains("pushed"), "{tags}");
}

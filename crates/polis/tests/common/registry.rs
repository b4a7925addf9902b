//! A Debian `docker-registry` on 127.0.0.1 for the registry tests (killed by pid when
//! dropped), or on an address of a test's own network namespace; and the docker and
//! polis CLIs run with a private config dir (for `docker login`).

use super::daemon::{Daemon, DOCKER};
use super::netns::NetNs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub const REGISTRY: &str = "/usr/bin/docker-registry";

/// A `docker-registry` serving from a temp dir; killed (by pid) when dropped.
pub struct Registry {
    child: Child,
    pub dir: PathBuf,
    pub port: u16,
    /// The address it listens on.
    pub ip: String,
    /// The network namespace it runs in (None: the test's own, on 127.0.0.1).
    netns: Option<String>,
}

/// Ports for registries in test namespaces (each namespace has all its ports free).
static NEXT_PORT: AtomicU16 = AtomicU16::new(5000);

impl Registry {
    /// Starts a registry; with `htpasswd`, it requires those basic-auth users.
    pub fn start(dir: &Path, htpasswd: Option<&Path>) -> Registry {
        let auth = htpasswd.map_or(String::new(), |p| {
            format!(
                "  htpasswd:\n    realm: polis-test\n    path: {}\n",
                p.display()
            )
        });
        Registry::start_with(dir, "", &auth)
    }

    /// Starts a registry with more settings: `http` is YAML indented under `http:`
    /// (after its address), `auth` under `auth:`; either may be empty.
    pub fn start_with(dir: &Path, http: &str, auth: &str) -> Registry {
        Registry::start_at(dir, None, "127.0.0.1", http, auth)
    }

    /// Starts a registry on `ip`, inside `netns` if given (where `ip` must be).
    pub fn start_at(
        dir: &Path,
        netns: Option<&NetNs>,
        ip: &str,
        http: &str,
        auth: &str,
    ) -> Registry {
        std::fs::create_dir_all(dir).unwrap();
        let port = match netns {
            Some(_) => NEXT_PORT.fetch_add(1, Ordering::Relaxed),
            None => TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
        };
        let mut config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {ip}:{port}\n{http}",
            dir.join("data").display()
        );
        if !auth.is_empty() {
            config.push_str(&format!("auth:\n{auth}"));
        }
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log_path = dir.join("registry.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = match netns {
            Some(ns) => ns.command(REGISTRY),
            None => Command::new(REGISTRY),
        }
        .arg("serve")
        .arg(&config_path)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
        let r = Registry {
            child,
            dir: dir.to_path_buf(),
            port,
            ip: ip.to_string(),
            netns: netns.map(|n| n.name.clone()),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        // Another namespace cannot be connected to from here: its log says when.
        let listening = || match netns {
            Some(_) => std::fs::read_to_string(&log_path)
                .unwrap_or_default()
                .contains("listening on"),
            None => TcpStream::connect(("127.0.0.1", port)).is_ok(),
        };
        while !listening() {
            assert!(
                Instant::now() < deadline,
                "registry never listened: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    pub fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// `program`, run where the registry can be reached (its network namespace).
    pub fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .arg("--")
                    .arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Pushes a docker-archive with skopeo as `name` (`repo:tag`).
    pub fn push(&self, archive: &Path, name: &str, extra: &[&str]) {
        let out = self
            .command("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .args(extra)
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("docker://{}/{name}", self.host()))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo copy: {out:?}");
    }

    /// The manifest of `name:tag` as the registry serves it.
    pub fn manifest(&self, name: &str, tag: &str, creds: Option<&str>) -> serde_json::Value {
        let mut cmd = self.command("curl");
        cmd.args(["-sf", "-H"])
            .arg("Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
            .arg(format!("http://{}/v2/{name}/manifests/{tag}", self.host()));
        if let Some(c) = creds {
            cmd.args(["-u", c]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "curl manifest: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The file the registry keeps a blob's bytes in.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The docker CLI against `d`, with its own config dir (for `docker login`).
pub fn docker(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(DOCKER)
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.join("docker-config"))
        .current_dir(&d.dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn ok(d: &Daemon, args: &[&str]) -> String {
    let (code, out, err) = docker(d, args);
    assert_eq!(code, 0, "docker {args:?}: {out}{err}\n{}", d.log());
    out
}

/// `polis pull` (the polis client CLI) against `d`.
pub fn polis(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_polis"))
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.join("docker-config"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file in the daemon's blob directories (temporary ingest files included), sorted.
pub fn store_blobs(d: &Daemon) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![d.dir.join("root")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.parent().is_some_and(|p| p.ends_with("blobs/sha256")) {
                out.push(p.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// A registry in `dir` that asks for basic auth: user `user`, password `password`
/// (an htpasswd file made by Debian's apache2-utils).
pub fn registry_with_basic_auth(dir: &Path, user: &str, password: &str) -> Registry {
    std::fs::create_dir_all(dir).unwrap();
    let htpasswd = dir.join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbc"])
        .arg(&htpasswd)
        .args([user, password])
        .output()
        .unwrap();
    assert!(out.status.success(), "htpasswd: {out:?}");
    Registry::start(dir, Some(&htpasswd))
}

//! A `polis daemon` on temp dirs for one test, with the docker CLI pointed at it.
//! Dropping it removes the containers a failed test left, stops it, and removes its
//! directories. [`Daemon::start_with`] can give it a config file and run it (and the
//! docker CLI) inside a network namespace of the test's own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DOCKER: &str = "/usr/local/bin/docker";

/// Exit code, stdout, stderr.
pub type Output = (i32, String, String);

pub struct Daemon {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub socket: PathBuf,
}

pub fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn output(cmd: &mut Command, stdin: Option<&Path>) -> Output {
    match stdin {
        Some(p) => cmd.stdin(std::fs::File::open(p).unwrap()),
        None => cmd.stdin(Stdio::null()),
    };
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How [`Daemon::start_with`] runs the daemon. Kept as files beside its root
/// (`polisd.toml`, `netns`), so a restart keeps them.
#[derive(Default)]
pub struct DaemonOptions<'a> {
    /// The daemon's config file (TOML); `@DIR@` stands for the daemon's directory.
    pub config: Option<&'a str>,
    /// A network namespace under /run/netns the daemon and the docker CLI run in.
    pub netns: Option<&'a str>,
}

impl Daemon {
    pub fn start(name: &str) -> Daemon {
        Daemon::start_with(name, &DaemonOptions::default())
    }

    pub fn start_with(name: &str, options: &DaemonOptions) -> Daemon {
        let dir = std::env::temp_dir().join(format!("polis-daemon-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut d = Daemon {
            child: None,
            socket: dir.join("run/polis.sock"),
            dir,
        };
        if let Some(config) = options.config {
            d.set_config(config);
        }
        if let Some(ns) = options.netns {
            std::fs::write(d.dir.join("netns"), ns).unwrap();
        }
        d.spawn();
        d
    }

    /// Writes the config file the next [`Daemon::spawn`] reads (`@DIR@`: the daemon's
    /// directory).
    pub fn set_config(&self, toml: &str) {
        let text = toml.replace("@DIR@", &self.dir.to_string_lossy());
        std::fs::write(self.dir.join("polisd.toml"), text).unwrap();
    }

    /// `program`, run in the daemon's network namespace if it has one.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match std::fs::read_to_string(self.dir.join("netns")) {
            Ok(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .arg("--")
                    .arg(program);
                c
            }
            Err(_) => Command::new(program),
        }
    }

    /// Start the daemon process on this test's root and run root.
    pub fn spawn(&mut self) {
        let mut cmd = self.command(env!("CARGO_BIN_EXE_polis"));
        cmd.arg("daemon");
        let config = self.dir.join("polisd.toml");
        if config.exists() {
            cmd.arg("--config-file").arg(config);
        }
        // Outside a namespace of the test's own, no bridge may be made on the host.
        if !self.dir.join("netns").exists() {
            cmd.args(["--bridge", "none"]);
        }
        let child = cmd
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--run-root")
            .arg(self.dir.join("run"))
            .stderr(self.log_file())
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for(&self.socket);
    }

    /// The daemons' own log, kept beside the root for a failing test to show.
    fn log_file(&self) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null())
    }

    /// What the daemons on this root logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub fn crash(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// A new daemon on the same root after a crash (whose socket file stayed behind).
    pub fn restart_after_crash(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        self.spawn();
    }

    /// SIGTERM, and the daemon's exit code.
    pub fn stop(&mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap().code().unwrap_or(-1)
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn docker_in(&self, args: &[&str], stdin: Option<&Path>) -> Output {
        output(
            self.command(DOCKER)
                .env("DOCKER_HOST", self.host())
                .current_dir(&self.dir)
                .args(args),
            stdin,
        )
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_in(args, None)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let (_, ids, _) = self.docker(&["ps", "-aq"]);
            for id in ids.split_whitespace() {
                let _ = self.docker(&["rm", "-f", id]);
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A busybox rootfs tar, built offline from Debian's busybox-static.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/lib/busybox-rootfs.sh");
    assert!(Command::new("bash")
        .arg(script)
        .arg(&rootfs)
        .status()
        .unwrap()
        .success());
    let tar = dir.join("rootfs.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar the busybox rootfs");
    tar
}

/// busybox:local in the daemon's store, imported by the docker CLI.
pub fn import_busybox(d: &Daemon) {
    let tar = busybox_tar(&d.dir);
    let import = Command::new(DOCKER)
        .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
        .args(["import", "-c", "CMD [\"sh\"]", "-", "busybox:local"])
        .stdin(std::fs::File::open(&tar).unwrap())
        .output()
        .unwrap();
    assert!(import.status.success(), "{import:?}");
}

/// Leftovers of containers: mounts under the daemon's root, cgroups, shims.
pub fn leftovers(d: &Daemon, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let root = d.dir.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    out.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&root))
            .map(String::from),
    );
    for id in ids {
        for h in ["memory", "pids", "cpu"] {
            let p = format!("/sys/fs/cgroup/{h}/polis/{id}");
            if Path::new(&p).exists() {
                out.push(p);
            }
        }
        if Path::new(&format!("/sys/fs/cgroup/polis/{id}")).exists() {
            out.push(format!("cgroup v2 /polis/{id}"));
        }
    }
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("shim") && cmdline.contains(&root) {
            out.push(format!("shim process {:?}", e.file_name()));
        }
    }
    out
}

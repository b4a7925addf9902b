//! End-to-end test harness: builds busybox bundles, drives an OCI runtime with
//! runc's command line (Polis by default, or `POLIS_TEST_RUNTIME`), and checks that
//! nothing (cgroups, processes, state) is left behind after each container.
#![allow(dead_code)]

pub mod daemon;
pub mod faultproxy;
pub mod netns;
pub mod recorder;
pub mod registry;

use serde_json::{json, Value};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Top of every temporary directory the tests create.
const TEST_TMP: &str = "/tmp/polis-e2e";

/// The runtime under test: (program, arguments that precede the global flags).
pub fn runtime() -> (PathBuf, Vec<String>) {
    match std::env::var_os("POLIS_TEST_RUNTIME") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), Vec::new()),
        _ => (
            PathBuf::from(env!("CARGO_BIN_EXE_polis")),
            vec!["runtime".to_string()],
        ),
    }
}

/// True when the tests drive the Polis binary (not an external runtime).
pub fn is_polis() -> bool {
    std::env::var_os("POLIS_TEST_RUNTIME").is_none_or(|p| p.is_empty())
}

/// For tests of features runc 1.1 lacks: returns false (and says so) when the
/// runtime under test is not Polis. Use as `if !require_polis("why") { return; }`.
pub fn require_polis(what: &str) -> bool {
    if is_polis() {
        return true;
    }
    eprintln!("SKIP ({what}): needs Polis, POLIS_TEST_RUNTIME is set");
    false
}

/// True on a pure cgroup v2 host (/sys/fs/cgroup is the unified hierarchy).
pub fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Every cgroup hierarchy root mounted under /sys/fs/cgroup.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    if cgroup_v2() {
        return vec![PathBuf::from("/sys/fs/cgroup")];
    }
    let mut roots = Vec::new();
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            let p = e.path();
            // Skip the symlinks (cpu,cpuacct -> cpu) so each hierarchy appears once.
            if p.is_dir() && !p.is_symlink() {
                roots.push(p);
            }
        }
    }
    roots.sort();
    roots
}

/// Directory of the controller `name` (e.g. "memory") for cgroup `path`
/// (absolute, like "/polis/test-x") on this host's layout.
pub fn cgroup_dir(controller: &str, path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    if cgroup_v2() {
        Path::new("/sys/fs/cgroup").join(rel)
    } else {
        Path::new("/sys/fs/cgroup").join(controller).join(rel)
    }
}

/// Reads a cgroup control file of `controller` for `path`, trimmed.
pub fn read_cgroup_file(controller: &str, path: &str, file: &str) -> String {
    let p = cgroup_dir(controller, path).join(file);
    fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A container id unique across the threads and processes of a test run.
pub fn unique_id(name: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(24)
        .collect();
    format!("{name}-{}-{n}", std::process::id())
}

/// A directory removed (recursively) when dropped.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = Path::new(TEST_TMP).join(unique_id(name));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir { path }
    }
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        remove_tree(&self.path);
    }
}

/// Removes a directory tree, lazily unmounting anything still mounted below it.
pub fn remove_tree(path: &Path) {
    let mut mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| Path::new(m).starts_with(path))
        .collect();
    // Deepest first.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = fs::remove_dir_all(path);
}

/// Path of the busybox template rootfs, built once per test process.
pub fn template_rootfs() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        remove_stale_templates();
        let dir = Path::new(TEST_TMP).join(format!("template-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        build_busybox_rootfs(&rootfs);
        rootfs
    })
}

/// Removes template rootfs dirs of earlier test processes that have exited.
fn remove_stale_templates() {
    let Ok(entries) = fs::read_dir(TEST_TMP) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix("template-")
            .and_then(|p| p.parse::<i32>().ok())
        {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Builds a static-busybox rootfs at `rootfs`: every applet as a symlink in /bin,
/// users root/nobody/user(1000), and the usual empty mount points.
pub fn build_busybox_rootfs(rootfs: &Path) {
    for d in [
        "bin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "home/user",
        "run",
    ] {
        fs::create_dir_all(rootfs.join(d)).expect("mkdir rootfs dir");
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy /bin/busybox");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    assert!(list.status.success(), "busybox --list failed");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" {
            continue;
        }
        symlink("busybox", rootfs.join("bin").join(applet)).expect("symlink applet");
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n\
         user:x:1000:1000:user:/home/user:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .expect("write passwd");
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n",
    )
    .expect("write group");
    fs::write(rootfs.join("etc/hostname"), "busybox\n").expect("write hostname");
}

/// Copies the template rootfs to `dest` (a real copy: tests may write to it).
pub fn copy_rootfs(dest: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(template_rootfs())
        .arg(dest)
        .status()
        .expect("spawn cp");
    assert!(st.success(), "cp -a rootfs to {} failed", dest.display());
}

/// The config.json `runc spec` generates, with `terminal: false`, ociVersion
/// 1.0.2 and the given absolute cgroups path.
pub fn default_config(cgroups_path: &str) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// Output of one runtime invocation.
#[derive(Debug)]
pub struct RunOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    fn from_output(out: Output) -> RunOutput {
        RunOutput {
            code: exit_code(out.status),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
    /// Panics with the full output unless the exit code is 0.
    pub fn ok(self) -> RunOutput {
        assert_eq!(self.code, 0, "runtime failed: {self:#?}");
        self
    }
}

/// Exit code in the shell convention (128+signal when killed).
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A command for the runtime under test with `--root root` already set.
pub fn runtime_command(root: &Path) -> Command {
    let (prog, pre) = runtime();
    let mut cmd = Command::new(prog);
    cmd.args(pre).arg("--root").arg(root);
    cmd
}

/// Runs the runtime with `args` (stdin null, stdout/stderr piped) and waits.
/// Only for commands that leave no process holding the pipes.
pub fn runtime_exec(root: &Path, args: &[&str]) -> RunOutput {
    let out = runtime_command(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn runtime");
    RunOutput::from_output(out)
}

/// One container under test: a private bundle (rootfs copy + config.json), a
/// private `--root` state directory, and a unique id and cgroup path. On drop
/// it is force-deleted and checked for leaks.
pub struct Container {
    pub id: String,
    pub dir: TempDir,
    pub bundle: PathBuf,
    pub root: PathBuf,
    pub cgroup_path: String,
    pub config: Value,
    /// Runtime program and leading arguments (see `runtime()`); tests may swap it.
    pub runtime: (PathBuf, Vec<String>),
    /// Init pid seen in `state`, checked for exit on drop.
    pub pid: Option<i32>,
    /// Set by tests that expect the runtime to leave nothing to delete.
    pub skip_leak_check: bool,
}

impl Container {
    pub fn new(name: &str) -> Container {
        let dir = TempDir::new(name);
        let id = dir
            .path
            .file_name()
            .expect("temp dir name")
            .to_string_lossy()
            .into_owned();
        let bundle = dir.join("bundle");
        let root = dir.join("state");
        fs::create_dir_all(&bundle).expect("mkdir bundle");
        fs::create_dir_all(&root).expect("mkdir state root");
        copy_rootfs(&bundle.join("rootfs"));
        let cgroup_path = format!("/polis/test-{id}");
        let config = default_config(&cgroup_path);
        Container {
            id,
            dir,
            bundle,
            root,
            cgroup_path,
            config,
            runtime: runtime(),
            pid: None,
            skip_leak_check: false,
        }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    /// Sets process.args.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self
    }

    /// Sets process.args to `sh -c script`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    /// Appends a mount to config.mounts.
    pub fn add_mount(&mut self, mount: Value) -> &mut Self {
        self.config["mounts"]
            .as_array_mut()
            .expect("mounts array")
            .push(mount);
        self
    }

    /// Adds (or replaces) a namespace entry of `ns_type`, optionally with a path.
    pub fn set_namespace(&mut self, ns_type: &str, path: Option<&str>) -> &mut Self {
        let nss = self.config["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces array");
        nss.retain(|n| n["type"] != ns_type);
        let mut ns = json!({ "type": ns_type });
        if let Some(p) = path {
            ns["path"] = json!(p);
        }
        nss.push(ns);
        self
    }

    /// Removes the namespace entry of `ns_type` (the container shares the host's).
    pub fn remove_namespace(&mut self, ns_type: &str) -> &mut Self {
        self.config["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces array")
            .retain(|n| n["type"] != ns_type);
        self
    }

    /// Sets linux.resources.<key> (e.g. "memory", json!({"limit": 1}) ).
    pub fn resources(&mut self, key: &str, value: Value) -> &mut Self {
        self.config["linux"]["resources"][key] = value;
        self
    }

    /// Sets root.readonly.
    pub fn readonly_root(&mut self, ro: bool) -> &mut Self {
        self.config["root"]["readonly"] = json!(ro);
        self
    }

    /// Writes config.json into the bundle.
    pub fn write_config(&self) {
        let text = serde_json::to_string_pretty(&self.config).expect("serialize config");
        fs::write(self.bundle.join("config.json"), text).expect("write config.json");
    }

    /// A runtime command with this container's --root.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.runtime.0);
        cmd.args(&self.runtime.1).arg("--root").arg(&self.root);
        cmd
    }

    /// Runs the runtime with `args` (stdin null, stdout/stderr piped) and waits.
    /// Only for commands that leave no process holding the pipes.
    pub fn runtime(&self, args: &[&str]) -> RunOutput {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn runtime");
        RunOutput::from_output(out)
    }

    /// `run --bundle B ID` in the foreground: (container exit code, stdout, stderr).
    pub fn run(&mut self) -> RunOutput {
        self.write_config();
        let bundle = self.bundle.to_string_lossy().into_owned();
        let id = self.id.clone();
        self.runtime(&["run", "--bundle", &bundle, &id])
    }

    /// `create --bundle B ID` with the container's stdout/stderr going to files
    /// in the test dir (see `stdout_file`); returns the runtime's result with the
    /// file contents at that point.
    pub fn create_with(&mut self, extra: &[&str]) -> RunOutput {
        self.write_config();
        let bundle = self.bundle.to_string_lossy().into_owned();
        let mut args = vec!["create", "--bundle", &bundle];
        args.extend_from_slice(extra);
        args.push(&self.id);
        let out = self.spawn_to_files(&args);
        if out.code == 0 {
            if let Ok(st) = self.try_state() {
                self.pid = st["pid"].as_i64().map(|p| p as i32);
            }
        }
        out
    }

    pub fn create(&mut self) -> RunOutput {
        self.create_with(&[])
    }

    /// `run --detach --bundle B ID`, stdio to files like `create`.
    pub fn run_detached(&mut self) -> RunOutput {
        self.write_config();
        let bundle = self.bundle.to_string_lossy().into_owned();
        let id = self.id.clone();
        let out = self.spawn_to_files(&["run", "--detach", "--bundle", &bundle, &id]);
        if out.code == 0 {
            if let Ok(st) = self.try_state() {
                self.pid = st["pid"].as_i64().map(|p| p as i32);
            }
        }
        out
    }

    /// Runs the runtime with stdin null and stdout/stderr appended to files
    /// (so a container process inheriting them does not block us).
    pub fn spawn_to_files(&self, args: &[&str]) -> RunOutput {
        let before_out = fs::read(self.stdout_file()).map(|v| v.len()).unwrap_or(0);
        let before_err = fs::read(self.stderr_file()).map(|v| v.len()).unwrap_or(0);
        let open = |p: PathBuf| {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
        };
        let status = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(open(self.stdout_file()))
            .stderr(open(self.stderr_file()))
            .status()
            .expect("spawn runtime");
        let read_from = |p: PathBuf, from: usize| {
            let v = fs::read(p).unwrap_or_default();
            String::from_utf8_lossy(&v[from.min(v.len())..]).into_owned()
        };
        RunOutput {
            code: exit_code(status),
            stdout: read_from(self.stdout_file(), before_out),
            stderr: read_from(self.stderr_file(), before_err),
        }
    }

    /// File receiving stdout of containers started with `create`/`run --detach`.
    pub fn stdout_file(&self) -> PathBuf {
        self.dir.join("container.stdout")
    }

    pub fn stderr_file(&self) -> PathBuf {
        self.dir.join("container.stderr")
    }

    /// Current contents of the container stdout file.
    pub fn stdout(&self) -> String {
        fs::read_to_string(self.stdout_file()).unwrap_or_default()
    }

    pub fn start(&self) -> RunOutput {
        self.runtime(&["start", &self.id])
    }

    pub fn kill(&self, signal: &str) -> RunOutput {
        self.runtime(&["kill", &self.id, signal])
    }

    pub fn delete(&self) -> RunOutput {
        self.runtime(&["delete", &self.id])
    }

    pub fn delete_force(&self) -> RunOutput {
        self.runtime(&["delete", "--force", &self.id])
    }

    /// `state ID` parsed, or the failed invocation.
    pub fn try_state(&self) -> Result<Value, RunOutput> {
        let out = self.runtime(&["state", &self.id]);
        if out.code != 0 {
            return Err(out);
        }
        serde_json::from_str(&out.stdout)
            .map_err(|e| panic!("state output is not JSON ({e}): {}", out.stdout))
    }

    /// `state ID` parsed; panics if it fails.
    pub fn state(&self) -> Value {
        self.try_state()
            .unwrap_or_else(|o| panic!("state {} failed: {o:#?}", self.id))
    }

    /// The "status" field of `state`.
    pub fn status(&self) -> String {
        self.state()["status"]
            .as_str()
            .expect("status string")
            .to_string()
    }

    /// Polls `state` until status == `want` (or panics after `timeout`).
    pub fn wait_status(&self, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.status();
            if st == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "container {} status {st}, waited for {want}",
                self.id
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `exec ID args...` in the foreground with piped stdio.
    pub fn exec(&self, flags: &[&str], args: &[&str]) -> RunOutput {
        let mut all = vec!["exec"];
        all.extend_from_slice(flags);
        all.push(&self.id);
        all.extend_from_slice(args);
        self.runtime(&all)
    }

    /// create + start, panicking if either fails; returns once the init
    /// process runs the configured program (or has already exited).
    pub fn create_start(&mut self) {
        self.create().ok();
        self.start().ok();
        let argv0 = self.config["process"]["args"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(pid) = self.pid {
            let deadline = Instant::now() + Duration::from_secs(10);
            while process_alive(pid) && Instant::now() < deadline {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if cmdline.split(|b| *b == 0).next() == Some(argv0.as_bytes()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let del = self.delete_force();
        if std::thread::panicking() {
            return;
        }
        if self.skip_leak_check {
            return;
        }
        // `delete --force` of a container that no longer exists may fail; what
        // matters is that nothing is left.
        let _ = del;
        assert_no_leaks(&self.id, &self.cgroup_path, &self.root, self.pid);
    }
}

/// Asserts that container `id` left nothing behind: no cgroup dir for
/// `cgroup_path` in any hierarchy, no state dir under `root`, and (if known)
/// its init process is gone.
pub fn assert_no_leaks(id: &str, cgroup_path: &str, root: &Path, pid: Option<i32>) {
    let rel = cgroup_path.trim_start_matches('/');
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut leaks = Vec::new();
        for h in cgroup_hierarchies() {
            let d = h.join(rel);
            if d.exists() {
                leaks.push(format!("cgroup dir {}", d.display()));
            }
        }
        let state_dir = root.join(id);
        if state_dir.exists() {
            leaks.push(format!("state dir {}", state_dir.display()));
        }
        if let Some(pid) = pid {
            if process_alive(pid) {
                leaks.push(format!("process {pid}"));
            }
        }
        if leaks.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            // Clean up what we can so one failure does not cascade.
            for h in cgroup_hierarchies() {
                let _ = fs::remove_dir(h.join(rel));
            }
            panic!("container {id} leaked: {}", leaks.join(", "));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True if `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

/// Waits until `pid` runs the program `argv0` (the runtime's `start` may return
/// just before its init process execs the container's program).
pub fn wait_for_exec(pid: i32, argv0: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).next() == Some(argv0.as_bytes()) {
            return;
        }
        assert!(Instant::now() < deadline, "pid {pid} never exec'd {argv0}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Parses a `/proc/<pid>/status` style "Key:\tvalue" field.
pub fn status_field(status: &str, key: &str) -> Option<String> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim().to_string())
    })
}

/// Capability names → bitmask (CAP_CHOWN = bit 0 ...).
pub fn cap_mask(names: &[&str]) -> u64 {
    names
        .iter()
        .map(|n| 1u64 << cap_number(n).unwrap_or_else(|| panic!("unknown capability {n}")))
        .fold(0, |a, b| a | b)
}

pub fn cap_number(name: &str) -> Option<u32> {
    const CAPS: [&str; 41] = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_IPC_LOCK",
        "CAP_IPC_OWNER",
        "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO",
        "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN",
        "CAP_SYS_BOOT",
        "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_MKNOD",
        "CAP_LEASE",
        "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN",
        "CAP_SYSLOG",
        "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ",
        "CAP_PERFMON",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ];
    CAPS.iter().position(|c| *c == name).map(|i| i as u32)
}

/// Reads a whole file for comparisons (e.g. a binary before/after an attack).
pub fn read_bytes(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    fs::File::open(p)
        .and_then(|mut f| f.read_to_end(&mut v))
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    v
}

/// Waits until `path` exists (true) or `timeout` passes (false).
pub fn wait_for_file(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    path.exists()
}

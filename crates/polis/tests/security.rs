//! Security properties: default masked/readonly /proc paths, no host file
//! descriptor or cwd leaking into the container, the runtime binary cannot be
//! overwritten from inside (CVE-2019-5736), and invalid configurations fail
//! cleanly without leaving anything behind.

mod common;

use common::*;
use serde_json::json;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run_sh(c: &mut Container, script: &str) -> String {
    c.sh(script);
    let out = c.run();
    assert_eq!(out.code, 0, "{out:#?}");
    out.stdout
}

#[test]
fn default_masked_paths_are_empty() {
    let mut c = Container::new("sec-masked");
    let masked: Vec<String> = c.config["linux"]["maskedPaths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .filter(|p| Path::new(p).exists())
        .collect();
    assert!(!masked.is_empty());
    let mut script = String::new();
    for p in &masked {
        // A masked file reads empty; a masked directory lists empty.
        script.push_str(&format!(
            "if [ -d {p} ]; then echo {p} $(ls -A {p} | wc -l); else echo {p} $(cat {p} | wc -c); fi\n"
        ));
    }
    let out = run_sh(&mut c, &script);
    let want: String = masked.iter().map(|p| format!("{p} 0\n")).collect();
    assert_eq!(out, want);
}

#[test]
fn default_readonly_paths_reject_writes() {
    let mut c = Container::new("sec-ro");
    // Give the process enough privilege that only the read-only mount stops it.
    c.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE"],
        "effective": ["CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE"],
        "permitted": ["CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE"]
    });
    let mut script = String::from(
        "echo 1 > /proc/sys/kernel/hostname 2>/dev/null && echo hostname-written || echo denied\n",
    );
    if Path::new("/proc/sysrq-trigger").exists() {
        script.push_str(
            "echo h > /proc/sysrq-trigger 2>/dev/null && echo sysrq-written || echo denied\n",
        );
    }
    let out = run_sh(&mut c, &script);
    assert!(out.lines().all(|l| l == "denied"), "{out}");
    assert!(!out.is_empty());
}

#[test]
fn proc_and_sys_writes_denied_for_default_caps() {
    let mut c = Container::new("sec-sys");
    let out = run_sh(
        &mut c,
        "echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null && echo w || echo denied; \
         mount -t tmpfs x /mnt 2>/dev/null && echo mounted || echo denied",
    );
    assert_eq!(out, "denied\ndenied\n");
}

/// Clears FD_CLOEXEC on `f` so child processes inherit it.
fn inheritable(f: &fs::File) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    fcntl(f, FcntlArg::F_SETFD(FdFlag::empty())).expect("clear FD_CLOEXEC");
}

/// The fds of `pid` as (number, link target), read from the host.
fn open_fds(pid: i32) -> Vec<(u32, String)> {
    let mut fds: Vec<(u32, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            let n = e.file_name().to_string_lossy().parse().unwrap();
            let target = fs::read_link(e.path()).unwrap_or_default();
            (n, target.to_string_lossy().into_owned())
        })
        .collect();
    fds.sort();
    fds
}

#[test]
fn host_fds_do_not_leak() {
    let mut c = Container::new("sec-fds");
    let secret = c.dir.join("host-secret");
    fs::write(&secret, "secret").unwrap();
    let f = fs::File::open(&secret).unwrap();
    inheritable(&f);
    c.args(&["sleep", "1000"]);
    c.create_start();
    drop(f);
    wait_for_exec(c.pid.unwrap(), "sleep");
    let fds: Vec<u32> = open_fds(c.pid.unwrap())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(fds, vec![0, 1, 2]);
}

#[test]
fn preserve_fds_passes_exactly_n_fds() {
    let mut c = Container::new("sec-preserve");
    let secret = c.dir.join("passed-file");
    fs::write(&secret, "passed-content").unwrap();
    c.args(&["sleep", "1000"]);
    c.write_config();
    let bundle = c.bundle.to_string_lossy().into_owned();
    let log = fs::File::create(c.dir.join("create.log")).unwrap();
    // The runtime gets the file as fd 3 and fd 4 as an extra that must not pass.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("exec \"$@\" 3<\"$PASSED\" 4<\"$PASSED\"")
        .arg("sh")
        .arg(&c.runtime.0)
        .args(&c.runtime.1)
        .arg("--root")
        .arg(&c.root)
        .args(["create", "--preserve-fds", "1", "--bundle", &bundle, &c.id])
        .env("PASSED", &secret)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let st = cmd.status().unwrap();
    assert!(
        st.success(),
        "{}",
        fs::read_to_string(c.dir.join("create.log")).unwrap()
    );
    c.pid = c.state()["pid"].as_i64().map(|p| p as i32);
    c.start().ok();
    wait_for_exec(c.pid.unwrap(), "sleep");
    let fds = open_fds(c.pid.unwrap());
    let numbers: Vec<u32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, vec![0, 1, 2, 3], "{fds:?}");
    assert_eq!(fds[3].1, secret.to_str().unwrap());
}

#[test]
fn host_cwd_does_not_leak() {
    let mut c = Container::new("sec-cwd");
    let host_cwd = c.dir.join("host-cwd");
    fs::create_dir_all(&host_cwd).unwrap();
    fs::write(host_cwd.join("host-only-file"), "x").unwrap();
    c.sh("readlink /proc/self/cwd; readlink /proc/1/root; ls /proc/1/cwd/");
    c.write_config();
    let bundle = c.bundle.to_string_lossy().into_owned();
    let out = c
        .command()
        .current_dir(&host_cwd)
        .args(["run", "--bundle", &bundle, &c.id])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("/"));
    assert_eq!(lines.next(), Some("/"));
    let listing: Vec<&str> = lines.collect();
    assert!(listing.contains(&"bin"), "{stdout}");
    assert!(!listing.contains(&"host-only-file"), "{stdout}");
}

/// Runs `cmd` with stdio to /dev/null, killing it after `limit`.
fn status_with_timeout(mut cmd: Command, limit: Duration) -> Option<i32> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(exit_code(st));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Watcher run as the container's init: opens /proc/PID/exe of every new
/// process it sees (the runtime's exec helper among them) and keeps trying to
/// append to it through /proc/self/fd after that process is gone.
const CVE_WATCHER: &str = r#"
seen=" 1 $$ "
end=$(( $(date +%s) + 30 ))
while [ "$(date +%s)" -lt "$end" ] && [ ! -e /out/stop ]; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case "$seen" in *" $p "*) continue;; esac
    seen="$seen$p "
    l=$(readlink "$d/exe" 2>/dev/null)
    [ "$l" = /bin/busybox ] && continue
    (
      exec 5<"$d/exe" || exit 0
      echo "opened $p $(readlink /proc/self/fd/5)" >> /out/log
      i=0
      while [ $i -lt 300 ]; do
        if echo CVE-2019-5736 >> /proc/self/fd/5; then echo "WROTE $p" >> /out/log; exit 0; fi
        i=$((i+1)); usleep 10000
      done
    ) 2>/dev/null &
  done
done
echo done >> /out/log
"#;

#[test]
fn cve_2019_5736_runtime_binary_not_overwritable() {
    cve_2019_5736_attack(false);
}

/// Installed on a read-only mount, the runtime skips its sealed re-exec: the mount alone
/// must stop the same attack.
#[test]
fn cve_2019_5736_runtime_on_readonly_mount() {
    if !require_polis("the read-only install path is Polis's") {
        return;
    }
    cve_2019_5736_attack(true);
}

/// Unmounts the read-only bind on drop.
struct Unmount(std::path::PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn cve_2019_5736_attack(readonly_mount: bool) {
    let mut c = Container::new("sec-cve");
    // Attack a private copy of the runtime so the real binary is never at risk.
    let bin_dir = c.dir.join("bin");
    fs::create_dir_all(&bin_dir).unwrap();
    let copy = bin_dir.join("runtime-under-attack");
    fs::copy(&c.runtime.0, &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    let _unmount = readonly_mount.then(|| {
        let bind = |args: &[&str]| {
            let ok = Command::new("mount")
                .args(args)
                .arg(&bin_dir)
                .arg(&bin_dir)
                .status();
            assert!(ok.unwrap().success(), "mount {args:?}");
        };
        bind(&["--bind"]);
        let guard = Unmount(bin_dir.clone());
        bind(&["-o", "remount,bind,ro"]);
        guard
    });
    c.runtime.0 = copy.clone();
    let before = read_bytes(&copy);

    let out_dir = c.dir.join("out");
    fs::create_dir_all(&out_dir).unwrap();
    c.add_mount(json!({"destination": "/out", "type": "bind",
                       "source": out_dir.to_str().unwrap(), "options": ["rbind", "rw"]}));
    // A generous capability set makes the attack easier, not harder.
    let caps = json!([
        "CAP_SYS_PTRACE",
        "CAP_DAC_OVERRIDE",
        "CAP_KILL",
        "CAP_CHOWN",
        "CAP_FOWNER"
    ]);
    c.config["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps
    });
    c.config["process"]["noNewPrivileges"] = json!(false);
    // The container's /bin/sh makes the kernel execute the runtime itself.
    let sh = c.rootfs().join("bin/sh");
    fs::remove_file(&sh).unwrap();
    fs::write(&sh, "#!/proc/self/exe\n").unwrap();
    fs::set_permissions(&sh, fs::Permissions::from_mode(0o755)).unwrap();
    c.args(&["/bin/ash", "-c", CVE_WATCHER]);
    c.create_start();

    // Let the watcher record the processes already there.
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..5 {
        let mut cmd = c.command();
        cmd.args(["exec", &c.id, "/bin/sh"]);
        let _ = status_with_timeout(cmd, Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(200));
    }
    // Give the watcher's writers time to retry after the exec helpers exited.
    std::thread::sleep(Duration::from_secs(4));
    fs::write(out_dir.join("stop"), "").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let log = fs::read_to_string(out_dir.join("log")).unwrap_or_default();
    c.delete_force();
    let after = read_bytes(&copy);
    assert!(
        before == after,
        "runtime binary modified from inside the container! watcher log:\n{log}"
    );
    assert!(!log.contains("WROTE"), "{log}");
    eprintln!("watcher log:\n{log}");
}

fn assert_clean_failure(c: &mut Container, what: &str) {
    let out = c.run();
    assert_ne!(out.code, 0, "{what}: expected failure: {out:#?}");
    assert!(!out.stderr.trim().is_empty(), "{what}: no error message");
    assert!(
        c.try_state().is_err(),
        "{what}: container exists after failure"
    );
    assert_no_leaks(&c.id, &c.cgroup_path, &c.root, None);
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(c.bundle.to_str().unwrap()),
        "{what}: mount left under the bundle"
    );
    // No process of the runtime still runs from this bundle.
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(&c.id),
            "{what}: process {:?} still running",
            e.file_name()
        );
    }
}

#[test]
fn invalid_json_config() {
    let c = Container::new("bad-json");
    c.write_config();
    fs::write(c.bundle.join("config.json"), "{ this is not json").unwrap();
    let bundle = c.bundle.to_string_lossy().into_owned();
    let out = c.runtime(&["run", "--bundle", &bundle, &c.id]);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(!out.stderr.trim().is_empty());
    assert_no_leaks(&c.id, &c.cgroup_path, &c.root, None);
}

#[test]
fn missing_config_json() {
    let c = Container::new("no-config");
    let bundle = c.bundle.to_string_lossy().into_owned();
    let out = c.runtime(&["run", "--bundle", &bundle, &c.id]);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("config.json"), "{out:#?}");
}

#[test]
fn missing_root_path() {
    let mut c = Container::new("no-root");
    c.config.as_object_mut().unwrap().remove("root");
    assert_clean_failure(&mut c, "missing root");
}

#[test]
fn nonexistent_rootfs_dir() {
    let mut c = Container::new("no-rootfs");
    c.config["root"]["path"] = json!("no-such-rootfs");
    assert_clean_failure(&mut c, "nonexistent rootfs");
}

#[test]
fn unknown_capability_name() {
    // runc 1.1 only warns about unknown capability names.
    if !require_polis("unknown capability is an error") {
        return;
    }
    let mut c = Container::new("bad-cap");
    c.config["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .unwrap()
        .push(json!("CAP_NOT_A_CAPABILITY"));
    assert_clean_failure(&mut c, "unknown capability");
}

#[test]
fn nonexistent_executable() {
    let mut c = Container::new("bad-exe");
    c.args(&["/no/such/binary"]);
    assert_clean_failure(&mut c, "nonexistent args[0]");
}

#[test]
fn not_executable_args0() {
    let mut c = Container::new("noexec-args");
    fs::write(c.rootfs().join("etc/not-exec"), "data").unwrap();
    c.args(&["/etc/not-exec"]);
    assert_clean_failure(&mut c, "args[0] not executable");
}

#[test]
fn unknown_namespace_path() {
    let mut c = Container::new("bad-ns");
    c.set_namespace("ipc", Some("/proc/999999999/ns/ipc"));
    assert_clean_failure(&mut c, "bad namespace path");
}

#[test]
fn invalid_mount_type() {
    let mut c = Container::new("bad-mount");
    c.add_mount(json!({"destination": "/x", "type": "no-such-fs", "source": "none"}));
    assert_clean_failure(&mut c, "bad mount type");
}

#[test]
fn unsupported_spec_features_are_refused() {
    if !require_polis("runc 1.1 has Intel RDT and ignores newer fields") {
        return;
    }
    for (what, key, value) in [
        ("intelRdt", "intelRdt", json!({ "closID": "polis" })),
        ("netDevices", "netDevices", json!({ "eth9": {} })),
        (
            "memoryPolicy",
            "memoryPolicy",
            json!({ "mode": "MPOL_BIND", "nodes": "0" }),
        ),
    ] {
        let mut c = Container::new("unsupported");
        c.config["linux"][key] = value;
        c.skip_leak_check = true;
        let out = c.run();
        assert_ne!(out.code, 0, "{what}: {out:#?}");
        assert!(out.stderr.contains(what), "{what}: {}", out.stderr);
        assert_no_leaks(&c.id, &c.cgroup_path, &c.root, None);
    }
}

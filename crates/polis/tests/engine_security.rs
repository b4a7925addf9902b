//! Docker's security settings through the docker CLI: the default seccomp profile and
//! capabilities, `--cap-add`/`--cap-drop`, `--privileged`, `--security-opt`,
//! `--read-only`, the masked and read-only /proc paths, and `--init`.

mod common;

use common::daemon::{busybox_tar, wait_for, Daemon};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EPERM: i32 = 1;
const EINVAL: i32 = 22;
const ENOSYS: i32 = 38;

/// A tiny static program that makes the syscalls busybox cannot, and prints
/// `name=0` on success or `name=ERRNO`.
const SYS_HELPER: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *n = argv[i];
        long r;
        errno = 0;
        if (!strcmp(n, "add_key"))
            r = syscall(SYS_add_key, "user", "polis", "x", 1, -2);
        else if (!strcmp(n, "keyctl"))
            r = syscall(SYS_keyctl, 0, -3, 1);
        else if (!strcmp(n, "clone3"))
            r = syscall(SYS_clone3, NULL, 0);
        else if (!strcmp(n, "getpid"))
            r = syscall(SYS_getpid);
        else
            return 2;
        printf("%s=%d\n", n, r < 0 ? errno : 0);
    }
    return 0;
}
"#;

/// A daemon with busybox:local, which also holds /bin/sys (the helper above).
fn daemon(name: &str) -> Daemon {
    let d = Daemon::start(name);
    import_image(&d);
    d
}

fn import_image(d: &Daemon) {
    let tar = busybox_tar(&d.dir);
    let rootfs = d.dir.join("rootfs");
    let src = d.dir.join("sys.c");
    std::fs::write(&src, SYS_HELPER).unwrap();
    let cc = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(rootfs.join("bin/sys"))
        .arg(&src)
        .output()
        .unwrap();
    assert!(cc.status.success(), "cc: {cc:?}");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let (code, _, err) = d.docker_in(
        &["import", "-c", "CMD [\"sh\"]", "-", "busybox:local"],
        Some(&tar),
    );
    assert_eq!(code, 0, "{err}");
}

/// `docker run --rm [flags] busybox:local sh -c script`: (exit code, stdout, stderr).
fn run(d: &Daemon, flags: &[&str], script: &str) -> (i32, String, String) {
    let mut args = vec!["run", "--rm"];
    args.extend(flags);
    args.extend(["busybox:local", "sh", "-c", script]);
    d.docker(&args)
}

/// Like `run`, but the script must succeed; its stdout.
fn run_ok(d: &Daemon, flags: &[&str], script: &str) -> String {
    let (code, out, err) = run(d, flags, script);
    assert_eq!(code, 0, "{flags:?} {script}: {out}{err}");
    out
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .trim()
        .to_string()
}

/// The errno the helper reports for `syscall`.
fn errno(out: &str, syscall: &str) -> i32 {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{syscall}=")))
        .unwrap_or_else(|| panic!("no {syscall} in {out:?}"))
        .parse()
        .unwrap()
}

#[test]
fn default_seccomp_profile_and_its_options() {
    let d = daemon("sec-seccomp");
    let (code, out, err) = d.docker(&["info", "--format", "{{json .SecurityOptions}}"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), r#"["name=seccomp,profile=builtin"]"#);

    // The default: keyring syscalls and namespaces are refused, ordinary ones work,
    // clone3 says ENOSYS so that libc falls back to clone.
    let out = run_ok(
        &d,
        &[],
        "grep Seccomp: /proc/self/status; sys getpid add_key keyctl clone3; \
         unshare -U true 2>&1 || echo unshare refused; mkdir /made && echo mkdir ok",
    );
    assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
    assert_eq!(errno(&out, "getpid"), 0);
    assert_eq!(errno(&out, "add_key"), EPERM);
    assert_eq!(errno(&out, "keyctl"), EPERM);
    assert_eq!(errno(&out, "clone3"), ENOSYS);
    assert!(out.contains("Operation not permitted") && out.contains("unshare refused"));
    assert!(out.contains("mkdir ok"), "{out}");
    // exec'd processes are under the same filter.
    let (code, _, err) = d.docker(&[
        "run",
        "-d",
        "--name",
        "held",
        "busybox:local",
        "sleep",
        "60",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = d.docker(&["exec", "held", "sys", "add_key"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(errno(&out, "add_key"), EPERM);
    assert_eq!(d.docker(&["rm", "-f", "held"]).0, 0);

    // CAP_SYS_ADMIN brings the rules that need it: clone3 is let through to the kernel.
    let out = run_ok(&d, &["--cap-add", "SYS_ADMIN"], "sys clone3");
    assert_eq!(errno(&out, "clone3"), EINVAL);

    // unconfined: no filter at all.
    let out = run_ok(
        &d,
        &["--security-opt", "seccomp=unconfined"],
        "grep Seccomp: /proc/self/status; sys add_key clone3; unshare -U true && echo unshared",
    );
    assert_eq!(status_field(&out, "Seccomp"), "0", "{out}");
    assert_ne!(errno(&out, "add_key"), EPERM);
    assert_eq!(errno(&out, "clone3"), EINVAL);
    assert!(out.contains("unshared"), "{out}");

    // A profile file: the docker CLI sends its content.
    let profile = d.dir.join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let (code, out, _) = run(&d, &["--security-opt", &opt], "mkdir /nope; echo rc=$?");
    assert_eq!(code, 0);
    assert!(out.contains("rc=1"), "{out}");
    let out = run_ok(&d, &["--security-opt", &opt], "sys add_key");
    assert_ne!(errno(&out, "add_key"), EPERM, "only mkdir is refused");

    // Malformed profiles are refused, saying what is wrong.
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOPE"}]}"#,
    )
    .unwrap();
    let (code, _, err) = run(&d, &["--security-opt", &opt], "true");
    assert_eq!(code, 125);
    assert!(
        err.contains("Decoding seccomp profile failed") && err.contains("SCMP_ACT_NOPE"),
        "{err}"
    );
    assert_eq!(d.docker(&["ps", "-aq"]).1.trim(), "", "nothing half-made");
}

#[test]
fn capabilities_and_security_opts() {
    let d = daemon("sec-caps");
    let caps = |flags: &[&str]| {
        let out = run_ok(&d, flags, "cat /proc/self/status");
        (status_field(&out, "CapEff"), status_field(&out, "CapBnd"))
    };
    assert_eq!(
        caps(&[]),
        ("00000000a80425fb".into(), "00000000a80425fb".into())
    );
    assert_eq!(caps(&["--cap-add", "sys_admin"]).0, "00000000a82425fb");
    assert_eq!(
        caps(&["--cap-add", "CAP_SYS_ADMIN", "--cap-drop", "chown"]).0,
        "00000000a82425fa"
    );
    assert_eq!(
        caps(&["--cap-drop", "ALL"]),
        ("0000000000000000".into(), "0000000000000000".into())
    );
    assert_eq!(
        caps(&["--cap-drop", "ALL", "--cap-add", "KILL"]).0,
        "0000000000000020"
    );
    // A non-root user keeps the bounding set only, as after execve.
    let out = run_ok(&d, &["--user", "1000"], "cat /proc/self/status");
    assert_eq!(status_field(&out, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&out, "CapBnd"), "00000000a80425fb");

    let (code, _, err) = run(&d, &["--cap-add", "NOT_A_CAP"], "true");
    assert_eq!(code, 125);
    assert!(
        err.contains(r#"unknown capability: "CAP_NOT_A_CAP""#),
        "{err}"
    );

    let out = run_ok(
        &d,
        &["--security-opt", "no-new-privileges"],
        "cat /proc/self/status",
    );
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");
    let out = run_ok(
        &d,
        &["--security-opt", "no-new-privileges=false"],
        "cat /proc/self/status",
    );
    assert_eq!(status_field(&out, "NoNewPrivs"), "0");

    for (opt, message) in [
        ("foo=bar", r#"invalid --security-opt 2: "foo=bar""#),
        ("no-new-privileges=perhaps", "invalid --security-opt 2"),
        ("label=bogus", "bad label option"),
    ] {
        let (code, _, err) = run(&d, &["--security-opt", opt], "true");
        assert_eq!(code, 125, "{opt}");
        assert!(err.contains(message), "{opt}: {err}");
    }
    if !Path::new("/sys/fs/selinux/enforce").exists() {
        let (code, _, err) = run(&d, &["--security-opt", "label=type:svirt_t"], "true");
        assert_eq!(code, 125);
        assert!(err.contains("SELinux is not enabled on this host"), "{err}");
        run_ok(&d, &["--security-opt", "label=disable"], "true");
    }
    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim() == "Y");
    if !apparmor {
        let (code, _, err) = run(&d, &["--security-opt", "apparmor=docker-default"], "true");
        assert_eq!(code, 125);
        assert!(
            err.contains("AppArmor is not enabled on this host"),
            "{err}"
        );
        run_ok(&d, &["--security-opt", "apparmor=unconfined"], "true");
    }
    assert_eq!(d.docker(&["ps", "-aq"]).1.trim(), "");
}

/// A block or char device of the host that no ordinary container gets.
fn host_only_device() -> String {
    for name in ["loop0", "kmsg", "vda", "sda", "mem"] {
        let p = format!("/dev/{name}");
        if Path::new(&p).exists() {
            return p;
        }
    }
    panic!("no suitable host device in /dev");
}

#[test]
fn privileged_read_only_and_system_paths() {
    let d = daemon("sec-priv");
    let device = host_only_device();
    // The default: masked and read-only /proc paths, read-only /sys, no host devices,
    // no mounts.
    let script = format!(
        "wc -c < /proc/timer_list; grep -E ' /(proc/sys|sys) ' /proc/mounts; \
         ls {device} 2>/dev/null || echo no device; \
         mount -t tmpfs none /tmp 2>/dev/null && echo mounted || echo no mount; \
         grep -E 'Seccomp:|CapEff:' /proc/self/status"
    );
    let out = run_ok(&d, &[], &script);
    assert!(out.starts_with("0\n"), "timer_list is masked: {out}");
    assert!(out.contains("proc /proc/sys proc ro,"), "{out}");
    assert!(out.contains("sysfs /sys sysfs ro,"), "{out}");
    assert!(
        out.contains("no device") && out.contains("no mount"),
        "{out}"
    );

    let out = run_ok(&d, &["--privileged"], &script);
    let host_status = std::fs::read_to_string("/proc/self/status").unwrap();
    assert_eq!(
        status_field(&out, "CapEff"),
        status_field(&host_status, "CapBnd"),
        "all the host's bounding set"
    );
    assert_eq!(status_field(&out, "Seccomp"), "0");
    assert!(!out.starts_with("0\n"), "nothing masked: {out}");
    assert!(!out.contains("/proc/sys proc"), "{out}");
    assert!(out.contains("sysfs /sys sysfs rw,"), "{out}");
    assert!(out.contains(&device) && out.contains("mounted"), "{out}");

    // --security-opt systempaths=unconfined: nothing masked, nothing read-only.
    let out = run_ok(
        &d,
        &["--security-opt", "systempaths=unconfined"],
        "wc -c < /proc/timer_list; grep ' /proc/sys ' /proc/mounts || echo rw",
    );
    assert!(!out.starts_with("0\n") && out.contains("rw"), "{out}");

    // --read-only: the rootfs cannot be written; /dev/shm still can.
    let out = run_ok(
        &d,
        &["--read-only"],
        "touch /file 2>&1; touch /dev/shm/x && echo shm ok; grep ' / ' /proc/mounts",
    );
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("shm ok"), "{out}");
    assert!(out.contains("overlay / overlay ro,"), "{out}");
    let (code, out, err) = run(&d, &["--read-only", "--privileged"], "touch /file");
    assert_eq!(code, 1, "{out}{err}");
}

#[test]
fn init_runs_the_command_as_its_child() {
    let d = daemon("sec-init");
    let (code, out, err) = run(
        &d,
        &["--init"],
        "cat /proc/1/comm; tr '\\0' ' ' < /proc/1/cmdline; echo; echo ppid=$PPID; exit 7",
    );
    assert_eq!(code, 7, "the exit code passes through: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "docker-init", "{out}");
    assert!(lines[1].starts_with("/sbin/docker-init -- sh -c "), "{out}");
    assert_eq!(lines[2], "ppid=1", "{out}");

    // Signals pass through: sleep as PID 1 would ignore SIGTERM, as tini's child it dies.
    let (code, _, err) = d.docker(&[
        "run",
        "-d",
        "--init",
        "--name",
        "sleeper",
        "busybox:local",
        "sleep",
        "60",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = d.docker(&["inspect", "-f", "{{.Path}} {{.Args}}", "sleeper"]);
    assert_eq!((code, out.trim()), (0, "sleep [60]"), "{err}");
    // Once tini runs its child (before that a TERM to PID 1 would be ignored).
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.docker(&["exec", "sleeper", "pidof", "sleep"]).0 != 0 {
        assert!(Instant::now() < deadline, "sleep never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(d.docker(&["kill", "-s", "TERM", "sleeper"]).0, 0);
    let (code, out, err) = d.docker(&["wait", "sleeper"]);
    assert_eq!((code, out.trim()), (0, "143"), "{err}");
    assert_eq!(d.docker(&["rm", "sleeper"]).0, 0);

    // A daemon whose init binary is missing says so.
    let dir = d.dir.join("other");
    std::fs::create_dir_all(&dir).unwrap();
    let mut other = Daemon {
        child: None,
        socket: dir.join("run/polis.sock"),
        dir: dir.clone(),
    };
    other.child = Some(
        Command::new(env!("CARGO_BIN_EXE_polis"))
            .args([
                "daemon",
                "--bridge",
                "none",
                "--init-path",
                "/nonexistent/tini",
                "--root",
            ])
            .arg(dir.join("root"))
            .arg("--run-root")
            .arg(dir.join("run"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&other.socket);
    import_image(&other);
    let (code, _, err) = run(&other, &["--init"], "true");
    assert_eq!(code, 125);
    assert!(
        err.contains("/nonexistent/tini") && err.contains("init-path"),
        "{err}"
    );
    run_ok(&other, &[], "true");
}

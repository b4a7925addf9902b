//! The container process as configured by `process`: args, env, cwd, user and
//! groups, umask, capabilities, rlimits, noNewPrivileges, oomScoreAdj, and a
//! terminal handed over through --console-socket.

mod common;

use common::*;
use serde_json::json;
use std::fs::File;
use std::io::{IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixListener;
use std::time::Duration;

/// Runs `sh -c script` in the foreground and returns its stdout (exit must be 0).
fn run_sh(c: &mut Container, script: &str) -> String {
    c.sh(script);
    let out = c.run();
    assert_eq!(out.code, 0, "{out:#?}");
    out.stdout
}

#[test]
fn args_env_cwd() {
    let mut c = Container::new("args-env");
    c.args(&[
        "sh",
        "-c",
        "echo \"$0|$1|$FOO|$PATH\"; pwd",
        "zero",
        "one two",
    ]);
    c.config["process"]["env"] = json!(["PATH=/bin:/sbin", "FOO=foo bar"]);
    c.config["process"]["cwd"] = json!("/dev/shm");
    let out = c.run();
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, "zero|one two|foo bar|/bin:/sbin\n/dev/shm\n");
}

#[test]
fn env_is_exactly_the_config() {
    let mut c = Container::new("env-exact");
    c.config["process"]["env"] = json!(["PATH=/bin", "A=1", "B=2"]);
    // Like runc, HOME is added from /etc/passwd when the config does not set it.
    c.args(&["env"]);
    let out = c.run();
    assert_eq!(out.code, 0, "{out:#?}");
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec!["A=1", "B=2", "HOME=/root", "PATH=/bin"],
        "{out:#?}"
    );
}

#[test]
fn user_uid_gid_additional_gids() {
    let mut c = Container::new("user");
    c.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [65534, 5]});
    let out = run_sh(&mut c, "id -u; id -g; cat /proc/self/status");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1000"));
    assert_eq!(lines.next(), Some("1000"));
    let status: String = lines.collect::<Vec<_>>().join("\n");
    assert_eq!(
        status_field(&status, "Uid").unwrap(),
        "1000\t1000\t1000\t1000"
    );
    assert_eq!(
        status_field(&status, "Gid").unwrap(),
        "1000\t1000\t1000\t1000"
    );
    let mut groups: Vec<u32> = status_field(&status, "Groups")
        .unwrap()
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    groups.sort();
    assert_eq!(groups, vec![5, 65534]);
}

#[test]
fn user_root_has_no_supplementary_groups() {
    let mut c = Container::new("user-root");
    let out = run_sh(&mut c, "cat /proc/self/status");
    assert_eq!(status_field(&out, "Uid").unwrap(), "0\t0\t0\t0");
    assert_eq!(status_field(&out, "Groups").unwrap(), "");
}

#[test]
fn umask() {
    let mut c = Container::new("umask");
    c.config["process"]["user"]["umask"] = json!(0o027);
    let out = run_sh(&mut c, "umask; grep Umask /proc/self/status");
    assert_eq!(out, "0027\nUmask:\t0027\n");
}

#[test]
fn default_umask_is_0022() {
    let mut c = Container::new("umask-default");
    let out = run_sh(&mut c, "grep Umask /proc/self/status");
    assert_eq!(out, "Umask:\t0022\n");
}

struct CapSets {
    bounding: &'static [&'static str],
    effective: &'static [&'static str],
    permitted: &'static [&'static str],
    inheritable: &'static [&'static str],
    ambient: &'static [&'static str],
}

const CAPS: CapSets = CapSets {
    bounding: &[
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_NET_RAW",
        "CAP_SYS_CHROOT",
        "CAP_NET_BIND_SERVICE",
    ],
    effective: &["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
    permitted: &["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
    inheritable: &["CAP_KILL", "CAP_NET_BIND_SERVICE"],
    ambient: &["CAP_KILL", "CAP_NET_BIND_SERVICE"],
};

fn caps_container(name: &str, uid: u32, no_new_privs: bool) -> (Container, String) {
    let mut c = Container::new(name);
    c.config["process"]["noNewPrivileges"] = json!(no_new_privs);
    c.config["process"]["user"] = json!({"uid": uid, "gid": uid});
    c.config["process"]["capabilities"] = json!({
        "bounding": CAPS.bounding,
        "effective": CAPS.effective,
        "permitted": CAPS.permitted,
        "inheritable": CAPS.inheritable,
        "ambient": CAPS.ambient,
    });
    // Read by the container process itself (cat is pid 1, after the runtime's execve).
    c.args(&["cat", "/proc/self/status"]);
    let out = c.run();
    assert_eq!(out.code, 0, "{out:#?}");
    (c, out.stdout)
}

fn cap_field(status: &str, key: &str) -> u64 {
    u64::from_str_radix(&status_field(status, key).expect(key), 16).expect("hex caps")
}

/// For a non-root user the kernel keeps only the ambient set across execve
/// (permitted = effective = ambient), so every configured set is visible exactly.
#[test]
fn capabilities_non_root() {
    let (_c, status) = caps_container("caps-user", 1000, true);
    assert_eq!(
        cap_field(&status, "CapBnd"),
        cap_mask(CAPS.bounding),
        "{status}"
    );
    assert_eq!(cap_field(&status, "CapInh"), cap_mask(CAPS.inheritable));
    assert_eq!(cap_field(&status, "CapAmb"), cap_mask(CAPS.ambient));
    assert_eq!(cap_field(&status, "CapPrm"), cap_mask(CAPS.ambient));
    assert_eq!(cap_field(&status, "CapEff"), cap_mask(CAPS.ambient));
}

/// For uid 0 with noNewPrivileges the execve may not gain capabilities:
/// permitted = effective = the configured permitted set.
#[test]
fn capabilities_root_no_new_privs() {
    let (_c, status) = caps_container("caps-root-nnp", 0, true);
    assert_eq!(
        cap_field(&status, "CapBnd"),
        cap_mask(CAPS.bounding),
        "{status}"
    );
    assert_eq!(cap_field(&status, "CapInh"), cap_mask(CAPS.inheritable));
    assert_eq!(cap_field(&status, "CapAmb"), cap_mask(CAPS.ambient));
    assert_eq!(cap_field(&status, "CapPrm"), cap_mask(CAPS.permitted));
    assert_eq!(cap_field(&status, "CapEff"), cap_mask(CAPS.permitted));
}

/// For uid 0 without noNewPrivileges the execve grants permitted = effective =
/// inheritable | bounding (the kernel's root rule), ambient is kept.
#[test]
fn capabilities_root() {
    let (_c, status) = caps_container("caps-root", 0, false);
    let bnd = cap_mask(CAPS.bounding);
    assert_eq!(cap_field(&status, "CapBnd"), bnd, "{status}");
    assert_eq!(cap_field(&status, "CapInh"), cap_mask(CAPS.inheritable));
    assert_eq!(cap_field(&status, "CapAmb"), cap_mask(CAPS.ambient));
    let expect = bnd | cap_mask(CAPS.inheritable);
    assert_eq!(cap_field(&status, "CapPrm"), expect);
    assert_eq!(cap_field(&status, "CapEff"), expect);
}

#[test]
fn capabilities_runc_spec_default() {
    let mut c = Container::new("caps-default");
    c.args(&["cat", "/proc/self/status"]);
    let out = c.run();
    assert_eq!(out.code, 0, "{out:#?}");
    let default = cap_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    for key in ["CapBnd", "CapPrm", "CapEff"] {
        assert_eq!(cap_field(&out.stdout, key), default, "{key}");
    }
    // Ambient capabilities need to be inheritable too; `runc spec` lists none.
    assert_eq!(cap_field(&out.stdout, "CapInh"), 0);
    assert_eq!(cap_field(&out.stdout, "CapAmb"), 0);
}

#[test]
fn capability_actually_denied() {
    // Without CAP_CHOWN even root cannot chown a file it does not need to own.
    let mut c = Container::new("caps-deny");
    c.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]
    });
    c.sh("echo x > /dev/shm/f && chown 1000 /dev/shm/f");
    let out = c.run();
    assert_ne!(out.code, 0, "chown without CAP_CHOWN succeeded: {out:#?}");
}

#[test]
fn rlimits() {
    let mut c = Container::new("rlimits");
    c.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000},
        {"type": "RLIMIT_MSGQUEUE", "soft": 4096, "hard": 8192},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
    ]);
    let out = run_sh(&mut c, "ulimit -n; ulimit -Hn; cat /proc/self/limits");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("512"));
    assert_eq!(lines.next(), Some("1000"));
    let limits: Vec<&str> = lines.collect();
    let row = |name: &str| -> Vec<String> {
        let l = limits
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing in limits"));
        l[name.len()..]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("Max open files")[..2], ["512", "1000"]);
    assert_eq!(row("Max msgqueue size")[..2], ["4096", "8192"]);
    assert_eq!(row("Max core file size")[..2], ["0", "0"]);
}

#[test]
fn no_new_privileges_on() {
    let mut c = Container::new("nnp-on");
    c.config["process"]["noNewPrivileges"] = json!(true);
    let out = run_sh(&mut c, "grep NoNewPrivs /proc/self/status");
    assert_eq!(out, "NoNewPrivs:\t1\n");
}

#[test]
fn no_new_privileges_off() {
    let mut c = Container::new("nnp-off");
    c.config["process"]["noNewPrivileges"] = json!(false);
    let out = run_sh(&mut c, "grep NoNewPrivs /proc/self/status");
    assert_eq!(out, "NoNewPrivs:\t0\n");
}

#[test]
fn oom_score_adj() {
    let mut c = Container::new("oom");
    c.config["process"]["oomScoreAdj"] = json!(123);
    let out = run_sh(&mut c, "cat /proc/self/oom_score_adj");
    assert_eq!(out, "123\n");
}

/// Accepts one connection on `listener` and receives the pty master sent with
/// SCM_RIGHTS.
fn receive_pty_master(listener: &UnixListener) -> File {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let (conn, _) = listener.accept().expect("accept console socket");
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .expect("recvmsg on console socket");
    for c in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = c {
            let fd = *fds.first().expect("one fd");
            // SAFETY: the fd was just received via SCM_RIGHTS and nothing else owns it.
            return unsafe { File::from_raw_fd(fd) };
        }
    }
    panic!("no SCM_RIGHTS message on the console socket");
}

/// Reads the pty master until the slave side is gone (EIO) or EOF.
fn read_all_pty(mut master: File) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn terminal_via_console_socket() {
    let mut c = Container::new("console");
    c.config["process"]["terminal"] = json!(true);
    c.config["process"]["consoleSize"] = json!({"height": 31, "width": 101});
    c.sh("stty size; tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-tty");
    let sock = c.dir.join("console.sock");
    let listener = UnixListener::bind(&sock).expect("bind console socket");
    let sock_arg = sock.to_str().unwrap().to_string();
    let receiver = std::thread::spawn(move || receive_pty_master(&listener));
    let out = c.create_with(&["--console-socket", &sock_arg]);
    assert_eq!(out.code, 0, "{out:#?}");
    let master = receiver.join().expect("console receiver");
    c.start().ok();
    let text = read_all_pty(master);
    c.wait_status("stopped", Duration::from_secs(10));
    assert_eq!(text, "31 101\r\n/dev/pts/0\r\nall-tty\r\n", "{text:?}");
}

#[test]
fn terminal_without_console_socket_fails() {
    let mut c = Container::new("console-missing");
    c.config["process"]["terminal"] = json!(true);
    c.args(&["true"]);
    let out = c.create();
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(c.try_state().is_err());
}

#[test]
fn io_priority_and_scheduler() {
    if !require_polis("ioPriority and scheduler (runc 1.1 predates them)") {
        return;
    }
    let mut c = Container::new("sched");
    c.args(&["sleep", "1000"]);
    c.config["process"]["ioPriority"] = json!({ "class": "IOPRIO_CLASS_BE", "priority": 6 });
    c.config["process"]["scheduler"] = json!({ "policy": "SCHED_BATCH", "nice": 7 });
    c.create_start();
    let pid = c.pid.unwrap();
    // SAFETY: ioprio_get(IOPRIO_WHO_PROCESS, pid) and sched_getscheduler(pid): integers only.
    let (ioprio, policy) = unsafe {
        (
            libc::syscall(libc::SYS_ioprio_get, 1, pid),
            libc::sched_getscheduler(pid),
        )
    };
    assert_eq!(ioprio, (2 << 13) | 6, "ioprio class BE, level 6");
    assert_eq!(policy, libc::SCHED_BATCH);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let nice: i32 = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(16)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(nice, 7);
}

#[test]
fn personality_linux32() {
    let mut c = Container::new("pers32");
    c.config["linux"]["personality"] = json!({ "domain": "LINUX32" });
    let out = run_sh(&mut c, "uname -m");
    assert_eq!(out, "i686\n");
}

#[test]
fn security_labels_without_lsm_are_refused() {
    if std::path::Path::new("/sys/module/apparmor/parameters/enabled").exists()
        || std::path::Path::new("/sys/fs/selinux/enforce").exists()
    {
        eprintln!("skipped: this host has an LSM enabled");
        return;
    }
    for (key, value, lsm) in [
        ("apparmorProfile", "polis-test", "AppArmor"),
        (
            "selinuxLabel",
            "system_u:system_r:container_t:s0",
            "SELinux",
        ),
    ] {
        let mut c = Container::new("lsm");
        c.args(&["true"]);
        c.config["process"][key] = json!(value);
        c.skip_leak_check = true;
        let out = c.create();
        assert_ne!(out.code, 0, "{out:#?}");
        assert!(out.stderr.contains(lsm), "{}", out.stderr);
        assert_no_leaks(&c.id, &c.cgroup_path, &c.root, None);
    }
}

#[test]
fn workload_starts_with_no_signal_ignored_or_blocked() {
    let mut c = Container::new("signals");
    c.args(&["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]);
    let out = c.run();
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(
        out.stdout,
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
}

//! linux.seccomp end to end: the container's own /proc/self/status shows the filter, and
//! each action does what the profile says to real syscalls of a busybox workload.

mod common;

use common::*;
use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::{json, Value};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;

fn profile(default: &str, syscalls: Value) -> Value {
    json!({
        "defaultAction": default,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    })
}

#[test]
fn errno_with_errno_ret_and_filter_mode() {
    let mut c = Container::new("sc-errno");
    c.config["linux"]["seccomp"] = profile(
        "SCMP_ACT_ALLOW",
        json!([{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28 }]),
    );
    c.sh("grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; mkdir /tmp/d 2>&1; echo rc=$?");
    let out = c.run();
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("Seccomp:\t2"), "{}", out.stdout);
    // errno 28 is ENOSPC, which busybox prints as such.
    assert!(
        out.stdout.contains("No space left on device"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("rc=1"), "{}", out.stdout);
}

#[test]
fn default_errno_action_with_allow_list() {
    let mut c = Container::new("sc-default");
    // Everything a static busybox `sh -c` needs is allowed; getppid is not.
    c.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38 }, {
            "names": ["read", "write", "open", "openat", "close", "fstat", "newfstatat", "stat", "lstat",
                      "mmap", "munmap", "mprotect", "brk", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
                      "ioctl", "access", "execve", "exit", "exit_group", "arch_prctl", "set_tid_address",
                      "set_robust_list", "rseq", "prlimit64", "getrandom", "uname", "getpid", "getuid",
                      "geteuid", "getgid", "getegid", "fcntl", "dup2", "dup3", "wait4", "clone", "clone3",
                      "fork", "vfork", "readlink", "getcwd", "chdir", "prctl", "sigaltstack", "futex",
                      "statx", "pread64", "lseek", "getdents64", "sched_getaffinity", "madvise",
                      "close_range", "setsid", "setpgid", "getpgid", "getpgrp", "gettid", "tgkill", "kill"],
            "action": "SCMP_ACT_ALLOW"
        }]
    });
    c.args(&["sh", "-c", "echo allowed"]);
    let out = c.run();
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, "allowed\n");
}

#[test]
fn argument_conditions() {
    let mut c = Container::new("sc-args");
    // Mode 0777 exactly gets EPERM; any mode whose "other" bits are r-x gets EACCES.
    let rules = |name: &str, index: u32| {
        json!([
            { "names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
              "args": [{ "index": index, "value": 0o777, "op": "SCMP_CMP_EQ" }] },
            { "names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
              "args": [{ "index": index, "value": 0o7, "valueTwo": 0o5, "op": "SCMP_CMP_MASKED_EQ" }] }
        ])
    };
    let mut all = rules("chmod", 1).as_array().unwrap().clone();
    all.extend(rules("fchmodat", 2).as_array().unwrap().clone());
    all.push(json!({ "names": ["fchmodat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38 }));
    c.config["linux"]["seccomp"] = profile("SCMP_ACT_ALLOW", Value::Array(all));
    c.sh("f=/dev/shm/f; touch $f; chmod 644 $f && echo 644-ok; chmod 777 $f 2>&1; chmod 775 $f 2>&1; stat -c %a $f");
    let out = c.run();
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(
        out.stdout,
        "644-ok\nchmod: /dev/shm/f: Operation not permitted\nchmod: /dev/shm/f: Permission denied\n644\n"
    );
}

#[test]
fn kill_process_action() {
    let mut c = Container::new("sc-kill");
    c.config["linux"]["seccomp"] = profile(
        "SCMP_ACT_ALLOW",
        json!([{ "names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS" }]),
    );
    c.args(&["uname"]);
    let out = c.run();
    assert_eq!(out.code, 128 + libc::SIGSYS, "{out:#?}");
}

#[test]
fn log_and_trace_actions() {
    let mut c = Container::new("sc-log");
    c.config["linux"]["seccomp"] = profile(
        "SCMP_ACT_ALLOW",
        json!([
            { "names": ["getppid"], "action": "SCMP_ACT_LOG" },
            // Without a tracer, a traced syscall fails with ENOSYS.
            { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_TRACE", "errnoRet": 1 }
        ]),
    );
    c.sh("echo $PPID; mkdir /tmp/x 2>&1; echo rc=$?");
    let out = c.run();
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.starts_with("0\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("Function not implemented"),
        "{}",
        out.stdout
    );
}

#[test]
fn invalid_profile_is_refused_and_leaves_nothing() {
    let mut c = Container::new("sc-bad");
    c.config["linux"]["seccomp"] = profile(
        "SCMP_ACT_ALLOW",
        json!([{ "names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{ "index": 9, "value": 1, "op": "SCMP_CMP_EQ" }] }]),
    );
    c.args(&["true"]);
    c.skip_leak_check = true;
    let out = c.create();
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("seccomp"), "{}", out.stderr);
    assert_no_leaks(&c.id, &c.cgroup_path, &c.root, None);
}

fn receive_listener(listener: &UnixListener) -> (Value, OwnedFd) {
    let (stream, _) = listener.accept().expect("agent accept");
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .expect("recvmsg");
    let mut fd = None;
    for c in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: SCM_RIGHTS just installed this fd for us; nothing else owns it.
            fd = fds.first().map(|raw| unsafe { OwnedFd::from_raw_fd(*raw) });
        }
    }
    let len = msg.bytes;
    let mut data = buf[..len].to_vec();
    let mut rest = Vec::new();
    (&stream).read_to_end(&mut rest).expect("read rest");
    data.extend_from_slice(&rest);
    (
        serde_json::from_slice(&data).expect("state json"),
        fd.expect("listener fd"),
    )
}

#[test]
fn notify_reaches_the_agent_at_listener_path() {
    if !require_polis("seccomp notify with listenerPath") {
        return;
    }
    let mut c = Container::new("sc-notify");
    let sock = c.dir.join("agent.sock");
    let listener = UnixListener::bind(&sock).expect("bind agent socket");
    c.config["linux"]["seccomp"] = profile(
        "SCMP_ACT_ALLOW",
        json!([{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY" }]),
    );
    c.config["linux"]["seccomp"]["listenerPath"] = json!(sock.to_str().unwrap());
    c.config["linux"]["seccomp"]["listenerMetadata"] = json!("agent-meta");
    c.sh("mkdir /tmp/n 2>&1; echo rc=$?");
    let id = c.id.clone();
    let agent = std::thread::spawn(move || {
        let (state, fd) = receive_listener(&listener);
        // Answer the container's mkdir with EXDEV, which it cannot get on its own.
        let req = ScmpNotifReq::receive(fd.as_raw_fd()).expect("notification");
        ScmpNotifResp::new_error(req.id, -libc::EXDEV, ScmpNotifRespFlags::empty())
            .respond(fd.as_raw_fd())
            .expect("respond");
        (state, id)
    });
    let out = c.run();
    let (state, id) = agent.join().expect("agent thread");
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("rc=1"), "{}", out.stdout);
    assert!(
        out.stdout.to_lowercase().contains("cross-device link"),
        "{}",
        out.stdout
    );
    assert_eq!(state["fds"], json!(["seccompFd"]));
    assert_eq!(state["metadata"], json!("agent-meta"));
    assert_eq!(state["state"]["id"], json!(id));
    assert!(state["pid"].as_i64().unwrap_or(0) > 0, "{state}");
}

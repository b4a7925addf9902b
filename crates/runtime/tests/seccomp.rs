//! Seccomp filters loaded for real: each case forks a child that loads a compiled profile
//! and reports what its syscalls returned.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags, ScmpSyscall};
use nix::sys::signal::Signal;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::{
    ContainerProcessStateBuilder, ContainerState, LinuxSeccomp, StateBuilder, SECCOMP_FD_NAME,
};
use polis_runtime::seccomp::{self, SeccompProgram};

/// Forking while another test thread holds a lock (allocator, stdio) could leave the child
/// stuck on it, so only one test forks and runs its child at a time.
static FORK_LOCK: Mutex<()> = Mutex::new(());

/// What became of a child.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// It ran its checks; the text lists what failed (empty when all passed).
    Finished(String),
    Signaled(Signal),
    Other(String),
}

/// A forked child that has loaded a filter and runs its checks.
struct Child {
    pid: Pid,
    report: UnixStream,
}

impl Child {
    /// Read the child's report and reap it.
    fn finish(mut self) -> Outcome {
        let mut report = String::new();
        let _ = self.report.read_to_string(&mut report);
        match waitpid(self.pid, None) {
            Ok(WaitStatus::Exited(_, 0)) => Outcome::Finished(report),
            Ok(WaitStatus::Exited(_, code)) => Outcome::Other(format!("exit {code}: {report}")),
            Ok(WaitStatus::Signaled(_, signal, _)) => Outcome::Signaled(signal),
            other => Outcome::Other(format!("{other:?}")),
        }
    }
}

fn profile(json: &str) -> LinuxSeccomp {
    serde_json::from_str(json).expect("test profile parses")
}

/// Fork a child that sets no_new_privs, loads `program` and runs `checks` with the notify
/// listener (if any); what `checks` returns is the child's report.
fn spawn(program: SeccompProgram, checks: impl FnOnce(Option<OwnedFd>) -> String) -> Child {
    let (report, child_report) = UnixStream::pair().expect("socketpair");
    // SAFETY: tests fork one at a time (FORK_LOCK); the child only makes syscalls, loads
    // the filter and writes its report, then leaves with _exit without unwinding.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(report);
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut out = &child_report;
                if let Err(e) = nix::sys::prctl::set_no_new_privs() {
                    let _ = std::io::Write::write_all(&mut out, format!("nnp: {e}").as_bytes());
                    return 2;
                }
                let listener = match program.load() {
                    Ok(listener) => listener,
                    Err(e) => {
                        let _ = std::io::Write::write_all(&mut out, e.to_string().as_bytes());
                        return 3;
                    }
                };
                let text = checks(listener);
                let _ = std::io::Write::write_all(&mut out, text.as_bytes());
                0
            }))
            .unwrap_or(4);
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(child_report);
            drop(program);
            Child { pid: child, report }
        }
    }
}

fn run(program: SeccompProgram, checks: impl FnOnce(Option<OwnedFd>) -> String) -> Outcome {
    spawn(program, checks).finish()
}

fn compile(json: &str) -> SeccompProgram {
    SeccompProgram::compile(&profile(json)).expect("profile compiles")
}

/// A raw syscall: its return value or the errno it failed with.
fn sys(nr: libc::c_long, args: [u64; 3]) -> Result<i64, i32> {
    // SAFETY: only called with syscalls whose arguments are plain numbers or point to
    // buffers the caller owns.
    let ret = unsafe { libc::syscall(nr, args[0], args[1], args[2]) };
    if ret == -1 {
        Err(nix::errno::Errno::last_raw())
    } else {
        Ok(ret)
    }
}

/// Collect the failed expectations of a child into its report.
#[derive(Default)]
struct Checks(String);

impl Checks {
    fn expect(&mut self, what: &str, got: Result<i64, i32>, wanted: Result<i64, i32>) {
        if got != wanted {
            self.0 += &format!("{what}: got {got:?}, wanted {wanted:?}\n");
        }
    }
    fn expect_ok(&mut self, what: &str, got: Result<i64, i32>) {
        if got.is_err() {
            self.0 += &format!("{what}: got {got:?}, wanted success\n");
        }
    }
}

fn getcwd() -> Result<i64, i32> {
    let mut buf = [0u8; 4096];
    sys(
        libc::SYS_getcwd,
        [buf.as_mut_ptr() as u64, buf.len() as u64, 0],
    )
}

fn seccomp_mode() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("Seccomp:"))
        .map(|mode| mode.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn errno_with_errno_ret_and_default_eperm() {
    let _serial = FORK_LOCK.lock();
    let program = compile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
            {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["this_syscall_does_not_exist"], "action": "SCMP_ACT_ERRNO"}]}"#,
    );
    let outcome = run(program, |_| {
        let mut c = Checks::default();
        c.expect("getcwd", getcwd(), Err(42));
        c.expect("getpgid", sys(libc::SYS_getpgid, [0; 3]), Err(libc::EPERM));
        c.expect_ok("getpid", sys(libc::SYS_getpid, [0; 3]));
        if seccomp_mode() != "2" {
            c.0 += &format!(
                "/proc/self/status Seccomp: {:?}, wanted 2\n",
                seccomp_mode()
            );
        }
        c.0
    });
    assert_eq!(outcome, Outcome::Finished(String::new()));
}

#[test]
fn default_action_errno_with_default_errno_ret() {
    let _serial = FORK_LOCK.lock();
    // Only what the child needs to report and exit is allowed.
    let program = compile(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 77, "syscalls": [
            {"names": ["write", "exit", "exit_group", "rt_sigreturn", "rt_sigprocmask",
                       "brk", "mmap", "munmap", "mremap", "madvise", "futex", "close",
                       "sigaltstack", "getpid"],
             "action": "SCMP_ACT_ALLOW"}]}"#,
    );
    let outcome = run(program, |_| {
        let mut c = Checks::default();
        c.expect("getcwd", getcwd(), Err(77));
        c.expect("getppid", sys(libc::SYS_getppid, [0; 3]), Err(77));
        c.expect_ok("getpid", sys(libc::SYS_getpid, [0; 3]));
        c.0
    });
    assert_eq!(outcome, Outcome::Finished(String::new()));
}

#[test]
fn argument_conditions() {
    let _serial = FORK_LOCK.lock();
    // Syscalls that ignore their arguments still show them to the filter, so each operator
    // gets its own argument-less syscall and errno.
    let program = compile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "args": [{"index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 101,
             "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_NE"}]},
            {"names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 102,
             "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_LT"}]},
            {"names": ["getgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 103,
             "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_LE"}]},
            {"names": ["geteuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 104,
             "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_GE"}]},
            {"names": ["getegid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 105,
             "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_GT"}]},
            {"names": ["gettid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 106,
             "args": [{"index": 0, "value": 240, "valueTwo": 48, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 107,
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                      {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getpgrp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 108,
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]}]}"#,
    );
    let outcome = run(program, |_| {
        let mut c = Checks::default();
        c.expect(
            "personality(0xffffffff)",
            sys(libc::SYS_personality, [0xffff_ffff, 0, 0]),
            Err(13),
        );
        c.expect_ok("personality(0)", sys(libc::SYS_personality, [0, 0, 0]));

        let cases: [OperatorCase; 6] = [
            (
                "NE",
                libc::SYS_getpid,
                101,
                &[(4, true), (5, false), (6, true)],
            ),
            (
                "LT",
                libc::SYS_getuid,
                102,
                &[(4, true), (5, false), (6, false)],
            ),
            (
                "LE",
                libc::SYS_getgid,
                103,
                &[(4, true), (5, true), (6, false)],
            ),
            (
                "GE",
                libc::SYS_geteuid,
                104,
                &[(4, false), (5, true), (6, true)],
            ),
            (
                "GT",
                libc::SYS_getegid,
                105,
                &[(4, false), (5, false), (6, true)],
            ),
            (
                "MASKED_EQ",
                libc::SYS_gettid,
                106,
                &[
                    (0x30, true),
                    (0x3f, true),
                    (0x130, true),
                    (0x20, false),
                    (0x40, false),
                ],
            ),
        ];
        for (op, nr, errno, probes) in cases {
            for (arg, denied) in probes {
                let got = sys(nr, [*arg, 0, 0]);
                let what = format!("{op} with arg {arg:#x}");
                if *denied {
                    c.expect(&what, got, Err(errno));
                } else {
                    c.expect_ok(&what, got);
                }
            }
        }

        // Two comparisons of one argument: either one matches.
        c.expect(
            "same index, first",
            sys(libc::SYS_getppid, [1, 0, 0]),
            Err(107),
        );
        c.expect(
            "same index, second",
            sys(libc::SYS_getppid, [2, 0, 0]),
            Err(107),
        );
        c.expect_ok("same index, neither", sys(libc::SYS_getppid, [3, 0, 0]));
        // Comparisons of different arguments: all must match.
        c.expect("both indices", sys(libc::SYS_getpgrp, [1, 2, 0]), Err(108));
        c.expect_ok("first index only", sys(libc::SYS_getpgrp, [1, 3, 0]));
        c.expect_ok("second index only", sys(libc::SYS_getpgrp, [0, 2, 0]));
        c.0
    });
    assert_eq!(outcome, Outcome::Finished(String::new()));
}

/// An operator's name, the syscall its rule is on, the rule's errno, and argument values
/// with whether the rule should deny them.
type OperatorCase = (&'static str, libc::c_long, i32, &'static [(u64, bool)]);

fn deadly(action: &str) -> Outcome {
    let _serial = FORK_LOCK.lock();
    let program = compile(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{{"names": ["getcwd"], "action": "{action}"}}]}}"#
    ));
    run(program, |_| format!("getcwd survived: {:?}", getcwd()))
}

#[test]
fn kill_process_kills_with_sigsys() {
    assert_eq!(
        deadly("SCMP_ACT_KILL_PROCESS"),
        Outcome::Signaled(Signal::SIGSYS)
    );
}

#[test]
fn kill_and_kill_thread_kill_a_single_threaded_process() {
    assert_eq!(deadly("SCMP_ACT_KILL"), Outcome::Signaled(Signal::SIGSYS));
    assert_eq!(
        deadly("SCMP_ACT_KILL_THREAD"),
        Outcome::Signaled(Signal::SIGSYS)
    );
}

#[test]
fn trap_raises_sigsys() {
    assert_eq!(deadly("SCMP_ACT_TRAP"), Outcome::Signaled(Signal::SIGSYS));
}

#[test]
fn trace_without_tracer_fails_with_enosys() {
    let _serial = FORK_LOCK.lock();
    let program = compile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_TRACE"},
            {"names": ["getppid"], "action": "SCMP_ACT_TRACE", "errnoRet": 9}]}"#,
    );
    let outcome = run(program, |_| {
        let mut c = Checks::default();
        c.expect("getcwd", getcwd(), Err(libc::ENOSYS));
        c.expect("getppid", sys(libc::SYS_getppid, [0; 3]), Err(libc::ENOSYS));
        c.0
    });
    assert_eq!(outcome, Outcome::Finished(String::new()));
}

#[test]
fn log_and_allow_let_syscalls_run() {
    let _serial = FORK_LOCK.lock();
    let program = compile(
        r#"{"defaultAction": "SCMP_ACT_LOG", "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getppid"], "action": "SCMP_ACT_LOG"},
            {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5}]}"#,
    );
    let parent = std::process::id() as i64;
    let outcome = run(program, move |_| {
        let mut c = Checks::default();
        c.expect_ok("getcwd", getcwd());
        c.expect("getppid", sys(libc::SYS_getppid, [0; 3]), Ok(parent));
        c.expect_ok("getpid", sys(libc::SYS_getpid, [0; 3]));
        c.expect("getpgid", sys(libc::SYS_getpgid, [0; 3]), Err(5));
        c.0
    });
    assert_eq!(outcome, Outcome::Finished(String::new()));
}

#[test]
fn supported_flags_and_architectures_load() {
    let _serial = FORK_LOCK.lock();
    let flags = seccomp::supported_flags();
    let flags_json = serde_json::to_string(&flags).expect("json");
    let program = compile(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": {flags_json},
            "syscalls": [{{"names": ["getcwd", "socketcall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3}}]}}"#
    ));
    let outcome = run(program, |_| {
        let mut c = Checks::default();
        c.expect("getcwd", getcwd(), Err(3));
        c.0
    });
    assert_eq!(outcome, Outcome::Finished(String::new()), "flags {flags:?}");
}

/// A unix socket path of our own, removed when dropped.
struct SocketPath(PathBuf);

impl SocketPath {
    fn new(tag: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("polis-seccomp-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        SocketPath(path)
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Accept one connection within `timeout`.
fn accept_within(listener: &UnixListener, timeout: Duration) -> UnixStream {
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking");
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("no seccomp agent connection: {e}"),
        }
    }
}

/// Receive the container state and the listener fd the way a seccomp agent does.
fn receive_listener(stream: &UnixStream) -> (Vec<u8>, OwnedFd) {
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
    for cmsg in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for raw in fds {
                // SAFETY: SCM_RIGHTS just installed this fd in our table; nobody else owns it.
                fd = Some(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
    }
    let len = msg.bytes;
    let mut state = buf[..len].to_vec();
    let mut rest = Vec::new();
    (&*stream)
        .read_to_end(&mut rest)
        .expect("read rest of state");
    state.extend_from_slice(&rest);
    (state, fd.expect("listener fd came with the state"))
}

#[test]
fn notify_hands_the_listener_to_the_agent() {
    let _serial = FORK_LOCK.lock();
    let socket = SocketPath::new("notify");
    let agent = UnixListener::bind(&socket.0).expect("bind agent socket");
    let program = compile(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "{}",
            "listenerMetadata": "test-metadata",
            "syscalls": [{{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}}]}}"#,
        socket.0.display()
    ));
    assert!(program.needs_listener());

    let listener_path = socket.0.clone();
    let child = spawn(program, move |listener| {
        let Some(listener) = listener else {
            return "load returned no listener fd".into();
        };
        let state = ContainerProcessStateBuilder::default()
            .version("1.2.0")
            .fds(vec![SECCOMP_FD_NAME.to_string()])
            .pid(std::process::id() as i32)
            .metadata("test-metadata")
            .state(
                StateBuilder::default()
                    .version("1.2.0")
                    .id("notify-test")
                    .status(ContainerState::Creating)
                    .pid(std::process::id() as i32)
                    .bundle(PathBuf::from("/tmp/bundle"))
                    .build()
                    .expect("state"),
            )
            .build()
            .expect("process state");
        let json = serde_json::to_vec(&state).expect("state json");
        if let Err(e) = seccomp::send_listener(&listener_path, &json, listener.as_fd()) {
            return format!("send_listener: {e}");
        }
        drop(listener);
        let mut c = Checks::default();
        c.expect("notified getppid", sys(libc::SYS_getppid, [0; 3]), Ok(4242));
        c.0
    });

    let stream = accept_within(&agent, Duration::from_secs(10));
    let (state, listener) = receive_listener(&stream);
    let state: serde_json::Value = serde_json::from_slice(&state).expect("state is JSON");
    assert_eq!(state["fds"], serde_json::json!([SECCOMP_FD_NAME]));
    assert_eq!(state["metadata"], "test-metadata");
    assert_eq!(state["pid"], child.pid.as_raw());
    assert_eq!(state["state"]["id"], "notify-test");

    let request = ScmpNotifReq::receive(listener.as_raw_fd()).expect("notification");
    assert_eq!(request.pid, child.pid.as_raw() as u32);
    assert_eq!(
        request.data.syscall,
        ScmpSyscall::from_name("getppid").expect("getppid")
    );
    libseccomp::notify_id_valid(listener.as_raw_fd(), request.id).expect("id still valid");
    ScmpNotifResp::new_val(request.id, 4242, ScmpNotifRespFlags::empty())
        .respond(listener.as_raw_fd())
        .expect("respond");

    assert_eq!(child.finish(), Outcome::Finished(String::new()));
}

#[test]
fn send_listener_reports_a_missing_agent() {
    let socket = SocketPath::new("absent");
    let (fd, _other) = UnixStream::pair().expect("socketpair");
    let err = seccomp::send_listener(&socket.0, b"{}", fd.as_fd()).expect_err("no agent");
    assert!(
        err.to_string().contains(&socket.0.display().to_string()),
        "{err}"
    );
}

#[test]
fn feature_lists() {
    let actions = seccomp::supported_actions();
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    ] {
        assert!(actions.contains(&action.to_string()), "{actions:?}");
    }
    let flags = seccomp::supported_flags();
    for flag in [
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    ] {
        assert!(flags.contains(&flag.to_string()), "{flags:?}");
    }
    eprintln!(
        "actions {actions:?}\noperators {:?}\narchs {:?}\nflags {flags:?}",
        seccomp::supported_operators(),
        seccomp::supported_archs()
    );
}

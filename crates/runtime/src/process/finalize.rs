//! The last steps of every container process (the init and each exec): limits and
//! scheduling, the user switch, capabilities, no_new_privs, and the execve itself.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{PosixRlimit, Process};

use std::os::fd::AsRawFd;

use crate::capabilities::CapSets;
use crate::console;
use crate::error::{Error, Result};
use crate::seccomp::SeccompProgram;
use crate::sync::{Channel, Message};

/// What is left once the parent has heard `Ready`: the exec itself.
pub struct ReadyToExec {
    pub program: PathBuf,
    pub env: Vec<String>,
    /// With no_new_privs the filter goes in last, to cover as few of our own calls as can be.
    pub late_seccomp: Option<SeccompProgram>,
}

/// Give the process a pty (made in the container's devpts) and hand its master to the
/// parent. The init also shows it as /dev/console.
pub fn open_terminal(process: &Process, ch: &Channel, as_console: bool) -> Result<()> {
    if !process.terminal().unwrap_or(false) {
        return Ok(());
    }
    let size = process
        .console_size()
        .as_ref()
        .map(|b| (b.height() as u16, b.width() as u16));
    let pty = console::open_pty(size)?;
    if as_console {
        console::become_terminal(&pty)?;
    } else {
        console::attach_stdio(&pty.slave_path)?;
    }
    ch.send_with_fd(
        &Message::ConsoleMaster {
            slave: pty.slave_path.clone(),
        },
        Some(pty.master.as_raw_fd()),
    )?;
    ch.expect(Message::Ack)
}

/// From limits to the user switch: the steps the init and every exec share, in the
/// order the kernel needs them (privileged steps first).
pub fn become_workload(
    process: &Process,
    prepared: &Prepared,
    linux: Option<&oci_spec::runtime::Linux>,
    preserve_fds: u32,
    ch: &Channel,
) -> Result<ReadyToExec> {
    apply_limits(process, prepared)?;
    if let Some(linux) = linux {
        apply_personality(linux)?;
    }
    set_exec_labels(process)?;
    let env = environment(process);
    let cwd = process.cwd();
    nix::unistd::chdir(cwd)
        .map_err(|e| Error::sys(format!("chdir to cwd {}", cwd.display()), e))?;
    let program = find_executable(process, &env)?;
    let nnp = process.no_new_privileges().unwrap_or(false);
    let mut seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(SeccompProgram::compile(s)?),
        None => None,
    };
    // Without no_new_privs the filter must go in while we still hold CAP_SYS_ADMIN; a
    // notify listener must reach the parent before we report ready.
    if let Some(sc) = seccomp.take_if(|s| !nnp || s.needs_listener()) {
        if let Some(listener) = sc.load()? {
            ch.send_with_fd(&Message::SeccompListener, Some(listener.as_raw_fd()))?;
            ch.expect(Message::Ack)?;
        }
    }
    // A user namespace whose gid map was written without setgroups reads "deny" here.
    let setgroups = std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() != "deny")
        .unwrap_or(true);
    switch_user(process, prepared, setgroups)?;
    set_no_new_privs(process)?;
    cloexec_from(3 + preserve_fds)?;
    Ok(ReadyToExec {
        program,
        env,
        late_seccomp: seccomp,
    })
}

/// Everything checked up front (in the parent) so that bad values fail `create` early.
pub struct Prepared {
    pub caps: CapSets,
    pub rlimits: Vec<(u32, u64, u64)>,
}

fn rlimit_resource(r: &PosixRlimit) -> Result<u32> {
    let name = serde_json::to_value(r.typ())
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let res = match name.as_str() {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        other => {
            return Err(Error::InvalidConfig(format!(
                "process.rlimits: unknown type {other:?}"
            )))
        }
    };
    Ok(res)
}

pub fn prepare(process: &Process) -> Result<Prepared> {
    let caps = CapSets::from_spec(process.capabilities().as_ref())?;
    let mut rlimits = Vec::new();
    for r in process.rlimits().iter().flatten() {
        if r.soft() > r.hard() {
            return Err(Error::InvalidConfig(format!(
                "process.rlimits: {:?} soft limit {} above hard limit {}",
                r.typ(),
                r.soft(),
                r.hard()
            )));
        }
        rlimits.push((rlimit_resource(r)?, r.soft(), r.hard()));
    }
    if let Some(profile) = process
        .apparmor_profile()
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        if !apparmor_enabled() {
            return Err(Error::Unsupported(format!(
                "process.apparmorProfile {profile:?}: AppArmor is not enabled on this host"
            )));
        }
    }
    if let Some(label) = process.selinux_label().as_deref().filter(|l| !l.is_empty()) {
        if !Path::new("/sys/fs/selinux/enforce").exists() {
            return Err(Error::Unsupported(format!(
                "process.selinuxLabel {label:?}: SELinux is not enabled on this host"
            )));
        }
    }
    Ok(Prepared { caps, rlimits })
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false)
}

/// Limits, OOM score, I/O priority and scheduler: done while still privileged.
pub fn apply_limits(process: &Process, prepared: &Prepared) -> Result<()> {
    for &(res, soft, hard) in &prepared.rlimits {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: prlimit on ourselves with a valid rlimit struct; the old value is not read.
        let ret = unsafe { libc::prlimit(0, res as _, &lim, std::ptr::null_mut()) };
        if ret != 0 {
            return Err(Error::sys(
                format!("setrlimit resource {res} to {soft}:{hard}"),
                nix::errno::Errno::last(),
            ));
        }
    }
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| Error::io("write", "/proc/self/oom_score_adj", e))?;
    }
    if let Some(io) = process.io_priority() {
        let class = match serde_json::to_value(io.class())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .as_deref()
        {
            Some("IOPRIO_CLASS_RT") => 1,
            Some("IOPRIO_CLASS_BE") => 2,
            Some("IOPRIO_CLASS_IDLE") => 3,
            other => {
                return Err(Error::InvalidConfig(format!(
                    "process.ioPriority: class {other:?}"
                )))
            }
        };
        if !(0..=7).contains(&io.priority()) {
            return Err(Error::InvalidConfig(format!(
                "process.ioPriority: priority {} not in 0..=7",
                io.priority()
            )));
        }
        let value = (class << 13) | io.priority();
        // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, 0 = self, value): integers only.
        let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, value) };
        if ret != 0 {
            return Err(Error::sys("ioprio_set", nix::errno::Errno::last()));
        }
    }
    if let Some(s) = process.scheduler() {
        apply_scheduler(s)?;
    }
    Ok(())
}

fn apply_scheduler(s: &oci_spec::runtime::Scheduler) -> Result<()> {
    let policy = match serde_json::to_value(s.policy())
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .as_deref()
    {
        Some("SCHED_OTHER") => 0,
        Some("SCHED_FIFO") => 1,
        Some("SCHED_RR") => 2,
        Some("SCHED_BATCH") => 3,
        Some("SCHED_ISO") => 4,
        Some("SCHED_IDLE") => 5,
        Some("SCHED_DEADLINE") => 6,
        other => {
            return Err(Error::InvalidConfig(format!(
                "process.scheduler: policy {other:?}"
            )))
        }
    };
    let mut flags: u64 = 0;
    for f in s.flags().iter().flatten() {
        let name = serde_json::to_value(f)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        flags |= match name.as_str() {
            "SCHED_FLAG_RESET_ON_FORK" => 0x01,
            "SCHED_FLAG_RECLAIM" => 0x02,
            "SCHED_FLAG_DL_OVERRUN" => 0x04,
            "SCHED_FLAG_KEEP_POLICY" => 0x08,
            "SCHED_FLAG_KEEP_PARAMS" => 0x10,
            "SCHED_FLAG_UTIL_CLAMP_MIN" => 0x20,
            "SCHED_FLAG_UTIL_CLAMP_MAX" => 0x40,
            other => {
                return Err(Error::InvalidConfig(format!(
                    "process.scheduler: flag {other:?}"
                )))
            }
        };
    }
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    };
    // SAFETY: sched_setattr(0 = self, attr, 0) reads a sched_attr of the size it names.
    let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if ret != 0 {
        return Err(Error::sys("sched_setattr", nix::errno::Errno::last()));
    }
    Ok(())
}

/// The execution domain (`linux.personality`): 64- or 32-bit Linux.
pub fn apply_personality(linux: &oci_spec::runtime::Linux) -> Result<()> {
    let Some(p) = linux.personality() else {
        return Ok(());
    };
    if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(Error::Unsupported(format!(
            "linux.personality.flags {:?}: no personality flags are supported",
            p.flags()
        )));
    }
    let domain: libc::c_ulong = match p.domain() {
        oci_spec::runtime::LinuxPersonalityDomain::PerLinux => 0x0000,
        oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    // SAFETY: personality(2) takes an integer.
    if unsafe { libc::personality(domain) } == -1 {
        return Err(Error::sys("personality", nix::errno::Errno::last()));
    }
    Ok(())
}

/// Ask the kernel to put the next execve under the AppArmor profile and SELinux label.
pub fn set_exec_labels(process: &Process) -> Result<()> {
    if let Some(profile) = process
        .apparmor_profile()
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        let attr = if Path::new("/proc/self/attr/apparmor/exec").exists() {
            "/proc/self/attr/apparmor/exec"
        } else {
            "/proc/self/attr/exec"
        };
        std::fs::write(attr, format!("exec {profile}"))
            .map_err(|e| Error::io("apply AppArmor profile: write", attr, e))?;
    }
    if let Some(label) = process.selinux_label().as_deref().filter(|l| !l.is_empty()) {
        let attr = "/proc/self/attr/exec";
        std::fs::write(attr, label)
            .map_err(|e| Error::io("apply SELinux label: write", attr, e))?;
    }
    Ok(())
}

/// Become the configured user, keeping exactly the configured capabilities.
pub fn switch_user(process: &Process, prepared: &Prepared, setgroups_allowed: bool) -> Result<()> {
    prepared.caps.apply_bounding()?;
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let user = process.user();
    if setgroups_allowed {
        let groups: Vec<nix::unistd::Gid> = user
            .additional_gids()
            .iter()
            .flatten()
            .map(|g| nix::unistd::Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&groups)
            .map_err(|e| Error::sys(format!("setgroups {groups:?}"), e))?;
    }
    let gid = nix::unistd::Gid::from_raw(user.gid());
    let uid = nix::unistd::Uid::from_raw(user.uid());
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| Error::sys(format!("setgid {gid}"), e))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| Error::sys(format!("setuid {uid}"), e))?;
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    prepared.caps.apply()?;
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}

pub fn set_no_new_privs(process: &Process) -> Result<()> {
    if process.no_new_privileges().unwrap_or(false) {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(Error::sys("set no_new_privs", nix::errno::Errno::last()));
        }
    }
    Ok(())
}

/// The process environment, with HOME filled in from /etc/passwd as runc does.
pub fn environment(process: &Process) -> Vec<String> {
    let mut env = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = home_of(process.user().uid()).unwrap_or_else(|| "/".to_string());
        env.push(format!("HOME={home}"));
    }
    env
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
    })
}

/// Find `args[0]` as execvp would, using the process's own PATH.
pub fn find_executable(process: &Process, env: &[String]) -> Result<PathBuf> {
    let name = process
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .ok_or_else(|| Error::InvalidConfig("process.args: empty".into()))?;
    let not_found = || {
        Error::Init(format!(
            "exec: \"{name}\": executable file not found in $PATH"
        ))
    };
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return match std::fs::metadata(&p) {
            Ok(_) if is_exec(&p) => Ok(p),
            Ok(_) => Err(Error::Init(format!("exec: \"{name}\": permission denied"))),
            Err(_) => Err(Error::Init(format!(
                "exec: \"{name}\": stat {name}: no such file or directory"
            ))),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(name))
        .find(|p| is_exec(p))
        .ok_or_else(not_found)
}

/// Mark every descriptor from `first` on close-on-exec, so nothing of ours leaks.
///
/// A seccomp filter loaded before this point (needed when noNewPrivileges is off) may
/// deny close_range, as older profiles that predate it do with EPERM; then every open
/// descriptor listed in /proc/self/fd is marked one by one with fcntl, as runc does.
pub fn cloexec_from(first: u32) -> Result<()> {
    // SAFETY: close_range with integer arguments; CLOEXEC closes nothing now.
    let ret = unsafe { libc::close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    if ret == 0 {
        return Ok(());
    }
    let close_range_err = nix::errno::Errno::last();
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| Error::io("read_dir", "/proc/self/fd", e))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd: &i32| fd >= 0 && fd as u32 >= first)
        .collect();
    for fd in fds {
        // SAFETY: fcntl F_SETFD on a descriptor number; one that the directory listing
        // itself held and closed since fails with EBADF, which is ignored.
        let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        if ret != 0 && nix::errno::Errno::last() != nix::errno::Errno::EBADF {
            return Err(Error::sys(
                format!(
                    "close_range ({close_range_err}), then fcntl F_SETFD FD_CLOEXEC on fd {fd}"
                ),
                nix::errno::Errno::last(),
            ));
        }
    }
    Ok(())
}

/// Give the workload the signal state a fresh process has: no signal blocked, none
/// ignored. Ignored dispositions survive exec, and Rust's runtime ignores SIGPIPE.
fn reset_signals() {
    /// The kernel's struct sigaction (x86_64 and aarch64 layout).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: 0, // SIG_DFL
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with a SIG_DFL action installs no handler code; the
        // C library's own signals (32, 33) are reached this way too, which its
        // signal() refuses. The old action is not read.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
}

/// Replace this process with the workload. Only returns on error.
pub fn exec(path: &Path, process: &Process, env: &[String]) -> Error {
    reset_signals();
    let to_c = |s: &str| CString::new(s).unwrap_or_default();
    let argv: Vec<CString> = process.args().iter().flatten().map(|a| to_c(a)).collect();
    let envp: Vec<CString> = env.iter().map(|e| to_c(e)).collect();
    let path_c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap_or_default();
    match nix::unistd::execve(&path_c, &argv, &envp) {
        Err(e) => Error::sys(format!("exec {}", path.display()), e),
        Ok(never) => match never {},
    }
}

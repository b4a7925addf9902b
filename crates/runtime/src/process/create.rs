//! `create`: the stages that build a container.
//!
//! parent (the runtime) ── fork ──▶ stage 1: joins and creates namespaces (the user
//! namespace first, with id maps written by the parent), then forks ──▶ init: pid 1 of
//! the new pid namespace; builds the rootfs, pivots, applies the process settings and
//! waits on the exec fifo until `start`, then execs the workload.
//! The stages report over a socketpair; any failure comes back to the parent as a
//! message, and the parent undoes everything it made.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{
    ContainerProcessState, LinuxDeviceCgroup, LinuxDeviceType, LinuxIdMapping, LinuxResources, Spec,
};

use super::finalize;
use super::namespaces::Plan;
use super::{exit_child, Started};
use crate::cgroups::{CgroupManager, CgroupMount};
use crate::console;
use crate::error::{Error, Result};
use crate::hooks;
use crate::rootfs::{self, mounts::MountContext};
use crate::seccomp::{self, SeccompProgram};
use crate::spec::{validate_id, Bundle};
use crate::state::{self, Record, Root, Status};
use crate::sync::{channel_pair, Channel, Message};

/// runc's per-command flags for create and run.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// `run` in the foreground without a console socket keeps the pty master itself.
    pub keep_pty: bool,
}

/// Create a container: on success its init waits for `start`.
pub fn create(root: &Root, opts: &CreateOptions) -> Result<Started> {
    validate_id(&opts.id)?;
    let bundle = Bundle::load(&opts.bundle)?;
    let process = bundle
        .spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("process: missing".into()))?;
    if process.terminal().unwrap_or(false) && opts.console_socket.is_none() && !opts.keep_pty {
        return Err(Error::InvalidConfig(
            "process.terminal is true: a --console-socket is needed to receive the terminal".into(),
        ));
    }
    if !process.terminal().unwrap_or(false) && opts.console_socket.is_some() {
        return Err(Error::InvalidConfig(
            "--console-socket given but process.terminal is false".into(),
        ));
    }
    let linux = bundle
        .spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("linux: missing".into()))?;
    let plan = Plan::for_container(linux)?;
    if !plan.has_mount {
        return Err(Error::InvalidConfig(
            "linux.namespaces: a mount namespace is required to set up the rootfs".into(),
        ));
    }
    let prepared = finalize::prepare(process)?;
    let seccomp = match linux.seccomp() {
        Some(s) => Some(SeccompProgram::compile(s)?),
        None => None,
    };
    drop(seccomp); // compiled again in the init: libseccomp contexts are not fork-safe to share
    let cgroup = CgroupManager::new(linux.cgroups_path().as_deref(), &opts.id)?;

    let dir = root.claim(&opts.id)?;
    let mut undo = Undo {
        root,
        id: &opts.id,
        cgroup: None,
        pid: None,
    };
    cgroup.create(Some(&with_default_devices(linux)))?;
    undo.cgroup = Some(cgroup.clone());
    let started = build(&bundle, opts, &dir, &plan, &prepared, &cgroup, &mut undo)?;
    let record = Record {
        id: opts.id.clone(),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        pid: started.pid,
        pid_start: state::process_start_time(started.pid)
            .ok_or_else(|| Error::Init("the container's init exited during create".into()))?,
        created: state::now_rfc3339(),
        owner: String::new(),
        cgroup,
        config: bundle.spec.clone(),
    };
    root.save(&record)?;
    if let Some(pid_file) = &opts.pid_file {
        write_pid_file(pid_file, started.pid)?;
    }
    undo.disarm();
    Ok(started)
}

/// The config's device rules plus what every container needs, as runc adds them: mknod
/// of anything, the default device nodes, ptys, and the config's own devices.
fn with_default_devices(linux: &oci_spec::runtime::Linux) -> LinuxResources {
    let mut resources = linux.resources().clone().unwrap_or_default();
    let rule = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    let mut rules = resources.devices().clone().unwrap_or_default();
    // A device the config gives its own rule for keeps that rule's access alone.
    let own_rule = |d: &oci_spec::runtime::LinuxDevice| {
        rules.iter().any(|r| {
            r.allow()
                && r.typ() == Some(d.typ())
                && r.major() == Some(d.major())
                && r.minor() == Some(d.minor())
        })
    };
    let implied: Vec<LinuxDeviceCgroup> = linux
        .devices()
        .iter()
        .flatten()
        .filter(|d| !own_rule(d))
        .map(LinuxDeviceCgroup::from)
        .collect();
    use LinuxDeviceType::{B, C};
    rules.extend([
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"),
        rule(C, Some(1), Some(5), "rwm"),
        rule(C, Some(1), Some(7), "rwm"),
        rule(C, Some(1), Some(8), "rwm"),
        rule(C, Some(1), Some(9), "rwm"),
        rule(C, Some(5), Some(0), "rwm"),
        rule(C, Some(5), Some(1), "rwm"),
        rule(C, Some(5), Some(2), "rwm"),
        rule(C, Some(136), None, "rwm"),
    ]);
    rules.extend(implied);
    resources.set_devices(Some(rules));
    resources
}

pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("polis-tmp");
    std::fs::write(&tmp, pid.to_string()).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))
}

/// Undoes a half-made container when create fails at any point.
struct Undo<'a> {
    root: &'a Root,
    id: &'a str,
    cgroup: Option<CgroupManager>,
    pid: Option<i32>,
}

impl Undo<'_> {
    fn disarm(&mut self) {
        self.cgroup = None;
        self.pid = None;
        self.id = "";
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.id.is_empty() {
            return;
        }
        if let Some(pid) = self.pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.kill_all(libc::SIGKILL);
            let _ = cg.destroy();
        }
        let _ = self.root.remove(self.id);
    }
}

fn build(
    bundle: &Bundle,
    opts: &CreateOptions,
    dir: &Path,
    plan: &Plan,
    prepared: &finalize::Prepared,
    cgroup: &CgroupManager,
    undo: &mut Undo,
) -> Result<Started> {
    let fifo = state::exec_fifo(dir);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .map_err(|e| Error::sys(format!("mkfifo {}", fifo.display()), e))?;
    // Not left to the umask: a container user other than root must be able to write it.
    std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(|e| Error::io("chmod", &fifo, e))?;
    let wants_cgroupfs = bundle
        .spec
        .mounts()
        .iter()
        .flatten()
        .any(|m| matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")));
    let setup = Setup {
        bundle,
        opts,
        plan,
        prepared,
        fifo: &fifo,
        cgroup_mounts: if wants_cgroupfs {
            cgroup.mounts()?
        } else {
            Vec::new()
        },
    };
    let (parent, child) = channel_pair()?;
    // The init is a grandchild: as a subreaper we get it back when stage 1 exits, so
    // `run` can wait for it.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let direct = plan.join.is_empty() && !plan.new_user && !plan.new_time;
    let first = if direct {
        // Nothing to join and no id maps to wait for: one clone makes the init itself,
        // in all its new namespaces but the cgroup one, which must come after it has
        // joined its cgroup.
        let flags = plan.create - nix::sched::CloneFlags::CLONE_NEWCGROUP;
        match super::clone_process(flags)? {
            None => {
                drop(parent);
                let result = cgroup.join_current().and_then(|()| {
                    if plan.new_cgroup {
                        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                            .map_err(|e| Error::sys("unshare cgroup namespace", e))?;
                    }
                    init(&setup, &child)
                });
                if let Err(e) = result {
                    let _ = child.send(&Message::Failed(e.to_string()));
                    exit_child(1);
                }
                exit_child(0);
            }
            Some(pid) => pid,
        }
    } else {
        match super::clone_process(nix::sched::CloneFlags::empty())? {
            None => {
                drop(parent);
                if let Err(e) = cgroup.join_current().and_then(|()| stage1(&setup, &child)) {
                    let _ = child.send(&Message::Failed(e.to_string()));
                    exit_child(1);
                }
                exit_child(0);
            }
            Some(pid) => pid,
        }
    };
    drop(child);
    undo.pid = Some(first.as_raw());
    let mut init_pid = direct.then_some(first.as_raw());
    if !direct {
        // Stage 1 joins the cgroup itself, first thing (see `join_current`).
        parent.send(&Message::Go)?;
    }
    let spec = &bundle.spec;
    let mut pty_master = None;
    loop {
        let Some((msg, fd)) = parent.recv()? else {
            return Err(Error::Init(
                "container init exited before it was ready".into(),
            ));
        };
        match msg {
            Message::MapIds => {
                write_id_maps(first.as_raw(), spec)?;
                parent.send(&Message::Ack)?;
            }
            Message::InitPid(pid) => {
                let _ = waitpid(first, None);
                init_pid = Some(pid);
                undo.pid = Some(pid);
            }
            Message::RunCreateRuntimeHooks => {
                let pid = init_pid.unwrap_or(0);
                let json = state_json(&opts.id, pid, bundle, Status::Creating)?;
                let h = spec.hooks().as_ref();
                #[allow(deprecated)]
                let prestart = h.and_then(|h| h.prestart().as_ref());
                hooks::run_all(prestart, &json)?;
                hooks::run_all(h.and_then(|h| h.create_runtime().as_ref()), &json)?;
                parent.send(&Message::Ack)?;
            }
            Message::ConsoleMaster { slave } => {
                pty_master = console::deliver(fd, &slave, opts.console_socket.as_deref())?;
                parent.send(&Message::Ack)?;
            }
            Message::SeccompListener => {
                let listener = fd.ok_or_else(|| Error::Init("seccomp listener missing".into()))?;
                send_seccomp_listener(&opts.id, init_pid.unwrap_or(0), bundle, &listener)?;
                parent.send(&Message::Ack)?;
            }
            Message::Ready => break,
            Message::Failed(why) => return Err(Error::Reported(why)),
            other => return Err(Error::Init(format!("unexpected message {other:?}"))),
        }
    }
    let pid = init_pid.ok_or_else(|| Error::Init("init pid never reported".into()))?;
    Ok(Started { pid, pty_master })
}

fn state_json(id: &str, pid: i32, bundle: &Bundle, status: Status) -> Result<Vec<u8>> {
    let state = state::OciState {
        oci_version: "1.0.2".into(),
        id: id.to_string(),
        pid,
        status,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: state::now_rfc3339(),
        owner: String::new(),
        annotations: bundle.spec.annotations().clone().unwrap_or_default(),
    };
    serde_json::to_vec(&state).map_err(|e| Error::Init(format!("encode state: {e}")))
}

fn send_seccomp_listener(id: &str, pid: i32, bundle: &Bundle, listener: &OwnedFd) -> Result<()> {
    let Some(sc) = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
    else {
        return Err(Error::Init(
            "seccomp listener without a seccomp config".into(),
        ));
    };
    let path = sc
        .listener_path()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("linux.seccomp.listenerPath: missing".into()))?;
    let state = serde_json::from_slice::<serde_json::Value>(&state_json(
        id,
        pid,
        bundle,
        Status::Creating,
    )?)
    .map_err(|e| Error::Init(e.to_string()))?;
    let mut doc = serde_json::to_value(ContainerProcessState::default())
        .map_err(|e| Error::Init(e.to_string()))?;
    doc["ociVersion"] = "1.0.2".into();
    doc["fds"] = serde_json::json!(["seccompFd"]);
    doc["pid"] = pid.into();
    doc["metadata"] = sc.listener_metadata().clone().unwrap_or_default().into();
    doc["state"] = state;
    let json = serde_json::to_vec(&doc).map_err(|e| Error::Init(e.to_string()))?;
    seccomp::send_listener(path, &json, std::os::fd::AsFd::as_fd(listener))
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

fn write_id_maps(pid: i32, spec: &Spec) -> Result<()> {
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("linux: missing".into()))?;
    let uid = map_text(linux.uid_mappings().as_deref().unwrap_or_default());
    let gid = map_text(linux.gid_mappings().as_deref().unwrap_or_default());
    for (file, text) in [("uid_map", uid), ("gid_map", gid)] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text.as_bytes())
            .map_err(|e| Error::io("write user namespace map", &path, e))?;
    }
    Ok(())
}

/// What the forked stages work from, all of it read and checked before the fork.
struct Setup<'a> {
    bundle: &'a Bundle,
    opts: &'a CreateOptions,
    plan: &'a Plan,
    prepared: &'a finalize::Prepared,
    fifo: &'a Path,
    /// Resolved by the parent: the init, once in the cgroup, would see other paths.
    cgroup_mounts: Vec<CgroupMount>,
}

/// Stage 1: namespaces, then fork the init.
fn stage1(setup: &Setup, ch: &Channel) -> Result<()> {
    let (bundle, plan) = (setup.bundle, setup.plan);
    ch.expect(Message::Go)?;
    plan.join_all()?;
    let linux = bundle
        .spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("linux: missing".into()))?;
    if plan.new_user {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
            .map_err(|e| Error::sys("unshare user namespace", e))?;
        ch.send(&Message::MapIds)?;
        ch.expect(Message::Ack)?;
        let root_uid = nix::unistd::Uid::from_raw(0);
        let root_gid = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(root_gid, root_gid, root_gid)
            .map_err(|e| Error::sys("setgid 0 in the user namespace", e))?;
        nix::unistd::setresuid(root_uid, root_uid, root_uid)
            .map_err(|e| Error::sys("setuid 0 in the user namespace", e))?;
    }
    nix::sched::unshare(plan.create)
        .map_err(|e| Error::sys(format!("unshare {:?}", plan.create), e))?;
    if plan.new_time {
        write_time_offsets(linux)?;
    }
    if super::fork_reporting_pid(ch)? {
        if let Err(e) = init(setup, ch) {
            let _ = ch.send(&Message::Failed(e.to_string()));
            exit_child(1);
        }
        exit_child(0)
    }
    Ok(())
}

fn write_time_offsets(linux: &oci_spec::runtime::Linux) -> Result<()> {
    let mut text = String::new();
    for (clock, off) in linux.time_offsets().iter().flatten() {
        if clock != "monotonic" && clock != "boottime" {
            return Err(Error::InvalidConfig(format!(
                "linux.timeOffsets: unknown clock {clock:?}"
            )));
        }
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    if text.is_empty() {
        return Ok(());
    }
    std::fs::write("/proc/self/timens_offsets", text)
        .map_err(|e| Error::io("write", "/proc/self/timens_offsets", e))
}

/// The container's init, up to the exec of the workload.
fn init(setup: &Setup, ch: &Channel) -> Result<()> {
    let (bundle, opts, plan, prepared, fifo) = (
        setup.bundle,
        setup.opts,
        setup.plan,
        setup.prepared,
        setup.fifo,
    );
    let spec = &bundle.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("process: missing".into()))?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("linux: missing".into()))?;
    nix::unistd::setsid().map_err(|e| Error::sys("setsid", e))?;
    if plan.create.contains(nix::sched::CloneFlags::CLONE_NEWNET) {
        loopback_up()?;
    }
    if !opts.no_new_keyring {
        join_session_keyring(&opts.id);
    }
    // The fifo is on the host: hold it now, open it for writing after the pivot.
    let fifo_fd = nix::fcntl::open(
        fifo,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {}", fifo.display()), e))?;
    let ctx = MountContext {
        bundle: &bundle.dir,
        in_user_ns: plan.new_user
            || plan
                .join
                .iter()
                .any(|(t, _)| *t == oci_spec::runtime::LinuxNamespaceType::User),
        cgroup_ns: plan.new_cgroup
            || plan
                .join
                .iter()
                .any(|(t, _)| *t == oci_spec::runtime::LinuxNamespaceType::Cgroup),
        cgroup_mounts: &setup.cgroup_mounts,
    };
    // Hooks see the init's pid as the host sees it: the host's /proc still tells it.
    let host_pid = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|p| p.parse().ok()))
        .unwrap_or_else(|| nix::unistd::getpid().as_raw());
    rootfs::prepare(spec, &bundle.rootfs, &ctx)?;
    ch.send(&Message::RunCreateRuntimeHooks)?;
    ch.expect(Message::Ack)?;
    let state = state_json(&opts.id, host_pid, bundle, Status::Creating)?;
    hooks::run_all(
        spec.hooks()
            .as_ref()
            .and_then(|h| h.create_container().as_ref()),
        &state,
    )?;
    rootfs::enter(&bundle.rootfs, opts.no_pivot)?;
    finalize::open_terminal(process, ch, true)?;
    rootfs::finish(spec)?;
    rootfs::set_names(spec)?;
    let ready = finalize::become_workload(process, prepared, Some(linux), opts.preserve_fds, ch)?;
    ch.send(&Message::Ready)?;
    // Nobody listens on the channel any more: later failures go to the container's stderr.
    if let Err(e) = after_ready(bundle, opts, host_pid, fifo_fd, ready) {
        eprintln!("polis: {e}");
        exit_child(127);
    }
    Ok(())
}

fn after_ready(
    bundle: &Bundle,
    opts: &CreateOptions,
    host_pid: i32,
    fifo_fd: OwnedFd,
    ready: finalize::ReadyToExec,
) -> Result<()> {
    let spec = &bundle.spec;
    // Wait for `start`: opening the fifo for writing blocks until it opens it for reading.
    let path = format!("/proc/self/fd/{}", fifo_fd.as_raw_fd());
    let writer = nix::fcntl::open(
        path.as_str(),
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys("open exec fifo", e))?;
    drop(fifo_fd);
    let starting = state_json(&opts.id, host_pid, bundle, Status::Created)?;
    hooks::run_all(
        spec.hooks()
            .as_ref()
            .and_then(|h| h.start_container().as_ref()),
        &starting,
    )?;
    if let Some(sc) = ready.late_seccomp {
        sc.load()?;
    }
    // `start` reads this byte, then waits for the end of file that the close-on-exec
    // writer gives at the exec: poststart hooks then run after the workload started.
    nix::unistd::write(&writer, b"0").map_err(|e| Error::sys("write exec fifo", e))?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("process: missing".into()))?;
    Err(finalize::exec(&ready.program, process, &ready.env))
}

/// A new network namespace starts with `lo` down; bring it up, as runc does.
fn loopback_up() -> Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Error::sys("socket for lo", e))?;
    // SAFETY: ifreq is a plain C struct; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own, on our socket.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(Error::sys("get lo flags", nix::errno::Errno::last()));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(Error::sys("bring lo up", nix::errno::Errno::last()));
        }
    }
    Ok(())
}

/// A fresh session keyring per container, so containers do not share the host's keys.
fn join_session_keyring(id: &str) {
    let name = std::ffi::CString::new(format!("_ses.{id}")).unwrap_or_default();
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, name): a valid C string, read only.
    // Failure (e.g. keyrings disabled) is harmless, as with runc.
    unsafe { libc::syscall(libc::SYS_keyctl, 1, name.as_ptr()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(config: serde_json::Value) -> oci_spec::runtime::Linux {
        serde_json::from_value(config).unwrap()
    }

    #[test]
    fn a_device_node_implies_rwm_unless_the_config_rules_it() {
        let node = serde_json::json!([{"path": "/dev/loop9", "type": "b", "major": 7, "minor": 9}]);
        let rules = |l: &oci_spec::runtime::Linux| {
            with_default_devices(l)
                .devices()
                .clone()
                .unwrap()
                .into_iter()
                .filter(|r| r.major() == Some(7) && r.minor() == Some(9))
                .map(|r| r.access().clone().unwrap_or_default())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            rules(&linux(serde_json::json!({"devices": node}))),
            vec!["rwm"]
        );
        let own = serde_json::json!({"devices": node, "resources": {"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "b", "major": 7, "minor": 9, "access": "r"},
        ]}});
        assert_eq!(rules(&linux(own)), vec!["r"]);
    }
}

//! Which namespaces a new process creates and which it joins, opened before any fork so
//! that a bad path fails the command before anything is created.

use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use oci_spec::runtime::{Linux, LinuxNamespaceType};

use crate::error::{Error, Result};

pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The /proc/PID/ns name of a namespace type.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Joining order: the user namespace first (it grants the rights to join the others),
/// the mount namespace last (it changes our root).
const ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Mount,
];

pub struct Plan {
    /// Namespaces to join, in joining order.
    pub join: Vec<(LinuxNamespaceType, OwnedFd)>,
    /// Namespaces to create (the user namespace is handled apart, it needs id maps).
    pub create: CloneFlags,
    pub new_user: bool,
    pub new_time: bool,
    pub new_cgroup: bool,
    pub has_mount: bool,
}

fn open_ns(path: &std::path::Path, what: &str) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {what} namespace {}", path.display()), e))
}

impl Plan {
    /// From the config of a new container.
    pub fn for_container(linux: &Linux) -> Result<Self> {
        let mut plan = Plan {
            join: Vec::new(),
            create: CloneFlags::empty(),
            new_user: false,
            new_time: false,
            new_cgroup: false,
            has_mount: false,
        };
        let namespaces = linux.namespaces().clone().unwrap_or_default();
        for t in ORDER {
            let Some(ns) = namespaces.iter().find(|n| n.typ() == t) else {
                continue;
            };
            if t == LinuxNamespaceType::Mount {
                plan.has_mount = true;
            }
            match ns.path() {
                Some(path) => plan.join.push((t, open_ns(path, proc_name(t))?)),
                None if t == LinuxNamespaceType::User => plan.new_user = true,
                None => {
                    plan.create |= clone_flag(t);
                    plan.new_time |= t == LinuxNamespaceType::Time;
                    plan.new_cgroup |= t == LinuxNamespaceType::Cgroup;
                }
            }
        }
        if linux.time_offsets().as_ref().is_some_and(|o| !o.is_empty()) && !plan.new_time {
            return Err(Error::InvalidConfig(
                "linux.timeOffsets: given without a new time namespace".into(),
            ));
        }
        Ok(plan)
    }

    /// Every namespace of a running process that differs from ours (for exec).
    pub fn for_exec(pid: i32) -> Result<Self> {
        let mut plan = Plan {
            join: Vec::new(),
            create: CloneFlags::empty(),
            new_user: false,
            new_time: false,
            new_cgroup: false,
            has_mount: true,
        };
        for t in ORDER {
            let theirs = format!("/proc/{pid}/ns/{}", proc_name(t));
            let ours = format!("/proc/self/ns/{}", proc_name(t));
            let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
                continue;
            };
            use std::os::unix::fs::MetadataExt;
            if a.ino() != b.ino() || a.dev() != b.dev() {
                // Joining the time namespace of a process applies to our children, as pid.
                plan.join
                    .push((t, open_ns(std::path::Path::new(&theirs), proc_name(t))?));
            }
        }
        Ok(plan)
    }

    pub fn join_all(&self) -> Result<()> {
        for (t, fd) in &self.join {
            nix::sched::setns(fd, clone_flag(*t))
                .map_err(|e| Error::sys(format!("join {} namespace", proc_name(*t)), e))?;
        }
        Ok(())
    }
}

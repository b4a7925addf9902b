//! Loading and checking a bundle's config.json before anything is created, so a bad
//! config is refused with a message that says what is wrong and where.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// A bundle's config, with its rootfs resolved to an absolute path.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
}

impl Bundle {
    /// Read and validate `<dir>/config.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io("open bundle", dir, e))?;
        let path = dir.join("config.json");
        let text = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        let spec: Spec = serde_json::from_slice(&text).map_err(|e| {
            Error::InvalidConfig(format!(
                "{}: line {} column {}: {e}",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| Error::InvalidConfig("root: missing".into()))?;
        if root.path().as_os_str().is_empty() {
            return Err(Error::InvalidConfig("root.path: empty".into()));
        }
        let rootfs = dir.join(root.path());
        let rootfs = std::fs::canonicalize(&rootfs)
            .map_err(|e| Error::io("root.path: resolve", &rootfs, e))?;
        if !rootfs.is_dir() {
            return Err(Error::InvalidConfig(format!(
                "root.path {}: not a directory",
                rootfs.display()
            )));
        }
        validate(&spec)?;
        Ok(Bundle { dir, spec, rootfs })
    }
}

/// Checks the runtime makes before it touches the system.
pub fn validate(spec: &Spec) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidConfig(m));
    if !spec.version().starts_with("1.") {
        return bad(format!(
            "ociVersion {:?}: only 1.x is supported",
            spec.version()
        ));
    }
    let process = match spec.process() {
        Some(p) => p,
        None => return bad("process: missing".into()),
    };
    validate_process(process)?;
    let Some(linux) = spec.linux() else {
        return bad("linux: missing (only Linux containers are supported)".into());
    };
    let mut seen = HashSet::new();
    let mut has_user = false;
    let mut has_uts = false;
    for ns in linux.namespaces().as_deref().unwrap_or_default() {
        if !seen.insert(ns.typ()) {
            return bad(format!("linux.namespaces: {:?} listed twice", ns.typ()));
        }
        if ns.typ() == LinuxNamespaceType::User && ns.path().is_none() {
            has_user = true;
        }
        if ns.typ() == LinuxNamespaceType::Uts {
            has_uts = true;
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return bad(format!(
                    "linux.namespaces: {:?} path {:?} must be absolute",
                    ns.typ(),
                    p
                ));
            }
        }
    }
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        && linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if has_user && !maps {
        return bad("linux.uidMappings/gidMappings: a new user namespace needs both".into());
    }
    if !has_user
        && (linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty()))
    {
        return bad("linux.uidMappings: given without a new user namespace".into());
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has_uts {
        return bad("hostname: setting it needs a uts namespace".into());
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !has_uts {
        return bad("domainname: setting it needs a uts namespace".into());
    }
    for m in spec.mounts().as_deref().unwrap_or_default() {
        if !m.destination().is_absolute() {
            return bad(format!(
                "mounts: destination {:?} must be absolute",
                m.destination()
            ));
        }
    }
    if linux.mount_label().as_ref().is_some_and(|l| !l.is_empty())
        && !Path::new("/sys/fs/selinux/enforce").exists()
    {
        return bad("linux.mountLabel: SELinux is not enabled on this host".into());
    }
    // Parts of the spec this runtime does not implement: refused, never ignored.
    let unsupported = [
        ("linux.intelRdt", linux.intel_rdt().is_some()),
        (
            "linux.netDevices",
            linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()),
        ),
        ("linux.memoryPolicy", linux.memory_policy().is_some()),
    ];
    if let Some((what, _)) = unsupported.iter().find(|(_, present)| *present) {
        return Err(Error::Unsupported(format!(
            "{what} is not supported by this runtime"
        )));
    }
    let private = |t: LinuxNamespaceType| seen.contains(&t);
    for key in linux.sysctl().iter().flat_map(|s| s.keys()) {
        check_sysctl(key, &private)?;
    }
    if let Some(cg) = linux.cgroups_path() {
        if cg
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return bad(format!("linux.cgroupsPath {cg:?}: '..' is not allowed"));
        }
    }
    Ok(())
}

/// The sysctls of the ipc namespace (besides fs.mqueue.*).
pub const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// A sysctl is allowed only where the container has its own copy of it, as with runc:
/// IPC keys need an ipc namespace, net.* a network namespace, names a uts namespace.
fn check_sysctl(key: &str, private: &dyn Fn(LinuxNamespaceType) -> bool) -> Result<()> {
    let bad = |why: &str| Err(Error::InvalidConfig(format!("linux.sysctl {key:?}: {why}")));
    if key.is_empty() || key.contains("..") || key.starts_with(['.', '/']) {
        return bad("invalid name");
    }
    let (ns, what) = if IPC_SYSCTLS.contains(&key) || key.starts_with("fs.mqueue.") {
        (LinuxNamespaceType::Ipc, "ipc")
    } else if key.starts_with("net.") {
        (LinuxNamespaceType::Network, "network")
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        (LinuxNamespaceType::Uts, "uts")
    } else {
        return bad("not namespaced: it would change the host");
    };
    if private(ns) {
        Ok(())
    } else {
        bad(&format!("needs a private {what} namespace"))
    }
}

/// Checks on a process (the init's, or one given to exec).
pub fn validate_process(process: &oci_spec::runtime::Process) -> Result<()> {
    match process.args() {
        Some(args) if !args.is_empty() => {}
        _ => {
            return Err(Error::InvalidConfig(
                "process.args: must name the program to run".into(),
            ))
        }
    }
    if process.exec_cpu_affinity().is_some() {
        return Err(Error::Unsupported(
            "process.execCPUAffinity is not supported by this runtime".into(),
        ));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::InvalidConfig(format!(
            "process.cwd {:?}: must be an absolute path",
            process.cwd()
        )));
    }
    Ok(())
}

/// The config `spec` writes: runc's default, for an ordinary or a rootless container.
pub fn example(rootless: bool) -> Spec {
    let mut spec = if rootless {
        Spec::rootless(
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    } else {
        Spec::default()
    };
    spec.set_hostname(Some("polis".to_string()));
    spec.set_annotations(None);
    if let Some(process) = spec.process_mut() {
        process.set_terminal(Some(true));
        if let Some(mut caps) = process.capabilities().clone() {
            caps.set_inheritable(None);
            process.set_capabilities(Some(caps));
        }
    }
    if let Some(linux) = spec.linux_mut() {
        if let Some(ns) = linux.namespaces().clone() {
            // As runc: no cgroup namespace unless asked for.
            let ns = ns
                .into_iter()
                .filter(|n| n.typ() != LinuxNamespaceType::Cgroup)
                .collect();
            linux.set_namespaces(Some(ns));
        }
        if !rootless {
            let mut deny_all = oci_spec::runtime::LinuxDeviceCgroup::default();
            deny_all.set_allow(false);
            deny_all.set_access(Some("rwm".to_string()));
            let mut resources = linux.resources().clone().unwrap_or_default();
            resources.set_devices(Some(vec![deny_all]));
            linux.set_resources(Some(resources));
        }
    }
    spec
}

/// Container ids: what runc accepts.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

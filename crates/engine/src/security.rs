//! Docker's security settings in a container's runtime spec: its capabilities
//! (`--cap-add`, `--cap-drop`, `--privileged`), the seccomp profile, the other
//! `--security-opt`s, `--read-only`, the masked and read-only paths of /proc and /sys,
//! and `--init`. Docker's defaults, and its messages for bad input.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use caps::Capability;
use oci_spec::runtime::{
    Capabilities, LinuxCapabilities, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, Mount, Spec,
};

use crate::error::{Error, Result};
use crate::hostconfig::HostConfig;
use crate::seccomp_profile::{self, Profile, Target};

/// Where `--init` puts the init binary in the container, as Docker does.
pub const INIT_IN_CONTAINER: &str = "/sbin/docker-init";

/// Docker's default capabilities.
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// Docker's masked paths: host information a container should not read.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths: host settings a container should not change.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Which seccomp filter a container gets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    /// Docker's default profile (`seccomp=builtin`, or no option).
    #[default]
    Builtin,
    Unconfined,
    /// A profile's JSON, as the docker CLI sends the file it read.
    Profile(String),
}

/// What `--security-opt` asked for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SecurityOpts {
    pub no_new_privileges: bool,
    pub seccomp: SeccompChoice,
    pub apparmor: Option<String>,
    /// SELinux label options (`label=…`).
    pub labels: Vec<String>,
}

impl SecurityOpts {
    /// Docker's parsing: `key=value` (or the deprecated `key:value`), and
    /// `no-new-privileges` alone.
    pub fn parse(opts: &[String]) -> Result<Self> {
        let mut out = SecurityOpts::default();
        for opt in opts {
            if opt == "no-new-privileges" {
                out.no_new_privileges = true;
                continue;
            }
            if opt == "disable" {
                out.labels.push("disable".into());
                continue;
            }
            let invalid = || Error::InvalidInput(format!("invalid --security-opt 2: {opt:?}"));
            let (key, value) = opt
                .split_once('=')
                .or_else(|| opt.split_once(':'))
                .ok_or_else(|| Error::InvalidInput(format!("invalid --security-opt 1: {opt:?}")))?;
            match key {
                "label" => out.labels.push(value.to_string()),
                "apparmor" => out.apparmor = Some(value.to_string()),
                "seccomp" => {
                    out.seccomp = match value {
                        "builtin" => SeccompChoice::Builtin,
                        "unconfined" => SeccompChoice::Unconfined,
                        json => SeccompChoice::Profile(json.to_string()),
                    }
                }
                "no-new-privileges" => {
                    out.no_new_privileges = parse_bool(value).ok_or_else(invalid)?;
                }
                _ => return Err(invalid()),
            }
        }
        Ok(out)
    }
}

/// Go's strconv.ParseBool, which Docker uses here.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// A `--cap-add`/`--cap-drop` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CapName {
    All,
    One(Capability),
}

/// Docker's normalisation: any case, with or without `CAP_`, or "ALL".
fn normalize(list: Option<&Vec<String>>) -> Result<Vec<CapName>> {
    let mut out = Vec::new();
    for name in list.into_iter().flatten() {
        let upper = name.to_uppercase();
        let entry = if upper == "ALL" {
            CapName::All
        } else {
            let full = if upper.starts_with("CAP_") {
                upper
            } else {
                format!("CAP_{upper}")
            };
            CapName::One(
                Capability::from_str(&full)
                    .map_err(|_| Error::InvalidInput(format!("unknown capability: {full:?}")))?,
            )
        };
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Every capability of this host's bounding set: what "all" can mean here (a capability
/// outside it can never be granted, e.g. CAP_SYS_RESOURCE on some hosts).
pub fn host_bounding_set() -> Result<Vec<Capability>> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| Error::io("read", "/proc/self/status", e))?;
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| Error::Container("no CapBnd line in /proc/self/status".into()))?;
    let mut all: Vec<Capability> = caps::all()
        .into_iter()
        .filter(|c| mask & c.bitmask() != 0)
        .collect();
    all.sort_by_key(|c| c.index());
    Ok(all)
}

/// The container's capabilities, by Docker's rules: privileged gets them all; "ALL" in
/// `--cap-add` means all but the dropped ones; "ALL" in `--cap-drop` means only the
/// added ones; otherwise the defaults less the dropped plus the added.
pub fn capabilities(host: &HostConfig) -> Result<Vec<Capability>> {
    let add = normalize(host.cap_add.as_ref())?;
    let drop = normalize(host.cap_drop.as_ref())?;
    if host.privileged {
        return host_bounding_set();
    }
    let named = |list: &[CapName]| -> Vec<Capability> {
        list.iter()
            .filter_map(|c| match c {
                CapName::One(c) => Some(*c),
                CapName::All => None,
            })
            .collect()
    };
    let dropped = named(&drop);
    let mut caps: Vec<Capability> = if add.contains(&CapName::All) {
        host_bounding_set()?
            .into_iter()
            .filter(|c| !dropped.contains(c))
            .collect()
    } else if drop.contains(&CapName::All) {
        named(&add)
    } else {
        DEFAULT_CAPS
            .into_iter()
            .filter(|c| !dropped.contains(c))
            .chain(named(&add))
            .collect()
    };
    let mut seen = Vec::new();
    caps.retain(|c| {
        let new = !seen.contains(c);
        seen.push(*c);
        new
    });
    Ok(caps)
}

fn oci_caps(list: &[Capability]) -> Result<Capabilities> {
    list.iter()
        .map(|c| {
            let name = c.to_string();
            oci_spec::runtime::Capability::from_str(name.trim_start_matches("CAP_"))
                .map_err(|_| Error::Container(format!("capability {name} has no OCI name here")))
        })
        .collect()
}

/// Apply the container's security settings to its spec. Runs after the image config
/// (the user decides which capability sets are filled) and before the config is written.
pub fn apply(spec: &mut Spec, host: &HostConfig, init_path: &Path) -> Result<()> {
    let opts = SecurityOpts::parse(host.security_opt.as_deref().unwrap_or_default())?;
    let caps = capabilities(host)?;
    check_labels(&opts)?;
    let apparmor = apparmor_profile(&opts)?;

    let seccomp = match (&opts.seccomp, host.privileged) {
        (_, true) | (SeccompChoice::Unconfined, _) => None,
        (SeccompChoice::Builtin, false) => Some(Profile::parse(seccomp_profile::DEFAULT_PROFILE)?),
        (SeccompChoice::Profile(json), false) => Some(Profile::parse(json)?),
    };
    let names: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
    let target = Target {
        caps: &names,
        arch: seccomp_profile::host_arch(),
        kernel: seccomp_profile::host_kernel(),
    };
    let seccomp = match seccomp {
        Some(p) => p.resolve(&target)?,
        None => None,
    };

    let set = oci_caps(&caps)?;
    let process = spec
        .process_mut()
        .as_mut()
        .ok_or_else(|| Error::Container("runtime spec without a process".into()))?;
    let mut lc = LinuxCapabilities::default();
    lc.set_bounding(Some(set.clone()));
    // As Docker (and execve): a non-root user starts with no effective or permitted
    // capabilities; they stay in the bounding set.
    if process.user().uid() == 0 {
        lc.set_effective(Some(set.clone()));
        lc.set_permitted(Some(set));
    } else {
        lc.set_effective(None);
        lc.set_permitted(None);
    }
    lc.set_inheritable(None);
    lc.set_ambient(None);
    process.set_capabilities(Some(lc));
    process.set_no_new_privileges(Some(opts.no_new_privileges));
    if apparmor.is_some() {
        process.set_apparmor_profile(apparmor);
    }
    if host.init == Some(true) {
        add_init(spec, init_path)?;
    }
    if let Some(root) = spec.root_mut() {
        root.set_readonly(Some(host.readonly_rootfs));
    }

    let masked = host
        .masked_paths
        .clone()
        .unwrap_or_else(|| MASKED_PATHS.map(String::from).to_vec());
    let readonly = host
        .readonly_paths
        .clone()
        .unwrap_or_else(|| READONLY_PATHS.map(String::from).to_vec());
    let devices = if host.privileged {
        Some(host_devices(Path::new("/dev"))?)
    } else {
        None
    };
    let linux = spec
        .linux_mut()
        .as_mut()
        .ok_or_else(|| Error::Container("runtime spec without a linux section".into()))?;
    linux.set_seccomp(seccomp);
    if host.privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
        let mut extra = linux.devices().clone().unwrap_or_default();
        extra.extend(devices.unwrap_or_default());
        linux.set_devices(Some(extra));
        let mut all = LinuxDeviceCgroup::default();
        all.set_allow(true);
        all.set_access(Some("rwm".into()));
        let mut resources = linux.resources().clone().unwrap_or_default();
        resources.set_devices(Some(vec![all]));
        linux.set_resources(Some(resources));
    } else {
        linux.set_masked_paths(Some(masked));
        linux.set_readonly_paths(Some(readonly));
    }
    if host.privileged {
        // Docker: /sys and the cgroup mount are writable for a privileged container.
        for m in spec.mounts_mut().iter_mut().flatten() {
            if m.destination() == Path::new("/sys") || m.typ().as_deref() == Some("cgroup") {
                if let Some(options) = m.options().clone() {
                    m.set_options(Some(options.into_iter().filter(|o| o != "ro").collect()));
                }
            }
        }
    }
    Ok(())
}

/// `--init`: the daemon's init binary, read-only at /sbin/docker-init, runs the
/// container's command as its child (`docker-init -- CMD…`).
fn add_init(spec: &mut Spec, init_path: &Path) -> Result<()> {
    match std::fs::metadata(init_path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(init_missing(init_path, "not a regular file".into()));
        }
        Err(e) => return Err(init_missing(init_path, e.to_string())),
    }
    let process = spec
        .process_mut()
        .as_mut()
        .ok_or_else(|| Error::Container("runtime spec without a process".into()))?;
    let mut args = vec![INIT_IN_CONTAINER.to_string(), "--".to_string()];
    args.extend(process.args().clone().unwrap_or_default());
    process.set_args(Some(args));
    let mut mount = Mount::default();
    mount.set_destination(PathBuf::from(INIT_IN_CONTAINER));
    mount.set_typ(Some("bind".into()));
    mount.set_source(Some(init_path.to_path_buf()));
    mount.set_options(Some(vec!["bind".into(), "ro".into()]));
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
    Ok(())
}

fn init_missing(path: &Path, why: String) -> Error {
    Error::Config {
        path: PathBuf::from("init-path"),
        reason: format!(
            "--init needs the init binary {}: {why} (install Debian's tini package, or set \
             init-path in the daemon config or POLIS_INIT_PATH)",
            path.display()
        ),
    }
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim() == "Y")
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// `apparmor=PROFILE`: the runtime applies it where AppArmor runs; where it does not,
/// only "unconfined" holds (nothing confines the container), anything else is refused.
fn apparmor_profile(opts: &SecurityOpts) -> Result<Option<String>> {
    match opts.apparmor.as_deref() {
        None => Ok(None),
        Some(p) if apparmor_enabled() => Ok(Some(p.to_string())),
        Some("unconfined") => Ok(None),
        Some(p) => Err(Error::InvalidInput(format!(
            "invalid --security-opt \"apparmor={p}\": AppArmor is not enabled on this host"
        ))),
    }
}

/// `label=…`: "disable" holds trivially (Polis sets no SELinux labels); the others
/// would need SELinux labelling, which is refused rather than left undone.
fn check_labels(opts: &SecurityOpts) -> Result<()> {
    for l in &opts.labels {
        if l == "disable" {
            continue;
        }
        let valid = l == "nested"
            || l.split_once(':').is_some_and(|(k, v)| {
                matches!(k, "user" | "role" | "type" | "level" | "filetype") && !v.is_empty()
            });
        if !valid {
            return Err(Error::InvalidInput(format!(
                "bad label option {l:?}, valid options 'disable' or \n'user, role, level, type, \
                 filetype' followed by ':' and a value"
            )));
        }
        let why = if selinux_enabled() {
            "SELinux labels are not supported by this daemon yet"
        } else {
            "SELinux is not enabled on this host"
        };
        return Err(Error::InvalidInput(format!(
            "invalid --security-opt \"label={l}\": {why}"
        )));
    }
    Ok(())
}

/// The host's device nodes under `dir`, for a privileged container (as Docker lists
/// them: no pts, shm, mqueue or fd, no console, and no ptmx, which the container gets
/// from its own devpts).
pub fn host_devices(dir: &Path) -> Result<Vec<LinuxDevice>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // lstat: a symlink is not followed.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // gone meanwhile
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            if matches!(
                name.as_ref(),
                "pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev"
            ) {
                continue;
            }
            out.extend(host_devices(&path)?);
            continue;
        }
        if name == "console" || name == "ptmx" && dir == Path::new("/dev") {
            continue;
        }
        let typ = if kind.is_char_device() {
            LinuxDeviceType::C
        } else if kind.is_block_device() {
            LinuxDeviceType::B
        } else {
            continue;
        };
        let rdev = meta.rdev();
        let mut d = LinuxDevice::default();
        d.set_path(path);
        d.set_typ(typ);
        d.set_major(nix::sys::stat::major(rdev) as i64);
        d.set_minor(nix::sys::stat::minor(rdev) as i64);
        d.set_file_mode(Some(meta.mode() & 0o7777));
        d.set_uid(Some(meta.uid()));
        d.set_gid(Some(meta.gid()));
        out.push(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Result<SecurityOpts> {
        SecurityOpts::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn host(add: &[&str], drop: &[&str]) -> HostConfig {
        let v = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect());
        HostConfig {
            cap_add: v(add),
            cap_drop: v(drop),
            ..Default::default()
        }
    }

    #[test]
    fn security_opts_parse_as_docker() {
        assert!(opts(&["no-new-privileges"]).unwrap().no_new_privileges);
        assert!(opts(&["no-new-privileges=true"]).unwrap().no_new_privileges);
        assert!(opts(&["no-new-privileges:1"]).unwrap().no_new_privileges);
        assert!(
            !opts(&["no-new-privileges", "no-new-privileges=false"])
                .unwrap()
                .no_new_privileges
        );
        assert_eq!(
            opts(&["seccomp=unconfined"]).unwrap().seccomp,
            SeccompChoice::Unconfined
        );
        assert_eq!(
            opts(&["seccomp=builtin"]).unwrap().seccomp,
            SeccompChoice::Builtin
        );
        assert_eq!(
            opts(&["seccomp={\"a\":1}"]).unwrap().seccomp,
            SeccompChoice::Profile("{\"a\":1}".into())
        );
        let e = opts(&["bogus=1"]).unwrap_err().to_string();
        assert_eq!(e, "invalid --security-opt 2: \"bogus=1\"");
        assert!(opts(&["no-new-privileges=maybe"]).is_err());
        assert!(opts(&["nothing"]).is_err());
    }

    #[test]
    fn capabilities_follow_docker_rules() {
        assert_eq!(
            capabilities(&host(&[], &[])).unwrap(),
            DEFAULT_CAPS.to_vec()
        );
        let added = capabilities(&host(&["sys_admin", "CAP_NET_ADMIN"], &["CHOWN"])).unwrap();
        assert!(added.contains(&Capability::CAP_SYS_ADMIN));
        assert!(added.contains(&Capability::CAP_NET_ADMIN));
        assert!(!added.contains(&Capability::CAP_CHOWN));
        assert_eq!(added.len(), 15);
        assert_eq!(
            capabilities(&host(&["NET_ADMIN"], &["ALL"])).unwrap(),
            vec![Capability::CAP_NET_ADMIN]
        );
        assert!(capabilities(&host(&[], &["all"])).unwrap().is_empty());
        let all_but = capabilities(&host(&["ALL"], &["MKNOD"])).unwrap();
        let bounding = host_bounding_set().unwrap();
        assert_eq!(all_but.len(), bounding.len() - 1);
        assert!(!all_but.contains(&Capability::CAP_MKNOD));
        let e = capabilities(&host(&["FOO"], &[])).unwrap_err().to_string();
        assert_eq!(e, "unknown capability: \"CAP_FOO\"");
        let privileged = HostConfig {
            privileged: true,
            ..Default::default()
        };
        assert_eq!(capabilities(&privileged).unwrap(), bounding);
    }

    #[test]
    fn labels_and_apparmor_are_refused_where_the_host_lacks_them() {
        assert!(check_labels(&opts(&["label=disable"]).unwrap()).is_ok());
        assert!(check_labels(&opts(&["label:disable"]).unwrap()).is_ok());
        let e = check_labels(&opts(&["label=bogus"]).unwrap()).unwrap_err();
        assert!(e.to_string().contains("bad label option"), "{e}");
        if !selinux_enabled() {
            let e = check_labels(&opts(&["label=type:svirt_t"]).unwrap()).unwrap_err();
            assert!(e.to_string().contains("SELinux is not enabled"), "{e}");
        }
        if !apparmor_enabled() {
            assert_eq!(
                apparmor_profile(&opts(&["apparmor=unconfined"]).unwrap()).unwrap(),
                None
            );
            let e = apparmor_profile(&opts(&["apparmor=docker-default"]).unwrap()).unwrap_err();
            assert!(e.to_string().contains("AppArmor is not enabled"), "{e}");
        }
    }

    #[test]
    fn host_devices_skip_what_the_container_gets_its_own_of() {
        let devs = host_devices(Path::new("/dev")).unwrap();
        let has = |p: &str| devs.iter().any(|d| d.path() == Path::new(p));
        assert!(has("/dev/null"));
        assert!(!has("/dev/ptmx") && !has("/dev/console"));
        assert!(devs.iter().all(|d| !d.path().starts_with("/dev/pts")));
    }
}

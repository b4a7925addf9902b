//! `--sysctl` (HostConfig.Sysctls) and `--ulimit` (HostConfig.Ulimits): kernel settings
//! the container has its own copy of, and its process's rlimits. Docker (through runc)
//! allows only namespaced sysctls: the IPC ones, fs.mqueue.*, net.* with a network
//! namespace of its own, and kernel.domainname.

use std::collections::{BTreeSet, HashMap};

use oci_spec::runtime::{PosixRlimit, Spec};

use crate::error::{Error, Result};
use crate::hostconfig::HostConfig;

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidInput(msg.into())
}

use polis_runtime::spec::IPC_SYSCTLS;

/// A sysctl is allowed where the container has its own copy (runc's rules and words).
fn check_sysctl(key: &str, host_network: bool) -> Result<()> {
    if IPC_SYSCTLS.contains(&key) || key.starts_with("fs.mqueue.") {
        return Ok(());
    }
    if key.starts_with("net.") {
        if host_network {
            return Err(invalid(format!(
                "sysctl \"{key}\" not allowed in host network namespace"
            )));
        }
        return Ok(());
    }
    match key {
        "kernel.domainname" => Ok(()),
        "kernel.hostname" => Err(invalid(
            "sysctl \"kernel.hostname\" is not allowed as it conflicts with the OCI \"hostname\" field",
        )),
        _ => Err(invalid(format!(
            "sysctl \"{key}\" is not in a separate kernel namespace"
        ))),
    }
}

/// The rlimits `--ulimit` names.
pub const ULIMITS: [&str; 16] = [
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// -1 is "unlimited".
fn rlimit_value(v: i64, name: &str) -> Result<u64> {
    match v {
        -1 => Ok(u64::MAX),
        v if v >= 0 => Ok(v as u64),
        v => Err(invalid(format!("invalid ulimit {name} value: {v}"))),
    }
}

fn rlimits(host: &HostConfig) -> Result<Vec<PosixRlimit>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for u in host.ulimits.iter().flatten() {
        if !ULIMITS.contains(&u.name.as_str()) {
            return Err(invalid(format!("invalid ulimit type: {}", u.name)));
        }
        if !seen.insert(u.name.as_str()) {
            return Err(invalid(format!("ulimit {} is given twice", u.name)));
        }
        let (soft, hard) = (
            rlimit_value(u.soft, &u.name)?,
            rlimit_value(u.hard, &u.name)?,
        );
        if soft > hard {
            return Err(invalid(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                u.soft, u.hard
            )));
        }
        let limit: PosixRlimit = serde_json::from_value(serde_json::json!({
            "type": format!("RLIMIT_{}", u.name.to_ascii_uppercase()),
            "soft": soft,
            "hard": hard,
        }))
        .map_err(|e| invalid(format!("ulimit {}: {e}", u.name)))?;
        out.push(limit);
    }
    Ok(out)
}

fn host_network(host: &HostConfig) -> bool {
    host.network_mode == "host"
}

/// Check both before anything is made.
pub fn check(host: &HostConfig) -> Result<()> {
    for key in host.sysctls.iter().flatten().map(|(k, _)| k) {
        check_sysctl(key, host_network(host))?;
    }
    rlimits(host).map(|_| ())
}

/// Sysctls into `linux.sysctl`, rlimits into the process.
pub fn apply(host: &HostConfig, spec: &mut Spec) -> Result<()> {
    check(host)?;
    if let Some(sysctls) = host.sysctls.as_ref().filter(|s| !s.is_empty()) {
        if let Some(linux) = spec.linux_mut() {
            let mut all: HashMap<String, String> = linux.sysctl().clone().unwrap_or_default();
            all.extend(sysctls.iter().map(|(k, v)| (k.clone(), v.clone())));
            linux.set_sysctl(Some(all));
        }
    }
    let limits = rlimits(host)?;
    if !limits.is_empty() {
        if let Some(process) = spec.process_mut() {
            process.set_rlimits(Some(limits));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostconfig::Ulimit;

    #[test]
    fn sysctls_as_runc_allows_them() {
        assert!(check_sysctl("kernel.shmmax", false).is_ok());
        assert!(check_sysctl("fs.mqueue.msg_max", true).is_ok());
        assert!(check_sysctl("net.ipv4.ip_forward", false).is_ok());
        assert_eq!(
            check_sysctl("net.ipv4.ip_forward", true)
                .unwrap_err()
                .to_string(),
            "sysctl \"net.ipv4.ip_forward\" not allowed in host network namespace"
        );
        assert_eq!(
            check_sysctl("kernel.panic", false).unwrap_err().to_string(),
            "sysctl \"kernel.panic\" is not in a separate kernel namespace"
        );
    }

    #[test]
    fn ulimits_become_rlimits() {
        let host = |name: &str, soft: i64, hard: i64| HostConfig {
            ulimits: Some(vec![Ulimit {
                name: name.into(),
                soft,
                hard,
            }]),
            ..Default::default()
        };
        let l = rlimits(&host("nofile", 1024, 2048)).unwrap();
        assert_eq!((l[0].soft(), l[0].hard()), (1024, 2048));
        assert_eq!(serde_json::to_value(l[0]).unwrap()["type"], "RLIMIT_NOFILE");
        assert_eq!(
            rlimits(&host("nofiles", 1, 1)).unwrap_err().to_string(),
            "invalid ulimit type: nofiles"
        );
        assert!(rlimits(&host("nofile", 10, 5))
            .unwrap_err()
            .to_string()
            .starts_with("ulimit soft limit must be less than or equal to hard limit"));
        assert_eq!(rlimits(&host("core", -1, -1)).unwrap()[0].hard(), u64::MAX);
    }
}

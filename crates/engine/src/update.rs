//! `docker update`: new cgroup limits and restart policy for an existing container.
//! The record and the bundle's config.json take them (so inspect shows them and the
//! next start keeps them); a container whose runtime instance exists gets them live
//! through the runtime library, on the same runtime root its shim uses.

use oci_spec::runtime::Spec;
use serde::Deserialize;

use crate::containers::{self, Layout};
use crate::error::{Error, Result};
use crate::hostconfig::RestartPolicy;
use crate::metadata::Metadata;
use crate::resources::{self, Resources};

/// The body of `POST /containers/{id}/update`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateConfig {
    #[serde(flatten)]
    pub resources: Resources,
    pub restart_policy: RestartPolicy,
}

/// Docker's rules for a restart policy.
pub fn check_restart_policy(p: &RestartPolicy) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidInput(format!("invalid restart policy: {m}")));
    match p.name.as_str() {
        "" => Ok(()),
        "no" | "always" | "unless-stopped" if p.maximum_retry_count != 0 => {
            let negative = if p.maximum_retry_count < 0 {
                " and cannot be negative"
            } else {
                ""
            };
            bad(format!(
                "maximum retry count can only be used with 'on-failure'{negative}"
            ))
        }
        "no" | "always" | "unless-stopped" => Ok(()),
        "on-failure" if p.maximum_retry_count < 0 => {
            bad("maximum retry count cannot be negative".into())
        }
        "on-failure" => Ok(()),
        other => bad(format!(
            "unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        )),
    }
}

/// Docker's UpdateContainer: what `new` sets over what `had`, refused where the two
/// conflict.
fn merge(had: &Resources, new: &Resources) -> std::result::Result<Resources, &'static str> {
    if new.nano_cpus > 0 && had.cpu_period > 0 {
        return Err(
            "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set",
        );
    }
    if new.nano_cpus > 0 && had.cpu_quota > 0 {
        return Err(
            "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set",
        );
    }
    if new.cpu_period > 0 && had.nano_cpus > 0 {
        return Err(
            "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set",
        );
    }
    if new.cpu_quota > 0 && had.nano_cpus > 0 {
        return Err(
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set",
        );
    }
    let mut r = had.clone();
    let set = |to: &mut i64, v: i64| {
        if v != 0 {
            *to = v;
        }
    };
    set(&mut r.cpu_shares, new.cpu_shares);
    set(&mut r.nano_cpus, new.nano_cpus);
    set(&mut r.cpu_period, new.cpu_period);
    set(&mut r.cpu_quota, new.cpu_quota);
    if !new.cpuset_cpus.is_empty() {
        r.cpuset_cpus = new.cpuset_cpus.clone();
    }
    if !new.cpuset_mems.is_empty() {
        r.cpuset_mems = new.cpuset_mems.clone();
    }
    if new.memory != 0 {
        if new.memory > had.memory_swap && new.memory_swap == 0 {
            return Err("Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time");
        }
        r.memory = new.memory;
    }
    set(&mut r.memory_swap, new.memory_swap);
    set(&mut r.memory_reservation, new.memory_reservation);
    if new.pids_limit.is_some() {
        r.pids_limit = new.pids_limit;
    }
    Ok(r)
}

/// Apply an update to the container `key`; Docker's warnings come back.
pub fn update(
    layout: &Layout,
    md: &Metadata,
    key: &str,
    request: &UpdateConfig,
) -> Result<Vec<String>> {
    let mut c = md.find(key)?;
    let mut new = request.resources.clone();
    // 0 and any negative number both mean "unlimited" here.
    if new.pids_limit.is_some_and(|p| p <= 0) {
        new.pids_limit = Some(0);
    }
    let warnings = resources::verify(&new, true)?;
    check_restart_policy(&request.restart_policy)?;
    let cannot = |why: String| format!("Cannot update container {}: {why}", c.id);
    let merged =
        merge(&Resources::of(&c.spec.host), &new).map_err(|e| Error::Conflict(cannot(e.into())))?;
    let policy = &request.restart_policy;
    if !policy.name.is_empty() {
        if c.spec.host.auto_remove && policy.name != "no" {
            return Err(Error::Conflict(cannot(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
                    .into(),
            )));
        }
        c.spec.host.restart_policy = policy.clone();
    }
    merged.store(&mut c.spec.host);

    // The bundle keeps the limits for the next start.
    let config = layout.bundle(&c.id).join("config.json");
    let before = std::fs::read(&config).map_err(|e| Error::io("read", &config, e))?;
    let mut oci: Spec = serde_json::from_slice(&before)
        .map_err(|e| Error::Container(format!("{}: {e}", config.display())))?;
    crate::hostspec::set_resources(&c.spec.host, &mut oci);
    let text = serde_json::to_vec_pretty(&oci).map_err(|e| Error::Container(e.to_string()))?;
    std::fs::write(&config, text).map_err(|e| Error::io("write", &config, e))?;

    let status = containers::state(layout, &c.id).status;
    if matches!(status.as_str(), "running" | "paused" | "created") {
        let root = polis_runtime::state::Root::new(layout.runtime_root());
        let live = resources::live_update(&new);
        if let Err(e) = polis_runtime::container::update(&root, &c.id, &live) {
            let _ = std::fs::write(&config, &before);
            return Err(Error::Container(cannot(e.to_string())));
        }
    }
    md.save_container(&c)?;
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_follows_docker() {
        let had = Resources {
            memory: 64 << 20,
            memory_swap: 128 << 20,
            nano_cpus: 500_000_000,
            ..Default::default()
        };
        let up = |r: Resources| merge(&had, &r);
        assert!(up(Resources {
            cpu_quota: 1000,
            ..Default::default()
        })
        .unwrap_err()
        .starts_with("Conflicting options: CPU Quota"));
        assert!(up(Resources {
            memory: 256 << 20,
            ..Default::default()
        })
        .unwrap_err()
        .starts_with("Memory limit should be smaller"));
        let r = up(Resources {
            memory: 100 << 20,
            pids_limit: Some(7),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (r.memory, r.memory_swap, r.pids_limit),
            (100 << 20, 128 << 20, Some(7))
        );
        assert_eq!(r.nano_cpus, 500_000_000);
    }

    #[test]
    fn restart_policies() {
        let p = |name: &str, n: i64| RestartPolicy {
            name: name.into(),
            maximum_retry_count: n,
        };
        assert!(check_restart_policy(&p("on-failure", 3)).is_ok());
        assert!(check_restart_policy(&p("always", 0)).is_ok());
        assert_eq!(
            check_restart_policy(&p("always", 2))
                .unwrap_err()
                .to_string(),
            "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        );
        assert!(check_restart_policy(&p("sometimes", 0))
            .unwrap_err()
            .to_string()
            .contains("unknown policy 'sometimes'"));
    }
}

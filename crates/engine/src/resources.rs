//! A container's cgroup limits as Docker's API names them (--memory, --memory-swap,
//! --memory-reservation, --memory-swappiness, --oom-kill-disable, --cpus, --cpu-shares,
//! --cpu-period, --cpu-quota, --cpuset-cpus, --cpuset-mems, --pids-limit): Docker's
//! defaults and checks, in its words, and their OCI `linux.resources` form.

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hostconfig::HostConfig;

/// The limits, as both create's HostConfig and update's body carry them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Resources {
    pub memory: i64,
    pub memory_swap: i64,
    pub memory_reservation: i64,
    pub memory_swappiness: Option<i64>,
    pub oom_kill_disable: Option<bool>,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub pids_limit: Option<i64>,
}

impl Resources {
    pub fn of(h: &HostConfig) -> Self {
        Resources {
            memory: h.memory,
            memory_swap: h.memory_swap,
            memory_reservation: h.memory_reservation,
            memory_swappiness: h.memory_swappiness,
            oom_kill_disable: h.oom_kill_disable,
            nano_cpus: h.nano_cpus,
            cpu_shares: h.cpu_shares,
            cpu_period: h.cpu_period,
            cpu_quota: h.cpu_quota,
            cpuset_cpus: h.cpuset_cpus.clone(),
            cpuset_mems: h.cpuset_mems.clone(),
            pids_limit: h.pids_limit,
        }
    }

    pub fn store(&self, h: &mut HostConfig) {
        h.memory = self.memory;
        h.memory_swap = self.memory_swap;
        h.memory_reservation = self.memory_reservation;
        h.memory_swappiness = self.memory_swappiness;
        h.oom_kill_disable = self.oom_kill_disable;
        h.nano_cpus = self.nano_cpus;
        h.cpu_shares = self.cpu_shares;
        h.cpu_period = self.cpu_period;
        h.cpu_quota = self.cpu_quota;
        h.cpuset_cpus = self.cpuset_cpus.clone();
        h.cpuset_mems = self.cpuset_mems.clone();
        h.pids_limit = self.pids_limit;
    }
}

/// The smallest memory limit Docker accepts.
const MIN_MEMORY: i64 = 6 << 20;
const MIN_CPU_SHARES: i64 = 2;
const MAX_CPU_SHARES: i64 = 262_144;
/// The CFS period `--cpus` uses, in microseconds.
const CPUS_PERIOD: i64 = 100_000;

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidInput(msg.into())
}

/// Create's defaults, as Docker fills them in (and so inspect shows them): swap twice
/// the memory, shares within the kernel's range, "unlimited" pids and swappiness unset,
/// the OOM killer explicitly on.
pub fn normalize(r: &mut Resources) {
    if r.cpu_shares < 0 {
        r.cpu_shares = MIN_CPU_SHARES;
    } else if r.cpu_shares > MAX_CPU_SHARES {
        r.cpu_shares = MAX_CPU_SHARES;
    }
    if r.memory > 0 && r.memory_swap == 0 {
        r.memory_swap = r.memory * 2;
    }
    if r.pids_limit.is_some_and(|p| p <= 0) {
        r.pids_limit = None;
    }
    if r.memory_swappiness == Some(-1) {
        r.memory_swappiness = None;
    }
    r.oom_kill_disable.get_or_insert(false);
}

/// Docker's checks on limits, for create and for update; the warnings it gives.
pub fn verify(r: &Resources, update: bool) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    if r.memory != 0 && r.memory < MIN_MEMORY {
        return Err(invalid("Minimum memory limit allowed is 6MB"));
    }
    if r.memory > 0 && r.memory_swap > 0 && r.memory_swap < r.memory {
        return Err(invalid(
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ));
    }
    if r.memory == 0 && r.memory_swap > 0 && !update {
        return Err(invalid(
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ));
    }
    if let Some(s) = r.memory_swappiness {
        if !(-1..=100).contains(&s) {
            return Err(invalid(format!(
                "Invalid value: {s}, valid memory swappiness range is 0-100"
            )));
        }
    }
    if r.memory_reservation != 0 && r.memory_reservation < MIN_MEMORY {
        return Err(invalid("Minimum memory reservation allowed is 6MB"));
    }
    if r.memory > 0 && r.memory_reservation > 0 && r.memory < r.memory_reservation {
        return Err(invalid(
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ));
    }
    if r.oom_kill_disable == Some(true) && r.memory == 0 {
        warnings.push("OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources.".to_string());
    }
    if r.nano_cpus > 0 && r.cpu_period > 0 {
        return Err(invalid(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set",
        ));
    }
    if r.nano_cpus > 0 && r.cpu_quota > 0 {
        return Err(invalid(
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
        ));
    }
    let ncpu = host_cpu_count();
    if r.nano_cpus < 0 || r.nano_cpus > ncpu * 1_000_000_000 {
        return Err(invalid(format!(
            "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )));
    }
    if r.cpu_period != 0 && !(1000..=1_000_000).contains(&r.cpu_period) {
        return Err(invalid(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        ));
    }
    if r.cpu_quota > 0 && r.cpu_quota < 1000 {
        return Err(invalid(
            "CPU cfs quota can not be less than 1ms (i.e. 1000)",
        ));
    }
    check_cpuset(&r.cpuset_cpus, "cpus", "CPUs", &available("cpus"))?;
    check_cpuset(&r.cpuset_mems, "mems", "memory nodes", &available("mems"))?;
    Ok(warnings)
}

/// CPUs this daemon may run on (Docker's NumCPU: the affinity mask).
fn host_cpu_count() -> i64 {
    let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else {
        return 1;
    };
    let n = (0..nix::sched::CpuSet::count())
        .filter(|i| set.is_set(*i).unwrap_or(false))
        .count();
    i64::try_from(n.max(1)).unwrap_or(1)
}

/// The host's CPUs or memory nodes containers may use, as the cpuset cgroup says.
fn available(what: &str) -> String {
    let candidates = [
        format!("/sys/fs/cgroup/cpuset/cpuset.{what}"),
        format!("/sys/fs/cgroup/cpuset.{what}.effective"),
        if what == "cpus" {
            "/sys/devices/system/cpu/online".to_string()
        } else {
            "/sys/devices/system/node/online".to_string()
        },
    ];
    candidates
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "0".into())
}

/// A cpuset list ("0-2,5") as the set of numbers it names.
fn parse_list(list: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    if list.is_empty() {
        return Some(out);
    }
    for part in list.split(',') {
        match part.split_once('-') {
            None => out.push(part.parse().ok()?),
            Some((lo, hi)) => {
                let (lo, hi): (u32, u32) = (lo.parse().ok()?, hi.parse().ok()?);
                if hi < lo || hi - lo > 65_536 {
                    return None;
                }
                out.extend(lo..=hi);
            }
        }
    }
    Some(out)
}

fn check_cpuset(requested: &str, file: &str, noun: &str, available: &str) -> Result<()> {
    let wanted = parse_list(requested).ok_or_else(|| {
        invalid(format!(
            "Invalid value {requested} for cpuset {file}: invalid format: {requested}"
        ))
    })?;
    let have = parse_list(available).unwrap_or_default();
    if wanted.iter().any(|n| !have.contains(n)) {
        return Err(invalid(format!(
            "Requested {noun} are not available - requested {requested}, available: {available}"
        )));
    }
    Ok(())
}

/// The OCI limits for `r`, as Docker translates them: only what is set.
pub fn linux_resources(r: &Resources, into: &mut LinuxResources) {
    let mut memory = LinuxMemory::default();
    if r.memory > 0 {
        memory.set_limit(Some(r.memory));
    }
    if r.memory_reservation > 0 {
        memory.set_reservation(Some(r.memory_reservation));
    }
    if r.memory_swap != 0 {
        memory.set_swap(Some(r.memory_swap));
    }
    if let Some(s) = r.memory_swappiness.filter(|s| *s >= 0) {
        memory.set_swappiness(Some(s as u64));
    }
    if r.oom_kill_disable == Some(true) {
        memory.set_disable_oom_killer(Some(true));
    }
    into.set_memory((memory != LinuxMemory::default()).then_some(memory));
    let mut cpu = LinuxCpu::default();
    if r.cpu_shares > 0 {
        cpu.set_shares(Some(r.cpu_shares as u64));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
    }
    if r.nano_cpus > 0 {
        cpu.set_period(Some(CPUS_PERIOD as u64));
        cpu.set_quota(Some(r.nano_cpus * CPUS_PERIOD / 1_000_000_000));
    }
    if r.cpu_period != 0 {
        cpu.set_period(Some(r.cpu_period as u64));
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
    }
    into.set_cpu((cpu != LinuxCpu::default()).then_some(cpu));
    into.set_pids(r.pids_limit.filter(|p| *p > 0).map(|p| {
        let mut pids = LinuxPids::default();
        pids.set_limit(p);
        pids
    }));
}

/// What `update` asks the live cgroup to change: only the fields the request sets
/// (Docker's toContainerdResources); a pids limit of 0 lifts it.
pub fn live_update(r: &Resources) -> LinuxResources {
    let mut out = LinuxResources::default();
    linux_resources(
        &Resources {
            pids_limit: None,
            memory_swappiness: None,
            oom_kill_disable: None,
            ..r.clone()
        },
        &mut out,
    );
    if let Some(p) = r.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(if p <= 0 { -1 } else { p });
        out.set_pids(Some(pids));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_defaults() {
        let mut r = Resources {
            memory: 64 << 20,
            cpu_shares: -5,
            pids_limit: Some(-1),
            memory_swappiness: Some(-1),
            ..Default::default()
        };
        normalize(&mut r);
        assert_eq!(r.memory_swap, 128 << 20);
        assert_eq!(r.cpu_shares, 2);
        assert_eq!(r.pids_limit, None);
        assert_eq!(r.memory_swappiness, None);
        assert_eq!(r.oom_kill_disable, Some(false));
    }

    #[test]
    fn docker_checks() {
        let err = |r: Resources| verify(&r, false).unwrap_err().to_string();
        assert_eq!(
            err(Resources {
                memory: 1 << 20,
                ..Default::default()
            }),
            "Minimum memory limit allowed is 6MB"
        );
        assert_eq!(
            err(Resources {
                memory: 64 << 20,
                memory_swap: 32 << 20,
                ..Default::default()
            }),
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        );
        assert!(err(Resources {
            memory_swap: 32 << 20,
            ..Default::default()
        })
        .starts_with("You should always set the Memory limit"));
        assert!(verify(
            &Resources {
                memory_swap: 32 << 20,
                ..Default::default()
            },
            true
        )
        .is_ok());
        assert!(err(Resources {
            nano_cpus: 1_000_000_000_000,
            ..Default::default()
        })
        .starts_with("Range of CPUs is from 0.01 to "));
        assert_eq!(
            err(Resources {
                nano_cpus: 1,
                cpu_period: 1000,
                ..Default::default()
            }),
            "Conflicting options: Nano CPUs and CPU Period cannot both be set"
        );
        assert_eq!(
            err(Resources {
                cpuset_cpus: "0-x".into(),
                ..Default::default()
            }),
            "Invalid value 0-x for cpuset cpus: invalid format: 0-x"
        );
        assert!(err(Resources {
            cpuset_cpus: "4000".into(),
            ..Default::default()
        })
        .starts_with("Requested CPUs are not available - requested 4000, available: "));
        assert!(err(Resources {
            cpuset_mems: "4000".into(),
            ..Default::default()
        })
        .starts_with("Requested memory nodes are not available"));
    }

    #[test]
    fn oci_form() {
        let mut out = LinuxResources::default();
        linux_resources(
            &Resources {
                memory: 64 << 20,
                memory_swap: -1,
                nano_cpus: 1_500_000_000,
                pids_limit: Some(20),
                ..Default::default()
            },
            &mut out,
        );
        let m = out.memory().unwrap();
        assert_eq!((m.limit(), m.swap()), (Some(64 << 20), Some(-1)));
        let c = out.cpu().clone().unwrap();
        assert_eq!((c.quota(), c.period()), (Some(150_000), Some(100_000)));
        assert_eq!(out.pids().unwrap().limit(), 20);
        let live = live_update(&Resources {
            pids_limit: Some(0),
            ..Default::default()
        });
        assert_eq!(live.pids().unwrap().limit(), -1);
        assert!(live.memory().is_none() && live.cpu().is_none());
    }
}

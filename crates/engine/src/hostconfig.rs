//! The host side of a container as Docker's API names it (`HostConfig` and the
//! stop settings of the create body): what the engine turns into the runtime spec,
//! the restart supervisor's policy and the log settings. Kept in the container's
//! record so inspect shows what was asked and a restart reapplies it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Option<Vec<String>>,
    pub mounts: Option<Vec<MountSpec>>,
    /// `--volumes-from CONTAINER[:ro|rw]`: that container's volumes, mounted alike.
    pub volumes_from: Option<Vec<String>>,
    pub tmpfs: Option<BTreeMap<String, String>>,
    pub readonly_rootfs: bool,
    pub network_mode: String,
    pub dns: Option<Vec<String>>,
    pub dns_search: Option<Vec<String>>,
    pub dns_options: Option<Vec<String>>,
    pub extra_hosts: Option<Vec<String>>,
    /// `-p`: container port (`80/tcp`) → host bindings.
    pub port_bindings: Option<BTreeMap<String, Option<Vec<PortBinding>>>>,
    /// `-P`: every exposed port to a free host port.
    pub publish_all_ports: bool,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub log_config: LogConfig,
    pub privileged: bool,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub security_opt: Option<Vec<String>>,
    /// Replace Docker's masked and read-only paths when set (`[]` for
    /// `--security-opt systempaths=unconfined`).
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    pub init: Option<bool>,
    pub sysctls: Option<BTreeMap<String, String>>,
    pub shm_size: i64,
    pub ulimits: Option<Vec<Ulimit>>,
    pub devices: Option<Vec<DeviceMapping>>,
    pub ipc_mode: String,
    pub console_size: Option<[u16; 2]>,
    // Resources.
    pub memory: i64,
    pub memory_swap: i64,
    pub memory_reservation: i64,
    pub memory_swappiness: Option<i64>,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub pids_limit: Option<i64>,
    pub oom_kill_disable: Option<bool>,
}

/// One host binding of a published port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

/// One network's entry in the create body's `NetworkingConfig.EndpointsConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointConfig {
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpam>,
    pub aliases: Option<Vec<String>>,
    pub mac_address: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointIpam {
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    /// "", "no", "always", "unless-stopped" or "on-failure".
    pub name: String,
    pub maximum_retry_count: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    /// "" or "json-file".
    #[serde(rename = "Type")]
    pub kind: String,
    pub config: Option<BTreeMap<String, String>>,
}

/// One entry of `--mount` (and of `HostConfig.Mounts`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountSpec {
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    /// "default", "consistent", "cached" or "delegated": meaningful on macOS only.
    pub consistency: String,
    pub bind_options: Option<BindOptions>,
    pub volume_options: Option<VolumeOptions>,
    pub tmpfs_options: Option<TmpfsOptions>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BindOptions {
    pub propagation: String,
    pub non_recursive: bool,
    pub create_mountpoint: bool,
    pub read_only_non_recursive: bool,
    pub read_only_force_recursive: bool,
}

/// `--mount type=volume` options: volume-nocopy, volume-label, volume-driver, volume-opt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeOptions {
    pub no_copy: bool,
    pub labels: Option<BTreeMap<String, String>>,
    pub driver_config: Option<VolumeDriver>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeDriver {
    pub name: String,
    pub options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TmpfsOptions {
    pub size_bytes: i64,
    pub mode: u32,
    /// Extra mount options: `["noexec"]` or `["key", "value"]`.
    pub options: Option<Vec<Vec<String>>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

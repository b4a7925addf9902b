//! The flags of `run` and `create` and the create request they make: the same `Config`,
//! `HostConfig` and `NetworkingConfig` fields, units and validation as the docker CLI,
//! so the daemon sees exactly what docker would have sent.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Map, Value};

use super::netopts;

/// Flags shared by `run` and `create`.
#[derive(Args, Debug, Default)]
pub struct ContainerFlags {
    /// Attach to STDIN, STDOUT or STDERR.
    #[arg(short = 'a', long = "attach", value_name = "STREAM", value_parser = parse_attach)]
    pub attach: Vec<String>,
    /// Keep STDIN open even if not attached.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    pub tty: bool,
    /// Automatically remove the container and its associated anonymous volumes when it
    /// exits.
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables.
    #[arg(short = 'e', long = "env", value_name = "list", value_parser = parse_env)]
    env: Vec<String>,
    /// Read in a file of environment variables.
    #[arg(long = "env-file", value_name = "list")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "string")]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short = 'u', long, value_name = "string")]
    user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image.
    #[arg(long, value_name = "string")]
    entrypoint: Option<String>,
    /// Container host name.
    #[arg(short = 'h', long, value_name = "string")]
    hostname: Option<String>,
    /// Set meta data on a container.
    #[arg(short = 'l', long = "label", value_name = "list")]
    labels: Vec<String>,
    /// Read in a line delimited file of labels.
    #[arg(long = "label-file", value_name = "list")]
    label_file: Vec<PathBuf>,
    /// Restart policy to apply when a container exits.
    #[arg(long, value_name = "string")]
    restart: Option<String>,
    /// Signal to stop the container.
    #[arg(long = "stop-signal", value_name = "string")]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container.
    #[arg(
        long = "stop-timeout",
        value_name = "int",
        allow_negative_numbers = true
    )]
    stop_timeout: Option<i64>,
    /// Command to run to check health.
    #[arg(long = "health-cmd", value_name = "string")]
    health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s).
    #[arg(long = "health-interval", value_name = "duration", allow_hyphen_values = true, value_parser = parse_duration_ns)]
    health_interval: Option<i64>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s).
    #[arg(long = "health-timeout", value_name = "duration", allow_hyphen_values = true, value_parser = parse_duration_ns)]
    health_timeout: Option<i64>,
    /// Start period for the container to initialize before starting health-retries
    /// countdown (ms|s|m|h) (default 0s).
    #[arg(long = "health-start-period", value_name = "duration", allow_hyphen_values = true, value_parser = parse_duration_ns)]
    health_start_period: Option<i64>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s).
    #[arg(long = "health-start-interval", value_name = "duration", allow_hyphen_values = true, value_parser = parse_duration_ns)]
    health_start_interval: Option<i64>,
    /// Consecutive failures needed to report unhealthy.
    #[arg(
        long = "health-retries",
        value_name = "int",
        allow_negative_numbers = true
    )]
    health_retries: Option<i64>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long = "no-healthcheck")]
    no_healthcheck: bool,
    /// Run an init inside the container that forwards signals and reaps processes.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    init: Option<bool>,
    /// Mount the container's root filesystem as read only.
    #[arg(long = "read-only")]
    read_only: bool,
    /// Mount a tmpfs directory.
    #[arg(long, value_name = "list")]
    tmpfs: Vec<String>,
    /// Add Linux capabilities.
    #[arg(long = "cap-add", value_name = "list")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities.
    #[arg(long = "cap-drop", value_name = "list")]
    cap_drop: Vec<String>,
    /// Give extended privileges to this container.
    #[arg(long)]
    privileged: bool,
    /// Security Options.
    #[arg(long = "security-opt", value_name = "list")]
    security_opt: Vec<String>,
    /// Memory limit.
    #[arg(short = 'm', long, value_name = "bytes", value_parser = parse_mem_bytes)]
    memory: Option<i64>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap.
    #[arg(long = "memory-swap", value_name = "bytes", allow_hyphen_values = true, value_parser = parse_swap_bytes)]
    memory_swap: Option<i64>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation", value_name = "bytes", value_parser = parse_mem_bytes)]
    memory_reservation: Option<i64>,
    /// Number of CPUs.
    #[arg(long, value_name = "decimal", value_parser = parse_nano_cpus)]
    cpus: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long = "cpu-shares", value_name = "int")]
    cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-cpus", value_name = "string")]
    cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-mems", value_name = "string")]
    cpuset_mems: Option<String>,
    /// Tune container pids limit (set -1 for unlimited).
    #[arg(long = "pids-limit", value_name = "int", allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    /// Ulimit options.
    #[arg(long, value_name = "ulimit", value_parser = parse_ulimit)]
    ulimit: Vec<Ulimit>,
    /// Add a host device to the container.
    #[arg(long, value_name = "list")]
    device: Vec<String>,
    /// Sysctl options.
    #[arg(long, value_name = "map", value_parser = parse_sysctl)]
    sysctl: Vec<(String, String)>,
    /// Size of /dev/shm.
    #[arg(long = "shm-size", value_name = "bytes", value_parser = parse_mem_bytes)]
    shm_size: Option<i64>,
    /// Connect a container to a network.
    #[arg(long, alias = "net", value_name = "network")]
    network: Option<String>,
    /// Add network-scoped alias for the container.
    #[arg(long = "network-alias", alias = "net-alias", value_name = "list")]
    network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104).
    #[arg(long, value_name = "string")]
    ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33).
    #[arg(long, value_name = "string")]
    ip6: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33).
    #[arg(long = "mac-address", value_name = "string")]
    mac_address: Option<String>,
    /// Publish a container's port(s) to the host.
    #[arg(short = 'p', long, value_name = "list")]
    publish: Vec<String>,
    /// Publish all exposed ports to random ports.
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Expose a port or a range of ports.
    #[arg(long, value_name = "list")]
    expose: Vec<String>,
    /// Set custom DNS servers.
    #[arg(long, value_name = "list", value_parser = netopts::parse_dns)]
    dns: Vec<String>,
    /// Set custom DNS search domains.
    #[arg(long = "dns-search", value_name = "list", value_parser = netopts::parse_dns_search)]
    dns_search: Vec<String>,
    /// Set DNS options.
    #[arg(long = "dns-option", alias = "dns-opt", value_name = "list")]
    dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip).
    #[arg(long = "add-host", value_name = "list", value_parser = netopts::parse_extra_host)]
    add_host: Vec<String>,
    /// Bind mount a volume.
    #[arg(short = 'v', long, value_name = "list")]
    volume: Vec<String>,
    /// Mount volumes from the specified container(s).
    #[arg(long = "volumes-from", value_name = "list")]
    volumes_from: Vec<String>,
    /// Attach a filesystem mount to the container.
    #[arg(long, value_name = "mount", value_parser = parse_mount)]
    mount: Vec<Mount>,
    /// Log driver options.
    #[arg(long = "log-opt", value_name = "list")]
    log_opt: Vec<String>,
    /// Logging driver for the container.
    #[arg(long = "log-driver", value_name = "string")]
    log_driver: Option<String>,
    /// Pull image before running ("always", "missing", "never").
    #[arg(long, value_name = "string", default_value = "missing")]
    pub pull: String,
    /// Suppress the pull output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Set platform if server is multi-platform capable.
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    /// The image, then the command and its arguments: everything after the image is
    /// the command's, flags included.
    #[arg(
        value_name = "IMAGE [COMMAND] [ARG...]",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub image_and_command: Vec<String>,
}

/// One `--ulimit`, as the API names its fields.
#[derive(Debug, Clone)]
pub struct Ulimit {
    name: String,
    soft: i64,
    hard: i64,
}

/// One `--mount`, already in the API's shape.
#[derive(Debug, Clone)]
pub struct Mount(Value);

impl ContainerFlags {
    pub fn image(&self) -> &str {
        self.image_and_command
            .first()
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// Flags go before the image: a leading word that looks like one is a flag we do
    /// not know (the hyphen-friendly positional took it in).
    pub fn check_image(&self) -> Result<(), super::StatusError> {
        unknown_flag(self.image())
    }

    /// Whether the container's stdout and stderr are attached (`-a` or the default).
    pub fn attach_stream(&self, stream: &str) -> bool {
        if stream == "stdin" {
            return self.interactive || self.attach.iter().any(|a| a == "stdin");
        }
        self.attach.is_empty() || self.attach.iter().any(|a| a == stream)
    }

    /// The `POST /containers/create` body; `console` is the terminal's size when the
    /// container gets a tty and our stdout is a terminal.
    pub fn create_body(&self, console: Option<(u16, u16)>) -> Result<Value> {
        if !matches!(self.pull.as_str(), "always" | "missing" | "never") {
            bail!(
                "invalid pull option: '{}': must be one of \"always\", \"missing\" or \"never\"",
                self.pull
            );
        }
        if let Some(mac) = &self.mac_address {
            if !netopts::valid_mac(mac) {
                bail!("{mac} is not a valid mac address");
            }
        }
        let attach_stdin = self.attach_stream("stdin");
        let mut ports = netopts::Ports::default();
        for spec in &self.publish {
            netopts::add_publish(&mut ports, spec).map_err(anyhow::Error::msg)?;
        }
        for spec in &self.expose {
            netopts::add_expose(&mut ports, spec).map_err(anyhow::Error::msg)?;
        }
        let mut env = Vec::new();
        for file in &self.env_file {
            env.extend(read_kv_file(file, true)?);
        }
        env.extend(self.env.iter().cloned());
        let mut label_list = Vec::new();
        for file in &self.label_file {
            label_list.extend(read_kv_file(file, false)?);
        }
        label_list.extend(self.labels.iter().cloned());
        let labels: Map<String, Value> = label_list
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), json!(v)),
                None => (l.clone(), json!("")),
            })
            .collect();
        let cmd: Option<&[String]> =
            (self.image_and_command.len() > 1).then(|| &self.image_and_command[1..]);
        let entrypoint = match self.entrypoint.as_deref() {
            Some("") => json!([""]),
            Some(e) => json!([e]),
            None => Value::Null,
        };

        let (binds, volumes) = split_volumes(&self.volume)?;
        let tmpfs: Map<String, Value> = self
            .tmpfs
            .iter()
            .map(|t| match t.split_once(':') {
                Some((dst, opts)) => (dst.to_string(), json!(opts)),
                None => (t.clone(), json!("")),
            })
            .collect();
        let restart = parse_restart(self.restart.as_deref().unwrap_or("no"))?;
        if self.rm && !matches!(restart.0.as_str(), "" | "no") {
            bail!("conflicting options: cannot specify both --restart and --rm");
        }
        let devices = self
            .device
            .iter()
            .map(|d| parse_device(d))
            .collect::<Result<Vec<_>>>()?;
        let mut log_config = Map::new();
        for opt in &self.log_opt {
            let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
            log_config.insert(k.to_string(), json!(v));
        }
        let (security_opt, system_paths_unconfined) = security_opts(&self.security_opt)?;
        let (cap_add, cap_drop) = effective_caps(&self.cap_add, &self.cap_drop);
        let mut host = json!({
            "Binds": if binds.is_empty() { Value::Null } else { json!(binds) },
            "ContainerIDFile": "",
            "LogConfig": {
                "Type": self.log_driver.clone().unwrap_or_default(),
                "Config": log_config,
            },
            "NetworkMode": self.network.clone().unwrap_or_else(|| "default".into()),
            "PortBindings": ports.bindings,
            "RestartPolicy": { "Name": restart.0, "MaximumRetryCount": restart.1 },
            "AutoRemove": self.rm,
            "VolumeDriver": "",
            "VolumesFrom": if self.volumes_from.is_empty() { Value::Null } else { json!(self.volumes_from) },
            "ConsoleSize": match console { Some((h, w)) => json!([h, w]), None => json!([0, 0]) },
            "CapAdd": cap_add,
            "CapDrop": cap_drop,
            "CgroupnsMode": "",
            "Dns": self.dns,
            "DnsOptions": self.dns_option,
            "DnsSearch": self.dns_search,
            "ExtraHosts": if self.add_host.is_empty() { Value::Null } else { json!(self.add_host) },
            "GroupAdd": null,
            "IpcMode": "",
            "Cgroup": "",
            "Links": null,
            "OomScoreAdj": 0,
            "PidMode": "",
            "Privileged": self.privileged,
            "PublishAllPorts": self.publish_all,
            "ReadonlyRootfs": self.read_only,
            "SecurityOpt": if security_opt.is_empty() { Value::Null } else { json!(security_opt) },
            "UTSMode": "",
            "UsernsMode": "",
            "ShmSize": self.shm_size.unwrap_or(0),
            "Isolation": "",
            "CpuShares": self.cpu_shares.unwrap_or(0),
            "Memory": self.memory.unwrap_or(0),
            "NanoCpus": self.cpus.unwrap_or(0),
            "CgroupParent": "",
            "BlkioWeight": 0,
            "BlkioWeightDevice": [],
            "BlkioDeviceReadBps": [],
            "BlkioDeviceWriteBps": [],
            "BlkioDeviceReadIOps": [],
            "BlkioDeviceWriteIOps": [],
            "CpuPeriod": 0,
            "CpuQuota": 0,
            "CpuRealtimePeriod": 0,
            "CpuRealtimeRuntime": 0,
            "CpusetCpus": self.cpuset_cpus.clone().unwrap_or_default(),
            "CpusetMems": self.cpuset_mems.clone().unwrap_or_default(),
            "Devices": devices,
            "DeviceCgroupRules": null,
            "DeviceRequests": null,
            "MemoryReservation": self.memory_reservation.unwrap_or(0),
            "MemorySwap": self.memory_swap.unwrap_or(0),
            "MemorySwappiness": -1,
            "OomKillDisable": false,
            "PidsLimit": self.pids_limit.unwrap_or(0),
            "Ulimits": self.ulimit.iter().map(|u| json!({
                "Name": u.name, "Hard": u.hard, "Soft": u.soft,
            })).collect::<Vec<_>>(),
            "CpuCount": 0,
            "CpuPercent": 0,
            "IOMaximumIOps": 0,
            "IOMaximumBandwidth": 0,
            "MaskedPaths": if system_paths_unconfined { json!([]) } else { Value::Null },
            "ReadonlyPaths": if system_paths_unconfined { json!([]) } else { Value::Null },
        });
        // Fields docker leaves out when they are not set.
        let extra = host.as_object_mut().expect("a JSON object");
        if !tmpfs.is_empty() {
            extra.insert("Tmpfs".into(), Value::Object(tmpfs));
        }
        if !self.sysctl.is_empty() {
            let sysctls: Map<String, Value> = self
                .sysctl
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            extra.insert("Sysctls".into(), Value::Object(sysctls));
        }
        if !self.mount.is_empty() {
            let mounts: Vec<Value> = self.mount.iter().map(|m| m.0.clone()).collect();
            extra.insert("Mounts".into(), json!(mounts));
        }
        if let Some(init) = self.init {
            extra.insert("Init".into(), json!(init));
        }

        let endpoints = self.endpoints()?;
        let mut body = json!({
            "Hostname": self.hostname.clone().unwrap_or_default(),
            "Domainname": "",
            "User": self.user.clone().unwrap_or_default(),
            "AttachStdin": attach_stdin,
            "AttachStdout": self.attach_stream("stdout"),
            "AttachStderr": self.attach_stream("stderr"),
            "Tty": self.tty,
            "OpenStdin": self.interactive,
            "StdinOnce": attach_stdin,
            "Env": if env.is_empty() { Value::Null } else { json!(env) },
            "Cmd": cmd,
            "Image": self.image(),
            "Volumes": volumes,
            "WorkingDir": self.workdir.clone().unwrap_or_default(),
            "Entrypoint": entrypoint,
            "OnBuild": null,
            "Labels": labels,
            "HostConfig": host,
            "NetworkingConfig": { "EndpointsConfig": endpoints },
        });
        let top = body.as_object_mut().expect("a JSON object");
        if !ports.exposed.is_empty() {
            top.insert("ExposedPorts".into(), json!(ports.exposed));
        }
        if let Some(s) = self.stop_signal.as_ref().filter(|s| !s.is_empty()) {
            top.insert("StopSignal".into(), json!(s));
        }
        if let Some(t) = self.stop_timeout {
            top.insert("StopTimeout".into(), json!(t));
        }
        if let Some(h) = self.healthcheck()? {
            top.insert("Healthcheck".into(), h);
        }
        Ok(body)
    }

    /// `Config.Healthcheck` as the docker CLI makes it from the `--health-*` flags and
    /// `--no-healthcheck`, with its checks and messages; zero fields are left out.
    fn healthcheck(&self) -> Result<Option<Value>> {
        let cmd = self.health_cmd.clone().unwrap_or_default();
        let durations = [
            (
                "Interval",
                "--health-interval",
                self.health_interval.unwrap_or(0),
            ),
            (
                "Timeout",
                "--health-timeout",
                self.health_timeout.unwrap_or(0),
            ),
            (
                "StartPeriod",
                "--health-start-period",
                self.health_start_period.unwrap_or(0),
            ),
            (
                "StartInterval",
                "--health-start-interval",
                self.health_start_interval.unwrap_or(0),
            ),
        ];
        let retries = self.health_retries.unwrap_or(0);
        let any = !cmd.is_empty() || retries != 0 || durations.iter().any(|d| d.2 != 0);
        if self.no_healthcheck {
            if any {
                bail!("--no-healthcheck conflicts with --health-* options");
            }
            return Ok(Some(json!({ "Test": ["NONE"] })));
        }
        if !any {
            return Ok(None);
        }
        let mut h = Map::new();
        if !cmd.is_empty() {
            h.insert("Test".into(), json!(["CMD-SHELL", cmd]));
        }
        for (field, flag, ns) in durations.iter().take(2) {
            if *ns < 0 {
                bail!("{flag} cannot be negative");
            }
            if *ns != 0 {
                h.insert(field.to_string(), json!(ns));
            }
        }
        if retries < 0 {
            bail!("--health-retries cannot be negative");
        }
        for (field, flag, ns) in durations.iter().skip(2) {
            if *ns < 0 {
                bail!("{flag} cannot be negative");
            }
            if *ns != 0 {
                h.insert(field.to_string(), json!(ns));
            }
        }
        if retries != 0 {
            h.insert("Retries".into(), json!(retries));
        }
        Ok(Some(Value::Object(h)))
    }
}

/// A Go duration flag (`200ms`, `1m30s`), in nanoseconds.
fn parse_duration_ns(s: &str) -> Result<i64, String> {
    super::format::go_duration(s)
        .map(|secs| (secs * 1e9).round() as i64)
        .ok_or_else(|| format!("time: invalid duration \"{s}\""))
}

/// Whether docker counts `mode` as a network of the user's (not default, bridge, host,
/// none or another container's).
pub fn user_defined_network(mode: &str) -> bool {
    !matches!(mode, "default" | "bridge" | "host" | "none") && !mode.starts_with("container:")
}

impl ContainerFlags {
    /// `NetworkingConfig.EndpointsConfig`: the network's endpoint with `--ip`, `--ip6`,
    /// `--network-alias` and `--mac-address`; an endpoint with nothing set is left out
    /// for a named network, as docker leaves it out.
    fn endpoints(&self) -> Result<Value> {
        let target = self.network.as_deref().unwrap_or("default");
        if target.trim().is_empty() {
            bail!("no name set for network");
        }
        if !user_defined_network(target) && !self.network_alias.is_empty() {
            bail!("network-scoped aliases are only supported for user-defined networks");
        }
        let mut ipam = Map::new();
        if let Some(ip) = self.ip.as_ref().filter(|ip| !ip.is_empty()) {
            ipam.insert("IPv4Address".into(), json!(ip));
        }
        if let Some(ip) = self.ip6.as_ref().filter(|ip| !ip.is_empty()) {
            ipam.insert("IPv6Address".into(), json!(ip));
        }
        let mac = self.mac_address.clone().unwrap_or_default();
        let empty = ipam.is_empty() && self.network_alias.is_empty() && mac.is_empty();
        if self.network.is_some() && empty {
            return Ok(json!({}));
        }
        let endpoint = json!({
            "IPAMConfig": if ipam.is_empty() { Value::Null } else { Value::Object(ipam) },
            "Links": null,
            "Aliases": if self.network_alias.is_empty() { Value::Null } else { json!(self.network_alias) },
            "MacAddress": mac,
            "DriverOpts": null, "GwPriority": 0, "NetworkID": "", "EndpointID": "",
            "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": null,
        });
        Ok(json!({ target: endpoint }))
    }
}

/// docker's answer to a flag it does not know (exit 125).
pub fn unknown_flag(word: &str) -> Result<(), super::StatusError> {
    if word.starts_with('-') && word.len() > 1 {
        let flag = word.split('=').next().unwrap_or(word);
        return Err(super::StatusError {
            code: 125,
            message: format!("unknown flag: {flag}"),
        });
    }
    Ok(())
}

fn parse_attach(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    if matches!(lower.as_str(), "stdin" | "stdout" | "stderr") {
        Ok(lower)
    } else {
        Err("valid streams are STDIN, STDOUT and STDERR".to_string())
    }
}

/// `-e NAME` takes NAME's value from our environment, as docker does; unset, it is
/// sent as it is.
pub fn parse_env(s: &str) -> Result<String, String> {
    if s.starts_with('=') {
        return Err(format!("invalid environment variable: {s}"));
    }
    if s.contains('=') {
        return Ok(s.to_string());
    }
    Ok(match std::env::var(s) {
        Ok(v) => format!("{s}={v}"),
        Err(_) => s.to_string(),
    })
}

/// An `--env-file` or `--label-file`: `KEY=value` lines, `#` comments; a bare `KEY` in
/// an env file takes its value from our environment, or is dropped when unset (always,
/// in a label file).
pub fn read_kv_file(path: &Path, lookup: bool) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("open {}: {}", path.display(), super::io_error_text(&e)))?;
    let mut out = Vec::new();
    for (n, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line, None),
        };
        if key.is_empty() {
            bail!(
                "no variable name on line '{line}' ({}:{})",
                path.display(),
                n + 1
            );
        }
        if key.contains(char::is_whitespace) {
            bail!("variable '{key}' contains whitespaces");
        }
        match value {
            Some(v) => out.push(format!("{key}={v}")),
            None if lookup => {
                if let Ok(v) = std::env::var(key) {
                    out.push(format!("{key}={v}"));
                }
            }
            // A label file's bare key carries nothing: docker drops it.
            None => {}
        }
    }
    Ok(out)
}

/// go-units' `RAMInBytes`: "512m" is 512 MiB; binary units whatever the suffix says.
pub fn ram_in_bytes(s: &str) -> Result<i64, String> {
    let digits_end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    let size: f64 = match number.parse() {
        Ok(n) if !number.ends_with('.') => n,
        _ => return Err(format!("invalid size: '{s}'")),
    };
    let unit = suffix.trim_start_matches(' ').to_ascii_lowercase();
    let (prefix, rest) = unit.split_at(unit.len().min(1));
    let power = match prefix {
        "" | "b" if rest.is_empty() => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return Err(format!("invalid suffix: '{suffix}'")),
    };
    if power > 0 && !matches!(rest, "" | "b" | "i" | "ib") {
        return Err(format!("invalid suffix: '{suffix}'"));
    }
    Ok((size * 1024f64.powi(power)) as i64)
}

fn parse_mem_bytes(s: &str) -> Result<i64, String> {
    ram_in_bytes(s)
}

/// `--memory-swap`: a size, or -1 for unlimited.
fn parse_swap_bytes(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    ram_in_bytes(s)
}

/// `--cpus 1.5` → 1500000000 nano-CPUs; more precision than that is refused.
pub fn parse_nano_cpus(s: &str) -> Result<i64, String> {
    let bad = || format!("failed to parse {s} as a rational number");
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let whole = whole.strip_prefix('-').unwrap_or(whole);
    if (whole.is_empty() && frac.is_empty())
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let frac_trimmed = frac.trim_end_matches('0');
    if frac_trimmed.len() > 9 {
        return Err("value is too precise".to_string());
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac_nanos: i64 = format!("{frac_trimmed:0<9}").parse().map_err(|_| bad())?;
    let nanos = whole
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac_nanos))
        .ok_or_else(bad)?;
    Ok(if s.starts_with('-') { -nanos } else { nanos })
}

use polis_engine::limits::ULIMITS;

/// `name=soft[:hard]`.
fn parse_ulimit(s: &str) -> Result<Ulimit, String> {
    let Some((name, values)) = s.split_once('=') else {
        return Err(format!("invalid ulimit argument: {s}"));
    };
    if !ULIMITS.contains(&name) {
        return Err(format!("invalid ulimit type: {name}"));
    }
    let number = |v: &str| {
        v.parse::<i64>()
            .map_err(|_| format!("strconv.ParseInt: parsing \"{v}\": invalid syntax"))
    };
    let (soft, hard) = match values.split_once(':') {
        Some((soft, hard)) => (number(soft)?, number(hard)?),
        None => {
            let v = number(values)?;
            (v, v)
        }
    };
    if soft > hard {
        return Err(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        ));
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// The sysctls docker lets a container set: namespaced ones only.
fn parse_sysctl(s: &str) -> Result<(String, String), String> {
    const ALLOWED: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let not_allowed = || format!("sysctl '{s}' is not allowed");
    let (key, value) = s.split_once('=').ok_or_else(not_allowed)?;
    if ALLOWED.contains(&key) || key.starts_with("fs.mqueue.") || key.starts_with("net.") {
        Ok((key.to_string(), value.to_string()))
    } else {
        Err(not_allowed())
    }
}

/// `--device SRC[:DST][:PERMISSIONS]`.
fn parse_device(s: &str) -> Result<Value> {
    let valid_mode =
        |m: &str| !m.is_empty() && m.len() <= 3 && m.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [src] => (*src, *src, "rwm"),
        [src, second] if valid_mode(second) => (*src, *src, *second),
        [src, dst] => (*src, *dst, "rwm"),
        [src, dst, mode] => {
            if !valid_mode(mode) {
                bail!("bad mode specified: {mode}");
            }
            (*src, *dst, *mode)
        }
        _ => bail!("bad format for path: {s}"),
    };
    if !dst.starts_with('/') {
        bail!("{dst} is not an absolute path");
    }
    Ok(json!({ "PathOnHost": src, "PathInContainer": dst, "CgroupPermissions": mode }))
}

/// `--restart NAME[:MAX]`; the daemon judges the name.
fn parse_restart(s: &str) -> Result<(String, i64)> {
    match s.split_once(':') {
        Some((name, count)) => {
            let Ok(n) = count.parse::<i64>() else {
                bail!("invalid restart policy format: maximum retry count must be an integer");
            };
            Ok((name.to_string(), n))
        }
        None => Ok((s.to_string(), 0)),
    }
}

/// `-v`: anonymous volumes go to `Volumes`, everything else to `Binds` (a relative
/// host path made absolute).
fn split_volumes(specs: &[String]) -> Result<(Vec<String>, Map<String, Value>)> {
    let mut binds = Vec::new();
    let mut volumes = Map::new();
    for spec in specs {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            1 => {
                volumes.insert(spec.clone(), json!({}));
            }
            2 | 3 => {
                let host = parts[0];
                if host.starts_with('.') {
                    let abs = absolute(host)?;
                    let rest = &spec[host.len()..];
                    binds.push(format!("{}{rest}", abs.display()));
                } else {
                    binds.push(spec.clone());
                }
            }
            _ => bail!("invalid spec: {spec}: too many colons"),
        }
    }
    Ok((binds, volumes))
}

/// A path made absolute against our working directory, `.` and `..` resolved.
fn absolute(path: &str) -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("the current directory")?;
    let mut out = PathBuf::new();
    for part in cwd.join(path).components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// `--mount type=…,source=…,target=…[,readonly][,…]` in the API's `Mounts` shape.
fn parse_mount(s: &str) -> Result<Mount, String> {
    let mut kind = "volume".to_string();
    let mut source = String::new();
    let mut target = String::new();
    let mut read_only = false;
    let mut consistency = String::new();
    let mut bind = Map::new();
    let mut volume = Map::new();
    let mut volume_labels = Map::new();
    let mut driver = Map::new();
    let mut driver_opts = Map::new();
    let mut tmpfs = Map::new();
    let parse_bool = |key: &str, v: Option<&str>| -> Result<bool, String> {
        match v.map(str::to_ascii_lowercase).as_deref() {
            None | Some("1" | "true") => Ok(true),
            Some("0" | "false") => Ok(false),
            Some(_) => Err(format!(
                "invalid value for {key}: {}",
                v.unwrap_or_default()
            )),
        }
    };
    for field in s.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let is_flag = matches!(
            key.as_str(),
            "readonly" | "ro" | "volume-nocopy" | "bind-nonrecursive"
        );
        if value.is_none() && !is_flag {
            return Err(format!("invalid field '{field}' must be a key=value pair"));
        }
        let v = value.unwrap_or_default();
        match key.as_str() {
            "type" => kind = v.to_ascii_lowercase(),
            "source" | "src" => source = v.to_string(),
            "target" | "dst" | "destination" => target = v.to_string(),
            "readonly" | "ro" => read_only = parse_bool(&key, value)?,
            "consistency" => consistency = v.to_string(),
            "bind-propagation" => {
                bind.insert("Propagation".into(), json!(v.to_ascii_lowercase()));
            }
            "bind-nonrecursive" => {
                bind.insert("NonRecursive".into(), json!(parse_bool(&key, value)?));
            }
            "volume-nocopy" => {
                volume.insert("NoCopy".into(), json!(parse_bool(&key, value)?));
            }
            "volume-label" => {
                let (k, lv) = v.split_once('=').unwrap_or((v, ""));
                volume_labels.insert(k.to_string(), json!(lv));
            }
            "volume-driver" => {
                driver.insert("Name".into(), json!(v));
            }
            "volume-opt" => {
                let (k, ov) = v.split_once('=').unwrap_or((v, ""));
                driver_opts.insert(k.to_string(), json!(ov));
            }
            "volume-subpath" => {
                volume.insert("Subpath".into(), json!(v));
            }
            "tmpfs-size" => {
                tmpfs.insert("SizeBytes".into(), json!(ram_in_bytes(v)?));
            }
            "tmpfs-mode" => {
                let mode = u32::from_str_radix(v, 8)
                    .map_err(|_| format!("invalid value for {key}: {v}"))?;
                tmpfs.insert("Mode".into(), json!(mode));
            }
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }
    if target.is_empty() {
        return Err("target is required".to_string());
    }
    if kind == "bind" && !source.is_empty() && !source.starts_with('/') {
        source = absolute(&source)
            .map_err(|e| e.to_string())?
            .display()
            .to_string();
    }
    let mut m = Map::new();
    m.insert("Type".into(), json!(kind));
    if !source.is_empty() {
        m.insert("Source".into(), json!(source));
    }
    m.insert("Target".into(), json!(target));
    if read_only {
        m.insert("ReadOnly".into(), json!(true));
    }
    if !consistency.is_empty() {
        m.insert("Consistency".into(), json!(consistency));
    }
    if !bind.is_empty() {
        m.insert("BindOptions".into(), Value::Object(bind));
    }
    if !volume_labels.is_empty() {
        volume.insert("Labels".into(), Value::Object(volume_labels));
    }
    if !driver_opts.is_empty() {
        driver.insert("Options".into(), Value::Object(driver_opts));
    }
    if !driver.is_empty() {
        volume.insert("DriverConfig".into(), Value::Object(driver));
    }
    if !volume.is_empty() {
        m.insert("VolumeOptions".into(), Value::Object(volume));
    }
    if !tmpfs.is_empty() {
        m.insert("TmpfsOptions".into(), Value::Object(tmpfs));
    }
    Ok(Mount(Value::Object(m)))
}

/// `--security-opt`: a seccomp profile file is sent as its (compacted) content;
/// `systempaths=unconfined` becomes empty masked and read-only path lists.
fn security_opts(opts: &[String]) -> Result<(Vec<String>, bool)> {
    let mut out = Vec::new();
    let mut unconfined_paths = false;
    for opt in opts {
        if opt == "systempaths=unconfined" {
            unconfined_paths = true;
            continue;
        }
        let (key, value) = match opt.split_once('=') {
            Some(kv) => kv,
            None if opt == "no-new-privileges" => (opt.as_str(), ""),
            None => opt.split_once(':').unwrap_or((opt.as_str(), "")),
        };
        if value.is_empty() && key != "no-new-privileges" {
            bail!("Invalid --security-opt: {opt:?}");
        }
        if key == "seccomp" && value != "unconfined" && value != "builtin" {
            let text = std::fs::read(value).map_err(|e| {
                anyhow::anyhow!(
                    "opening seccomp profile ({value}) failed: open {value}: {}",
                    super::io_error_text(&e)
                )
            })?;
            let compact = compact_json(&text).map_err(|e| {
                anyhow::anyhow!("compacting json for seccomp profile ({value}) failed: {e}")
            })?;
            out.push(format!("seccomp={compact}"));
        } else {
            out.push(opt.clone());
        }
    }
    Ok((out, unconfined_paths))
}

/// Go's `json.Compact`: the document's insignificant whitespace removed, nothing
/// else touched (key order and number spelling kept).
pub fn compact_json(text: &[u8]) -> Result<String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(text).context("invalid JSON")?;
    let text = String::from_utf8(text.to_vec()).context("invalid UTF-8")?;
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    Ok(out)
}

/// The capabilities to add and drop as docker sends them: normalized, sorted, each
/// once, and none that is both added and dropped.
fn effective_caps(add: &[String], drop: &[String]) -> (Value, Value) {
    use std::collections::BTreeSet;
    let mut add: BTreeSet<String> = add.iter().map(|c| normalize_capability(c)).collect();
    let mut drop: BTreeSet<String> = drop.iter().map(|c| normalize_capability(c)).collect();
    let both: Vec<String> = add.intersection(&drop).cloned().collect();
    for c in both {
        add.remove(&c);
        drop.remove(&c);
    }
    let list = |set: BTreeSet<String>| {
        if set.is_empty() {
            Value::Null
        } else {
            json!(set.into_iter().collect::<Vec<_>>())
        }
    };
    (list(add), list(drop))
}

/// `net_admin` → `CAP_NET_ADMIN`; `all` → `ALL`.
fn normalize_capability(cap: &str) -> String {
    let upper = cap.to_ascii_uppercase();
    if upper == "ALL" || upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cpus_as_docker_parses_them() {
        assert_eq!(ram_in_bytes("512m"), Ok(512 << 20));
        assert_eq!(ram_in_bytes("1.5g"), Ok(1_610_612_736));
        assert_eq!(ram_in_bytes("64"), Ok(64));
        assert_eq!(ram_in_bytes("64k"), Ok(65536));
        assert_eq!(ram_in_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(ram_in_bytes("2gb"), Ok(2 << 30));
        assert_eq!(ram_in_bytes("abc"), Err("invalid size: 'abc'".into()));
        assert_eq!(ram_in_bytes("10x"), Err("invalid suffix: 'x'".into()));
        assert_eq!(parse_nano_cpus("1.5"), Ok(1_500_000_000));
        assert_eq!(parse_nano_cpus("0.001"), Ok(1_000_000));
        assert_eq!(parse_nano_cpus("2"), Ok(2_000_000_000));
        assert_eq!(
            parse_nano_cpus("0.0000000001"),
            Err("value is too precise".into())
        );
        assert!(parse_nano_cpus("abc").is_err());
    }

    #[test]
    fn compacts_json_keeping_its_order() {
        let text = b"{ \"b\": [1, 2],\n \"a\": \"x y\" }\n";
        assert_eq!(compact_json(text).unwrap(), "{\"b\":[1,2],\"a\":\"x y\"}");
        assert!(compact_json(b"{nope").is_err());
    }

    #[test]
    fn devices_ulimits_and_mounts() {
        assert_eq!(
            parse_device("/dev/zero").unwrap(),
            json!({"PathOnHost": "/dev/zero", "PathInContainer": "/dev/zero", "CgroupPermissions": "rwm"})
        );
        assert_eq!(
            parse_device("/dev/fuse:rw").unwrap()["CgroupPermissions"],
            "rw"
        );
        assert!(parse_device("/dev/null:/x:abc").is_err());
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (1024, 2048));
        assert!(parse_ulimit("nofile=20:10").is_err());
        assert!(parse_ulimit("bogus=1").is_err());
        let m = parse_mount("type=tmpfs,dst=/t,tmpfs-mode=1770,tmpfs-size=1m").unwrap();
        assert_eq!(
            m.0,
            json!({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 1016}})
        );
        assert_eq!(
            parse_mount("dst").unwrap_err(),
            "invalid field 'dst' must be a key=value pair"
        );
    }
}

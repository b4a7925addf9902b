//! One function per runtime command: parse what runc's flags mean, call the library,
//! print what runc prints.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use oci_spec::runtime::{Capability, LinuxResources, Process};
use polis_runtime::container;
use polis_runtime::process::{self, CreateOptions, ExecOptions};
use polis_runtime::state::Root;

use super::foreground;
use super::log::Logger;
use super::{Command, CreateArgs, RuntimeCli};

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    #[arg(short, long)]
    pub env: Vec<String>,
    #[arg(short, long)]
    pub tty: bool,
    /// UID[:GID]
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// A process.json to run instead of the command line.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    #[arg(long)]
    pub apparmor: Option<String>,
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    #[arg(short, long)]
    pub cap: Vec<String>,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// A JSON file of resources (LinuxResources), or - for stdin.
    #[arg(short = 'r', long)]
    pub resources: Option<PathBuf>,
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    #[arg(long = "cpu-share", visible_alias = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime")]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    pub id: String,
}

pub fn dispatch(cli: &RuntimeCli, log: &Logger) -> Result<i32> {
    let root = Root::new(&cli.root);
    log.debug(&format!("root {}: {:?}", cli.root.display(), cli.command));
    match &cli.command {
        Command::Create(args) => {
            polis_runtime::cloned_exe::reexec_sealed()?;
            process::create(&root, &create_options(args, false))?;
            Ok(0)
        }
        Command::Run {
            create,
            detach,
            keep,
        } => run(&root, create, *detach, *keep, log),
        Command::Start { id } => {
            container::start(&root, id)?;
            Ok(0)
        }
        Command::State { id } => {
            let state = container::state(&root, id)?;
            println!("{}", serde_json::to_string_pretty(&state)?);
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            container::kill(&root, id, container::parse_signal(signal)?, *all)?;
            Ok(0)
        }
        Command::Delete { force, id } => {
            container::delete(&root, id, *force)?;
            Ok(0)
        }
        Command::Exec(args) => exec(&root, args),
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(&root, format, id, ps_args),
        Command::List { format, quiet } => list(&root, format, *quiet),
        Command::Pause { id } => {
            container::pause(&root, id)?;
            Ok(0)
        }
        Command::Resume { id } => {
            container::resume(&root, id)?;
            Ok(0)
        }
        Command::Update(args) => {
            let resources = update_resources(args)?;
            container::update(&root, &args.id, &resources)?;
            Ok(0)
        }
        Command::Events {
            interval,
            stats,
            id,
        } => events(&root, interval, *stats, id),
        Command::Features => {
            println!("{}", serde_json::to_string_pretty(&features())?);
            Ok(0)
        }
        Command::Spec {
            bundle,
            rootless_spec,
        } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("{}: already exists; remove it first", path.display());
            }
            let spec = polis_runtime::spec::example(*rootless_spec);
            std::fs::write(&path, serde_json::to_string_pretty(&spec)?)
                .with_context(|| format!("write {}", path.display()))?;
            Ok(0)
        }
    }
}

fn create_options(args: &CreateArgs, keep_pty: bool) -> CreateOptions {
    CreateOptions {
        id: args.id.clone(),
        bundle: args.bundle.clone(),
        console_socket: args.console_socket.clone(),
        pid_file: args.pid_file.clone(),
        no_pivot: args.no_pivot,
        no_new_keyring: args.no_new_keyring,
        preserve_fds: args.preserve_fds,
        keep_pty,
    }
}

fn run(root: &Root, args: &CreateArgs, detach: bool, keep: bool, log: &Logger) -> Result<i32> {
    polis_runtime::cloned_exe::reexec_sealed()?;
    let keep_pty = !detach && args.console_socket.is_none();
    let started = process::create(root, &create_options(args, keep_pty))?;
    if let Err(e) = container::start(root, &args.id) {
        let _ = container::delete(root, &args.id, true);
        return Err(e.into());
    }
    if detach {
        return Ok(0);
    }
    let code = foreground::wait(started.pid, started.pty_master);
    if !keep {
        if let Err(e) = container::delete(root, &args.id, true) {
            log.error(&format!("delete {}: {e}", args.id));
        }
    }
    Ok(code)
}

fn exec(root: &Root, args: &ExecArgs) -> Result<i32> {
    polis_runtime::cloned_exe::reexec_sealed()?;
    let process = exec_process(root, args)?;
    let keep_pty = !args.detach && args.console_socket.is_none();
    let opts = ExecOptions {
        console_socket: args.console_socket.clone(),
        pid_file: args.pid_file.clone(),
        preserve_fds: args.preserve_fds,
        keep_pty,
        ignore_paused: args.ignore_paused,
    };
    let started = process::exec(root, &args.id, &process, &opts)?;
    if args.detach {
        return Ok(0);
    }
    Ok(foreground::wait(started.pid, started.pty_master))
}

/// The process to exec: a process.json, or the container's own process with the
/// command line's changes.
fn exec_process(root: &Root, args: &ExecArgs) -> Result<Process> {
    if let Some(path) = &args.process {
        let text = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        return serde_json::from_slice(&text).with_context(|| format!("parse {}", path.display()));
    }
    if args.command.is_empty() {
        bail!("exec: give a command or --process FILE");
    }
    let record = root.load(&args.id)?;
    let mut p = record
        .config
        .process()
        .clone()
        .ok_or_else(|| anyhow!("container {} has no process config", args.id))?;
    p.set_args(Some(args.command.clone()));
    p.set_terminal(Some(args.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &args.env {
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &args.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(user) = &args.user {
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user.as_str(), None),
        };
        let mut u = p.user().clone();
        u.set_uid(
            uid.parse()
                .with_context(|| format!("--user {user:?}: uid must be a number"))?,
        );
        u.set_gid(match gid {
            Some(g) => g
                .parse()
                .with_context(|| format!("--user {user:?}: gid must be a number"))?,
            None => 0,
        });
        p.set_user(u);
    }
    if !args.additional_gids.is_empty() {
        let mut u = p.user().clone();
        u.set_additional_gids(Some(args.additional_gids.clone()));
        p.set_user(u);
    }
    if args.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(a) = &args.apparmor {
        p.set_apparmor_profile(Some(a.clone()));
    }
    if let Some(l) = &args.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    if !args.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &args.cap {
            let cap: Capability =
                serde_json::from_value(serde_json::Value::String(name.to_ascii_uppercase()))
                    .map_err(|_| anyhow!("--cap {name:?}: unknown capability"))?;
            for set in [
                caps.bounding().clone(),
                caps.effective().clone(),
                caps.permitted().clone(),
                caps.inheritable().clone(),
            ]
            .into_iter()
            .enumerate()
            {
                let (i, mut s) = (set.0, set.1.unwrap_or_default());
                s.insert(cap);
                match i {
                    0 => caps.set_bounding(Some(s)),
                    1 => caps.set_effective(Some(s)),
                    2 => caps.set_permitted(Some(s)),
                    _ => caps.set_inheritable(Some(s)),
                };
            }
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

fn ps(root: &Root, format: &str, id: &str, ps_args: &[String]) -> Result<i32> {
    let pids = container::pids(root, id)?;
    match format {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            let args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".into()]
            } else {
                ps_args.to_vec()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .context("run ps")?;
            if !out.status.success() {
                bail!(
                    "ps {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let pid_col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or_else(|| anyhow!("ps output has no PID column"))?;
            println!("{header}");
            for line in lines {
                let pid: i32 = line
                    .split_whitespace()
                    .nth(pid_col)
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(-1);
                if pids.contains(&pid) {
                    println!("{line}");
                }
            }
        }
        other => bail!("invalid format {other:?}: use table or json"),
    }
    Ok(0)
}

fn list(root: &Root, format: &str, quiet: bool) -> Result<i32> {
    let states = container::list(root)?;
    if quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(0);
    }
    match format {
        "json" => println!("{}", serde_json::to_string(&states)?),
        "table" => {
            println!(
                "{:<12} {:<10} {:<10} {:<40} {:<30} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for s in &states {
                println!(
                    "{:<12} {:<10} {:<10} {:<40} {:<30} {}",
                    s.id,
                    s.pid,
                    s.status.to_string(),
                    s.bundle.display().to_string(),
                    s.created,
                    if s.owner.is_empty() { "root" } else { &s.owner }
                );
            }
        }
        other => bail!("invalid format {other:?}: use table or json"),
    }
    Ok(0)
}

/// Sizes as runc's update takes them: a number of bytes, or with k/m/g suffix; -1 is unlimited.
fn parse_bytes(s: &str) -> Result<i64> {
    let s = s.trim();
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.to_ascii_lowercase();
    let (num, mult) = match lower.trim_end_matches('b').chars().last() {
        Some('k') => (&lower[..lower.trim_end_matches('b').len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.trim_end_matches('b').len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.trim_end_matches('b').len() - 1], 1 << 30),
        _ => (lower.trim_end_matches('b'), 1),
    };
    let n: i64 = num
        .trim()
        .parse()
        .with_context(|| format!("invalid size {s:?}"))?;
    Ok(n * mult)
}

fn update_resources(args: &UpdateArgs) -> Result<LinuxResources> {
    if let Some(path) = &args.resources {
        let text = if path.as_os_str() == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            s
        } else {
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?
        };
        return serde_json::from_str(&text)
            .with_context(|| format!("parse resources from {}", path.display()));
    }
    let mut v = serde_json::json!({});
    if let Some(m) = &args.memory {
        v["memory"]["limit"] = parse_bytes(m)?.into();
    }
    if let Some(m) = &args.memory_reservation {
        v["memory"]["reservation"] = parse_bytes(m)?.into();
    }
    if let Some(m) = &args.memory_swap {
        v["memory"]["swap"] = parse_bytes(m)?.into();
    }
    if let Some(x) = args.cpu_shares {
        v["cpu"]["shares"] = x.into();
    }
    if let Some(x) = args.cpu_quota {
        v["cpu"]["quota"] = x.into();
    }
    if let Some(x) = args.cpu_period {
        v["cpu"]["period"] = x.into();
    }
    if let Some(x) = args.cpu_rt_runtime {
        v["cpu"]["realtimeRuntime"] = x.into();
    }
    if let Some(x) = args.cpu_rt_period {
        v["cpu"]["realtimePeriod"] = x.into();
    }
    if let Some(x) = &args.cpuset_cpus {
        v["cpu"]["cpus"] = x.clone().into();
    }
    if let Some(x) = &args.cpuset_mems {
        v["cpu"]["mems"] = x.clone().into();
    }
    if let Some(x) = args.pids_limit {
        v["pids"]["limit"] = x.into();
    }
    if let Some(x) = args.blkio_weight {
        v["blockIO"]["weight"] = x.into();
    }
    Ok(serde_json::from_value(v)?)
}

fn parse_interval(s: &str) -> Result<std::time::Duration> {
    let d = |n: &str, m: f64| -> Result<std::time::Duration> {
        let v: f64 = n
            .parse()
            .with_context(|| format!("invalid interval {s:?}"))?;
        Ok(std::time::Duration::from_secs_f64(v * m))
    };
    if let Some(n) = s.strip_suffix("ms") {
        d(n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        d(n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        d(n, 60.0)
    } else {
        d(s, 1.0)
    }
}

/// runc's events: with --stats one stats event; otherwise a stats event every interval
/// and an "oom" event as soon as the OOM killer strikes, until the container stops.
fn events(root: &Root, interval: &str, once: bool, id: &str) -> Result<i32> {
    let interval = parse_interval(interval)?;
    let record = root.load(id)?;
    let emit = |kind: &str, data: serde_json::Value| {
        let mut event = serde_json::json!({ "type": kind, "id": id });
        if !data.is_null() {
            event["data"] = data;
        }
        println!("{event}");
    };
    if once {
        emit("stats", record.cgroup.stats()?.0);
        return Ok(0);
    }
    let tick = std::time::Duration::from_millis(100).min(interval);
    let mut ooms = record.cgroup.oom_kills().unwrap_or(0);
    let mut next_stats = std::time::Instant::now();
    while record.init_alive() {
        let now = record.cgroup.oom_kills().unwrap_or(ooms);
        if now > ooms {
            emit("oom", serde_json::Value::Null);
            ooms = now;
        }
        if std::time::Instant::now() >= next_stats {
            if let Ok(stats) = record.cgroup.stats() {
                emit("stats", stats.0);
            }
            next_stats += interval;
        }
        std::thread::sleep(tick);
    }
    Ok(0)
}

fn features() -> serde_json::Value {
    use polis_runtime::seccomp;
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "loud",
            "mand", "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime",
            "nostrictatime", "nosuid", "private", "rbind", "relatime", "remount", "ro",
            "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "silent", "slave",
            "strictatime", "suid", "sync", "unbindable", "rro", "rrw", "rnosuid", "rsuid",
            "rnodev", "rdev", "rnoexec", "rexec", "rnodiratime", "rdiratime", "rrelatime",
            "rnorelatime", "ratime", "rnoatime", "rstrictatime", "rnostrictatime",
            "rnosymfollow", "rsymfollow", "tmpcopyup"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": polis_runtime::capabilities::known_names(),
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false },
            "seccomp": {
                "enabled": true,
                "actions": seccomp::supported_actions(),
                "operators": seccomp::supported_operators(),
                "archs": seccomp::supported_archs(),
                "knownFlags": seccomp::known_flags(),
                "supportedFlags": seccomp::supported_flags(),
            },
            "apparmor": { "enabled": std::path::Path::new("/sys/module/apparmor/parameters/enabled").exists() },
            "selinux": { "enabled": std::path::Path::new("/sys/fs/selinux/enforce").exists() },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } },
        },
        "annotations": { "org.opencontainers.runc.version": "compatible", "io.polis.version": env!("CARGO_PKG_VERSION") },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("10m").unwrap(), 10 << 20);
        assert_eq!(parse_bytes("2G").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn intervals() {
        assert_eq!(
            parse_interval("5s").unwrap(),
            std::time::Duration::from_secs(5)
        );
        assert_eq!(
            parse_interval("250ms").unwrap(),
            std::time::Duration::from_millis(250)
        );
    }
}

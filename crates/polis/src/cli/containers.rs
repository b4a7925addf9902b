//! The container lifecycle verbs: create, run, start, attach, stop, kill, restart,
//! pause, unpause, rm, wait, rename, top, logs, update and container prune, with the
//! API calls, output and exit codes of the docker CLI.

use std::io::Write;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::client::{self, path_escape, query, Client, DaemonError};
use super::opts::{self, ContainerFlags};
use super::stream::{self, Ended, StreamOptions};
use super::{format, StatusError};

#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    #[command(flatten)]
    flags: ContainerFlags,
    /// Print usage.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run container in background and print container ID.
    #[arg(short, long)]
    detach: bool,
    /// Proxy received signals to the process.
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    sig_proxy: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long = "detach-keys", value_name = "string")]
    detach_keys: Option<String>,
    #[command(flatten)]
    flags: ContainerFlags,
    /// Print usage.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals.
    #[arg(short, long)]
    attach: bool,
    /// Attach container's STDIN.
    #[arg(short, long)]
    interactive: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long = "detach-keys", value_name = "string")]
    detach_keys: Option<String>,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct AttachArgs {
    /// Do not attach STDIN.
    #[arg(long = "no-stdin")]
    no_stdin: bool,
    /// Proxy all received signals to the process.
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    sig_proxy: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long = "detach-keys", value_name = "string")]
    detach_keys: Option<String>,
    #[arg(value_name = "CONTAINER")]
    container: String,
}

#[derive(Args)]
pub struct StopArgs {
    /// Signal to send to the container.
    #[arg(short, long, value_name = "string")]
    signal: Option<String>,
    /// Seconds to wait before killing the container.
    #[arg(
        short = 't',
        long = "timeout",
        visible_alias = "time",
        value_name = "int",
        allow_negative_numbers = true
    )]
    timeout: Option<i64>,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send to the container.
    #[arg(short, long, value_name = "string")]
    signal: Option<String>,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL).
    #[arg(short, long)]
    force: bool,
    /// Remove the specified link.
    #[arg(short, long)]
    link: bool,
    /// Remove anonymous volumes associated with the container.
    #[arg(short, long)]
    volumes: bool,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct RenameArgs {
    #[arg(value_name = "CONTAINER")]
    container: String,
    #[arg(value_name = "NEW_NAME")]
    new_name: String,
}

#[derive(Args)]
pub struct TopArgs {
    #[arg(value_name = "CONTAINER")]
    container: String,
    /// Options for ps.
    #[arg(
        value_name = "ps OPTIONS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    ps_args: Vec<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Show extra details provided to logs.
    #[arg(long)]
    details: bool,
    /// Follow log output.
    #[arg(short, long)]
    follow: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m"
    /// for 42 minutes).
    #[arg(long, value_name = "string")]
    since: Option<String>,
    /// Number of lines to show from the end of the logs.
    #[arg(short = 'n', long, value_name = "string", default_value = "all")]
    tail: String,
    /// Show timestamps.
    #[arg(short, long)]
    timestamps: bool,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g.
    /// "42m" for 42 minutes).
    #[arg(long, value_name = "string")]
    until: Option<String>,
    #[arg(value_name = "CONTAINER")]
    container: String,
}

#[derive(Args)]
pub struct UpdateArgs {
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable.
    #[arg(long = "blkio-weight", value_name = "uint16")]
    blkio_weight: Option<u16>,
    /// Limit CPU CFS (Completely Fair Scheduler) period.
    #[arg(long = "cpu-period", value_name = "int")]
    cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota.
    #[arg(long = "cpu-quota", value_name = "int", allow_negative_numbers = true)]
    cpu_quota: Option<i64>,
    /// Limit the CPU real-time period in microseconds.
    #[arg(long = "cpu-rt-period", value_name = "int")]
    cpu_rt_period: Option<i64>,
    /// Limit the CPU real-time runtime in microseconds.
    #[arg(long = "cpu-rt-runtime", value_name = "int")]
    cpu_rt_runtime: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long = "cpu-shares", value_name = "int")]
    cpu_shares: Option<i64>,
    /// Number of CPUs.
    #[arg(long, value_name = "decimal", value_parser = opts::parse_nano_cpus)]
    cpus: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-cpus", value_name = "string")]
    cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-mems", value_name = "string")]
    cpuset_mems: Option<String>,
    /// Memory limit.
    #[arg(short = 'm', long, value_name = "bytes", value_parser = opts::ram_in_bytes)]
    memory: Option<i64>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation", value_name = "bytes", value_parser = opts::ram_in_bytes)]
    memory_reservation: Option<i64>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap.
    #[arg(long = "memory-swap", value_name = "bytes", allow_hyphen_values = true, value_parser = swap_bytes)]
    memory_swap: Option<i64>,
    /// Tune container pids limit (set -1 for unlimited).
    #[arg(long = "pids-limit", value_name = "int", allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits.
    #[arg(long, value_name = "string")]
    restart: Option<String>,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>").
    #[arg(long, value_name = "filter")]
    filter: Vec<String>,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
}

fn swap_bytes(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    opts::ram_in_bytes(s)
}

/// docker's way of failing `run`: "docker: MESSAGE" and a pointer to the help, with
/// 125 for the engine's errors, 127 when the command is not there and 126 when it
/// cannot be run.
fn run_failure(verb: &str, e: &anyhow::Error) -> StatusError {
    let mut failure = usage_failure(verb, e);
    let message = format!("{e:#}");
    let trimmed = message.trim_start_matches("Error response from daemon: ");
    failure.code = if trimmed.contains("executable file not found")
        || trimmed.contains("no such file or directory")
        || trimmed.contains("system cannot find the file specified")
    {
        127
    } else if trimmed.contains("permission denied") || trimmed.contains("is a directory") {
        126
    } else {
        125
    };
    failure
}

/// A command line `run` or `create` cannot make a container of: 125, docker's way.
fn usage_failure(verb: &str, e: &anyhow::Error) -> StatusError {
    StatusError {
        code: 125,
        message: format!(
            "polis: {}\n\nRun 'polis {verb} --help' for more information",
            format!("{e:#}").trim_end_matches('.')
        ),
    }
}

fn is_daemon_status(e: &anyhow::Error, status: StatusCode) -> bool {
    e.downcast_ref::<DaemonError>()
        .is_some_and(|d| d.status == status)
}

/// `POST /images/create?fromImage=&tag=`, progress to stderr as docker prints it for
/// an implicit pull.
async fn pull(c: &Client, image: &str, quiet: bool) -> Result<()> {
    super::pull::pull_image(c, image, None, quiet, super::progress::Output::Stderr).await
}

/// Creates the container (pulling its image first when it is missing, as `--pull`
/// says); prints the daemon's warnings; returns its id.
async fn create_container(c: &Client, flags: &ContainerFlags, body: &Value) -> Result<String> {
    let mut pairs = Vec::new();
    if let Some(n) = &flags.name {
        pairs.push(("name", n.as_str()));
    }
    if let Some(p) = &flags.platform {
        pairs.push(("platform", p.as_str()));
    }
    let path = if pairs.is_empty() {
        "/containers/create".to_string()
    } else {
        format!("/containers/create?{}", query(&pairs))
    };
    if flags.pull == "always" {
        pull(c, flags.image(), flags.quiet).await?;
    }
    let created = match c.post_json(&path, body).await {
        Err(e)
            if flags.pull == "missing"
                && is_daemon_status(&e, StatusCode::NOT_FOUND)
                && e.to_string().contains("No such image") =>
        {
            eprintln!("Unable to find image '{}' locally", flags.image());
            pull(c, flags.image(), flags.quiet).await?;
            c.post_json(&path, body).await?
        }
        other => other?,
    };
    for w in created
        .get("Warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        eprintln!("WARNING: {w}");
    }
    created
        .get("Id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the daemon answered create without an Id"))
}

fn console_size(tty: bool) -> Option<(u16, u16)> {
    use std::io::IsTerminal;
    if tty && std::io::stdout().is_terminal() {
        stream::terminal_size()
    } else {
        None
    }
}

pub async fn create(c: &Client, a: CreateArgs) -> Result<()> {
    a.flags.check_image()?;
    let body = a
        .flags
        .create_body(console_size(a.flags.tty))
        .map_err(|e| usage_failure("create", &e))?;
    let id = create_container(c, &a.flags, &body).await?;
    println!("{id}");
    Ok(())
}

/// `POST /containers/{id}/wait?condition=…`, sent now; the status arrives through the
/// returned task once the condition holds.
async fn wait_for(
    c: &Client,
    id: &str,
    condition: Option<&str>,
) -> Result<tokio::task::JoinHandle<i32>> {
    let path = match condition {
        Some(cond) => format!("/containers/{id}/wait?condition={cond}"),
        None => format!("/containers/{id}/wait"),
    };
    let response = c.send(Method::POST, &path, client::empty(), None).await?;
    Ok(tokio::spawn(async move {
        let Ok(body) = response.into_body().collect().await else {
            eprintln!("Error waiting for container: the daemon closed the connection");
            return 125;
        };
        let v: Value = serde_json::from_slice(&body.to_bytes()).unwrap_or(Value::Null);
        if let Some(m) = v.pointer("/Error/Message").and_then(Value::as_str) {
            eprintln!("Error waiting for container: {m}");
            return 125;
        }
        v.get("StatusCode").and_then(Value::as_i64).unwrap_or(125) as i32
    }))
}

/// The attach query docker sends (keys sorted).
fn attach_path(id: &str, stdin: bool, stdout: bool, stderr: bool, keys: Option<&str>) -> String {
    let mut pairs = Vec::new();
    if let Some(k) = keys.filter(|k| !k.is_empty()) {
        pairs.push(("detachKeys", k));
    }
    if stderr {
        pairs.push(("stderr", "1"));
    }
    if stdin {
        pairs.push(("stdin", "1"));
    }
    if stdout {
        pairs.push(("stdout", "1"));
    }
    pairs.push(("stream", "1"));
    format!("/containers/{id}/attach?{}", query(&pairs))
}

/// Forwards the signals we receive to the container (docker's `--sig-proxy`).
fn proxy_signals(c: Arc<Client>, id: String) {
    use tokio::signal::unix::{signal, SignalKind};
    const SIGNALS: [(i32, &str); 6] = [
        (libc::SIGINT, "INT"),
        (libc::SIGTERM, "TERM"),
        (libc::SIGHUP, "HUP"),
        (libc::SIGQUIT, "QUIT"),
        (libc::SIGUSR1, "USR1"),
        (libc::SIGUSR2, "USR2"),
    ];
    for (number, name) in SIGNALS {
        let Ok(mut s) = signal(SignalKind::from_raw(number)) else {
            continue;
        };
        let (c, id) = (c.clone(), id.clone());
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                let path = format!("/containers/{id}/kill?signal={name}");
                if let Err(e) = c.send(Method::POST, &path, client::empty(), None).await {
                    eprintln!("{e:#}");
                }
            }
        });
    }
}

pub async fn run(c: &Client, a: RunArgs) -> Result<()> {
    use std::io::IsTerminal;
    let flags = &a.flags;
    flags.check_image()?;
    let mut body = flags
        .create_body(console_size(flags.tty))
        .map_err(|e| usage_failure("run", &e))?;
    if a.detach {
        if !flags.attach.is_empty() {
            return Err(StatusError {
                code: 1,
                message: "conflicting options: cannot specify both --attach and --detach".into(),
            }
            .into());
        }
        for key in ["AttachStdin", "AttachStdout", "AttachStderr", "StdinOnce"] {
            body[key] = json!(false);
        }
    } else if flags.tty && flags.attach_stream("stdin") && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY");
    }
    let id = create_container(c, flags, &body)
        .await
        .map_err(|e| run_failure("run", &e))?;
    let c = Arc::new(c.clone());
    if a.sig_proxy {
        proxy_signals(c.clone(), id.clone());
    }
    let attach_stdin = body["AttachStdin"] == json!(true);
    let attach_stdout = body["AttachStdout"] == json!(true);
    let attach_stderr = body["AttachStderr"] == json!(true);
    let attached = attach_stdin || attach_stdout || attach_stderr;
    let streaming = if attached {
        let path = attach_path(
            &id,
            attach_stdin,
            attach_stdout,
            attach_stderr,
            a.detach_keys.as_deref(),
        );
        let conn = c
            .hijack(&path, None)
            .await
            .map_err(|e| run_failure("run", &e))?;
        let o = StreamOptions {
            stdin: attach_stdin,
            stdout: attach_stdout,
            // With a tty, stderr is part of the terminal's output.
            stderr: attach_stderr,
            tty: flags.tty,
            detach_keys: a.detach_keys.clone(),
        };
        Some(tokio::spawn(stream::stream(conn, o)))
    } else {
        None
    };
    let condition = if flags.rm { "removed" } else { "next-exit" };
    let status = wait_for(&c, &id, Some(condition))
        .await
        .map_err(|e| run_failure("run", &e))?;
    if let Err(e) = c
        .send(
            Method::POST,
            &format!("/containers/{id}/start"),
            client::empty(),
            None,
        )
        .await
    {
        if let Some(s) = streaming {
            s.abort();
        }
        let failure = run_failure("run", &e);
        if flags.rm {
            let _ = status.await;
        }
        return Err(failure.into());
    }
    if attached && flags.tty && std::io::stdout().is_terminal() {
        stream::monitor_size(c.clone(), format!("/containers/{id}"), false);
    }
    let Some(streaming) = streaming else {
        println!("{id}");
        return Ok(());
    };
    match streaming.await {
        Ok(Ok(Ended::Detached)) => return Ok(()),
        Ok(Ok(Ended::Output)) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => bail!("the attach stream failed: {e}"),
    }
    if !attach_stdout && !attach_stderr {
        return Ok(());
    }
    let code = status.await.unwrap_or(125);
    exit_with(code)
}

fn exit_with(code: i32) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(StatusError {
            code,
            message: String::new(),
        }
        .into())
    }
}

/// Runs `f` for each container, printing the name on success; every failure is
/// reported, and any makes the command fail (docker's way for stop, rm, …).
async fn each<F, Fut>(names: &[String], f: F) -> Result<()>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>>>,
{
    let mut errors = Vec::new();
    let mut out = std::io::stdout();
    for name in names {
        match f(name.clone()).await {
            Ok(Some(line)) => writeln!(out, "{line}")?,
            Ok(None) => writeln!(out, "{name}")?,
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("\n"))
    }
}

async fn post_empty(c: &Client, path: &str) -> Result<Option<String>> {
    c.send(Method::POST, path, client::empty(), None).await?;
    Ok(None)
}

pub async fn start(c: &Client, a: StartArgs) -> Result<()> {
    if !a.attach && !a.interactive {
        let mut failed = Vec::new();
        for name in &a.containers {
            let path = format!("/containers/{}/start", path_escape(name));
            match c.send(Method::POST, &path, client::empty(), None).await {
                Ok(_) => println!("{name}"),
                Err(e) => {
                    eprintln!("{e:#}");
                    failed.push(name.clone());
                }
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        bail!("Error: failed to start containers: {}", failed.join(", "));
    }
    if a.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let info = c
        .json(&format!(
            "/containers/{}/json",
            path_escape(&a.containers[0])
        ))
        .await?;
    let id = info["Id"].as_str().unwrap_or_default().to_string();
    let tty = info["Config"]["Tty"] == json!(true);
    let stdin = a.interactive && info["Config"]["OpenStdin"] == json!(true);
    let c = Arc::new(c.clone());
    let path = attach_path(&id, stdin, true, true, a.detach_keys.as_deref());
    let conn = c.hijack(&path, None).await?;
    let o = StreamOptions {
        stdin,
        stdout: true,
        stderr: true,
        tty,
        detach_keys: a.detach_keys.clone(),
    };
    let streaming = tokio::spawn(stream::stream(conn, o));
    proxy_signals(c.clone(), id.clone());
    let auto_remove = info["HostConfig"]["AutoRemove"] == json!(true);
    let status = wait_for(
        &c,
        &id,
        Some(if auto_remove { "removed" } else { "next-exit" }),
    )
    .await?;
    if let Err(e) = c
        .send(
            Method::POST,
            &format!("/containers/{id}/start"),
            client::empty(),
            None,
        )
        .await
    {
        streaming.abort();
        return Err(e);
    }
    if tty && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        stream::monitor_size(c.clone(), format!("/containers/{id}"), false);
    }
    match streaming.await {
        Ok(Ok(Ended::Detached)) => return Ok(()),
        Ok(Ok(Ended::Output)) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => bail!("the attach stream failed: {e}"),
    }
    exit_with(status.await.unwrap_or(125))
}

pub async fn attach(c: &Client, a: AttachArgs) -> Result<()> {
    let name = path_escape(&a.container);
    let status = wait_for(c, &name, None).await?;
    let info = c.json(&format!("/containers/{name}/json")).await?;
    if info["State"]["Running"] != json!(true) {
        bail!("You cannot attach to a stopped container, start it first");
    }
    if info["State"]["Paused"] == json!(true) {
        bail!("You cannot attach to a paused container, unpause it first");
    }
    let id = info["Id"].as_str().unwrap_or_default().to_string();
    let tty = info["Config"]["Tty"] == json!(true);
    let stdin = !a.no_stdin && info["Config"]["OpenStdin"] == json!(true);
    let c = Arc::new(c.clone());
    let path = attach_path(&id, stdin, true, true, a.detach_keys.as_deref());
    let conn = c.hijack(&path, None).await?;
    if a.sig_proxy && !tty {
        proxy_signals(c.clone(), id.clone());
    }
    if tty && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        stream::monitor_size(c.clone(), format!("/containers/{id}"), false);
    }
    let o = StreamOptions {
        stdin,
        stdout: true,
        stderr: true,
        tty,
        detach_keys: a.detach_keys.clone(),
    };
    if stream::stream(conn, o).await? == Ended::Detached {
        return Ok(());
    }
    exit_with(status.await.unwrap_or(125))
}

pub async fn stop(c: &Client, a: StopArgs) -> Result<()> {
    stop_or_restart(c, a, "stop").await
}

pub async fn restart(c: &Client, a: StopArgs) -> Result<()> {
    stop_or_restart(c, a, "restart").await
}

/// `stop` and `restart` take the same options and differ only in the endpoint.
async fn stop_or_restart(c: &Client, a: StopArgs, verb: &str) -> Result<()> {
    let mut pairs = Vec::new();
    let t = a.timeout.map(|t| t.to_string());
    if let Some(s) = &a.signal {
        pairs.push(("signal", s.as_str()));
    }
    if let Some(t) = &t {
        pairs.push(("t", t.as_str()));
    }
    let q = query(&pairs);
    each(&a.containers, |name| {
        let path = format!("/containers/{}/{verb}", path_escape(&name));
        let path = if q.is_empty() {
            path
        } else {
            format!("{path}?{q}")
        };
        async move { post_empty(c, &path).await }
    })
    .await
}

pub async fn kill(c: &Client, a: KillArgs) -> Result<()> {
    let q = a
        .signal
        .as_deref()
        .map(|s| format!("?{}", query(&[("signal", s)])))
        .unwrap_or_default();
    each(&a.containers, |name| {
        let path = format!("/containers/{}/kill{q}", path_escape(&name));
        async move { post_empty(c, &path).await }
    })
    .await
}

pub async fn pause(c: &Client, a: NamesArgs) -> Result<()> {
    each(&a.containers, |name| {
        let path = format!("/containers/{}/pause", path_escape(&name));
        async move { post_empty(c, &path).await }
    })
    .await
}

pub async fn unpause(c: &Client, a: NamesArgs) -> Result<()> {
    each(&a.containers, |name| {
        let path = format!("/containers/{}/unpause", path_escape(&name));
        async move { post_empty(c, &path).await }
    })
    .await
}

pub async fn remove(c: &Client, a: RmArgs) -> Result<()> {
    let mut pairs = Vec::new();
    if a.force {
        pairs.push(("force", "1"));
    }
    if a.link {
        pairs.push(("link", "1"));
    }
    if a.volumes {
        pairs.push(("v", "1"));
    }
    let q = query(&pairs);
    each(&a.containers, |name| {
        let path = format!("/containers/{}", path_escape(&name));
        let path = if q.is_empty() {
            path
        } else {
            format!("{path}?{q}")
        };
        async move {
            c.send(Method::DELETE, &path, client::empty(), None).await?;
            Ok(None)
        }
    })
    .await
}

pub async fn wait(c: &Client, a: NamesArgs) -> Result<()> {
    each(&a.containers, |name| async move {
        let status = wait_for(c, &path_escape(&name), None).await?;
        let code = status.await.unwrap_or(125);
        Ok(Some(code.to_string()))
    })
    .await
}

pub async fn rename(c: &Client, a: RenameArgs) -> Result<()> {
    let new_name = a.new_name.trim();
    if a.container.trim().is_empty() || new_name.is_empty() {
        bail!("Error: Neither old nor new names may be empty");
    }
    let path = format!(
        "/containers/{}/rename?{}",
        path_escape(&a.container),
        query(&[("name", new_name)])
    );
    c.send(Method::POST, &path, client::empty(), None)
        .await
        .map(|_| ())
}

pub async fn top(c: &Client, a: TopArgs) -> Result<()> {
    let mut path = format!("/containers/{}/top", path_escape(&a.container));
    if !a.ps_args.is_empty() {
        path.push('?');
        path.push_str(&query(&[("ps_args", &a.ps_args.join(" "))]));
    }
    let top = c.json(&path).await?;
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().unwrap_or_default().to_string())
            .collect()
    };
    let mut text = strings(&top["Titles"]).join("\t");
    text.push('\n');
    for process in top["Processes"].as_array().into_iter().flatten() {
        text.push_str(&strings(process).join("\t"));
        text.push('\n');
    }
    std::io::stdout().write_all(format::tabwrite_with(&text, 20, 3).as_bytes())?;
    Ok(())
}

pub async fn logs(c: &Client, a: LogsArgs) -> Result<()> {
    let info = c
        .json(&format!("/containers/{}/json", path_escape(&a.container)))
        .await?;
    let id = info["Id"].as_str().unwrap_or_default().to_string();
    let tty = info["Config"]["Tty"] == json!(true);
    let now = std::time::SystemTime::now();
    let since = a
        .since
        .as_deref()
        .map(|s| format::timestamp(s, now))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|s| format::timestamp(s, now))
        .transpose()?;
    let mut pairs = Vec::new();
    if a.details {
        pairs.push(("details", "1"));
    }
    if a.follow {
        pairs.push(("follow", "1"));
    }
    if let Some(s) = &since {
        pairs.push(("since", s.as_str()));
    }
    pairs.push(("stderr", "1"));
    pairs.push(("stdout", "1"));
    pairs.push(("tail", a.tail.as_str()));
    if a.timestamps {
        pairs.push(("timestamps", "1"));
    }
    if let Some(u) = &until {
        pairs.push(("until", u.as_str()));
    }
    let path = format!("/containers/{id}/logs?{}", query(&pairs));
    let response = c.send(Method::GET, &path, client::empty(), None).await?;
    let mut reader = client::body_reader(response);
    if tty {
        let mut out = tokio::io::stdout();
        tokio::io::copy(&mut reader, &mut out).await?;
        tokio::io::AsyncWriteExt::flush(&mut out).await?;
        Ok(())
    } else {
        stream::demux(&mut reader, true, true).await
    }
}

pub async fn update(c: &Client, a: UpdateArgs) -> Result<()> {
    let restart = match &a.restart {
        Some(r) => match r.split_once(':') {
            Some((name, count)) => {
                let n: i64 = count.parse().map_err(|_| {
                    anyhow!("invalid restart policy format: maximum retry count must be an integer")
                })?;
                json!({ "Name": name, "MaximumRetryCount": n })
            }
            None => json!({ "Name": r, "MaximumRetryCount": 0 }),
        },
        None => json!({ "Name": "", "MaximumRetryCount": 0 }),
    };
    let body = json!({
        "CpuShares": a.cpu_shares.unwrap_or(0),
        "Memory": a.memory.unwrap_or(0),
        "NanoCpus": a.cpus.unwrap_or(0),
        "CgroupParent": "",
        "BlkioWeight": a.blkio_weight.unwrap_or(0),
        "BlkioWeightDevice": null,
        "BlkioDeviceReadBps": null,
        "BlkioDeviceWriteBps": null,
        "BlkioDeviceReadIOps": null,
        "BlkioDeviceWriteIOps": null,
        "CpuPeriod": a.cpu_period.unwrap_or(0),
        "CpuQuota": a.cpu_quota.unwrap_or(0),
        "CpuRealtimePeriod": a.cpu_rt_period.unwrap_or(0),
        "CpuRealtimeRuntime": a.cpu_rt_runtime.unwrap_or(0),
        "CpusetCpus": a.cpuset_cpus.clone().unwrap_or_default(),
        "CpusetMems": a.cpuset_mems.clone().unwrap_or_default(),
        "Devices": null,
        "DeviceCgroupRules": null,
        "DeviceRequests": null,
        "MemoryReservation": a.memory_reservation.unwrap_or(0),
        "MemorySwap": a.memory_swap.unwrap_or(0),
        "MemorySwappiness": null,
        "OomKillDisable": null,
        "PidsLimit": a.pids_limit,
        "Ulimits": null,
        "CpuCount": 0,
        "CpuPercent": 0,
        "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0,
        "RestartPolicy": restart,
    });
    let body = &body;
    each(&a.containers, |name| async move {
        let path = format!("/containers/{}/update", path_escape(&name));
        let answer = c.post_json(&path, body).await?;
        for w in answer
            .get("Warnings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            eprintln!("{w}");
        }
        Ok(None)
    })
    .await
}

/// docker's filter flags → the `filters` query (`{"key":{"value":true}}`).
pub fn filters_query(filters: &[String]) -> Result<Option<String>> {
    if filters.is_empty() {
        return Ok(None);
    }
    let mut map: std::collections::BTreeMap<String, std::collections::BTreeMap<String, bool>> =
        Default::default();
    for f in filters {
        let Some((k, v)) = f.split_once('=') else {
            bail!("bad format of filter (expected name=value)");
        };
        map.entry(k.trim().to_ascii_lowercase())
            .or_default()
            .insert(v.trim().to_string(), true);
    }
    Ok(Some(serde_json::to_string(&map)?))
}

pub async fn prune(c: &Client, a: PruneArgs) -> Result<()> {
    if !a.force {
        use std::io::BufRead;
        eprint!("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("read the answer")?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Err(StatusError {
                code: 1,
                message: "Total reclaimed space: 0B".into(),
            }
            .into());
        }
    }
    let path = match filters_query(&a.filter)? {
        Some(f) => format!("/containers/prune?{}", query(&[("filters", &f)])),
        None => "/containers/prune".to_string(),
    };
    let report = c.post_json(&path, &Value::Null).await?;
    let mut out = String::new();
    let deleted: Vec<&str> = report["ContainersDeleted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !deleted.is_empty() {
        out.push_str("Deleted Containers:\n");
        for id in deleted {
            out.push_str(id);
            out.push('\n');
        }
        out.push('\n');
    }
    let space = report["SpaceReclaimed"].as_i64().unwrap_or(0);
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        format::human_size_precision(space, 4)
    ));
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_of_run_failures() {
        let e = anyhow!("Error response from daemon: container init: exec: \"x\": executable file not found in $PATH");
        assert_eq!(run_failure("run", &e).code, 127);
        let e = anyhow!("Error response from daemon: exec: \"/etc\": permission denied");
        assert_eq!(run_failure("run", &e).code, 126);
        let e = anyhow!("Error response from daemon: No such image: x");
        let f = run_failure("run", &e);
        assert_eq!(f.code, 125);
        assert_eq!(
            f.message,
            "polis: Error response from daemon: No such image: x\n\nRun 'polis run --help' for more information"
        );
        assert_eq!(
            filters_query(&["status=running".into(), "label=a=b".into()])
                .unwrap()
                .unwrap(),
            r#"{"label":{"a=b":true},"status":{"running":true}}"#
        );
    }
}

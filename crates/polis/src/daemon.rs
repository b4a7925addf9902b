//! `polis daemon`: the engine's process. Resolves its configuration (defaults, config
//! file, POLIS_* variables, flags), takes the root's lock, opens the metadata store and
//! serves the API until SIGTERM or SIGINT.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use polis_engine::config::{Overrides, DEFAULT_CONFIG_FILE};
use polis_engine::lock::RootLock;
use polis_engine::metadata::Metadata;
use polis_engine::DaemonConfig;

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Persistent state (default /var/lib/polis).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Sockets and runtime state (default /run/polis).
    #[arg(long = "run-root")]
    run_root: Option<PathBuf>,
    /// Where the API listens (default unix://<run-root>/polis.sock).
    #[arg(short = 'H', long)]
    host: Option<String>,
    /// Log filter: error, warn, info, debug, trace, or per-module directives.
    #[arg(long = "log-level")]
    log_level: Option<String>,
    /// The init `docker run --init` runs as PID 1 (default /usr/bin/tini-static).
    #[arg(long = "init-path")]
    init_path: Option<PathBuf>,
    /// A registry reached without TLS verification: host[:port] or a CIDR (repeatable).
    #[arg(long = "insecure-registry")]
    insecure_registry: Vec<String>,
    /// A mirror of docker.io, tried before it when pulling: http(s)://host[:port]
    /// (repeatable, in order).
    #[arg(long = "registry-mirror")]
    registry_mirror: Vec<String>,
    /// The default bridge network's interface (default polis0); `none` runs without one.
    #[arg(short = 'b', long)]
    bridge: Option<String>,
    /// Config file (TOML; default /etc/polis/polisd.toml if it exists).
    #[arg(long = "config-file")]
    config_file: Option<PathBuf>,
}

pub fn main(args: DaemonArgs) -> Result<i32> {
    let (file, required) = match &args.config_file {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    let config = DaemonConfig::resolve(&[
        Overrides::from_file(&file, required)?,
        Overrides::from_env(|k| std::env::var(k).ok()),
        Overrides {
            root: args.root,
            run_root: args.run_root,
            host: args.host,
            log_level: args.log_level,
            init_path: args.init_path,
            insecure_registries: (!args.insecure_registry.is_empty())
                .then_some(args.insecure_registry),
            registry_mirrors: (!args.registry_mirror.is_empty()).then_some(args.registry_mirror),
            bridge: args.bridge,
            ..Overrides::default()
        },
    ])?;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("log level {:?}", config.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let _lock = RootLock::acquire(&config.root)?;
    std::fs::create_dir_all(&config.run_root)
        .with_context(|| format!("create {}", config.run_root.display()))?;
    let metadata = Metadata::open(&config.root)?;
    let info = polis_api::DaemonInfo {
        id: metadata.daemon_id()?,
        root: config.root.clone(),
        name: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    polis_image::registry::configure(polis_image::registry::RegistryConfig::new(
        config.certs_dir.clone(),
        &config.insecure_registries,
        &config.registry_mirrors,
    )?);
    let images = polis_image::ImageStore::open(&config.root.join("images"))?;
    // Blobs a crash left behind (an interrupted load or import) go now.
    let gc = images.gc()?;
    if !gc.removed.is_empty() {
        tracing::info!(
            blobs = gc.removed.len(),
            bytes = gc.bytes,
            "removed unreferenced blobs"
        );
    }
    let layout = polis_engine::containers::Layout {
        root: config.root.clone(),
        run_root: config.run_root.clone(),
        init_path: config.init_path.clone(),
        unpack: config.unpack_options(),
    };
    // What a killed daemon or shim left half-done is settled before anyone can ask.
    let networks = polis_engine::networking::Networks::open(
        &config.root,
        &config.run_root,
        config.bridge.as_deref(),
    )?;
    let recovery = polis_engine::recovery::reconcile(&layout, &metadata, &networks)?;
    for what in &recovery.orphans_removed {
        tracing::info!(%what, "removed a leftover of an interrupted operation");
    }
    for id in &recovery.marked_exited {
        tracing::warn!(%id, "the container's shim died: marked exited");
    }
    for id in &recovery.recreated {
        tracing::info!(%id, "created container's shim restarted");
    }
    for e in &recovery.errors {
        tracing::error!(error = %e, "recovery step failed");
    }
    // Snapshots of images removed before a crash (or by an older version) go now, once
    // the leftover containers that sat on them are gone.
    let snapshots = polis_engine::snapshot_gc::remove_unused(&layout, &images)?;
    if !snapshots.removed.is_empty() {
        tracing::info!(
            snapshots = snapshots.removed.len(),
            bytes = snapshots.bytes,
            "removed snapshots no image uses"
        );
    }
    for e in &snapshots.errors {
        tracing::error!(error = %e, "snapshot removal failed");
    }
    let state = std::sync::Arc::new(polis_api::AppState {
        networks: std::sync::Arc::new(networks),
        info,
        images: std::sync::Arc::new(images),
        metadata: std::sync::Arc::new(metadata),
        layout,
        execs: Default::default(),
        restarts: Default::default(),
        health: Default::default(),
        events: Default::default(),
    });
    let socket = config.socket_path()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    {
        // The embedded DNS servers run on this runtime; they answer for the containers
        // the recovery found running and those started since.
        let _entered = runtime.enter();
        for e in state.networks.serve_dns() {
            tracing::error!(error = %e, "embedded DNS not started");
        }
    }
    let served = runtime.block_on(async move {
        tracing::info!(root = %config.root.display(), socket = %socket.display(), "polis daemon listening");
        let shutdown = shutdown_signal()?;
        polis_api::resume_auto_remove(&state);
        polis_api::resume_restart_policies(&state);
        polis_api::serve_unix(&socket, polis_api::router(state), shutdown).await?;
        tracing::info!("polis daemon stopped");
        Ok::<_, anyhow::Error>(())
    });
    // Blocking calls still waiting on a shim (a `wait` whose client left, a --rm
    // watcher) would hold the exit until their containers exit: the containers go on
    // without the daemon, so nothing is lost by not waiting.
    runtime.shutdown_background();
    served?;
    Ok(0)
}

/// Handlers are installed before the socket is bound: a client that sees the socket
/// may send SIGTERM at once, and it must find the clean shutdown path.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}

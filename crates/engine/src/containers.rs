//! Containers as the engine keeps them: a record in the metadata store, a bundle whose
//! rootfs is an overlay snapshot of the image, and a shim that runs it. These functions
//! are blocking; the API runs them on its blocking pool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::Spec;
use polis_image::spec::ProcessOverrides;
use polis_image::ImageStore;
use polis_shim::protocol::{Client, Request};
use polis_storage::Snapshotter;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hostconfig::{EndpointConfig, HostConfig};
use crate::logconfig::{LogDriver, LogInfo};
use crate::metadata::Metadata;
use crate::networking::Networks;

/// What a container is made from: the parts of Docker's create request Polis uses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerSpec {
    pub image: String,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub tty: bool,
    pub open_stdin: bool,
    pub labels: BTreeMap<String, String>,
    /// The signal `stop` sends first (the image's StopSignal unless overridden).
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (10 unless set).
    pub stop_timeout: Option<i64>,
    pub host: HostConfig,
    /// `NetworkingConfig.EndpointsConfig`: per network, the addresses and aliases asked.
    pub endpoints: BTreeMap<String, EndpointConfig>,
    /// `Config.ExposedPorts` (`80/tcp` → {}), the image's merged in at create.
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    /// `Config.Volumes` (`/data` → {}): anonymous volumes asked for.
    pub volumes: BTreeMap<String, serde_json::Value>,
    /// The volumes the container mounts, found or made at create.
    pub volume_mounts: Vec<crate::volume_use::VolumeMount>,
    /// `Config.Healthcheck`, the image's merged in at create.
    pub healthcheck: Option<crate::health::HealthConfig>,
}

/// The engine's record of one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub created: String,
    pub spec: ContainerSpec,
    /// The process as it runs (path and args), for `ps` and inspect.
    pub path: String,
    pub args: Vec<String>,
    pub started_at: Option<String>,
    /// Restarts by the restart policy since the last start by the user.
    #[serde(default)]
    pub restart_count: i64,
    /// Stopped or killed by the user since the last start: `unless-stopped` then stays
    /// down, even across a daemon restart.
    #[serde(default)]
    pub manually_stopped: bool,
    /// When its previous run ended: Docker's FinishedAt while it runs again.
    #[serde(default)]
    pub finished_at: Option<String>,
}

/// Where the engine keeps things.
pub struct Layout {
    pub root: PathBuf,
    pub run_root: PathBuf,
    /// The binary `--init` bind-mounts as the container's /sbin/docker-init.
    pub init_path: PathBuf,
    /// Limits and permissions for unpacking image layers.
    pub unpack: polis_storage::UnpackOptions,
}

impl Layout {
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("bundle")
    }
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }
    /// The shim's socket and exit status. Short, because a unix socket path must fit in
    /// 108 bytes: 16 hex digits of the id are unique enough.
    pub fn shim_dir(&self, id: &str) -> PathBuf {
        self.run_root.join("c").join(&id[..16.min(id.len())])
    }
    pub fn runtime_root(&self) -> PathBuf {
        self.run_root.join("runtime")
    }
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("storage")
    }
    /// The layer snapshots, unpacking with this daemon's limits.
    pub fn snapshotter(&self) -> Result<Snapshotter> {
        Snapshotter::with_options(self.snapshots(), self.unpack.clone()).map_err(Error::Storage)
    }
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() > 1
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn run_shim(layout: &Layout, container: &Container) -> Result<()> {
    let id = container.id.as_str();
    let spec = &container.spec;
    let exe = std::env::current_exe().map_err(|e| Error::io("find", "/proc/self/exe", e))?;
    let mut cmd = Command::new(exe);
    cmd.arg("shim")
        .arg("--id")
        .arg(id)
        .arg("--bundle")
        .arg(layout.bundle(id))
        .arg("--state-dir")
        .arg(layout.shim_dir(id))
        .arg("--runtime-root")
        .arg(layout.runtime_root());
    match crate::logconfig::resolve(&spec.host.log_config, &log_info(layout, container))? {
        LogDriver::None => {}
        LogDriver::JsonFile {
            max_size,
            max_file,
            attrs,
        } => {
            cmd.arg("--log-path")
                .arg(layout.log_path(id))
                .arg("--log-max-size")
                .arg(max_size.to_string())
                .arg("--log-max-file")
                .arg(max_file.to_string());
            if !attrs.is_empty() {
                let json = serde_json::to_string(&attrs)
                    .map_err(|e| Error::InvalidInput(e.to_string()))?;
                cmd.arg("--log-attrs").arg(json);
            }
        }
    }
    if spec.open_stdin {
        cmd.arg("--stdin");
    }
    let out = cmd
        .output()
        .map_err(|e| Error::io("start shim for", id, e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim().trim_start_matches("polis shim: ");
        return Err(Error::Container(err.to_string()));
    }
    Ok(())
}

/// What the log options may copy into records: names, labels, and the environment
/// the container runs with (the image's included, from its bundle).
fn log_info(layout: &Layout, c: &Container) -> LogInfo {
    let env = std::fs::read(layout.bundle(&c.id).join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| serde_json::from_value(v["process"]["env"].clone()).ok())
        .unwrap_or_default();
    LogInfo {
        id: c.id.clone(),
        name: c.name.clone(),
        image_id: c.image_id.clone(),
        image_name: c.spec.image.clone(),
        command: std::iter::once(c.path.as_str())
            .chain(c.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        labels: c.spec.labels.clone(),
        env,
    }
}

/// Create a container: snapshot, bundle, record, then the shim (which creates it in
/// the runtime). Everything made is undone if a step fails.
pub fn create(
    layout: &Layout,
    md: &Metadata,
    images: &ImageStore,
    networks: &Networks,
    name: Option<&str>,
    mut spec: ContainerSpec,
) -> Result<Container> {
    crate::restart::validate(&spec.host.restart_policy, spec.host.auto_remove)?;
    crate::logconfig::validate(&spec.host.log_config)?;
    if let Some(h) = &spec.healthcheck {
        crate::health::validate(h)?;
    }
    let image_err = |e: polis_image::Error| Error::Image(e);
    let (image_id, image_config) = images.config(&spec.image).map_err(image_err)?;
    let image_health = crate::health::from_image(
        image_config
            .config
            .as_ref()
            .and_then(|c| c.healthcheck.as_ref()),
    )?;
    spec.healthcheck = crate::health::merge(spec.healthcheck.take(), image_health.as_ref());
    if spec.stop_signal.is_none() {
        spec.stop_signal = image_config
            .config
            .as_ref()
            .and_then(|c| c.stop_signal.clone());
    }
    // The image's labels, under the container's own (which win), as Docker merges them.
    if let Some(image_labels) = image_config.config.as_ref().and_then(|c| c.labels.as_ref()) {
        for (k, v) in image_labels {
            spec.labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if let Some(ports) = image_config
        .config
        .as_ref()
        .and_then(|c| c.exposed_ports.as_ref())
    {
        for (k, v) in ports {
            spec.exposed_ports
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
    }
    let layers = images.layers(&spec.image).map_err(image_err)?;
    crate::hostspec::prepare(&mut spec)?;
    let shared = networks.join_container(layout, md, &mut spec)?;
    let id = crate::metadata::random_hex(32);
    let name = match name {
        Some(n) => {
            let n = n.trim_start_matches('/');
            if !valid_name(n) {
                return Err(Error::InvalidInput(format!(
                    "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
            n.to_string()
        }
        None => format!("polis_{}", &id[..12]),
    };
    md.reserve_name(&name, &id)?;
    let undo = |layout: &Layout, md: &Metadata| {
        let _ = networks.leave(&id);
        let _ = polis_storage::unmount(&layout.bundle(&id).join("rootfs"));
        let _ = Snapshotter::new(layout.snapshots()).and_then(|s| s.remove_container(&id));
        let _ = std::fs::remove_dir_all(layout.container_dir(&id));
        let _ = std::fs::remove_dir_all(layout.shim_dir(&id));
        let _ = md.remove_container(&id, &name);
    };
    let mut made_volumes = Vec::new();
    let result = (|| {
        spec.volume_mounts = crate::volume_use::attach(
            layout,
            md,
            &spec,
            &crate::volume_use::image_volumes(&image_config),
            &mut made_volumes,
        )?;
        let snapshots = layout.snapshotter()?;
        let collection = crate::snapshot_gc::create_guard();
        // Pulled images have their snapshots already; loaded or imported ones get them now.
        let (top, _) = crate::layers::unpack(&snapshots, &layers)?;
        let rootfs = layout.bundle(&id).join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(|e| Error::io("create", &rootfs, e))?;
        for m in snapshots.prepare(&id, &top).map_err(Error::Storage)? {
            m.mount_at(&rootfs).map_err(Error::Storage)?;
        }
        // The container now sits on its snapshots: a collection leaves them.
        drop(collection);
        let mut oci = runtime_spec(&id)?;
        let overrides = ProcessOverrides {
            cmd: spec.cmd.clone(),
            entrypoint: spec.entrypoint.clone(),
            env: spec.env.clone(),
            working_dir: spec.working_dir.clone(),
            user: spec.user.clone(),
            hostname: Some(
                spec.hostname
                    .clone()
                    .unwrap_or_else(|| id[..12].to_string()),
            ),
            tty: spec.tty,
        };
        polis_image::spec::apply_image_config(&mut oci, &image_config, &overrides, &rootfs)
            .map_err(image_err)?;
        if let (true, Some([h, w])) = (spec.tty, spec.host.console_size) {
            // The client's terminal size from the start, not only after its first resize.
            if let (Some(process), true) = (oci.process_mut(), h > 0 && w > 0) {
                let size = oci_spec::runtime::BoxBuilder::default()
                    .height(u64::from(h))
                    .width(u64::from(w))
                    .build()
                    .map_err(|e| Error::InvalidInput(e.to_string()))?;
                process.set_console_size(Some(size));
            }
        }
        let joined = match shared.clone() {
            Some(j) => j,
            None => networks.join(
                &id,
                &name,
                &spec.host.network_mode,
                &crate::networking::endpoint_request(&spec)?,
            )?,
        };
        crate::hostspec::apply(
            layout,
            &id,
            &spec,
            &joined,
            networks.host_gateway(),
            &mut oci,
        )?;
        let args = oci
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default();
        crate::security::apply(&mut oci, &spec.host, &layout.init_path)?;
        let config = layout.bundle(&id).join("config.json");
        let text =
            serde_json::to_vec_pretty(&oci).map_err(|e| Error::InvalidInput(e.to_string()))?;
        std::fs::write(&config, text).map_err(|e| Error::io("write", &config, e))?;
        let container = Container {
            id: id.clone(),
            name: name.clone(),
            image_id: image_id.as_str().to_string(),
            created: polis_runtime::state::now_rfc3339(),
            path: args.first().cloned().unwrap_or_default(),
            args: args.iter().skip(1).cloned().collect(),
            spec,
            started_at: None,
            restart_count: 0,
            manually_stopped: false,
            finished_at: None,
        };
        md.save_container(&container)?;
        crate::volume_use::mount_all(layout, &container.spec, &rootfs)?;
        run_shim(layout, &container)?;
        Ok(container)
    })();
    if result.is_err() {
        let _ = crate::volume_use::release(layout, md, &id);
        undo(layout, md);
        // Only anonymous volumes are the container's own; named ones stay, as Docker's.
        let store = crate::volumes::Volumes::new(&layout.root);
        for name in made_volumes {
            if store.get(&name).is_ok_and(|v| v.anonymous()) {
                let _ = store.remove(&name);
            }
        }
    }
    result
}

/// Make a stopped container startable again: its old runtime container and shim go,
/// a new shim creates it afresh on the same rootfs (its writes kept) and log.
pub fn recreate(layout: &Layout, networks: &Networks, container: &Container) -> Result<()> {
    let id = &container.id;
    // After a reboot the namespace file is gone while the endpoints are recorded.
    networks.restore(id)?;
    if layout.shim_dir(id).join(polis_shim::SOCKET).exists() {
        call(layout, id, &Request::Delete { force: true })?;
    }
    let exit = layout.shim_dir(id).join(polis_shim::EXIT_FILE);
    match std::fs::remove_file(&exit) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", &exit, e)),
    }
    crate::hostspec::before_start(&container.spec)?;
    let rootfs = crate::archive::mounted_rootfs(layout, id)?;
    crate::volume_use::mount_all(layout, &container.spec, &rootfs)?;
    run_shim(layout, container)
}

/// Start container `c`: a fresh runtime container first if it ran before (`created` is
/// false), its ports published, then its process. A failed start unpublishes them.
pub fn start(layout: &Layout, networks: &Networks, c: &Container, created: bool) -> Result<()> {
    if !created {
        recreate(layout, networks, c)?;
    }
    networks.activate(&c.id, &c.spec)?;
    if let Err(e) = call(layout, &c.id, &Request::Start) {
        let _ = networks.deactivate(&c.id);
        return Err(e);
    }
    Ok(())
}

/// The runtime config every container starts from: runc's defaults, a private network
/// namespace (networks come later) and its cgroup. Capabilities, seccomp and the other
/// security settings come from `security::apply`.
fn runtime_spec(id: &str) -> Result<Spec> {
    let mut spec = polis_runtime::spec::example(false);
    if let Some(process) = spec.process_mut() {
        process.set_rlimits(None);
    }
    if let Some(root) = spec.root_mut() {
        root.set_readonly(Some(false));
    }
    if let Some(linux) = spec.linux_mut() {
        linux.set_cgroups_path(Some(PathBuf::from(format!("/polis/{id}"))));
    }
    Ok(spec)
}

fn shim(layout: &Layout, id: &str) -> Result<Client> {
    let socket = layout.shim_dir(id).join(polis_shim::SOCKET);
    Client::connect(&socket).map_err(|e| Error::Container(format!("container {id}: {e}")))
}

/// One request to the container's shim.
pub fn call(
    layout: &Layout,
    id: &str,
    request: &Request,
) -> Result<polis_shim::protocol::Response> {
    shim(layout, id)?
        .call(request)
        .map_err(|e| Error::Container(e.to_string()))
}

/// The container's live state: from its shim, or from its exit record once the shim
/// is gone.
pub fn state(layout: &Layout, id: &str) -> polis_shim::protocol::ContainerState {
    if let Ok(resp) = call(layout, id, &Request::State) {
        if let Some(state) = resp.state {
            return state;
        }
    }
    let exit = std::fs::read(layout.shim_dir(id).join(polis_shim::EXIT_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    polis_shim::protocol::ContainerState {
        id: id.to_string(),
        pid: 0,
        status: if exit.is_some() { "stopped" } else { "unknown" }.to_string(),
        exit,
    }
}

/// Remove a container and everything it had: the runtime container (through its
/// shim), the rootfs mount and snapshot, its directories and its record. Every step
/// runs even if one fails; the first error is returned.
pub fn remove(
    layout: &Layout,
    md: &Metadata,
    networks: &Networks,
    container: &Container,
    force: bool,
) -> Result<()> {
    let id = &container.id;
    let state = state(layout, id);
    if !force && matches!(state.status.as_str(), "running" | "paused") {
        return Err(Error::Conflict(format!(
            "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
            container.name
        )));
    }
    let mut first: Option<Error> = None;
    if let Err(e) = call(layout, id, &Request::Delete { force }) {
        // A shim that is gone already has nothing to delete.
        if layout.shim_dir(id).join(polis_shim::SOCKET).exists() {
            first.get_or_insert(e);
        }
    }
    if let Err(e) = crate::volume_use::release(layout, md, id) {
        first.get_or_insert(e);
    }
    let rootfs = layout.bundle(id).join("rootfs");
    if let Err(e) = polis_storage::unmount(&rootfs) {
        if is_mounted(&rootfs) {
            first.get_or_insert(Error::Storage(e));
        }
    }
    if let Err(e) = networks.leave(id) {
        first.get_or_insert(e);
    }
    match Snapshotter::new(layout.snapshots()).and_then(|s| s.remove_container(id)) {
        Ok(()) | Err(polis_storage::Error::NotFound(_)) => {}
        Err(e) => {
            first.get_or_insert(Error::Storage(e));
        }
    }
    for dir in [layout.container_dir(id), layout.shim_dir(id)] {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                first.get_or_insert(Error::io("remove", &dir, e));
            }
        }
    }
    if let Err(e) = md.remove_container(id, &container.name) {
        first.get_or_insert(e);
    }
    first.map_or(Ok(()), Err)
}

pub(crate) fn is_mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(4) == Some(path.to_string_lossy().as_ref()))
        })
        .unwrap_or(false)
}

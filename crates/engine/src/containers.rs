//! Containers as the engine keeps them: a record in the metadata store, a bundle whose
//! rootfs is an overlay snapshot of the image, and a shim that runs it. These functions
//! are blocking; the API runs them on its blocking pool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::{Capability, Spec};
use polis_image::spec::ProcessOverrides;
use polis_image::ImageStore;
use polis_shim::protocol::{Client, Request};
use polis_storage::Snapshotter;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hostconfig::HostConfig;
use crate::metadata::Metadata;

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
}

/// Where the engine keeps things.
pub struct Layout {
    pub root: PathBuf,
    pub run_root: PathBuf,
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
}

/// Docker's default capabilities.
const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() > 1
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn run_shim(layout: &Layout, id: &str, spec: &ContainerSpec) -> Result<()> {
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
        .arg(layout.runtime_root())
        .arg("--log-path")
        .arg(layout.log_path(id));
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

/// Create a container: snapshot, bundle, record, then the shim (which creates it in
/// the runtime). Everything made is undone if a step fails.
pub fn create(
    layout: &Layout,
    md: &Metadata,
    images: &ImageStore,
    name: Option<&str>,
    mut spec: ContainerSpec,
) -> Result<Container> {
    let image_err = |e: polis_image::Error| Error::Image(e);
    let (image_id, image_config) = images.config(&spec.image).map_err(image_err)?;
    if spec.stop_signal.is_none() {
        spec.stop_signal = image_config
            .config
            .as_ref()
            .and_then(|c| c.stop_signal.clone());
    }
    let layers = images.layers(&spec.image).map_err(image_err)?;
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
        let _ = polis_storage::unmount(&layout.bundle(&id).join("rootfs"));
        let _ = Snapshotter::new(layout.snapshots()).and_then(|s| s.remove_container(&id));
        let _ = std::fs::remove_dir_all(layout.container_dir(&id));
        let _ = std::fs::remove_dir_all(layout.shim_dir(&id));
        let _ = md.remove_container(&id, &name);
    };
    let result = (|| {
        let snapshots = Snapshotter::new(layout.snapshots()).map_err(Error::Storage)?;
        let mut parent: Option<String> = None;
        for layer in &layers {
            let blob =
                std::fs::File::open(&layer.path).map_err(|e| Error::io("open", &layer.path, e))?;
            let chain = snapshots
                .commit_layer_verified(parent.as_deref(), layer.diff_id.as_str(), blob)
                .map_err(Error::Storage)?;
            parent = Some(chain);
        }
        let top = parent.ok_or_else(|| Error::InvalidInput("image has no layers".into()))?;
        let rootfs = layout.bundle(&id).join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(|e| Error::io("create", &rootfs, e))?;
        for m in snapshots.prepare(&id, &top).map_err(Error::Storage)? {
            m.mount_at(&rootfs).map_err(Error::Storage)?;
        }
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
        let args = oci
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default();
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
        };
        md.save_container(&container)?;
        run_shim(layout, &id, &container.spec)?;
        Ok(container)
    })();
    if result.is_err() {
        undo(layout, md);
    }
    result
}

/// Make a stopped container startable again: its old runtime container and shim go,
/// a new shim creates it afresh on the same rootfs (its writes kept) and log.
pub fn recreate(layout: &Layout, container: &Container) -> Result<()> {
    let id = &container.id;
    if layout.shim_dir(id).join(polis_shim::SOCKET).exists() {
        call(layout, id, &Request::Delete { force: true })?;
    }
    let exit = layout.shim_dir(id).join(polis_shim::EXIT_FILE);
    match std::fs::remove_file(&exit) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", &exit, e)),
    }
    run_shim(layout, id, &container.spec)
}

/// The runtime config every container starts from: runc's defaults with Docker's
/// capabilities, a private network namespace (networks come later) and its cgroup.
fn runtime_spec(id: &str) -> Result<Spec> {
    let mut spec = polis_runtime::spec::example(false);
    if let Some(process) = spec.process_mut() {
        let caps: oci_spec::runtime::Capabilities = DEFAULT_CAPS.into_iter().collect();
        let mut set = oci_spec::runtime::LinuxCapabilities::default();
        set.set_bounding(Some(caps.clone()));
        set.set_effective(Some(caps.clone()));
        set.set_permitted(Some(caps));
        set.set_inheritable(None);
        set.set_ambient(None);
        process.set_capabilities(Some(set));
        process.set_no_new_privileges(Some(false));
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
pub fn remove(layout: &Layout, md: &Metadata, container: &Container, force: bool) -> Result<()> {
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
    let rootfs = layout.bundle(id).join("rootfs");
    if let Err(e) = polis_storage::unmount(&rootfs) {
        if is_mounted(&rootfs) {
            first.get_or_insert(Error::Storage(e));
        }
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

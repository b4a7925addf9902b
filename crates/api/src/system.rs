//! `/_ping`, `/version` and `/info`: what a client asks first.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::versioning::{format_version, MAX_API_VERSION, MIN_API_VERSION};
use crate::AppState;

const VERSION: &str = env!("CARGO_PKG_VERSION");

pub async fn ping() -> Response {
    (
        [
            ("Api-Version", format_version(MAX_API_VERSION)),
            ("Ostype", "linux".to_string()),
            ("Docker-Experimental", "false".to_string()),
            ("Server", format!("Polis/{VERSION} (linux)")),
            (
                CACHE_CONTROL.as_str(),
                "no-cache, no-store, must-revalidate".to_string(),
            ),
            (PRAGMA.as_str(), "no-cache".to_string()),
            (
                CONTENT_TYPE.as_str(),
                "text/plain; charset=utf-8".to_string(),
            ),
        ],
        "OK",
    )
        .into_response()
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub async fn version() -> Json<serde_json::Value> {
    let details = json!({
        "ApiVersion": format_version(MAX_API_VERSION),
        "MinAPIVersion": format_version(MIN_API_VERSION),
        "Arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "Os": "linux",
        "KernelVersion": kernel_version(),
        "Experimental": "false",
        "GitCommit": "",
        "GoVersion": "",
        "BuildTime": "",
    });
    Json(json!({
        "Platform": { "Name": "Polis" },
        "Components": [{ "Name": "Engine", "Version": VERSION, "Details": details }],
        "Version": VERSION,
        "ApiVersion": format_version(MAX_API_VERSION),
        "MinAPIVersion": format_version(MIN_API_VERSION),
        "Os": "linux",
        "Arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "KernelVersion": kernel_version(),
    }))
}

pub async fn info(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let daemon = &state.info;
    let images = state.images.list().map(|l| l.len()).unwrap_or(0);
    let uname = nix::sys::utsname::uname().ok();
    let cgroup_version = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    Json(json!({
        "ID": daemon.id,
        "Name": daemon.name,
        "Images": images,
        "Driver": "overlay",
        "DockerRootDir": daemon.root,
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version,
        "KernelVersion": kernel_version(),
        "OperatingSystem": uname.as_ref().map(|u| u.sysname().to_string_lossy().into_owned()).unwrap_or_default(),
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": cpus,
        "MemTotal": mem,
        "ServerVersion": VERSION,
        "DefaultRuntime": "polis",
        "Runtimes": { "polis": { "path": "polis-runtime" } },
        // Every container gets Docker's default seccomp profile unless told otherwise.
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": registry_config(),
        "NEventsListener": state.events.listeners(),
        "Warnings": [],
    }))
}

/// Docker's `RegistryConfig`: what `docker info` shows as "Insecure Registries" (names
/// not secure, and CIDRs) and "Registry Mirrors".
fn registry_config() -> serde_json::Value {
    use polis_image::registry::Insecure;
    let settings = polis_image::registry::settings();
    let mut cidrs = vec!["127.0.0.0/8".to_string()];
    let mut index = serde_json::Map::new();
    index.insert(
        "docker.io".into(),
        json!({ "Name": "docker.io", "Mirrors": settings.mirrors, "Secure": true, "Official": true }),
    );
    for i in &settings.insecure {
        match i {
            Insecure::Cidr { .. } => cidrs.push(i.to_string()),
            Insecure::Host(h) => {
                index.insert(
                    h.clone(),
                    json!({ "Name": h, "Mirrors": [], "Secure": false, "Official": false }),
                );
            }
        }
    }
    json!({
        "AllowNondistributableArtifactsCIDRs": [],
        "AllowNondistributableArtifactsHostnames": [],
        "InsecureRegistryCIDRs": cidrs,
        "IndexConfigs": index,
        "Mirrors": settings.mirrors,
    })
}

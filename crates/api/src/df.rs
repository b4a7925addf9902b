//! `GET /system/df` (`docker system df`): what images, containers, volumes and the build
//! cache take on disk, with Docker's numbers. Sizes are apparent file sizes, each inode
//! once (Docker's `directory.Size`), measured on a blocking thread.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use polis_engine::Error as EngineError;
use polis_storage::Snapshotter;
use serde_json::{json, Value};

use crate::containers::blocking;
use crate::versioning::{error, RequestVersion, MAX_API_VERSION};
use crate::AppState;

/// The kinds of objects a request asks about (`type=`, API 1.42 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wanted {
    containers: bool,
    images: bool,
    volumes: bool,
    build_cache: bool,
}

impl Wanted {
    const ALL: Wanted = Wanted {
        containers: true,
        images: true,
        volumes: true,
        build_cache: true,
    };

    /// Docker reads `type` from 1.42 on; before, or without it, everything is computed.
    fn from_query(version: (u32, u32), query: Option<&str>) -> Result<Wanted, String> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query.unwrap_or("")).map_err(|e| e.to_string())?;
        let types: Vec<&str> = pairs
            .iter()
            .filter(|(k, _)| k == "type")
            .map(|(_, v)| v.as_str())
            .collect();
        if version < (1, 42) || types.is_empty() {
            return Ok(Wanted::ALL);
        }
        let mut w = Wanted {
            containers: false,
            images: false,
            volumes: false,
            build_cache: false,
        };
        for t in types {
            match t {
                "container" => w.containers = true,
                "image" => w.images = true,
                "volume" => w.volumes = true,
                "build-cache" => w.build_cache = true,
                other => return Err(format!("unknown object type: {other}")),
            }
        }
        Ok(w)
    }
}

pub async fn disk_usage(
    State(state): State<Arc<AppState>>,
    version: Option<Extension<RequestVersion>>,
    RawQuery(query): RawQuery,
) -> Response {
    let version = version.map_or(MAX_API_VERSION, |Extension(v)| v.0);
    let wanted = match Wanted::from_query(version, query.as_deref()) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match blocking(move || compute(&state, wanted)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

fn compute(state: &AppState, wanted: Wanted) -> polis_engine::Result<Value> {
    let mut out = json!({
        "LayersSize": 0,
        "Images": null,
        "Containers": null,
        "Volumes": null,
    });
    let snapshots = state.layout.snapshotter()?;
    let containers = state.metadata.containers()?;
    // Image sizes are needed for the containers' SizeRootFs too.
    let images = if wanted.images || wanted.containers {
        Some(images(state, &snapshots, &containers)?)
    } else {
        None
    };
    if let (true, Some((list, layers_size, _))) = (wanted.images, &images) {
        out["LayersSize"] = json!(layers_size);
        out["Images"] = json!(list);
    }
    if wanted.containers {
        let sizes = images.as_ref().map(|(_, _, s)| s);
        let mut list = Vec::new();
        for row in crate::ps::rows(state)? {
            let mut c = crate::ps::summary(state, &row, false);
            let rw = snapshots
                .changes_size(&row.c.id)
                .map(|n| n as i64)
                .unwrap_or(-1);
            let image = sizes
                .and_then(|s| s.get(&row.c.image_id))
                .copied()
                .unwrap_or(0);
            // Docker leaves zeros out (omitempty).
            if rw != 0 {
                c["SizeRw"] = json!(rw);
            }
            let root = image.max(0) + rw.max(0);
            if root != 0 {
                c["SizeRootFs"] = json!(root);
            }
            list.push(c);
        }
        out["Containers"] = json!(list);
    }
    if wanted.volumes {
        let store = polis_engine::volumes::Volumes::new(&state.layout.root);
        let list: Vec<Value> = crate::volumes::with_users(state)?
            .into_iter()
            .map(|(v, users)| {
                let mut j = crate::volumes::volume_json(state, &v);
                j["UsageData"] = json!({ "Size": store.size(&v.name), "RefCount": users });
                j
            })
            .collect();
        out["Volumes"] = json!(list);
    }
    if wanted.build_cache {
        // No builder keeps a cache here.
        out["BuildCache"] = json!([]);
    }
    Ok(out)
}

/// The images as Docker's df lists them, the bytes of all distinct layers, and each
/// image's size by id.
fn images(
    state: &AppState,
    snapshots: &Snapshotter,
    containers: &[polis_engine::containers::Container],
) -> polis_engine::Result<(Vec<Value>, i64, HashMap<String, i64>)> {
    let summaries = state.images.list().map_err(EngineError::Image)?;
    // Each image's chain IDs, bottom first, and each chain's size (None: unmeasurable).
    let mut chains_of: Vec<Vec<String>> = Vec::new();
    let mut layer_size: HashMap<String, Option<i64>> = HashMap::new();
    for i in &summaries {
        // An image removed meanwhile has no layers left to count.
        let layers = state.images.layers(i.id.as_str()).unwrap_or_default();
        let mut chains = Vec::new();
        let mut parent: Option<String> = None;
        for l in &layers {
            let chain = polis_storage::chain_id(parent.as_deref(), l.diff_id.as_str());
            layer_size
                .entry(chain.clone())
                .or_insert_with(|| measure(snapshots, &chain, &l.path));
            chains.push(chain.clone());
            parent = Some(chain);
        }
        chains_of.push(chains);
    }
    // Snapshots no image names (left by a removed image, or a pull in progress) take
    // room too.
    for info in snapshots.list().map_err(EngineError::Storage)? {
        layer_size
            .entry(info.chain_id.clone())
            .or_insert_with(|| snapshots.layer_size(&info.chain_id).ok().map(|n| n as i64));
    }
    let mut users: HashMap<&str, usize> = HashMap::new();
    for chains in &chains_of {
        for chain in chains.iter().collect::<HashSet<_>>() {
            *users.entry(chain.as_str()).or_insert(0) += 1;
        }
    }
    let layers_size: i64 = layer_size.values().flatten().sum();
    let mut list = Vec::new();
    let mut sizes = HashMap::new();
    for (i, chains) in summaries.into_iter().zip(&chains_of) {
        let known: Option<Vec<i64>> = chains.iter().map(|c| layer_size[c]).collect();
        let (size, shared) = match known {
            Some(all) => {
                let shared = chains
                    .iter()
                    .zip(&all)
                    .filter(|(c, _)| users[c.as_str()] > 1)
                    .map(|(_, n)| n)
                    .sum::<i64>();
                (all.iter().sum::<i64>(), shared)
            }
            None => (-1, -1),
        };
        let id = i.id.to_string();
        let in_use = containers.iter().filter(|c| c.image_id == id).count();
        sizes.insert(id.clone(), size);
        let labels = if i.labels.is_empty() {
            Value::Null
        } else {
            json!(i.labels)
        };
        let or_null = |v: Vec<String>| if v.is_empty() { Value::Null } else { json!(v) };
        list.push(json!({
            "Containers": in_use,
            "Created": i.created,
            "Id": id,
            "Labels": labels,
            "ParentId": "",
            "RepoDigests": or_null(i.repo_digests),
            "RepoTags": or_null(i.repo_tags),
            "SharedSize": shared,
            "Size": size,
            "VirtualSize": size,
        }));
    }
    Ok((list, layers_size, sizes))
}

/// Layer sizes measured so far, by chain ID: a chain's content never changes, so each is
/// measured once per daemon.
static MEASURED: std::sync::Mutex<Option<HashMap<String, i64>>> = std::sync::Mutex::new(None);

/// A layer's unpacked size: its snapshot's files, or, for a layer not unpacked yet (an
/// image loaded, imported or committed and never run), what its tar would unpack to.
fn measure(snapshots: &Snapshotter, chain: &str, blob: &std::path::Path) -> Option<i64> {
    let cached =
        |m: &mut Option<HashMap<String, i64>>| m.get_or_insert_default().get(chain).copied();
    if let Some(n) = cached(&mut MEASURED.lock().unwrap_or_else(|p| p.into_inner())) {
        return Some(n);
    }
    let n = match snapshots.layer_size(chain) {
        Ok(n) => n as i64,
        Err(_) => {
            let file = std::fs::File::open(blob).ok()?;
            polis_storage::layer_tar_size(std::io::BufReader::new(file)).ok()? as i64
        }
    };
    MEASURED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_default()
        .insert(chain.to_string(), n);
    Some(n)
}

/// Image `id`'s size as `docker images` and df show it: its layers' unpacked sizes; None
/// when a layer cannot be measured.
pub(crate) fn image_size(state: &AppState, snapshots: &Snapshotter, id: &str) -> Option<i64> {
    Some(layer_sizes(state, snapshots, id)?.iter().sum::<u64>() as i64)
}

/// The unpacked size of each of image `id`'s layers, bottom first (`docker history`).
pub(crate) fn layer_sizes(state: &AppState, snapshots: &Snapshotter, id: &str) -> Option<Vec<u64>> {
    let layers = state.images.layers(id).ok()?;
    let mut parent: Option<String> = None;
    let mut sizes = Vec::new();
    for l in &layers {
        let chain = polis_storage::chain_id(parent.as_deref(), l.diff_id.as_str());
        sizes.push(u64::try_from(measure(snapshots, &chain, &l.path)?).ok()?);
        parent = Some(chain);
    }
    Some(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_read_from_1_42_on() {
        let only = Wanted::from_query((1, 47), Some("type=image&type=volume")).unwrap();
        assert!(only.images && only.volumes && !only.containers && !only.build_cache);
        assert_eq!(
            Wanted::from_query((1, 41), Some("type=image")).unwrap(),
            Wanted::ALL
        );
        assert_eq!(Wanted::from_query((1, 47), None).unwrap(), Wanted::ALL);
        assert_eq!(
            Wanted::from_query((1, 47), Some("type=nope")).unwrap_err(),
            "unknown object type: nope"
        );
    }
}

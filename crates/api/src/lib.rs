//! Polis's REST API: the Docker Engine API (versions 1.24 to 1.47, negotiated through
//! `/_ping`'s `Api-Version` header), served over a unix socket.

// Handlers return a ready HTTP error response as their Err: larger than clippy likes,
// but built once, on the error path.
#![allow(clippy::result_large_err)]

mod archive;
mod changes;
mod clock;
mod commit;
mod containers;
mod detach;
mod df;
mod events;
mod exec;
mod filters;
mod health;
mod image_prune;
mod images;
mod logs;
mod networks;
mod prune;
mod ps;
mod registry;
mod rename;
mod restart;
mod stats;
mod system;
mod top;
mod update;
mod versioning;
mod volumes;

use std::path::Path;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tokio::net::UnixListener;
use tower::Layer;

pub use versioning::{MAX_API_VERSION, MIN_API_VERSION};

/// What every handler can reach.
pub struct AppState {
    pub info: DaemonInfo,
    pub images: Arc<polis_image::ImageStore>,
    pub metadata: Arc<polis_engine::metadata::Metadata>,
    pub layout: polis_engine::containers::Layout,
    pub networks: Arc<polis_engine::networking::Networks>,
    /// `docker exec` instances, by id.
    pub execs: exec::ExecTable,
    /// The restart supervisors, by container id.
    pub restarts: restart::Restarts,
    /// The health monitors and what they found, by container id.
    pub health: health::Monitors,
    /// What happened, for `GET /events`.
    pub events: events::Events,
}

/// What the handlers read about the daemon.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    pub id: String,
    pub root: std::path::PathBuf,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

pub use containers::resume_auto_remove;
pub use restart::resume as resume_restart_policies;

/// The whole API as one router.
pub fn router(state: Arc<AppState>) -> Router {
    use axum::routing::post;
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/system/df", get(df::disk_usage))
        .route("/events", get(events::events))
        .route("/auth", post(registry::auth))
        // Images may be named as these routes: `DELETE /images/NAME` still removes them.
        .route(
            "/images/create",
            post(images::create).delete(images::remove_fixed("create")),
        )
        .route(
            "/images/json",
            get(images::list).delete(images::remove_fixed("json")),
        )
        .route(
            "/images/get",
            get(images::save).delete(images::remove_fixed("get")),
        )
        .route(
            "/images/load",
            post(images::load).delete(images::remove_fixed("load")),
        )
        .route(
            "/images/prune",
            post(image_prune::prune).delete(images::remove_fixed("prune")),
        )
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(ps::list))
        .route("/containers/prune", post(prune::prune))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        .route("/commit", post(commit::commit))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/logs", get(logs::logs))
        .route("/containers/{id}/exec", post(exec::create))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/containers/{id}/pause", post(containers::pause))
        .route("/containers/{id}/unpause", post(containers::unpause))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/update", post(update::update))
        .route(
            "/containers/{id}/archive",
            get(archive::get).head(archive::head).put(archive::put),
        )
        .route("/containers/{id}/export", get(archive::export))
        .route("/containers/{id}/changes", get(changes::changes))
        .route("/containers/{id}/top", get(top::top))
        .route("/containers/{id}/stats", get(stats::stats))
        .route("/containers/{id}/rename", post(rename::rename))
        .route(
            "/containers/{id}",
            axum::routing::delete(containers::remove),
        )
        .route(
            "/images/{*rest}",
            get(images::by_name_get)
                .post(images::by_name_post)
                .delete(images::remove),
        )
        .with_state(state)
}

/// How long requests in progress may take once the daemon is told to stop.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Serve `router` on the unix socket `path` until `shutdown` completes; the socket file
/// is removed on the way out.
pub async fn serve_unix(
    path: &Path,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            op: "create",
            path: dir.to_path_buf(),
            source: e,
        })?;
    }
    // A socket file left by a daemon that died: the root lock says it is ours now.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|e| Error::Io {
        op: "listen on",
        path: path.to_path_buf(),
        source: e,
    })?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o660)).map_err(
        |e| Error::Io {
            op: "chmod",
            path: path.to_path_buf(),
            source: e,
        },
    )?;
    // Versioned paths (/v1.41/info) reach the same routes: the prefix is checked and
    // dropped before routing.
    let app = axum::middleware::from_fn(versioning::strip_version_prefix).layer(router);
    // On shutdown, requests in progress get a moment to finish; streams that would not
    // end by themselves (logs -f, a wait on a running container) are then cut, as
    // Docker cuts them: their containers go on without the daemon.
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signal = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            stopping.notify_one();
        }
    };
    let serve = axum::serve(
        listener,
        axum::ServiceExt::<axum::extract::Request>::into_make_service(app),
    )
    .with_graceful_shutdown(signal);
    let result = tokio::select! {
        r = serve => r,
        () = async {
            stopping.notified().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
    };
    let _ = std::fs::remove_file(path);
    result.map_err(|e| Error::Io {
        op: "serve on",
        path: path.to_path_buf(),
        source: e,
    })
}

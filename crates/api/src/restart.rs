//! The exit watcher and restart supervisor. Each started container has one task that
//! waits for its exit (through the shim's `wait`), unpublishes its ports and, when its
//! restart policy says so, starts it again after Docker's back-off; while it waits the
//! container is "restarting". `docker stop`, `docker kill` and `docker rm -f` call the
//! next restart off (Docker's "exit on next"). On daemon start, running containers get
//! their task again and those the policy wants up are started.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::response::Response;
use polis_engine::containers::{self, Container};
use polis_engine::restart::{Backoff, Policy};
use polis_shim::protocol::{ExitStatus, Request as ShimRequest};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::AppState;

/// The exit a restarting container is waiting to be restarted from.
#[derive(Debug, Clone)]
pub struct Restarting {
    pub exit_code: i32,
    pub finished_at: String,
}

/// The supervisors of the daemon's containers, by container id.
#[derive(Default)]
pub struct Restarts {
    watches: Mutex<HashMap<String, Watch>>,
    /// Held while a container is being restarted, so `rm -f` never races a restart.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    generations: AtomicU64,
}

struct Watch {
    generation: u64,
    cancel: CancellationToken,
    restarting: Option<Restarting>,
}

impl Restarts {
    /// Whether the container is in its back-off, and from which exit.
    pub fn restarting(&self, id: &str) -> Option<Restarting> {
        let watches = self.watches.lock().ok()?;
        watches.get(id).and_then(|w| w.restarting.clone())
    }

    /// Docker's "exit on next": the container's next exit is not followed by a restart,
    /// and a pending restart is called off. The guard returned keeps any restart from
    /// running while it is held; one under way is finished first.
    pub async fn cancel(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        if let Ok(mut watches) = self.watches.lock() {
            if let Some(w) = watches.get_mut(id) {
                w.cancel.cancel();
                w.restarting = None;
            }
        }
        self.lock_of(id).lock_owned().await
    }

    /// A removed container's entries.
    pub fn forget(&self, id: &str) {
        self.forget_watch(id);
        if let Ok(mut locks) = self.locks.lock() {
            locks.remove(id);
        }
    }

    fn forget_watch(&self, id: &str) {
        if let Ok(mut watches) = self.watches.lock() {
            if let Some(w) = watches.remove(id) {
                w.cancel.cancel();
            }
        }
    }

    fn lock_of(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.locks.lock() {
            Ok(mut locks) => locks.entry(id.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// A new watch for `id`, replacing (and calling off) any older one.
    fn begin(&self, id: &str) -> (u64, CancellationToken) {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        if let Ok(mut watches) = self.watches.lock() {
            let old = watches.insert(
                id.to_string(),
                Watch {
                    generation,
                    cancel: cancel.clone(),
                    restarting: None,
                },
            );
            if let Some(old) = old {
                old.cancel.cancel();
            }
        }
        (generation, cancel)
    }

    /// Whether `generation` is still `id`'s watch (no newer start replaced it).
    fn is_current(&self, id: &str, generation: u64) -> bool {
        let watches = self.watches.lock();
        watches.is_ok_and(|w| w.get(id).is_some_and(|w| w.generation == generation))
    }

    fn set_restarting(&self, id: &str, generation: u64, value: Option<Restarting>) {
        if let Ok(mut watches) = self.watches.lock() {
            if let Some(w) = watches.get_mut(id).filter(|w| w.generation == generation) {
                w.restarting = value;
            }
        }
    }

    fn end(&self, id: &str, generation: u64) {
        if let Ok(mut watches) = self.watches.lock() {
            if watches.get(id).is_some_and(|w| w.generation == generation) {
                watches.remove(id);
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> polis_engine::Result<T> + Send + 'static,
) -> polis_engine::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| polis_engine::Error::Container(e.to_string()))?
}

/// Start a container that is not running: a fresh runtime container on its rootfs if
/// it ran before (`created` is false), then the shim's start. A start by the user
/// resets the restart count and the stopped-by-user flag, as Docker's does. Then its
/// watcher (or, for --rm, its remover) is armed. The container's lock is held
/// throughout, so the watcher of its last run cannot unpublish this run's ports.
pub async fn start(
    state: &Arc<AppState>,
    c: &Container,
    created: bool,
    by_user: bool,
) -> Result<(), Response> {
    let _guard = state.restarts.lock_of(&c.id).lock_owned().await;
    run(state, &c.id, created)
        .await
        .map_err(crate::containers::engine_error)?;
    let st = state.clone();
    let id = c.id.clone();
    let now = polis_runtime::state::now_rfc3339();
    let updated = blocking(move || {
        st.metadata.update_container(&id, |rec| {
            rec.started_at = Some(now);
            if by_user {
                rec.restart_count = 0;
                rec.manually_stopped = false;
            }
        })
    })
    .await
    .map_err(crate::containers::engine_error)?;
    crate::volumes::mounted(state, &updated);
    crate::events::started(state, &updated);
    if updated.spec.host.auto_remove {
        crate::containers::watch_auto_remove(state.clone(), updated);
    } else {
        arm(state, &updated);
    }
    Ok(())
}

/// Recreate (unless `created`) and start the runtime container.
async fn run(state: &Arc<AppState>, id: &str, created: bool) -> polis_engine::Result<()> {
    let st = state.clone();
    let id = id.to_string();
    blocking(move || {
        let mut c = st.metadata.find(&id)?;
        if !created {
            if let Some(exit) = containers::state(&st.layout, &id).exit {
                c = st.metadata.update_container(&id, |rec| {
                    rec.finished_at = Some(exit.finished_at.clone())
                })?;
            }
        }
        containers::start(&st.layout, &st.networks, &c, created)
    })
    .await
}

/// Watch a running container for its exit (and its policy).
pub fn arm(state: &Arc<AppState>, c: &Container) {
    crate::health::start(state, c);
    let (generation, cancel) = state.restarts.begin(&c.id);
    let state = state.clone();
    let id = c.id.clone();
    tokio::spawn(async move {
        supervise(&state, &id, generation, &cancel).await;
        state.restarts.end(&id, generation);
    });
}

/// One container's supervision: wait for each exit, decide, back off, start again.
async fn supervise(state: &Arc<AppState>, id: &str, generation: u64, cancel: &CancellationToken) {
    let mut backoff = Backoff::default();
    loop {
        let exit = wait_exit(state, id).await;
        state.health.stop(id);
        let Some(exit) = exit else {
            return;
        };
        if let Ok(c) = state.metadata.find(id) {
            crate::events::died(state, &c, &exit);
        }
        {
            // Unless a newer start (under this lock) took over the container.
            let _guard = state.restarts.lock_of(id).lock_owned().await;
            if !state.restarts.is_current(id, generation) {
                return;
            }
            let (st, stopped) = (state.clone(), id.to_string());
            if let Err(e) = blocking(move || {
                st.networks.deactivate(&stopped)?;
                polis_engine::volume_use::release(&st.layout, &st.metadata, &stopped)
            })
            .await
            {
                tracing::warn!(container = id, error = %e, "ports not unpublished");
            }
        }
        if cancel.is_cancelled() {
            return;
        }
        let Ok(c) = state.metadata.find(id) else {
            return;
        };
        let ran_for = c
            .started_at
            .as_deref()
            .map(|s| crate::clock::between(s, &exit.finished_at))
            .unwrap_or_default();
        let delay = backoff.next(ran_for);
        let policy = Policy::of(&c.spec.host.restart_policy);
        if !policy.should_restart(exit.exit_code, c.manually_stopped, c.restart_count) {
            return;
        }
        // Restarting from here on (never seen as exited with the new count), and
        // counted when decided, as Docker does.
        state.restarts.set_restarting(
            id,
            generation,
            Some(Restarting {
                exit_code: exit.exit_code,
                finished_at: exit.finished_at.clone(),
            }),
        );
        let st = state.clone();
        let rec_id = id.to_string();
        let counted = blocking(move || {
            st.metadata
                .update_container(&rec_id, |rec| rec.restart_count += 1)
        })
        .await;
        if counted.is_err() {
            return;
        }
        tracing::info!(
            container = id,
            exit_code = exit.exit_code,
            ?delay,
            "restarting"
        );
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        let _guard = state.restarts.lock_of(id).lock_owned().await;
        if cancel.is_cancelled() {
            return;
        }
        let started = run(state, id, false).await;
        if let Err(e) = started {
            tracing::warn!(container = id, error = %e, "restart failed");
            return;
        }
        let st = state.clone();
        let rec_id = id.to_string();
        let now = polis_runtime::state::now_rfc3339();
        let updated = blocking(move || {
            st.metadata
                .update_container(&rec_id, |rec| rec.started_at = Some(now))
        })
        .await;
        if let Ok(c) = &updated {
            crate::volumes::mounted(state, c);
            crate::events::started(state, c);
            crate::health::start(state, c);
        }
        state.restarts.set_restarting(id, generation, None);
    }
}

/// The container's next exit, from its shim; from its exit record if the shim went
/// away; `None` if neither knows (the container is gone).
async fn wait_exit(state: &Arc<AppState>, id: &str) -> Option<ExitStatus> {
    let socket = state.layout.shim_dir(id).join(polis_shim::SOCKET);
    if let Ok(mut shim) = tokio::net::UnixStream::connect(&socket).await {
        let mut line = serde_json::to_vec(&ShimRequest::Wait).unwrap_or_default();
        line.push(b'\n');
        if shim.write_all(&line).await.is_ok() {
            if let Ok(reply) = crate::containers::read_reply(&mut shim).await {
                if let Some(exit) = reply.exit {
                    return Some(exit);
                }
            }
        }
    }
    let st = state.clone();
    let id = id.to_string();
    tokio::task::spawn_blocking(move || containers::state(&st.layout, &id).exit)
        .await
        .ok()
        .flatten()
}

/// On daemon start: supervise running containers again, and start those whose policy
/// wants them up (`always`; `unless-stopped` unless the user stopped it; `on-failure`
/// after a failure with retries left), as Docker does when it starts.
pub fn resume(state: &Arc<AppState>) {
    let state = state.clone();
    tokio::spawn(async move {
        let st = state.clone();
        let Ok(all) = blocking(move || st.metadata.containers()).await else {
            return;
        };
        for c in all {
            let policy = Policy::of(&c.spec.host.restart_policy);
            // --rm containers have their remover (`resume_auto_remove`).
            if c.started_at.is_none() || c.spec.host.auto_remove {
                continue;
            }
            let (st, id) = (state.clone(), c.id.clone());
            let Ok(live) =
                tokio::task::spawn_blocking(move || containers::state(&st.layout, &id)).await
            else {
                continue;
            };
            match live.status.as_str() {
                "running" | "paused" => arm(&state, &c),
                _ if policy == Policy::No => {}
                status => {
                    // No exit record at all (the run root was lost): Docker's 255.
                    let code = live.exit.as_ref().map_or(255, |e| e.exit_code);
                    if policy.should_restart(code, c.manually_stopped, c.restart_count) {
                        if let Err(r) = start(&state, &c, status == "created", true).await {
                            tracing::warn!(container = %c.id, status = %r.status(), "could not start on daemon start");
                        }
                    }
                }
            }
        }
    });
}

/// Record a stop or kill by the user (kept across daemon restarts for unless-stopped).
pub async fn stopped_by_user(state: &Arc<AppState>, id: &str) -> Result<(), Response> {
    let st = state.clone();
    let id = id.to_string();
    blocking(move || {
        st.metadata
            .update_container(&id, |rec| rec.manually_stopped = true)
    })
    .await
    .map(|_| ())
    .map_err(crate::containers::engine_error)
}

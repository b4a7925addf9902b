//! `docker commit`: a container's changes (its overlay upper directory as a layer tar)
//! on top of its image's layers become a new image, whose config is the container's
//! (Docker's merge of what the container was created with over its image's config),
//! overridden by the request's config and `--change` instructions.

use polis_image::config::ContainerConfig;
use polis_image::{CommitOptions, ImageId, ImageStore};
use polis_shim::protocol::Request;
use polis_storage::Snapshotter;

use crate::containers::{self, Container, Layout};
use crate::error::{Error, Result};

/// What the client asked for.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// The request body: config fields that override the container's.
    pub config: ContainerConfig,
    /// Dockerfile instructions (`CMD ["echo","hi"]`, `ENV A=b`…) applied to `config`.
    pub changes: Vec<String>,
    pub author: Option<String>,
    pub comment: Option<String>,
    /// `repo[:tag]` for the new image.
    pub reference: Option<String>,
    /// Freeze a running container while its changes are read.
    pub pause: bool,
}

/// Docker's `merge`: fills what `user` leaves unset from `image` (env and labels are
/// combined, the user's winning).
pub fn merge(user: &mut ContainerConfig, image: &ContainerConfig) {
    if user.user.as_deref().unwrap_or("").is_empty() {
        user.user = image.user.clone();
    }
    match (&mut user.exposed_ports, &image.exposed_ports) {
        (Some(mine), Some(theirs)) if !mine.is_empty() => {
            for (k, v) in theirs {
                mine.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        (mine, theirs) => {
            if mine.as_ref().is_none_or(|m| m.is_empty()) {
                *mine = theirs.clone();
            }
        }
    }
    let key = |e: &str| e.split('=').next().unwrap_or("").to_string();
    match &mut user.env {
        Some(env) if !env.is_empty() => {
            for e in image.env.iter().flatten() {
                if !env.iter().any(|u| key(u) == key(e)) {
                    env.push(e.clone());
                }
            }
        }
        env => *env = image.env.clone(),
    }
    let labels = user.labels.get_or_insert_with(Default::default);
    for (k, v) in image.labels.iter().flatten() {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if labels.is_empty() {
        user.labels = None;
    }
    if user.entrypoint.as_ref().is_none_or(|e| e.is_empty()) {
        if user.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            user.cmd = image.cmd.clone();
            user.args_escaped = image.args_escaped;
        }
        if user.entrypoint.is_none() {
            user.entrypoint = image.entrypoint.clone();
        }
    }
    if user.healthcheck.is_none() {
        user.healthcheck = image.healthcheck.clone();
    }
    if user.working_dir.as_deref().unwrap_or("").is_empty() {
        user.working_dir = image.working_dir.clone();
    }
    match (&mut user.volumes, &image.volumes) {
        (Some(mine), Some(theirs)) if !mine.is_empty() => {
            for (k, v) in theirs {
                mine.insert(k.clone(), v.clone());
            }
        }
        (mine, theirs) => {
            if mine.as_ref().is_none_or(|m| m.is_empty()) {
                *mine = theirs.clone();
            }
        }
    }
    if user.stop_signal.as_deref().unwrap_or("").is_empty() {
        user.stop_signal = image.stop_signal.clone();
    }
    if user.shell.is_none() {
        user.shell = image.shell.clone();
    }
    if user.on_build.is_none() {
        user.on_build = image.on_build.clone();
    }
}

/// The container's config as Docker keeps it: what it was created with, completed by
/// its image's config.
pub fn container_config(images: &ImageStore, c: &Container) -> Result<ContainerConfig> {
    let (_, image) = images.config(&c.image_id).map_err(Error::Image)?;
    let spec = &c.spec;
    let mut config = ContainerConfig {
        user: spec.user.clone(),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.cmd.clone(),
        working_dir: spec.working_dir.clone(),
        labels: (!spec.labels.is_empty()).then(|| spec.labels.clone()),
        stop_signal: spec.stop_signal.clone(),
        healthcheck: spec
            .healthcheck
            .as_ref()
            .and_then(|h| serde_json::to_value(h).ok()),
        ..Default::default()
    };
    merge(&mut config, &image.config.unwrap_or_default());
    Ok(config)
}

/// Commits container `c`; returns the new image's ID.
pub fn commit(
    layout: &Layout,
    images: &ImageStore,
    c: &Container,
    request: CommitRequest,
) -> Result<ImageId> {
    let container_config = container_config(images, c)?;
    let mut config = request.config;
    polis_image::apply_changes(&mut config, &request.changes)
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    merge(&mut config, &container_config);
    let parent = images.resolve(&c.image_id).map_err(Error::Image)?;
    let snapshots = Snapshotter::new(layout.snapshots()).map_err(Error::Storage)?;
    let paused = request.pause
        && containers::state(layout, &c.id).status == "running"
        && containers::call(layout, &c.id, &Request::Pause).is_ok();
    let mut write_layer = |out: &mut dyn std::io::Write| {
        snapshots
            .diff(&c.id, out)
            .map_err(|e| std::io::Error::other(e.to_string()))
    };
    let options = CommitOptions {
        config,
        author: request.author,
        comment: request.comment,
        created_by: container_config.cmd.as_ref().map(|c| c.join(" ")),
        reference: request.reference,
    };
    let result = images.commit(&parent, &mut write_layer, options);
    if paused {
        let resumed = containers::call(layout, &c.id, &Request::Resume);
        if let (Ok(_), Err(e)) = (&result, resumed) {
            return Err(e);
        }
    }
    result.map_err(Error::Image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Option<Vec<String>> {
        Some(s.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn merge_as_docker() {
        let image = ContainerConfig {
            env: v(&["PATH=/bin", "A=image"]),
            cmd: v(&["sh"]),
            entrypoint: v(&["/init"]),
            working_dir: Some("/srv".into()),
            ..Default::default()
        };
        let mut user = ContainerConfig {
            env: v(&["A=user"]),
            ..Default::default()
        };
        merge(&mut user, &image);
        assert_eq!(user.env, v(&["A=user", "PATH=/bin"]));
        assert_eq!(user.cmd, v(&["sh"]));
        assert_eq!(user.entrypoint, v(&["/init"]));
        assert_eq!(user.working_dir.as_deref(), Some("/srv"));
        // A Cmd of the user's keeps the image's entrypoint; an entrypoint drops its Cmd.
        let mut user = ContainerConfig {
            cmd: v(&["echo", "hi"]),
            ..Default::default()
        };
        merge(&mut user, &image);
        assert_eq!(user.cmd, v(&["echo", "hi"]));
        assert_eq!(user.entrypoint, v(&["/init"]));
        let mut user = ContainerConfig {
            entrypoint: v(&["/other"]),
            ..Default::default()
        };
        merge(&mut user, &image);
        assert_eq!(user.cmd, None);
    }
}

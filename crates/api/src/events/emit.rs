//! What the handlers tell the event bus: one call per thing that happened, with the
//! attributes Docker gives it.

use std::collections::BTreeMap;

use polis_engine::containers::Container;
use polis_network::Network;
use polis_shim::protocol::ExitStatus;

use super::Actor;
use crate::AppState;

/// A container's actor: `extra`, then its labels, its image and its name (later ones
/// win, as in Docker).
fn container_actor(c: &Container, extra: &[(&str, String)]) -> Actor {
    let mut attributes: BTreeMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    attributes.extend(c.spec.labels.clone());
    if !c.spec.image.is_empty() {
        attributes.insert("image".into(), c.spec.image.clone());
    }
    attributes.insert("name".into(), c.name.clone());
    Actor {
        id: c.id.clone(),
        attributes,
    }
}

/// A container event with the container's own attributes.
pub fn container(state: &AppState, c: &Container, action: &str) {
    container_with(state, c, action, &[]);
}

/// A container event with attributes of its own (`signal`, `oldName`, …).
pub fn container_with(state: &AppState, c: &Container, action: &str, extra: &[(&str, String)]) {
    state
        .events
        .publish("container", action, container_actor(c, extra));
}

fn network_actor(n: &Network, container: Option<&str>) -> Actor {
    let mut attributes = BTreeMap::new();
    if let Some(c) = container {
        attributes.insert("container".to_string(), c.to_string());
    }
    attributes.insert("name".into(), n.name.clone());
    attributes.insert("type".into(), n.driver.clone());
    Actor {
        id: n.id.clone(),
        attributes,
    }
}

/// A network event: create and destroy, or connect and disconnect of `container`.
pub fn network(state: &AppState, n: &Network, action: &str, container: Option<&str>) {
    state
        .events
        .publish("network", action, network_actor(n, container));
}

/// The networks a running container is on, as Docker connects them at each start: its
/// endpoints (the one of its network mode first), or the predefined network of
/// `--network host|none`; none when it shares another container's.
fn networks_of(state: &AppState, c: &Container) -> Vec<Network> {
    let mode = c.spec.host.network_mode.as_str();
    let mut nets: Vec<Network> = state
        .networks
        .endpoints_of(&c.id)
        .unwrap_or_default()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    nets.sort_by_key(|n| n.name != mode && n.id != mode);
    if nets.is_empty() && matches!(mode, "host" | "none") {
        nets.extend(state.networks.find(mode).ok());
    }
    nets
}

/// A start: the container joins its networks, then runs.
pub fn started(state: &AppState, c: &Container) {
    for n in networks_of(state, c) {
        network(state, &n, "connect", Some(&c.id));
    }
    container(state, c, "start");
}

/// An exit: `die` with its code and how long it ran (whole seconds), then a disconnect
/// from each network. Told once however many watchers see it, and whoever comes second
/// waits until it is told.
pub fn died(state: &AppState, c: &Container, exit: &ExitStatus) {
    let ran = c
        .started_at
        .as_deref()
        .map(|s| crate::clock::between(s, &exit.finished_at).as_secs())
        .unwrap_or(0);
    let die = container_actor(
        c,
        &[
            ("exitCode", exit.exit_code.to_string()),
            ("execDuration", ran.to_string()),
        ],
    );
    let nets = networks_of(state, c);
    let key = format!("die {} {}", c.id, exit.finished_at);
    let oom = exit.oom_killed.then(|| container_actor(c, &[]));
    state.events.once(&key, |bus| {
        // Docker tells the OOM kill before the exit it caused.
        if let Some(actor) = oom {
            bus.publish("container", "oom", actor);
        }
        bus.publish("container", "die", die);
        for n in &nets {
            bus.publish("network", "disconnect", network_actor(n, Some(&c.id)));
        }
        crate::volumes::unmounted(bus, c);
    });
}

/// A removal, told once (the remover of a --rm container and `rm -f` may both see it).
pub fn destroyed(state: &AppState, c: &Container) {
    state.events.once(&format!("destroy {}", c.id), |bus| {
        bus.publish("container", "destroy", container_actor(c, &[]))
    });
}

/// Docker's action for an exec's create and start: the verb, then the command
/// (`exec_start: sh -c true`, and `exec_start: true ` for a command alone).
pub fn exec_action(verb: &str, args: &[String]) -> String {
    match args.split_first() {
        Some((first, rest)) => format!("{verb}: {first} {}", rest.join(" ")),
        None => format!("{verb}: "),
    }
}

/// An event of exec `exec_id` in container `container_id`.
pub fn exec(
    state: &AppState,
    container_id: &str,
    action: &str,
    exec_id: &str,
    extra: &[(&str, String)],
) {
    if let Ok(c) = state.metadata.find(container_id) {
        let mut attrs = vec![("execID", exec_id.to_string())];
        attrs.extend(extra.iter().cloned());
        container_with(state, &c, action, &attrs);
    }
}

/// An image event about `id` (an image ID, or the reference of a pull or push) with
/// the image's labels while it exists, and `name` when there is one.
pub fn image(state: &AppState, action: &str, id: &str, name: &str) {
    let mut attributes: BTreeMap<String, String> = state
        .images
        .config(id)
        .ok()
        .and_then(|(_, config)| config.config.and_then(|c| c.labels))
        .unwrap_or_default();
    if !name.is_empty() {
        attributes.insert("name".into(), name.to_string());
    }
    state.events.publish(
        "image",
        action,
        Actor {
            id: id.to_string(),
            attributes,
        },
    );
}

/// `docker tag`: the image `r` now points at, under its new name.
pub fn tagged(state: &AppState, r: &polis_image::Reference) {
    if let Ok(id) = state.images.resolve(&r.to_string()) {
        image(state, "tag", id.as_str(), &r.familiar());
    }
}

/// An import: the tag it was given, if any, then the import.
pub fn imported(state: &AppState, id: &polis_image::ImageId, reference: Option<&str>) {
    if let Some(r) = reference.and_then(|r| polis_image::Reference::parse(r).ok()) {
        image(state, "tag", id.as_str(), &r.familiar());
    }
    image(state, "import", id.as_str(), id.as_str());
}

/// A load: one event per image of the archive.
pub fn loaded(state: &AppState, images: &[polis_image::LoadedImage]) {
    for i in images {
        image(state, "load", i.id.as_str(), i.id.as_str());
    }
}

/// A pull of `r`, named as Docker names it (the reference, and its repository).
pub fn pulled(state: &AppState, r: &polis_image::Reference) {
    image(state, "pull", &r.familiar(), &r.familiar_repository());
}

/// A push of tag `tag` of the repository of `r`.
pub fn pushed(state: &AppState, r: &polis_image::Reference, tag: &str) {
    let repo = r.familiar_repository();
    image(state, "push", &format!("{repo}:{tag}"), &repo);
}

/// The images a save is about to write, to be told once it has written them.
pub struct Saving {
    state: std::sync::Arc<AppState>,
    ids: Vec<String>,
}

/// The images `names` designate, before a save.
pub fn saving(state: &std::sync::Arc<AppState>, names: &[String]) -> Saving {
    let mut ids: Vec<String> = Vec::new();
    for id in names.iter().filter_map(|n| state.images.resolve(n).ok()) {
        if !ids.iter().any(|i| i == id.as_str()) {
            ids.push(id.as_str().to_string());
        }
    }
    Saving {
        state: state.clone(),
        ids,
    }
}

impl Saving {
    /// The save is written: one event per image.
    pub fn done(self) {
        for id in &self.ids {
            image(&self.state, "save", id, id);
        }
    }
}

/// An image's ID and labels before it is removed, for the events of its removal.
pub struct Doomed {
    id: String,
    labels: BTreeMap<String, String>,
    /// Removed by one of its references (not by ID): Docker tells only that one's
    /// untag, not those of the digest references that go with it.
    by_reference: bool,
}

/// The image `name` designates, before a removal.
pub fn doomed(state: &AppState, name: &str) -> Option<Doomed> {
    let (id, config) = state.images.config(name).ok()?;
    let refs = state.images.references(&id).unwrap_or_default();
    let by_reference = !name.starts_with("sha256:")
        && polis_image::Reference::parse(name).is_ok_and(|r| refs.contains(&r));
    Some(Doomed {
        id: id.as_str().to_string(),
        labels: config.config.and_then(|c| c.labels).unwrap_or_default(),
        by_reference,
    })
}

/// What a removal did, as Docker tells it: an `untag` for each reference (only the one
/// named, when removed by reference), then a `delete` for the image (its layers are not
/// images).
pub fn removed(state: &AppState, doomed: Option<Doomed>, items: &[polis_image::Removed]) {
    let Some(d) = doomed else { return };
    let mut untags = 0;
    for item in items {
        let action = match item {
            polis_image::Removed::Untagged(_) if d.by_reference && untags > 0 => continue,
            polis_image::Removed::Untagged(_) => {
                untags += 1;
                "untag"
            }
            polis_image::Removed::Deleted(id) if *id == d.id => "delete",
            polis_image::Removed::Deleted(_) => continue,
        };
        // Docker reads the labels of an image that is still there.
        let mut attributes = if action == "untag" {
            d.labels.clone()
        } else {
            BTreeMap::new()
        };
        attributes.insert("name".into(), d.id.clone());
        state.events.publish(
            "image",
            action,
            Actor {
                id: d.id.clone(),
                attributes,
            },
        );
    }
}

/// A prune: `kind` (container, image, network) with the bytes it gave back.
pub fn pruned(state: &AppState, kind: &str, reclaimed: u64) {
    let attributes = BTreeMap::from([("reclaimed".to_string(), reclaimed.to_string())]);
    state.events.publish(
        kind,
        "prune",
        Actor {
            id: String::new(),
            attributes,
        },
    );
}

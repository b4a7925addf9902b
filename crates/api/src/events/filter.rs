//! The `filters` of `GET /events`, matched as Docker's daemon matches them: `type`,
//! `event`, `scope` and `image` exactly, objects (`container`, `network`, …) by a
//! prefix of their ID or name, `label` against the attributes. Keys Docker does not
//! know are refused rather than ignored.

use crate::filters::Filters;

use super::Message;

/// Every key Docker's event filter reads. The swarm kinds (node, service, secret,
/// config) and plugins never have local events, so they only ever let through events
/// whose ID or name they match, as in Docker.
pub const KEYS: [&str; 14] = [
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// Object kinds matched by ID or name prefix.
const BY_NAME: [&str; 9] = [
    "daemon",
    "container",
    "plugin",
    "volume",
    "network",
    "node",
    "service",
    "secret",
    "config",
];

#[derive(Debug, Clone, Default)]
pub struct EventFilter(Filters);

impl EventFilter {
    /// `filters`, whose keys the caller checked against [`KEYS`].
    pub fn new(filters: Filters) -> EventFilter {
        EventFilter(filters)
    }

    /// Whether the event passes every filter.
    pub fn include(&self, m: &Message) -> bool {
        let f = &self.0;
        self.match_event(m)
            && f.exact_match("type", &m.kind)
            && f.exact_match("scope", &m.scope)
            && BY_NAME.iter().all(|key| {
                let name = m.actor.attributes.get("name").map_or("", String::as_str);
                f.fuzzy_match(key, &m.actor.id) || f.fuzzy_match(key, name)
            })
            && self.match_image(m)
            && (!f.contains("label") || f.match_labels("label", &m.actor.attributes))
    }

    /// An `event` filter of `exec_create`, `exec_start` or `health_status` alone (their
    /// actions carry the command or status after a colon) matches by prefix.
    fn match_event(&self, m: &Message) -> bool {
        let f = &self.0;
        let bare = f
            .values("event")
            .iter()
            .any(|v| matches!(*v, "exec_create" | "exec_start" | "health_status"));
        if bare {
            f.fuzzy_match("event", &m.action)
        } else {
            f.exact_match("event", &m.action)
        }
    }

    /// `image`: a container's image or an image's own ID or name, with or without its
    /// tag.
    fn match_image(&self, m: &Message) -> bool {
        let f = &self.0;
        let attr = if m.kind == "image" { "name" } else { "image" };
        let name = m.actor.attributes.get(attr).map_or("", String::as_str);
        f.exact_match("image", &m.actor.id)
            || f.exact_match("image", name)
            || f.exact_match("image", &strip_tag(&m.actor.id))
            || f.exact_match("image", &strip_tag(name))
    }
}

/// A reference's repository as Docker shows it (`busybox:local` → `busybox`); what
/// does not parse stays as it is.
fn strip_tag(name: &str) -> String {
    match polis_image::Reference::parse_named(name) {
        Ok(r) => r.familiar_repository(),
        Err(_) => name.to_string(),
    }
}

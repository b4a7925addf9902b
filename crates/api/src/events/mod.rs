//! Docker's event stream: the daemon's record of what happened to its containers,
//! images and networks. Every event goes to the live subscribers of `GET /events` and
//! into a log of the last 256, which `since`/`until` replay as Docker's does.

mod emit;
mod filter;
mod stream;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::broadcast;

pub use emit::*;
pub use filter::EventFilter;
pub use stream::events;

/// How many past events the log keeps (Docker's `eventsLimit`).
pub const LOG_LIMIT: usize = 256;
/// How many events a subscriber may fall behind before it misses some.
const BUFFER: usize = 1024;
/// How many keys [`Events::once`] remembers.
const ONCE_LIMIT: usize = 1024;

/// Who an event is about: its ID and what else is known of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// One event, in Docker's JSON (with the older `status`, `id` and `from` of container
/// and image events, which Docker sends up to API 1.51).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

impl Message {
    /// A local event of `kind` at `time_nano`.
    pub fn new(kind: &str, action: &str, actor: Actor, time_nano: i64) -> Message {
        let (status, id, from) = match kind {
            "container" => (
                action.to_string(),
                actor.id.clone(),
                actor.attributes.get("image").cloned().unwrap_or_default(),
            ),
            "image" => (action.to_string(), actor.id.clone(), String::new()),
            _ => (String::new(), String::new(), String::new()),
        };
        Message {
            status,
            id,
            from,
            kind: kind.to_string(),
            action: action.to_string(),
            actor,
            scope: "local".to_string(),
            time: time_nano.div_euclid(1_000_000_000),
            time_nano,
        }
    }
}

struct Log {
    events: VecDeque<Arc<Message>>,
    last_nano: i64,
}

/// The daemon's event bus.
pub struct Events {
    log: Mutex<Log>,
    tx: broadcast::Sender<Arc<Message>>,
    listeners: Arc<AtomicUsize>,
    /// Keys of things that happen once (an exit, a removal), however many see them.
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            log: Mutex::new(Log {
                events: VecDeque::with_capacity(LOG_LIMIT),
                last_nano: 0,
            }),
            tx: broadcast::channel(BUFFER).0,
            listeners: Arc::default(),
            seen: Mutex::default(),
        }
    }
}

/// Counts a subscriber for as long as it lives.
pub struct Listener(Arc<AtomicUsize>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A new subscriber: the past events it asked for, then the live ones.
pub struct Subscription {
    pub past: Vec<Arc<Message>>,
    pub live: broadcast::Receiver<Arc<Message>>,
    pub listener: Listener,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_nanos() -> i64 {
    i64::try_from(crate::clock::now_nanos()).unwrap_or(i64::MAX)
}

impl Events {
    /// Records and broadcasts an event that happens now. Times only move forward, so
    /// the log stays in order.
    pub fn publish(&self, kind: &str, action: &str, actor: Actor) {
        let mut log = lock(&self.log);
        let time = now_nanos().max(log.last_nano + 1);
        log.last_nano = time;
        self.push(&mut log, Message::new(kind, action, actor, time));
    }

    fn push(&self, log: &mut Log, message: Message) {
        let message = Arc::new(message);
        if log.events.len() == LOG_LIMIT {
            log.events.pop_front();
        }
        log.events.push_back(message.clone());
        // No subscriber is no error.
        let _ = self.tx.send(message);
    }

    /// Runs `publish` unless `key` ran already; a second caller waits until the first
    /// is done, so what follows it is ordered after its events.
    pub fn once(&self, key: &str, publish: impl FnOnce(&Events)) {
        let mut seen = lock(&self.seen);
        if !seen.0.insert(key.to_string()) {
            return;
        }
        seen.1.push_back(key.to_string());
        if seen.1.len() > ONCE_LIMIT {
            if let Some(old) = seen.1.pop_front() {
                seen.0.remove(&old);
            }
        }
        publish(self);
    }

    /// The past events between `since` and `until` (nanoseconds; none unless one is
    /// given, as Docker's) that `filter` lets through, and the live stream from then on.
    pub fn subscribe(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        filter: &EventFilter,
    ) -> Subscription {
        let log = lock(&self.log);
        let past = if since.is_none() && until.is_none() {
            Vec::new()
        } else {
            let since = since.unwrap_or(0);
            log.events
                .iter()
                .filter(|m| m.time_nano >= since && until.is_none_or(|u| m.time_nano <= u))
                .filter(|m| filter.include(m))
                .cloned()
                .collect()
        };
        self.listeners.fetch_add(1, Ordering::SeqCst);
        Subscription {
            past,
            live: self.tx.subscribe(),
            listener: Listener(self.listeners.clone()),
        }
    }

    /// How many subscribers listen now (`docker info`'s `NEventsListener`).
    pub fn listeners(&self) -> usize {
        self.listeners.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::Filters;

    fn actor(id: &str, attrs: &[(&str, &str)]) -> Actor {
        Actor {
            id: id.to_string(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn filter(json: &str) -> EventFilter {
        EventFilter::new(Filters::parse(Some(json)).unwrap())
    }

    #[test]
    fn json_as_docker_sends_it() {
        let m = Message::new(
            "container",
            "die",
            actor(
                "c0",
                &[
                    ("name", "evt"),
                    ("image", "busybox:local"),
                    ("exitCode", "0"),
                ],
            ),
            1_795_868_826_662_325_006,
        );
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"status":"die","id":"c0","from":"busybox:local","Type":"container","Action":"die","Actor":{"ID":"c0","Attributes":{"exitCode":"0","image":"busybox:local","name":"evt"}},"scope":"local","time":1795868826,"timeNano":1795868826662325006}"#
        );
        let n = Message::new("network", "connect", actor("n0", &[("name", "bridge")]), 5);
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"{"Type":"network","Action":"connect","Actor":{"ID":"n0","Attributes":{"name":"bridge"}},"scope":"local","time":0,"timeNano":5}"#
        );
    }

    #[test]
    fn replay_window_and_live() {
        let bus = Events::default();
        let none = EventFilter::default();
        for i in 0..300 {
            bus.publish("container", "start", actor(&format!("c{i}"), &[]));
        }
        let all = bus.subscribe(Some(0), None, &none).past;
        assert_eq!(all.len(), LOG_LIMIT, "only the last 256 are kept");
        assert_eq!(all[0].actor.id, "c44");
        assert!(all.windows(2).all(|w| w[0].time_nano < w[1].time_nano));
        // No since and no until: nothing from the past.
        assert!(bus.subscribe(None, None, &none).past.is_empty());
        let (t10, t20) = (all[10].time_nano, all[20].time_nano);
        let window = bus.subscribe(Some(t10), Some(t20), &none).past;
        assert_eq!(window.len(), 11);
        assert_eq!(window[0].actor.id, "c54");
        let until_only = bus.subscribe(None, Some(t10), &none).past;
        assert_eq!(until_only.len(), 11);
        let mut sub = bus.subscribe(None, None, &filter(r#"{"type":{"image":true}}"#));
        // Those above were dropped at once; this one listens.
        assert_eq!(bus.listeners(), 1);
        bus.publish("image", "tag", actor("sha256:1", &[]));
        assert_eq!(sub.live.try_recv().unwrap().action, "tag");
        drop(sub);
        assert_eq!(bus.listeners(), 0);
    }

    #[test]
    fn once_per_key() {
        let bus = Events::default();
        for _ in 0..3 {
            bus.once("die:c1:t1", |b| {
                b.publish("container", "die", actor("c1", &[]))
            });
        }
        bus.once("die:c1:t2", |b| {
            b.publish("container", "die", actor("c1", &[]))
        });
        let past = bus.subscribe(Some(0), None, &EventFilter::default()).past;
        assert_eq!(past.len(), 2);
    }

    #[test]
    fn filters_as_docker_applies_them() {
        let c = Message::new(
            "container",
            "start",
            actor(
                "abcdef0123",
                &[
                    ("name", "web"),
                    ("image", "busybox:local"),
                    ("tier", "front"),
                ],
            ),
            1,
        );
        let exec = Message::new(
            "container",
            "exec_create: sh -c true",
            actor("abcdef0123", &[("name", "web"), ("image", "busybox:local")]),
            1,
        );
        let img = Message::new(
            "image",
            "tag",
            actor("sha256:99", &[("name", "127.0.0.1:5000/bb:v1")]),
            1,
        );
        let net = Message::new(
            "network",
            "connect",
            actor(
                "n1234",
                &[
                    ("name", "front"),
                    ("type", "bridge"),
                    ("container", "abcdef0123"),
                ],
            ),
            1,
        );
        let yes = |f: &str, m: &Message| filter(f).include(m);
        assert!(yes("{}", &c));
        assert!(yes(r#"{"type":{"container":true}}"#, &c));
        assert!(!yes(r#"{"type":{"container":true}}"#, &img));
        assert!(yes(r#"{"event":{"start":true,"die":true}}"#, &c));
        assert!(!yes(r#"{"event":{"die":true}}"#, &c));
        // exec_create without its command matches by prefix; with it, exactly.
        assert!(yes(r#"{"event":{"exec_create":true}}"#, &exec));
        assert!(!yes(r#"{"event":{"exec_die":true}}"#, &exec));
        // container: an ID prefix or a name (prefix); other kinds only by their own.
        assert!(yes(r#"{"container":{"abc":true}}"#, &c));
        assert!(yes(r#"{"container":{"web":true}}"#, &c));
        assert!(!yes(r#"{"container":{"db":true}}"#, &c));
        assert!(!yes(r#"{"container":{"web":true}}"#, &net));
        assert!(yes(r#"{"network":{"front":true}}"#, &net));
        assert!(yes(r#"{"network":{"n12":true}}"#, &net));
        assert!(!yes(r#"{"network":{"back":true}}"#, &net));
        // image: containers of the image and the image's own events, tag or not.
        assert!(yes(r#"{"image":{"busybox:local":true}}"#, &c));
        assert!(yes(r#"{"image":{"busybox":true}}"#, &c));
        assert!(!yes(r#"{"image":{"alpine":true}}"#, &c));
        assert!(yes(r#"{"image":{"127.0.0.1:5000/bb":true}}"#, &img));
        assert!(yes(r#"{"image":{"sha256:99":true}}"#, &img));
        // label: a key, or key=value, among the attributes.
        assert!(yes(r#"{"label":{"tier":true}}"#, &c));
        assert!(yes(r#"{"label":{"tier=front":true}}"#, &c));
        assert!(!yes(r#"{"label":{"tier=back":true}}"#, &c));
        assert!(!yes(r#"{"label":{"tier":true}}"#, &img));
        assert!(yes(r#"{"scope":{"local":true}}"#, &c));
        assert!(!yes(r#"{"scope":{"swarm":true}}"#, &c));
        // Values of one key are alternatives; keys all hold.
        assert!(yes(
            r#"{"type":{"container":true,"network":true},"event":{"start":true,"connect":true}}"#,
            &net
        ));
        assert!(!yes(
            r#"{"type":{"container":true},"event":{"connect":true}}"#,
            &net
        ));
        let unknown = Filters::parse(Some(r#"{"colour":{"x":true}}"#)).unwrap();
        assert_eq!(
            unknown.validate(&filter::KEYS).unwrap_err(),
            "invalid filter 'colour'"
        );
    }
}

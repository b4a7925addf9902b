//! `events`: a stats stream every interval, and an "oom" event when the kernel's OOM
//! killer strikes inside the container.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn oom_and_stats_events() {
    let mut c = Container::new("events-oom");
    c.resources("memory", json!({ "limit": 16 << 20, "swap": 16 << 20 }));
    // dd's 64 MiB buffer cannot fit in 16 MiB: the OOM killer takes dd, sh goes on.
    c.sh("sleep 1; dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 100");
    let out = c.run_detached();
    assert_eq!(out.code, 0, "{out:#?}");
    let mut events = c
        .command()
        .args(["events", "--interval", "1s", &c.id])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn events");
    let reader = BufReader::new(events.stdout.take().expect("events stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut saw_oom, mut saw_stats) = (false, false);
    while Instant::now() < deadline && !(saw_oom && saw_stats) {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let event: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(event["id"], json!(c.id));
        match event["type"].as_str() {
            Some("oom") => saw_oom = true,
            Some("stats") => {
                assert!(
                    event["data"]["memory"]["usage"]["usage"].as_u64().is_some(),
                    "{event}"
                );
                saw_stats = true;
            }
            other => panic!("unexpected event type {other:?}"),
        }
    }
    let _ = events.kill();
    let _ = events.wait();
    assert!(saw_stats, "no stats event");
    assert!(saw_oom, "no oom event");
}

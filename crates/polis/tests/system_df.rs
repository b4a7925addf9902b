//! `GET /system/df` with the unmodified docker CLI and with `polis system df`: two images
//! sharing the busybox layer, containers with written files, a volume with hard links and
//! a symlink. The numbers are Docker's: apparent file sizes, each inode once, directories
//! not counted; the tables are docker's, and `polis system df` prints what docker prints.

mod common;

use common::daemon::{import_busybox, output, Daemon};
use serde_json::Value;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;

const POLIS: &str = env!("CARGO_BIN_EXE_polis");

fn ok(d: &Daemon, args: &[&str]) -> String {
    let (code, out, err) = d.docker(args);
    assert_eq!(code, 0, "docker {args:?}: {err}");
    out
}

fn polis(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    output(
        Command::new(POLIS)
            .env_remove("DOCKER_HOST")
            .env_remove("POLIS_HOST")
            .arg("-H")
            .arg(d.host())
            .args(args),
        None,
    )
}

/// One GET on the daemon's socket: status and JSON body.
fn get(d: &Daemon, path: &str) -> (u16, Value) {
    let socket = d.host().trim_start_matches("unix://").to_string();
    let mut s = UnixStream::connect(socket).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: polis\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}

/// What Docker's `directory.Size` counts under `dir`: non-directories' apparent sizes,
/// each inode once, symlinks not followed.
fn apparent(dir: &Path, seen: &mut HashSet<u64>) -> i64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let md = std::fs::symlink_metadata(e.path()).unwrap();
        if md.is_dir() {
            total += apparent(&e.path(), seen);
        } else if seen.insert(md.ino()) {
            total += md.len() as i64;
        }
    }
    total
}

fn by<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|v| v[key] == value || v[key].as_array().is_some_and(|a| a.contains(&value.into())))
        .unwrap_or_else(|| panic!("no {key}={value} in {list}"))
}

/// docker's and polis's output for the same arguments; time columns may tick between
/// the two, so a differing pair is taken again.
fn same_output(d: &Daemon, args: &[&str]) -> String {
    let mut last = (String::new(), String::new());
    for _ in 0..3 {
        let want = ok(d, args);
        let (code, got, err) = polis(d, args);
        assert_eq!(code, 0, "polis {args:?}: {err}");
        if want == got {
            return want;
        }
        last = (want, got);
    }
    panic!(
        "polis {args:?} differs from docker:\n--- docker\n{}--- polis\n{}",
        last.0, last.1
    );
}

#[test]
fn disk_usage_of_images_containers_and_volumes() {
    let d = Daemon::start("sysdf");
    import_busybox(&d);
    let busybox = apparent(&d.dir.join("rootfs"), &mut HashSet::new());
    assert!(busybox > 500_000, "{busybox}");

    // A stopped container that wrote 12345 bytes, committed as a second image.
    ok(
        &d,
        &[
            "run",
            "--name",
            "writer",
            "--network",
            "none",
            "busybox:local",
            "sh",
            "-c",
            "head -c 12345 /dev/zero > /data.bin",
        ],
    );
    ok(&d, &["commit", "writer", "built:local"]);
    // A volume with 5000 bytes twice linked and a one-byte symlink, used by a container.
    ok(&d, &["volume", "create", "data"]);
    ok(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "data:/v",
            "busybox:local",
            "sh",
            "-c",
            "head -c 5000 /dev/zero > /v/a && ln /v/a /v/b && ln -s a /v/c",
        ],
    );
    ok(
        &d,
        &["create", "--name", "holder", "-v", "data:/v", "built:local"],
    );
    ok(&d, &["volume", "create", "empty"]);

    let (status, df) = get(&d, "/v1.47/system/df");
    assert_eq!(status, 200, "{df}");
    assert_eq!(df["LayersSize"], busybox + 12345, "{df}");
    assert_eq!(df["BuildCache"], serde_json::json!([]));
    let base = by(&df["Images"], "RepoTags", "busybox:local");
    assert_eq!(base["Size"], busybox, "{base}");
    assert_eq!(base["SharedSize"], busybox, "{base}");
    assert_eq!(base["Containers"], 1, "{base}");
    let built = by(&df["Images"], "RepoTags", "built:local");
    assert_eq!(built["Size"], busybox + 12345, "{built}");
    // `docker images` and inspect show the same sizes.
    let (_, list) = get(&d, "/v1.47/images/json");
    assert_eq!(
        by(&list, "RepoTags", "built:local")["Size"],
        busybox + 12345
    );
    assert_eq!(by(&list, "RepoTags", "busybox:local")["Size"], busybox);
    let (_, one) = get(&d, "/v1.47/images/built:local/json");
    assert_eq!(one["Size"], busybox + 12345, "{one}");
    // And `docker history` each layer's, newest first.
    let (_, history) = get(&d, "/v1.47/images/built:local/history");
    let sizes: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["Size"])
        .collect();
    assert_eq!(
        sizes,
        [&Value::from(12345), &Value::from(busybox)],
        "{history}"
    );
    assert_eq!(built["VirtualSize"], busybox + 12345, "{built}");
    assert_eq!(built["SharedSize"], busybox, "{built}");
    assert_eq!(built["Containers"], 1, "{built}");
    let writer = by(&df["Containers"], "Names", "/writer");
    assert_eq!(writer["SizeRw"], 12345, "{writer}");
    assert_eq!(writer["SizeRootFs"], busybox + 12345, "{writer}");
    let holder = by(&df["Containers"], "Names", "/holder");
    assert!(holder.get("SizeRw").is_none(), "{holder}");
    assert_eq!(holder["SizeRootFs"], busybox + 12345, "{holder}");
    let data = by(&df["Volumes"], "Name", "data");
    assert_eq!(
        data["UsageData"],
        serde_json::json!({"Size": 5001, "RefCount": 1})
    );
    let empty = by(&df["Volumes"], "Name", "empty");
    assert_eq!(
        empty["UsageData"],
        serde_json::json!({"Size": 0, "RefCount": 0})
    );

    // `type` limits what is computed (API 1.42 on), and an unknown type is refused.
    let (_, only) = get(&d, "/v1.47/system/df?type=volume&type=image");
    assert!(
        only["Containers"].is_null() && only["BuildCache"].is_null(),
        "{only}"
    );
    assert_eq!(only["Images"].as_array().unwrap().len(), 2);
    assert_eq!(only["Volumes"].as_array().unwrap().len(), 2);
    let (status, bad) = get(&d, "/v1.47/system/df?type=nope");
    assert_eq!(status, 400);
    assert_eq!(bad["message"], "unknown object type: nope");
    let (_, old) = get(&d, "/v1.41/system/df?type=volume");
    assert!(old["Containers"].is_array(), "{old}");

    // docker's table, and polis printing the same.
    let table = same_output(&d, &["system", "df"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        rows[0],
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        "{table}"
    );
    // Both images have a container; only the committed layer is in use by one alone.
    assert_eq!(rows[1][..3], ["Images", "2", "2"], "{table}");
    assert!(rows[1][4].ends_with("(99%)"), "{table}");
    assert_eq!(
        rows[2],
        ["Containers", "2", "0", "12.35kB", "12.35kB (100%)"],
        "{table}"
    );
    assert_eq!(
        rows[3],
        ["Local Volumes", "2", "1", "5.001kB", "0B (0%)"],
        "{table}"
    );
    assert_eq!(rows[4], ["Build Cache", "0", "0", "0B", "0B"], "{table}");
    let verbose = ok(&d, &["system", "df", "-v"]);
    for section in [
        "Images space usage:",
        "Containers space usage:",
        "Local Volumes space usage:",
        "Build cache usage: 0B",
    ] {
        assert!(verbose.contains(section), "{verbose}");
    }
    let volume_row = |name: &str| {
        verbose
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&name))
    };
    assert_eq!(
        volume_row("data").unwrap(),
        ["data", "1", "5.001kB"],
        "{verbose}"
    );
    assert_eq!(
        volume_row("empty").unwrap(),
        ["empty", "0", "0B"],
        "{verbose}"
    );
    same_output(&d, &["system", "df", "--format", "{{.Type}}: {{.Size}}"]);
    same_output(&d, &["system", "df", "--format", "{{json .}}"]);
    same_output(&d, &["system", "df", "--format", "json"]);
    same_output(
        &d,
        &[
            "system",
            "df",
            "--format",
            "table {{.Type}}\t{{.Reclaimable}}",
        ],
    );
}

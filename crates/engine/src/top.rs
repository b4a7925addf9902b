//! `docker top`: the host's `ps` with the client's arguments, its lines kept for the
//! processes in the container's cgroup, as Docker does.

use std::process::Command;

use serde::Serialize;

use crate::containers::Layout;
use crate::error::{Error, Result};

/// `{Titles, Processes}` of `GET /containers/{id}/top`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

/// Docker refuses `ps` arguments that would rename the PID column.
fn validate_args(args: &str) -> Result<()> {
    let words: Vec<&str> = args.split_whitespace().collect();
    for w in words.iter().skip(1).chain(words.first()) {
        if let Some((k, v)) = w.split_once('=') {
            if v.starts_with("PID") && k != "pid" {
                return Err(Error::InvalidInput(format!(
                    "specifying \"{k}={v}\" is not allowed"
                )));
            }
        }
    }
    Ok(())
}

fn fields(line: &str) -> Vec<String> {
    line.split([' ', '\t', '\n', '\x0c', '\r'])
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect()
}

/// Keeps the lines of `pids` (and thread lines `-` after them); the last column takes
/// whatever the titles do not account for (a command with spaces).
pub fn parse_ps(output: &str, pids: &[i32]) -> Result<Top> {
    let mut lines = output.split('\n');
    let titles = fields(lines.next().unwrap_or(""));
    let pid_index = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| Error::InvalidInput("Couldn't find PID field in ps output".into()))?;
    let mut processes = Vec::new();
    let mut after_ours = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let f = fields(line);
        let Some(pid) = f.get(pid_index) else {
            continue;
        };
        let ours = if pid == "-" {
            after_ours
        } else {
            let p: i32 = pid
                .parse()
                .map_err(|e| Error::InvalidInput(format!("Unexpected pid '{pid}': {e}")))?;
            after_ours = pids.contains(&p);
            after_ours
        };
        if ours {
            let keep = titles.len().saturating_sub(1).min(f.len());
            let mut row: Vec<String> = f[..keep].to_vec();
            row.push(f[keep..].join(" "));
            processes.push(row);
        }
    }
    Ok(Top { titles, processes })
}

/// Runs `ps` (default `-ef`) for container `id`'s processes.
pub fn top(layout: &Layout, id: &str, ps_args: &str) -> Result<Top> {
    let ps_args = if ps_args.is_empty() { "-ef" } else { ps_args };
    validate_args(ps_args)?;
    let pids = crate::stats::pids(layout, id)?;
    let args: Vec<&str> = ps_args.split(' ').collect();
    let list = pids
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let run = |extra: Option<String>| {
        let mut cmd = Command::new("ps");
        cmd.args(&args);
        if let Some(e) = extra {
            cmd.arg(e);
        }
        cmd.output()
    };
    let mut out = run(Some(format!("-q{list}"))).map_err(|e| Error::io("run", "ps", e))?;
    if !out.status.success() {
        // Some options (f) cannot go with -q: all processes, filtered below.
        out = run(None).map_err(|e| Error::io("run", "ps", e))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let first = err.lines().next().unwrap_or("").to_string();
            return Err(Error::Container(format!("ps: {first}")));
        }
    }
    parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_containers_processes() {
        let out = "UID PID PPID C STIME TTY TIME CMD\nroot 10 1 0 10:00 ? 00:00:00 sleep 100\nroot 11 1 0 10:00 ? 00:00:00 other\n";
        let top = parse_ps(out, &[10]).unwrap();
        assert_eq!(top.titles.len(), 8);
        assert_eq!(
            top.processes,
            vec![vec![
                "root",
                "10",
                "1",
                "0",
                "10:00",
                "?",
                "00:00:00",
                "sleep 100"
            ]]
        );
        assert!(parse_ps("A B\n1 2\n", &[1]).is_err());
        assert!(validate_args("-eo pid,comm").is_ok());
        assert!(validate_args("-o user=PID").is_err());
    }
}

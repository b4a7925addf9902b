//! Docker's JSON progress stream (pull, push) shown as docker shows it: one live bar per
//! layer on a terminal, plain `ID: status` lines otherwise.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use super::client;

/// Where the progress goes: a pull for `run` reports on stderr, as docker does.
#[derive(Clone, Copy)]
pub enum Output {
    Stdout,
    Stderr,
}

impl Output {
    fn is_terminal(self) -> bool {
        match self {
            Output::Stdout => std::io::stdout().is_terminal(),
            Output::Stderr => std::io::stderr().is_terminal(),
        }
    }

    fn write_line(self, line: &str) -> std::io::Result<()> {
        match self {
            Output::Stdout => writeln!(std::io::stdout(), "{line}"),
            Output::Stderr => writeln!(std::io::stderr(), "{line}"),
        }
    }
}

/// What to show of a stream.
pub struct Display {
    pub output: Output,
    /// Nothing but errors.
    pub quiet: bool,
    /// `what` names the operation in read errors ("pull", "push").
    pub what: &'static str,
}

/// Reads the daemon's progress stream to its end, showing it; returns the `aux` records
/// (push results) and fails with the stream's error message, if it carries one.
pub async fn show(
    response: hyper::Response<hyper::body::Incoming>,
    d: Display,
) -> Result<Vec<Value>> {
    let mut view = if d.quiet {
        View::Quiet
    } else if d.output.is_terminal() {
        View::bars(d.output)
    } else {
        View::Lines(d.output)
    };
    let mut aux = Vec::new();
    let mut lines = tokio::io::BufReader::new(client::body_reader(response)).lines();
    let result = async {
        while let Some(line) = lines
            .next_line()
            .await
            .with_context(|| format!("read the {} progress", d.what))?
        {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let m: Value = serde_json::from_str(line)
                .with_context(|| format!("decode the {} progress", d.what))?;
            if let Some(e) = m.get("error").and_then(Value::as_str) {
                bail!("{e}");
            }
            if let Some(a) = m.get("aux") {
                aux.push(a.clone());
                continue;
            }
            view.show(&m)?;
        }
        Ok(())
    }
    .await;
    view.finish();
    result.map(|()| aux)
}

enum View {
    Quiet,
    /// One line per message; byte counts are left to terminals.
    Lines(Output),
    /// A bar per id, updated in place; messages without an id get a line of their own.
    Bars {
        multi: MultiProgress,
        bars: HashMap<String, ProgressBar>,
        lines: Vec<ProgressBar>,
    },
}

impl View {
    fn bars(output: Output) -> View {
        let target = match output {
            Output::Stdout => ProgressDrawTarget::stdout(),
            Output::Stderr => ProgressDrawTarget::stderr(),
        };
        View::Bars {
            multi: MultiProgress::with_draw_target(target),
            bars: HashMap::new(),
            lines: Vec::new(),
        }
    }

    fn show(&mut self, m: &Value) -> Result<()> {
        let status = m.get("status").and_then(Value::as_str).unwrap_or_default();
        let id = m.get("id").and_then(Value::as_str);
        let detail = m.get("progressDetail");
        let counts = detail.and_then(|d| Some((d["current"].as_u64()?, d["total"].as_u64()?)));
        match self {
            View::Quiet => {}
            View::Lines(out) => {
                if m.get("progress").is_some() {
                    return Ok(());
                }
                match id {
                    Some(id) => out.write_line(&format!("{id}: {status}"))?,
                    None => out.write_line(status)?,
                }
            }
            View::Bars { multi, bars, lines } => {
                let Some(id) = id else {
                    let line = multi.add(ProgressBar::new(0).with_style(text_style()));
                    line.finish_with_message(status.to_string());
                    lines.push(line);
                    return Ok(());
                };
                let bar = bars.entry(id.to_string()).or_insert_with(|| {
                    multi.add(
                        ProgressBar::new(0)
                            .with_style(text_style())
                            .with_prefix(id.to_string()),
                    )
                });
                bar.set_message(status.to_string());
                match counts {
                    Some((current, total)) if total > 0 => {
                        bar.set_style(bar_style());
                        bar.set_length(total);
                        bar.set_position(current);
                    }
                    _ => bar.set_style(id_style()),
                }
            }
        }
        Ok(())
    }

    /// Leaves every bar drawn in its last state.
    fn finish(self) {
        if let View::Bars { bars, lines, .. } = self {
            for bar in bars.values().chain(&lines) {
                bar.abandon();
            }
        }
    }
}

fn text_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg}").expect("valid template")
}

fn id_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg}").expect("valid template")
}

/// Docker's `ID: Downloading [=====>     ]  1.2MB/3.4MB`.
fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix}: {msg} [{bar:50}] {decimal_bytes:>8}/{decimal_total_bytes}",
    )
    .expect("valid template")
    .progress_chars("=> ")
}

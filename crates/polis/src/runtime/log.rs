//! The runtime's log, as runc writes it: to stderr, and with `--log` also to a file in
//! `text` or `json` format, which engines such as containerd read errors back from.

use std::io::Write;
use std::path::PathBuf;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum, Debug)]
pub enum LogFormat {
    Text,
    Json,
}

pub struct Logger {
    pub file: Option<PathBuf>,
    pub format: LogFormat,
    pub debug: bool,
}

impl Logger {
    pub fn error(&self, msg: &str) {
        eprintln!("polis-runtime: {msg}");
        self.write("error", msg);
    }

    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
        }
    }

    fn write(&self, level: &str, msg: &str) {
        let Some(path) = &self.file else { return };
        let time = polis_runtime::state::now_rfc3339();
        let line = match self.format {
            LogFormat::Json => {
                serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string()
            }
            LogFormat::Text => format!("time=\"{time}\" level={level} msg={msg:?}"),
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

//! Daemon configuration: built-in defaults, then the config file, then `POLIS_*`
//! environment variables, then command-line flags, each overriding the one before.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

pub const DEFAULT_CONFIG_FILE: &str = "/etc/polis/polisd.toml";

/// The default bridge network's interface, as docker0 is Docker's.
pub const DEFAULT_BRIDGE: &str = "polis0";

/// Debian's `tini` package: a static tini, so it runs in any image.
pub const DEFAULT_INIT_PATH: &str = "/usr/bin/tini-static";

/// Everything `polis daemon` can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Persistent state: metadata, images, container directories.
    pub root: PathBuf,
    /// Runtime state: sockets, pid files.
    pub run_root: PathBuf,
    /// Where the REST API listens: `unix:///path`.
    pub host: String,
    /// A tracing filter: `info`, `debug`, `polis_api=trace`, …
    pub log_level: String,
    /// The init `--init` runs as the container's PID 1 (dockerd's `--init-path`).
    pub init_path: PathBuf,
    /// Docker's certs.d: `DIR/HOST[:PORT]/*.crt` are extra CA roots for that registry.
    pub certs_dir: PathBuf,
    /// Registries (`host`, `host:port`, or a CIDR such as `10.0.0.0/8` for every
    /// registry whose address is in it) reached without TLS verification, or over plain
    /// HTTP when they do not speak TLS; loopback ones always are.
    pub insecure_registries: Vec<String>,
    /// Mirrors of docker.io (`http://host:port`, `https://host`), tried in order before
    /// it when pulling; kept as `scheme://host[:port]/`, as Docker does.
    pub registry_mirrors: Vec<String>,
    /// Largest uncompressed size of one layer, in bytes: a decompression bomb stops here
    /// (and in any case at the free space of the snapshot file system).
    pub max_layer_size: u64,
    /// Whether layers may create character and block device nodes; unset, they may when
    /// the daemon can make them (root outside a user namespace), as Docker does.
    pub layer_device_nodes: Option<bool>,
    /// The default bridge network's interface (dockerd's `--bridge`); None (`none`) runs
    /// without one: containers then have only lo unless put on a user network.
    pub bridge: Option<String>,
}

/// 64 GiB: several times the largest layers public images carry (CUDA and ML bases
/// reach a few GiB), yet a bound on what one hostile layer can write.
pub const DEFAULT_MAX_LAYER_SIZE: u64 = 64 << 30;

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            root: PathBuf::from("/var/lib/polis"),
            run_root: PathBuf::from("/run/polis"),
            host: "unix:///run/polis/polis.sock".to_string(),
            log_level: "info".to_string(),
            init_path: PathBuf::from(DEFAULT_INIT_PATH),
            certs_dir: PathBuf::from("/etc/polis/certs.d"),
            insecure_registries: Vec::new(),
            registry_mirrors: Vec::new(),
            max_layer_size: DEFAULT_MAX_LAYER_SIZE,
            layer_device_nodes: None,
            bridge: Some(DEFAULT_BRIDGE.to_string()),
        }
    }
}

/// A size in a config file: a number of bytes, or a string such as `"512MiB"` or `"1g"`
/// (binary units whatever the suffix, as Docker's sizes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    pub fn bytes(&self) -> std::result::Result<u64, String> {
        let text = match self {
            Size::Bytes(n) => return Ok(*n),
            Size::Text(t) => t.trim(),
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a size (e.g. 1048576, \"512MiB\", \"1g\")"))?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            other => return Err(format!("{text:?}: unknown size unit {other:?}")),
        };
        number
            .checked_mul(1u64 << shift)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

/// One layer of settings; what it leaves out, the layer below decides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Overrides {
    pub root: Option<PathBuf>,
    pub run_root: Option<PathBuf>,
    pub host: Option<String>,
    pub log_level: Option<String>,
    pub init_path: Option<PathBuf>,
    pub certs_dir: Option<PathBuf>,
    pub insecure_registries: Option<Vec<String>>,
    pub registry_mirrors: Option<Vec<String>>,
    pub max_layer_size: Option<Size>,
    pub layer_device_nodes: Option<bool>,
    pub bridge: Option<String>,
}

impl Overrides {
    /// A TOML config file. A missing file at the default path is no error; a missing
    /// file that was asked for is.
    pub fn from_file(path: &Path, required: bool) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Overrides::default())
            }
            Err(e) => return Err(Error::io("read", path, e)),
        };
        toml::from_str(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// `POLIS_ROOT`, `POLIS_RUN_ROOT`, `POLIS_HOST`, `POLIS_LOG_LEVEL`, `POLIS_INIT_PATH`,
    /// `POLIS_CERTS_DIR`.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Self {
        Overrides {
            root: get("POLIS_ROOT").map(PathBuf::from),
            run_root: get("POLIS_RUN_ROOT").map(PathBuf::from),
            host: get("POLIS_HOST"),
            log_level: get("POLIS_LOG_LEVEL"),
            init_path: get("POLIS_INIT_PATH").map(PathBuf::from),
            certs_dir: get("POLIS_CERTS_DIR").map(PathBuf::from),
            insecure_registries: None,
            registry_mirrors: None,
            max_layer_size: None,
            layer_device_nodes: None,
            bridge: get("POLIS_BRIDGE"),
        }
    }
}

impl DaemonConfig {
    /// Apply `layers` in order over the defaults, then check the result.
    pub fn resolve(layers: &[Overrides]) -> Result<Self> {
        let mut c = DaemonConfig::default();
        let mut host_given = false;
        for l in layers {
            if let Some(v) = &l.root {
                c.root = v.clone();
            }
            if let Some(v) = &l.run_root {
                c.run_root = v.clone();
            }
            if let Some(v) = &l.host {
                c.host = v.clone();
                host_given = true;
            }
            if let Some(v) = &l.log_level {
                c.log_level = v.clone();
            }
            if let Some(v) = &l.init_path {
                c.init_path = v.clone();
            }
            if let Some(v) = &l.certs_dir {
                c.certs_dir = v.clone();
            }
            if let Some(v) = &l.insecure_registries {
                c.insecure_registries = v.clone();
            }
            if let Some(v) = &l.registry_mirrors {
                c.registry_mirrors = v.clone();
            }
            if let Some(v) = &l.max_layer_size {
                c.max_layer_size = v.bytes().map_err(|reason| Error::Config {
                    path: PathBuf::from("max-layer-size"),
                    reason,
                })?;
                if c.max_layer_size == 0 {
                    return Err(Error::Config {
                        path: PathBuf::from("max-layer-size"),
                        reason: "must be more than 0 bytes".into(),
                    });
                }
            }
            if let Some(v) = l.layer_device_nodes {
                c.layer_device_nodes = Some(v);
            }
            if let Some(v) = &l.bridge {
                c.bridge = (v != "none").then(|| v.clone());
            }
        }
        // The socket follows the run root unless placed explicitly.
        if !host_given {
            c.host = format!("unix://{}", c.run_root.join("polis.sock").display());
        }
        c.socket_path()?;
        let invalid = |key: &str, reason: String| Error::Config {
            path: PathBuf::from(key),
            reason,
        };
        for i in &c.insecure_registries {
            polis_image::registry::Insecure::parse(i)
                .map_err(|r| invalid("insecure-registries", r))?;
        }
        c.registry_mirrors = c
            .registry_mirrors
            .iter()
            .map(|m| {
                polis_image::registry::parse_mirror(m).map_err(|r| invalid("registry-mirrors", r))
            })
            .collect::<Result<_>>()?;
        for (name, p) in [
            ("root", &c.root),
            ("run-root", &c.run_root),
            ("init-path", &c.init_path),
            ("certs-dir", &c.certs_dir),
        ] {
            if !p.is_absolute() {
                return Err(Error::Config {
                    path: PathBuf::from(name),
                    reason: format!("{} must be an absolute path", p.display()),
                });
            }
        }
        Ok(c)
    }

    /// How layers are unpacked: the size cap, and device nodes as configured or, unset,
    /// as the daemon's privileges allow.
    pub fn unpack_options(&self) -> polis_storage::UnpackOptions {
        polis_storage::UnpackOptions {
            allow_devices: self.layer_device_nodes.unwrap_or_else(can_make_devices),
            max_bytes: self.max_layer_size,
            ..polis_storage::UnpackOptions::default()
        }
    }

    /// The unix socket path of `host`.
    pub fn socket_path(&self) -> Result<PathBuf> {
        match self.host.strip_prefix("unix://") {
            Some(p) if p.starts_with('/') => Ok(PathBuf::from(p)),
            _ => Err(Error::Config {
                path: PathBuf::from("host"),
                reason: format!(
                    "{:?}: only unix:///absolute/path is supported for now",
                    self.host
                ),
            }),
        }
    }
}

/// Root in the initial user namespace, where mknod of devices works (Docker's
/// `userns.RunningInUserNS` test: a full identity uid map).
fn can_make_devices() -> bool {
    let initial_ns = std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]);
    nix::unistd::geteuid().is_root() && initial_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_override_in_order() {
        let file: Overrides = toml::from_str(
            "root = \"/srv/polis\"\nlog-level = \"debug\"\ninit-path = \"/opt/tini\"\n\
             certs-dir = \"/srv/certs.d\"\ninsecure-registries = [\"10.0.0.1:5000\"]",
        )
        .unwrap();
        let env = Overrides::from_env(|k| (k == "POLIS_LOG_LEVEL").then(|| "warn".to_string()));
        let flags = Overrides {
            run_root: Some("/tmp/pr".into()),
            ..Default::default()
        };
        let c = DaemonConfig::resolve(&[file, env, flags]).unwrap();
        assert_eq!(c.root, PathBuf::from("/srv/polis"));
        assert_eq!(c.run_root, PathBuf::from("/tmp/pr"));
        assert_eq!(c.log_level, "warn");
        assert_eq!(c.host, "unix:///tmp/pr/polis.sock");
        assert_eq!(c.init_path, PathBuf::from("/opt/tini"));
        assert_eq!(c.certs_dir, PathBuf::from("/srv/certs.d"));
        assert_eq!(c.insecure_registries, ["10.0.0.1:5000"]);
        let file: Overrides = toml::from_str(
            "registry-mirrors = [\"http://127.0.0.1:5000\", \"https://mirror:443/\"]\n\
             insecure-registries = [\"10.0.0.0/8\", \"reg:5000\"]",
        )
        .unwrap();
        let c = DaemonConfig::resolve(&[file]).unwrap();
        assert_eq!(
            c.registry_mirrors,
            ["http://127.0.0.1:5000/", "https://mirror:443/"]
        );
        assert_eq!(c.insecure_registries, ["10.0.0.0/8", "reg:5000"]);
        let env = Overrides::from_env(|k| (k == "POLIS_INIT_PATH").then(|| "/x/init".into()));
        assert_eq!(
            DaemonConfig::resolve(&[env]).unwrap().init_path,
            PathBuf::from("/x/init")
        );
    }

    #[test]
    fn layer_limits() {
        let file: Overrides =
            toml::from_str("max-layer-size = \"512MiB\"\nlayer-device-nodes = false").unwrap();
        let c = DaemonConfig::resolve(&[file]).unwrap();
        assert_eq!(c.max_layer_size, 512 << 20);
        assert!(!c.unpack_options().allow_devices);
        assert_eq!(c.unpack_options().max_bytes, 512 << 20);
        let file: Overrides = toml::from_str("max-layer-size = 4096").unwrap();
        assert_eq!(DaemonConfig::resolve(&[file]).unwrap().max_layer_size, 4096);
        assert_eq!(
            DaemonConfig::default().max_layer_size,
            DEFAULT_MAX_LAYER_SIZE
        );
        assert_eq!(Size::Text("1t".into()).bytes().unwrap(), 1 << 40);
        for bad in ["12 parsecs", "MiB", "-1", "99999999999T"] {
            assert!(Size::Text(bad.into()).bytes().is_err(), "{bad}");
        }
        let zero: Overrides = toml::from_str("max-layer-size = 0").unwrap();
        assert!(DaemonConfig::resolve(&[zero]).is_err());
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(toml::from_str::<Overrides>("rooot = \"/x\"").is_err());
        let tcp = Overrides {
            host: Some("tcp://0.0.0.0:2375".into()),
            ..Default::default()
        };
        assert!(DaemonConfig::resolve(&[tcp]).is_err());
        let relative = Overrides {
            root: Some("relative".into()),
            ..Default::default()
        };
        assert!(DaemonConfig::resolve(&[relative]).is_err());
        for (mirrors, insecure, says) in [
            (vec!["ftp://m"], vec![], "unsupported scheme"),
            (vec!["https://m/v2/"], vec![], "path, query, or fragment"),
            (vec!["mirror:5000"], vec![], "registry-mirrors"),
            (vec![], vec!["10.0.0.0/40"], "not a valid CIDR"),
            (
                vec![],
                vec!["ftp://reg"],
                "insecure registry ftp://reg is invalid",
            ),
        ] {
            let o = Overrides {
                registry_mirrors: Some(mirrors.into_iter().map(String::from).collect()),
                insecure_registries: Some(insecure.into_iter().map(String::from).collect()),
                ..Default::default()
            };
            let e = DaemonConfig::resolve(&[o]).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }
}

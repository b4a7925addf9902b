//! The Polis engine: what `polis daemon` owns. Today: its configuration, the lock that
//! keeps one daemon per root, and the metadata store; container supervision builds on
//! these.

pub mod archive;
pub mod commit;
pub mod config;
pub mod containers;
pub mod devices;
pub mod error;
pub mod health;
pub mod hostconfig;
pub mod hostspec;
pub mod layers;
pub mod limits;
pub mod lock;
pub mod logconfig;
pub mod metadata;
pub mod mounts;
pub mod netmode;
pub mod networking;
pub mod recovery;
pub mod resources;
pub mod restart;
pub mod seccomp_profile;
pub mod security;
pub mod snapshot_gc;
pub mod stats;
pub mod top;
pub mod update;
pub mod volume_copy;
pub mod volume_driver;
pub mod volume_use;
pub mod volumes;

pub use config::DaemonConfig;
pub use error::{Error, Result};

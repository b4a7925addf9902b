//! The Polis engine: what `polis daemon` owns. Today: its configuration, the lock that
//! keeps one daemon per root, and the metadata store; container supervision builds on
//! these.

pub mod archive;
pub mod commit;
pub mod config;
pub mod containers;
pub mod error;
pub mod hostconfig;
pub mod lock;
pub mod metadata;
pub mod stats;
pub mod top;

pub use config::DaemonConfig;
pub use error::{Error, Result};

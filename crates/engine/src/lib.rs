//! The Polis engine: what `polis daemon` owns. Today: its configuration, the lock that
//! keeps one daemon per root, and the metadata store; container supervision builds on
//! these.

pub mod config;
pub mod containers;
pub mod error;
pub mod hostconfig;
pub mod lock;
pub mod logconfig;
pub mod metadata;
pub mod restart;

pub use config::DaemonConfig;
pub use error::{Error, Result};

//! Container networking: address management (IPAM) whose allocations persist, the subnets
//! a new network gets by default, and the records of networks and their endpoints.

pub mod bridge;
pub mod dns;
pub mod error;
pub mod firewall;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod pools;
pub mod ports;
pub mod record;
pub mod store;

pub use error::{Error, Result};
pub use ipam::{AddressPool, Allocations};
pub use record::{Endpoint, Family, Network};
pub use store::NetworkStore;

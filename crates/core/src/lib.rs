//! ModelVault core: everything below the CLI and the server. See docs/ARCHITECTURE.md for the layers and
//! docs/FORMAT.md for the bytes.

pub mod backup;
pub mod buckets;
pub mod check;
pub mod chunker;
pub mod copy;
pub mod crypto;
pub mod delta;
pub mod diff;
pub mod dircmp;
pub mod drill;
pub mod durability;
pub mod error;
pub mod fault;
pub mod format;
pub mod hdfs;
pub mod heal;
pub mod ids;
pub mod ingest;
pub mod inspect;
pub mod locks;
pub mod model;
pub mod objects;
pub mod packio;
pub mod prune;
pub mod redundancy;
pub mod remote;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod rotate;
pub mod speed;
pub mod store;
pub mod tenants;

pub use error::{Error, Result};

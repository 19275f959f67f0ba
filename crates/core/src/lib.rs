//! ModelVault core: everything below the CLI and the server. See docs/ARCHITECTURE.md for the layers and
//! docs/FORMAT.md for the bytes.
//!
//! The layers, lowest first; a module imports only from its own layer or below:
//! 1. leaves: `error`, `random`, `ids`, `crypto`, `fault`, `durability`, `synth` (test and demo data);
//! 2. `format/` (the bytes of docs/FORMAT.md and the codecs) and `model/` (model-file parsers);
//! 3. `chunker`, `redundancy`, `speed`;
//! 4. `store/` (the `Store` trait; fs, OpenDAL and HDFS stores);
//! 5. `repo/` (the `Repo` type: open, metadata, index, packs, locks, tenants, bucket log, heal);
//! 6. `ops/` (backup, restore, check, prune, ... one module per operation);
//! 7. `objects/` (S3 objects stored as backups store files, and bucket snapshots).
//!
//! The vocabulary modules (ids, keys, formats, model files, objects) are public whole; the engine's
//! (`store`, `repo`, `ops`) are `pub(crate)`, and what the CLI and the server may use of them is the one
//! `pub use` list below.

pub(crate) mod catalog;
pub(crate) mod chunker;
pub mod crypto;
pub mod durability;
pub(crate) mod error;
pub(crate) mod fault;
pub mod format;
pub mod ids;
pub mod model;
pub mod objects;
pub(crate) mod ops;
pub(crate) mod parallel;
pub mod private;
pub mod random;
pub(crate) mod redundancy;
pub(crate) mod repo;
pub mod speed;
pub(crate) mod store;
pub mod synth;

pub use error::{Error, Result};
// The repository layer: the vault, its stores, its metadata.
#[cfg(feature = "test-hooks")]
pub use fault::enable_test_hooks;
pub use repo::{
    buckets, heal, hostname, now, tenants, BlobSource, IndexSummary, InitOptions, OpenOptions, Repo, SnapshotList,
    DEFAULT_TENANT,
};
pub use store::runtime::shutdown as shutdown_io;
pub use store::StoreArg;

pub use catalog::{
    cache_dir, Catalog, CatalogArg, Claim, Engine as CatalogEngine, Exclusive, QuotaRefused, Reservation,
};
// One module per operation.
pub use ops::{backup, check, copy, diff, dircmp, drill, ingest, inspect, prune, restore, retention};
// S3 objects.
pub use objects::snapshot::{snapshot_bucket, BucketSnapshot};

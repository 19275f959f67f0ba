//! The integration tests: one binary (linking the program once, not twelve times), a module per suite. Each
//! suite runs the real `mvault` binary (and, where it needs them, a real Garage, MiniDFSCluster, server and
//! S3 clients) from outside. Run one suite with `cargo test -p mvault --test integration hdfs::`.

mod common;

mod backup_restore;
mod catalog;
mod copy_watch;
mod crash;
mod erasure;
mod failures;
mod hdfs;
mod keys_drill;
mod lifecycle;
mod memory;
mod model;
mod reclaim;
mod s3;
mod server;

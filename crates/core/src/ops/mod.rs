//! The operations: what a command does, built on the repository layer. Each module is one operation (or,
//! for `delta_bases` and `dircmp`, the part two of them share); none reaches a store but through `Repo`.

pub mod backup;
pub mod check;
pub mod copy;
pub mod delta_bases;
pub mod diff;
pub mod dircmp;
pub mod drill;
pub mod ingest;
pub mod inspect;
pub mod prune;
pub mod restore;
pub mod retention;
pub mod rotate;

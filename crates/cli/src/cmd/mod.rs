//! The command groups, one module each. A group uses the shared modules (`args`, `open`, `print`, `ui`,
//! `client`) and the core, never another group; `main.rs` is the one dispatcher.

pub mod catalog;
pub mod demo;
pub mod heal;
pub mod lifecycle;
pub mod model;
pub mod remote;
pub mod server;
pub mod tenant;
pub mod vault;

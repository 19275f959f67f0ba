//! The on-store formats of docs/FORMAT.md, one module each. Every `parse` returns an error for any byte
//! string and never panics; each has a round-trip property test here and a fuzz target in `fuzz/`.

pub mod config;
pub mod grouped;
pub mod huffman;
pub mod index;
pub mod keyfile;
pub mod object;
pub mod pack;
pub mod rans;
pub mod shard;
pub mod snapshot;
pub mod tenantkey;
pub mod tree;
pub mod wire;

/// Little-endian AAD builder: every AAD starts with a domain label and binds the vault id.
pub(crate) fn aad(label: &str, vault: &crate::ids::VaultId) -> wire::Writer {
    let mut w = wire::Writer::default();
    w.bytes16(label.as_bytes()).bytes(&vault.0);
    w
}

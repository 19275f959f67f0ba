//! The on-store formats of docs/FORMAT.md, one module each. Every `parse` returns an error for any byte
//! string and never panics; each has a round-trip property test here and a fuzz target in `fuzz/`.

pub mod config;
pub mod delta;
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

/// Floating-point element layouts the byte-grouped codec understands. Here, not in `model`, because the
/// pack codecs need it and the format layer sits below the model-file parsers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FloatKind {
    Bf16,
    F16,
    F32,
}

impl FloatKind {
    pub fn size(self) -> usize {
        match self {
            FloatKind::Bf16 | FloatKind::F16 => 2,
            FloatKind::F32 => 4,
        }
    }
    /// Bits of exponent in one element.
    pub fn exponent_bits(self) -> u32 {
        match self {
            FloatKind::Bf16 | FloatKind::F32 => 8,
            FloatKind::F16 => 5,
        }
    }
}

/// Little-endian AAD builder: every AAD starts with a domain label and binds the vault id.
pub(crate) fn aad(label: &str, vault: &crate::ids::VaultId) -> wire::Writer {
    let mut w = wire::Writer::default();
    w.bytes16(label.as_bytes()).bytes(&vault.0);
    w
}

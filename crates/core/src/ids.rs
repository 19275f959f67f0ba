//! Fixed-size identifiers. They print and parse as lower-case hex, which is also how they appear in paths.

use crate::error::{Error, Result};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub const LEN: usize = $len;
            pub fn random() -> Self {
                let mut b = [0u8; $len];
                crate::random::fill_random(&mut b);
                $name(b)
            }
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            pub fn from_hex(text: &str) -> Result<Self> {
                let mut b = [0u8; $len];
                hex::decode_to_slice(text, &mut b)
                    .map_err(|e| Error::malformed(stringify!($name), format!("{text:?} is not {} hex bytes: {e}", $len)))?;
                Ok($name(b))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                out.write_str(&self.to_hex())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(out, "{}({})", stringify!($name), &self.to_hex()[..16.min($len * 2)])
            }
        }
    };
}

id_type!(
    /// Keyed BLAKE3 of a chunk's (or tree's) plaintext, keyed per tenant.
    ChunkId, 32
);
id_type!(
    /// Random id of a pack.
    PackId, 16
);
id_type!(
    /// Random id of a vault, bound into every AAD.
    VaultId, 16
);
id_type!(
    /// Random id of a snapshot.
    SnapshotId, 16
);
id_type!(
    /// Random id of an index file, a key file or a lock.
    ObjectId, 16
);

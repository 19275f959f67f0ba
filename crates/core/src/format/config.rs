//! The vault `config` object: JSON settings plus a MAC under a key derived from the master key.
//!
//! It is parsed before the passphrase is tried (to learn the vault id and the other stores) and its MAC is
//! checked as soon as the master key is known.

use super::wire::{Reader, Writer};
use crate::crypto::SecretKey;
use crate::error::{Error, Result};
use crate::ids::VaultId;
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"MVCF";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Redundancy {
    pub k: u8,
    pub m: u8,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams { min: 256 * 1024, avg: 1024 * 1024, max: 4 * 1024 * 1024 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StoreSpec {
    pub id: String,
    pub url: String,
    /// Failure domain label: stores sharing one can fail together (a disk, a rack, a site).
    pub domain: String,
    /// Share of capacity: placement gives a store shards in proportion to its weight.
    pub weight: u32,
    /// Annual failure rate (a fraction) used by the durability model.
    #[serde(default = "default_afr")]
    pub afr: f64,
    /// Probability that the store answers at a random moment, used by the availability model.
    #[serde(default = "default_availability")]
    pub availability: f64,
}

/// Backblaze's published annualized drive failure rate is about 1.4%; a store is assumed no better.
pub fn default_afr() -> f64 {
    0.014
}

pub fn default_availability() -> f64 {
    0.999
}

impl StoreSpec {
    pub fn new(id: String, url: String, domain: String, weight: u32) -> Self {
        StoreSpec { id, url, domain, weight, afr: default_afr(), availability: default_availability() }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Config {
    pub vault_id: String,
    pub format_version: u32,
    pub created: String,
    pub redundancy: Redundancy,
    pub chunker: ChunkerParams,
    pub pack_size: u64,
    pub stores: Vec<StoreSpec>,
    /// The shared catalog the vault's index lives in (`postgres://HOST:PORT/DB`, never a user or password),
    /// when it is bound to one: writers must use it. Absent for the embedded default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
}

fn mac(mk: &SecretKey, json: &[u8]) -> [u8; 32] {
    *blake3::keyed_hash(mk.derive(&[], "mvault/v1/config").expose(), json).as_bytes()
}

impl Config {
    pub fn vault_id(&self) -> Result<VaultId> {
        VaultId::from_hex(&self.vault_id).map_err(|e| e.in_object("config"))
    }

    pub fn to_bytes(&self, mk: &SecretKey) -> Vec<u8> {
        let json = serde_json::to_vec_pretty(self).expect("config serializes");
        let mut w = Writer::with_header(MAGIC, 1);
        w.bytes32(&json).bytes(&mac(mk, &json));
        w.into_vec()
    }

    /// Parse without the key: returns the config and a token to verify it once the key is known.
    pub fn parse(bytes: &[u8]) -> Result<(Config, ConfigMac)> {
        let mut r = Reader::new(bytes, "config");
        r.header(MAGIC, 1)?;
        let json = r.bytes32()?;
        let tag = r.array::<32>()?;
        r.finish()?;
        let c: Config = serde_json::from_slice(json).map_err(|e| Error::malformed("config", e.to_string()))?;
        if c.format_version != FORMAT_VERSION {
            return Err(Error::malformed(
                "config",
                format!("format version {} (this build reads {FORMAT_VERSION})", c.format_version),
            ));
        }
        c.vault_id()?;
        c.validate()?;
        Ok((c, ConfigMac { json: json.to_vec(), tag }))
    }

    pub fn validate(&self) -> Result<()> {
        let ch = self.chunker;
        if !(ch.min >= 64 && ch.min <= ch.avg && ch.avg <= ch.max && ch.max <= 16 * 1024 * 1024) {
            return Err(Error::malformed("config", format!("chunker parameters out of range: {ch:?}")));
        }
        let r = &self.redundancy;
        if r.k == 0 || (r.k as usize + r.m as usize) > 255 {
            return Err(Error::malformed("config", format!("redundancy k={} m={} out of range", r.k, r.m)));
        }
        if self.pack_size < 64 * 1024 || self.pack_size > 1024 * 1024 * 1024 {
            return Err(Error::malformed("config", format!("pack size {} out of range", self.pack_size)));
        }
        if self.stores.is_empty() {
            return Err(Error::malformed("config", "lists no stores"));
        }
        Ok(())
    }
}

/// What the config's MAC covers, kept until the master key is known.
pub struct ConfigMac {
    json: Vec<u8>,
    tag: [u8; 32],
}

impl ConfigMac {
    pub fn verify(&self, mk: &SecretKey) -> Result<()> {
        // Constant-time comparison: blake3::Hash's PartialEq is constant time.
        if blake3::Hash::from(mac(mk, &self.json)) != blake3::Hash::from(self.tag) {
            return Err(Error::corrupt("config", "MAC does not verify under this vault's master key (altered config)"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Config {
        Config {
            vault_id: VaultId::random().to_hex(),
            format_version: 1,
            created: "2026-01-01T00:00:00Z".into(),
            redundancy: Redundancy { k: 1, m: 0 },
            chunker: ChunkerParams::default(),
            pack_size: 16 << 20,
            stores: vec![StoreSpec::new("s0".into(), "fs:/x".into(), "d0".into(), 1)],
            catalog: None,
        }
    }

    #[test]
    fn a_binding_is_written_only_when_there_is_one() {
        let mk = SecretKey::random();
        let plain = sample();
        let json = String::from_utf8_lossy(&plain.to_bytes(&mk)).into_owned();
        assert!(!json.contains("catalog"), "an unbound config is byte-for-byte what it was before bindings");
        let bound = Config { catalog: Some("postgres://db:5432/mv".into()), ..plain };
        let (back, mac) = Config::parse(&bound.to_bytes(&mk)).unwrap();
        mac.verify(&mk).unwrap();
        assert_eq!(back.catalog.as_deref(), Some("postgres://db:5432/mv"));
    }

    #[test]
    fn round_trip_and_mac() {
        let mk = SecretKey::random();
        let c = sample();
        let b = c.to_bytes(&mk);
        let (p, m) = Config::parse(&b).unwrap();
        assert_eq!(p, c);
        m.verify(&mk).unwrap();
        assert!(m.verify(&SecretKey::random()).is_err());
        let mut bad = b.clone();
        let i = b.len() - 40;
        bad[i] ^= 1;
        if let Ok((_, m)) = Config::parse(&bad) {
            assert!(m.verify(&mk).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = Config::parse(&bytes);
        }
    }
}

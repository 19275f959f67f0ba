//! Key files `keys/<id>`: JSON around a master key wrapped by a passphrase-derived KEK.

use crate::crypto::{KdfParams, SecretKey, NONCE_LEN};
use crate::error::{Error, Result};
use crate::ids::{ObjectId, VaultId};
use crate::random::fill_random;
use serde::{Deserialize, Serialize};

const MAGIC: &str = "mvault-key";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Kdf {
    pub algorithm: String,
    #[serde(flatten)]
    pub params: KdfParams,
    pub salt: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyFile {
    pub magic: String,
    pub version: u32,
    pub id: String,
    pub created: String,
    pub host: String,
    pub user: String,
    pub kdf: Kdf,
    pub nonce: String,
    pub wrapped_master_key: String,
}

fn aad(vault: &VaultId, key_id: &str) -> Vec<u8> {
    let mut w = super::aad("mvault/v1/keyfile", vault);
    w.bytes16(key_id.as_bytes());
    w.into_vec()
}

impl KeyFile {
    /// Wrap `mk` under a new passphrase.
    pub fn create(
        vault: &VaultId,
        mk: &SecretKey,
        passphrase: &[u8],
        params: KdfParams,
        host: &str,
        user: &str,
    ) -> Result<KeyFile> {
        let id = ObjectId::random().to_hex();
        let mut salt = [0u8; 32];
        fill_random(&mut salt);
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let kek = params.derive_kek(passphrase, &salt)?;
        let wrapped = kek.aead().seal(nonce, &aad(vault, &id), mk.expose());
        Ok(KeyFile {
            magic: MAGIC.into(),
            version: 1,
            id,
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            host: host.into(),
            user: user.into(),
            kdf: Kdf { algorithm: "argon2id".into(), params, salt: hex::encode(salt) },
            nonce: hex::encode(nonce),
            wrapped_master_key: hex::encode(wrapped),
        })
    }

    /// Try to unwrap the master key. `Ok(None)` means "not this passphrase".
    pub fn unwrap(&self, vault: &VaultId, passphrase: &[u8]) -> Result<Option<SecretKey>> {
        let what = format!("keys/{}", self.id);
        let salt = hex::decode(&self.kdf.salt).map_err(|e| Error::malformed(&what, format!("salt: {e}")))?;
        let mut nonce = [0u8; NONCE_LEN];
        hex::decode_to_slice(&self.nonce, &mut nonce).map_err(|e| Error::malformed(&what, format!("nonce: {e}")))?;
        let wrapped =
            hex::decode(&self.wrapped_master_key).map_err(|e| Error::malformed(&what, format!("wrapped key: {e}")))?;
        let kek = self.kdf.params.derive_kek(passphrase, &salt).map_err(|e| e.in_object(&what))?;
        match kek.aead().open(nonce, &aad(vault, &self.id), wrapped.as_slice(), &what) {
            Ok(mut mk) => {
                let mut b = [0u8; 32];
                b.copy_from_slice(&mk);
                zeroize::Zeroize::zeroize(&mut mk);
                let key = SecretKey::from_bytes(b);
                zeroize::Zeroize::zeroize(&mut b);
                Ok(Some(key))
            }
            Err(_) => Ok(None),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("key file serializes")
    }

    pub fn parse(bytes: &[u8]) -> Result<KeyFile> {
        let k: KeyFile = serde_json::from_slice(bytes).map_err(|e| Error::malformed("key file", e.to_string()))?;
        if k.magic != MAGIC {
            return Err(Error::malformed("key file", format!("bad magic {:?}", k.magic)));
        }
        if k.version != 1 {
            return Err(Error::malformed("key file", format!("unsupported version {}", k.version)));
        }
        if k.kdf.algorithm != "argon2id" {
            return Err(Error::malformed("key file", format!("unknown kdf {:?}", k.kdf.algorithm)));
        }
        k.kdf.params.validate()?;
        let lens = [
            (&k.id, 16, "id"),
            (&k.kdf.salt, 32, "salt"),
            (&k.nonce, 12, "nonce"),
            (&k.wrapped_master_key, 48, "wrapped_master_key"),
        ];
        for (v, n, name) in lens {
            if v.len() != n * 2 || hex::decode(v).is_err() {
                return Err(Error::malformed("key file", format!("{name} must be {n} hex bytes")));
            }
        }
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfParams = KdfParams { m_kib: 64, t: 1, p: 1 };

    #[test]
    fn unwrap_with_right_and_wrong_passphrase() {
        let v = VaultId::random();
        let mk = SecretKey::random();
        let kf = KeyFile::create(&v, &mk, b"secret", CHEAP, "h", "u").unwrap();
        let parsed = KeyFile::parse(&kf.to_bytes()).unwrap();
        assert_eq!(parsed, kf);
        assert_eq!(parsed.unwrap(&v, b"secret").unwrap().unwrap(), mk);
        assert!(parsed.unwrap(&v, b"wrong").unwrap().is_none());
        assert!(parsed.unwrap(&VaultId::random(), b"secret").unwrap().is_none(), "bound to its vault");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = KeyFile::parse(&bytes);
        }
    }
}

//! API tokens and roles (DESIGN.md section 8).
//!
//! A token is `mvt_<id>_<secret>`: a 64-bit id that names its record and a 256-bit random secret. The
//! token is shown once, when it is made; the vault keeps only the BLAKE3 hash of the secret, in a record
//! sealed by the system tenant under `system/tokens/<id>`, and compares hashes in constant time.

use mvault_core::format::object::Kind;
use mvault_core::random::fill_random;
use mvault_core::Repo;
use mvault_core::{Error, Result};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything a writer can do, plus the tenant's tokens.
    Admin,
    /// Back up, restore, list, forget.
    Writer,
    /// Restore and list.
    Reader,
    /// Add snapshots only: never forget, prune or read data back (training nodes).
    Appender,
    /// The system role: tenants, quotas, tokens, audit and metrics, and no data endpoint at all.
    Operator,
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(text: &str) -> Result<Role> {
        Ok(match text {
            "admin" => Role::Admin,
            "writer" => Role::Writer,
            "reader" => Role::Reader,
            "appender" => Role::Appender,
            "operator" => Role::Operator,
            _ => return Err(Error::Usage(format!("role {text:?}: use admin, writer, reader, appender or operator"))),
        })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        out.write_str(match self {
            Role::Admin => "admin",
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Appender => "appender",
            Role::Operator => "operator",
        })
    }
}

/// What a request does; each endpoint names one. The role table below is the one place access is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Tenants: create, list, delete, quotas; the audit log; metrics.
    System,
    /// Make, list and revoke tokens.
    Tokens,
    /// The tenant's own record and usage, and the key ChunkIds are made with.
    TenantInfo,
    /// List snapshots and read their records.
    ListSnapshots,
    /// Read trees and chunks back (restore, ls, diff).
    ReadData,
    /// Ask which chunks are missing, upload them, add a snapshot.
    Append,
    /// Remove snapshots.
    Forget,
}

impl Role {
    /// The role table of docs/API.md.
    pub fn may(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Operator => matches!(action, System | Tokens),
            Role::Admin => !matches!(action, System),
            Role::Writer => matches!(action, TenantInfo | ListSnapshots | ReadData | Append | Forget),
            Role::Reader => matches!(action, TenantInfo | ListSnapshots | ReadData),
            Role::Appender => matches!(action, TenantInfo | ListSnapshots | Append),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenRecord {
    pub id: String,
    /// None for operator tokens.
    pub tenant: Option<String>,
    pub role: Role,
    /// BLAKE3 of the secret, hex.
    pub hash: String,
    pub created: u64,
    /// Unix seconds after which the token is refused.
    pub expires: Option<u64>,
    #[serde(default)]
    pub revoked: bool,
    #[serde(default)]
    pub label: String,
    /// For S3 access keys (`token create --s3`): the secret access key itself, since SigV4 signs with it
    /// (the record is sealed by the system tenant, like every record under `system/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_secret: Option<String>,
}

impl TokenRecord {
    /// The record as listed: everything but the hash.
    pub fn public(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "tenant": self.tenant, "role": self.role, "created": self.created,
            "expires": self.expires, "revoked": self.revoked, "label": self.label,
            "access_key_id": self.s3_secret.as_ref().map(|_| access_key_id(&self.id)),
        })
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn path(id: &str) -> String {
    format!("system/tokens/{id}")
}

/// Make a token: returns the token string (shown once) and its record, already saved.
pub fn create(
    sys: &Repo,
    tenant: Option<&str>,
    role: Role,
    ttl: Option<u64>,
    label: &str,
) -> Result<(String, TokenRecord)> {
    if (role == Role::Operator) != tenant.is_none() {
        return Err(Error::Usage(if role == Role::Operator {
            "an operator token belongs to no tenant".into()
        } else {
            format!("a {role} token needs a tenant")
        }));
    }
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    fill_random(&mut id);
    fill_random(&mut secret);
    let rec = TokenRecord {
        id: hex::encode(id),
        tenant: tenant.map(str::to_string),
        role,
        hash: blake3::hash(&secret).to_hex().to_string(),
        created: now(),
        expires: ttl.map(|t| now().saturating_add(t)),
        revoked: false,
        label: label.to_string(),
        s3_secret: None,
    };
    save(sys, &rec)?;
    Ok((format!("mvt_{}_{}", rec.id, hex::encode(secret)), rec))
}

/// Make a token or, with `s3`, an S3 access key: the record, and what its maker is shown once (the token,
/// or the access key id and secret access key), as JSON.
pub fn issue(
    sys: &Repo,
    tenant: Option<&str>,
    role: Role,
    ttl: Option<u64>,
    label: &str,
    s3: bool,
) -> Result<(serde_json::Value, TokenRecord)> {
    if s3 {
        let tenant =
            tenant.ok_or_else(|| Error::Usage("an S3 key belongs to a tenant: name it with --tenant".into()))?;
        let (key_id, secret, rec) = create_s3(sys, tenant, role, ttl, label)?;
        let mut v = rec.public();
        v["access_key_id"] = serde_json::json!(key_id);
        v["secret_access_key"] = serde_json::json!(secret);
        return Ok((v, rec));
    }
    let (token, rec) = create(sys, tenant, role, ttl, label)?;
    let mut v = rec.public();
    v["token"] = serde_json::json!(token);
    Ok((v, rec))
}

/// Make an S3 access key: a token record that also keeps its secret for SigV4. Returns the access key id
/// and the secret access key (shown once) and the saved record.
pub fn create_s3(
    sys: &Repo,
    tenant: &str,
    role: Role,
    ttl: Option<u64>,
    label: &str,
) -> Result<(String, String, TokenRecord)> {
    if role == Role::Operator {
        return Err(Error::Usage("S3 keys reach a tenant's buckets; an operator has none: pick another role".into()));
    }
    let (_, mut rec) = create(sys, Some(tenant), role, ttl, label)?;
    let mut secret = [0u8; 32];
    fill_random(&mut secret);
    let secret = hex::encode(secret);
    rec.hash = blake3::hash(secret.as_bytes()).to_hex().to_string();
    rec.s3_secret = Some(secret.clone());
    save(sys, &rec)?;
    Ok((access_key_id(&rec.id), secret, rec))
}

/// The S3 access key id of a token record: `MV` and its id in capitals (AWS clients expect capitals).
pub fn access_key_id(id: &str) -> String {
    format!("MV{}", id.to_ascii_uppercase())
}

/// The token id an access key id names, if it has the exact form.
pub fn token_id_of_access_key(key: &str) -> Option<String> {
    let id = key.strip_prefix("MV")?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)))
        .then(|| id.to_ascii_lowercase())
}

pub fn save(sys: &Repo, rec: &TokenRecord) -> Result<()> {
    sys.write_sealed(Kind::System, &path(&rec.id), &serde_json::to_vec(rec).expect("token record serializes"))
}

pub fn load(sys: &Repo, id: &str) -> Result<TokenRecord> {
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::not_found(format!("token {id}")));
    }
    let bytes = sys.read_sealed(Kind::System, &path(id))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::malformed("token record", e.to_string()))
}

pub fn list(sys: &Repo) -> Result<Vec<TokenRecord>> {
    let mut out = Vec::new();
    for name in sys.list_meta("system/tokens")? {
        out.push(load(sys, name.rsplit('/').next().unwrap_or_default())?);
    }
    out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    Ok(out)
}

/// Split a token into (id, secret). Anything not of the exact form is malformed.
pub fn parse(token: &str) -> Option<(&str, [u8; 32])> {
    let rest = token.strip_prefix("mvt_")?;
    let (id, secret_hex) = rest.split_once('_')?;
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return None;
    }
    let mut secret = [0u8; 32];
    hex::decode_to_slice(secret_hex, &mut secret).ok()?;
    Some((id, secret))
}

/// Why a token was refused (only ever written to the audit log; the client sees one 401 for all).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Malformed,
    Unknown,
    Forged,
    Revoked,
    Expired,
    TenantGone,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        out.write_str(match self {
            Refused::Missing => "no bearer token",
            Refused::Malformed => "malformed token",
            Refused::Unknown => "unknown token id",
            Refused::Forged => "token secret does not match",
            Refused::Revoked => "token revoked",
            Refused::Expired => "token expired",
            Refused::TenantGone => "token's tenant no longer exists",
        })
    }
}

/// Check a presented secret against a record: constant-time hash comparison, then revocation and expiry.
pub fn check(rec: &TokenRecord, secret: &[u8; 32]) -> std::result::Result<(), Refused> {
    let presented = blake3::hash(secret);
    let mut stored = [0u8; 32];
    if hex::decode_to_slice(&rec.hash, &mut stored).is_err() || !bool::from(presented.as_bytes().ct_eq(&stored)) {
        return Err(Refused::Forged);
    }
    if rec.revoked {
        return Err(Refused::Revoked);
    }
    if rec.expires.is_some_and(|e| now() >= e) {
        return Err(Refused::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(secret: &[u8; 32]) -> TokenRecord {
        TokenRecord {
            id: "0123456789abcdef".into(),
            tenant: Some("a".into()),
            role: Role::Writer,
            hash: blake3::hash(secret).to_hex().to_string(),
            created: now(),
            expires: None,
            revoked: false,
            label: String::new(),
            s3_secret: None,
        }
    }

    #[test]
    fn tokens_parse_only_in_their_exact_form() {
        let good = format!("mvt_0123456789abcdef_{}", "ab".repeat(32));
        assert!(parse(&good).is_some());
        for bad in [
            "",
            "mvt_",
            "mvt_0123456789abcdef",
            &format!("mvt_0123456789ABCDEF_{}", "ab".repeat(32)),
            &format!("mvt_0123456789abcde_{}", "ab".repeat(32)),
            &format!("mvt_0123456789abcdef_{}", "ab".repeat(31)),
            &format!("mvt_0123456789abcdef_{}zz", "ab".repeat(31)),
            &format!("xvt_0123456789abcdef_{}", "ab".repeat(32)),
        ] {
            assert!(parse(bad).is_none(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn access_key_ids_map_to_token_ids_exactly() {
        assert_eq!(access_key_id("0123456789abcdef"), "MV0123456789ABCDEF");
        assert_eq!(token_id_of_access_key("MV0123456789ABCDEF").as_deref(), Some("0123456789abcdef"));
        for bad in ["", "MV", "MV0123456789abcdef", "MV0123456789ABCDE", "AK0123456789ABCDEF", "MV0123456789ABCDEFA"] {
            assert_eq!(token_id_of_access_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_secret_is_checked_then_revocation_and_expiry() {
        let secret = [7u8; 32];
        let mut rec = record(&secret);
        assert_eq!(check(&rec, &secret), Ok(()));
        let mut forged = secret;
        forged[31] ^= 1;
        assert_eq!(check(&rec, &forged), Err(Refused::Forged));
        rec.expires = Some(now() - 1);
        assert_eq!(check(&rec, &secret), Err(Refused::Expired));
        rec.expires = None;
        rec.revoked = true;
        assert_eq!(check(&rec, &secret), Err(Refused::Revoked));
    }

    #[test]
    fn the_role_table_keeps_operators_from_data_and_appenders_from_deleting() {
        use Action::*;
        let all = [System, Tokens, TenantInfo, ListSnapshots, ReadData, Append, Forget];
        for a in all {
            assert_eq!(Role::Operator.may(a), matches!(a, System | Tokens), "operator {a:?}");
        }
        assert!(!Role::Appender.may(Forget) && !Role::Appender.may(ReadData) && Role::Appender.may(Append));
        assert!(!Role::Reader.may(Append) && !Role::Reader.may(Forget) && Role::Reader.may(ReadData));
        assert!(Role::Writer.may(Forget) && !Role::Writer.may(Tokens) && !Role::Writer.may(System));
        assert!(Role::Admin.may(Tokens) && !Role::Admin.may(System));
    }
}

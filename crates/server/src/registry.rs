//! The tenant registry: one record per tenant under `system/tenants/<name>` (sealed by the system tenant)
//! with its quotas and rate limits. A tenant's keys live apart, under `tenants/<name>/keys/` (core).

use mvault_core::format::object::Kind;
use mvault_core::Repo;
use mvault_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Limits of a tenant; `None` is unlimited.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    /// Stored bytes after dedup and compression (before redundancy).
    pub max_bytes: Option<u64>,
    pub max_snapshots: Option<u64>,
    /// Requests per second, per token.
    pub requests_per_second: Option<f64>,
    /// Uploaded and downloaded bytes per second, per token.
    pub bytes_per_second: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TenantRecord {
    pub name: String,
    pub created: u64,
    #[serde(default)]
    pub limits: Limits,
}

fn path(name: &str) -> String {
    format!("system/tenants/{name}")
}

pub fn save(sys: &Repo, rec: &TenantRecord) -> Result<()> {
    sys.write_sealed(Kind::System, &path(&rec.name), &serde_json::to_vec(rec).expect("tenant record serializes"))
}

pub fn load(sys: &Repo, name: &str) -> Result<TenantRecord> {
    if !mvault_core::tenants::valid_name(name) {
        return Err(Error::not_found(format!("tenant {name}")));
    }
    let bytes = sys.read_sealed(Kind::System, &path(name)).map_err(|e| match e {
        Error::NotFound { .. } => Error::not_found(format!("tenant {name}")),
        e => e,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::malformed("tenant record", e.to_string()))
}

pub fn list(sys: &Repo) -> Result<Vec<TenantRecord>> {
    let mut out = Vec::new();
    for name in sys.list_meta("system/tenants")? {
        out.push(load(sys, name.rsplit('/').next().unwrap_or_default())?);
    }
    Ok(out)
}

/// Create a tenant: its first key (core), then its record.
pub fn create(base: &Repo, sys: &Repo, name: &str, limits: Limits) -> Result<TenantRecord> {
    if !mvault_core::tenants::valid_name(name) {
        return Err(Error::Usage(format!(
            "tenant name {name:?}: use 1-63 of a-z, 0-9 and '-', starting with a letter or digit"
        )));
    }
    if load(sys, name).is_ok() {
        return Err(Error::Usage(format!("tenant {name} exists already")));
    }
    base.create_tenant(name)?;
    let rec = TenantRecord { name: name.into(), created: crate::auth::now(), limits };
    save(sys, &rec)?;
    Ok(rec)
}

/// Crypto-shred a tenant: keys first (its data is unreadable from that moment), then its data, then its
/// tokens and its record. Returns (key objects, data objects) deleted.
pub fn shred(base: &Repo, sys: &Repo, name: &str) -> Result<(u64, u64)> {
    load(sys, name)?;
    let counts = base.shred_tenant(name)?;
    for mut t in crate::auth::list(sys)?.into_iter().filter(|t| t.tenant.as_deref() == Some(name)) {
        t.revoked = true;
        crate::auth::save(sys, &t)?;
    }
    sys.delete_meta(&path(name))?;
    Ok(counts)
}

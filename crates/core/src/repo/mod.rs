//! The repository layer: the `Repo` type, which opens a vault (config, key files, tenant keys, index) and
//! reads and writes its objects: packs as shards on their placed stores, metadata objects on every store.
//!
//! This file holds the type, `init` and `open`; its methods are split by idea over child files, each an
//! `impl Repo` block that reaches the type only through `super`: `meta.rs` (metadata objects and the
//! down-store set), `keys.rs`, `chunk_index.rs`, `snapshots.rs`, `members.rs` (store add and remove), `packs.rs`,
//! `heal.rs` (scrub, repair, rebalance, status), `locks.rs`, `tenants.rs`; `buckets.rs` is the bucket log and
//! `blobs.rs` the `BlobSource` trait.

mod blobs;
pub mod buckets;
mod chunk_index;
pub mod heal;
mod keys;
pub mod locks;
mod members;
mod meta;
pub mod packs;
mod snapshots;
pub mod tenants;

pub use blobs::BlobSource;
pub use chunk_index::IndexSummary;

use crate::catalog::{Catalog, CatalogArg};
use crate::crypto::{KdfParams, SecretKey, TenantKeys};
use crate::error::{Error, Result};
use crate::format::config::{ChunkerParams, Config, Redundancy, FORMAT_VERSION};
use crate::format::keyfile::KeyFile;
use crate::format::snapshot::Snapshot;
use crate::format::tenantkey;
use crate::ids::{SnapshotId, VaultId};
use crate::redundancy;
use crate::store::{self, Store};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The tenant of local (non-server) use.
pub const DEFAULT_TENANT: &str = "default";
/// Largest plaintext of a metadata object we accept to decompress (index files, snapshots).
pub(crate) const MAX_META_PLAIN: usize = 1 << 30;

pub struct InitOptions {
    pub kdf: KdfParams,
    pub chunker: ChunkerParams,
    pub pack_size: u64,
    pub k: u8,
    pub m: u8,
    /// Additional store URLs beyond the location itself.
    pub extra_stores: Vec<store::StoreArg>,
    /// Where the chunk index is kept (the library's default is memory; the CLI's is the embedded catalog).
    pub catalog: CatalogArg,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            kdf: KdfParams::default(),
            chunker: ChunkerParams::default(),
            pack_size: 16 << 20,
            k: 1,
            m: 0,
            extra_stores: vec![],
            catalog: CatalogArg::Memory,
        }
    }
}

pub struct Repo {
    pub location: String,
    pub(crate) stores: Vec<Arc<dyn Store>>,
    pub config: Config,
    pub vault_id: VaultId,
    pub(crate) mk: SecretKey,
    /// The key file this session opened the vault with.
    pub key_id: String,
    pub tenant: String,
    pub(crate) keys: BTreeMap<u32, TenantKeys>,
    /// The tenant's chunk index (catalog/): lookups go there, never to an in-process copy of every file.
    pub(crate) catalog: Catalog,
    /// Index files that could not be read; their chunks are treated as absent (a backup re-stores them).
    pub index_errors: Vec<Error>,
    pub(crate) packs: crate::repo::packs::PackCache,
    /// Why this session may not change the index, when the vault is bound to a shared catalog other than
    /// the one it was opened with (`Repo::require_bound_catalog`).
    pub(crate) catalog_refusal: Option<String>,
    /// Stores that failed an operation in this session, with the failure that took each down: they count as
    /// down until the command ends, and a later refusal to use one says why.
    pub(crate) down: Mutex<HashMap<usize, String>>,
}

pub(crate) fn user_and_host() -> (String, String) {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    (user, hostname())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The current time; in the test binary only (`fault::enable_test_hooks`), `MVAULT_TEST_NOW` (RFC 3339)
/// when set: the tests' fake clock for snapshot times, retention and snapshot locks. Vault locks always use
/// the real clock.
pub fn now() -> std::time::SystemTime {
    crate::fault::fake_now().unwrap_or_else(std::time::SystemTime::now)
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(now()).to_string()
}

/// Why a session opened with `given` may not change the index of a vault bound to another catalog.
fn refusal(config: &Config, given: &CatalogArg) -> Option<String> {
    let bound = config.catalog.as_ref()?;
    (given.binding().as_ref() != Some(bound)).then(|| {
        format!(
            "this vault's index lives in the catalog {bound}, and this command was given --catalog {given}: pass \
             --catalog (or MVAULT_CATALOG) with that database's URL, or `mvault catalog bind` another"
        )
    })
}

/// How `Repo::open_with` opens a vault. The library's default catalog is memory (nothing written outside
/// the stores); the CLI and the server pass the embedded one or PostgreSQL.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Stores (by id or URL) to treat as lost: never read or written (`drill --without-store`).
    pub without: Vec<String>,
    /// Where the chunk index is kept.
    pub catalog: CatalogArg,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { without: vec![], catalog: CatalogArg::Memory }
    }
}

/// Snapshots with their ids, oldest first.
pub type SnapshotList = Vec<(SnapshotId, Snapshot)>;

impl Repo {
    /// Make a new vault at `location` (and any extra stores), protected by `passphrase`.
    pub fn init(location: &str, passphrase: &[u8], opts: &InitOptions) -> Result<Repo> {
        // The vault location is a store too, unless it is one of those listed.
        let mut args: Vec<store::StoreArg> = Vec::new();
        let loc_url = store::normalize_url(location)?;
        if !opts.extra_stores.iter().any(|a| store::normalize_url(&a.url).ok().as_deref() == Some(&loc_url)) {
            args.push(store::StoreArg { url: loc_url.clone(), ..Default::default() });
        }
        for a in &opts.extra_stores {
            let url = store::normalize_url(&a.url)?;
            if args.iter().any(|b| b.url == url) {
                return Err(Error::Usage(format!("store {url} is given twice")));
            }
            args.push(store::StoreArg { url, ..a.clone() });
        }
        let urls: Vec<String> = args.iter().map(|a| a.url.clone()).collect();
        let stores: Vec<Arc<dyn Store>> = urls.iter().map(|u| store::open(u)).collect::<Result<_>>()?;
        for s in &stores {
            s.create()?;
            if s.exists("config")? {
                return Err(Error::AlreadyExists(s.url().to_string()));
            }
        }
        redundancy::split(&[], opts.k, opts.m)?;
        let vault_id = VaultId::random();
        let config = Config {
            vault_id: vault_id.to_hex(),
            format_version: FORMAT_VERSION,
            created: now_rfc3339(),
            redundancy: Redundancy { k: opts.k, m: opts.m },
            chunker: opts.chunker,
            pack_size: opts.pack_size,
            stores: args.iter().enumerate().map(|(i, a)| a.to_spec(format!("s{i}"))).collect(),
            catalog: opts.catalog.binding(),
        };
        config.validate()?;
        if (opts.k as usize + opts.m as usize) > stores.len() {
            return Err(Error::Usage(format!(
                "k+m = {} shards need at least that many stores; {} given",
                opts.k + opts.m,
                stores.len()
            )));
        }
        let mk = SecretKey::random();
        let (user, host) = user_and_host();
        let kf = KeyFile::create(&vault_id, &mk, passphrase, opts.kdf, &host, &user)?;
        let secret = tenantkey::TenantSecret { tk: SecretKey::random(), id_seed: SecretKey::random() };
        let mut repo = Repo {
            location: location.to_string(),
            stores,
            vault_id,
            key_id: kf.id.clone(),
            tenant: DEFAULT_TENANT.into(),
            keys: BTreeMap::from([(1, TenantKeys::derive(1, &secret.tk, &secret.id_seed))]),
            catalog: Catalog::new(opts.catalog.open(&vault_id.to_hex())?, &vault_id.to_hex(), DEFAULT_TENANT)?,
            catalog_refusal: None,
            index_errors: vec![],
            packs: Default::default(),
            down: Mutex::default(),
            config,
            mk,
        };
        // Keys first, config last: a vault is only a vault once its config is there.
        repo.write_meta(&format!("keys/{}", kf.id), &kf.to_bytes())?;
        repo.write_meta(
            &repo.tenant_key_path(1),
            &tenantkey::wrap(&repo.vault_id, &repo.mk, DEFAULT_TENANT, 1, &secret),
        )?;
        let cfg = repo.config.to_bytes(&repo.mk);
        repo.write_meta("config", &cfg)?;
        repo.index_errors.clear();
        Ok(repo)
    }

    /// Open an existing vault: any of its stores can be given as `location`.
    pub fn open(location: &str, passphrase: &[u8]) -> Result<Repo> {
        Self::open_with(location, passphrase, &OpenOptions::default())
    }

    /// Open with a catalog of the caller's choosing, or as if the named stores were lost.
    pub fn open_with(location: &str, passphrase: &[u8], opts: &OpenOptions) -> Result<Repo> {
        let without = &opts.without;
        let first = store::open(location)?;
        let cfg_bytes = match first.get("config") {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => return Err(Error::NoVault(first.url().to_string())),
            Err(Error::Store { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoVault(first.url().to_string()))
            }
            Err(e) => return Err(e),
        };
        let (config, mac) = Config::parse(&cfg_bytes)
            .map_err(|e| Error::Foreign { location: first.url().to_string(), reason: e.to_string() })?;
        let vault_id = config.vault_id()?;
        // The store we were given stands in for its own entry; the others come from the config.
        let mut stores: Vec<Arc<dyn Store>> = Vec::new();
        for spec in &config.stores {
            if spec.url == first.url() || config.stores.len() == 1 {
                stores.push(store::open(first.url())?);
            } else {
                stores.push(store::open(&spec.url)?);
            }
        }
        let mut keyfiles = Vec::new();
        for name in first.list("keys")? {
            if name.contains(".tmp-") {
                continue;
            }
            let kf = KeyFile::parse(&first.get(&name)?).map_err(|e| e.in_object(&name))?;
            keyfiles.push(kf);
        }
        // A key file opens the vault when its master key unwraps and authenticates the config. (After an
        // interrupted `key rotate` a key file may hold the previous master key: it is skipped.)
        let mut opened = None;
        let mut mac_error = None;
        for kf in &keyfiles {
            if let Some(mk) = kf.unwrap(&vault_id, passphrase)? {
                match mac.verify(&mk) {
                    Ok(()) => {
                        opened = Some((mk, kf.id.clone()));
                        break;
                    }
                    Err(e) => mac_error = Some(e.in_object(&format!("{}/config", first.url()))),
                }
            }
        }
        let (mk, key_id) = match (opened, mac_error) {
            (Some(o), _) => o,
            (None, Some(e)) => return Err(e),
            (None, None) => return Err(Error::WrongPassphrase { vault: first.url().to_string() }),
        };
        let mut repo = Repo {
            location: location.to_string(),
            stores,
            vault_id,
            key_id,
            tenant: DEFAULT_TENANT.into(),
            keys: BTreeMap::new(),
            catalog: Catalog::new(opts.catalog.open(&config.vault_id)?, &config.vault_id, DEFAULT_TENANT)?,
            catalog_refusal: refusal(&config, &opts.catalog),
            index_errors: vec![],
            packs: Default::default(),
            down: Mutex::default(),
            config,
            mk,
        };
        for w in without {
            let i = repo
                .config
                .stores
                .iter()
                .position(|s| &s.id == w || &s.url == w)
                .ok_or_else(|| Error::not_found(format!("store {w}")))?;
            if repo.stores[i].url() == first.url() {
                return Err(Error::Usage(format!(
                    "store {w} is the one given with --vault; open from a store that is not excluded"
                )));
            }
            repo.down.lock().expect("down set").insert(i, "left out (drill --without-store)".into());
        }
        repo.load_tenant_keys()?;
        repo.load_index()?;
        Ok(repo)
    }

    /// The same vault, stores and catalog as another tenant, with no keys loaded and its index not synced.
    pub(crate) fn sibling(&self, tenant: &str) -> Result<Repo> {
        Ok(Repo {
            location: self.location.clone(),
            stores: self.stores.clone(),
            vault_id: self.vault_id,
            key_id: self.key_id.clone(),
            tenant: tenant.to_string(),
            keys: BTreeMap::new(),
            catalog: self.catalog.for_tenant(&self.config.vault_id, tenant)?,
            catalog_refusal: self.catalog_refusal.clone(),
            index_errors: vec![],
            packs: Default::default(),
            down: Mutex::new(self.down.lock().expect("down set").clone()),
            config: self.config.clone(),
            mk: self.mk.clone(),
        })
    }

    /// This tenant's keys, stores and catalog without the borrow: for a long write (an S3 object) that must
    /// not hold a lock on the shared repo. Its index files go to the same catalog.
    pub fn view_without_index(&self) -> Result<Repo> {
        let mut r = self.sibling(&self.tenant)?;
        r.keys = self.keys.clone();
        Ok(r)
    }

    pub fn stores(&self) -> &[Arc<dyn Store>] {
        &self.stores
    }

    // ---- metadata objects: on every store, read from the first copy that verifies ----

    // ---- index ----

    // ---- the store set ----

    // ---- trees ----

    // ---- snapshots ----

    // ---- key files ----
}

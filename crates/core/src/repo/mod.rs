//! The repository layer: opens a vault (config, key files, tenant keys, index) and reads and writes its
//! objects: packs as shards on their placed stores, metadata objects on every store.

mod blobs;
pub mod buckets;
pub mod heal;
pub mod locks;
pub mod packs;
pub mod tenants;

pub use blobs::BlobSource;

use crate::crypto::{KdfParams, SecretKey, TenantKeys};
use crate::error::{Error, Result};
use crate::format::config::{ChunkerParams, Config, Redundancy, StoreSpec, FORMAT_VERSION};
use crate::format::index::Location;
use crate::format::keyfile::KeyFile;
use crate::format::object::{self, Kind};
use crate::format::snapshot::Snapshot;
use crate::format::{index, tenantkey, tree};
use crate::ids::PackId;
use crate::ids::{ChunkId, ObjectId, SnapshotId, VaultId};
use crate::redundancy;
use crate::store::{self, Store};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The tenant of local (non-server) use.
pub const DEFAULT_TENANT: &str = "default";
/// Largest plaintext of a metadata object we accept to decompress (index files, snapshots).
const MAX_META_PLAIN: usize = 1 << 30;

pub struct InitOptions {
    pub kdf: KdfParams,
    pub chunker: ChunkerParams,
    pub pack_size: u64,
    pub k: u8,
    pub m: u8,
    /// Additional store URLs beyond the location itself.
    pub extra_stores: Vec<store::StoreArg>,
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
    index: HashMap<ChunkId, Location>,
    /// Index files that could not be read; their chunks are treated as absent (a backup re-stores them).
    pub index_errors: Vec<Error>,
    pub(crate) packs: crate::repo::packs::PackCache,
    /// Stores that failed an operation in this session, with the failure that took each down: they count as
    /// down until the command ends, and a later refusal to use one says why.
    pub(crate) down: Mutex<HashMap<usize, String>>,
}

fn user_and_host() -> (String, String) {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    (user, hostname())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The current time, or `MVAULT_TEST_NOW` (RFC 3339) when set: the tests' fake clock for snapshot times,
/// retention and snapshot locks. Vault locks always use the real clock.
pub fn now() -> std::time::SystemTime {
    std::env::var("MVAULT_TEST_NOW")
        .ok()
        .and_then(|s| humantime::parse_rfc3339_weak(&s).ok())
        .unwrap_or_else(std::time::SystemTime::now)
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(now()).to_string()
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
            index: HashMap::new(),
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
        Self::open_without(location, passphrase, &[])
    }

    /// Open as if the named stores (by id or URL) were lost: they are never read or written.
    pub fn open_without(location: &str, passphrase: &[u8], without: &[String]) -> Result<Repo> {
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
            index: HashMap::new(),
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

    /// The same vault and stores as another tenant, with no keys or index loaded yet.
    pub(crate) fn sibling(&self, tenant: &str) -> Repo {
        Repo {
            location: self.location.clone(),
            stores: self.stores.clone(),
            vault_id: self.vault_id,
            key_id: self.key_id.clone(),
            tenant: tenant.to_string(),
            keys: BTreeMap::new(),
            index: HashMap::new(),
            index_errors: vec![],
            packs: Default::default(),
            down: Mutex::new(self.down.lock().expect("down set").clone()),
            config: self.config.clone(),
            mk: self.mk.clone(),
        }
    }

    /// This tenant's keys and stores without its index: for a long write (an S3 object) that must not hold
    /// a borrow of the shared repo; it asks the shared index what is stored through its own closure.
    pub fn view_without_index(&self) -> Repo {
        let mut r = self.sibling(&self.tenant);
        r.keys = self.keys.clone();
        r
    }

    /// Short id of the master key, in tenant key object names, so objects wrapped by a previous master key
    /// (during `key rotate`) sit beside the current ones without being confused with them.
    pub fn mk_id(&self) -> String {
        hex::encode(&self.mk.derive(&[], "mvault/v1/mk-id").expose()[..8])
    }

    pub fn tenant_key_path(&self, version: u32) -> String {
        format!("tenants/{}/keys/{version}.{}", self.tenant, self.mk_id())
    }

    pub(crate) fn load_tenant_keys(&mut self) -> Result<()> {
        let prefix = format!("tenants/{}/keys", self.tenant);
        let mk_id = self.mk_id();
        for name in self.list_meta(&prefix)? {
            let Some((v, id)) = name.rsplit('/').next().and_then(|f| f.split_once('.')) else { continue };
            let Ok(v) = v.parse::<u32>() else { continue };
            if id != mk_id {
                continue; // wrapped by another (previous) master key
            }
            let secret =
                self.read_meta(&name, |b| tenantkey::unwrap(&self.vault_id, &self.mk, &self.tenant, v, b, &name))?;
            self.keys.insert(v, TenantKeys::derive(v, &secret.tk, &secret.id_seed));
        }
        if self.keys.is_empty() {
            return Err(Error::not_found(format!("{prefix}: tenant {} has no keys", self.tenant)));
        }
        Ok(())
    }

    pub fn stores(&self) -> &[Arc<dyn Store>] {
        &self.stores
    }

    /// The keys new data is written under.
    pub fn current_keys(&self) -> &TenantKeys {
        self.keys.values().next_back().expect("a tenant always has a key")
    }

    pub fn keys_for(&self, version: u32) -> Option<&TenantKeys> {
        self.keys.get(&version)
    }

    // ---- metadata objects: on every store, read from the first copy that verifies ----

    pub fn write_meta(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let mut written = 0;
        let mut first_err = None;
        for (i, s) in self.stores.iter().enumerate() {
            if self.is_down(i) {
                continue;
            }
            match s.put(path, bytes) {
                Ok(()) => written += 1,
                Err(e) => {
                    self.note_failure(i, &e);
                    first_err.get_or_insert(e);
                }
            }
        }
        // Metadata lives on every store; enough copies to outlast m store losses make the write good,
        // and `repair` copies it to the stores that missed it.
        let quorum = (self.config.redundancy.m as usize + 1).min(self.stores.len());
        if written < quorum {
            return Err(first_err.unwrap_or_else(|| Error::Unavailable {
                what: path.to_string(),
                reason: "no store is up to write to".into(),
            }));
        }
        Ok(())
    }

    pub fn read_meta<T>(&self, path: &str, parse: impl Fn(&[u8]) -> Result<T>) -> Result<T> {
        let mut first_err = None;
        for (i, s) in self.stores.iter().enumerate() {
            if self.is_down(i) {
                continue;
            }
            match s.get(path).inspect_err(|e| self.note_failure(i, e)).and_then(|b| parse(&b)) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| Error::not_found(path.to_string())))
    }

    pub fn list_meta(&self, prefix: &str) -> Result<Vec<String>> {
        let mut all = std::collections::BTreeSet::new();
        let mut listed = 0;
        let mut first_err = None;
        for (i, s) in self.stores.iter().enumerate() {
            if self.is_down(i) {
                continue;
            }
            match s.list(prefix) {
                Ok(names) => {
                    listed += 1;
                    all.extend(names.into_iter().filter(|n| !n.contains(".tmp-")));
                }
                Err(e) => {
                    self.note_failure(i, &e);
                    first_err.get_or_insert(e);
                }
            }
        }
        if listed == 0 {
            return Err(first_err.unwrap_or_else(|| Error::Unavailable {
                what: format!("listing {prefix}"),
                reason: "no store is up".into(),
            }));
        }
        Ok(all.into_iter().collect())
    }

    pub fn delete_meta(&self, path: &str) -> Result<()> {
        for (i, s) in self.stores.iter().enumerate() {
            if !self.is_down(i) {
                s.delete(path).inspect_err(|e| self.note_failure(i, e))?;
            }
        }
        Ok(())
    }

    /// A store that failed with anything but "no such object" is down for the rest of this command.
    pub(crate) fn note_failure(&self, store: usize, e: &Error) {
        if let Error::Store { source, .. } = e {
            self.down.lock().expect("down set").entry(store).or_insert_with(|| source.to_string());
        }
    }

    pub fn is_down(&self, store: usize) -> bool {
        self.down.lock().expect("down set").contains_key(&store)
    }

    /// Why a store is down ("" if it is not): the first failure this session saw on it.
    pub(crate) fn down_reason(&self, store: usize) -> String {
        self.down.lock().expect("down set").get(&store).cloned().unwrap_or_default()
    }

    pub(crate) fn open_object(&self, kind: Kind, path: &str, bytes: &[u8]) -> Result<Vec<u8>> {
        object::open(&self.vault_id, &self.tenant, |v| self.keys.get(&v), kind, path, bytes, MAX_META_PLAIN)
    }

    pub(crate) fn seal_object(&self, kind: Kind, path: &str, plain: &[u8]) -> Vec<u8> {
        object::seal(&self.vault_id, &self.tenant, self.current_keys(), kind, path, plain)
    }

    // ---- index ----

    pub(crate) fn load_index(&mut self) -> Result<()> {
        let names = self.list_meta(&format!("tenants/{}/index", self.tenant))?;
        for name in names {
            match self.read_meta(&name, |b| {
                index::parse(&self.open_object(Kind::Index, &name, b)?).map_err(|e| e.in_object(&name))
            }) {
                Ok(entries) => self.index.extend(entries),
                Err(e) => self.index_errors.push(e),
            }
        }
        Ok(())
    }

    pub fn index_names(&self) -> Result<Vec<String>> {
        self.list_meta(&format!("tenants/{}/index", self.tenant))
    }

    /// Read and decrypt one index file (for `check`).
    pub fn read_index_file(&self, name: &str) -> Result<Vec<(ChunkId, Location)>> {
        self.read_meta(name, |b| index::parse(&self.open_object(Kind::Index, name, b)?).map_err(|e| e.in_object(name)))
    }

    pub fn lookup(&self, id: &ChunkId) -> Option<&Location> {
        self.index.get(id)
    }

    pub fn index(&self) -> &HashMap<ChunkId, Location> {
        &self.index
    }

    /// Write one index file for the given new entries and merge them into the in-memory index.
    pub fn write_index(&mut self, entries: Vec<(ChunkId, Location)>) -> Result<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let (_, n) = self.write_index_object(&entries)?;
        self.index.extend(entries);
        Ok(n)
    }

    /// Merge entries whose index file another step already wrote (`write_index_file`) into the in-memory
    /// index: lets a writer build packs under a shared borrow and take an exclusive one only for this.
    pub fn remember_index(&mut self, entries: Vec<(ChunkId, Location)>) {
        self.index.extend(entries);
    }

    /// Write one index file; returns its name.
    pub fn write_index_file(&self, entries: &[(ChunkId, Location)]) -> Result<String> {
        Ok(self.write_index_object(entries)?.0)
    }

    fn write_index_object(&self, entries: &[(ChunkId, Location)]) -> Result<(String, u64)> {
        let path = format!("tenants/{}/index/{}", self.tenant, ObjectId::random());
        let bytes = self.seal_object(Kind::Index, &path, &index::encode(entries));
        self.write_meta(&path, &bytes)?;
        Ok((path, bytes.len() as u64))
    }

    /// Leftover temporary objects of killed writers.
    pub fn list_temporaries(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (i, s) in self.stores.iter().enumerate() {
            if !self.is_down(i) {
                out.extend(s.list("")?.into_iter().filter(|n| n.contains(".tmp-")).map(|n| format!("{}/{n}", s.url())));
            }
        }
        Ok(out)
    }

    /// Fail unless every store is up: deletions must reach every copy, or `repair` would copy the deleted
    /// object back from the store that missed the delete.
    pub fn require_all_stores(&self, what: &str) -> Result<()> {
        for (i, s) in self.stores.iter().enumerate() {
            if let Err(e) = s.list("keys") {
                self.note_failure(i, &e);
            }
            if self.is_down(i) {
                return Err(Error::Usage(format!(
                    "{what} needs every store up so deletions reach every copy; store {} ({}) is down",
                    self.config.stores[i].id,
                    s.url()
                )));
            }
        }
        Ok(())
    }

    // ---- the store set ----

    /// Write the config (MAC'd by the master key) to every store that is up.
    pub fn save_config(&self) -> Result<()> {
        self.write_meta("config", &self.config.to_bytes(&self.mk))
    }

    /// Every metadata object name (what each store holds a copy of).
    pub fn metadata_names(&self) -> Result<Vec<String>> {
        let mut names = self.list_meta("keys")?;
        for sub in ["keys", "index", "snapshots", "degraded"] {
            names.extend(self.list_meta(&format!("tenants/{}/{sub}", self.tenant))?);
        }
        Ok(names)
    }

    /// Add a store: copy the metadata to it, then record it in the config on every store. Shards move to it
    /// with `rebalance`.
    pub fn add_store(&mut self, arg: &store::StoreArg) -> Result<StoreSpec> {
        let url = store::normalize_url(&arg.url)?;
        if self.config.stores.iter().any(|s| s.url == url) {
            return Err(Error::Usage(format!("{url} is already a store of this vault")));
        }
        let st = store::open(&url)?;
        st.create()?;
        if st.exists("config")? {
            return Err(Error::AlreadyExists(url));
        }
        let id = (0..)
            .map(|i| format!("s{i}"))
            .find(|id| !self.config.stores.iter().any(|s| &s.id == id))
            .expect("a free id");
        let spec = store::StoreArg { url, ..arg.clone() }.to_spec(id);
        for name in self.metadata_names()? {
            let bytes = self.read_meta(&name, |b| Ok(b.to_vec()))?;
            st.put(&name, &bytes)?;
        }
        self.stores.push(st);
        self.config.stores.push(spec.clone());
        // The config goes last: until it names the new store, the store is only an unused copy of metadata.
        self.save_config()?;
        Ok(spec)
    }

    /// Remove a store. Unless `force`, first copy each of its shards to the store that placement picks
    /// without it, so no pack loses redundancy; with `force` (a dead store) the shards are rebuilt by `repair`.
    /// Returns the number of shards moved.
    pub fn remove_store(&mut self, id: &str, force: bool) -> Result<u64> {
        let idx = self
            .config
            .stores
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| Error::not_found(format!("store {id}")))?;
        if self.config.stores.len() - 1 < self.shard_count() {
            return Err(Error::Usage(format!(
                "removing {id} would leave {} stores for {} shards per pack",
                self.config.stores.len() - 1,
                self.shard_count()
            )));
        }
        let mut remaining = self.config.stores.clone();
        remaining.remove(idx);
        let old_index = |j: usize| if j < idx { j } else { j + 1 };
        let mut moved = 0;
        if !force {
            let inventory = self.shard_inventory()?;
            for (pack, copies) in &inventory {
                let on_it: Vec<usize> = copies.iter().filter(|c| c.store == idx).map(|c| c.shard).collect();
                if on_it.is_empty() {
                    continue;
                }
                let new_place: Vec<usize> =
                    redundancy::place(pack, &remaining, self.shard_count()).into_iter().map(old_index).collect();
                let mut holding: std::collections::BTreeSet<usize> =
                    copies.iter().map(|c| c.store).filter(|s| *s != idx).collect();
                for shard in on_it {
                    if copies.iter().any(|c| c.shard == shard && c.store != idx) {
                        continue; // another copy of this shard survives elsewhere
                    }
                    // Set-based, as rebalance: a store of the new set that holds no shard of this pack.
                    let free = |s: &usize| !holding.contains(s) && !self.is_down(*s);
                    let Some(target) = std::iter::once(new_place[shard]).chain(new_place.iter().copied()).find(free)
                    else {
                        return Err(Error::Usage(format!(
                            "pack {pack}: no store can take shard {shard} of store {id}"
                        )));
                    };
                    holding.insert(target);
                    let obj = match self.read_shard(pack, shard, idx) {
                        Ok((_, copy)) => copy.object().to_vec(),
                        Err(_) => self.rebuild_shard(pack, shard)?,
                    };
                    self.stores[target].put(&crate::repo::packs::pack_path(&self.tenant, pack, shard), &obj)?;
                    moved += 1;
                }
            }
        }
        let gone = self.stores.remove(idx);
        self.config.stores.remove(idx);
        self.down.lock().expect("down set").clear();
        self.save_config()?;
        // The removed store must not open as this vault with an old store list.
        let _ = gone.delete("config");
        Ok(moved)
    }

    /// One shard object rebuilt from the pack's other shards.
    pub fn rebuild_shard(&self, pack: &PackId, shard: usize) -> Result<Vec<u8>> {
        let (pack_len, rebuilt) = self.rebuild_shards(pack, &[shard])?;
        let r = &self.config.redundancy;
        let payload = &rebuilt[0].1;
        let h = crate::format::shard::ShardHeader::new(*pack, shard as u8, r.k, r.m, pack_len, payload);
        Ok(crate::format::shard::encode(&h, payload))
    }

    // ---- trees ----

    pub fn load_tree(&self, id: &ChunkId) -> Result<Vec<tree::Node>> {
        tree::parse(&self.read_blob(id)?).map_err(|e| e.in_object(&format!("tree {id}")))
    }

    // ---- snapshots ----

    pub fn snapshot_path(&self, id: &SnapshotId) -> String {
        format!("tenants/{}/snapshots/{id}", self.tenant)
    }

    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        let id = SnapshotId::random();
        let path = self.snapshot_path(&id);
        self.write_meta(&path, &self.seal_object(Kind::Snapshot, &path, &snap.to_bytes()))?;
        Ok(id)
    }

    /// Seal a snapshot again under the current key version, at its own path (tenant rekey).
    pub fn resave_snapshot(&self, id: &SnapshotId, snap: &Snapshot) -> Result<()> {
        let path = self.snapshot_path(id);
        self.write_meta(&path, &self.seal_object(Kind::Snapshot, &path, &snap.to_bytes()))
    }

    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let path = self.snapshot_path(id);
        self.read_meta(&path, |b| {
            Snapshot::parse(&self.open_object(Kind::Snapshot, &path, b)?).map_err(|e| e.in_object(&path))
        })
    }

    /// Every snapshot id on the stores, sorted.
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        let names = self.list_meta(&format!("tenants/{}/snapshots", self.tenant))?;
        Ok(names.iter().filter_map(|n| n.rsplit('/').next()).filter_map(|h| SnapshotId::from_hex(h).ok()).collect())
    }

    /// All readable snapshots, oldest first, and the errors of those that are not.
    pub fn snapshots(&self) -> Result<(SnapshotList, Vec<Error>)> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for id in self.snapshot_ids()? {
            match self.load_snapshot(&id) {
                Ok(s) => ok.push((id, s)),
                Err(e) => bad.push(e),
            }
        }
        ok.sort_by(|a, b| a.1.system_time().cmp(&b.1.system_time()).then(a.0.cmp(&b.0)));
        Ok((ok, bad))
    }

    /// Resolve `latest` or a unique id prefix.
    pub fn find_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        if spec == "latest" {
            let (all, _) = self.snapshots()?;
            return all
                .into_iter()
                .next_back()
                .ok_or_else(|| Error::not_found("latest snapshot: the vault has no snapshots"));
        }
        let spec_l = spec.to_ascii_lowercase();
        let matches: Vec<SnapshotId> =
            self.snapshot_ids()?.into_iter().filter(|id| id.to_hex().starts_with(&spec_l)).collect();
        match matches.as_slice() {
            [] => Err(Error::not_found(format!("snapshot {spec}"))),
            [id] => Ok((*id, self.load_snapshot(id)?)),
            _ => Err(Error::Usage(format!("snapshot prefix {spec:?} is ambiguous: {} snapshots match", matches.len()))),
        }
    }

    // ---- key files ----

    pub fn key_files(&self) -> Result<Vec<KeyFile>> {
        let mut out = Vec::new();
        for name in self.list_meta("keys")? {
            out.push(self.read_meta(&name, |b| KeyFile::parse(b).map_err(|e| e.in_object(&name)))?);
        }
        Ok(out)
    }

    pub fn add_key(&self, passphrase: &[u8], kdf: KdfParams) -> Result<KeyFile> {
        let (user, host) = user_and_host();
        let kf = KeyFile::create(&self.vault_id, &self.mk, passphrase, kdf, &host, &user)?;
        self.write_meta(&format!("keys/{}", kf.id), &kf.to_bytes())?;
        Ok(kf)
    }

    pub fn remove_key(&self, id_prefix: &str) -> Result<String> {
        let keys = self.key_files()?;
        let matches: Vec<&KeyFile> = keys.iter().filter(|k| k.id.starts_with(id_prefix)).collect();
        let kf = match matches.as_slice() {
            [] => return Err(Error::not_found(format!("key {id_prefix}"))),
            [k] => *k,
            _ => return Err(Error::Usage(format!("key prefix {id_prefix:?} is ambiguous"))),
        };
        if kf.id == self.key_id {
            return Err(Error::Usage(format!("key {} is the one this command was opened with; open with another key to remove it, or use `key passwd`", kf.id)));
        }
        self.delete_meta(&format!("keys/{}", kf.id))?;
        Ok(kf.id.clone())
    }

    /// Replace the key file in use with one under a new passphrase. The new file is written before the old
    /// one is removed, so a crash in between leaves both, never neither.
    pub fn change_passphrase(&mut self, new_passphrase: &[u8], kdf: KdfParams) -> Result<KeyFile> {
        let kf = self.add_key(new_passphrase, kdf)?;
        let old = std::mem::replace(&mut self.key_id, kf.id.clone());
        self.delete_meta(&format!("keys/{old}"))?;
        Ok(kf)
    }
}

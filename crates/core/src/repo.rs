//! The repository layer: opens a vault (config, key files, tenant keys, index) and reads and writes its
//! objects: packs as shards on their placed stores, metadata objects on every store.

use crate::crypto::{KdfParams, SecretKey, TenantKeys};
use crate::error::{Error, Result};
use crate::format::config::{ChunkerParams, Config, Redundancy, StoreSpec, FORMAT_VERSION};
use crate::format::index::Location;
use crate::format::keyfile::KeyFile;
use crate::format::object::{self, Kind};
use crate::format::pack::{self, BlobContext, BlobEntry};
use crate::format::shard::{self, ShardHeader};
use crate::format::snapshot::Snapshot;
use crate::format::{index, tenantkey, tree};
use crate::ids::{ChunkId, ObjectId, PackId, SnapshotId, VaultId};
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
    pub extra_stores: Vec<String>,
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
    stores: Vec<Box<dyn Store>>,
    pub config: Config,
    pub vault_id: VaultId,
    mk: SecretKey,
    /// The key file this session opened the vault with.
    pub key_id: String,
    pub tenant: String,
    keys: BTreeMap<u32, TenantKeys>,
    index: HashMap<ChunkId, Location>,
    /// Index files that could not be read; their chunks are treated as absent (a backup re-stores them).
    pub index_errors: Vec<Error>,
    pack_keys: Mutex<HashMap<PackId, Arc<crate::crypto::AeadKey>>>,
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

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// Snapshots with their ids, oldest first.
pub type SnapshotList = Vec<(SnapshotId, Snapshot)>;

pub fn pack_path(tenant: &str, id: &PackId, shard: usize) -> String {
    let h = id.to_hex();
    format!("tenants/{tenant}/packs/{}/{h}.{shard}", &h[..2])
}

impl Repo {
    /// Make a new vault at `location` (and any extra stores), protected by `passphrase`.
    pub fn init(location: &str, passphrase: &[u8], opts: &InitOptions) -> Result<Repo> {
        let mut urls = vec![store::normalize_url(location)?];
        for u in &opts.extra_stores {
            urls.push(store::normalize_url(u)?);
        }
        let stores: Vec<Box<dyn Store>> = urls.iter().map(|u| store::open(u)).collect::<Result<_>>()?;
        for s in &stores {
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
            stores: urls
                .iter()
                .enumerate()
                .map(|(i, u)| StoreSpec::new(format!("s{i}"), u.clone(), format!("d{i}"), 1))
                .collect(),
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
        let tk = SecretKey::random();
        let mut repo = Repo {
            location: location.to_string(),
            stores,
            vault_id,
            key_id: kf.id.clone(),
            tenant: DEFAULT_TENANT.into(),
            keys: BTreeMap::from([(1, TenantKeys::derive(1, &tk))]),
            index: HashMap::new(),
            index_errors: vec![],
            pack_keys: Mutex::default(),
            config,
            mk,
        };
        // Keys first, config last: a vault is only a vault once its config is there.
        repo.write_meta(&format!("keys/{}", kf.id), &kf.to_bytes())?;
        repo.write_meta(
            &format!("tenants/{DEFAULT_TENANT}/keys/1"),
            &tenantkey::wrap(&repo.vault_id, &repo.mk, DEFAULT_TENANT, 1, &tk),
        )?;
        let cfg = repo.config.to_bytes(&repo.mk);
        repo.write_meta("config", &cfg)?;
        repo.index_errors.clear();
        Ok(repo)
    }

    /// Open an existing vault: any of its stores can be given as `location`.
    pub fn open(location: &str, passphrase: &[u8]) -> Result<Repo> {
        let first = store::open(location)?;
        let cfg_bytes = match first.get("config") {
            Ok(b) => b,
            Err(Error::NotFound(_)) => return Err(Error::NoVault(first.url().to_string())),
            Err(e) => return Err(e),
        };
        let (config, mac) = Config::parse(&cfg_bytes)
            .map_err(|e| Error::Foreign { location: first.url().to_string(), reason: e.to_string() })?;
        let vault_id = config.vault_id()?;
        // The store we were given stands in for its own entry; the others come from the config.
        let mut stores: Vec<Box<dyn Store>> = Vec::new();
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
        let mut opened = None;
        for kf in &keyfiles {
            if let Some(mk) = kf.unwrap(&vault_id, passphrase)? {
                opened = Some((mk, kf.id.clone()));
                break;
            }
        }
        let (mk, key_id) = opened.ok_or_else(|| Error::WrongPassphrase { vault: first.url().to_string() })?;
        mac.verify(&mk).map_err(|e| e.in_object(&format!("{}/config", first.url())))?;
        let mut repo = Repo {
            location: location.to_string(),
            stores,
            vault_id,
            key_id,
            tenant: DEFAULT_TENANT.into(),
            keys: BTreeMap::new(),
            index: HashMap::new(),
            index_errors: vec![],
            pack_keys: Mutex::default(),
            config,
            mk,
        };
        repo.load_tenant_keys()?;
        repo.load_index()?;
        Ok(repo)
    }

    fn load_tenant_keys(&mut self) -> Result<()> {
        let prefix = format!("tenants/{}/keys", self.tenant);
        for name in self.list_meta(&prefix)? {
            let Some(v) = name.rsplit('/').next().and_then(|v| v.parse::<u32>().ok()) else {
                continue;
            };
            let tk =
                self.read_meta(&name, |b| tenantkey::unwrap(&self.vault_id, &self.mk, &self.tenant, v, b, &name))?;
            self.keys.insert(v, TenantKeys::derive(v, &tk));
        }
        if self.keys.is_empty() {
            return Err(Error::NotFound(format!("{prefix}: tenant {} has no keys", self.tenant)));
        }
        Ok(())
    }

    pub fn stores(&self) -> &[Box<dyn Store>] {
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
        for s in &self.stores {
            s.put(path, bytes)?;
        }
        Ok(())
    }

    pub fn read_meta<T>(&self, path: &str, parse: impl Fn(&[u8]) -> Result<T>) -> Result<T> {
        let mut first_err = None;
        for s in &self.stores {
            match s.get(path).and_then(|b| parse(&b)) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| Error::NotFound(path.to_string())))
    }

    pub fn list_meta(&self, prefix: &str) -> Result<Vec<String>> {
        let mut all = std::collections::BTreeSet::new();
        for s in &self.stores {
            all.extend(s.list(prefix)?.into_iter().filter(|n| !n.contains(".tmp-")));
        }
        Ok(all.into_iter().collect())
    }

    pub fn delete_meta(&self, path: &str) -> Result<()> {
        for s in &self.stores {
            s.delete(path)?;
        }
        Ok(())
    }

    fn open_object(&self, kind: Kind, path: &str, bytes: &[u8]) -> Result<Vec<u8>> {
        object::open(&self.vault_id, &self.tenant, |v| self.keys.get(&v), kind, path, bytes, MAX_META_PLAIN)
    }

    fn seal_object(&self, kind: Kind, path: &str, plain: &[u8]) -> Vec<u8> {
        object::seal(&self.vault_id, &self.tenant, self.current_keys(), kind, path, plain)
    }

    // ---- index ----

    fn load_index(&mut self) -> Result<()> {
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
        let path = format!("tenants/{}/index/{}", self.tenant, ObjectId::random());
        let bytes = self.seal_object(Kind::Index, &path, &index::encode(&entries));
        self.write_meta(&path, &bytes)?;
        self.index.extend(entries);
        Ok(bytes.len() as u64)
    }

    // ---- packs ----

    /// The (shard index, store index) pairs of a pack, in the order a reader tries them.
    pub fn shard_places(&self, pack: &PackId) -> Vec<(usize, usize)> {
        let r = &self.config.redundancy;
        redundancy::place(pack, &self.config.stores, r.k as usize + r.m as usize).into_iter().enumerate().collect()
    }

    /// Shard and write a finished pack; returns the bytes written to stores.
    pub fn write_pack(&self, id: &PackId, bytes: &[u8]) -> Result<u64> {
        let r = &self.config.redundancy;
        let payloads = redundancy::split(bytes, r.k, r.m)?;
        let mut written = 0u64;
        let mut ok = 0usize;
        let mut first_err = None;
        for (shard, store) in self.shard_places(id) {
            let header = ShardHeader::new(*id, shard as u8, r.k, r.m, bytes.len() as u64, &payloads[shard]);
            let obj = shard::encode(&header, &payloads[shard]);
            match self.stores[store].put(&pack_path(&self.tenant, id, shard), &obj) {
                Ok(()) => {
                    ok += 1;
                    written += obj.len() as u64;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let quorum = if r.m == 0 { r.k as usize } else { r.k as usize + 1 };
        if ok < quorum {
            return Err(first_err.unwrap_or_else(|| Error::Usage("no store to write to".into())));
        }
        Ok(written)
    }

    /// Read a whole shard object and check its header and hash.
    pub fn read_shard(&self, pack: &PackId, shard: usize, store: usize) -> Result<(ShardHeader, Vec<u8>)> {
        let path = pack_path(&self.tenant, pack, shard);
        let name = format!("{}/{path}", self.stores[store].url());
        let obj = self.stores[store].get(&path)?;
        let (h, payload) = ShardHeader::parse_verified(&obj).map_err(|e| e.in_object(&name))?;
        if h.pack_id != *pack || h.index as usize != shard {
            return Err(Error::corrupt(&name, format!("holds shard {} of pack {}", h.index, h.pack_id)));
        }
        Ok((h, payload.to_vec()))
    }

    /// Read a whole pack (for `check --read-data`): the first shard set that verifies.
    pub fn read_pack(&self, pack: &PackId) -> Result<Vec<u8>> {
        let mut first_err = None;
        for (shard, store) in self.shard_places(pack) {
            match self.read_shard(pack, shard, store) {
                Ok((_, payload)) if self.config.redundancy.k == 1 => return Ok(payload),
                Ok(_) => unreachable!("k > 1 is rejected at init"),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| Error::NotFound(format!("pack {pack}"))))
    }

    /// Open a pack's table from its bytes.
    pub fn open_pack(&self, id: &PackId, bytes: &[u8]) -> Result<pack::OpenedPack> {
        pack::open_pack(&self.vault_id, &self.tenant, |v| self.keys.get(&v), id, bytes, &format!("pack {id}"))
    }

    pub fn blob_context<'a>(&'a self, pack: &'a PackId, key_version: u32) -> BlobContext<'a> {
        BlobContext { vault: &self.vault_id, tenant: &self.tenant, key_version, pack }
    }

    /// The AEAD key of a pack, from its headers (read once per pack and cached).
    fn pack_key(&self, pack: &PackId, shard: usize, store: usize) -> Result<(u32, Arc<crate::crypto::AeadKey>)> {
        let path = pack_path(&self.tenant, pack, shard);
        let name = format!("{}/{path}", self.stores[store].url());
        let head = self.stores[store].get_range(&path, 0, (shard::HEADER_LEN + pack::HEADER_LEN) as u64)?;
        let h = ShardHeader::parse(&head).map_err(|e| e.in_object(&name))?;
        if h.pack_id != *pack || h.index as usize != shard {
            return Err(Error::corrupt(&name, format!("holds shard {} of pack {}", h.index, h.pack_id)));
        }
        let (version, id, salt) = pack::parse_header(&head[shard::HEADER_LEN..]).map_err(|e| e.in_object(&name))?;
        if id != *pack {
            return Err(Error::corrupt(&name, format!("holds pack {id}")));
        }
        let keys =
            self.keys.get(&version).ok_or_else(|| Error::corrupt(&name, format!("unknown key version {version}")))?;
        let mut cache = self.pack_keys.lock().expect("pack key cache");
        let key = cache.entry(*pack).or_insert_with(|| Arc::new(keys.pack_key(&salt))).clone();
        Ok((version, key))
    }

    /// Read, decrypt, decode and verify one blob: the plaintext is exactly what was backed up, or an error.
    pub fn read_blob(&self, id: &ChunkId) -> Result<Vec<u8>> {
        let loc = *self.index.get(id).ok_or_else(|| Error::NotFound(format!("chunk {id}: not in the index")))?;
        let mut first_err = None;
        for (shard, store) in self.shard_places(&loc.pack) {
            match self.read_blob_at(id, &loc, shard, store) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    // A bad cached key would fail every shard; drop it so the next try reads headers afresh.
                    self.pack_keys.lock().expect("pack key cache").remove(&loc.pack);
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| Error::NotFound(format!("pack {}", loc.pack))))
    }

    fn read_blob_at(&self, id: &ChunkId, loc: &Location, shard: usize, store: usize) -> Result<Vec<u8>> {
        let (version, key) = self.pack_key(&loc.pack, shard, store)?;
        let path = pack_path(&self.tenant, &loc.pack, shard);
        let name = format!("{}/{path} blob {id}", self.stores[store].url());
        let ct =
            self.stores[store].get_range(&path, (shard::HEADER_LEN as u64) + loc.offset as u64, loc.length as u64)?;
        let entry = BlobEntry {
            blob_type: loc.blob_type,
            codec: loc.codec,
            id: *id,
            offset: loc.offset,
            length: loc.length,
            raw_length: loc.raw_length,
        };
        let enc = pack::open_blob(&key, &self.blob_context(&loc.pack, version), loc.index, &entry, &ct, &name)?;
        let plain = pack::decode(loc.codec, enc, loc.raw_length, &name)?;
        self.verify_chunk(id, &plain, version, &name)?;
        Ok(plain)
    }

    /// End-to-end check: the keyed hash of the plaintext must be the ChunkId.
    pub fn verify_chunk(&self, id: &ChunkId, plain: &[u8], version: u32, name: &str) -> Result<()> {
        let keys =
            self.keys.get(&version).ok_or_else(|| Error::corrupt(name, format!("unknown key version {version}")))?;
        if keys.chunk_id(plain) != *id {
            return Err(Error::corrupt(name, "plaintext does not hash to its ChunkId"));
        }
        Ok(())
    }

    /// All pack ids present on the stores.
    pub fn list_packs(&self) -> Result<std::collections::BTreeSet<PackId>> {
        let mut out = std::collections::BTreeSet::new();
        for s in &self.stores {
            for name in s.list(&format!("tenants/{}/packs", self.tenant))? {
                let file = name.rsplit('/').next().unwrap_or("");
                if let Some((hexid, _)) = file.split_once('.') {
                    if !file.contains(".tmp-") {
                        if let Ok(id) = PackId::from_hex(hexid) {
                            out.insert(id);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Leftover temporary objects of killed writers.
    pub fn list_temporaries(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for s in &self.stores {
            out.extend(s.list("")?.into_iter().filter(|n| n.contains(".tmp-")).map(|n| format!("{}/{n}", s.url())));
        }
        Ok(out)
    }

    // ---- trees ----

    pub fn load_tree(&self, id: &ChunkId) -> Result<Vec<tree::Node>> {
        tree::parse(&self.read_blob(id)?).map_err(|e| e.in_object(&format!("tree {id}")))
    }

    // ---- snapshots ----

    fn snapshot_path(&self, id: &SnapshotId) -> String {
        format!("tenants/{}/snapshots/{id}", self.tenant)
    }

    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        let id = SnapshotId::random();
        let path = self.snapshot_path(&id);
        self.write_meta(&path, &self.seal_object(Kind::Snapshot, &path, &snap.to_bytes()))?;
        Ok(id)
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
                .ok_or_else(|| Error::NotFound("latest snapshot: the vault has no snapshots".into()));
        }
        let spec_l = spec.to_ascii_lowercase();
        let matches: Vec<SnapshotId> =
            self.snapshot_ids()?.into_iter().filter(|id| id.to_hex().starts_with(&spec_l)).collect();
        match matches.as_slice() {
            [] => Err(Error::NotFound(format!("snapshot {spec}"))),
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
            [] => return Err(Error::NotFound(format!("key {id_prefix}"))),
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

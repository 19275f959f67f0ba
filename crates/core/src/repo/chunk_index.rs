//! The tenant's chunk index: index files on the stores (the truth, FORMAT.md), mirrored in the catalog
//! (`crate::catalog`), which answers lookups. Opening syncs the catalog with the files (reading only new
//! ones); every index file this process writes or deletes is recorded there at once.

use super::Repo;
use crate::error::{Error, Result};
use crate::format::index;
use crate::format::index::Location;
use crate::format::object::Kind;
use crate::ids::{ChunkId, ObjectId};

/// What a tenant's index holds, as the catalog counts it (`mvault catalog status`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct IndexSummary {
    pub tenant: String,
    /// The engine and where it keeps its data.
    pub catalog: String,
    pub index_files: u64,
    pub chunks: u64,
    /// Stored bytes after dedup and compression, before redundancy.
    pub bytes: u64,
    /// Index files that could not be read (their chunks count as absent).
    pub unreadable: Vec<String>,
}

impl Repo {
    /// Bring the catalog up to the tenant's index files; the ones that cannot be read go to `index_errors`.
    pub(crate) fn load_index(&mut self) -> Result<()> {
        let names = self.index_names()?;
        let errors = self.catalog.sync(names, |name| self.read_index_file(name))?;
        self.index_errors = errors;
        Ok(())
    }

    pub fn index_names(&self) -> Result<Vec<String>> {
        self.list_meta(&format!("tenants/{}/index", self.tenant))
    }

    /// Read and decrypt one index file (for `check`, and for the catalog's sync).
    pub fn read_index_file(&self, name: &str) -> Result<Vec<(ChunkId, Location)>> {
        self.read_meta(name, |b| index::parse(&self.open_object(Kind::Index, name, b)?).map_err(|e| e.in_object(name)))
    }

    /// Where a chunk lies, if the tenant stores it. Fails only when the catalog cannot answer.
    pub fn lookup(&self, id: &ChunkId) -> Result<Option<Location>> {
        self.catalog.lookup(id)
    }

    /// Whether the tenant stores a chunk; a catalog that cannot answer counts as "no", which costs a
    /// duplicate blob, never a lost one (for dedup decisions only; reads use `lookup`).
    pub fn has_chunk(&self, id: &ChunkId) -> bool {
        self.catalog.lookup(id).ok().flatten().is_some()
    }

    /// Many lookups in one call (one round trip per batch on PostgreSQL).
    pub fn lookup_many(&self, ids: &[ChunkId]) -> Result<Vec<Option<Location>>> {
        self.catalog.lookup_many(ids)
    }

    /// How many lookups a caller should gather before asking the catalog.
    pub fn lookup_batch(&self) -> usize {
        self.catalog.lookup_batch()
    }

    /// Every entry of the tenant's index, once per chunk, streamed from the catalog.
    pub fn scan_index(&self, each: &mut dyn FnMut(ChunkId, Location) -> Result<()>) -> Result<()> {
        self.catalog.scan(each)
    }

    /// Stored bytes (after dedup and compression, before redundancy) and chunks: counters the catalog keeps
    /// as index files come and go, so asking costs one query whatever the vault holds.
    pub fn index_usage(&self) -> Result<(u64, u64)> {
        self.catalog.usage()
    }

    /// Hold `bytes` of the tenant's quota `max` for a write about to happen: in the catalog every instance
    /// shares, checked against what is stored and what writers elsewhere hold, in one transaction.
    pub fn reserve_quota(
        &self,
        bytes: u64,
        max: u64,
    ) -> Result<std::result::Result<crate::catalog::Reservation, crate::catalog::QuotaRefused>> {
        self.catalog.reserve(bytes, max)
    }

    /// Hold `what` of this tenant against the other server instances on a shared catalog, and learn the
    /// last version of it any published (None: no other instance can exist).
    pub fn exclusive(&self, what: &str) -> Result<Option<crate::catalog::Exclusive>> {
        self.catalog.exclusive(what)
    }

    /// Claim a scheduled job's run for one period against the other instances on a shared catalog.
    pub fn claim(&self, what: &str, period: std::time::Duration) -> Result<crate::catalog::Claim> {
        self.catalog.claim(what, period)
    }

    /// The tenant's index as the catalog holds it.
    pub fn index_summary(&self) -> Result<IndexSummary> {
        let (bytes, chunks) = self.index_usage()?;
        Ok(IndexSummary {
            tenant: self.tenant.clone(),
            catalog: self.catalog.describe(),
            index_files: self.index_names()?.len() as u64,
            chunks,
            bytes,
            unreadable: self.index_errors.iter().map(|e| e.to_string()).collect(),
        })
    }

    /// Forget what the catalog holds for this tenant and read every index file on the stores again
    /// (`mvault catalog rebuild`): for a catalog lost, restored from an old backup, or suspected wrong.
    pub fn rebuild_index(&mut self) -> Result<IndexSummary> {
        self.catalog.clear()?;
        self.load_index()?;
        self.index_summary()
    }

    /// Which catalog answers this vault's lookups, for `check` and error messages.
    pub fn catalog_name(&self) -> String {
        self.catalog.describe()
    }

    /// Write one index file for the given new entries (recorded in the catalog too); returns its size.
    pub fn write_index(&self, entries: Vec<(ChunkId, Location)>) -> Result<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        Ok(self.write_index_object(&entries)?.1)
    }

    /// Write one index file (recorded in the catalog too); returns its name.
    pub fn write_index_file(&self, entries: &[(ChunkId, Location)]) -> Result<String> {
        Ok(self.write_index_object(entries)?.0)
    }

    /// Delete index files that a newer one replaced (prune, rekey), from the stores and the catalog.
    pub fn delete_index_files(&self, names: &[String]) -> Result<()> {
        self.require_bound_catalog()?;
        for name in names {
            self.delete_meta(name)?;
        }
        self.catalog.drop_files(names)
    }

    /// Refuse to change the index of a vault bound to a shared catalog from a session using another one:
    /// the instances on that catalog would not see the change (a prune's deletions above all).
    pub fn require_bound_catalog(&self) -> Result<()> {
        match &self.catalog_refusal {
            Some(why) => Err(Error::Usage(why.clone())),
            None => Ok(()),
        }
    }

    /// Bind the vault to the catalog this session uses (a shared one), or unbind it (the embedded one):
    /// recorded in the config on every store.
    pub fn bind_catalog(&mut self, catalog: &crate::catalog::CatalogArg) -> Result<Option<String>> {
        self.config.catalog = catalog.binding();
        self.save_config()?;
        self.catalog_refusal = None;
        Ok(self.config.catalog.clone())
    }

    fn write_index_object(&self, entries: &[(ChunkId, Location)]) -> Result<(String, u64)> {
        self.require_bound_catalog()?;
        let path = format!("tenants/{}/index/{}", self.tenant, ObjectId::random());
        let bytes = self.seal_object(Kind::Index, &path, &index::encode(entries));
        self.write_meta(&path, &bytes)?;
        // The file is on the stores first: a catalog that misses it (a crash here) reads it at the next sync.
        self.catalog.add_file(&path, entries)?;
        Ok((path, bytes.len() as u64))
    }
}

/// A chunk the index does not have, as the error a read gives.
pub(crate) fn not_indexed(id: &ChunkId) -> Error {
    Error::not_found(format!("chunk {id}: not in the index"))
}

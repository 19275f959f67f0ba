//! The catalog: a tenant's chunk index (ChunkId -> where its blob lies, and a delta's base) kept in a database
//! instead of in every process's memory, so that opening a vault, listing it and a small backup cost what
//! they touch, not what the vault holds.
//!
//! The stores stay the source of truth: every index file is still written to them (FORMAT.md), and the
//! catalog is a view of those files that any process can rebuild. It records which index files it has
//! ingested; `Catalog::sync` reads only the ones it has not seen and forgets the entries of the ones that
//! are gone (prune replaced them). Each entry is kept per index file, as the files are, so a chunk named by
//! two files (during a prune, between its new index and the deletion of the old) survives the deletion of
//! either.
//!
//! One trait, three engines: `memory` (the whole index in a HashMap, loaded by each process: what every
//! process did before the catalog, kept as the baseline the scale benchmark measures against), `sqlite`
//! (the embedded default: one database file per vault in the user's cache directory) and `postgres` (one
//! database shared by many servers and admin commands). The choice and its reasons are in ARCHITECTURE.md.

mod arg;
mod memory;
mod postgres;
mod sqlite;

pub use arg::{cache_dir, CatalogArg};

use crate::error::{Error, Result};
use crate::format::index::Location;
use crate::format::pack::{BlobType, Codec};
use crate::ids::{ChunkId, PackId};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// A database that holds chunk indexes, for any number of vaults and tenants (each a namespace).
pub trait Engine: Send + Sync {
    /// The namespace of one tenant of one vault, made on first use.
    fn namespace(&self, vault: &str, tenant: &str) -> Result<i64>;
    /// The index files ingested into a namespace.
    fn files(&self, ns: i64) -> Result<Vec<String>>;
    /// Add one index file and its entries, at once (a crash leaves the file either whole or absent). A file
    /// already there (another process ingested it) is left as it is.
    fn add_file(&self, ns: i64, name: &str, entries: &[(ChunkId, Location)]) -> Result<()>;
    /// Forget index files and every entry that came from them.
    fn drop_files(&self, ns: i64, names: &[String]) -> Result<()>;
    /// Where each chunk lies, in the order asked (None: not stored).
    fn lookup(&self, ns: i64, ids: &[ChunkId]) -> Result<Vec<Option<Location>>>;
    /// Stored bytes (blob lengths) and distinct chunks of a namespace, without a scan.
    fn usage(&self, ns: i64) -> Result<(u64, u64)>;
    /// Every entry of a namespace (a chunk named by several files, once), streamed.
    fn scan(&self, ns: i64, each: &mut dyn FnMut(ChunkId, Location) -> Result<()>) -> Result<()>;
    /// The engine and where it keeps its data, for messages ("sqlite /home/u/.cache/...").
    fn describe(&self) -> String;
    /// How many lookups a caller should gather before asking: 1 for an in-process engine (a lookup costs
    /// microseconds, and gathering would only delay the work behind it), more across a network.
    fn lookup_batch(&self) -> usize {
        1
    }
    /// Reserve `bytes` of a namespace's quota `max` for a write in flight: granted when the stored bytes,
    /// the namespace's unexpired reservations and `bytes` stay within `max`, checked and recorded in one
    /// transaction, so writers in any number of processes never pass the quota together. A reservation
    /// ends when released or after `lease` (a writer that died gives its bytes back then).
    fn reserve(&self, ns: i64, bytes: u64, max: u64, lease: Duration) -> Result<Reserved>;
    /// End a reservation (its bytes are in the usage counters by now, or were never written).
    fn release(&self, ns: i64, id: i64) -> Result<()>;
    /// Whether processes elsewhere write through this catalog too (PostgreSQL). Then state a process caches
    /// between requests must be held and checked through `exclusive` and `counter`; an in-process engine has
    /// no one else to exclude (the caller's own lock serves) and returns None.
    fn exclusive(&self, _ns: i64, _what: &str) -> Result<Option<Box<dyn Send>>> {
        Ok(None)
    }
    /// The last version of `what` that a holder of `exclusive` published (0: none yet).
    fn counter(&self, _ns: i64, _what: &str) -> Result<u64> {
        Ok(0)
    }
    /// Publish a new version of `what` (by the holder of `exclusive`).
    fn set_counter(&self, _ns: i64, _what: &str, _value: u64) -> Result<()> {
        Ok(())
    }
    /// Claim the run of a job for one period across instances: taken when another instance runs it now or
    /// ran it less than `period` ago. An in-process engine has no other instance (`Claim::Alone`).
    fn claim(&self, _ns: i64, _what: &str, _period: Duration) -> Result<Claim> {
        Ok(Claim::Alone)
    }
}

/// The answer to a job's claim.
pub enum Claim {
    /// No other instance can exist: run.
    Alone,
    /// This instance runs it; the others skip until the period ends (held until dropped).
    Mine(Box<dyn Send>),
    /// Another instance runs it, or has this period.
    Taken,
}

/// `what` of a namespace held against every other instance on a shared catalog, and the last version of
/// it any instance published: a server's cached bucket state is checked against it before each use.
pub struct Exclusive {
    catalog: Catalog,
    what: String,
    _held: Box<dyn Send>,
}

impl Exclusive {
    pub fn latest(&self) -> Result<u64> {
        self.catalog.engine.counter(self.catalog.ns, &self.what)
    }

    pub fn publish(&self, version: u64) -> Result<()> {
        self.catalog.engine.set_counter(self.catalog.ns, &self.what, version)
    }
}

/// What an engine answered to a reservation.
#[derive(Debug, PartialEq)]
pub enum Reserved {
    Granted(i64),
    /// Stored bytes and bytes reserved by other writers, which with the request would pass the quota.
    Refused {
        stored: u64,
        reserved: u64,
    },
}

/// How long a reservation lasts when its writer never releases it (a process killed mid-upload).
pub const RESERVATION_LEASE: Duration = Duration::from_secs(15 * 60);

/// Bytes of a tenant's quota held for one write in flight; given back when dropped.
pub struct Reservation {
    catalog: Catalog,
    id: i64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // A release that fails (the database is down) leaves the bytes held until the lease ends: the quota
        // errs on the side of refusing, never of passing.
        let _ = self.catalog.engine.release(self.catalog.ns, self.id);
    }
}

/// A reservation refused: what is stored, what others hold, what was asked, and the quota.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuotaRefused {
    pub stored: u64,
    pub reserved: u64,
    pub asked: u64,
    pub max: u64,
}

impl std::fmt::Display for QuotaRefused {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(out, "{} stored + {} being written + {} asked > {}", self.stored, self.reserved, self.asked, self.max)
    }
}

/// One tenant's chunk index in a catalog engine.
#[derive(Clone)]
pub struct Catalog {
    engine: Arc<dyn Engine>,
    ns: i64,
}

impl Catalog {
    pub fn new(engine: Arc<dyn Engine>, vault: &str, tenant: &str) -> Result<Catalog> {
        let ns = engine.namespace(vault, tenant)?;
        Ok(Catalog { engine, ns })
    }

    /// The same engine, for another tenant of the vault.
    pub fn for_tenant(&self, vault: &str, tenant: &str) -> Result<Catalog> {
        Catalog::new(self.engine.clone(), vault, tenant)
    }

    pub fn describe(&self) -> String {
        self.engine.describe()
    }

    /// Bring the catalog up to the index files on the stores: `listed` are the names there now, `read`
    /// decrypts one. Costs one query when nothing changed. Returns why each unreadable file could not be
    /// read (its chunks count as absent: a backup stores them again).
    pub fn sync(
        &self,
        listed: Vec<String>,
        read: impl Fn(&str) -> Result<Vec<(ChunkId, Location)>>,
    ) -> Result<Vec<Error>> {
        let listed: BTreeSet<String> = listed.into_iter().collect();
        let known: BTreeSet<String> = self.engine.files(self.ns)?.into_iter().collect();
        let gone: Vec<String> = known.difference(&listed).cloned().collect();
        if !gone.is_empty() {
            self.engine.drop_files(self.ns, &gone)?;
        }
        let mut errors = Vec::new();
        for name in listed.difference(&known) {
            match read(name) {
                Ok(entries) => self.engine.add_file(self.ns, name, &entries)?,
                Err(e) => errors.push(e),
            }
        }
        Ok(errors)
    }

    /// An index file this process has just written to the stores.
    pub fn add_file(&self, name: &str, entries: &[(ChunkId, Location)]) -> Result<()> {
        self.engine.add_file(self.ns, name, entries)
    }

    /// Forget every index file of the tenant (`tenant delete --shred`).
    pub fn clear(&self) -> Result<()> {
        let files = self.engine.files(self.ns)?;
        self.engine.drop_files(self.ns, &files)
    }

    /// Index files this process has just deleted from the stores (prune, rotate).
    pub fn drop_files(&self, names: &[String]) -> Result<()> {
        self.engine.drop_files(self.ns, names)
    }

    pub fn lookup(&self, id: &ChunkId) -> Result<Option<Location>> {
        Ok(self.engine.lookup(self.ns, std::slice::from_ref(id))?.pop().flatten())
    }

    pub fn lookup_many(&self, ids: &[ChunkId]) -> Result<Vec<Option<Location>>> {
        self.engine.lookup(self.ns, ids)
    }

    /// How many lookups to gather before asking (see `Engine::lookup_batch`).
    pub fn lookup_batch(&self) -> usize {
        self.engine.lookup_batch()
    }

    /// Stored bytes and chunks, as counted when entries came and went.
    pub fn usage(&self) -> Result<(u64, u64)> {
        self.engine.usage(self.ns)
    }

    pub fn scan(&self, each: &mut dyn FnMut(ChunkId, Location) -> Result<()>) -> Result<()> {
        self.engine.scan(self.ns, each)
    }

    /// Hold `what` against the other instances on a shared catalog (None: there are none; see
    /// `Engine::exclusive`).
    pub fn exclusive(&self, what: &str) -> Result<Option<Exclusive>> {
        let held = self.engine.exclusive(self.ns, what)?;
        Ok(held.map(|held| Exclusive { catalog: self.clone(), what: what.to_string(), _held: held }))
    }

    /// Claim a job's run for one period (see `Engine::claim`).
    pub fn claim(&self, what: &str, period: Duration) -> Result<Claim> {
        self.engine.claim(self.ns, what, period)
    }

    /// Hold `bytes` of the quota `max` for a write about to happen (see `Engine::reserve`).
    pub fn reserve(&self, bytes: u64, max: u64) -> Result<std::result::Result<Reservation, QuotaRefused>> {
        Ok(match self.engine.reserve(self.ns, bytes, max, RESERVATION_LEASE)? {
            Reserved::Granted(id) => Ok(Reservation { catalog: self.clone(), id }),
            Reserved::Refused { stored, reserved } => Err(QuotaRefused { stored, reserved, asked: bytes, max }),
        })
    }
}

/// The check every engine makes inside its transaction.
pub(crate) fn within(stored: u64, reserved: u64, bytes: u64, max: u64) -> bool {
    stored.saturating_add(reserved).saturating_add(bytes) <= max
}

/// A catalog engine's own failure, named with the engine ("sqlite /path: ...").
pub(crate) fn unavailable(engine: &str, err: impl std::fmt::Display) -> Error {
    Error::Unavailable { what: format!("the catalog ({engine})"), reason: err.to_string() }
}

/// Entries a scan reads at once.
pub(crate) const SCAN_PAGE: usize = 10_000;

/// A row of the catalog that does not make sense: the database was damaged or written by something else.
pub(crate) fn corrupt(engine: &str, what: &str) -> Error {
    Error::Corrupt { object: format!("the catalog ({engine})"), reason: what.to_string() }
}

/// A location as the catalog's columns hold it: blob type, codec, index, offset, length, raw length.
pub(crate) fn columns(location: &Location) -> [i64; 6] {
    [
        location.blob_type as i64,
        location.codec as i64,
        location.index as i64,
        location.offset as i64,
        location.length as i64,
        location.raw_length as i64,
    ]
}

/// A location from its columns; a row that does not make one is corruption of the catalog.
pub(crate) fn location(engine: &str, pack: &[u8], cols: [i64; 6], base: Option<&[u8]>) -> Result<Location> {
    let bad = |what: &str| corrupt(engine, what);
    let small = |v: i64| u32::try_from(v).map_err(|_| bad("a location field out of range"));
    let pack = PackId(pack.try_into().map_err(|_| bad("a pack id of the wrong length"))?);
    let blob_type = u8::try_from(cols[0]).ok().and_then(BlobType::from_u8).ok_or_else(|| bad("unknown blob type"))?;
    let codec = u8::try_from(cols[1]).ok().and_then(Codec::from_u8).ok_or_else(|| bad("unknown codec"))?;
    let base = base.map(|b| b.try_into().map(ChunkId).map_err(|_| bad("a base id of the wrong length"))).transpose()?;
    Ok(Location {
        pack,
        blob_type,
        codec,
        index: small(cols[2])?,
        offset: small(cols[3])?,
        length: small(cols[4])?,
        raw_length: small(cols[5])?,
        base,
    })
}

#[cfg(test)]
mod tests;

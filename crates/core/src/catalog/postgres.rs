//! The PostgreSQL engine: one database that many servers and admin commands share, through tokio-postgres
//! with a deadpool pool, driven from the synchronous core on the stores' runtime. Lookups and inserts go in
//! batches (`= ANY($2)`, `unnest` of arrays), so a backup's round trips grow with its batches, not its chunks.

use super::{columns, corrupt, location, unavailable, within, Engine, Reserved, SCAN_PAGE};
use crate::error::Result;
use crate::format::index::Location;
use crate::ids::ChunkId;
use crate::store::runtime::runtime;
use deadpool_postgres::{Pool, PoolConfig, Runtime, Timeouts};
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::NoTls;

/// The schema, one migration per version, applied in order under an advisory lock (two instances starting
/// at once migrate once).
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/postgres/0001_chunk_index.sql"),
    include_str!("migrations/postgres/0002_reservations.sql"),
    include_str!("migrations/postgres/0003_counters.sql"),
    include_str!("migrations/postgres/0004_leases.sql"),
];

/// Rows per statement of a batched insert or lookup.
const BATCH: usize = 10_000;

pub(crate) struct PostgresEngine {
    pool: Pool,
    shown: String,
}

/// A PostgreSQL URL without its password.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{}", &rest[at + 1..])
        }
        None => url.to_string(),
    }
}

/// Which database a URL names, whoever connects: `postgres://HOST:PORT/DB` (the vault config's binding).
pub(crate) fn identity(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(cfg) => {
            let host = match cfg.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
                None => "localhost".into(),
            };
            let port = cfg.get_ports().first().copied().unwrap_or(5432);
            format!("postgres://{host}:{port}/{}", cfg.get_dbname().unwrap_or_default())
        }
        Err(_) => redact(url),
    }
}

impl PostgresEngine {
    pub(crate) fn connect(url: &str) -> Result<PostgresEngine> {
        let shown = format!("postgres {}", redact(url));
        let mut cfg = deadpool_postgres::Config::new();
        cfg.url = Some(url.to_string());
        // A database that is down answers within seconds (a 503 naming the catalog), never hangs a request.
        let wait = Some(Duration::from_secs(5));
        cfg.pool = Some(PoolConfig {
            max_size: 16,
            timeouts: Timeouts { wait, create: wait, recycle: wait },
            ..Default::default()
        });
        let pool = cfg.create_pool(Some(Runtime::Tokio1), NoTls).map_err(|e| unavailable(&shown, e))?;
        let engine = PostgresEngine { pool, shown };
        engine.migrate()?;
        Ok(engine)
    }

    fn run<T>(&self, work: impl std::future::Future<Output = std::result::Result<T, Failure>>) -> Result<T> {
        runtime().block_on(work).map_err(|e| match e {
            Failure::Db(e) => unavailable(&self.shown, db_message(&e)),
            Failure::Pool(e) => unavailable(&self.shown, e),
            Failure::Other(e) => e,
        })
    }

    fn migrate(&self) -> Result<()> {
        self.run(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            // 'mvlt' as a number: one lock id for this schema, whatever else the database holds.
            tx.execute("SELECT pg_advisory_xact_lock(1836477556)", &[]).await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INT PRIMARY KEY, \
                 applied TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .await?;
            let have: i32 = tx.query_one("SELECT coalesce(max(version), 0) FROM schema_migrations", &[]).await?.get(0);
            for (n, sql) in MIGRATIONS.iter().enumerate().skip(have as usize) {
                tx.batch_execute(sql).await?;
                tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&(n as i32 + 1)]).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

/// Why a database call failed.
enum Failure {
    Db(tokio_postgres::Error),
    Pool(deadpool_postgres::PoolError),
    Other(crate::error::Error),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(err: tokio_postgres::Error) -> Self {
        Failure::Db(err)
    }
}

impl From<deadpool_postgres::PoolError> for Failure {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        Failure::Pool(err)
    }
}

impl From<crate::error::Error> for Failure {
    fn from(err: crate::error::Error) -> Self {
        Failure::Other(err)
    }
}

/// The server's own message when there is one ("relation ... does not exist"), else the driver's.
fn db_message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => err.to_string(),
    }
}

async fn add_usage(
    tx: &deadpool_postgres::Transaction<'_>,
    ns: i64,
    bytes: i64,
    chunks: i64,
) -> std::result::Result<(), Failure> {
    tx.execute(
        "INSERT INTO usage (ns, bytes, chunks) VALUES ($1, $2, $3) \
         ON CONFLICT (ns) DO UPDATE SET bytes = usage.bytes + excluded.bytes, chunks = usage.chunks + excluded.chunks",
        &[&ns, &bytes, &chunks],
    )
    .await?;
    Ok(())
}

const SELECT_LOCATION: &str = "chunk, pack, blob_type, codec, blob_index, pack_offset, length, raw_length, base";

impl PostgresEngine {
    fn row_location(&self, row: &tokio_postgres::Row) -> Result<(Vec<u8>, Location)> {
        let cols =
            [row.get::<_, i16>(2) as i64, row.get::<_, i16>(3) as i64, row.get(4), row.get(5), row.get(6), row.get(7)];
        let base: Option<Vec<u8>> = row.get(8);
        let pack: Vec<u8> = row.get(1);
        Ok((row.get(0), location(&self.shown, &pack, cols, base.as_deref())?))
    }
}

impl Engine for PostgresEngine {
    fn namespace(&self, vault: &str, tenant: &str) -> Result<i64> {
        self.run(async {
            let client = self.pool.get().await?;
            client
                .execute(
                    "INSERT INTO namespaces (vault, tenant) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&vault, &tenant],
                )
                .await?;
            let row = client
                .query_one("SELECT id FROM namespaces WHERE vault = $1 AND tenant = $2", &[&vault, &tenant])
                .await?;
            Ok(row.get(0))
        })
    }

    fn files(&self, ns: i64) -> Result<Vec<String>> {
        self.run(async {
            let client = self.pool.get().await?;
            let rows = client.query("SELECT name FROM index_files WHERE ns = $1", &[&ns]).await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn add_file(&self, ns: i64, name: &str, entries: &[(ChunkId, Location)]) -> Result<()> {
        self.run(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let added = tx
                .query_opt(
                    "INSERT INTO index_files (ns, name) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING id",
                    &[&ns, &name],
                )
                .await?;
            // Another instance ingested this file already: its rows came in the same transaction as its name.
            let Some(row) = added else { return Ok(()) };
            let file: i64 = row.get(0);
            // One writer per tenant at a time here, so two instances adding the same new chunk in two files
            // count it once.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ns]).await?;
            // The same shape as a lookup (an index probe per id), which the planner keeps whatever the
            // table's statistics say; an anti-join against the table was planned as a scan of all of it.
            let stored = tx.prepare("SELECT DISTINCT chunk FROM chunks WHERE ns = $1 AND chunk = ANY($2)").await?;
            let (mut bytes, mut chunks) = (0i64, 0i64);
            let insert = tx
                .prepare(
                    "INSERT INTO chunks (ns, chunk, file, pack, blob_type, codec, blob_index, pack_offset, length, \
                     raw_length, base) \
                     SELECT $1, u.chunk, $2, u.pack, u.t, u.c, u.i, u.o, u.len, u.raw, u.base \
                     FROM unnest($3::bytea[], $4::bytea[], $5::int2[], $6::int2[], $7::int8[], $8::int8[], \
                     $9::int8[], $10::int8[], $11::bytea[]) AS u(chunk, pack, t, c, i, o, len, raw, base) \
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            for batch in entries.chunks(BATCH) {
                let chunk: Vec<&[u8]> = batch.iter().map(|(id, _)| &id.0[..]).collect();
                let pack: Vec<&[u8]> = batch.iter().map(|(_, l)| &l.pack.0[..]).collect();
                let cols: Vec<[i64; 6]> = batch.iter().map(|(_, l)| columns(l)).collect();
                let small = |k: usize| cols.iter().map(|c| c[k] as i16).collect::<Vec<i16>>();
                let wide = |k: usize| cols.iter().map(|c| c[k]).collect::<Vec<i64>>();
                let base: Vec<Option<&[u8]>> = batch.iter().map(|(_, l)| l.base.as_ref().map(|b| &b.0[..])).collect();
                let (t, c, i, o, len, raw) = (small(0), small(1), wide(2), wide(3), wide(4), wide(5));
                let known: std::collections::HashSet<Vec<u8>> =
                    tx.query(&stored, &[&ns, &chunk]).await?.iter().map(|r| r.get(0)).collect();
                for (_, l) in batch.iter().filter(|(id, _)| !known.contains(&id.0[..])) {
                    (bytes, chunks) = (bytes + l.length as i64, chunks + 1);
                }
                tx.execute(&insert, &[&ns, &file, &chunk, &pack, &t, &c, &i, &o, &len, &raw, &base]).await?;
            }
            add_usage(&tx, ns, bytes, chunks).await?;
            tx.commit().await?;
            // A large ingest (a new catalog filling itself) leaves the planner's statistics far behind.
            if entries.len() >= 100_000 {
                client.batch_execute("ANALYZE chunks").await?;
            }
            Ok(())
        })
    }

    fn drop_files(&self, ns: i64, names: &[String]) -> Result<()> {
        self.run(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let files: Vec<i64> = tx
                .query("SELECT id FROM index_files WHERE ns = $1 AND name = ANY($2)", &[&ns, &names])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ns]).await?;
            let mut gone: HashMap<Vec<u8>, i64> = HashMap::new();
            for row in tx.query("DELETE FROM chunks WHERE file = ANY($1) RETURNING chunk, length", &[&files]).await? {
                gone.insert(row.get(0), row.get(1));
            }
            tx.execute("DELETE FROM index_files WHERE id = ANY($1)", &[&files]).await?;
            // A chunk still named by another file is still stored.
            let ids: Vec<&[u8]> = gone.keys().map(Vec::as_slice).collect();
            for row in
                tx.query("SELECT DISTINCT chunk FROM chunks WHERE ns = $1 AND chunk = ANY($2)", &[&ns, &ids]).await?
            {
                gone.remove(&row.get::<_, Vec<u8>>(0));
            }
            let bytes: i64 = gone.values().sum();
            add_usage(&tx, ns, -bytes, -(gone.len() as i64)).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn lookup(&self, ns: i64, ids: &[ChunkId]) -> Result<Vec<Option<Location>>> {
        self.run(async {
            let client = self.pool.get().await?;
            let query = client
                .prepare_cached(&format!(
                    "SELECT DISTINCT ON (chunk) {SELECT_LOCATION} FROM chunks WHERE ns = $1 AND chunk = ANY($2)"
                ))
                .await?;
            let mut found: HashMap<Vec<u8>, Location> = HashMap::new();
            for batch in ids.chunks(BATCH) {
                let wanted: Vec<&[u8]> = batch.iter().map(|id| &id.0[..]).collect();
                for row in client.query(&query, &[&ns, &wanted]).await? {
                    let (chunk, l) = self.row_location(&row)?;
                    found.insert(chunk, l);
                }
            }
            Ok(ids.iter().map(|id| found.get(&id.0[..]).copied()).collect())
        })
    }

    fn usage(&self, ns: i64) -> Result<(u64, u64)> {
        self.run(async {
            let client = self.pool.get().await?;
            let row = client.query_opt("SELECT bytes, chunks FROM usage WHERE ns = $1", &[&ns]).await?;
            let (bytes, chunks): (i64, i64) = row.map(|r| (r.get(0), r.get(1))).unwrap_or_default();
            Ok((bytes.max(0) as u64, chunks.max(0) as u64))
        })
    }

    fn scan(&self, ns: i64, each: &mut dyn FnMut(ChunkId, Location) -> Result<()>) -> Result<()> {
        // Pages by chunk id: memory stays at one page, and `each` may use the catalog between them.
        let mut after: Vec<u8> = Vec::new();
        loop {
            let page = self.run(async {
                let client = self.pool.get().await?;
                let rows = client
                    .query(
                        &format!(
                            "SELECT DISTINCT ON (chunk) {SELECT_LOCATION} FROM chunks WHERE ns = $1 AND chunk > $2 \
                             ORDER BY chunk LIMIT $3"
                        ),
                        &[&ns, &after, &(SCAN_PAGE as i64)],
                    )
                    .await?;
                rows.iter()
                    .map(|r| self.row_location(r).map_err(Failure::Other))
                    .collect::<std::result::Result<Vec<_>, _>>()
            })?;
            let Some((last, _)) = page.last() else { return Ok(()) };
            after = last.clone();
            for (chunk, l) in page {
                let id = chunk
                    .try_into()
                    .map(ChunkId)
                    .map_err(|_| corrupt(&self.shown, "a chunk id of the wrong length"))?;
                each(id, l)?;
            }
        }
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn lookup_batch(&self) -> usize {
        1024
    }

    fn reserve(&self, ns: i64, bytes: u64, max: u64, lease: Duration) -> Result<Reserved> {
        self.run(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            // The tenant's usage row, locked: reservations of one tenant, from every instance, are checked one
            // at a time against what is stored and what the others hold. Index files add to the same row.
            tx.execute("INSERT INTO usage (ns, bytes, chunks) VALUES ($1, 0, 0) ON CONFLICT DO NOTHING", &[&ns]).await?;
            let stored: i64 = tx.query_one("SELECT bytes FROM usage WHERE ns = $1 FOR UPDATE", &[&ns]).await?.get(0);
            // The database's clock, one for all instances.
            tx.execute("DELETE FROM reservations WHERE ns = $1 AND expires <= now()", &[&ns]).await?;
            let reserved: i64 = tx
                .query_one("SELECT coalesce(sum(bytes), 0)::int8 FROM reservations WHERE ns = $1", &[&ns])
                .await?
                .get(0);
            let (stored, reserved) = (stored.max(0) as u64, reserved.max(0) as u64);
            if !within(stored, reserved, bytes, max) {
                return Ok(Reserved::Refused { stored, reserved });
            }
            let row = tx
                .query_one(
                    "INSERT INTO reservations (ns, bytes, expires)                      VALUES ($1, $2, now() + make_interval(secs => $3)) RETURNING id",
                    &[&ns, &(bytes as i64), &lease.as_secs_f64()],
                )
                .await?;
            tx.commit().await?;
            Ok(Reserved::Granted(row.get(0)))
        })
    }

    fn release(&self, ns: i64, id: i64) -> Result<()> {
        self.run(async {
            let client = self.pool.get().await?;
            client.execute("DELETE FROM reservations WHERE ns = $1 AND id = $2", &[&ns, &id]).await?;
            Ok(())
        })
    }

    fn exclusive(&self, ns: i64, what: &str) -> Result<Option<Box<dyn Send>>> {
        // A session lock on a connection taken out of the pool for as long as it is held: an instance that dies
        // drops the connection, and PostgreSQL lets the lock go with it.
        let key = self.session_key(ns, what)?;
        let client = self.run(async {
            let client = self.pool.get().await?;
            client.execute("SELECT pg_advisory_lock($1, $2)", &[&key.0, &key.1]).await?;
            Ok(client)
        })?;
        Ok(Some(Box::new(SessionLock { client: Some(client), key })))
    }

    fn claim(&self, ns: i64, what: &str, period: Duration) -> Result<super::Claim> {
        let key = self.session_key(ns, what)?;
        let claimed = self.run(async {
            let client = self.pool.get().await?;
            // Not while another instance runs it (the session lock), and once per period (the lease row, on the
            // database's clock).
            let free: bool = client.query_one("SELECT pg_try_advisory_lock($1, $2)", &[&key.0, &key.1]).await?.get(0);
            if !free {
                return Ok(None);
            }
            let leased = client
                .query_opt(
                    "INSERT INTO leases (ns, name, until) VALUES ($1, $2, now() + make_interval(secs => $3)) \
                     ON CONFLICT (ns, name) DO UPDATE SET until = excluded.until WHERE leases.until <= now() \
                     RETURNING 1",
                    &[&ns, &what, &period.as_secs_f64()],
                )
                .await;
            Ok(Some((client, leased)))
        })?;
        let Some((client, leased)) = claimed else { return Ok(super::Claim::Taken) };
        // From here the session lock is held: a SessionLock gives it back whatever happens next.
        let lock = SessionLock { client: Some(client), key };
        match leased {
            Ok(Some(_)) => Ok(super::Claim::Mine(Box::new(lock))),
            Ok(None) => Ok(super::Claim::Taken),
            Err(e) => Err(unavailable(&self.shown, db_message(&e))),
        }
    }

    fn counter(&self, ns: i64, what: &str) -> Result<u64> {
        self.run(async {
            let client = self.pool.get().await?;
            let row = client.query_opt("SELECT value FROM counters WHERE ns = $1 AND name = $2", &[&ns, &what]).await?;
            Ok(row.map(|r| r.get::<_, i64>(0).max(0) as u64).unwrap_or(0))
        })
    }

    fn set_counter(&self, ns: i64, what: &str, value: u64) -> Result<()> {
        self.run(async {
            let client = self.pool.get().await?;
            client
                .execute(
                    "INSERT INTO counters (ns, name, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (ns, name) DO UPDATE SET value = excluded.value",
                    &[&ns, &what, &(value as i64)],
                )
                .await?;
            Ok(())
        })
    }
}

impl PostgresEngine {
    /// The two keys of a session lock on `what` of a namespace (`exclusive`, `claim`): the namespace id and
    /// `lock_key(what)`. The two-key form keeps these apart from the one-key locks of the index and migrations.
    fn session_key(&self, ns: i64, what: &str) -> Result<(i32, i32)> {
        let ns = i32::try_from(ns).map_err(|_| corrupt(&self.shown, "a namespace id out of range"))?;
        Ok((ns, lock_key(what)))
    }
}

/// The second key of a session lock: FNV-1a of the resource's name.
fn lock_key(what: &str) -> i32 {
    let hash = what.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193));
    hash as i32
}

/// An advisory lock held on a connection of its own until dropped.
struct SessionLock {
    client: Option<deadpool_postgres::Object>,
    key: (i32, i32),
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        let key = self.key;
        let unlocked =
            runtime().block_on(async { client.execute("SELECT pg_advisory_unlock($1, $2)", &[&key.0, &key.1]).await });
        if unlocked.is_err() {
            // Never back to the pool still holding the lock: closing the connection releases it.
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

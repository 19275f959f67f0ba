//! The embedded engine: SQLite through rusqlite's bundled build (no system library to match), one database
//! file per vault, in WAL mode so that several local commands read while one writes. The file is private
//! (0600 in a 0700 directory): it holds chunk ids and pack locations, no content and no key.

use super::{columns, corrupt, location, unavailable, within, Engine, Reserved, SCAN_PAGE};
use crate::error::{Error, Result};
use crate::format::index::Location;
use crate::ids::ChunkId;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The schema, one migration per version, applied in order (`user_version` says how far a file is).
const MIGRATIONS: &[&str] =
    &[include_str!("migrations/sqlite/0001_chunk_index.sql"), include_str!("migrations/sqlite/0002_reservations.sql")];

pub(crate) struct SqliteEngine {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteEngine {
    /// The catalog of a vault in its own cache directory.
    pub(crate) fn open(dir: &Path) -> Result<SqliteEngine> {
        private_dir(dir)?;
        SqliteEngine::open_file(&dir.join("catalog.sqlite"))
    }

    pub(crate) fn open_file(path: &Path) -> Result<SqliteEngine> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                private_dir(parent)?;
            }
        }
        // Made 0600 before SQLite opens it: its WAL and shared-memory files take the database file's mode.
        crate::private::file_for_append(path).map_err(|e| Error::Io {
            op: "create",
            path: path.to_path_buf(),
            source: e,
        })?;
        let name = format!("sqlite {}", path.display());
        let fail = |e: rusqlite::Error| unavailable(&name, e);
        let conn = Connection::open(path).map_err(fail)?;
        // A lost last commit on power loss only means an index file is ingested again; the file never tears.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(fail)?;
        conn.busy_timeout(std::time::Duration::from_secs(60)).map_err(fail)?;
        migrate(&conn).map_err(fail)?;
        Ok(SqliteEngine { path: path.to_path_buf(), conn: Mutex::new(conn) })
    }

    fn fail(&self, err: rusqlite::Error) -> Error {
        unavailable(&self.describe(), err)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while the lock was held cannot leave a half transaction: rusqlite rolls back on drop.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn private_dir(dir: &Path) -> Result<()> {
    crate::private::dir_all(dir).map_err(|e| Error::Io { op: "create directory", path: dir.to_path_buf(), source: e })
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let have: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(have.max(0) as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", n + 1))?;
        tx.commit()?;
    }
    Ok(())
}

impl Engine for SqliteEngine {
    fn namespace(&self, vault: &str, tenant: &str) -> Result<i64> {
        let conn = self.conn();
        let run = || -> rusqlite::Result<i64> {
            conn.execute("INSERT OR IGNORE INTO namespaces (vault, tenant) VALUES (?1, ?2)", params![vault, tenant])?;
            conn.query_row("SELECT id FROM namespaces WHERE vault = ?1 AND tenant = ?2", params![vault, tenant], |r| {
                r.get(0)
            })
        };
        run().map_err(|e| self.fail(e))
    }

    fn files(&self, ns: i64) -> Result<Vec<String>> {
        let conn = self.conn();
        let run = || -> rusqlite::Result<Vec<String>> {
            let mut stmt = conn.prepare_cached("SELECT name FROM index_files WHERE ns = ?1")?;
            let names = stmt.query_map([ns], |r| r.get(0))?.collect();
            names
        };
        run().map_err(|e| self.fail(e))
    }

    fn add_file(&self, ns: i64, name: &str, entries: &[(ChunkId, Location)]) -> Result<()> {
        let mut conn = self.conn();
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            let added =
                tx.execute("INSERT OR IGNORE INTO index_files (ns, name) VALUES (?1, ?2)", params![ns, name])?;
            if added == 1 {
                let file = tx.last_insert_rowid();
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO chunks (ns, chunk, file, pack, blob_type, codec, blob_index, pack_offset, \
                     length, raw_length, base) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?;
                let mut known =
                    tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM chunks WHERE ns = ?1 AND chunk = ?2)")?;
                let (mut bytes, mut chunks) = (0i64, 0i64);
                for (id, l) in entries {
                    let [t, c, i, o, len, raw] = columns(l);
                    let base = l.base.map(|b| b.0.to_vec());
                    let seen: bool = known.query_row(params![ns, &id.0[..]], |r| r.get(0))?;
                    let added =
                        insert.execute(params![ns, &id.0[..], file, &l.pack.0[..], t, c, i, o, len, raw, base])?;
                    if added == 1 && !seen {
                        (bytes, chunks) = (bytes + len, chunks + 1);
                    }
                }
                add_usage(&tx, ns, bytes, chunks)?;
            }
            tx.commit()
        };
        run(&mut conn).map_err(|e| self.fail(e))
    }

    fn drop_files(&self, ns: i64, names: &[String]) -> Result<()> {
        let mut conn = self.conn();
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for name in names {
                let file: Option<i64> = tx
                    .query_row("SELECT id FROM index_files WHERE ns = ?1 AND name = ?2", params![ns, name], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if let Some(file) = file {
                    let gone: Vec<(Vec<u8>, i64)> = tx
                        .prepare_cached("DELETE FROM chunks WHERE file = ?1 RETURNING chunk, length")?
                        .query_map([file], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<_>>()?;
                    tx.execute("DELETE FROM index_files WHERE id = ?1", [file])?;
                    // A chunk still named by another file is still stored.
                    let mut still =
                        tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM chunks WHERE ns = ?1 AND chunk = ?2)")?;
                    let (mut bytes, mut chunks) = (0i64, 0i64);
                    for (chunk, len) in gone {
                        if !still.query_row(params![ns, chunk], |r| r.get::<_, bool>(0))? {
                            (bytes, chunks) = (bytes - len, chunks - 1);
                        }
                    }
                    add_usage(&tx, ns, bytes, chunks)?;
                }
            }
            tx.commit()
        };
        run(&mut conn).map_err(|e| self.fail(e))
    }

    fn lookup(&self, ns: i64, ids: &[ChunkId]) -> Result<Vec<Option<Location>>> {
        let conn = self.conn();
        let name = self.describe();
        let mut stmt = conn
            .prepare_cached(
                "SELECT pack, blob_type, codec, blob_index, pack_offset, length, raw_length, base FROM chunks \
                 WHERE ns = ?1 AND chunk = ?2 LIMIT 1",
            )
            .map_err(|e| self.fail(e))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row = stmt.query_row(params![ns, &id.0[..]], row_location).optional().map_err(|e| self.fail(e))?;
            out.push(row.map(|(pack, cols, base)| location(&name, &pack, cols, base.as_deref())).transpose()?);
        }
        Ok(out)
    }

    fn usage(&self, ns: i64) -> Result<(u64, u64)> {
        let conn = self.conn();
        let found: Option<(i64, i64)> = conn
            .query_row("SELECT bytes, chunks FROM usage WHERE ns = ?1", [ns], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(|e| self.fail(e))?;
        let (bytes, chunks) = found.unwrap_or_default();
        Ok((bytes.max(0) as u64, chunks.max(0) as u64))
    }

    fn scan(&self, ns: i64, each: &mut dyn FnMut(ChunkId, Location) -> Result<()>) -> Result<()> {
        // Pages by chunk id, the lock released between them: `each` may use the catalog, and memory stays at
        // one page whatever the vault holds.
        let name = self.describe();
        let mut after: Vec<u8> = Vec::new();
        loop {
            let page: Vec<(Vec<u8>, Location)> = {
                let conn = self.conn();
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT chunk, pack, blob_type, codec, blob_index, pack_offset, length, raw_length, base \
                         FROM chunks WHERE ns = ?1 AND chunk > ?2 ORDER BY chunk LIMIT ?3",
                    )
                    .map_err(|e| self.fail(e))?;
                let rows = stmt
                    .query_map(params![ns, after, SCAN_PAGE as i64], |r| {
                        let chunk: Vec<u8> = r.get(0)?;
                        let cols = [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?];
                        Ok((chunk, r.get::<_, Vec<u8>>(1)?, cols, r.get::<_, Option<Vec<u8>>>(8)?))
                    })
                    .map_err(|e| self.fail(e))?;
                let mut page = Vec::new();
                for row in rows {
                    let (chunk, pack, cols, base) = row.map_err(|e| self.fail(e))?;
                    // A chunk named by several files: its rows are adjacent; the first stands for all.
                    if page.last().is_some_and(|(c, _): &(Vec<u8>, Location)| *c == chunk) {
                        continue;
                    }
                    page.push((chunk, location(&name, &pack, cols, base.as_deref())?));
                }
                page
            };
            let Some((last, _)) = page.last() else { return Ok(()) };
            after = last.clone();
            for (chunk, l) in page {
                let id = chunk.try_into().map(ChunkId).map_err(|_| corrupt(&name, "a chunk id of the wrong length"))?;
                each(id, l)?;
            }
        }
    }

    fn reserve(&self, ns: i64, bytes: u64, max: u64, lease: std::time::Duration) -> Result<Reserved> {
        let mut conn = self.conn();
        let run = |conn: &mut Connection| -> rusqlite::Result<Reserved> {
            // IMMEDIATE takes the database's write lock before the first read: two processes checking the same
            // quota run one after the other.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now = unix_millis();
            tx.execute("DELETE FROM reservations WHERE ns = ?1 AND expires <= ?2", params![ns, now])?;
            let stored: i64 =
                tx.query_row("SELECT coalesce((SELECT bytes FROM usage WHERE ns = ?1), 0)", [ns], |r| r.get(0))?;
            let reserved: i64 =
                tx.query_row("SELECT coalesce(sum(bytes), 0) FROM reservations WHERE ns = ?1", [ns], |r| r.get(0))?;
            let (stored, reserved) = (stored.max(0) as u64, reserved.max(0) as u64);
            if !within(stored, reserved, bytes, max) {
                return Ok(Reserved::Refused { stored, reserved });
            }
            let until = now.saturating_add(lease.as_millis() as i64);
            tx.execute(
                "INSERT INTO reservations (ns, bytes, expires) VALUES (?1, ?2, ?3)",
                params![ns, bytes as i64, until],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(Reserved::Granted(id))
        };
        run(&mut conn).map_err(|e| self.fail(e))
    }

    fn release(&self, ns: i64, id: i64) -> Result<()> {
        let conn = self.conn();
        conn.execute("DELETE FROM reservations WHERE ns = ?1 AND id = ?2", params![ns, id])
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }
}

/// Milliseconds since 1970 (reservation leases; every process on one machine shares the clock).
fn unix_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn add_usage(tx: &rusqlite::Transaction<'_>, ns: i64, bytes: i64, chunks: i64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO usage (ns, bytes, chunks) VALUES (?1, ?2, ?3) \
         ON CONFLICT (ns) DO UPDATE SET bytes = bytes + excluded.bytes, chunks = chunks + excluded.chunks",
        params![ns, bytes, chunks],
    )?;
    Ok(())
}

type Row = (Vec<u8>, [i64; 6], Option<Vec<u8>>);

fn row_location(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let cols = [row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?];
    Ok((row.get(0)?, cols, row.get(7)?))
}

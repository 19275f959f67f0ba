//! The memory engine: the whole index in a HashMap, filled by each process from every index file, as every
//! process did before the catalog. Nothing persists, so it needs no cache directory; its cost grows with the
//! vault (about 300 bytes per chunk: the location, and which file names it), which the scale benchmark shows beside the databases.

use super::{within, Engine, Reserved};
use crate::error::Result;
use crate::format::index::Location;
use crate::ids::ChunkId;
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

#[derive(Default)]
pub(crate) struct MemoryEngine {
    spaces: RwLock<Vec<Space>>,
    /// Why the embedded catalog was not used, when this engine stands in for it.
    instead: Option<String>,
    /// Quota reservations, and the last id given.
    reservations: Mutex<(i64, Vec<Held>)>,
}

/// One quota reservation.
struct Held {
    id: i64,
    ns: i64,
    bytes: u64,
    until: Instant,
}

impl MemoryEngine {
    pub(crate) fn instead_of(why: crate::error::Error) -> MemoryEngine {
        MemoryEngine { instead: Some(why.to_string()), ..Default::default() }
    }
}

#[derive(Default)]
struct Space {
    vault: String,
    tenant: String,
    /// Each index file's number and the chunks it names, so that dropping it forgets exactly its entries.
    files: HashMap<String, (u32, Vec<ChunkId>)>,
    next_file: u32,
    /// Each chunk's location in every file that names it (one, but during a prune), newest last.
    index: HashMap<ChunkId, Vec<(u32, Location)>>,
    bytes: u64,
}

impl Engine for MemoryEngine {
    fn namespace(&self, vault: &str, tenant: &str) -> Result<i64> {
        let mut spaces = self.spaces.write().expect("memory catalog");
        if let Some(found) = spaces.iter().position(|s| s.vault == vault && s.tenant == tenant) {
            return Ok(found as i64);
        }
        spaces.push(Space { vault: vault.to_string(), tenant: tenant.to_string(), ..Default::default() });
        Ok(spaces.len() as i64 - 1)
    }

    fn files(&self, ns: i64) -> Result<Vec<String>> {
        Ok(self.spaces.read().expect("memory catalog")[ns as usize].files.keys().cloned().collect())
    }

    fn add_file(&self, ns: i64, name: &str, entries: &[(ChunkId, Location)]) -> Result<()> {
        let space = &mut self.spaces.write().expect("memory catalog")[ns as usize];
        if space.files.contains_key(name) {
            return Ok(());
        }
        let file = space.next_file;
        space.next_file += 1;
        let mut named = Vec::with_capacity(entries.len());
        for (id, location) in entries {
            let slot = space.index.entry(*id).or_default();
            if slot.is_empty() {
                space.bytes += location.length as u64;
            }
            slot.push((file, *location));
            named.push(*id);
        }
        space.files.insert(name.to_string(), (file, named));
        Ok(())
    }

    fn drop_files(&self, ns: i64, names: &[String]) -> Result<()> {
        let space = &mut self.spaces.write().expect("memory catalog")[ns as usize];
        for name in names {
            let Some((file, named)) = space.files.remove(name) else { continue };
            for id in named {
                if let Some(slot) = space.index.get_mut(&id) {
                    let length = slot.first().map(|(_, l)| l.length as u64).unwrap_or(0);
                    slot.retain(|(f, _)| *f != file);
                    if slot.is_empty() {
                        space.bytes -= length;
                        space.index.remove(&id);
                    }
                }
            }
        }
        Ok(())
    }

    fn lookup(&self, ns: i64, ids: &[ChunkId]) -> Result<Vec<Option<Location>>> {
        let space = &self.spaces.read().expect("memory catalog")[ns as usize];
        Ok(ids.iter().map(|id| space.index.get(id).and_then(|slot| slot.last()).map(|(_, l)| *l)).collect())
    }

    fn usage(&self, ns: i64) -> Result<(u64, u64)> {
        let space = &self.spaces.read().expect("memory catalog")[ns as usize];
        Ok((space.bytes, space.index.len() as u64))
    }

    fn scan(&self, ns: i64, each: &mut dyn FnMut(ChunkId, Location) -> Result<()>) -> Result<()> {
        // A copy, so `each` may use the catalog (a check looks up each entry's delta base).
        let entries: Vec<(ChunkId, Location)> = self.spaces.read().expect("memory catalog")[ns as usize]
            .index
            .iter()
            .filter_map(|(id, slot)| slot.last().map(|(_, l)| (*id, *l)))
            .collect();
        for (id, location) in entries {
            each(id, location)?;
        }
        Ok(())
    }

    fn reserve(&self, ns: i64, bytes: u64, max: u64, lease: Duration) -> Result<Reserved> {
        // The reservations' lock is taken first and held while usage is read: the check and the record are one
        // step for every writer of this process (the only ones this engine has).
        let mut held = self.reservations.lock().expect("memory reservations");
        let now = Instant::now();
        held.1.retain(|r| r.until > now);
        let stored = self.usage(ns)?.0;
        let reserved = held.1.iter().filter(|r| r.ns == ns).map(|r| r.bytes).sum();
        if !within(stored, reserved, bytes, max) {
            return Ok(Reserved::Refused { stored, reserved });
        }
        held.0 += 1;
        let id = held.0;
        held.1.push(Held { id, ns, bytes, until: now + lease });
        Ok(Reserved::Granted(id))
    }

    fn release(&self, _ns: i64, id: i64) -> Result<()> {
        self.reservations.lock().expect("memory reservations").1.retain(|r| r.id != id);
        Ok(())
    }

    fn describe(&self) -> String {
        match &self.instead {
            Some(why) => format!("memory (the embedded catalog could not be used: {why})"),
            None => "memory (every index file read by this process)".into(),
        }
    }
}

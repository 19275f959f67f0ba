//! The memory engine: the whole index in a HashMap, filled by each process from every index file, as every
//! process did before the catalog. Nothing persists, so it needs no cache directory; its cost grows with the
//! vault (about 250 bytes per chunk), which the scale benchmark shows beside the databases.

use super::Engine;
use crate::error::Result;
use crate::format::index::Location;
use crate::ids::ChunkId;
use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

#[derive(Default)]
pub(crate) struct MemoryEngine {
    spaces: RwLock<Vec<Space>>,
    /// Why the embedded catalog was not used, when this engine stands in for it.
    instead: Option<String>,
}

impl MemoryEngine {
    pub(crate) fn instead_of(why: crate::error::Error) -> MemoryEngine {
        MemoryEngine { instead: Some(why.to_string()), ..Default::default() }
    }
}

struct Space {
    vault: String,
    tenant: String,
    files: BTreeSet<String>,
    index: HashMap<ChunkId, Location>,
}

impl Engine for MemoryEngine {
    fn namespace(&self, vault: &str, tenant: &str) -> Result<i64> {
        let mut spaces = self.spaces.write().expect("memory catalog");
        if let Some(found) = spaces.iter().position(|s| s.vault == vault && s.tenant == tenant) {
            return Ok(found as i64);
        }
        let (vault, tenant) = (vault.to_string(), tenant.to_string());
        spaces.push(Space { vault, tenant, files: BTreeSet::new(), index: HashMap::new() });
        Ok(spaces.len() as i64 - 1)
    }

    fn files(&self, ns: i64) -> Result<Vec<String>> {
        Ok(self.spaces.read().expect("memory catalog")[ns as usize].files.iter().cloned().collect())
    }

    fn add_file(&self, ns: i64, name: &str, entries: &[(ChunkId, Location)]) -> Result<()> {
        let space = &mut self.spaces.write().expect("memory catalog")[ns as usize];
        if space.files.insert(name.to_string()) {
            space.index.extend(entries.iter().copied());
        }
        Ok(())
    }

    /// Forgets the names only: which entries came from which file is not kept (that would cost another 32
    /// bytes per chunk), so a dropped file's entries stay until the process ends, as they did before the
    /// catalog (prune's callers read the index again after it, as the server does), unless no file is left.
    fn drop_files(&self, ns: i64, names: &[String]) -> Result<()> {
        let space = &mut self.spaces.write().expect("memory catalog")[ns as usize];
        for name in names {
            space.files.remove(name);
        }
        // With no file left nothing can be named: a shredded tenant's entries go at once.
        if space.files.is_empty() {
            space.index = HashMap::new();
        }
        Ok(())
    }

    fn lookup(&self, ns: i64, ids: &[ChunkId]) -> Result<Vec<Option<Location>>> {
        let space = &self.spaces.read().expect("memory catalog")[ns as usize];
        Ok(ids.iter().map(|id| space.index.get(id).copied()).collect())
    }

    fn usage(&self, ns: i64) -> Result<(u64, u64)> {
        let space = &self.spaces.read().expect("memory catalog")[ns as usize];
        Ok((space.index.values().map(|l| l.length as u64).sum(), space.index.len() as u64))
    }

    fn scan(&self, ns: i64, each: &mut dyn FnMut(ChunkId, Location) -> Result<()>) -> Result<()> {
        // A copy, so `each` may use the catalog (a check looks up each entry's delta base).
        let entries: Vec<(ChunkId, Location)> =
            self.spaces.read().expect("memory catalog")[ns as usize].index.iter().map(|(id, l)| (*id, *l)).collect();
        for (id, l) in entries {
            each(id, l)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        match &self.instead {
            Some(why) => format!("memory (the embedded catalog could not be used: {why})"),
            None => "memory (every index file read by this process)".into(),
        }
    }
}

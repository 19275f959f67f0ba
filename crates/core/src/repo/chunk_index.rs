//! The tenant's chunk index: every index file read into memory at open, looked up by ChunkId, and new
//! entries written as index files (packs first, then the index that names them).

use super::Repo;
use crate::error::Result;
use crate::format::index;
use crate::format::index::Location;
use crate::format::object::Kind;
use crate::ids::{ChunkId, ObjectId};
use std::collections::HashMap;

impl Repo {
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
}

//! Store membership: `store add` and `store remove` (which first moves every shard and metadata object off
//! the store), and rebuilding one shard of a pack for that move.

use super::Repo;
use crate::error::{Error, Result};
use crate::format::config::StoreSpec;
use crate::ids::PackId;
use crate::redundancy;
use crate::store;

impl Repo {
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
}

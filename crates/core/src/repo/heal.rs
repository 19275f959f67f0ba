//! Keeping redundancy whole: `scrub` (read every shard, check its hash), `repair` (rebuild missing or rotten
//! shards onto their stores, copy metadata to stores that miss it), `rebalance` (move shards to where
//! placement now puts them) and `status`.
//!
//! Every step is idempotent and commits shard by shard (write the new copy, then delete the old one), so an
//! interrupted run, even one killed with SIGKILL, is simply run again and carries on.

use crate::durability::{self, Durability};
use crate::error::{Error, Result};
use crate::format::shard::ShardHeader;
use crate::ids::PackId;
use crate::redundancy;
use crate::repo::packs::{pack_path, Inventory, ShardAt, ShardCopy, ShardStatus};
use crate::repo::Repo;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub total: AtomicU64,
    pub bytes: AtomicU64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ShardProblem {
    pub pack: String,
    pub shard: usize,
    pub store: Option<String>,
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct HealReport {
    pub packs: u64,
    pub shards_checked: u64,
    pub missing: Vec<ShardProblem>,
    pub corrupt: Vec<ShardProblem>,
    /// Packs that have fewer than k good shards: data loss unless a store comes back.
    pub unrecoverable: Vec<String>,
    pub shards_repaired: u64,
    pub shards_moved: u64,
    pub bytes_written: u64,
    pub metadata_copied: u64,
    pub seconds: f64,
    /// Missing or corrupt shards found and not repaired by this run (`mvault repair` or `scrub --repair` can).
    pub unrepaired: u64,
    /// Temporaries of interrupted writes (older than the lock expiry) and stale locks `repair` removed.
    pub temporaries_removed: u64,
    pub stale_locks_removed: u64,
}

/// Packs healed at once: enough to overlap one pack's reads and decoding with another's fsync'ed writes on
/// two cores; each holds about k + m shards (~24 MiB for 16 MiB packs).
const HEAL_THREADS: usize = 4;

impl HealReport {
    /// Add another worker's findings; problems end up sorted by pack and shard, as a sequential run lists them.
    fn merge(&mut self, other: HealReport) {
        self.packs += other.packs;
        self.shards_checked += other.shards_checked;
        self.missing.extend(other.missing);
        self.corrupt.extend(other.corrupt);
        self.unrecoverable.extend(other.unrecoverable);
        self.shards_repaired += other.shards_repaired;
        self.shards_moved += other.shards_moved;
        self.bytes_written += other.bytes_written;
        self.metadata_copied += other.metadata_copied;
        let key = |p: &ShardProblem| (p.pack.clone(), p.shard, p.store.clone());
        self.missing.sort_by_key(key);
        self.corrupt.sort_by_key(key);
        self.unrecoverable.sort();
    }
}

/// Bytes-per-second throttle for background work (`--limit`), shared by the workers of one run.
pub struct Throttle {
    limit: Option<u64>,
    start: Instant,
    bytes: AtomicU64,
}

impl Throttle {
    pub fn new(limit: Option<u64>) -> Self {
        Throttle { limit, start: Instant::now(), bytes: AtomicU64::new(0) }
    }
    /// Count `bytes` bytes written and sleep until the run is back under the limit.
    pub fn account(&self, bytes: u64) {
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(l) = self.limit.filter(|l| *l > 0) {
            let due = Duration::from_secs_f64(total as f64 / l as f64);
            if let Some(wait) = due.checked_sub(self.start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}

impl Repo {
    fn problem(&self, pack: &PackId, shard: usize, store: Option<usize>, reason: String) -> ShardProblem {
        ShardProblem {
            pack: pack.to_hex(),
            shard,
            store: store.map(|s| self.config.stores[s].id.clone()),
            path: pack_path(&self.tenant, pack, shard),
            reason,
        }
    }

    /// Every pack the vault knows of: named by the index or present on a store.
    fn all_packs(&self, inventory: &Inventory) -> Result<BTreeSet<PackId>> {
        let mut packs: BTreeSet<PackId> = inventory.keys().copied().collect();
        self.scan_index(&mut |_, l| {
            packs.insert(l.pack);
            Ok(())
        })?;
        Ok(packs)
    }

    /// Check every shard copy of one pack as found in the inventory.
    fn scrub_pack(&self, pack: &PackId, copies: &[ShardCopy], report: &mut HealReport) -> ShardStatus {
        let mut st = ShardStatus::default();
        for shard in 0..self.shard_count() {
            let mut ok = false;
            for &ShardCopy { shard: s, store, .. } in copies.iter().filter(|c| c.shard == shard) {
                report.shards_checked += 1;
                match self.read_shard(pack, s, store) {
                    Ok(_) => {
                        ok = true;
                        st.good.push(ShardAt { shard: s, store });
                    }
                    Err(e) => {
                        st.corrupt.push((s, store, e.to_string()));
                        report.corrupt.push(self.problem(pack, s, Some(store), e.to_string()));
                    }
                }
            }
            if !ok {
                st.missing.push(shard);
                if !copies.iter().any(|c| c.shard == shard) {
                    report.missing.push(self.problem(pack, shard, None, "on no store that is up".into()));
                }
            }
        }
        st
    }

    /// Where a rebuilt shard goes: its placed store if up and free, else a free store of the pack's placed
    /// set, else the best-ranked up store holding no shard of this pack (rebalance moves it home later).
    fn repair_target(&self, pack: &PackId, shard: usize, holding: &BTreeSet<usize>) -> Option<usize> {
        let placement = self.placement(pack);
        let free = |s: &usize| !self.is_down(*s) && !holding.contains(s);
        std::iter::once(placement[shard])
            .chain(placement.iter().copied())
            .chain(redundancy::place(pack, &self.config.stores, self.config.stores.len()))
            .find(free)
    }

    /// Rebuild the bad shards of one pack; returns bytes written.
    fn repair_pack(
        &self,
        pack: &PackId,
        st: &ShardStatus,
        report: &mut HealReport,
        throttle: &Throttle,
    ) -> Result<u64> {
        let bad: BTreeSet<usize> = st.missing.iter().copied().collect();
        if bad.is_empty() {
            return Ok(0);
        }
        let good_shards: BTreeSet<usize> = st.good.iter().map(|g| g.shard).collect();
        if good_shards.len() < self.k() as usize {
            report.unrecoverable.push(pack.to_hex());
            return Ok(0);
        }
        let want: Vec<usize> = bad.iter().copied().collect();
        let (pack_len, rebuilt) = self.rebuild_shards(pack, &want)?;
        let (k, m) = (self.k(), self.config.redundancy.m);
        let mut holding: BTreeSet<usize> = st.good.iter().map(|g| g.store).collect();
        let mut written = 0;
        for (shard, payload) in &rebuilt {
            let Some(target) = self.repair_target(pack, *shard, &holding) else {
                return Err(Error::Unavailable {
                    what: format!("pack {pack}"),
                    reason: format!("no store is up to take shard {shard}: {}", self.down_stores_advice()),
                });
            };
            let header = ShardHeader::new(*pack, *shard as u8, k, m, pack_len, payload);
            let n = self.put_shard(target, &header, payload)?;
            holding.insert(target);
            written += n;
            report.shards_repaired += 1;
            throttle.account(n);
        }
        // Rotten copies that were not overwritten in place go away once a good copy exists.
        for (shard, store, _) in &st.corrupt {
            if self.placement(pack).get(*shard) != Some(store) || self.is_down(*store) {
                let _ = self.stores[*store].delete(&pack_path(&self.tenant, pack, *shard));
            }
        }
        self.clear_degraded(pack)?;
        Ok(written)
    }

    /// Copy every metadata object to the stores that are up and lack it.
    fn sync_metadata(&self, report: &mut HealReport) -> Result<()> {
        let mut prefixes = vec!["keys".to_string()];
        for sub in ["keys", "index", "snapshots", "degraded"] {
            prefixes.push(format!("tenants/{}/{sub}", self.tenant));
        }
        let mut names = vec!["config".to_string()];
        for p in &prefixes {
            names.extend(self.list_meta(p)?);
        }
        for name in names {
            let bytes = self.read_meta(&name, |b| Ok(b.to_vec()))?;
            for (i, s) in self.stores.iter().enumerate() {
                if self.is_down(i) {
                    continue;
                }
                let there =
                    if name == "config" { s.get(&name).ok().as_deref() == Some(&bytes[..]) } else { s.exists(&name)? };
                if !there {
                    s.put(&name, &bytes).inspect_err(|e| self.note_failure(i, e))?;
                    report.metadata_copied += 1;
                }
            }
        }
        Ok(())
    }

    /// Run `work` on every pack, a few packs at a time (reads, decoding and fsync'ed writes of different
    /// packs overlap, so a repair runs at the disk's pace rather than one pack's latency). Each worker keeps
    /// its own report; they are merged in pack order at the end. The first error stops every worker.
    fn each_pack<F>(&self, packs: &[PackId], progress: &Progress, work: F) -> Result<HealReport>
    where
        F: Fn(&PackId, &mut HealReport) -> Result<()> + Sync,
    {
        progress.total.store(packs.len() as u64, Ordering::Relaxed);
        let next = AtomicUsize::new(0);
        let first_err: Mutex<Option<Error>> = Mutex::new(None);
        let reports: Mutex<Vec<HealReport>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..HEAL_THREADS {
                s.spawn(|| {
                    let mut r = HealReport::default();
                    while first_err.lock().expect("error slot").is_none() {
                        let Some(pack) = packs.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                        if let Err(e) = work(pack, &mut r) {
                            first_err.lock().expect("error slot").get_or_insert(e);
                            break;
                        }
                        r.packs += 1;
                        progress.done.fetch_add(1, Ordering::Relaxed);
                        crate::fault::point("heal-pack-done");
                    }
                    reports.lock().expect("reports").push(r);
                });
            }
        });
        if let Some(e) = first_err.into_inner().expect("error slot") {
            return Err(e);
        }
        let mut r = HealReport::default();
        for part in reports.into_inner().expect("reports") {
            r.merge(part);
        }
        r.unrepaired = ((r.missing.len() + r.corrupt.len()) as u64).saturating_sub(r.shards_repaired);
        Ok(r)
    }

    /// Read every shard and check it; with `repair`, rebuild what is missing or rotten and copy metadata to
    /// stores that miss it.
    pub fn scrub(&self, repair: bool, limit: Option<u64>, progress: &Progress) -> Result<HealReport> {
        let start = Instant::now();
        let inventory = self.shard_inventory()?;
        let packs: Vec<PackId> = self.all_packs(&inventory)?.into_iter().collect();
        let logged: BTreeSet<PackId> = self.degraded_log()?.into_iter().collect();
        let throttle = Throttle::new(limit);
        let mut r = self.each_pack(&packs, progress, |pack, r| {
            let copies = inventory.get(pack).map(Vec::as_slice).unwrap_or(&[]);
            let st = self.scrub_pack(pack, copies, r);
            if st.good.iter().map(|g| g.shard).collect::<BTreeSet<_>>().len() < self.k() as usize {
                r.unrecoverable.push(pack.to_hex());
            } else if repair {
                r.bytes_written += self.repair_pack(pack, &st, r, &throttle)?;
                if st.missing.is_empty() && logged.contains(pack) {
                    self.clear_degraded(pack)?;
                }
            }
            progress.bytes.fetch_add(copies.iter().map(|c| c.size).sum(), Ordering::Relaxed);
            Ok(())
        })?;
        r.unrecoverable.dedup();
        if repair {
            self.sync_metadata(&mut r)?;
        }
        r.seconds = start.elapsed().as_secs_f64();
        Ok(r)
    }

    /// Rebuild missing shards without reading the healthy ones: shards absent from the inventory (a lost store,
    /// a failed write) are rebuilt; use `scrub --repair` to also find rotten ones.
    pub fn repair(&self, limit: Option<u64>, progress: &Progress) -> Result<HealReport> {
        let start = Instant::now();
        let inventory = self.shard_inventory()?;
        let packs: Vec<PackId> = self.all_packs(&inventory)?.into_iter().collect();
        let logged: BTreeSet<PackId> = self.degraded_log()?.into_iter().collect();
        let throttle = Throttle::new(limit);
        let mut r = self.each_pack(&packs, progress, |pack, r| {
            let copies = inventory.get(pack).map(Vec::as_slice).unwrap_or(&[]);
            let present: BTreeSet<usize> = copies.iter().map(|c| c.shard).collect();
            let missing: Vec<usize> = (0..self.shard_count()).filter(|s| !present.contains(s)).collect();
            if missing.is_empty() {
                if logged.contains(pack) {
                    self.clear_degraded(pack)?; // whole again (a store came back)
                }
                return Ok(());
            }
            for &s in &missing {
                r.missing.push(self.problem(pack, s, None, "on no store that is up".into()));
            }
            let st = ShardStatus {
                good: copies.iter().map(|c| ShardAt { shard: c.shard, store: c.store }).collect(),
                missing,
                corrupt: vec![],
            };
            match self.repair_pack(pack, &st, r, &throttle) {
                Ok(n) => r.bytes_written += n,
                // A rotten shard among the ones we relied on: the full scrub sorts it out.
                Err(Error::Corrupt { .. }) => {
                    let st = self.scrub_pack(pack, copies, r);
                    r.bytes_written += self.repair_pack(pack, &st, r, &throttle)?;
                }
                Err(e) => return Err(e),
            }
            Ok(())
        })?;
        self.sync_metadata(&mut r)?;
        (r.temporaries_removed, _) = self.sweep_temporaries()?;
        r.stale_locks_removed = self.remove_stale_locks()?;
        r.seconds = start.elapsed().as_secs_f64();
        Ok(r)
    }

    /// Move shards so each pack sits on the set of stores placement now names (after stores are added or
    /// removed). Set-based: a shard already on a store of the set stays there, so adding one store moves
    /// only the shards that store takes over, about 1/n of them.
    pub fn rebalance(&self, limit: Option<u64>, progress: &Progress) -> Result<HealReport> {
        let start = Instant::now();
        let mut r = HealReport::default();
        let inventory = self.shard_inventory()?;
        progress.total.store(inventory.len() as u64, Ordering::Relaxed);
        let throttle = Throttle::new(limit);
        for (pack, copies) in &inventory {
            self.rebalance_pack(pack, copies, &mut r, &throttle)?;
            r.packs += 1;
            progress.done.fetch_add(1, Ordering::Relaxed);
            crate::fault::point("heal-pack-done");
        }
        self.sync_metadata(&mut r)?;
        r.seconds = start.elapsed().as_secs_f64();
        Ok(r)
    }

    fn rebalance_pack(
        &self,
        pack: &PackId,
        copies: &[ShardCopy],
        report: &mut HealReport,
        throttle: &Throttle,
    ) -> Result<()> {
        let placement = self.placement(pack);
        let set: BTreeSet<usize> = placement.iter().copied().collect();
        let holders = |shard: usize| copies.iter().filter(move |c| c.shard == shard).map(|c| c.store);
        // Keep shards that already sit on a store of the set, one shard per store, the placed store first.
        let mut keep: BTreeMap<usize, usize> = BTreeMap::new();
        let mut occupied: BTreeSet<usize> = BTreeSet::new();
        for (shard, &home) in placement.iter().enumerate() {
            let mut held: Vec<usize> = holders(shard).filter(|s| set.contains(s) && !occupied.contains(s)).collect();
            held.sort_by_key(|&s| s != home);
            if let Some(&s) = held.first() {
                keep.insert(shard, s);
                occupied.insert(s);
            }
        }
        // Move the others onto free stores of the set, copying from a verified copy.
        for (shard, &home) in placement.iter().enumerate() {
            if keep.contains_key(&shard) {
                continue;
            }
            let free = |s: &usize| !self.is_down(*s) && !occupied.contains(s);
            let Some(target) = std::iter::once(home).chain(placement.iter().copied()).find(free) else { continue };
            let Some((_, payload)) = holders(shard).find_map(|from| self.read_shard(pack, shard, from).ok()) else {
                if holders(shard).next().is_some() {
                    report.corrupt.push(self.problem(
                        pack,
                        shard,
                        None,
                        "no verifiable copy to move (run scrub --repair)".into(),
                    ));
                }
                continue;
            };
            let obj = payload.object();
            self.stores[target]
                .put(&pack_path(&self.tenant, pack, shard), obj)
                .inspect_err(|e| self.note_failure(target, e))?;
            report.bytes_written += obj.len() as u64;
            report.shards_moved += 1;
            throttle.account(obj.len() as u64);
            keep.insert(shard, target);
            occupied.insert(target);
        }
        // Drop every other copy of a kept shard, once the kept copy is known good.
        for (&shard, &kept) in &keep {
            let extras: Vec<usize> = holders(shard).filter(|s| *s != kept).collect();
            if extras.is_empty() || self.read_shard(pack, shard, kept).is_err() {
                continue;
            }
            for from in extras {
                self.stores[from]
                    .delete(&pack_path(&self.tenant, pack, shard))
                    .inspect_err(|e| self.note_failure(from, e))?;
            }
        }
        Ok(())
    }

    /// Health, usage and fill of every store, the degraded packs, and the durability of the real layout.
    pub fn status(&self, repair_days: f64) -> Result<Status> {
        let mut stores = Vec::new();
        let mut usage = vec![0u64; self.stores.len()];
        let mut shards = vec![0u64; self.stores.len()];
        let mut up = vec![false; self.stores.len()];
        for (i, s) in self.stores.iter().enumerate() {
            match s.list_sized("") {
                Ok(objs) => {
                    up[i] = !self.is_down(i);
                    usage[i] = objs.iter().map(|o| o.1).sum();
                    shards[i] =
                        objs.iter().filter(|o| o.0.contains("/packs/") && !o.0.contains(".tmp-")).count() as u64;
                }
                Err(e) => self.note_failure(i, &e),
            }
        }
        let total_usage: u64 = usage.iter().sum();
        let total_weight: u64 = self.config.stores.iter().map(|s| s.weight.max(1) as u64).sum();
        for (i, spec) in self.config.stores.iter().enumerate() {
            let share = spec.weight.max(1) as f64 / total_weight as f64;
            let fill = if total_usage == 0 { 0.0 } else { usage[i] as f64 / total_usage as f64 / share };
            stores.push(StoreStatus {
                id: spec.id.clone(),
                url: spec.url.clone(),
                domain: spec.domain.clone(),
                weight: spec.weight,
                up: up[i],
                bytes: usage[i],
                shards: shards[i],
                fill_ratio: fill,
                afr: spec.afr,
                availability: spec.availability,
            });
        }
        let inventory = self.shard_inventory()?;
        let shortfall = self.shortfall(&inventory)?;
        let layout = self.layout_durability(inventory.keys(), repair_days);
        Ok(Status {
            k: self.k(),
            m: self.config.redundancy.m,
            stores,
            packs: inventory.len() as u64,
            degraded_packs: shortfall.degraded_packs(),
            unreadable_packs: shortfall.unreadable.len() as u64,
            shortfall,
            durability: layout,
        })
    }

    /// Which packs have fewer shards than the layout gives them on the stores that are up, and by how many.
    pub fn shortfall(&self, inventory: &Inventory) -> Result<Shortfall> {
        let n = self.shard_count();
        let mut out = Shortfall::default();
        for pack in self.all_packs(inventory)? {
            let present: BTreeSet<usize> = inventory.get(&pack).into_iter().flatten().map(|c| c.shard).collect();
            let missing = n.saturating_sub(present.len());
            if missing == 0 {
                continue;
            }
            *out.packs_by_missing_shards.entry(missing).or_default() += 1;
            out.shards_missing += missing as u64;
            if present.len() < self.k() as usize {
                out.unreadable.push(pack.to_hex());
            }
        }
        out.stores_down = (0..self.stores.len())
            .filter(|i| self.is_down(*i))
            .map(|i| format!("{} ({}): {}", self.config.stores[i].id, self.stores[i].url(), self.down_reason(i)))
            .collect();
        Ok(out)
    }

    /// Durability of the worst-placed pack set, from each store's AFR and availability.
    pub fn layout_durability<'a>(&self, packs: impl Iterator<Item = &'a PackId>, repair_days: f64) -> LayoutDurability {
        let k = self.k() as usize;
        let mut sets: BTreeSet<Vec<usize>> = packs
            .map(|p| {
                let mut s = self.placement(p);
                s.sort_unstable();
                s
            })
            .collect();
        if sets.is_empty() {
            // No data yet: judge the layout a first pack would get.
            let mut s = self.placement(&PackId([0; 16]));
            s.sort_unstable();
            sets.insert(s);
        }
        let specs = &self.config.stores;
        let mut worst: Option<(Durability, f64)> = None;
        for set in &sets {
            let afr: Vec<f64> = set.iter().map(|&i| specs[i].afr).collect();
            let avail: Vec<f64> = set.iter().map(|&i| specs[i].availability).collect();
            let d = durability::yearly(&afr, k, repair_days);
            let a = durability::availability(&avail, k);
            if worst.as_ref().is_none_or(|(w, _)| d.loss_per_year > w.loss_per_year) {
                worst = Some((d, a));
            }
        }
        let (yearly, availability) = worst.expect("at least one placement set");
        let all: Vec<f64> = specs.iter().map(|s| s.availability).collect();
        LayoutDurability {
            placement_sets: sets.len() as u64,
            availability,
            availability_nines: durability::nines_of(availability),
            naive_product: durability::naive_product(&all),
            naive_product_nines: durability::nines_of(durability::naive_product(&all)),
            domain_tolerance: sets
                .iter()
                .map(|s| redundancy::domain_tolerance(specs, s, self.config.redundancy.m as usize))
                .min()
                .unwrap_or(0),
            yearly,
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct StoreStatus {
    pub id: String,
    pub url: String,
    pub domain: String,
    pub weight: u32,
    pub up: bool,
    pub bytes: u64,
    pub shards: u64,
    /// Share of the bytes this store holds divided by its share of the weight: 1.0 is perfectly even.
    pub fill_ratio: f64,
    pub afr: f64,
    pub availability: f64,
}

#[derive(Debug, serde::Serialize)]
pub struct LayoutDurability {
    /// Distinct sets of stores that packs are placed on.
    pub placement_sets: u64,
    /// P(at least k of a pack's k+m stores are up), for the worst set.
    pub availability: f64,
    pub availability_nines: f64,
    /// P(every store is up): what a vault without redundancy would have.
    pub naive_product: f64,
    pub naive_product_nines: f64,
    /// Whole failure domains a pack survives losing.
    pub domain_tolerance: usize,
    pub yearly: Durability,
}

#[derive(Debug, serde::Serialize)]
pub struct Status {
    pub k: u8,
    pub m: u8,
    pub stores: Vec<StoreStatus>,
    pub packs: u64,
    pub degraded_packs: u64,
    pub unreadable_packs: u64,
    pub shortfall: Shortfall,
    pub durability: LayoutDurability,
}

/// Packs below full redundancy.
#[derive(Debug, Default, serde::Serialize)]
pub struct Shortfall {
    /// How many packs lack 1, 2, ... shards (packs with every shard are not counted).
    pub packs_by_missing_shards: BTreeMap<usize, u64>,
    pub shards_missing: u64,
    /// Packs with fewer than k shards left: unreadable unless a store comes back.
    pub unreadable: Vec<String>,
    /// The stores that are down, with why: "s2 (fs:/x): No such file or directory".
    pub stores_down: Vec<String>,
}

impl Shortfall {
    pub fn degraded_packs(&self) -> u64 {
        self.packs_by_missing_shards.values().sum()
    }

    /// "3 packs below full redundancy (2 lack 1 shard, 1 lacks 2 shards)", or None if there are none.
    pub fn describe(&self) -> Option<String> {
        let n = self.degraded_packs();
        if n == 0 {
            return None;
        }
        let by: Vec<String> = self
            .packs_by_missing_shards
            .iter()
            .map(|(missing, packs)| {
                format!(
                    "{packs} lack{} {missing} shard{}",
                    if *packs == 1 { "s" } else { "" },
                    if *missing == 1 { "" } else { "s" }
                )
            })
            .collect();
        let down = if self.stores_down.is_empty() {
            String::new()
        } else {
            format!("; down: {}", self.stores_down.join(", "))
        };
        Some(format!(
            "{n} pack{} below full redundancy ({}){down}; `mvault repair` rebuilds the missing shards",
            if n == 1 { "" } else { "s" },
            by.join(", ")
        ))
    }
}

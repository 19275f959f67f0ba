//! Where shards go and how a pack becomes shards.
//!
//! Placement is weighted rendezvous hashing over (pack id, store id), taking stores in rank order with distinct
//! failure domains first. The vault keeps no location table: a reader ranks the stores the same way.
//! This build writes `k = 1` layouts (one store, or `m` extra full copies); Reed-Solomon for `k > 1` plugs in
//! at `split`/`join` with the distributed-storage work.

use crate::error::{Error, Result};
use crate::format::config::StoreSpec;
use crate::ids::PackId;

/// Rank of a store for a pack: the weighted rendezvous score -w / ln(u), u uniform in (0, 1) from a hash.
fn score(pack: &PackId, store: &StoreSpec) -> f64 {
    let mut h = blake3::Hasher::new();
    h.update(&pack.0).update(store.id.as_bytes());
    let x = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
    let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(store.weight.max(1) as f64) / u.ln()
}

/// Store indices for the `n` shards of `pack`: rank order, distinct domains first, then the rest by rank.
pub fn place(pack: &PackId, stores: &[StoreSpec], n: usize) -> Vec<usize> {
    let mut ranked: Vec<usize> = (0..stores.len()).collect();
    ranked.sort_by(|&a, &b| score(pack, &stores[b]).total_cmp(&score(pack, &stores[a])));
    let mut picked = Vec::with_capacity(n);
    let mut domains = std::collections::HashSet::new();
    for &i in &ranked {
        if picked.len() < n && domains.insert(stores[i].domain.as_str()) {
            picked.push(i);
        }
    }
    for &i in &ranked {
        if picked.len() < n && !picked.contains(&i) {
            picked.push(i);
        }
    }
    picked
}

/// Cut a pack into `k + m` shard payloads.
pub fn split(pack: &[u8], k: u8, m: u8) -> Result<Vec<Vec<u8>>> {
    if k != 1 {
        return Err(Error::Usage(format!(
            "erasure coding k={k} is not supported by this build; use k=1 (replication)"
        )));
    }
    Ok((0..=m).map(|_| pack.to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores(n: usize, domains: usize) -> Vec<StoreSpec> {
        (0..n)
            .map(|i| StoreSpec {
                id: format!("s{i}"),
                url: String::new(),
                domain: format!("d{}", i % domains),
                weight: 1,
            })
            .collect()
    }

    #[test]
    fn placement_prefers_distinct_domains_and_is_stable() {
        let s = stores(6, 3);
        for _ in 0..100 {
            let p = PackId::random();
            let a = place(&p, &s, 3);
            assert_eq!(a, place(&p, &s, 3));
            let doms: std::collections::HashSet<_> = a.iter().map(|&i| &s[i].domain).collect();
            assert_eq!(doms.len(), 3);
        }
    }

    #[test]
    fn placement_follows_weight() {
        let mut s = stores(2, 2);
        s[0].weight = 3;
        let first0 = (0..4000).filter(|_| place(&PackId::random(), &s, 1)[0] == 0).count();
        // expected share 3/4 = 3000; allow a wide band so the test is not flaky
        assert!((2800..3200).contains(&first0), "{first0}");
    }
}

//! Where shards go and how a pack becomes shards and back.
//!
//! Placement is weighted rendezvous hashing over (pack id, store id): every store gets a score, and the pack's
//! `k + m` shards go to the best-scoring stores, one per failure domain while domains last, then spread as
//! evenly as possible over the domains. No location table exists: a reader ranks the stores the same way, and
//! adding or removing a store changes the rank (and so moves shards) only for the packs where that store wins
//! or loses a place.
//!
//! Coding: `k = 1` is replication (every shard is a full copy of the pack). `k > 1` is Reed-Solomon over
//! GF(2^16) (reed-solomon-simd): the pack is cut into `k` equal data shards (zero-padded to an even length) and
//! `m` recovery shards are computed; any `k` of the `k + m` rebuild the pack. Data shards hold the pack's bytes
//! in order, so a healthy read of a blob is a byte-range read of one or two data shards, with no decoding.

use crate::error::{Error, Result};
use crate::format::config::StoreSpec;
use crate::ids::PackId;
use reed_solomon_simd::ReedSolomonDecoder;
use std::borrow::Cow;
use std::collections::HashMap;

/// Rank of a store for a pack: the weighted rendezvous score -w / ln(u), u uniform in (0, 1) from a hash.
fn score(pack: &PackId, store: &StoreSpec) -> f64 {
    let mut h = blake3::Hasher::new();
    h.update(&pack.0).update(store.id.as_bytes());
    let x = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
    let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(store.weight.max(1) as f64) / u.ln()
}

/// Store indices for the `count` shards of `pack` (shard i goes to the i-th): stores in rank order, skipping any
/// whose failure domain already holds its fair share, ceil(n / domains), of the pack's shards. With at least
/// `count` domains every shard lands in its own domain; with fewer, shards spread as evenly as they can. The cap
/// rarely binds otherwise, so each store's share of packs follows its weight.
pub fn place(pack: &PackId, stores: &[StoreSpec], count: usize) -> Vec<usize> {
    let mut ranked: Vec<usize> = (0..stores.len()).collect();
    ranked.sort_by(|&a, &b| score(pack, &stores[b]).total_cmp(&score(pack, &stores[a])));
    let domains: std::collections::HashSet<&str> = stores.iter().map(|s| s.domain.as_str()).collect();
    let cap = count.div_ceil(domains.len().max(1));
    let mut per_domain: HashMap<&str, usize> = HashMap::new();
    let mut picked = Vec::with_capacity(count);
    for &i in &ranked {
        let d = per_domain.entry(stores[i].domain.as_str()).or_default();
        if picked.len() < count && *d < cap {
            *d += 1;
            picked.push(i);
        }
    }
    // Uneven domains can leave the cap unfillable: top up by rank.
    for &i in &ranked {
        if picked.len() < count && !picked.contains(&i) {
            picked.push(i);
        }
    }
    picked
}

/// How many shards a pack can lose given where they sit: the smallest number of domains whose loss takes
/// more than `parity_shards` shards, minus one, counted in shards per domain.
pub fn domain_tolerance(stores: &[StoreSpec], placement: &[usize], parity_shards: usize) -> usize {
    let mut per_domain: HashMap<&str, usize> = HashMap::new();
    for &i in placement {
        *per_domain.entry(stores[i].domain.as_str()).or_default() += 1;
    }
    let mut counts: Vec<usize> = per_domain.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    // Whole domains that can fail while at most m shards are lost.
    let mut lost = 0;
    let mut domains = 0;
    for c in counts {
        if lost + c > parity_shards {
            break;
        }
        lost += c;
        domains += 1;
    }
    domains
}

/// Bytes per shard for a pack of `pack_len` bytes cut into `data_shards` data shards.
pub fn shard_len(pack_len: usize, data_shards: u8) -> usize {
    if data_shards == 1 {
        return pack_len;
    }
    let l = pack_len.div_ceil(data_shards as usize).max(2);
    l + (l & 1)
}

/// Cut a pack into `data_shards + parity_shards` shard payloads.
/// Replicas (`data_shards = 1`) are the pack itself, borrowed: writing them copies nothing.
pub fn split(pack: &[u8], data_shards: u8, parity_shards: u8) -> Result<Vec<Cow<'_, [u8]>>> {
    if data_shards == 0 {
        return Err(Error::Usage("k must be at least 1".into()));
    }
    if data_shards == 1 {
        return Ok((0..=parity_shards).map(|_| Cow::Borrowed(pack)).collect());
    }
    let len = shard_len(pack.len(), data_shards);
    let mut shards: Vec<Vec<u8>> = (0..data_shards as usize)
        .map(|i| {
            let start = (i * len).min(pack.len());
            let end = ((i + 1) * len).min(pack.len());
            let mut s = pack[start..end].to_vec();
            s.resize(len, 0);
            s
        })
        .collect();
    if parity_shards > 0 {
        let recovery = reed_solomon_simd::encode(data_shards as usize, parity_shards as usize, &shards)
            .map_err(|e| Error::Usage(format!("erasure coding k={data_shards} m={parity_shards}: {e}")))?;
        shards.extend(recovery);
    }
    Ok(shards.into_iter().map(Cow::Owned).collect())
}

/// Rebuild a pack from any `data_shards` of its shards (`shards[i]` is shard i, if at hand).
pub fn join(data_shards: u8, parity_shards: u8, pack_len: usize, shards: &[Option<&[u8]>]) -> Result<Vec<u8>> {
    let have = shards.iter().filter(|s| s.is_some()).count();
    if have < data_shards as usize {
        return Err(Error::corrupt(
            "pack",
            format!("only {have} good shards of the {data_shards} needed to rebuild it"),
        ));
    }
    if data_shards == 1 {
        let s = shards.iter().flatten().next().expect("one shard present");
        return Ok(s[..pack_len.min(s.len())].to_vec());
    }
    let len = shard_len(pack_len, data_shards);
    let data = &shards[..data_shards as usize];
    let mut restored = std::collections::BTreeMap::new();
    if data.iter().any(|s| s.is_none()) {
        let originals = data.iter().enumerate().filter_map(|(i, s)| s.map(|s| (i, s)));
        let recovery = shards[data_shards as usize..].iter().enumerate().filter_map(|(i, s)| s.map(|s| (i, s)));
        restored = reed_solomon_simd::decode(data_shards as usize, parity_shards as usize, originals, recovery)
            .map_err(|e| Error::corrupt("pack", format!("Reed-Solomon decode: {e}")))?;
    }
    let mut out = Vec::with_capacity(len * data_shards as usize);
    for (i, s) in data.iter().enumerate() {
        out.extend_from_slice(s.unwrap_or_else(|| &restored[&i]));
    }
    out.truncate(pack_len);
    Ok(out)
}

/// Degraded reads decode shards in cells of this many bytes (a multiple of reed-solomon-simd's 64-byte
/// blocks, which it codes independently): a cell of a missing data shard decodes from the same cell of `k`
/// other shards alone, and one decode restores that cell of every missing data shard at once.
pub const DECODE_CELL: u64 = 512 << 10;

/// The byte range `start..start+len` of cell `cell` in shards of `shard_len` bytes (the last one is shorter,
/// and even like every shard length).
pub fn cell_range(cell: u64, shard_len: u64) -> (u64, u64) {
    let start = cell * DECODE_CELL;
    (start, DECODE_CELL.min(shard_len.saturating_sub(start)))
}

/// Restore one cell of every data shard missing from `have` (shard index and that cell's bytes, all of one
/// even length), from any `data_shards` of them. Unverified: the caller checks what it takes (a blob's AEAD tag
/// does). Each thread keeps its decoder, so the many decodes of a degraded restore reuse one working space.
pub fn decode_cell(data_shards: u8, parity_shards: u8, have: &[(usize, &[u8])]) -> Result<Vec<(usize, Vec<u8>)>> {
    thread_local! {
        static DECODER: std::cell::RefCell<Option<ReedSolomonDecoder>> = const { std::cell::RefCell::new(None) };
    }
    let (data_shards, parity_shards) = (data_shards as usize, parity_shards as usize);
    let len = have.first().map_or(0, |h| h.1.len());
    if have.len() < data_shards || have.iter().any(|h| h.1.len() != len) {
        return Err(Error::corrupt(
            "pack",
            format!("cannot decode from {} shards, {data_shards} of one length needed", have.len()),
        ));
    }
    let rs_err = |e: reed_solomon_simd::Error| Error::corrupt("pack", format!("Reed-Solomon decode: {e}"));
    DECODER.with_borrow_mut(|slot| {
        let decoder = match slot {
            Some(d) => {
                d.reset(data_shards, parity_shards, len).map_err(rs_err)?;
                d
            }
            None => slot.insert(ReedSolomonDecoder::new(data_shards, parity_shards, len).map_err(rs_err)?),
        };
        for &(i, b) in &have[..data_shards] {
            if i < data_shards {
                decoder.add_original_shard(i, b)
            } else {
                decoder.add_recovery_shard(i - data_shards, b)
            }
            .map_err(rs_err)?;
        }
        let result = decoder.decode().map_err(rs_err)?;
        Ok(result.restored_original_iter().map(|(i, b)| (i, b.to_vec())).collect())
    })
}

/// A rebuilt shard: its index and payload.
pub type Rebuilt = (usize, Vec<u8>);

/// Rebuild the shards `want` (data or parity) from any `data_shards` of `shards` (`shards[i]` is shard i's payload,
/// if at hand; all of one length), cell by cell so the working set stays in cache.
pub fn rebuild_shards(
    data_shards: u8,
    parity_shards: u8,
    shards: &[Option<&[u8]>],
    want: &[usize],
) -> Result<Vec<Rebuilt>> {
    let (ku, n) = (data_shards as usize, data_shards as usize + parity_shards as usize);
    let present: Vec<usize> = (0..n).filter(|&i| shards.get(i).is_some_and(|s| s.is_some())).collect();
    if present.len() < ku || want.iter().any(|&w| w >= n) {
        return Err(Error::corrupt(
            "pack",
            format!("only {} good shards of the {data_shards} needed to rebuild it", present.len()),
        ));
    }
    let len = shards[present[0]].expect("present").len();
    if data_shards == 1 {
        return Ok(want.iter().map(|&w| (w, shards[present[0]].expect("present").to_vec())).collect());
    }
    let mut out: Vec<Rebuilt> = want.iter().map(|&w| (w, Vec::with_capacity(len))).collect();
    let need_parity = want.iter().any(|&w| w >= ku);
    for cell in 0..(len as u64).div_ceil(DECODE_CELL) {
        let (start, clen) = cell_range(cell, len as u64);
        let r = start as usize..(start + clen) as usize;
        let have: Vec<(usize, &[u8])> =
            present.iter().take(ku).map(|&i| (i, &shards[i].expect("present")[r.clone()])).collect();
        let restored = if present[..ku].iter().all(|&i| i < ku) {
            Vec::new()
        } else {
            decode_cell(data_shards, parity_shards, &have)?
        };
        let data = |i: usize| -> &[u8] {
            match shards[i] {
                Some(s) => &s[r.clone()],
                None => &restored.iter().find(|d| d.0 == i).expect("every missing data shard restored").1,
            }
        };
        let parity = if need_parity {
            reed_solomon_simd::encode(ku, parity_shards as usize, (0..ku).map(data))
                .map_err(|e| Error::Usage(format!("erasure coding k={data_shards} m={parity_shards}: {e}")))?
        } else {
            Vec::new()
        };
        for (w, buf) in &mut out {
            buf.extend_from_slice(if *w < ku { data(*w) } else { &parity[*w - ku] });
        }
    }
    Ok(out)
}

/// The pieces of data shards that hold pack bytes `offset..offset+len`: (shard, offset in shard, length).
pub fn data_ranges(offset: u64, len: u64, pack_len: u64, data_shards: u8) -> Vec<(usize, u64, u64)> {
    if data_shards == 1 {
        return vec![(0, offset, len)];
    }
    let sl = shard_len(pack_len as usize, data_shards) as u64;
    let mut out = Vec::new();
    let (mut pos, end) = (offset, offset + len);
    while pos < end {
        let shard = pos / sl;
        let in_shard = pos % sl;
        let n = (sl - in_shard).min(end - pos);
        out.push((shard as usize, in_shard, n));
        pos += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stores(count: usize, domains: usize) -> Vec<StoreSpec> {
        (0..count).map(|i| StoreSpec::new(format!("s{i}"), String::new(), format!("d{}", i % domains), 1)).collect()
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
            // 6 shards over 3 domains: exactly two per domain
            let six = place(&p, &s, 6);
            for d in ["d0", "d1", "d2"] {
                assert_eq!(six.iter().filter(|&&i| s[i].domain == d).count(), 2);
            }
            assert_eq!(domain_tolerance(&s, &six, 2), 1, "4+2 over 3 domains survives one domain");
        }
    }

    #[test]
    fn placement_follows_weight() {
        let mut s = stores(2, 2);
        s[0].weight = 3;
        let first0 = (0..4000).filter(|_| place(&PackId::random(), &s, 1)[0] == 0).count();
        // expected share 3/4 = 3000; a wide band keeps the test from flaking
        assert!((2800..3200).contains(&first0), "{first0}");
    }

    #[test]
    fn adding_a_store_moves_about_its_share() {
        // 6 stores in 3 domains, a 7th in a 4th domain: the set of stores per pack changes by about 1/7.
        let s6 = stores(6, 3);
        let mut s7 = s6.clone();
        s7.push(StoreSpec::new("s6".into(), String::new(), "d3".into(), 1));
        let (mut moved, total) = (0, 3000);
        for _ in 0..total / 6 {
            let p = PackId::random();
            let (a, b) = (place(&p, &s6, 6), place(&p, &s7, 6));
            let sa: std::collections::HashSet<_> = a.iter().collect();
            moved += b.iter().filter(|i| !sa.contains(i)).count();
        }
        let frac = moved as f64 / total as f64;
        assert!((frac - 1.0 / 7.0).abs() < 0.03, "moved {frac}, ideal 1/7");
        // and the 7 stores fill evenly
        let mut count = [0usize; 7];
        for _ in 0..7000 {
            for i in place(&PackId::random(), &s7, 6) {
                count[i] += 1;
            }
        }
        let mean = count.iter().sum::<usize>() as f64 / 7.0;
        assert!(count.iter().all(|&c| (c as f64 - mean).abs() < 0.05 * mean), "{count:?}");
    }

    proptest! {
        #[test]
        fn any_k_shards_rebuild_the_pack(data in proptest::collection::vec(any::<u8>(), 1..5000), k in 1u8..6, m in 0u8..4, lose in any::<u64>()) {
            let shards = split(&data, k, m).unwrap();
            prop_assert_eq!(shards.len(), (k + m) as usize);
            // drop up to m shards, chosen by `lose`
            let mut have: Vec<Option<Vec<u8>>> = shards.into_iter().map(|s| Some(s.into_owned())).collect();
            let n = have.len();
            for j in 0..m as usize {
                have[((lose >> (8 * j)) as usize + j) % n] = None;
            }
            let views: Vec<Option<&[u8]>> = have.iter().map(|s| s.as_deref()).collect();
            prop_assert_eq!(join(k, m, data.len(), &views).unwrap(), data.clone());
            // ranges of data shards give the same bytes as the pack
            if k > 1 {
                let full = split(&data, k, m).unwrap();
                let off = (lose as usize) % data.len();
                let len = (data.len() - off).min(777) as u64;
                let mut got = Vec::new();
                for (s, o, l) in data_ranges(off as u64, len, data.len() as u64, k) {
                    got.extend_from_slice(&full[s][o as usize..(o + l) as usize]);
                }
                prop_assert_eq!(&got[..], &data[off..off + len as usize]);
            }
        }
    }

    proptest! {
        #[test]
        fn a_cell_decodes_like_the_whole_shard(data in proptest::collection::vec(any::<u8>(), 64..6000), k in 2u8..6, m in 1u8..4, lose in any::<u64>(), cell_bytes in 1u64..40) {
            // Cut a shard into cells of `cell_bytes * 64` bytes (the real cell is 1 MiB; what matters is
            // that cells start on 64-byte blocks) and decode each with up to m data shards lost.
            let shards = split(&data, k, m).unwrap();
            let shards: Vec<Vec<u8>> = shards.into_iter().map(Cow::into_owned).collect();
            let sl = shards[0].len();
            let lost: Vec<usize> = (0..k as usize).filter(|i| (lose >> i) & 1 == 1).take(m as usize).collect();
            let mut restored: Vec<Vec<u8>> = vec![Vec::new(); k as usize];
            for start in (0..sl).step_by(cell_bytes as usize * 64) {
                let end = (start + cell_bytes as usize * 64).min(sl);
                // any k surviving shards, parity first so that decoding is needed
                let have: Vec<(usize, &[u8])> = (k as usize..(k + m) as usize)
                    .chain(0..k as usize)
                    .filter(|i| !lost.contains(i))
                    .take(k as usize)
                    .map(|i| (i, &shards[i][start..end]))
                    .collect();
                for (i, b) in decode_cell(k, m, &have).unwrap() {
                    restored[i].extend_from_slice(&b);
                }
            }
            for i in 0..k as usize {
                if lost.contains(&i) {
                    prop_assert_eq!(&restored[i], &shards[i]);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn lost_shards_are_rebuilt_exactly(data in proptest::collection::vec(any::<u8>(), 1..700_000), k in 1u8..6, m in 1u8..4, lose in any::<u64>()) {
            let shards = split(&data, k, m).unwrap();
            let n = (k + m) as usize;
            let lost: Vec<usize> = (0..n).filter(|i| (lose >> i) & 1 == 1).take(m as usize).collect();
            let at_hand: Vec<Option<&[u8]>> =
                (0..n).map(|i| (!lost.contains(&i)).then_some(&shards[i][..])).collect();
            for (i, s) in rebuild_shards(k, m, &at_hand, &lost).unwrap() {
                prop_assert_eq!(&s[..], &shards[i][..], "shard {}", i);
            }
        }
    }

    #[test]
    fn replicas_are_the_pack_itself() {
        let data = vec![7u8; 1000];
        let shards = split(&data, 1, 2).unwrap();
        assert_eq!(shards.len(), 3);
        assert!(shards.iter().all(|s| matches!(s, Cow::Borrowed(b) if b.as_ptr() == data.as_ptr())), "no copy");
    }

    #[test]
    fn too_few_shards_is_an_error() {
        let data = vec![9u8; 1000];
        let mut have: Vec<Option<Vec<u8>>> =
            split(&data, 4, 2).unwrap().into_iter().map(|s| Some(s.into_owned())).collect();
        have[0] = None;
        have[2] = None;
        have[5] = None;
        let views: Vec<Option<&[u8]>> = have.iter().map(|s| s.as_deref()).collect();
        assert!(join(4, 2, 1000, &views).is_err());
    }
}

//! The audit log: every request and admin action as a record chained by hash to the one before it,
//! flushed in segments sealed by the system tenant (AES-GCM with the object's path in its AAD).
//!
//! Layout: `system/audit/<chain>/<first seq, 20 digits>` holds a JSON array of records; each writer (a server
//! run, a CLI admin command) has its own chain, so writers never contend. `system/audit-heads/<chain>` names
//! the chain's last record (seq and hash), so dropping the newest segments is detected too.
//!
//! Chains are numbered: `system/audit-count` (sealed) holds the next number, and each new chain takes one and
//! puts it first in its name (`00000042-server-3fa9...`). So a chain cannot vanish unseen: one deleted whole
//! (segments and head) leaves a gap in the numbers, and a counter deleted or rolled back is found too.
//!
//! `verify` finds: an edited record (its hash no longer matches, or the segment fails to decrypt), a removed
//! record or segment (a gap in seq, or `prev` not the hash before), reordered records or segments (the AEAD
//! binds each segment to its path; within one, seq and `prev` must follow), a truncated tail (the head), and
//! a deleted chain (a missing number).

use mvault_core::format::object::Kind;
use mvault_core::Repo;
use mvault_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    /// Token id (never the token), if one was presented and parsed.
    pub token: Option<String>,
    pub tenant: Option<String>,
    pub action: String,
    pub target: String,
    /// HTTP status (or 0/1 for a CLI command's exit).
    pub result: u16,
    pub bytes: u64,
    pub client: String,
    /// Why a request was refused, when it was.
    #[serde(default)]
    pub detail: String,
    /// Hash of the previous record (hex; zeros for the first).
    pub prev: String,
    /// BLAKE3 of this record with `hash` empty.
    pub hash: String,
}

impl Record {
    fn compute_hash(&self) -> String {
        let mut r = self.clone();
        r.hash = String::new();
        blake3::hash(&serde_json::to_vec(&r).expect("record serializes")).to_hex().to_string()
    }
}

#[derive(Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

struct State {
    next_seq: u64,
    prev: String,
    pending: Vec<Record>,
}

/// One writer's chain.
pub struct Chain {
    name: String,
    state: Mutex<State>,
}

const COUNTER: &str = "system/audit-count";

#[derive(Serialize, Deserialize)]
struct Counter {
    next: u64,
}

fn read_counter(sys: &Repo) -> Result<Option<u64>> {
    match sys.read_sealed(Kind::System, COUNTER) {
        Ok(b) => serde_json::from_slice::<Counter>(&b)
            .map(|c| Some(c.next))
            .map_err(|e| Error::malformed(COUNTER, e.to_string())),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A chain's number, from its name; chains written before numbering have none.
fn number_of(chain: &str) -> Option<u64> {
    let (digits, _) = chain.split_once('-')?;
    (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

impl Chain {
    /// A new chain (each server run and each CLI admin command starts one), with the next number. Two
    /// writers starting at once may take the same number (both chains are kept and checked); a number is
    /// never skipped.
    pub fn new(prefix: &str, sys: &Repo) -> Result<Chain> {
        let number = read_counter(sys)?.unwrap_or(0);
        sys.write_sealed(
            Kind::System,
            COUNTER,
            &serde_json::to_vec(&Counter { next: number + 1 }).expect("counter serializes"),
        )?;
        let mut r = [0u8; 6];
        mvault_core::random::fill_random(&mut r);
        Ok(Chain {
            name: format!("{number:08}-{prefix}-{}", hex::encode(r)),
            state: Mutex::new(State { next_seq: 0, prev: GENESIS.into(), pending: Vec::new() }),
        })
    }

    /// Append a record (seq, prev and hash are filled in here).
    pub fn append(&self, mut rec: Record) {
        let mut st = self.state.lock().expect("audit chain");
        rec.seq = st.next_seq;
        rec.prev = st.prev.clone();
        if rec.time.is_empty() {
            rec.time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        }
        rec.hash = rec.compute_hash();
        st.next_seq += 1;
        st.prev = rec.hash.clone();
        st.pending.push(rec);
    }

    /// Write the pending records as one segment, then the head. On failure they stay pending.
    pub fn flush(&self, sys: &Repo) -> Result<usize> {
        let mut st = self.state.lock().expect("audit chain");
        let Some(first) = st.pending.first().map(|r| r.seq) else { return Ok(0) };
        let last = st.pending.last().expect("non-empty").clone();
        let seg = format!("system/audit/{}/{first:020}", self.name);
        sys.write_sealed(Kind::Audit, &seg, &serde_json::to_vec(&st.pending).expect("records serialize"))?;
        let head = Head { seq: last.seq, hash: last.hash };
        sys.write_sealed(
            Kind::System,
            &format!("system/audit-heads/{}", self.name),
            &serde_json::to_vec(&head).expect("head serializes"),
        )?;
        let n = st.pending.len();
        st.pending.clear();
        Ok(n)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Every chain's segment names, grouped and sorted.
fn chains(sys: &Repo) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for name in sys.list_meta("system/audit")? {
        let Some(rest) = name.strip_prefix("system/audit/") else { continue };
        let Some((chain, _)) = rest.split_once('/') else { continue };
        out.entry(chain.to_string()).or_default().push(name.clone());
    }
    for heads in sys.list_meta("system/audit-heads")? {
        if let Some(chain) = heads.strip_prefix("system/audit-heads/") {
            out.entry(chain.to_string()).or_default();
        }
    }
    for segs in out.values_mut() {
        segs.sort();
    }
    Ok(out)
}

/// All records, chain by chain, optionally only one tenant's.
pub fn show(sys: &Repo, tenant: Option<&str>) -> Result<Vec<(String, Record)>> {
    let mut out = Vec::new();
    for (chain, segs) in chains(sys)? {
        for seg in segs {
            let recs: Vec<Record> = serde_json::from_slice(&sys.read_sealed(Kind::Audit, &seg)?)
                .map_err(|e| Error::malformed(&seg, e.to_string()))?;
            out.extend(
                recs.into_iter()
                    .filter(|r| tenant.is_none() || r.tenant.as_deref() == tenant)
                    .map(|r| (chain.clone(), r)),
            );
        }
    }
    out.sort_by(|a, b| (&a.1.time, &a.0, a.1.seq).cmp(&(&b.1.time, &b.0, b.1.seq)));
    Ok(out)
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub chains: u64,
    pub records: u64,
    /// Each problem found, naming the chain and the segment or record.
    pub problems: Vec<String>,
}

/// Check every chain end to end (all problems are collected, not just the first).
pub fn verify(sys: &Repo) -> Result<VerifyReport> {
    let mut rep = VerifyReport::default();
    let all = chains(sys)?;
    let numbers: std::collections::BTreeSet<u64> = all.keys().filter_map(|c| number_of(c)).collect();
    match read_counter(sys)? {
        Some(next) => {
            for missing in (0..next).filter(|n| !numbers.contains(n)) {
                rep.problems.push(format!(
                    "audit chain number {missing} is missing: a whole chain (segments and head) was deleted"
                ));
            }
            if let Some(above) = numbers.iter().find(|n| **n >= next) {
                rep.problems.push(format!(
                    "chain number {above} is past the chain counter ({next}): {COUNTER} was rolled back"
                ));
            }
        }
        None if !numbers.is_empty() => {
            rep.problems.push(format!("{COUNTER} is missing while numbered chains exist: it was deleted"))
        }
        None => {}
    }
    for (chain, segs) in all {
        rep.chains += 1;
        let mut expect_seq = 0u64;
        let mut prev = GENESIS.to_string();
        for seg in &segs {
            let recs: Vec<Record> = match sys.read_sealed(Kind::Audit, seg) {
                Ok(b) => match serde_json::from_slice(&b) {
                    Ok(r) => r,
                    Err(e) => {
                        rep.problems.push(format!("{seg}: not a list of records ({e})"));
                        continue;
                    }
                },
                Err(e) => {
                    rep.problems.push(format!("{seg}: {e}"));
                    continue;
                }
            };
            let named: Option<u64> = seg.rsplit('/').next().and_then(|s| s.parse().ok());
            if recs.first().map(|r| r.seq) != named {
                rep.problems
                    .push(format!("{seg}: named for seq {named:?} but starts at {:?}", recs.first().map(|r| r.seq)));
            }
            for r in recs {
                rep.records += 1;
                if r.seq != expect_seq {
                    rep.problems.push(format!(
                        "chain {chain}: record {} where {expect_seq} was next (removed or reordered)",
                        r.seq
                    ));
                }
                if r.prev != prev {
                    rep.problems.push(format!("chain {chain}: record {} does not follow the one before it", r.seq));
                }
                if r.compute_hash() != r.hash {
                    rep.problems.push(format!("chain {chain}: record {} was altered (hash mismatch)", r.seq));
                }
                expect_seq = r.seq + 1;
                prev = r.hash.clone();
            }
        }
        match sys.read_sealed(Kind::System, &format!("system/audit-heads/{chain}")) {
            Ok(b) => match serde_json::from_slice::<Head>(&b) {
                Ok(h) if h.hash == prev && h.seq + 1 == expect_seq => {}
                Ok(h) => rep.problems.push(format!(
                    "chain {chain}: ends at record {} but its head names record {} (records removed from the end?)",
                    expect_seq.wrapping_sub(1) as i64,
                    h.seq
                )),
                Err(e) => rep.problems.push(format!("chain {chain}: head unreadable ({e})")),
            },
            Err(e) => rep.problems.push(format!("chain {chain}: no head ({e})")),
        }
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvault_core::crypto::KdfParams;
    use mvault_core::InitOptions;

    fn sys(dir: &tempfile::TempDir) -> Repo {
        let opts = InitOptions { kdf: KdfParams { m_kib: 64, t: 1, p: 1 }, ..Default::default() };
        Repo::init(dir.path().join("v").to_str().unwrap(), b"pw", &opts).unwrap().system().unwrap()
    }

    fn rec(action: &str) -> Record {
        Record { action: action.into(), target: "t".into(), result: 200, ..Default::default() }
    }

    #[test]
    fn a_rewritten_record_breaks_the_chain_even_when_resealed_with_the_key() {
        let d = tempfile::tempdir().unwrap();
        let sys = sys(&d);
        let chain = Chain::new("test", &sys).unwrap();
        for i in 0..3 {
            chain.append(rec(&format!("a{i}")));
        }
        chain.flush(&sys).unwrap();
        chain.append(rec("b0"));
        chain.append(rec("b1"));
        chain.flush(&sys).unwrap();
        let ok = verify(&sys).unwrap();
        assert_eq!((ok.chains, ok.records, ok.problems.len()), (1, 5, 0), "{:?}", ok.problems);
        assert_eq!(show(&sys, None).unwrap().len(), 5);

        // An insider with the keys rewrites record 1 and seals the segment again: the hash no longer matches.
        let seg = format!("system/audit/{}/{:020}", chain.name(), 0);
        let mut recs: Vec<Record> = serde_json::from_slice(&sys.read_sealed(Kind::Audit, &seg).unwrap()).unwrap();
        recs[1].result = 403;
        sys.write_sealed(Kind::Audit, &seg, &serde_json::to_vec(&recs).unwrap()).unwrap();
        let bad = verify(&sys).unwrap();
        assert!(bad.problems.iter().any(|p| p.contains("record 1 was altered")), "{:?}", bad.problems);

        // ... and recomputing its hash breaks the link to record 2 instead.
        recs[1].hash = recs[1].compute_hash();
        sys.write_sealed(Kind::Audit, &seg, &serde_json::to_vec(&recs).unwrap()).unwrap();
        let bad = verify(&sys).unwrap();
        assert!(bad.problems.iter().any(|p| p.contains("record 2 does not follow")), "{:?}", bad.problems);

        // Dropping a record from a segment leaves a gap.
        recs.remove(1);
        sys.write_sealed(Kind::Audit, &seg, &serde_json::to_vec(&recs).unwrap()).unwrap();
        let bad = verify(&sys).unwrap();
        assert!(bad.problems.iter().any(|p| p.contains("removed or reordered")), "{:?}", bad.problems);
    }

    #[test]
    fn a_chain_deleted_whole_is_named_by_its_missing_number() {
        let d = tempfile::tempdir().unwrap();
        let sys = sys(&d);
        let chains: Vec<Chain> = (0..3).map(|_| Chain::new("cli", &sys).unwrap()).collect();
        for c in &chains {
            c.append(rec("tenant.create"));
            c.flush(&sys).unwrap();
        }
        assert!(chains[1].name().starts_with("00000001-cli-"), "{}", chains[1].name());
        assert_eq!(verify(&sys).unwrap().problems, Vec::<String>::new());
        // Someone with the store's credentials deletes the middle chain entirely: segments and head.
        for name in sys.list_meta("system/audit").unwrap() {
            if name.contains(chains[1].name()) {
                sys.delete_meta(&name).unwrap();
            }
        }
        sys.delete_meta(&format!("system/audit-heads/{}", chains[1].name())).unwrap();
        let bad = verify(&sys).unwrap();
        assert_eq!(bad.chains, 2);
        assert!(bad.problems.iter().any(|p| p.contains("audit chain number 1 is missing")), "{:?}", bad.problems);
        // Deleting the counter too (to hide the newest chain's absence) is found as well.
        sys.delete_meta(COUNTER).unwrap();
        let bad = verify(&sys).unwrap();
        assert!(bad.problems.iter().any(|p| p.contains("audit-count is missing")), "{:?}", bad.problems);
    }
}

//! One behaviour for every engine: the same cases run against the memory and SQLite engines here, and against
//! PostgreSQL in the integration suite (`catalog::`), which starts a real server.

use super::*;
use proptest::prelude::*;

fn entry(seed: u8, pack: u8, delta: bool) -> (ChunkId, Location) {
    let location = Location {
        pack: PackId([pack; 16]),
        blob_type: if seed.is_multiple_of(2) { BlobType::Data } else { BlobType::Tree },
        codec: if delta { Codec::Delta } else { Codec::Zstd },
        index: seed as u32,
        offset: 1000 * seed as u32,
        length: 10 + seed as u32,
        raw_length: u32::MAX - seed as u32,
        base: delta.then_some(ChunkId([seed.wrapping_add(1); 32])),
    };
    (ChunkId([seed; 32]), location)
}

fn engines() -> Vec<(Arc<dyn Engine>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite::SqliteEngine::open(&dir.path().join("vault")).unwrap();
    vec![(Arc::new(memory::MemoryEngine::default()), None), (Arc::new(sqlite), Some(dir))]
}

fn listed(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn entries_come_back_exactly_and_absent_chunks_are_none() {
    for (engine, _dir) in engines() {
        let cat = Catalog::new(engine, "v1", "default").unwrap();
        let entries = vec![entry(1, 7, false), entry(2, 7, true), entry(3, 8, false)];
        cat.add_file("tenants/default/index/a", &entries).unwrap();
        for (id, l) in &entries {
            assert_eq!(cat.lookup(id).unwrap(), Some(*l), "{}", cat.describe());
        }
        let many = cat.lookup_many(&[entries[2].0, ChunkId([99; 32]), entries[0].0]).unwrap();
        assert_eq!(many, vec![Some(entries[2].1), None, Some(entries[0].1)]);
    }
}

#[test]
fn tenants_and_vaults_never_see_each_others_chunks() {
    for (engine, _dir) in engines() {
        let a = Catalog::new(engine.clone(), "v1", "a").unwrap();
        let b = a.for_tenant("v1", "b").unwrap();
        let other_vault = Catalog::new(engine, "v2", "a").unwrap();
        let (id, l) = entry(5, 1, false);
        a.add_file("tenants/a/index/x", &[(id, l)]).unwrap();
        assert_eq!(a.lookup(&id).unwrap(), Some(l));
        assert_eq!(b.lookup(&id).unwrap(), None);
        assert_eq!(other_vault.lookup(&id).unwrap(), None);
    }
}

#[test]
fn sync_reads_only_new_files_and_forgets_the_ones_prune_removed() {
    for (engine, _dir) in engines() {
        let cat = Catalog::new(engine, "v1", "default").unwrap();
        let reads = std::cell::RefCell::new(Vec::new());
        let read = |name: &str| {
            reads.borrow_mut().push(name.to_string());
            Ok(match name {
                "i/old" => vec![entry(1, 1, false), entry(2, 1, false)],
                "i/new" => vec![entry(2, 2, false)],
                _ => vec![entry(3, 3, false)],
            })
        };
        assert!(cat.sync(listed(&["i/old", "i/other"]), read).unwrap().is_empty());
        assert_eq!(*reads.borrow(), ["i/old", "i/other"]);
        // Nothing new: no file is read again.
        cat.sync(listed(&["i/old", "i/other"]), read).unwrap();
        assert_eq!(reads.borrow().len(), 2);
        // A prune wrote i/new (chunk 2 repacked) and removed i/old; chunk 1 was garbage.
        cat.sync(listed(&["i/new", "i/other"]), read).unwrap();
        assert_eq!(reads.borrow().len(), 3);
        let mut files = cat.engine.files(cat.ns).unwrap();
        files.sort();
        assert_eq!(files, ["i/new", "i/other"]);
        assert_eq!(cat.lookup(&entry(1, 1, false).0).unwrap(), None, "{}", cat.describe());
        // Chunk 2 now lies where the file that is left says (pack 2), never in the dropped file's pack.
        assert_eq!(cat.lookup(&entry(2, 2, false).0).unwrap(), Some(entry(2, 2, false).1), "{}", cat.describe());
    }
}

#[test]
fn a_chunk_named_by_two_files_survives_the_removal_of_either() {
    for (engine, _dir) in engines() {
        let cat = Catalog::new(engine, "v1", "default").unwrap();
        let (id, l) = entry(4, 1, false);
        cat.add_file("i/first", &[(id, l)]).unwrap();
        cat.add_file("i/second", &[(id, l)]).unwrap();
        cat.drop_files(&listed(&["i/first"])).unwrap();
        assert_eq!(cat.lookup(&id).unwrap(), Some(l));
        let mut seen = 0;
        cat.scan(&mut |_, _| {
            seen += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, 1, "a scan names each chunk once");
    }
}

/// Writers reserving at once, each through its own handle on the engine (for SQLite, its own connection,
/// as two processes would have): together they never pass the quota.
fn racing_reservations(handles: Vec<Catalog>, max: u64) -> (usize, Vec<Reservation>) {
    let granted = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for cat in &handles {
            for _ in 0..4 {
                scope.spawn(|| {
                    if let Ok(r) = cat.reserve(10, max).unwrap() {
                        granted.lock().unwrap().push(r);
                    }
                });
            }
        }
    });
    let granted = granted.into_inner().unwrap();
    (granted.len(), granted)
}

#[test]
fn reservations_never_pass_the_quota_together_and_come_back_when_released() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shared.sqlite");
    let sqlite = || Arc::new(sqlite::SqliteEngine::open_file(&file).unwrap()) as Arc<dyn Engine>;
    let memory: Arc<dyn Engine> = Arc::new(memory::MemoryEngine::default());
    for engines in [vec![memory.clone(), memory], vec![sqlite(), sqlite()]] {
        let handles: Vec<Catalog> = engines.into_iter().map(|e| Catalog::new(e, "v1", "q").unwrap()).collect();
        let cat = handles[0].clone();
        let stored = entry(4, 1, false);
        cat.add_file("i/1", &[stored]).unwrap();
        let used = cat.usage().unwrap().0;
        // Room for three reservations of 10 bytes beside what is stored, not four.
        let (count, granted) = racing_reservations(handles.clone(), used + 35);
        assert_eq!(count, 3, "{}: {count} of 8 granted", cat.describe());
        let refused = cat.reserve(10, used + 35).unwrap().err().unwrap();
        assert_eq!(refused, QuotaRefused { stored: used, reserved: 30, asked: 10, max: used + 35 });
        assert!(refused.to_string().contains("30 being written"), "{refused}");
        drop(granted);
        let (count, granted) = racing_reservations(handles, used + 35);
        assert_eq!(count, 3, "released reservations give their bytes back ({})", cat.describe());
        drop(granted);
        // A reservation whose lease ended is given back though never released (its writer died).
        let engine = &cat.engine;
        assert!(matches!(engine.reserve(cat.ns, 30, used + 35, Duration::ZERO).unwrap(), Reserved::Granted(_)));
        assert!(cat.reserve(30, used + 35).unwrap().is_ok(), "an expired lease still held its bytes");
    }
}

#[test]
fn usage_counts_each_stored_chunk_once_as_files_come_and_go() {
    for (engine, _dir) in engines() {
        let cat = Catalog::new(engine, "v1", "default").unwrap();
        let (a, b, c) = (entry(1, 1, false), entry(2, 1, false), entry(3, 2, true));
        let len = |e: &(ChunkId, Location)| e.1.length as u64;
        cat.add_file("i/1", &[a, b]).unwrap();
        assert_eq!(cat.usage().unwrap(), (len(&a) + len(&b), 2));
        // A prune's new file names b again (and c, new): b is not counted twice.
        cat.add_file("i/2", &[b, c]).unwrap();
        assert_eq!(cat.usage().unwrap(), (len(&a) + len(&b) + len(&c), 3));
        // The same file ingested twice (two processes) changes nothing.
        cat.add_file("i/2", &[b, c]).unwrap();
        assert_eq!(cat.usage().unwrap(), (len(&a) + len(&b) + len(&c), 3));
        cat.drop_files(&listed(&["i/1"])).unwrap();
        assert_eq!(cat.usage().unwrap(), (len(&b) + len(&c), 2), "a is gone, b is still named by i/2");
        cat.clear().unwrap();
        assert_eq!(cat.usage().unwrap(), (0, 0));
    }
}

#[test]
fn an_unreadable_index_file_is_reported_and_tried_again_next_time() {
    for (engine, _dir) in engines() {
        let cat = Catalog::new(engine, "v1", "default").unwrap();
        let broken = |_: &str| Err(Error::Corrupt { object: "i/bad".into(), reason: "tag".into() });
        let errors = cat.sync(listed(&["i/bad"]), broken).unwrap();
        assert_eq!(errors.len(), 1);
        let errors = cat.sync(listed(&["i/bad"]), |_| Ok(vec![entry(6, 1, false)])).unwrap();
        assert!(errors.is_empty());
        assert!(cat.lookup(&entry(6, 1, false).0).unwrap().is_some());
    }
}

#[test]
fn the_embedded_catalog_persists_across_opens_and_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("cache").join("vault-id");
    {
        let cat = Catalog::new(Arc::new(sqlite::SqliteEngine::open(&at).unwrap()), "v1", "default").unwrap();
        cat.add_file("i/a", &[entry(9, 9, true)]).unwrap();
    }
    let cat = Catalog::new(Arc::new(sqlite::SqliteEngine::open(&at).unwrap()), "v1", "default").unwrap();
    assert_eq!(cat.lookup(&entry(9, 9, true).0).unwrap(), Some(entry(9, 9, true).1));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&at), 0o700);
    assert_eq!(mode(&at.join("catalog.sqlite")), 0o600);
}

#[test]
fn a_scan_pages_through_more_entries_than_a_page() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::new(Arc::new(sqlite::SqliteEngine::open(dir.path()).unwrap()), "v1", "t").unwrap();
    let entries: Vec<_> = (0..(SCAN_PAGE as u32 * 2 + 17))
        .map(|n| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&n.to_be_bytes());
            (ChunkId(id), entry(1, 1, false).1)
        })
        .collect();
    cat.add_file("i/big", &entries).unwrap();
    let mut seen = Vec::new();
    cat.scan(&mut |id, _| {
        seen.push(id);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, entries.iter().map(|(id, _)| *id).collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any location survives its columns; a row out of range is a clear error, never a wrong location.
    #[test]
    fn locations_round_trip_through_columns(type_byte in 0u8..2, codec_byte in 0u8..4, index: u32, offset: u32, length: u32, raw: u32, base_id: [u8; 32]) {
        let loc = Location {
            pack: PackId([type_byte; 16]),
            blob_type: BlobType::from_u8(type_byte).unwrap(),
            codec: Codec::from_u8(codec_byte).unwrap(),
            index, offset, length, raw_length: raw,
            base: (codec_byte == 3).then_some(ChunkId(base_id)),
        };
        let base = loc.base.map(|base_id| base_id.0);
        prop_assert_eq!(location("t", &loc.pack.0, columns(&loc), base.as_ref().map(|base_id| &base_id[..])).unwrap(), loc);
        let mut cols = columns(&loc);
        cols[4] = -1;
        prop_assert!(location("t", &loc.pack.0, cols, None).is_err());
        prop_assert!(location("t", &[0u8; 3], columns(&loc), None).is_err());
    }
}

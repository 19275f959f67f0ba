//! The layer rule of docs/ARCHITECTURE.md, checked on the source: a module of `crates/core/src` refers only
//! to modules of its own layer or below (`crate::X` paths, in `use` lines or inline). Test modules
//! (`#[cfg(test)] mod tests`) may reach higher, to build fixtures with the operations above them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module of the core and its layer, lowest first. Keep in step with ARCHITECTURE.md.
const LAYERS: &[(&str, u8)] = &[
    ("error", 0),
    ("random", 0),
    ("private", 0),
    ("fault", 0),
    ("parallel", 0),
    ("synth", 0),
    ("durability", 0),
    ("ids", 1),
    ("crypto", 2),
    ("format", 3),
    ("model", 4),
    ("chunker", 5),
    ("redundancy", 5),
    ("speed", 5),
    ("store", 6),
    ("catalog", 6),
    ("repo", 7),
    ("ops", 8),
    ("objects", 9),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a source file belongs to (`repo/packs.rs` -> `repo`, `ids.rs` -> `ids`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_str().unwrap();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::NAME` in the non-test part of a file.
fn references(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        // `crate::{a, b}` groups name several modules.
        if name.is_empty() && after.starts_with('{') {
            let group = &after[1..after.find('}').unwrap_or(after.len())];
            out.extend(group.split(',').map(|m| m.split("::").next().unwrap().trim().to_string()));
        } else {
            out.push(name);
        }
        rest = after;
    }
    out
}

#[test]
fn no_core_module_refers_to_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut seen_modules = std::collections::BTreeSet::new();
    let mut broken = Vec::new();
    for f in &files {
        let m = module_of(&src, f);
        if m == "lib" {
            continue; // the crate root declares and re-exports every layer
        }
        let Some(&mine) = layer.get(m.as_str()) else {
            panic!("{} is in no layer: add `{m}` to LAYERS (and to ARCHITECTURE.md)", f.display());
        };
        seen_modules.insert(m.clone());
        for r in references(&std::fs::read_to_string(f).unwrap()) {
            let Some(&theirs) = layer.get(r.as_str()) else {
                panic!("{} refers to crate::{r}, which is in no layer", f.display());
            };
            if theirs > mine {
                broken.push(format!("{} ({m}, layer {mine}) uses crate::{r} (layer {theirs})", f.display()));
            }
        }
    }
    assert!(broken.is_empty(), "lower layers import higher ones:\n{}", broken.join("\n"));
    // The table names only modules that exist, so it cannot drift into checking nothing.
    for (m, _) in LAYERS {
        assert!(seen_modules.contains(*m), "LAYERS names `{m}`, which is not a module of crates/core/src");
    }
}

#[test]
fn the_reference_scanner_sees_paths_groups_and_skips_tests() {
    let text = "use crate::repo::Repo;\nuse crate::{ids, format::pack};\nfn f() { crate::ops::backup::x(); }\n\
                #[cfg(test)]\nmod tests { use crate::objects; }\n";
    assert_eq!(references(text), ["repo", "ids", "format", "ops"]);
}

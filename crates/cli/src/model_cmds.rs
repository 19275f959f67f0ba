//! `inspect` and `diff`: what a model file holds, and what changed between two snapshots.

use crate::ui;
use crate::Global;
use clap::Args;
use mvault_core::diff::{self, TensorStatus};
use mvault_core::format::config::ChunkerParams;
use mvault_core::inspect;
use mvault_core::Result;
use std::path::PathBuf;

#[derive(Args)]
pub struct InspectArgs {
    /// A safetensors, GGUF or PyTorch (zip) file.
    pub file: PathBuf,
}

#[derive(Args)]
pub struct DiffArgs {
    /// The older snapshot (id prefix or `latest`).
    pub snapshot_a: String,
    /// The newer snapshot.
    pub snapshot_b: String,
    /// Also compare model files tensor by tensor. Snapshots of one directory each (say checkpoints step-1/
    /// and step-2/) are compared relative to that directory.
    #[arg(long)]
    pub tensors: bool,
}

fn ratio(bytes: u64, stored: f64) -> String {
    if stored <= 0.0 {
        "-".into()
    } else {
        format!("{:.3}x", bytes as f64 / stored)
    }
}

pub fn inspect(g: &Global, a: InspectArgs) -> Result<i32> {
    let r = inspect::inspect(&a.file, ChunkerParams::default())?;
    if g.json {
        ui::print_json(&r);
        return Ok(0);
    }
    println!("{} ({}, {} tensors, {})", a.file.display(), r.format, r.tensors.len(), ui::size(r.file_bytes));
    println!("{:<48} {:>6} {:>18} {:>10} {:>8} {:>8}  codec", "tensor", "dtype", "shape", "size", "ratio", "bound");
    for t in &r.tensors {
        let shape = format!("{:?}", t.shape);
        let bound = t.bound.map(|b| ratio(t.bytes, b)).unwrap_or_else(|| "-".into());
        let codec = format!("{}g/{}z/{}r", t.grouped, t.zstd, t.raw);
        println!(
            "{:<48} {:>6} {:>18} {:>10} {:>8} {:>8}  {}",
            t.name,
            t.dtype,
            shape,
            ui::size(t.bytes),
            ratio(t.bytes, t.stored as f64),
            bound,
            codec
        );
    }
    println!("headers and padding: {} stored as {}", ui::size(r.other_bytes), ui::size(r.other_stored));
    if r.float_bytes > 0 {
        println!(
            "float tensors: {} -> {} ({}); entropy bound {} ({}); {:.1}% above the bound",
            ui::size(r.float_bytes),
            ui::size(r.float_stored),
            ratio(r.float_bytes, r.float_stored as f64),
            ui::size(r.float_bound as u64),
            ratio(r.float_bytes, r.float_bound),
            (r.float_stored as f64 / r.float_bound - 1.0) * 100.0
        );
    }
    let gbps = |s: f64| if s > 0.0 { r.file_bytes as f64 / s / 1e9 } else { 0.0 };
    println!(
        "whole file: {} -> {} ({}); one core: encode {:.2} GB/s, decode {:.2} GB/s",
        ui::size(r.file_bytes),
        ui::size(r.stored()),
        ratio(r.file_bytes, r.stored() as f64),
        gbps(r.encode_seconds),
        gbps(r.decode_seconds)
    );
    Ok(0)
}

pub fn diff(g: &Global, a: DiffArgs) -> Result<i32> {
    let repo = crate::commands::open(g)?;
    let (_, sa) = repo.find_snapshot(&a.snapshot_a)?;
    let (_, sb) = repo.find_snapshot(&a.snapshot_b)?;
    print_diff(g, &repo, &sa, &sb, a)
}

/// Compare two snapshots read from any blob source (the vault, or a server) and print the report.
pub fn print_diff(
    g: &Global,
    repo: &dyn mvault_core::BlobSource,
    sa: &mvault_core::format::snapshot::Snapshot,
    sb: &mvault_core::format::snapshot::Snapshot,
    a: DiffArgs,
) -> Result<i32> {
    // Snapshots of one directory each (checkpoints step-1/, step-2/) compare relative to that directory.
    let bases = match (sa.paths.as_slice(), sb.paths.as_slice()) {
        ([pa], [pb]) if pa != pb => Some((pa.as_str(), pb.as_str())),
        _ => None,
    };
    let r = diff::diff(repo, &sa.tree_id()?, &sb.tree_id()?, bases, a.tensors)?;
    if let (Some((pa, pb)), false) = (bases, g.json) {
        println!("comparing {pa} with {pb}");
    }
    if g.json {
        ui::print_json(&r);
        return Ok(0);
    }
    for (mark, list) in [("+", &r.added), ("-", &r.removed), ("M", &r.modified)] {
        for p in list {
            println!("{mark}    {p}");
        }
    }
    if a.tensors && !r.tensors.is_empty() {
        println!();
        println!("{:<9} {:<56} {:>6} {:>14} {:>10}", "tensor", "name", "dtype", "max |change|", "changed");
        for t in &r.tensors {
            let status = match t.status {
                TensorStatus::Added => "added",
                TensorStatus::Removed => "removed",
                TensorStatus::Changed => "changed",
                TensorStatus::Unchanged => "same",
            };
            let max = t.max_abs_change.map(|m| format!("{m:.3e}")).unwrap_or_default();
            let frac = t.changed_fraction.map(|f| format!("{:.2}%", f * 100.0)).unwrap_or_default();
            println!("{:<9} {:<56} {:>6} {:>14} {:>10}", status, format!("{}:{}", t.file, t.name), t.dtype, max, frac);
        }
        let count = |s: TensorStatus| r.tensors.iter().filter(|t| t.status == s).count();
        println!(
            "tensors: {} changed, {} unchanged, {} added, {} removed",
            count(TensorStatus::Changed),
            count(TensorStatus::Unchanged),
            count(TensorStatus::Added),
            count(TensorStatus::Removed)
        );
    }
    println!(
        "files: {} added, {} removed, {} modified, {} unchanged; stored only by {}: {}, only by {}: {}",
        r.added.len(),
        r.removed.len(),
        r.modified.len(),
        r.unchanged_files,
        a.snapshot_a,
        ui::size(r.a_only_bytes),
        a.snapshot_b,
        ui::size(r.b_only_bytes)
    );
    Ok(0)
}

//! `inspect` and `diff`: what a model file holds, and what changed between two snapshots.

use crate::args::DiffArgs;
use crate::print::{print_diff, ratio};
use crate::ui;
use crate::Global;
use clap::Args;
use mvault_core::format::config::ChunkerParams;
use mvault_core::inspect;
use mvault_core::Result;
use std::path::PathBuf;

#[derive(Args)]
pub struct InspectArgs {
    /// A safetensors, GGUF or PyTorch (zip) file.
    pub file: PathBuf,
}

pub fn inspect(global: &Global, args: InspectArgs) -> Result<i32> {
    let r = inspect::inspect(&args.file, ChunkerParams::default())?;
    if global.json {
        ui::print_json(&r);
        return Ok(0);
    }
    println!("{} ({}, {} tensors, {})", args.file.display(), r.format, r.tensors.len(), ui::size(r.file_bytes));
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

pub fn diff(global: &Global, args: DiffArgs) -> Result<i32> {
    let repo = crate::open::open(global)?;
    let (_, sa) = repo.find_snapshot(&args.snapshot_a)?;
    let (_, sb) = repo.find_snapshot(&args.snapshot_b)?;
    print_diff(global, &repo, &sa, &sb, args)
}

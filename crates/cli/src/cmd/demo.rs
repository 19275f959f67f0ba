//! `mvault demo`: the README's first command. A guided run on local directories that shows what
//! ModelVault does with a real (small) model folder: dedup across versions, encryption, exact restore.

use crate::{ui, Global};
use clap::Args;
use mvault_core::backup::{self, BackupOptions};
use mvault_core::check::{self, ReadData};
use mvault_core::model::safetensors::{write_safetensors, Tensor};
use mvault_core::restore::{self, RestoreOptions};
use mvault_core::synth::{bf16_bytes, f32_bytes, weights_f32};
use mvault_core::{dircmp, Error, Result};
use mvault_core::{InitOptions, Repo};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct DemoArgs {
    /// Work in this directory and keep it afterwards (default: a temporary directory, removed at the end).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

const HIDDEN: usize = 1024;
const LAYERS: usize = 8;
const VOCAB: usize = 4096;

/// The tensors of a small transformer-shaped model; `finetune` changes the last layer and the head only.
fn tensors(finetune: bool) -> Vec<Tensor> {
    let mut t = vec![Tensor {
        name: "model.embed_tokens.weight".into(),
        dtype: "BF16",
        shape: vec![VOCAB as u64, HIDDEN as u64],
        data: bf16_bytes(&weights_f32(VOCAB * HIDDEN, 1, 0.02)),
    }];
    for l in 0..LAYERS {
        let tuned = finetune && l == LAYERS - 1;
        for (i, part) in ["self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj"].iter().enumerate() {
            let seed = 100 + (l * 10 + i) as u64 + if tuned { 7919 } else { 0 };
            t.push(Tensor {
                name: format!("model.layers.{l}.{part}.weight"),
                dtype: "BF16",
                shape: vec![HIDDEN as u64, HIDDEN as u64],
                data: bf16_bytes(&weights_f32(HIDDEN * HIDDEN, seed, 0.02)),
            });
        }
        t.push(Tensor {
            name: format!("model.layers.{l}.input_layernorm.weight"),
            dtype: "F32",
            shape: vec![HIDDEN as u64],
            data: f32_bytes(&vec![1.0; HIDDEN]),
        });
    }
    let head_seed = if finetune { 9001 } else { 9000 };
    t.push(Tensor {
        name: "lm_head.weight".into(),
        dtype: "BF16",
        shape: vec![VOCAB as u64, HIDDEN as u64],
        data: bf16_bytes(&weights_f32(VOCAB * HIDDEN, head_seed, 0.02)),
    });
    t
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io("write", path, e))
}

fn write_model(dir: &Path, finetune: bool) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let st = dir.join("model.safetensors");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&st).map_err(|e| Error::io("create", &st, e))?);
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&mut f, &tensors(finetune), &meta).map_err(|e| Error::io("write", &st, e))?;
    drop(f);
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
        "vocab_size": VOCAB, "torch_dtype": "bfloat16", "model_type": "llama"
    });
    write(&dir.join("config.json"), serde_json::to_string_pretty(&config).expect("json").as_bytes())?;
    write(&dir.join("generation_config.json"), br#"{ "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 256 }"#)?;
    let vocab: BTreeMap<String, usize> = (0..VOCAB).map(|i| (format!("tok{i:05}"), i)).collect();
    write(
        &dir.join("tokenizer.json"),
        serde_json::to_string(&serde_json::json!({ "model": { "type": "BPE", "vocab": vocab } }))
            .expect("json")
            .as_bytes(),
    )?;
    let card = if finetune {
        "# demo-model (fine-tuned)\nLast layer and head tuned on a new task.\n"
    } else {
        "# demo-model\nA small sample model made by `mvault demo`.\n"
    };
    write(&dir.join("README.md"), card.as_bytes())?;
    let link = dir.join("latest");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("model.safetensors", &link).map_err(|e| Error::io("symlink", &link, e))?;
    }
    Ok(())
}

fn dir_size(path: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => n += dir_size(&e.path()),
                Ok(t) if t.is_file() => n += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    n
}

pub fn run(global: &Global, args: DemoArgs) -> Result<i32> {
    let tmp;
    let base = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| Error::io("create", d, e))?;
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("mvault-demo-")
                .tempdir()
                .map_err(|e| Error::io("create", "temporary directory", e))?;
            tmp.path().to_path_buf()
        }
    };
    let (vault, model, target) = (base.join("vault"), base.join("models/demo-model"), base.join("restored"));
    let pass = b"demo passphrase";
    let quiet_warn = |e: &Error| eprintln!("mvault: warning: {e}");
    let say = |s: String| {
        if !global.json {
            println!("{s}");
        }
    };

    say(format!("ModelVault demo in {}\n", base.display()));
    say("1. A sample model folder: a real safetensors file (BF16/F32 tensors) plus its configs and tokenizer".into());
    write_model(&model, false)?;
    let original = dir_size(&model);
    say(format!("   {} in {}\n", ui::size(original), model.display()));

    say(format!(
        "2. mvault init: a vault at {} (AES-256-GCM, key from Argon2id; passphrase {:?})",
        vault.display(),
        String::from_utf8_lossy(pass)
    ));
    let mut repo = Repo::init(
        vault.to_str().ok_or_else(|| Error::Usage("non-UTF-8 demo path".into()))?,
        pass,
        // The embedded catalog, in the demo's own directory so that nothing outlives it.
        &InitOptions {
            catalog: mvault_core::CatalogArg::Sqlite(vault.with_extension("catalog.sqlite")),
            ..Default::default()
        },
    )?;
    say(format!("   vault id {}\n", repo.vault_id));

    let opts = BackupOptions { paths: vec![model.clone()], ..Default::default() };
    let b1 = backup::backup(&mut repo, &opts, &backup::Progress::default(), &quiet_warn)?;
    let s1 = &b1.snapshot.summary;
    say(format!(
        "3. mvault backup: snapshot {} of {} files, {} read, {} stored (compressed + encrypted) in {:.2}s\n",
        &b1.id.to_hex()[..8],
        s1.files,
        ui::size(s1.bytes_read),
        ui::size(s1.bytes_stored),
        s1.seconds
    ));

    say("4. Fine-tune: the last layer and the LM head change, every other tensor stays; back up again".into());
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_model(&model, true)?;
    let b2 = backup::backup(&mut repo, &opts, &backup::Progress::default(), &quiet_warn)?;
    let s2 = &b2.snapshot.summary;
    say(format!(
        "   snapshot {}: {} read, only {} new chunk bytes, {} stored ({:.0}% of a full copy)\n",
        &b2.id.to_hex()[..8],
        ui::size(s2.bytes_read),
        ui::size(s2.new_bytes),
        ui::size(s2.bytes_stored),
        100.0 * s2.bytes_stored as f64 / s2.bytes.max(1) as f64
    ));

    say("5. mvault restore latest --verify: every restored file is re-read and checked against the snapshot".into());
    let r = restore::restore(
        &repo,
        &b2.snapshot.tree_id()?,
        &RestoreOptions { target: target.clone(), verify: true, ..Default::default() },
        &restore::Progress::default(),
    )?;
    let restored_model = target.join(model.strip_prefix("/").unwrap_or(&model));
    let cmp = dircmp::compare(&model, &restored_model)?;
    say(format!(
        "   {} files ({}) restored in {:.2}s; contents, modes, mtimes and symlinks identical to the original\n",
        r.files,
        ui::size(r.bytes),
        r.seconds
    ));

    let report = check::check(&repo, ReadData::All, &check::Progress::default())?;
    if !report.ok() {
        return Err(Error::corrupt("demo vault", report.errors.join("; ")));
    }
    say(format!(
        "6. mvault check --read-data: {} packs, {} blobs decrypted and verified, no errors\n",
        report.packs_read, report.blobs_verified
    ));

    let stored = dir_size(&vault);
    let logical = s1.bytes + s2.bytes;
    if global.json {
        ui::print_json(&serde_json::json!({
            "dir": base, "vault_id": repo.vault_id.to_hex(),
            "snapshots": [b1.id.to_hex(), b2.id.to_hex()],
            "logical_bytes": logical, "stored_bytes": stored,
            "first_backup": s1, "second_backup": s2, "restored_files": cmp.files, "verified_blobs": report.blobs_verified,
        }));
    } else {
        println!(
            "Summary: 2 versions of the model, {} of data, take {} in the vault ({:.2}x smaller).",
            ui::size(logical),
            ui::size(stored),
            logical as f64 / stored.max(1) as f64
        );
        match &args.dir {
            Some(d) => println!(
                "Everything is kept in {}; try: mvault --vault {} snapshots (passphrase above)",
                d.display(),
                vault.display()
            ),
            None => println!("The demo directory is removed now; run `mvault demo --dir DIR` to keep it and explore."),
        }
    }
    Ok(0)
}

//! `mvault catalog`: what the catalog (the database the chunk index lives in) holds for each tenant, and
//! rebuilding it from the index files on the stores.

use crate::open::open;
use crate::{ui, Global};
use clap::Subcommand;
use mvault_core::{IndexSummary, Result};

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Each tenant's index as the catalog holds it: index files on the stores, chunks and stored bytes.
    Status,
    /// Forget what the catalog holds for this vault and read every index file on the stores again. Safe at
    /// any time (the stores are the source of truth); needed only for a catalog lost, restored from an old
    /// backup, or suspected wrong. A new empty PostgreSQL database fills itself at first use anyway.
    Rebuild,
    /// Bind the vault to the catalog given with --catalog (a PostgreSQL database), so that commands given
    /// another one refuse to change the index; with the embedded catalog, unbind it. Recorded in the config.
    Bind,
}

pub fn catalog(global: &Global, command: CatalogCommand) -> Result<i32> {
    let mut base = open(global)?;
    if let CatalogCommand::Bind = command {
        let bound = base.bind_catalog(&global.catalog)?;
        if global.json {
            ui::print_json(&serde_json::json!({ "catalog": bound }));
        } else {
            match bound {
                Some(b) => println!("the vault is bound to the catalog {b}: writers must use it"),
                None => println!("the vault is bound to no shared catalog"),
            }
        }
        return Ok(0);
    }
    let mut summaries: Vec<IndexSummary> = Vec::new();
    for name in base.tenant_names()? {
        let mut repo = base.for_tenant(&name)?;
        summaries.push(match command {
            CatalogCommand::Rebuild => repo.rebuild_index()?,
            _ => repo.index_summary()?,
        });
    }
    let unreadable = summaries.iter().any(|s| !s.unreadable.is_empty());
    if global.json {
        ui::print_json(&summaries);
    } else {
        println!("catalog: {}", base.catalog_name());
        println!("{:<20} {:>11} {:>12} {:>14}", "tenant", "index files", "chunks", "stored");
        for s in &summaries {
            println!("{:<20} {:>11} {:>12} {:>14}", s.tenant, s.index_files, s.chunks, ui::size(s.bytes));
            for e in &s.unreadable {
                println!("  unreadable: {e}");
            }
        }
    }
    // Index files that cannot be read are damage this command did not repair.
    Ok(if unreadable { 1 } else { 0 })
}

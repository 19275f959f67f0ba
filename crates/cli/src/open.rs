//! Opening the vault named by `--vault` (with the passphrase from `--password-file`, `MVAULT_PASSWORD` or the
//! terminal), and recording the admin actions done on it locally in its audit log.

use crate::{ui, Global};
use mvault_core::{Error, Repo, Result};
use mvault_server::audit;

pub fn vault_loc(global: &Global) -> Result<String> {
    global.vault.clone().ok_or_else(|| Error::Usage("no vault given: pass --vault DIR or set MVAULT_VAULT".into()))
}

pub fn open(global: &Global) -> Result<Repo> {
    let loc = vault_loc(global)?;
    let pw = ui::passphrase(global.password_file.as_deref())?;
    let opts = mvault_core::OpenOptions { catalog: global.catalog.clone(), ..Default::default() };
    let repo = Repo::open_with(&loc, &pw, &opts)?;
    if !global.quiet {
        let catalog = repo.catalog_name();
        if catalog.starts_with("memory (the embedded catalog") {
            eprintln!("mvault: warning: {catalog}; set MVAULT_CACHE_DIR to a writable directory to keep one");
        }
        for e in &repo.index_errors {
            eprintln!("mvault: warning: {e} (its chunks count as absent; run `mvault check`)");
        }
    }
    Ok(repo)
}

/// A local admin action goes into the audit log too, as a chain of its own.
pub fn audit_local_action(sys: &mvault_core::Repo, action: &str, target: &str, tenant: Option<&str>) -> Result<()> {
    let chain = audit::Chain::new("cli", sys)?;
    chain.append(audit::Record {
        action: action.into(),
        target: target.into(),
        tenant: tenant.map(str::to_string),
        client: format!("cli@{}", mvault_core::hostname()),
        result: 0,
        ..Default::default()
    });
    chain.flush(sys).map(|_| ())
}

/// Stale locks a command meets and ignores are reported as warnings (unless `--quiet`).
pub fn stale_reporter(global: &Global) -> impl Fn(&str) + '_ {
    move |m: &str| {
        if !global.quiet {
            eprintln!("mvault: warning: {m}");
        }
    }
}

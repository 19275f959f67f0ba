//! Which catalog a command uses: `--catalog` / `MVAULT_CATALOG`.

use super::{memory, postgres, sqlite, Engine};
use crate::error::{Error, Result};
use std::path::PathBuf;
use std::sync::Arc;

/// A catalog as the user names it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CatalogArg {
    /// The embedded engine in the cache directory: `<cache>/mvault/<vault id>/catalog.sqlite`.
    #[default]
    Embedded,
    /// The embedded engine in a file of the user's choosing (`sqlite:PATH`).
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://user@host:port/db`), shared by many instances.
    Postgres(String),
    /// No database: every process reads every index file into memory (the behaviour before the catalog,
    /// and the scale benchmark's baseline).
    Memory,
}

impl std::str::FromStr for CatalogArg {
    type Err = Error;

    fn from_str(text: &str) -> Result<CatalogArg> {
        match text {
            "" | "embedded" | "sqlite" => Ok(CatalogArg::Embedded),
            "memory" => Ok(CatalogArg::Memory),
            _ if text.starts_with("postgres://") || text.starts_with("postgresql://") => {
                Ok(CatalogArg::Postgres(text.to_string()))
            }
            _ => match text.strip_prefix("sqlite:") {
                Some(path) if !path.is_empty() => Ok(CatalogArg::Sqlite(PathBuf::from(path))),
                _ => Err(Error::Usage(format!(
                    "--catalog {text}: expected embedded (the default), sqlite:PATH, postgres://USER@HOST/DB \
                     or memory"
                ))),
            },
        }
    }
}

impl std::fmt::Display for CatalogArg {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogArg::Embedded => out.write_str("embedded"),
            CatalogArg::Sqlite(path) => write!(out, "sqlite:{}", path.display()),
            // Never print a password the URL may carry.
            CatalogArg::Postgres(url) => out.write_str(&postgres::redact(url)),
            CatalogArg::Memory => out.write_str("memory"),
        }
    }
}

impl CatalogArg {
    /// The name a vault's config records when it is bound to this catalog: only a shared one is bound
    /// (`postgres://HOST:PORT/DB`, without user or password); the embedded and memory engines are not.
    pub fn binding(&self) -> Option<String> {
        match self {
            CatalogArg::Postgres(url) => Some(postgres::identity(url)),
            _ => None,
        }
    }

    /// Open (and migrate) the engine for a vault.
    pub fn open(&self, vault_id: &str) -> Result<Arc<dyn Engine>> {
        Ok(match self {
            CatalogArg::Memory => Arc::new(memory::MemoryEngine::default()),
            // A user without a writable cache directory (a service account, another user's HOME) still works:
            // with every index file read into memory, as before the catalog, and says so.
            CatalogArg::Embedded => match cache_dir().and_then(|dir| sqlite::SqliteEngine::open(&dir.join(vault_id))) {
                Ok(engine) => Arc::new(engine),
                Err(e @ (Error::Io { .. } | Error::Usage(_))) => Arc::new(memory::MemoryEngine::instead_of(e)),
                Err(e) => return Err(e),
            },
            CatalogArg::Sqlite(path) => Arc::new(sqlite::SqliteEngine::open_file(path)?),
            CatalogArg::Postgres(url) => Arc::new(postgres::PostgresEngine::connect(url)?),
        })
    }
}

/// `$MVAULT_CACHE_DIR`, else `$XDG_CACHE_HOME/mvault`, else `~/.cache/mvault`.
pub fn cache_dir() -> Result<PathBuf> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = env("MVAULT_CACHE_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = env("XDG_CACHE_HOME") {
        return Ok(dir.join("mvault"));
    }
    match env("HOME") {
        Some(home) => Ok(home.join(".cache").join("mvault")),
        None => Err(Error::Usage(
            "no cache directory for the embedded catalog: set HOME, XDG_CACHE_HOME or MVAULT_CACHE_DIR, or pass \
             --catalog sqlite:PATH"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_parses_to_its_engine_and_nonsense_is_refused() {
        assert_eq!("embedded".parse::<CatalogArg>().unwrap(), CatalogArg::Embedded);
        assert_eq!("memory".parse::<CatalogArg>().unwrap(), CatalogArg::Memory);
        assert_eq!("sqlite:/tmp/c.db".parse::<CatalogArg>().unwrap(), CatalogArg::Sqlite("/tmp/c.db".into()));
        let pg = "postgres://mv:secret@127.0.0.1:5432/mv";
        assert_eq!(pg.parse::<CatalogArg>().unwrap(), CatalogArg::Postgres(pg.into()));
        for bad in ["sqlite:", "mysql://x", "redis"] {
            let err = bad.parse::<CatalogArg>().unwrap_err();
            assert!(matches!(err, Error::Usage(_)) && err.to_string().contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn a_password_in_a_postgres_url_is_never_shown() {
        let arg: CatalogArg = "postgres://mv:secret@127.0.0.1/mv".parse().unwrap();
        let shown = arg.to_string();
        assert!(!shown.contains("secret") && shown.contains("127.0.0.1"), "{shown}");
    }
}

//! One error type for the core: every variant names the object or path it is about, so the CLI can print a
//! single line that tells the user what failed and where.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No key file of the vault opens with the given passphrase.
    #[error("wrong passphrase: no key file in {vault} opens with it")]
    WrongPassphrase { vault: String },

    /// A store location holds no vault at all.
    #[error("no vault at {0}: run `mvault init` there first, or check --vault / MVAULT_VAULT")]
    NoVault(String),

    /// A store holds something that is not a ModelVault vault, or one of another format version.
    #[error("{location} is not a ModelVault vault this version can open: {reason}")]
    Foreign { location: String, reason: String },

    /// A vault already exists where `init` was asked to make one.
    #[error("a vault already exists at {0}")]
    AlreadyExists(String),

    /// Bytes that fail to parse: wrong magic, version or length.
    #[error("{object}: malformed: {reason}")]
    Malformed { object: String, reason: String },

    /// Bytes that fail their hash or their AEAD tag.
    #[error("{object}: integrity check failed: {reason}")]
    Corrupt { object: String, reason: String },

    /// A ModelVault server refused or failed a request (remote mode).
    #[error("server {url}: {message} (HTTP {status})")]
    Remote { url: String, status: u16, message: String },

    /// An object the vault refers to is not on any store.
    #[error("{0}: not found")]
    NotFound(String),

    /// A store operation failed.
    #[error("store {store}: {op} {path}: {source}")]
    Store { store: String, op: &'static str, path: String, source: std::io::Error },

    /// A local file operation failed (source files on backup, target files on restore).
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },

    /// The user asked for something that cannot be done as asked.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn malformed(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Malformed { object: object.into(), reason: reason.into() }
    }
    pub fn corrupt(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt { object: object.into(), reason: reason.into() }
    }
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }
    /// Prefix the object name of a parse error with the object it was read from.
    pub fn in_object(self, object: &str) -> Self {
        match self {
            Error::Malformed { reason, .. } => Error::Malformed { object: object.to_string(), reason },
            Error::Corrupt { reason, .. } => Error::Corrupt { object: object.to_string(), reason },
            other => other,
        }
    }
}

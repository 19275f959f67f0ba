//! One error type for the core: every variant names the object or path it is about, so the CLI can print a
//! single line that tells the user what failed and where. Callers that act on a failure (retry later, answer
//! 404, refuse a body) match a variant, never the message text: `Locked` and `Unavailable` pass, `NotFound`
//! and `BodyMismatch` are the client's to fix. The enum is `#[non_exhaustive]`, so a match elsewhere keeps a
//! catch-all arm and a new variant is not a breaking change.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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

    /// An object the vault refers to is not on any store, or a name (snapshot, bucket, key) names nothing.
    #[error("{what}: not found")]
    NotFound { what: String },

    /// Another process holds a lock that excludes this operation; it passes when that process finishes.
    #[error(
        "the vault is locked ({holder}, expires {expires}, {path}); wait for it to finish, or if that process \
         is gone, run `mvault unlock` (a lock of another host is stale once it expires; `mvault unlock \
         --remove-all` removes it now)"
    )]
    Locked {
        /// Which lock and who holds it: "exclusive lock of `prune` by user@host pid 42, since TIME".
        holder: String,
        /// When the lock lapses if its holder stops refreshing it (RFC 3339).
        expires: String,
        /// The lock object, for the rare manual cleanup.
        path: String,
    },

    /// Not enough stores (or servers) are up for the operation; retry once they are back. `what` names the
    /// object that needed them, `reason` what was missing ("no store is up to write to").
    #[error("{what}: {reason}")]
    Unavailable { what: String, reason: String },

    /// A request body did not match what its sender declared.
    #[error("{object}: the body had {got} bytes, {declared} were declared")]
    BodyMismatch { object: String, declared: u64, got: u64 },

    /// A request body could not be read to its end (the client went away, a chunk was malformed).
    #[error("{object}: reading the body: {source}")]
    BodyRead { object: String, source: std::io::Error },

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
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }
    /// Whether the failure passes by itself: a lock held by another process, stores that are away. HTTP
    /// answers 503 with Retry-After, S3 `SlowDown`/`ServiceUnavailable`; the CLI exits 1, not 2.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Locked { .. } | Error::Unavailable { .. } | Error::Store { .. })
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

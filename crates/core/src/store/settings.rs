//! This machine's store settings file (`stores.json`): S3 credentials per bucket and HDFS settings per
//! authority, kept out of the vault.

use crate::error::{Error, Result};

/// The local settings file: `$MVAULT_CONFIG_DIR/stores.json`, else `$XDG_CONFIG_HOME/mvault/stores.json`,
/// else `~/.config/mvault/stores.json`. It maps an S3 bucket to its credentials:
/// `{ "s3": { "BUCKET": { "access_key_id": "...", "secret_access_key": "..." } } }`.
pub fn settings_path() -> Option<std::path::PathBuf> {
    if let Some(d) = std::env::var_os("MVAULT_CONFIG_DIR") {
        return Some(std::path::PathBuf::from(d).join("stores.json"));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config")))?;
    Some(base.join("mvault").join("stores.json"))
}

/// The local settings file's contents, if there is one.
pub(crate) fn local_settings_json() -> Result<Option<serde_json::Value>> {
    let Some(path) = settings_path() else { return Ok(None) };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| Error::malformed(path.display().to_string(), e.to_string()))
}

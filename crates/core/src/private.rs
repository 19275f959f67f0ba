//! Files and directories only their owner can read: 0600 and 0700 whatever the umask (a umask can only take
//! bits away). Everything the vault writes on an `fs:` store is private, as restic's repository files are: a
//! key file readable by another local user is a passphrase that user can guess offline.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Create a directory and its missing parents as 0700 (existing ones are left as they are).
pub fn dir_all(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Create a new file as 0600, for writing (an existing one is an error: callers write under fresh names).
pub fn new_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

/// Create a file as 0600 if it is not there, for appending; an existing one keeps its mode.
pub fn file_for_append(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// Whether a file can be read by anyone but its owner (group or other bits set).
pub fn readable_by_others(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    Ok(fs::metadata(path)?.permissions().mode() & 0o077 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_private_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        // The umask of the test process is whatever it is (022 or 002 usually); the modes come out the same.
        let nested = dir.path().join("a/b");
        dir_all(&nested).unwrap();
        new_file(&nested.join("f")).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&nested.join("f")), 0o600);
        assert!(!readable_by_others(&nested.join("f")).unwrap());
        assert!(new_file(&nested.join("f")).is_err(), "an existing file is never reused");
        fs::set_permissions(nested.join("f"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(readable_by_others(&nested.join("f")).unwrap());
    }
}

//! Talking to the user: passphrases, progress bars, sizes.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mvault_core::{Error, Result};
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

/// The passphrase of an existing vault: --password-file, then MVAULT_PASSWORD, then a prompt.
pub fn passphrase(file: Option<&Path>) -> Result<Vec<u8>> {
    if let Some(f) = file {
        let s = std::fs::read_to_string(f).map_err(|e| Error::io("read password file", f, e))?;
        return Ok(s.lines().next().unwrap_or("").as_bytes().to_vec());
    }
    if let Ok(p) = std::env::var("MVAULT_PASSWORD") {
        return Ok(p.into_bytes());
    }
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("vault passphrase: ")
            .map_err(|e| Error::io("read passphrase from", "terminal", e))?;
        return Ok(p.into_bytes());
    }
    Err(Error::Usage("no passphrase: set MVAULT_PASSWORD, pass --password-file FILE, or run in a terminal".into()))
}

/// A new passphrase (for `key add` and `key passwd`): MVAULT_NEW_PASSWORD, --new-password-file, or asked twice.
pub fn new_passphrase(file: Option<&Path>) -> Result<Vec<u8>> {
    if let Some(f) = file {
        let s = std::fs::read_to_string(f).map_err(|e| Error::io("read password file", f, e))?;
        return Ok(s.lines().next().unwrap_or("").as_bytes().to_vec());
    }
    if let Ok(p) = std::env::var("MVAULT_NEW_PASSWORD") {
        return Ok(p.into_bytes());
    }
    if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("new passphrase: ")
            .map_err(|e| Error::io("read passphrase from", "terminal", e))?;
        let b = rpassword::prompt_password("repeat new passphrase: ")
            .map_err(|e| Error::io("read passphrase from", "terminal", e))?;
        if a != b {
            return Err(Error::Usage("the two passphrases differ".into()));
        }
        return Ok(a.into_bytes());
    }
    Err(Error::Usage(
        "no new passphrase: set MVAULT_NEW_PASSWORD, pass --new-password-file FILE, or run in a terminal".into(),
    ))
}

pub fn check_not_empty(passphrase: &[u8]) -> Result<()> {
    if passphrase.is_empty() {
        return Err(Error::Usage("an empty passphrase is not allowed".into()));
    }
    Ok(())
}

/// A progress bar on stderr, drawn only when stderr is a terminal and not --quiet.
pub fn bar(len: Option<u64>, template: &str, quiet: bool) -> ProgressBar {
    let pb = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let target = if quiet || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    pb.set_draw_target(target);
    pb.set_style(ProgressStyle::with_template(template).expect("valid progress template").progress_chars("=> "));
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// Run `work` while a thread refreshes `pb` from `update` every 100 ms.
pub fn with_progress<T>(pb: &ProgressBar, update: impl Fn(&ProgressBar) + Sync, work: impl FnOnce() -> T) -> T {
    // The ticker waits on a channel rather than sleeping, so that the end of the work (the sender dropped)
    // wakes it at once: a plain 100 ms sleep added up to 100 ms to every command, waiting for the scope.
    let (done, ticks) = std::sync::mpsc::channel::<()>();
    let update = &update;
    std::thread::scope(|s| {
        s.spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = ticks.recv_timeout(Duration::from_millis(100)) {
                update(pb);
            }
        });
        let r = work();
        drop(done);
        update(pb);
        pb.finish_and_clear();
        r
    })
}

pub fn size(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

pub fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(value).expect("json output serializes"));
}

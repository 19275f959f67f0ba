//! Crash points for fault-injection tests: when `MVAULT_TEST_CRASH` names a point, the process aborts there,
//! with no cleanup, as a SIGKILL or power cut would. Unset (always, outside tests), a point costs one lookup.

pub fn point(name: &str) {
    if std::env::var("MVAULT_TEST_CRASH").is_ok_and(|v| v == name) {
        eprintln!("mvault: test crash at {name}");
        std::process::abort();
    }
}

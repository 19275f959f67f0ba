//! Named points for fault-injection tests, so a test interrupts the same step on a fast or a slow machine
//! instead of guessing with a sleep.
//!
//! - `MVAULT_TEST_CRASH=NAME` or `NAME@N`: the process aborts at the first (or the N-th) time it passes the
//!   point, with no cleanup, as a SIGKILL or power cut would.
//! - `MVAULT_TEST_PAUSE=NAME@N` with `MVAULT_TEST_PAUSE_FILE=PATH`: at the N-th pass the process creates PATH
//!   and waits, as does every later pass of the same point on any thread, until the test removes PATH. Between
//!   the two the test stops a store, kills a DataNode or a NameNode: an outage in the middle of the operation.
//!
//! Unset (always, outside tests), a point costs one check of a value read once per process.
//!
//! None of this, nor the tests' clock (`MVAULT_TEST_NOW`, `repo::now`), is compiled at all without this
//! crate's `test-hooks` feature (which the CLI's `test-hooks` feature, for the test suite alone, turns on): in
//! a release build a point is an empty inline function and the clock is the real one. Even in a test build it
//! works only once the program turned the hooks on with `enable_test_hooks` before anything else, which only
//! the `mvault-test` binary does; so no environment can crash the shipped `mvault`, pause it or move its
//! clock past a snapshot lock.

#[cfg(feature = "test-hooks")]
mod hooks {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, OnceLock};
    use std::time::Duration;

    /// What the environment asked for, read once.
    struct Plan {
        crash: Option<(String, u64)>,
        pause: Option<(String, u64, PathBuf)>,
        passes: Mutex<HashMap<String, u64>>,
    }

    static HOOKS: AtomicBool = AtomicBool::new(false);

    /// Let the environment drive this process's fault points and clock: for the test binary's `main` only.
    pub fn enable_test_hooks() {
        HOOKS.store(true, Ordering::SeqCst);
    }

    /// Whether the program turned the test hooks on.
    pub(crate) fn test_hooks() -> bool {
        HOOKS.load(Ordering::Relaxed)
    }

    /// `NAME` or `NAME@N` (N counted from 1).
    fn parse_target(target: &str) -> (String, u64) {
        match target.rsplit_once('@') {
            Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1).max(1)),
            None => (target.to_string(), 1),
        }
    }

    fn plan() -> Option<&'static Plan> {
        if !test_hooks() {
            return None;
        }
        static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
        PLAN.get_or_init(|| {
            let crash = std::env::var("MVAULT_TEST_CRASH").ok().map(|v| parse_target(&v));
            let pause = std::env::var("MVAULT_TEST_PAUSE").ok().and_then(|v| {
                let file = std::env::var_os("MVAULT_TEST_PAUSE_FILE")?;
                let (name, n) = parse_target(&v);
                Some((name, n, PathBuf::from(file)))
            });
            (crash.is_some() || pause.is_some()).then(|| Plan { crash, pause, passes: Mutex::new(HashMap::new()) })
        })
        .as_ref()
    }

    /// Mark a step. See the module text for what a test can ask to happen here.
    pub fn point(name: &str) {
        let Some(plan) = plan() else { return };
        let crash_here = plan.crash.as_ref().is_some_and(|(n, _)| n == name);
        let pause_here = plan.pause.as_ref().is_some_and(|(n, _, _)| n == name);
        if !crash_here && !pause_here {
            return;
        }
        let pass = {
            let mut passes = plan.passes.lock().expect("fault point counter");
            let c = passes.entry(name.to_string()).or_insert(0);
            *c += 1;
            *c
        };
        if let Some((_, at)) = plan.crash.as_ref().filter(|_| crash_here) {
            if pass == *at {
                eprintln!("mvault: test crash at {name} (pass {pass})");
                std::process::abort();
            }
        }
        if let Some((_, at, file)) = plan.pause.as_ref().filter(|_| pause_here) {
            if pass >= *at {
                if pass == *at {
                    // The file appears once per process: the test waits for it, acts, then removes it.
                    let _ = std::fs::write(file, format!("{name}@{pass} pid {}\n", std::process::id()));
                }
                while file.exists() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// The tests' clock: `MVAULT_TEST_NOW` (RFC 3339), once the hooks are on.
    pub(crate) fn fake_now() -> Option<std::time::SystemTime> {
        if !test_hooks() {
            return None;
        }
        std::env::var("MVAULT_TEST_NOW").ok().and_then(|s| humantime::parse_rfc3339_weak(&s).ok())
    }
    #[cfg(test)]
    mod tests {
        use super::parse_target;

        #[test]
        fn targets_name_a_point_and_a_pass() {
            assert_eq!(parse_target("pack-written"), ("pack-written".to_string(), 1));
            assert_eq!(parse_target("pack-written@7"), ("pack-written".to_string(), 7));
            assert_eq!(parse_target("a@b@3"), ("a@b".to_string(), 3));
            assert_eq!(parse_target("x@0"), ("x".to_string(), 1), "passes count from 1");
        }
    }
}

#[cfg(feature = "test-hooks")]
pub use hooks::enable_test_hooks;
#[cfg(feature = "test-hooks")]
pub(crate) use hooks::{fake_now, point};

/// Mark a step (a release build: nothing happens here).
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn point(_name: &str) {}

/// The tests' clock (a release build has none).
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub(crate) fn fake_now() -> Option<std::time::SystemTime> {
    None
}

//! The one tokio runtime (two workers) that drives every async store call, OpenDAL's and hdfs-native's, and the
//! PostgreSQL catalog's, from the synchronous core with `block_on` on the calling thread. Made on first use,
//! and shut down by `shutdown` before the process exits.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

static RUNTIME: Mutex<Option<tokio::runtime::Runtime>> = Mutex::new(None);
static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();

pub(crate) fn runtime() -> &'static tokio::runtime::Handle {
    HANDLE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mvault-io")
            .enable_all()
            .build()
            .expect("start the I/O runtime");
        let handle = rt.handle().clone();
        *RUNTIME.lock().unwrap_or_else(|p| p.into_inner()) = Some(rt);
        handle
    })
}

/// Stop the I/O runtime's tasks and threads (an HDFS client's lease renewal, connections being dropped).
/// Call it last, before `exit`: otherwise a worker may still be inside a C library (Kerberos through
/// libgssapi) while `exit` runs that library's finalizers, which aborted a process that had finished its work
/// (`k5_mutex_lock: Received error 22`).
pub fn shutdown() {
    let rt = RUNTIME.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(rt) = rt {
        rt.shutdown_timeout(Duration::from_secs(5));
    }
}

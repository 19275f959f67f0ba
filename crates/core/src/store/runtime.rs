//! The one tokio runtime (two workers) that drives every async store call, OpenDAL's and hdfs-native's, from
//! the synchronous core with `block_on` on the calling thread. Made on first use.

use std::sync::OnceLock;

pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mvault-io")
            .enable_all()
            .build()
            .expect("start the I/O runtime")
    })
}

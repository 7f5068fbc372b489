//! The one runtime for I/O that blocking code does: source readers fetching
//! over HTTP or S3, translation backends, a barrier's global step reading
//! committed versions. Stage work runs on blocking threads (the executor's
//! `on_cpu`); from there it waits on futures through [`block_on`].
//!
//! ```text
//! blocking thread (SplitReader, Transform, BarrierConfig::resolve) ──block_on(fut)──► smelt-io runtime (2 threads)
//! ```

use std::future::Future;
use std::sync::OnceLock;

/// The process's I/O runtime: two threads, started on first use.
///
/// # Panics
/// The runtime cannot start (the process cannot create threads).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("smelt-io")
            .enable_all()
            .build()
            .expect("the I/O runtime starts")
    })
}

/// Runs `f` to completion on the I/O runtime. Call it from blocking threads
/// (or outside any runtime), never from async code.
pub fn block_on<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

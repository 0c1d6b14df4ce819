//! The process-wide tokio runtime: created on first use, a small worker pool, hosting the
//! background work of every manager (the idle reaper and its timers).
//!
//! Blocking calls do not hop onto it: a request on a warm connection runs its socket calls on
//! the caller's thread and parks only that thread (in `poll(2)`), so no runtime thread is woken
//! per request. See `connection.rs`.

use crate::error::{Error, ErrorKind, Result};
use once_cell::sync::Lazy;
use tokio::runtime::{Builder, Handle, Runtime};

/// Environment variable that sets the worker count (default 1; the work on it is light).
pub const WORKERS_ENV: &str = "SERVICEPOINT_WORKER_THREADS";

static RUNTIME: Lazy<Runtime> = Lazy::new(|| {
    let workers = std::env::var(WORKERS_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(1);
    Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("servicepoint-rt")
        .enable_time()
        .build()
        .expect("servicepoint: cannot start the tokio runtime")
});

/// Handle to the shared runtime, starting it if needed.
pub fn handle() -> &'static Handle {
    RUNTIME.handle()
}

/// Blocking calls made from a runtime thread would stall every manager's background work:
/// refuse them with a clear error instead.
pub fn ensure_blocking_allowed() -> Result<()> {
    if Handle::try_current().is_ok() {
        return Err(Error::new(
            ErrorKind::WrongThread,
            "blocking call made from a servicepoint runtime thread (inside a callback)",
        ));
    }
    Ok(())
}

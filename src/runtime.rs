//! The process-wide tokio runtime: created on first use, a small worker pool, hosting the
//! background work of every manager (the idle reaper and its timers).
//!
//! Blocking calls do not hop onto it: a request on a warm connection runs its socket calls on
//! the caller's thread and parks only that thread (in `poll(2)`), so no runtime thread is woken
//! per request. See `connection.rs`.
//!
//! A forked child has none of the parent's runtime threads: the first use in a child starts a
//! runtime of its own (the parent's is leaked, never touched again; dropping it would wait for
//! threads that do not exist).

use crate::error::{Error, ErrorKind, Result};
use crate::fork;
use tokio::runtime::{Builder, Handle, Runtime};

/// Environment variable that sets the worker count (default 1; the work on it is light).
pub const WORKERS_ENV: &str = "SERVICEPOINT_WORKER_THREADS";

static RUNTIME: fork::Lock<Option<(u64, &'static Runtime)>> = fork::Lock::new(None);

fn build() -> &'static Runtime {
    let workers = std::env::var(WORKERS_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(1);
    let runtime = Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("servicepoint-rt")
        .enable_time()
        .enable_io()
        .build()
        .expect("servicepoint: cannot start the tokio runtime");
    Box::leak(Box::new(runtime))
}

/// Handle to this process's runtime, starting it if needed (again in a forked child).
pub fn handle() -> Handle {
    let generation = fork::generation();
    let mut slot = RUNTIME.lock();
    match *slot {
        Some((g, rt)) if g == generation => rt.handle().clone(),
        _ => {
            let rt = build();
            *slot = Some((generation, rt));
            rt.handle().clone()
        }
    }
}

/// Blocking calls made from a runtime thread would stall every manager's background work, and
/// one made from inside a user callback could wait for the call that runs the callback: refuse
/// them with a clear error instead.
pub fn ensure_blocking_allowed() -> Result<()> {
    if crate::callback::inside() {
        return Err(Error::new(
            ErrorKind::WrongThread,
            "blocking call made from inside a servicepoint callback (body reader or certificate validator)",
        ));
    }
    if Handle::try_current().is_ok() {
        return Err(Error::new(
            ErrorKind::WrongThread,
            "blocking call made from a servicepoint runtime thread (inside a callback)",
        ));
    }
    Ok(())
}

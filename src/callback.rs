//! User callbacks (a streamed request body's reader, a certificate validator) run on the
//! caller's thread in the middle of a library call. A blocking call made from inside one could
//! wait for the very call that runs it (a request queued behind the connection its own caller
//! holds), so blocking calls check [`inside`] and fail at once with `WrongThread` instead.

use std::cell::Cell;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Runs a user callback, marking this thread as inside one.
pub fn run<T>(f: impl FnOnce() -> T) -> T {
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
    }
    DEPTH.with(|d| d.set(d.get() + 1));
    let _depth = Depth;
    f()
}

/// True while this thread runs a user callback.
pub fn inside() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

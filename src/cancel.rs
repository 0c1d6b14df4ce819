//! Cancellation: a token that stops the requests and body reads watching it, blocking or
//! asynchronous, from any thread (the `HttpWebRequest.Abort` and `CancellationToken` cases).
//!
//! A blocking call watches its token through the thread it runs on (`watching`): its socket
//! waits also poll the token's pipe, and a queued request's wait on the pool wakes up too. An
//! asynchronous operation awaits `canceled()` beside its socket. The pipe's write end can be
//! handed to a signal mechanism (Python's `signal.set_wakeup_fd`) so that a signal cancels a
//! blocking call at once; any byte written to it counts as a cancel.

use crate::error::{Error, ErrorKind};
use crate::fork::Lock;
use std::cell::RefCell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, OnceLock, Weak};
use tokio::sync::Notify;

/// A cancellation token; clones share one state.
#[derive(Clone, Default)]
pub struct CancelToken(Arc<State>);

#[derive(Default)]
struct State {
    canceled: AtomicBool,
    /// Non-blocking pipe (read end, write end), made on first use by a blocking call.
    pipe: OnceLock<Option<(OwnedFd, OwnedFd)>>,
    notify: Notify,
    /// Condition variables of blocking requests queued in a pool, woken on cancel.
    queued: Lock<Vec<Weak<Condvar>>>,
}

thread_local! {
    /// The tokens the current blocking call watches.
    static WATCHED: RefCell<Vec<CancelToken>> = const { RefCell::new(Vec::new()) };
}

impl CancelToken {
    pub fn new() -> Self {
        CancelToken::default()
    }

    /// Cancels every request and read watching the token, now and later (until `reset`).
    pub fn cancel(&self) {
        self.0.canceled.store(true, Ordering::SeqCst);
        if let Some(Some((_, write))) = self.0.pipe.get() {
            let byte = 1u8;
            // SAFETY: writing one byte from a valid local to an open descriptor we own.
            let _ = unsafe { libc::write(write.as_raw_fd(), (&raw const byte).cast(), 1) };
        }
        self.0.notify.notify_waiters();
        for cv in self.0.queued.lock().iter().filter_map(Weak::upgrade) {
            cv.notify_all();
        }
    }

    /// True once canceled (by `cancel` or by a byte written to the pipe).
    pub fn is_canceled(&self) -> bool {
        if self.0.canceled.load(Ordering::SeqCst) {
            return true;
        }
        // Only a pipe that exists can have been written to (a signal handler's byte); checking
        // must not create one: tokens are checked at every step of an operation.
        let existing = match self.0.pipe.get() {
            Some(Some((read, _))) => Some(read.as_raw_fd()),
            _ => None,
        };
        let readable =
            existing.is_some_and(|fd| crate::connection::poll_now(fd, libc::POLLIN) != 0);
        if readable {
            self.0.canceled.store(true, Ordering::SeqCst);
        }
        readable
    }

    /// Makes the token usable again: requests started from now on are not canceled.
    pub fn reset(&self) {
        if let Some(Some((read, _))) = self.0.pipe.get() {
            let mut sink = [0u8; 64];
            // SAFETY: reading into a valid local buffer from a non-blocking descriptor we own.
            while unsafe { libc::read(read.as_raw_fd(), sink.as_mut_ptr().cast(), sink.len()) } > 0
            {
            }
        }
        self.0.canceled.store(false, Ordering::SeqCst);
    }

    /// The pipe's read end, readable once canceled; None if no pipe could be made.
    pub fn poll_fd(&self) -> Option<RawFd> {
        self.pipe().map(|(read, _)| read)
    }

    /// The pipe's write end: a byte written to it cancels (for signal wake-up mechanisms).
    pub fn wakeup_fd(&self) -> Option<RawFd> {
        self.pipe().map(|(_, write)| write)
    }

    fn pipe(&self) -> Option<(RawFd, RawFd)> {
        let pipe = self.0.pipe.get_or_init(|| {
            let mut fds = [0; 2];
            // SAFETY: `fds` has room for the two descriptors pipe2 writes.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
                return None;
            }
            // SAFETY: pipe2 succeeded, so both are open descriptors owned by nobody else.
            Some(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
        });
        let (read, write) = pipe.as_ref()?;
        if self.0.canceled.load(Ordering::SeqCst) {
            // Canceled before the pipe existed: make it readable now.
            let byte = 1u8;
            // SAFETY: as in `cancel`.
            let _ = unsafe { libc::write(write.as_raw_fd(), (&raw const byte).cast(), 1) };
        }
        Some((read.as_raw_fd(), write.as_raw_fd()))
    }

    /// Resolves once the token is canceled (for asynchronous operations).
    pub async fn canceled(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_canceled() {
                return;
            }
            notified.await;
        }
    }

    /// Registers the condition variable of a queued blocking request, woken on cancel.
    pub fn watch_queue(&self, cv: &Arc<Condvar>) {
        let mut queued = self.0.queued.lock();
        queued.retain(|w| w.strong_count() > 0);
        queued.push(Arc::downgrade(cv));
    }
}

/// The error of a canceled request or read.
pub fn canceled_error(what: &str) -> Error {
    Error::new(ErrorKind::Canceled, format!("{what} was canceled"))
}

/// Runs a blocking call watching `token` (none: no cost beyond the check).
pub fn watching<T>(token: Option<&CancelToken>, f: impl FnOnce() -> T) -> T {
    let Some(token) = token else {
        return f();
    };
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            WATCHED.with(|w| w.borrow_mut().truncate(self.0));
        }
    }
    let before = WATCHED.with(|w| {
        let mut w = w.borrow_mut();
        let before = w.len();
        w.push(token.clone());
        before
    });
    let _restore = Restore(before);
    f()
}

/// True when a token the current blocking call watches was canceled.
pub fn watched_canceled() -> bool {
    WATCHED.with(|w| w.borrow().iter().any(CancelToken::is_canceled))
}

/// The poll descriptor of the first token the current call watches, if any.
pub fn watched_fd() -> Option<RawFd> {
    WATCHED.with(|w| w.borrow().iter().find_map(CancelToken::poll_fd))
}

/// Calls `f` with each watched token (to register a queued wait).
pub fn for_each_watched(mut f: impl FnMut(&CancelToken)) {
    WATCHED.with(|w| w.borrow().iter().for_each(&mut f));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_reset_and_the_wakeup_pipe() {
        let t = CancelToken::new();
        assert!(!t.is_canceled());
        t.cancel();
        assert!(t.is_canceled());
        t.reset();
        assert!(!t.is_canceled());
        // A byte written to the wake-up end (what a signal handler does) cancels.
        let w = t.wakeup_fd().expect("pipe");
        // SAFETY: one byte from a local to the token's own pipe.
        assert_eq!(unsafe { libc::write(w, b"x".as_ptr().cast(), 1) }, 1);
        assert!(t.is_canceled());
        t.reset();
        assert!(!t.is_canceled());
    }

    #[test]
    fn watched_tokens_are_scoped_to_the_call() {
        let t = CancelToken::new();
        t.cancel();
        assert!(!watched_canceled());
        assert!(watching(Some(&t), watched_canceled));
        assert!(!watched_canceled());
    }
}

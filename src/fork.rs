//! `fork()` safety. A child process inherits the parent's memory: its pooled sockets (shared
//! with the parent, so reusing one would interleave two processes' requests on one
//! connection), its locks (possibly held by threads that do not exist in the child) and its
//! runtime (whose threads do not exist either).
//!
//! - A child handler (`pthread_atfork`) bumps the process's fork [`generation`]. Everything
//!   that must not cross a fork (connections, pool bookkeeping, the runtime, the reaper, the
//!   TLS session cache) records the generation it was made in and is dropped or rebuilt when it
//!   differs. Inherited sockets are closed without `shutdown`, which would break the parent's
//!   connection.
//! - Every library lock is a [`Lock`] or [`RwLock`], whose critical sections are short and
//!   never wait for I/O. The prepare handler waits until no thread is inside one, and holds new
//!   entries back until `fork` returns, so a child never inherits a lock held by a thread it
//!   does not have. Entering a section costs a thread-local counter and one atomic add on a
//!   cache line of its own stripe, not on a shared one.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Mutex, MutexGuard, Once, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

static GENERATION: AtomicU64 = AtomicU64::new(0);
static FORKING: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Longest the prepare handler waits for threads to leave their critical sections. Sections
/// are short; this only bounds the wait if a thread is descheduled inside one.
const QUIESCE_MAX: Duration = Duration::from_secs(2);

const STRIPES: usize = 32;

#[repr(align(64))]
struct Stripe(AtomicUsize);

static ACTIVE: [Stripe; STRIPES] = [const { Stripe(AtomicUsize::new(0)) }; STRIPES];
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

/// A thread whose stripe is not chosen yet.
const NO_STRIPE: usize = usize::MAX;

thread_local! {
    /// Nesting depth of this thread's critical sections (only the outermost one counts) and
    /// the thread's stripe, in one cell: a section reads it once as it starts and once as it
    /// ends (each access to a library's thread-local costs a call).
    static SECTION: Cell<(u32, usize)> = const { Cell::new((0, NO_STRIPE)) };
}

/// This thread's section depth.
fn depth() -> u32 {
    SECTION.get().0
}

/// The process's fork generation: 0 in the process that loaded the library, bumped in each
/// child of a `fork()`.
pub fn generation() -> u64 {
    GENERATION.load(Acquire)
}

/// Registers the fork handlers (once per process; called when the first manager is made).
pub fn install() {
    INSTALL.call_once(|| {
        // SAFETY: the handlers are `extern "C"` functions that live for the whole process.
        let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        debug_assert_eq!(rc, 0, "pthread_atfork failed");
    });
}

extern "C" fn prepare() {
    if depth() > 0 {
        // Forking from inside a section (a callback run under a lock would be a bug): do not
        // wait for ourselves.
        return;
    }
    FORKING.store(true, SeqCst);
    let start = Instant::now();
    while ACTIVE.iter().map(|s| s.0.load(SeqCst)).sum::<usize>() != 0 {
        if start.elapsed() > QUIESCE_MAX {
            break;
        }
        std::thread::yield_now();
    }
}

extern "C" fn parent() {
    FORKING.store(false, SeqCst);
}

extern "C" fn child() {
    GENERATION.fetch_add(1, AcqRel);
    // Only this thread exists now; counts left by other threads are stale.
    let (depth, own) = SECTION.get();
    for (i, s) in ACTIVE.iter().enumerate() {
        let mine = if i == own && depth > 0 { 1 } else { 0 };
        s.0.store(mine, SeqCst);
    }
    FORKING.store(false, SeqCst);
}

/// A short critical section in progress on this thread (see the module doc).
pub struct Section(());

impl Section {
    pub fn enter() -> Section {
        let (depth, mut stripe) = SECTION.get();
        if stripe == NO_STRIPE {
            stripe = NEXT_STRIPE.fetch_add(1, Relaxed) % STRIPES;
        }
        SECTION.set((depth + 1, stripe));
        if depth == 0 {
            loop {
                ACTIVE[stripe].0.fetch_add(1, SeqCst);
                if !FORKING.load(SeqCst) {
                    break;
                }
                ACTIVE[stripe].0.fetch_sub(1, SeqCst);
                while FORKING.load(SeqCst) {
                    std::thread::yield_now();
                }
            }
        }
        Section(())
    }
}

impl Drop for Section {
    fn drop(&mut self) {
        let (depth, stripe) = SECTION.get();
        SECTION.set((depth - 1, stripe));
        if depth == 1 {
            ACTIVE[stripe].0.fetch_sub(1, SeqCst);
        }
    }
}

/// A mutex for short critical sections (no I/O, no waiting inside), safe across `fork`.
/// Poisoning is ignored: every section leaves its data consistent before anything that can
/// panic, so a panic elsewhere never leaves counts wrong.
#[derive(Default)]
pub struct Lock<T>(Mutex<T>);

/// Guard of a [`Lock`]: the mutex guard is dropped before the section ends.
pub struct LockGuard<'a, T> {
    guard: MutexGuard<'a, T>,
    _section: Section,
}

impl<T> Lock<T> {
    pub const fn new(value: T) -> Self {
        Lock(Mutex::new(value))
    }

    pub fn lock(&self) -> LockGuard<'_, T> {
        let section = Section::enter();
        LockGuard {
            guard: self.0.lock().unwrap_or_else(|e| e.into_inner()),
            _section: section,
        }
    }
}

impl<T> Deref for LockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for LockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// A reader-writer lock for short critical sections, safe across `fork` (see [`Lock`]).
#[derive(Default)]
pub struct RwLock<T>(std::sync::RwLock<T>);

pub struct ReadGuard<'a, T> {
    guard: RwLockReadGuard<'a, T>,
    _section: Section,
}

pub struct WriteGuard<'a, T> {
    guard: RwLockWriteGuard<'a, T>,
    _section: Section,
}

impl<T> RwLock<T> {
    pub const fn new(value: T) -> Self {
        RwLock(std::sync::RwLock::new(value))
    }

    pub fn read(&self) -> ReadGuard<'_, T> {
        let section = Section::enter();
        ReadGuard {
            guard: self.0.read().unwrap_or_else(|e| e.into_inner()),
            _section: section,
        }
    }

    pub fn write(&self) -> WriteGuard<'_, T> {
        let section = Section::enter();
        WriteGuard {
            guard: self.0.write().unwrap_or_else(|e| e.into_inner()),
            _section: section,
        }
    }
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_nest_and_balance() {
        drop(Section::enter()); // chooses this thread's stripe
        let stripe = SECTION.get().1;
        let before = ACTIVE[stripe].0.load(SeqCst);
        {
            let a = Lock::new(1);
            let b = RwLock::new(2);
            let ga = a.lock();
            let gb = b.read();
            assert_eq!(*ga + *gb, 3);
            assert_eq!(
                ACTIVE[stripe].0.load(SeqCst),
                before + 1,
                "outermost counts once"
            );
        }
        assert_eq!(ACTIVE[stripe].0.load(SeqCst), before);
        assert_eq!(depth(), 0);
    }
}

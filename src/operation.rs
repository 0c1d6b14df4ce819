//! Asynchronous operations: a request or a body read running as a task on the runtime, the
//! token that cancels it, and its completion, delivered exactly once: on a runtime thread, or
//! through a [`CompletionQueue`] that the program drains on its own thread (an event loop adds
//! the queue's descriptor to its poll set).

use crate::cancel::CancelToken;
use crate::error::{Error, ErrorKind, Result};
use crate::fork::Lock;
use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// A running (or finished) asynchronous operation, as its caller holds it.
pub struct Operation {
    token: CancelToken,
    done: Arc<AtomicBool>,
}

impl Operation {
    /// Ends the operation early: its completion reports `Canceled` (unless it had already
    /// completed). A canceled request that was queued leaves the queue unsent; one in flight
    /// closes its connection.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// True once the operation has completed: its completion runs, has run, or waits in its
    /// queue.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
}

/// Where an operation's completion runs.
#[derive(Clone, Default)]
pub enum Deliver {
    /// On a runtime thread, right away.
    #[default]
    Runtime,
    /// On whichever thread calls `CompletionQueue::run`.
    Queue(Arc<CompletionQueue>),
}

type Job = Box<dyn FnOnce() + Send>;

/// Completed operations waiting for their program's thread. Its descriptor (an eventfd) is
/// readable while any are queued.
pub struct CompletionQueue {
    jobs: Lock<VecDeque<Job>>,
    event: OwnedFd,
    /// Closed by its owner: completions arriving later run on the runtime instead.
    closed: AtomicBool,
    /// The eventfd has been written since the last `run` read it.
    signalled: AtomicBool,
}

impl CompletionQueue {
    pub fn new() -> Result<Self> {
        // SAFETY: eventfd has no memory arguments; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(Error::new(ErrorKind::Io, format!("eventfd: {e}")));
        }
        Ok(CompletionQueue {
            jobs: Lock::new(VecDeque::new()),
            // SAFETY: a new descriptor that nothing else owns.
            event: unsafe { OwnedFd::from_raw_fd(fd) },
            closed: AtomicBool::new(false),
            signalled: AtomicBool::new(false),
        })
    }

    /// Readable while completions are queued: add it to a poll set, then call `run`.
    pub fn fd(&self) -> RawFd {
        self.event.as_raw_fd()
    }

    /// Completions queued now.
    pub fn len(&self) -> usize {
        self.jobs.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues work to run on the thread that drains the queue (log messages use it).
    pub fn push_job(&self, job: Box<dyn FnOnce() + Send>) {
        self.push(job);
    }

    fn push(&self, job: Job) {
        {
            let mut jobs = self.jobs.lock();
            if !self.closed.load(Ordering::Acquire) {
                jobs.push_back(job);
                drop(jobs);
                self.signal();
                return;
            }
        }
        job();
    }

    /// Closes the queue: runs what is queued now, on this thread; completions that arrive
    /// later run on a runtime thread (each still exactly once).
    pub fn close(&self) {
        {
            let _jobs = self.jobs.lock();
            self.closed.store(true, Ordering::Release);
        }
        while self.run(usize::MAX) > 0 {}
    }

    fn signal(&self) {
        // Already readable: a second write would only cost a system call.
        if self.signalled.swap(true, Ordering::AcqRel) {
            return;
        }
        let one = 1u64;
        // SAFETY: writes 8 bytes from a valid local to our own eventfd.
        let _ = unsafe { libc::write(self.fd(), (&raw const one).cast(), 8) };
    }

    /// Waits up to `timeout` (`None`: no limit) until a completion is queued; true if one is.
    /// For a program (or binding) that drains the queue from a thread of its own.
    pub fn wait(&self, timeout: Option<std::time::Duration>) -> bool {
        let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
        loop {
            if !self.is_empty() {
                return true;
            }
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int
                }
            };
            let mut p = libc::pollfd {
                fd: self.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut p, 1, ms) };
        }
    }

    /// Runs up to `max` queued completions on this thread, in completion order; returns how
    /// many ran. The descriptor stays readable if more remain.
    pub fn run(&self, max: usize) -> usize {
        let mut count = 0u64;
        // SAFETY: reads 8 bytes into a valid local from our own non-blocking eventfd.
        let _ = unsafe { libc::read(self.fd(), (&raw mut count).cast(), 8) };
        // Cleared after the read: a completion pushed before it is drained below, one pushed
        // after it signals again.
        self.signalled.store(false, Ordering::Release);
        let mut ran = 0;
        while ran < max {
            let Some(job) = self.jobs.lock().pop_front() else {
                break;
            };
            job();
            ran += 1;
        }
        if !self.is_empty() {
            self.signalled.store(false, Ordering::Release);
            self.signal();
        }
        ran
    }
}

/// Runs `work` as a task on the runtime and hands its result to `complete` exactly once, as
/// `deliver` says. A panic in `work` completes with an internal error (the task's resources,
/// a pool slot among them, are released by unwinding as on any path).
pub fn spawn<T: Send + 'static>(
    token: CancelToken,
    work: impl Future<Output = Result<T>> + Send + 'static,
    deliver: Deliver,
    complete: impl FnOnce(Result<T>) + Send + 'static,
) -> Operation {
    let done = Arc::new(AtomicBool::new(false));
    let finished = Arc::clone(&done);
    let task = async move {
        let result = CatchUnwind(Box::pin(work)).await;
        // Done from here on: the completion is about to run, or waits in its queue.
        finished.store(true, Ordering::Release);
        let job = move || complete(result);
        match deliver {
            Deliver::Runtime => job(),
            Deliver::Queue(queue) => queue.push(Box::new(job)),
        }
    };
    crate::runtime::handle().spawn(task);
    Operation { token, done }
}

/// An operation that completed at once (its outcome known when it started): the completion is
/// queued on `queue` without a task.
pub fn completed<T: Send + 'static>(
    token: CancelToken,
    result: Result<T>,
    queue: &Arc<CompletionQueue>,
    complete: impl FnOnce(Result<T>) + Send + 'static,
) -> Operation {
    queue.push(Box::new(move || complete(result)));
    Operation {
        token,
        done: Arc::new(AtomicBool::new(true)),
    }
}

/// Turns a panic while polling into an internal error.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<T, F: Future<Output = Result<T>>> Future for CatchUnwind<F> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll,
            Err(_) => Poll::Ready(Err(Error::new(
                ErrorKind::Internal,
                "internal error (panic) in an asynchronous operation",
            ))),
        }
    }
}

//! Asynchronous operations: a request or a body read running as a task on the runtime, the
//! token that cancels it, and its completion, delivered exactly once: on a runtime thread, or
//! through a [`CompletionQueue`] that the program drains on its own thread (an event loop adds
//! the queue's descriptor to its poll set).

use crate::cancel::CancelToken;
use crate::drive::Driver;
use crate::error::{Error, ErrorKind, Result};
use crate::fork::Lock;
use crate::local::Local;
use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::RawFd;
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

impl Deliver {
    /// The driver of an operation delivered this way: the runtime's, or the queue's.
    pub fn driver(&self, tokens: Vec<CancelToken>) -> Driver {
        match self {
            Deliver::Runtime => Driver::Async(tokens),
            Deliver::Queue(queue) => queue.driver(tokens),
        }
    }
}

pub type Job = Box<dyn FnOnce() + Send>;

/// Operations that run on a program's own thread, and their completions. Its descriptor (an
/// epoll set: the tasks' sockets and timers, and an eventfd) is readable while any task can go
/// on or a completion waits; `run` then does the work on the calling thread (see `local`).
pub struct CompletionQueue {
    jobs: Lock<VecDeque<Job>>,
    local: Arc<Local>,
    /// Canceled when the queue is closed: every operation still on it ends.
    closing: CancelToken,
    /// Closed by its owner: completions arriving later (log messages) run where they arise.
    closed: AtomicBool,
    /// One thread drains at a time.
    draining: std::sync::Mutex<()>,
}

impl CompletionQueue {
    pub fn new() -> Result<Self> {
        let local = Local::new()
            .map_err(|e| Error::new(ErrorKind::Io, format!("completion queue: {e}")))?;
        Ok(CompletionQueue {
            jobs: Lock::new(VecDeque::new()),
            local,
            closing: CancelToken::new(),
            closed: AtomicBool::new(false),
            draining: std::sync::Mutex::new(()),
        })
    }

    /// Readable while there is work: add it to a poll set, then call `run`.
    pub fn fd(&self) -> RawFd {
        self.local.fd()
    }

    /// Completions queued now.
    pub fn len(&self) -> usize {
        self.jobs.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The driver of an operation that runs on this queue.
    pub fn driver(&self, mut tokens: Vec<CancelToken>) -> Driver {
        tokens.push(self.closing.clone());
        Driver::Local(tokens, Arc::clone(&self.local))
    }

    /// Starts `task` on this queue (polled by `run`).
    fn spawn(&self, task: Pin<Box<dyn Future<Output = ()> + Send>>) {
        self.local.spawn(task);
    }

    /// Queues work to run on the thread that drains the queue: completions, and log messages.
    pub fn push(&self, job: Job) {
        {
            let mut jobs = self.jobs.lock();
            if !self.closed.load(Ordering::Acquire) {
                jobs.push_back(job);
                drop(jobs);
                self.local.signal();
                return;
            }
        }
        job();
    }

    /// Closes the queue: its operations still running are canceled and run to their end here
    /// (their completions run on this thread, each exactly once), then what is queued runs.
    pub fn close(&self) {
        self.closing.cancel();
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.local.live_tasks() > 0 && std::time::Instant::now() < give_up {
            self.run(usize::MAX);
            if self.local.live_tasks() > 0 {
                self.wait(Some(std::time::Duration::from_millis(20)));
            }
        }
        {
            let _jobs = self.jobs.lock();
            self.closed.store(true, Ordering::Release);
        }
        while self.run(usize::MAX) > 0 {}
    }

    /// Waits up to `timeout` (`None`: no limit) until there is work; true if there is.
    /// For a program (or binding) that drains the queue from a thread of its own.
    pub fn wait(&self, timeout: Option<std::time::Duration>) -> bool {
        let ms = match timeout {
            None => -1,
            Some(t) => t.as_millis().min(i32::MAX as u128) as libc::c_int,
        };
        if !self.is_empty() {
            return true;
        }
        let mut p = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut p, 1, ms) > 0 || !self.is_empty() }
    }

    /// Does the work that can be done now on this thread (the queue's operations' socket
    /// steps), then runs up to `max` completions, in completion order; returns how many ran.
    /// The descriptor stays readable if more remain.
    pub fn run(&self, max: usize) -> usize {
        let _one = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        self.local.poll_ready();
        let mut ran = 0;
        while ran < max {
            let Some(job) = self.jobs.lock().pop_front() else {
                break;
            };
            job();
            ran += 1;
        }
        self.local.quiesce();
        if !self.is_empty() {
            self.local.signal();
        }
        ran
    }
}

/// Runs `work` as a task (on the runtime, or on its completion queue's thread) and hands its
/// result to `complete` exactly once, as `deliver` says. A panic in `work` completes with an internal error (the task's resources,
/// a pool slot among them, are released by unwinding as on any path).
pub fn spawn<T: Send + 'static>(
    token: CancelToken,
    work: impl Future<Output = Result<T>> + Send + 'static,
    deliver: Deliver,
    complete: impl FnOnce(Result<T>) + Send + 'static,
) -> Operation {
    let done = Arc::new(AtomicBool::new(false));
    let finished = Arc::clone(&done);
    // An operation delivered through a queue also runs on it (its `work` was built with the
    // queue's driver); the others run on the runtime.
    let deliver_on = deliver.clone();
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
    match &deliver_on {
        Deliver::Runtime => {
            crate::runtime::handle().spawn(task);
        }
        Deliver::Queue(queue) => queue.spawn(Box::pin(task)),
    }
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
    static DONE: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    queue.push(Box::new(move || complete(result)));
    Operation {
        token,
        // Never changes again: one shared flag, no allocation per completed operation.
        done: Arc::clone(DONE.get_or_init(|| Arc::new(AtomicBool::new(true)))),
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

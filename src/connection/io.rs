//! Socket I/O primitives: writes that can never raise `SIGPIPE`, and waits bounded by a
//! deadline. A blocking call's wait is a `poll(2)` on the caller's thread (also watching the
//! call's cancel tokens). An asynchronous operation runs the same code in steps (`run_step`):
//! there a wait that would block records what it waits for and fails with `WouldBlock`, and
//! the operation awaits that readiness on the runtime's reactor before running the step again.

use crate::cancel;
use socket2::SockRef;
use std::cell::Cell;
use std::io::{self, IoSlice, Write};
use std::net::TcpStream;
use std::os::fd::RawFd;
use std::time::Instant;

/// What a step of an asynchronous operation waits for: readiness of `fd` for `events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    pub fd: RawFd,
    pub events: libc::c_short,
}

#[derive(Clone, Copy)]
struct Step {
    fault: Option<Fault>,
    pending: Option<Pending>,
    /// Look whether the socket is ready before reporting a wait (for edge-triggered waiters,
    /// which would not see readiness that came before they registered).
    probe: bool,
    /// What the waiter saw ready when the step runs again (its first wait on that descriptor
    /// takes it instead of a system call).
    seen: Option<Pending>,
}

/// Why every wait of a step fails at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Canceled,
    /// The socket could not be registered with the reactor.
    NoReactor,
}

thread_local! {
    /// Set while a step of an asynchronous operation runs on this thread.
    static STEP: Cell<Option<Step>> = const { Cell::new(None) };
}

/// True while a step of an asynchronous operation runs on this thread and one of its waits
/// would have blocked: the step's result is then discarded (it runs again when the socket is
/// ready), so its error needs no message.
pub fn step_would_block() -> bool {
    STEP.get().is_some_and(|s| s.pending.is_some())
}

/// Runs `f` as a step of an asynchronous operation: no wait blocks. Returns its result and,
/// when a wait would have blocked (the result is then that wait's `WouldBlock` error, to be
/// discarded), what to await before running the step again. With a `fault`, every wait fails
/// with it instead.
pub fn run_step<T>(fault: Option<Fault>, f: impl FnOnce() -> T) -> (T, Option<Pending>) {
    run_step_with(fault, true, None, f)
}

/// `run_step` for a waiter that sees readiness present at registration (a level-triggered
/// epoll set) and says what it saw ready (`seen`, as poll(2) bits): no `poll(2)` per wait.
pub fn run_step_level<T>(
    fault: Option<Fault>,
    seen: Option<Pending>,
    f: impl FnOnce() -> T,
) -> (T, Option<Pending>) {
    run_step_with(fault, false, seen, f)
}

fn run_step_with<T>(
    fault: Option<Fault>,
    probe: bool,
    seen: Option<Pending>,
    f: impl FnOnce() -> T,
) -> (T, Option<Pending>) {
    struct Restore(Option<Step>);
    impl Drop for Restore {
        fn drop(&mut self) {
            STEP.set(self.0);
        }
    }
    let restore = Restore(STEP.replace(Some(Step {
        fault,
        pending: None,
        probe,
        seen,
    })));
    let out = f();
    let pending = STEP.get().and_then(|s| s.pending);
    drop(restore);
    (out, pending)
}

/// The I/O error of a canceled wait; `Error::from_io` maps it to `ErrorKind::Canceled`.
#[derive(Debug)]
pub struct Canceled;

impl std::fmt::Display for Canceled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("canceled")
    }
}

impl std::error::Error for Canceled {}

fn canceled() -> io::Error {
    io::Error::other(Canceled)
}

/// Readiness of `fd` for `events` right now (a zero-timeout poll).
pub fn poll_now(fd: RawFd, events: libc::c_short) -> libc::c_short {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    if unsafe { libc::poll(&mut pfd, 1, 0) } > 0 {
        pfd.revents
    } else {
        0
    }
}

/// Writes with `sendmsg(2)` and `MSG_NOSIGNAL`: a write to a connection the peer has closed
/// fails with `EPIPE` instead of killing the host process with `SIGPIPE` (plain `write` and
/// `writev`, which `Write for TcpStream` and rustls's `write_tls` use for vectored writes,
/// would raise it). The host's signal dispositions are never touched. Counts what the kernel
/// accepted, so a failed request knows whether any byte left.
pub struct NoSignalWriter<'a> {
    stream: &'a TcpStream,
    pub written: &'a mut u64,
}

impl<'a> NoSignalWriter<'a> {
    pub fn new(stream: &'a TcpStream, written: &'a mut u64) -> Self {
        NoSignalWriter { stream, written }
    }
}

impl Write for NoSignalWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = SockRef::from(self.stream).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)?;
        *self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a wait saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// The requested event.
    Wanted,
    /// Waiting to write, the socket became readable (or hung up): the server answered or
    /// closed before taking the whole request.
    Readable,
}

/// Waits until the socket is ready for `events` or the deadline passes. With `watch_read`
/// (only meaningful while waiting for `POLLOUT`), readability also ends the wait.
pub fn wait(
    fd: RawFd,
    events: libc::c_short,
    deadline: Option<Instant>,
    watch_read: bool,
) -> io::Result<Ready> {
    let asked = if watch_read {
        events | libc::POLLIN
    } else {
        events
    };
    let verdict = |revents: libc::c_short| {
        let readable = revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
        if watch_read && readable && revents & events == 0 {
            return Ready::Readable;
        }
        if watch_read && revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            return Ready::Readable;
        }
        Ready::Wanted
    };
    if let Some(mut step) = STEP.get() {
        match step.fault {
            Some(Fault::Canceled) => return Err(canceled()),
            Some(Fault::NoReactor) => {
                return Err(io::Error::other(
                    "cannot register the socket with the reactor",
                ));
            }
            None => {}
        }
        check_deadline(deadline)?;
        if let Some(seen) = step.seen.filter(|s| s.fd == fd && s.events & asked != 0) {
            step.seen = None;
            STEP.set(Some(step));
            return Ok(verdict(seen.events));
        }
        if step.probe {
            let revents = poll_now(fd, asked);
            if revents != 0 {
                return Ok(verdict(revents));
            }
        }
        step.pending = Some(Pending { fd, events: asked });
        STEP.set(Some(step));
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let token_fd = cancel::watched_fd();
    loop {
        if deadline.is_some_and(|d| d.saturating_duration_since(Instant::now()).is_zero()) {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let timeout_ms = poll_timeout_ms(deadline);
        let mut pfds = [
            libc::pollfd {
                fd,
                events: asked,
                revents: 0,
            },
            libc::pollfd {
                fd: token_fd.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let nfds = if token_fd.is_some() { 2 } else { 1 };
        // SAFETY: `pfds` holds `nfds` valid pollfds for the duration of the call.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), nfds, timeout_ms) };
        if r > 0 {
            if pfds[1].revents != 0 && cancel::watched_canceled() {
                return Err(canceled());
            }
            if pfds[0].revents != 0 {
                return Ok(verdict(pfds[0].revents));
            }
            continue;
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Waits for `events` only.
pub fn wait_fd(fd: RawFd, events: libc::c_short, deadline: Option<Instant>) -> io::Result<()> {
    wait(fd, events, deadline, false).map(|_| ())
}

/// A `poll(2)` timeout that ends at `deadline` (-1: none), rounded up so the poll never returns
/// just before it.
pub fn poll_timeout_ms(deadline: Option<Instant>) -> libc::c_int {
    deadline.map_or(-1, |d| {
        d.saturating_duration_since(Instant::now())
            .as_micros()
            .div_ceil(1000)
            .min(i32::MAX as u128) as libc::c_int
    })
}

/// The earlier of two optional limits (`None` is no limit).
pub fn earliest<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Fails with `TimedOut` once the deadline has passed: loops that make progress without ever
/// waiting (a server streaming bytes) check it on every round.
pub fn check_deadline(deadline: Option<Instant>) -> io::Result<()> {
    if STEP.get().is_some_and(|s| s.fault == Some(Fault::Canceled)) {
        return Err(canceled());
    }
    match deadline {
        Some(d) if Instant::now() >= d => Err(io::ErrorKind::TimedOut.into()),
        _ => Ok(()),
    }
}

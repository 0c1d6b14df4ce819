//! A socket's registration with the runtime's reactor, for asynchronous operations. Made on
//! the first asynchronous wait and kept for the socket's life (a connection moves between
//! blocking and asynchronous requests; registering costs two system calls, so it happens once).
//! Blocking calls `poll(2)` the same socket; the registration does not disturb them.

use super::io::Pending;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The descriptor as the reactor sees it; not an owner (the socket's `TcpStream` is).
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Declared before the socket in its owner, so it deregisters before the descriptor closes.
/// Also remembers which completion queue's epoll set holds the socket (see `Local::ready`):
/// that registration goes when the descriptor closes.
#[derive(Default)]
pub struct Reactor(Option<AsyncFd<Fd>>, Option<(u64, RawFd)>);

impl Reactor {
    /// True when the socket (`fd`) is registered with completion queue `local` already; else
    /// records that it is about to be.
    pub fn registered_with(&mut self, local: u64, fd: RawFd) -> bool {
        let known = self.1 == Some((local, fd));
        self.1 = Some((local, fd));
        known
    }

    /// Waits until `pending` is ready or `deadline` passes (the step that runs next reports a
    /// timeout itself). Must run on the runtime.
    pub async fn ready(&mut self, pending: Pending, deadline: Option<Instant>) -> io::Result<()> {
        if self.0.as_ref().is_none_or(|r| r.as_raw_fd() != pending.fd) {
            let both = Interest::READABLE | Interest::WRITABLE;
            // SAFETY: the descriptor is the socket of the `Connection` (or `Connecting`) that
            // owns this `Reactor`, declared before its socket: it stays open, the same socket,
            // until the registration is dropped (or forgotten, in a forked child).
            let registered = unsafe { AsyncFd::register_with_interest(Fd(pending.fd), both) };
            self.0 = Some(registered.map_err(io::Error::from)?);
        }
        let Some(fd) = self.0.as_ref() else {
            return Ok(());
        };
        let read = pending.events & libc::POLLIN != 0;
        let write = pending.events & libc::POLLOUT != 0;
        let interest = match (read, write) {
            (true, true) => Interest::READABLE | Interest::WRITABLE,
            (false, true) => Interest::WRITABLE,
            _ => Interest::READABLE,
        };
        let wait = async {
            // Cleared before the step runs again: readiness that arrives meanwhile is seen next
            // time, and a step that finds nothing records a new wait.
            fd.ready(interest)
                .await
                .map(|mut guard| guard.clear_ready())
        };
        match deadline {
            None => wait.await,
            Some(d) => match tokio::time::timeout_at(d.into(), wait).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            },
        }
    }

    /// In a forked child: the reactor is the parent's (the epoll instance is shared with it),
    /// so deregistering would remove the parent's registration. Leak it instead.
    pub fn forget(&mut self) {
        if let Some(fd) = self.0.take() {
            std::mem::forget(fd);
        }
        self.1 = None;
    }
}

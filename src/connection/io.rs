//! Socket I/O primitives for the caller's thread: writes that can never raise `SIGPIPE`, and
//! `poll(2)` waits bounded by a deadline.

use socket2::SockRef;
use std::io::{self, IoSlice, Write};
use std::net::TcpStream;
use std::os::fd::RawFd;
use std::time::Instant;

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
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                // Round up so the poll never returns just before the deadline.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events: asked,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd for the duration of the call; nfds is 1.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r > 0 {
            let readable = pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
            if watch_read && readable && pfd.revents & events == 0 {
                return Ok(Ready::Readable);
            }
            if watch_read && pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                return Ok(Ready::Readable);
            }
            return Ok(Ready::Wanted);
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

/// Fails with `TimedOut` once the deadline has passed: loops that make progress without ever
/// waiting (a server streaming bytes) check it on every round.
pub fn check_deadline(deadline: Option<Instant>) -> io::Result<()> {
    match deadline {
        Some(d) if Instant::now() >= d => Err(io::ErrorKind::TimedOut.into()),
        _ => Ok(()),
    }
}

//! One TCP connection to an origin: the socket, its read buffer, and what the pool needs to know
//! about it (age, requests served, the server's keep-alive hints).
//!
//! The socket is non-blocking and every wait is a `poll(2)` on the calling thread with the
//! caller's deadline, so a blocking request parks only its own thread and wakes no other.
//! HTTPS connections run rustls sans-IO over the same socket and the same waits.

mod tls;

use crate::error::{Error, ErrorKind, Result};
use crate::origin::{Origin, Scheme};
use rustls::{ClientConfig, ClientConnection};
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tls::{flush_tls, read_tls_plaintext};

/// Initial read buffer; enough for a typical response head and a small body in one `recv`.
const INITIAL_BUFFER: usize = 8 * 1024;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What the server said about reuse in a `Keep-Alive: timeout=N, max=M` header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepAliveHint {
    pub timeout: Option<Duration>,
    pub max: Option<u32>,
}

/// Why a connection was closed; each has its own statistics counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    Lease = 0,
    Idle = 1,
    KeepAliveOff = 2,
    ServerClose = 3,
    Stale = 4,
    Error = 5,
    MaxRequests = 6,
    GroupClosed = 7,
    ManagerClosed = 8,
    /// The response was freed with much of its body unread.
    Abandoned = 9,
}

pub const CLOSE_REASONS: usize = 10;

pub struct Connection {
    /// Unique in the process; shown to users as "which connection served this".
    pub id: u64,
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pub created: Instant,
    /// When the last response on it finished (its idle-since time while pooled).
    pub last_used: Instant,
    /// Requests sent on this connection so far.
    pub requests: u32,
    pub hint: KeepAliveHint,
    /// Connection-group generation it was opened in; closing a group bumps the generation.
    pub generation: u64,
    /// The TLS session of an https connection.
    tls: Option<Box<ClientConnection>>,
    /// True when the TLS handshake resumed an earlier session (abbreviated handshake).
    pub resumed: bool,
}

/// Connects to the first of `addrs` that answers and, for https, completes the TLS handshake
/// with `tls`.
pub fn connect(
    origin: &Origin,
    addrs: &[SocketAddr],
    tls: Option<Arc<ClientConfig>>,
    deadline: Option<Instant>,
    generation: u64,
) -> Result<Connection> {
    let mut conn = connect_tcp(origin, addrs, deadline, generation)?;
    if origin.scheme == Scheme::Https {
        let config =
            tls.ok_or_else(|| Error::new(ErrorKind::TlsHandshake, "no TLS configuration"))?;
        conn.handshake(origin, config, deadline)?;
    }
    Ok(conn)
}

fn connect_tcp(
    origin: &Origin,
    addrs: &[SocketAddr],
    deadline: Option<Instant>,
    generation: u64,
) -> Result<Connection> {
    let mut last = None;
    for &addr in addrs {
        let result = match remaining(deadline) {
            None => TcpStream::connect(addr),
            Some(left) if left.is_zero() => Err(io::ErrorKind::TimedOut.into()),
            Some(left) => TcpStream::connect_timeout(&addr, left),
        };
        match result {
            Ok(stream) => return Connection::new(stream, generation),
            Err(e) => last = Some((addr, e)),
        }
    }
    let Some((addr, e)) = last else {
        return Err(Error::new(
            ErrorKind::Dns,
            format!("no address to connect to for {origin}"),
        ));
    };
    let kind = if e.kind() == io::ErrorKind::TimedOut {
        ErrorKind::ConnectTimeout
    } else {
        ErrorKind::Connect
    };
    Err(Error::new(
        kind,
        format!("connect to {addr} for {origin} failed: {e}"),
    ))
}

fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

impl Connection {
    fn new(stream: TcpStream, generation: u64) -> Result<Self> {
        let setup = |s: &TcpStream| -> io::Result<()> {
            s.set_nodelay(true)?;
            s.set_nonblocking(true)
        };
        setup(&stream).map_err(|e| Error::from_io(&e, "socket setup", ErrorKind::Io))?;
        let now = Instant::now();
        Ok(Connection {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            stream,
            buf: Vec::new(),
            start: 0,
            end: 0,
            created: now,
            last_used: now,
            requests: 0,
            hint: KeepAliveHint::default(),
            generation,
            tls: None,
            resumed: false,
        })
    }

    /// True for a TLS connection.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The client-side port: what a server sees as this connection's peer port.
    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Bytes received but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` buffered bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// True when an idle connection can take a request: no EOF, no reset, no unexpected bytes
    /// from the server (checked without blocking).
    pub fn is_alive(&mut self) -> bool {
        if self.start != self.end {
            return false;
        }
        let mut probe = [0u8; 1];
        match self.stream.peek(&mut probe) {
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            Ok(0) => false,
            // Bytes on a TLS connection may be a record for TLS itself (a session ticket sent
            // after the last response): process them and look for application data or close.
            Ok(_) => match self.tls.as_mut() {
                None => false,
                Some(tls) => {
                    let alive = matches!(tls.read_tls(&mut &self.stream), Ok(n) if n > 0)
                        && tls.process_new_packets().is_ok();
                    let mut byte = [0u8; 1];
                    alive
                        && matches!(tls.reader().read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                }
            },
        }
    }

    /// Sends all of `parts` in order, waiting for the socket as needed.
    pub fn write_all(&mut self, parts: &[&[u8]], deadline: Option<Instant>) -> io::Result<()> {
        if let Some(tls) = self.tls.as_mut() {
            let fd = self.stream.as_raw_fd();
            for part in parts {
                let mut rest = *part;
                while !rest.is_empty() {
                    let n = tls.writer().write(rest)?;
                    rest = &rest[n..];
                    if n == 0 || tls.wants_write() {
                        flush_tls(tls, &self.stream, fd, deadline)?;
                    }
                }
            }
            return flush_tls(tls, &self.stream, fd, deadline);
        }
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let mut slices = &mut slices[..];
        IoSlice::advance_slices(&mut slices, 0);
        while !slices.is_empty() {
            match (&self.stream).write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_fd(self.stream.as_raw_fd(), libc::POLLOUT, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads more bytes into the buffer (growing it up to `max_buffer`); returns 0 at EOF.
    /// With `expect_wait`, polls first: right after a request is sent the answer is not there yet,
    /// and a speculative `recv` would only cost a syscall.
    pub fn fill(
        &mut self,
        max_buffer: usize,
        deadline: Option<Instant>,
        expect_wait: bool,
    ) -> io::Result<usize> {
        if self.start > 0 && self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = (self.buf.len() * 2).clamp(INITIAL_BUFFER, max_buffer.max(INITIAL_BUFFER));
            if grown <= self.buf.len() {
                return Err(io::Error::other("buffer limit reached"));
            }
            self.buf.resize(grown, 0);
        }
        if let Some(tls) = self.tls.as_mut() {
            let n = read_tls_plaintext(tls, &self.stream, &mut self.buf[self.end..], deadline)?;
            self.end += n;
            return Ok(n);
        }
        if expect_wait {
            wait_fd(self.stream.as_raw_fd(), libc::POLLIN, deadline)?;
        }
        loop {
            match (&self.stream).read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_fd(self.stream.as_raw_fd(), libc::POLLIN, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads body bytes straight into `out` when nothing is buffered (no copy through the
    /// connection buffer); returns 0 at EOF.
    pub fn read_direct(&mut self, out: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        if self.start != self.end {
            let n = out.len().min(self.end - self.start);
            out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
            self.consume(n);
            return Ok(n);
        }
        if let Some(tls) = self.tls.as_mut() {
            return read_tls_plaintext(tls, &self.stream, out, deadline);
        }
        loop {
            match (&self.stream).read(out) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_fd(self.stream.as_raw_fd(), libc::POLLIN, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Drops the read buffer's memory while the connection is idle and holds no bytes, so an
    /// idle connection costs little more than its socket.
    pub fn shrink_idle(&mut self) {
        if self.start == self.end && self.buf.len() > INITIAL_BUFFER {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
        }
    }
}

/// Waits until the socket is ready for `events` or the deadline passes.
pub(crate) fn wait_fd(
    fd: RawFd,
    events: libc::c_short,
    deadline: Option<Instant>,
) -> io::Result<()> {
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
            events,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd for the duration of the call; nfds is 1.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r > 0 {
            return Ok(());
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

//! One TCP connection to an origin: the socket, its read buffer, and what the pool needs to know
//! about it (age, requests served, the server's keep-alive hints, the process it belongs to).
//!
//! The socket is non-blocking and every wait is a `poll(2)` on the calling thread with the
//! caller's deadline, so a blocking request parks only its own thread and wakes no other.
//! HTTPS connections run rustls sans-IO over the same socket and the same waits. Writes never
//! raise `SIGPIPE` (see `io`).

mod facts;
mod io;
mod options;
mod reactor;
mod tls;

pub use facts::TlsFacts;
pub use io::{
    Canceled, Fault, Pending, Ready, check_deadline, earliest, poll_now, poll_timeout_ms, run_step,
    run_step_level, step_would_block, wait, wait_fd,
};
pub use options::{SocketOptions, TcpKeepAlive};
pub use reactor::Reactor;

use crate::error::{Error, ErrorKind, Result};
use crate::fork;
use crate::origin::Origin;
use io::NoSignalWriter;
use rustls::ClientConfig;
use socket2::{Domain, Protocol, SockRef, Socket as Socket2, Type};
use std::io::{IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tls::{Tls, flush_tls, read_tls_now, read_tls_plaintext};

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
    /// A reused connection failed under a request before any response byte: the server closed
    /// it as the request arrived (the request is retried if it may be). `Stale` is a dead
    /// connection found before reuse, at no cost.
    InFlight = 10,
    /// Idle while its address left the host's DNS answer (or pinned addresses).
    AddressGone = 11,
}

pub const CLOSE_REASONS: usize = 12;

/// How far a send got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Every byte was handed to the kernel.
    All,
    /// The socket became readable before everything was sent: the server answered early or
    /// closed. The progress counter says how far it got.
    Interrupted,
}

/// A socket that asynchronous operations wait on through the runtime's reactor.
pub trait Socket {
    fn reactor(&mut self) -> &mut Reactor;
}

pub struct Connection {
    /// Unique in the process; shown to users as "which connection served this".
    pub id: u64,
    /// Before `stream`: deregisters before the descriptor closes.
    reactor: Reactor,
    /// Shared with the pool's list of busy sockets, which shuts it down when the manager is
    /// freed mid-request; the descriptor closes when the last holder lets go.
    stream: Arc<TcpStream>,
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
    /// Fork generation of the process that opened it: a forked child never uses it.
    fork_generation: u64,
    /// The client-side port (what the server sees as the peer port), read once.
    pub local_port: u16,
    /// Requests written behind the one being answered (pipelining): boxed and made on first
    /// use, so a connection that never pipelines stays small (connections move by value).
    pipeline: Option<Box<crate::pipeline::Line>>,
    /// The server's address it connected to.
    pub peer: SocketAddr,
    /// Bytes the kernel accepted for sending over the connection's life.
    pub bytes_sent: u64,
    /// The TLS session of an https connection.
    tls: Option<Box<Tls>>,
    /// True when the TLS handshake resumed an earlier session (abbreviated handshake).
    pub resumed: bool,
    /// The handshake has read from the socket (a plain-HTTP answer shows in the first read).
    handshake_read: bool,
}

impl Socket for Connection {
    fn reactor(&mut self) -> &mut Reactor {
        &mut self.reactor
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.is_inherited() {
            self.reactor.forget();
        }
    }
}

/// A socket whose non-blocking connect is under way.
pub struct Connecting {
    reactor: Reactor,
    stream: Arc<TcpStream>,
    addr: SocketAddr,
}

impl Socket for Connecting {
    fn reactor(&mut self) -> &mut Reactor {
        &mut self.reactor
    }
}

impl Connecting {
    /// Creates the socket (with `options`) and starts connecting to `addr`.
    pub fn start(addr: SocketAddr, options: &SocketOptions) -> std::io::Result<Self> {
        let socket = Socket2::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        options.apply(&socket, addr)?;
        let stream = Arc::new(TcpStream::from(socket));
        match SockRef::from(&*stream).connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(Connecting {
            reactor: Reactor::default(),
            stream,
            addr,
        })
    }

    pub fn socket(&self) -> &Arc<TcpStream> {
        &self.stream
    }

    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the connect to complete (a step: it can run again after `WouldBlock`).
    pub fn finish(&mut self, deadline: Option<Instant>) -> std::io::Result<()> {
        check_deadline(deadline)?;
        wait_fd(self.stream.as_raw_fd(), libc::POLLOUT, deadline)?;
        if let Some(e) = SockRef::from(&*self.stream).take_error()? {
            return Err(e);
        }
        // A connect aborted by a shutdown (the manager was freed) reports no error: check it
        // is connected.
        self.stream.peer_addr().map(|_| ())
    }

    /// The connect's outcome once the socket reported writable (or an error): no wait.
    pub fn check(&self) -> std::io::Result<()> {
        if let Some(e) = SockRef::from(&*self.stream).take_error()? {
            return Err(e);
        }
        self.stream.peer_addr().map(|_| ())
    }

    pub fn into_connection(self, generation: u64) -> Connection {
        let mut conn = Connection::new(self.stream, self.addr, generation);
        conn.reactor = self.reactor;
        conn
    }
}

/// Turns a failed connect into the request's error.
pub fn connect_error(origin: &Origin, addr: SocketAddr, e: &std::io::Error) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<Canceled>()) {
        return Error::from_io(
            e,
            &format!("connect to {addr} for {origin}"),
            ErrorKind::Connect,
        );
    }
    let kind = if e.kind() == std::io::ErrorKind::TimedOut {
        ErrorKind::ConnectTimeout
    } else {
        ErrorKind::Connect
    };
    Error::new(kind, format!("connect to {addr} for {origin} failed: {e}"))
}

/// The deadline of a connect: the request's, shortened by the connect timeout.
pub fn connect_deadline(options: &SocketOptions, deadline: Option<Instant>) -> Option<Instant> {
    let own = options
        .connect_timeout
        .and_then(|t| Instant::now().checked_add(t));
    earliest(own, deadline)
}

/// Connects to the first of `addrs` that answers and, for https, completes the TLS handshake
/// with `tls`. `track` is shown each socket before it connects (the pool keeps it so that
/// freeing the manager can abort the connect); it returns false when the pool is closed.
pub fn connect(
    origin: &Origin,
    addrs: &[SocketAddr],
    tls: Option<Arc<ClientConfig>>,
    deadline: Option<Instant>,
    generation: u64,
    track: &mut (dyn FnMut(&Arc<TcpStream>) -> bool + Send),
) -> Result<Connection> {
    connect_with(
        origin,
        addrs,
        tls,
        &SocketOptions::default(),
        deadline,
        generation,
        track,
    )
}

/// `connect` with socket options; the connect timeout, if any, shortens the deadline of the
/// connect and handshake. Blocking (see `drive::connect` for both styles).
pub fn connect_with(
    origin: &Origin,
    addrs: &[SocketAddr],
    tls: Option<Arc<ClientConfig>>,
    options: &SocketOptions,
    deadline: Option<Instant>,
    generation: u64,
    track: &mut (dyn FnMut(&Arc<TcpStream>) -> bool + Send),
) -> Result<Connection> {
    crate::drive::Driver::Blocking.block(crate::drive::connect(
        &crate::drive::Driver::Blocking,
        origin,
        None,
        addrs,
        tls,
        options,
        deadline,
        generation,
        track,
    ))
}

impl Connection {
    fn new(stream: Arc<TcpStream>, peer: SocketAddr, generation: u64) -> Self {
        let now = Instant::now();
        let local_port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
        Connection {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            reactor: Reactor::default(),
            stream,
            buf: Vec::new(),
            start: 0,
            end: 0,
            created: now,
            last_used: now,
            requests: 0,
            hint: KeepAliveHint::default(),
            generation,
            fork_generation: fork::generation(),
            local_port,
            pipeline: None,
            peer,
            bytes_sent: 0,
            tls: None,
            resumed: false,
            handshake_read: false,
        }
    }

    /// Its pipeline, made on first use.
    pub fn line(&mut self) -> &mut crate::pipeline::Line {
        self.pipeline.get_or_insert_with(Box::default)
    }

    /// Its pipeline, if it ever had one.
    pub fn pipelined(&self) -> Option<&crate::pipeline::Line> {
        self.pipeline.as_deref()
    }

    /// What the reuse rules need to know about it.
    pub fn facts(&self) -> crate::reuse::ConnectionFacts {
        crate::reuse::ConnectionFacts {
            created: self.created,
            last_used: self.last_used,
            requests: self.requests,
            hint: self.hint,
        }
    }

    /// True for a TLS connection.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// True in a forked child for a connection of its parent: it must not be used, only
    /// dropped (which closes this process's descriptor and leaves the parent's intact).
    pub fn is_inherited(&self) -> bool {
        self.fork_generation != fork::generation()
    }

    /// The socket, for the pool's list of busy sockets.
    pub fn socket(&self) -> &Arc<TcpStream> {
        &self.stream
    }

    fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Bytes received but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` buffered bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// True when an idle connection can take a request: no EOF, no reset, no unexpected bytes
    /// from the server (checked without blocking).
    pub fn is_alive(&mut self) -> bool {
        if self.start != self.end || self.is_inherited() {
            return false;
        }
        if let Some(tls) = self.tls.as_deref_mut() {
            // Records read along with the last response: a close_notify, or stray data.
            if !tls.nothing_to_read() {
                return false;
            }
            if !tls.cipher.is_empty() {
                return tls.only_tls_records(&self.stream);
            }
        }
        let mut probe = [0u8; 1];
        match self.stream.peek(&mut probe) {
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            Ok(0) => false,
            // Bytes on a TLS connection may be records for TLS itself (a session ticket sent
            // after the last response): process them and look for application data or close.
            Ok(_) => match self.tls.as_deref_mut() {
                None => false,
                Some(tls) => tls.only_tls_records(&self.stream),
            },
        }
    }

    /// Sends `parts` in order, from `progress` bytes into them (updated as bytes go out), waiting
    /// for the socket as needed. With `watch_read`, stops early when the server answers or
    /// closes while the socket is full.
    pub fn send(
        &mut self,
        parts: &[&[u8]],
        progress: &mut usize,
        deadline: Option<Instant>,
        watch_read: bool,
    ) -> std::io::Result<Sent> {
        let fd = self.fd();
        if let Some(Tls { session: tls, .. }) = self.tls.as_deref_mut() {
            let mut skip = *progress;
            for part in parts {
                let mut rest = *part;
                let s = skip.min(rest.len());
                rest = &rest[s..];
                skip -= s;
                while !rest.is_empty() {
                    let n = tls.writer().write(rest)?;
                    rest = &rest[n..];
                    *progress += n;
                    if n == 0 || tls.wants_write() {
                        let mut w = NoSignalWriter::new(&self.stream, &mut self.bytes_sent);
                        if flush_tls(tls, &mut w, fd, deadline, watch_read)? == Ready::Readable {
                            return Ok(Sent::Interrupted);
                        }
                    }
                }
            }
            let mut w = NoSignalWriter::new(&self.stream, &mut self.bytes_sent);
            return Ok(match flush_tls(tls, &mut w, fd, deadline, watch_read)? {
                Ready::Wanted => Sent::All,
                Ready::Readable => Sent::Interrupted,
            });
        }
        // A request is a head and at most a body chunk or two: slices on the stack.
        const INLINE: usize = 4;
        let mut inline = [IoSlice::new(&[]); INLINE];
        let mut heap = Vec::new();
        let storage: &mut [IoSlice<'_>] = if parts.len() <= INLINE {
            &mut inline[..parts.len()]
        } else {
            heap.resize(parts.len(), IoSlice::new(&[]));
            &mut heap
        };
        let mut skip = *progress;
        let mut used = 0;
        for part in parts {
            let s = skip.min(part.len());
            skip -= s;
            if s < part.len() {
                storage[used] = IoSlice::new(&part[s..]);
                used += 1;
            }
        }
        let mut slices = &mut storage[..used];
        let mut writer = NoSignalWriter::new(&self.stream, &mut self.bytes_sent);
        while !slices.is_empty() {
            match writer.write_vectored(slices) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    *progress += n;
                    IoSlice::advance_slices(&mut slices, n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if wait(fd, libc::POLLOUT, deadline, watch_read)? == Ready::Readable {
                        return Ok(Sent::Interrupted);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Sent::All)
    }

    /// Sends all of `parts`, waiting for the socket as needed.
    pub fn write_all(&mut self, parts: &[&[u8]], deadline: Option<Instant>) -> std::io::Result<()> {
        let mut progress = 0;
        self.send(parts, &mut progress, deadline, false).map(|_| ())
    }

    fn make_room(&mut self, max_buffer: usize) -> std::io::Result<()> {
        if self.start > 0 && self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = (self.buf.len() * 2).clamp(INITIAL_BUFFER, max_buffer.max(INITIAL_BUFFER));
            if grown <= self.buf.len() {
                return Err(std::io::Error::other("buffer limit reached"));
            }
            self.buf.resize(grown, 0);
        }
        Ok(())
    }

    /// Reads more bytes into the buffer (growing it up to `max_buffer`); returns 0 at EOF.
    /// With `expect_wait`, polls first: right after a request is sent the answer is not there yet,
    /// and a speculative `recv` would only cost a syscall. Fails once `deadline` has passed,
    /// even when bytes keep arriving.
    pub fn fill(
        &mut self,
        max_buffer: usize,
        deadline: Option<Instant>,
        expect_wait: bool,
    ) -> std::io::Result<usize> {
        check_deadline(deadline)?;
        self.make_room(max_buffer)?;
        let fd = self.fd();
        if let Some(tls) = self.tls.as_deref_mut() {
            let out = &mut self.buf[self.end..];
            let n = read_tls_plaintext(tls, &self.stream, out, deadline, expect_wait)?;
            self.end += n;
            return Ok(n);
        }
        if expect_wait {
            wait_fd(fd, libc::POLLIN, deadline)?;
        }
        loop {
            match (&*self.stream).read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    wait_fd(fd, libc::POLLIN, deadline)?
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads what has arrived without waiting: `None` if nothing is there yet, `Some(0)` at EOF.
    pub fn fill_now(&mut self, max_buffer: usize) -> std::io::Result<Option<usize>> {
        self.make_room(max_buffer)?;
        if let Some(tls) = self.tls.as_deref_mut() {
            let n = read_tls_now(tls, &self.stream, &mut self.buf[self.end..])?;
            if let Some(n) = n {
                self.end += n;
            }
            return Ok(n);
        }
        loop {
            match (&*self.stream).read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads body bytes straight into `out` when nothing is buffered (no copy through the
    /// connection buffer); returns 0 at EOF.
    pub fn read_direct(
        &mut self,
        out: &mut [u8],
        deadline: Option<Instant>,
    ) -> std::io::Result<usize> {
        if self.start != self.end {
            let n = out.len().min(self.end - self.start);
            out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
            self.consume(n);
            return Ok(n);
        }
        check_deadline(deadline)?;
        let fd = self.fd();
        if let Some(tls) = self.tls.as_deref_mut() {
            return read_tls_plaintext(tls, &self.stream, out, deadline, false);
        }
        loop {
            match (&*self.stream).read(out) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    wait_fd(fd, libc::POLLIN, deadline)?
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Drops the read buffer's memory while the connection is idle and holds no bytes, so an
    /// idle connection costs little more than its socket.
    pub fn shrink_idle(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.cipher.release();
        }
        if self.start == self.end && self.buf.len() > INITIAL_BUFFER {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
        }
    }
}

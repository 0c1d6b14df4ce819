//! A scripted loopback server for fault injection. Each accepted connection runs the next
//! script the test queued (a closure over a [`Peer`]: the raw socket plus helpers to read a
//! request head, write bytes, pause, half-close, reset); once the scripts are used up, a
//! connection gets a well-behaved keep-alive server that answers `good <path>`.
//! [`ScriptServer::each`] runs one closure on every connection instead (a "raw" server: the
//! closure may also take the socket itself with [`Peer::take_stream`]).
//!
//! It records what it saw (connections accepted, every request head, body bytes received) so
//! tests can check the client's side effects. Loopback only; every wait is bounded (socket
//! timeouts, deadlines, a stop flag checked at least every 20 ms); Drop stops and joins every
//! thread.

use std::collections::VecDeque;
use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest a socket call blocks before the stop flag is checked again.
const TICK: Duration = Duration::from_millis(20);
/// Longest a script waits for a request head (or any read) before giving up.
pub const READ_WAIT: Duration = Duration::from_secs(5);
/// Longest the server holds anything open on its own.
pub const HOLD_MAX: Duration = Duration::from_secs(10);

/// What a connection does; runs on its own thread.
pub type Script = Box<dyn FnOnce(&mut Peer) + Send>;

/// What every connection does, for [`ScriptServer::each`].
pub type EachScript = Arc<dyn Fn(&mut Peer) + Send + Sync>;

/// Wraps a closure as a [`Script`].
pub fn script(f: impl FnOnce(&mut Peer) + Send + 'static) -> Script {
    Box::new(f)
}

/// The body the well-behaved server sends for `path`.
pub fn good_body(path: &str) -> Vec<u8> {
    format!("good {path}").into_bytes()
}

/// One request head the server received.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    /// Index of the connection (accept order, from 0).
    pub conn: usize,
    pub method: String,
    pub path: String,
    /// The head as received, CRLFs included.
    pub head: String,
}

impl SeenRequest {
    /// First value of a header, case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

#[derive(Default)]
struct Observed {
    connections: usize,
    requests: Vec<SeenRequest>,
    /// Bytes received after the heads, per connection.
    body_bytes: Vec<usize>,
    /// Connections whose script has finished (socket closed).
    finished: usize,
}

struct Shared {
    stop: AtomicBool,
    observed: Mutex<Observed>,
    scripts: Mutex<VecDeque<Script>>,
    /// What a connection runs once `scripts` is empty; None: the well-behaved server.
    fallback: Option<EachScript>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct ScriptServer {
    pub port: u16,
    shared: Arc<Shared>,
    /// Dropped after `Drop::drop` has set the stop flag: joins every thread.
    _acceptor: super::acceptor::Acceptor,
}

impl ScriptServer {
    /// Starts a server whose first connections run `scripts` in order; later connections get
    /// the well-behaved server.
    pub fn start(scripts: Vec<Script>) -> Self {
        Self::start_with(scripts, None)
    }

    /// Starts a server that runs `each` on every connection it accepts (each on its own
    /// thread; [`Peer::index`] says which connection it is).
    pub fn each(each: impl Fn(&mut Peer) + Send + Sync + 'static) -> Self {
        Self::start_with(Vec::new(), Some(Arc::new(each)))
    }

    fn start_with(scripts: Vec<Script>, fallback: Option<EachScript>) -> Self {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            observed: Mutex::new(Observed::default()),
            scripts: Mutex::new(scripts.into()),
            fallback,
        });
        let acceptor = {
            let shared = shared.clone();
            super::acceptor::Acceptor::start(move |stream, _| {
                let index = {
                    let mut o = shared.lock();
                    o.connections += 1;
                    o.body_bytes.push(0);
                    o.connections - 1
                };
                let next = shared
                    .scripts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop_front();
                let shared = shared.clone();
                Box::new(move |_| {
                    let mut peer = Peer::new(stream, index, shared.clone());
                    match (next, shared.fallback.clone()) {
                        (Some(s), _) => s(&mut peer),
                        (None, Some(each)) => each(&mut peer),
                        (None, None) => peer.serve_good(),
                    }
                    drop(peer);
                    shared.lock().finished += 1;
                })
            })
        };
        ScriptServer {
            port: acceptor.port,
            shared,
            _acceptor: acceptor,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }

    /// Request heads received so far, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared.lock().requests.clone()
    }

    /// Paths of the requests received on connection `conn`.
    pub fn paths_on(&self, conn: usize) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.conn == conn)
            .map(|r| r.path)
            .collect()
    }

    /// Body bytes received on connection `conn` (after the heads).
    pub fn body_bytes(&self, conn: usize) -> usize {
        self.shared
            .lock()
            .body_bytes
            .get(conn)
            .copied()
            .unwrap_or(0)
    }

    /// Connections whose script has ended.
    pub fn finished(&self) -> usize {
        self.shared.lock().finished
    }

    /// Waits (bounded) until `cond` holds.
    pub fn wait_until(&self, limit: Duration, cond: impl Fn(&ScriptServer) -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if cond(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        cond(self)
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        // The scripts watch this flag; the acceptor then stops and joins them.
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// The server end of one connection, as a script sees it.
pub struct Peer {
    stream: Option<TcpStream>,
    /// Received and not yet consumed.
    buf: Vec<u8>,
    pub index: usize,
    shared: Arc<Shared>,
}

impl Peer {
    fn new(stream: TcpStream, index: usize, shared: Arc<Shared>) -> Self {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(TICK));
        let _ = stream.set_write_timeout(Some(TICK));
        Peer {
            stream: Some(stream),
            buf: Vec::new(),
            index,
            shared,
        }
    }

    /// True once the server is being dropped: scripts should end.
    pub fn stopping(&self) -> bool {
        self.shared.stopping()
    }

    /// Reads once into the buffer, waiting at most one tick. Some(0) is EOF, None a timeout,
    /// Err a reset or closed socket.
    fn read_tick(&mut self) -> Result<Option<usize>, ()> {
        let Some(s) = self.stream.as_mut() else {
            return Err(());
        };
        let mut chunk = [0u8; 64 * 1024];
        match s.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(Some(n))
            }
            Err(e) if matches!(e.kind(), IoKind::WouldBlock | IoKind::TimedOut) => Ok(None),
            Err(e) if e.kind() == IoKind::Interrupted => Ok(None),
            Err(_) => Err(()),
        }
    }

    /// Reads one request head (bounded by [`READ_WAIT`]) and records it.
    pub fn read_head(&mut self) -> Option<SeenRequest> {
        let deadline = Instant::now() + READ_WAIT;
        let end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            if self.stopping() || Instant::now() >= deadline || self.buf.len() > 1 << 20 {
                return None;
            }
            match self.read_tick() {
                Ok(Some(0)) | Err(()) => return None,
                _ => {}
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let mut first = head.split("\r\n").next().unwrap_or("").split(' ');
        let seen = SeenRequest {
            conn: self.index,
            method: first.next().unwrap_or("").to_string(),
            path: first.next().unwrap_or("").to_string(),
            head,
        };
        self.shared.lock().requests.push(seen.clone());
        Some(seen)
    }

    /// Takes up to `n` body bytes (buffered first, then from the socket), waiting at most
    /// `wait` in all; returns how many were taken. Records them.
    pub fn read_body_bytes(&mut self, n: usize, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        while self.buf.len() < n && Instant::now() < deadline && !self.stopping() {
            match self.read_tick() {
                Ok(Some(0)) | Err(()) => break,
                _ => {}
            }
        }
        let took = n.min(self.buf.len());
        self.buf.drain(..took);
        self.shared.lock().body_bytes[self.index] += took;
        took
    }

    /// Reads the body the head announces (Content-Length or chunked). False if it did not
    /// arrive in full.
    pub fn read_body(&mut self, req: &SeenRequest) -> bool {
        if let Some(len) = req.header("content-length") {
            let len: usize = len.parse().unwrap_or(0);
            return self.read_body_bytes(len, READ_WAIT) == len;
        }
        if !req
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            return true;
        }
        let deadline = Instant::now() + READ_WAIT;
        loop {
            // Chunk size line.
            let line = loop {
                if let Some(p) = find(&self.buf, b"\r\n") {
                    let line = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                    self.buf.drain(..p + 2);
                    break line;
                }
                if self.stopping() || Instant::now() >= deadline {
                    return false;
                }
                if matches!(self.read_tick(), Ok(Some(0)) | Err(())) {
                    return false;
                }
            };
            let Ok(size) = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            else {
                return false;
            };
            if size == 0 {
                // No trailers are sent by the client: expect the final CRLF.
                return self.read_body_bytes(2, READ_WAIT) == 2;
            }
            if self.read_body_bytes(size + 2, READ_WAIT) != size + 2 {
                return false;
            }
        }
    }

    /// Reads one whole request (head and body).
    pub fn read_request(&mut self) -> Option<SeenRequest> {
        let req = self.read_head()?;
        self.read_body(&req).then_some(req)
    }

    /// Writes all of `bytes` (bounded by [`HOLD_MAX`]); false if the socket failed.
    pub fn write(&mut self, bytes: &[u8]) -> bool {
        let deadline = Instant::now() + HOLD_MAX;
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.stopping() || Instant::now() >= deadline {
                return false;
            }
            let Some(s) = self.stream.as_mut() else {
                return false;
            };
            match s.write(rest) {
                Ok(0) => return false,
                Ok(n) => rest = &rest[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        IoKind::WouldBlock | IoKind::TimedOut | IoKind::Interrupted
                    ) => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Writes `unit` over and over, never splitting the stream mid-unit on a retry, until the
    /// client stops reading for good, the socket fails, `limit` passes or the server stops.
    /// Returns how many whole units were written.
    pub fn flood(&mut self, unit: &[u8], limit: Duration) -> usize {
        let deadline = Instant::now() + limit.min(HOLD_MAX);
        let batch: Vec<u8> = unit.repeat((4096 / unit.len()).max(1));
        let mut off = 0usize;
        let mut written = 0usize;
        while !self.stopping() && Instant::now() < deadline {
            let Some(s) = self.stream.as_mut() else {
                break;
            };
            match s.write(&batch[off..]) {
                Ok(0) => break,
                Ok(n) => {
                    written += n;
                    off = (off + n) % batch.len();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        IoKind::WouldBlock | IoKind::TimedOut | IoKind::Interrupted
                    ) => {}
                Err(_) => break,
            }
        }
        written / unit.len()
    }

    /// Writes `bytes` one at a time, `gap` apart, until done, the socket fails or the server
    /// stops. Returns the bytes written.
    pub fn trickle(&mut self, bytes: &[u8], gap: Duration) -> usize {
        for (i, b) in bytes.iter().enumerate() {
            if !self.write(std::slice::from_ref(b)) {
                return i;
            }
            self.pause(gap);
        }
        bytes.len()
    }

    /// Sleeps `d` (capped at [`HOLD_MAX`]), in ticks, ending early when the server stops.
    pub fn pause(&self, d: Duration) {
        let end = Instant::now() + d.min(HOLD_MAX);
        while !self.stopping() {
            let now = Instant::now();
            if now >= end {
                break;
            }
            std::thread::sleep((end - now).min(TICK));
        }
    }

    /// Half-closes: sends FIN, keeps reading possible.
    pub fn fin(&mut self) {
        if let Some(s) = self.stream.as_ref() {
            let _ = s.shutdown(Shutdown::Write);
        }
    }

    /// Closes with RST (SO_LINGER 0, then close). Later calls on the peer do nothing.
    pub fn rst(&mut self) {
        if let Some(s) = self.stream.take() {
            set_linger_zero(&s);
            drop(s);
        }
    }

    /// Closes normally (FIN, or RST if the client's bytes are still unread in the kernel).
    pub fn close(&mut self) {
        self.stream.take();
    }

    /// Takes the socket for a script that talks on it directly (TLS, say); the peer's
    /// helpers then do nothing. Bytes the peer had already read and not consumed are lost (none
    /// before the first read). The socket blocks again, each read at most [`READ_WAIT`] and
    /// each write at most [`HOLD_MAX`]; a script using it should still end on its own.
    pub fn take_stream(&mut self) -> Option<TcpStream> {
        let s = self.stream.take()?;
        let _ = s.set_read_timeout(Some(READ_WAIT));
        let _ = s.set_write_timeout(Some(HOLD_MAX));
        Some(s)
    }

    /// Keeps the socket open without reading, for at most `limit`.
    pub fn hold_unread(&self, limit: Duration) {
        self.pause(limit);
    }

    /// Reads and discards until the client closes (true) or `limit` passes (false).
    pub fn wait_eof(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit.min(HOLD_MAX);
        while Instant::now() < deadline && !self.stopping() {
            match self.read_tick() {
                Ok(Some(0)) | Err(()) => return true,
                _ => self.buf.clear(),
            }
        }
        false
    }

    /// Answers one request the well-behaved way: 200, Content-Length, `good <path>`.
    pub fn answer_good(&mut self, req: &SeenRequest) -> bool {
        self.answer(req, &good_body(&req.path))
    }

    /// Answers one request with 200 and `body` (with Content-Length; no body to a HEAD).
    pub fn answer(&mut self, req: &SeenRequest, body: &[u8]) -> bool {
        let mut out =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        if req.method != "HEAD" {
            out.extend_from_slice(body);
        }
        self.write(&out)
    }

    /// Serves requests the well-behaved way until the client closes, a wait runs out or the
    /// server stops.
    pub fn serve_good(&mut self) {
        self.serve_with(|req| good_body(&req.path));
    }

    /// Serves requests the well-behaved way as [`Peer::serve_good`] does, with `body(request)`
    /// as each response's body.
    pub fn serve_with(&mut self, body: impl Fn(&SeenRequest) -> Vec<u8>) {
        while let Some(req) = self.read_request() {
            if !self.answer(&req, &body(&req)) {
                return;
            }
            if req
                .header("connection")
                .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
            {
                self.fin();
                self.wait_eof(Duration::from_secs(2));
                return;
            }
        }
    }
}

/// Makes closing `stream` send RST (SO_LINGER 0), for a script that took the socket.
pub fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a properly sized linger struct.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

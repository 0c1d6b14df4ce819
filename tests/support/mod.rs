//! Test fixture: an in-process HTTP/1.1 server on 127.0.0.1 that records what it observed
//! (every accepted connection, every request's head and body) and answers with scripted
//! replies, including broken ones. Every wait in it is bounded.
#![allow(dead_code)]

pub mod acceptor;
pub mod pipe;
pub mod pki;
pub mod proxy;
pub mod script;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a connection thread blocks in one read before checking for shutdown.
const POLL: Duration = Duration::from_millis(20);

#[derive(Clone, Debug)]
pub struct ConnRecord {
    pub peer_port: u16,
    pub opened: Instant,
    pub closed: Option<Instant>,
    pub requests: usize,
    /// Who closed it: true if the client closed first (EOF seen by the server).
    pub closed_by_client: bool,
    /// For TLS: whether the handshake resumed a session (set after the first request).
    pub tls_resumed: Option<bool>,
    /// For TLS: the ALPN protocol the client offered and the server chose.
    pub alpn: Option<Vec<u8>>,
    /// For TLS: the SNI name the client sent.
    pub sni: Option<String>,
    /// For TLS: whether the client presented a certificate.
    pub client_cert: bool,
    /// For TLS: the protocol version and cipher suite the server negotiated.
    pub tls_version: Option<rustls::ProtocolVersion>,
    pub tls_suite: Option<rustls::CipherSuite>,
}

#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// Index into the connection list.
    pub conn: usize,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// Age of the connection when the request arrived.
    pub conn_age: Duration,
}

impl RequestRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
    }
}

/// A scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Status, extra headers and a body sent with Content-Length.
    Length(u16, Vec<(String, String)>, Vec<u8>),
    /// A chunked body in the given pieces, then trailers.
    Chunked(Vec<Vec<u8>>, Vec<(String, String)>),
    /// A body delimited by closing the connection (no Content-Length).
    CloseDelimited(Vec<u8>),
    /// Bytes written as they are; the connection then stays open unless `close`.
    Raw(Vec<u8>, bool),
    /// Wait, then reply.
    Delay(Duration, Box<Reply>),
    /// Close without answering.
    Hangup,
    /// Reset the connection (RST) without answering.
    Reset,
}

impl Reply {
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply::Length(200, Vec::new(), body.into())
    }

    pub fn with_headers(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
        Reply::Length(
            status,
            headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body.into(),
        )
    }
}

pub type Handler = dyn Fn(&RequestRecord) -> Reply + Send + Sync;

#[derive(Default)]
struct Observed {
    conns: Vec<ConnRecord>,
    requests: Vec<RequestRecord>,
    open_now: usize,
    max_open: usize,
}

pub struct Options {
    /// The server closes a keep-alive connection idle this long.
    pub idle_close: Option<Duration>,
    /// Close idle connections with RST instead of FIN.
    pub idle_close_rst: bool,
    /// Serve HTTPS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            idle_close: Some(Duration::from_secs(30)),
            idle_close_rst: false,
            tls: None,
        }
    }
}

pub struct TestServer {
    pub port: u16,
    observed: Arc<Mutex<Observed>>,
    _acceptor: acceptor::Acceptor,
}

impl TestServer {
    pub fn start(handler: impl Fn(&RequestRecord) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(Options::default(), handler)
    }

    pub fn start_with(
        options: Options,
        handler: impl Fn(&RequestRecord) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let observed = Arc::new(Mutex::new(Observed::default()));
        let handler: Arc<Handler> = Arc::new(handler);
        let options = Arc::new(options);
        let acceptor = {
            let observed = observed.clone();
            acceptor::Acceptor::start(move |stream, peer| {
                let index = {
                    let mut o = observed.lock().unwrap();
                    o.conns.push(ConnRecord {
                        peer_port: peer.port(),
                        opened: Instant::now(),
                        closed: None,
                        requests: 0,
                        closed_by_client: false,
                        tls_resumed: None,
                        alpn: None,
                        sni: None,
                        client_cert: false,
                        tls_version: None,
                        tls_suite: None,
                    });
                    o.open_now += 1;
                    o.max_open = o.max_open.max(o.open_now);
                    o.conns.len() - 1
                };
                let (observed, handler, options) =
                    (observed.clone(), handler.clone(), options.clone());
                Box::new(move |stop| serve(stream, index, &observed, stop, &*handler, &options))
            })
        };
        TestServer {
            port: acceptor.port,
            observed,
            _acceptor: acceptor,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// An https URL naming the server as `localhost`, the name its test certificates carry.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.port, path)
    }

    pub fn connections(&self) -> Vec<ConnRecord> {
        self.observed.lock().unwrap().conns.clone()
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.observed.lock().unwrap().requests.clone()
    }

    pub fn connection_count(&self) -> usize {
        self.observed.lock().unwrap().conns.len()
    }

    pub fn max_simultaneous(&self) -> usize {
        self.observed.lock().unwrap().max_open
    }

    pub fn open_now(&self) -> usize {
        self.observed.lock().unwrap().open_now
    }

    /// Waits (bounded) until `cond` holds for the observations.
    pub fn wait_until(&self, limit: Duration, cond: impl Fn(&TestServer) -> bool) -> bool {
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

/// The server side of one connection: plain TCP or TLS over it.
enum Io {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(buf),
            Io::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.write(buf),
            Io::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Io::Plain(s) => s.flush(),
            Io::Tls(s) => s.flush(),
        }
    }
}

impl Io {
    fn raw(&self) -> &TcpStream {
        match self {
            Io::Plain(s) => s,
            Io::Tls(s) => &s.sock,
        }
    }
}

fn serve(
    raw: TcpStream,
    index: usize,
    observed: &Mutex<Observed>,
    stop: &AtomicBool,
    handler: &Handler,
    options: &Options,
) {
    raw.set_read_timeout(Some(POLL)).unwrap();
    raw.set_nodelay(true).unwrap();
    let mut stream = match &options.tls {
        None => Io::Plain(raw),
        Some(config) => {
            let conn = rustls::ServerConnection::new(Arc::clone(config)).unwrap();
            Io::Tls(Box::new(rustls::StreamOwned::new(conn, raw)))
        }
    };
    let mut tls_recorded = false;
    let opened = Instant::now();
    let mut buf: Vec<u8> = Vec::new();
    let mut closed_by_client = false;
    let mut idle_start = Instant::now();
    'conn: while !stop.load(Ordering::Relaxed) {
        // Read one request head.
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            if stop.load(Ordering::Relaxed) || buf.len() > 1 << 20 {
                break 'conn;
            }
            if buf.is_empty()
                && options
                    .idle_close
                    .is_some_and(|d| idle_start.elapsed() >= d)
            {
                if options.idle_close_rst {
                    set_linger_zero(stream.raw());
                }
                break 'conn;
            }
            let mut chunk = [0u8; 16 * 1024];
            match stream.read(&mut chunk) {
                Ok(0) => {
                    closed_by_client = true;
                    break 'conn;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    closed_by_client = true;
                    break 'conn;
                }
            }
        };
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut fields);
        if req.parse(&buf[..head_end]).is_err() {
            break;
        }
        let method = req.method.unwrap_or("").to_string();
        let path = req.path.unwrap_or("").to_string();
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        buf.drain(..head_end);
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let body = if let Some(len) = get("content-length") {
            let len: usize = len.trim().parse().unwrap_or(0);
            match read_exact_buffered(&mut stream, &mut buf, len, stop) {
                Some(b) => b,
                None => break,
            }
        } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            match read_chunked(&mut stream, &mut buf, stop) {
                Some(b) => b,
                None => break,
            }
        } else {
            Vec::new()
        };
        if let (Io::Tls(s), false) = (&stream, tls_recorded) {
            tls_recorded = true;
            let mut o = observed.lock().unwrap();
            let c = &mut o.conns[index];
            c.tls_resumed = Some(s.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed));
            c.alpn = s.conn.alpn_protocol().map(|p| p.to_vec());
            c.sni = s.conn.server_name().map(|n| n.to_string());
            c.client_cert = s.conn.peer_certificates().is_some_and(|c| !c.is_empty());
            c.tls_version = s.conn.protocol_version();
            c.tls_suite = s.conn.negotiated_cipher_suite().map(|c| c.suite());
        }
        let record = RequestRecord {
            conn: index,
            method,
            path,
            headers,
            body,
            at: Instant::now(),
            conn_age: opened.elapsed(),
        };
        {
            let mut o = observed.lock().unwrap();
            o.conns[index].requests += 1;
            o.requests.push(record.clone());
        }
        let reply = handler(&record);
        let keep = write_reply(&mut stream, reply, &record);
        if !keep || record.wants_close() {
            break;
        }
        idle_start = Instant::now();
    }
    let _ = stream.flush();
    let _ = stream.raw().shutdown(Shutdown::Write);
    let mut o = observed.lock().unwrap();
    o.conns[index].closed = Some(Instant::now());
    o.conns[index].closed_by_client = closed_by_client;
    o.open_now -= 1;
}

/// Writes a reply; returns whether the connection stays open.
fn write_reply(stream: &mut Io, reply: Reply, req: &RequestRecord) -> bool {
    let head_only = req.method == "HEAD";
    match reply {
        Reply::Length(status, headers, body) => {
            let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
            let mut close = false;
            for (n, v) in &headers {
                out.push_str(&format!("{n}: {v}\r\n"));
                close |= n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close");
            }
            if !(status == 204 || status == 304 || (100..200).contains(&status)) {
                out.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            out.push_str("\r\n");
            let mut bytes = out.into_bytes();
            if !head_only {
                bytes.extend_from_slice(&body);
            }
            stream.write_all(&bytes).is_ok() && !close
        }
        Reply::Chunked(pieces, trailers) => {
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for p in &pieces {
                out.extend_from_slice(format!("{:x};ext=1\r\n", p.len()).as_bytes());
                out.extend_from_slice(p);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n");
            for (n, v) in &trailers {
                out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            stream.write_all(&out).is_ok()
        }
        Reply::CloseDelimited(body) => {
            let mut out = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
            out.extend_from_slice(&body);
            let _ = stream.write_all(&out);
            false
        }
        Reply::Raw(bytes, close) => stream.write_all(&bytes).is_ok() && !close,
        Reply::Delay(d, inner) => {
            std::thread::sleep(d);
            write_reply(stream, *inner, req)
        }
        Reply::Hangup => false,
        Reply::Reset => {
            set_linger_zero(stream.raw());
            false
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        404 => "Not Found",
        _ => "Status",
    }
}

fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid socket fd and a properly sized linger struct.
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

fn fill(stream: &mut Io, buf: &mut Vec<u8>, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut chunk = [0u8; 64 * 1024];
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return true;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return false,
        }
    }
    false
}

fn read_exact_buffered(
    stream: &mut Io,
    buf: &mut Vec<u8>,
    len: usize,
    stop: &AtomicBool,
) -> Option<Vec<u8>> {
    while buf.len() < len {
        if !fill(stream, buf, stop) {
            return None;
        }
    }
    Some(buf.drain(..len).collect())
}

fn read_chunked(stream: &mut Io, buf: &mut Vec<u8>, stop: &AtomicBool) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = find(buf, b"\r\n") {
                break p;
            }
            if !fill(stream, buf, stop) {
                return None;
            }
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).to_string();
        buf.drain(..line_end + 2);
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailers until an empty line.
            loop {
                let end = loop {
                    if let Some(p) = find(buf, b"\r\n") {
                        break p;
                    }
                    if !fill(stream, buf, stop) {
                        return None;
                    }
                };
                buf.drain(..end + 2);
                if end == 0 {
                    return Some(body);
                }
            }
        }
        let data = read_exact_buffered(stream, buf, size + 2, stop)?;
        body.extend_from_slice(&data[..size]);
    }
}

/// A deterministic body of `n` bytes.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

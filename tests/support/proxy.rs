//! A recording HTTP proxy on 127.0.0.1 for the tests: forwards absolute-form requests
//! (Content-Length or chunked bodies both ways) and opens `CONNECT` tunnels, and records what
//! it saw: each client connection, each request line with its `Proxy-Authorization`, the
//! CONNECT targets. It can demand Basic credentials (407) and refuse tunnels. Every wait in it
//! is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(20);
/// How long a connection may sit without traffic before the proxy drops it.
const IDLE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Default)]
pub struct ProxyOptions {
    /// The `Proxy-Authorization` value it requires (407 otherwise).
    pub require: Option<String>,
    /// Answer every CONNECT with this status instead of opening the tunnel.
    pub refuse_connect: Option<u16>,
}

#[derive(Clone, Debug)]
pub struct Seen {
    /// Index of the client connection it came on.
    pub conn: usize,
    /// The request line, e.g. `GET http://127.0.0.1:1/a HTTP/1.1` or `CONNECT h:1 HTTP/1.1`.
    pub line: String,
    pub proxy_authorization: Option<String>,
    pub host: Option<String>,
}

#[derive(Default)]
struct Observed {
    connections: usize,
    open_now: usize,
    max_open: usize,
    seen: Vec<Seen>,
}

pub struct TestProxy {
    pub port: u16,
    observed: Arc<Mutex<Observed>>,
    _acceptor: super::acceptor::Acceptor,
}

impl TestProxy {
    pub fn start(options: ProxyOptions) -> TestProxy {
        let observed = Arc::new(Mutex::new(Observed::default()));
        let options = Arc::new(options);
        let acceptor = {
            let observed = observed.clone();
            super::acceptor::Acceptor::start(move |stream, _| {
                let index = {
                    let mut o = observed.lock().unwrap();
                    o.connections += 1;
                    o.open_now += 1;
                    o.max_open = o.max_open.max(o.open_now);
                    o.connections - 1
                };
                let (observed, options) = (observed.clone(), options.clone());
                Box::new(move |stop| {
                    let _ = serve(stream, index, &observed, stop, &options);
                    observed.lock().unwrap().open_now -= 1;
                })
            })
        };
        TestProxy {
            port: acceptor.port,
            observed,
            _acceptor: acceptor,
        }
    }

    /// `http://127.0.0.1:port`, with `user:password@` when given.
    pub fn url(&self, credentials: Option<&str>) -> String {
        match credentials {
            Some(c) => format!("http://{c}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.observed.lock().unwrap().seen.clone()
    }

    /// Client connections accepted so far.
    pub fn connections(&self) -> usize {
        self.observed.lock().unwrap().connections
    }

    pub fn max_simultaneous(&self) -> usize {
        self.observed.lock().unwrap().max_open
    }
}

/// Reads a head (up to the blank line) with the connection's read timeout as the poll
/// interval; `None` at EOF or when stopped or idle too long.
fn read_head(r: &mut BufReader<TcpStream>, stop: &AtomicBool) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let start = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) || start.elapsed() > IDLE {
            return None;
        }
        match r.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) if line.ends_with('\n') => {
                let l = line.trim_end().to_string();
                line.clear();
                if l.is_empty() {
                    if lines.is_empty() {
                        continue;
                    }
                    return Some(lines);
                }
                lines.push(l);
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return None,
        }
    }
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines[1..].iter().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Copies a body framed by `lines` (Content-Length or chunked) from `r` to `w`; false when
/// it is delimited by the connection's close (copied to the end).
fn copy_body<W: Write>(
    lines: &[String],
    r: &mut BufReader<TcpStream>,
    w: &mut W,
    no_body: bool,
) -> std::io::Result<bool> {
    if no_body {
        return Ok(true);
    }
    if header(lines, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let mut size = String::new();
            read_line_patiently(r, &mut size)?;
            w.write_all(size.as_bytes())?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if n == 0 {
                loop {
                    let mut t = String::new();
                    read_line_patiently(r, &mut t)?;
                    w.write_all(t.as_bytes())?;
                    if t.trim().is_empty() {
                        return Ok(true);
                    }
                }
            }
            copy_exact(r, w, n + 2)?;
        }
    }
    if let Some(n) = header(lines, "content-length") {
        let n: usize = n.parse().map_err(|_| std::io::Error::other("bad length"))?;
        copy_exact(r, w, n)?;
        return Ok(true);
    }
    if lines[0].starts_with("HTTP/") {
        let mut buf = [0u8; 16 * 1024];
        let start = Instant::now();
        while start.elapsed() < IDLE {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => w.write_all(&buf[..n])?,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        return Ok(false);
    }
    Ok(true)
}

fn read_line_patiently(r: &mut BufReader<TcpStream>, line: &mut String) -> std::io::Result<()> {
    let start = Instant::now();
    while start.elapsed() < IDLE {
        match r.read_line(line) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) if line.ends_with('\n') => return Ok(()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::ErrorKind::TimedOut.into())
}

fn copy_exact<W: Write>(
    r: &mut BufReader<TcpStream>,
    w: &mut W,
    mut n: usize,
) -> std::io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    let start = Instant::now();
    while n > 0 {
        if start.elapsed() > IDLE {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        match r.read(&mut buf[..n.min(16 * 1024)]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => {
                w.write_all(&buf[..k])?;
                n -= k;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn serve(
    client: TcpStream,
    index: usize,
    observed: &Mutex<Observed>,
    stop: &AtomicBool,
    options: &ProxyOptions,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(POLL))?;
    let mut out = client.try_clone()?;
    let mut r = BufReader::new(client.try_clone()?);
    // The upstream connection of this client connection, by authority.
    let mut upstream: Option<(String, TcpStream, BufReader<TcpStream>)> = None;
    while let Some(lines) = read_head(&mut r, stop) {
        let mut parts = lines[0].split(' ');
        let (method, target) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let auth = header(&lines, "proxy-authorization").map(str::to_string);
        observed.lock().unwrap().seen.push(Seen {
            conn: index,
            line: lines[0].clone(),
            proxy_authorization: auth.clone(),
            host: header(&lines, "host").map(str::to_string),
        });
        if options.require.is_some() && auth != options.require {
            // Drain the request body, then answer 407 (and keep the connection, as proxies do).
            copy_body(&lines, &mut r, &mut std::io::sink(), false)?;
            out.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 4\r\n\r\nauth")?;
            continue;
        }
        if method == "CONNECT" {
            if let Some(status) = options.refuse_connect {
                write!(
                    out,
                    "HTTP/1.1 {status} Refused By Test\r\nContent-Length: 7\r\n\r\nrefused"
                )?;
                continue;
            }
            let up = match TcpStream::connect(&target) {
                Ok(s) => s,
                Err(_) => {
                    out.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")?;
                    continue;
                }
            };
            out.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
            return tunnel(r, out, up, stop);
        }
        // Absolute form: http://authority/path
        let Some(rest) = target.strip_prefix("http://") else {
            out.write_all(b"HTTP/1.1 400 Absolute Form Expected\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if upstream.as_ref().is_none_or(|(a, _, _)| a != authority) {
            let s = TcpStream::connect(authority)?;
            s.set_read_timeout(Some(POLL))?;
            let reader = BufReader::new(s.try_clone()?);
            upstream = Some((authority.to_string(), s, reader));
        }
        let (_, up, up_reader) = upstream.as_mut().unwrap();
        let mut head = format!("{method} {path} {}\r\n", parts.next().unwrap_or("HTTP/1.1"));
        for l in &lines[1..] {
            let name = l
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if name != "proxy-authorization" && name != "proxy-connection" {
                head.push_str(l);
                head.push_str("\r\n");
            }
        }
        head.push_str("\r\n");
        up.write_all(head.as_bytes())?;
        copy_body(&lines, &mut r, up, false)?;
        let Some(answer) = read_head(up_reader, stop) else {
            return Ok(());
        };
        let mut head = answer.join("\r\n");
        head.push_str("\r\n\r\n");
        out.write_all(head.as_bytes())?;
        let status: u16 = answer[0]
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let no_body =
            method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
        if !copy_body(&answer, up_reader, &mut out, no_body)? {
            return Ok(());
        }
    }
    let _ = out.shutdown(Shutdown::Both);
    Ok(())
}

/// Relays bytes both ways until either side closes (or the proxy stops).
fn tunnel(
    client: BufReader<TcpStream>,
    mut client_out: TcpStream,
    upstream: TcpStream,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    upstream.set_read_timeout(Some(POLL))?;
    // Bytes the client sent after its CONNECT head (none expected before TLS starts).
    let early = client.buffer().to_vec();
    let mut client = client.into_inner();
    let mut up_out = upstream.try_clone()?;
    up_out.write_all(&early)?;
    let mut up_in = upstream.try_clone()?;
    let done = Arc::new(AtomicBool::new(false));
    let down = {
        let done = done.clone();
        std::thread::spawn(move || {
            pump(&mut up_in, &mut client_out, &done, &AtomicBool::new(false));
            done.store(true, Ordering::Relaxed);
            let _ = client_out.shutdown(Shutdown::Both);
        })
    };
    pump(&mut client, &mut up_out, &done, stop);
    done.store(true, Ordering::Relaxed);
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = down.join();
    Ok(())
}

fn pump(from: &mut TcpStream, to: &mut TcpStream, done: &AtomicBool, stop: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    let mut last = Instant::now();
    while !done.load(Ordering::Relaxed)
        && !stop.load(Ordering::Relaxed)
        && last.elapsed() < IDLE * 3
    {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
                last = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

//! Soak test: many GETs across threads and service points against a loopback HTTP/1.1 server
//! that closes and resets keep-alive connections at random (`bash bench/soak.sh`).
//!
//! `servicepoint-soak [--requests N] [--threads T] [--points P] [--seed S] [--cap-secs C]
//! [--markdown FILE]` starts the server as a child process (`servicepoint-soak server SEED P`,
//! the same binary) so that RSS and descriptor counts are the client's alone, then runs the
//! client. The server listens on P ephemeral loopback ports (P origins), answers every GET with
//! a body made from its own path (so each client verifies it got its own response), counts
//! open and busy connections per origin and checks them against the limit the client set, and
//! after a response randomly closes with FIN, resets (SO_LINGER 0), closes after a short delay
//! (racing the client's next request), or closes keep-alive connections idle longer than a
//! random 20-3000 ms. The client talks to it over stdin/stdout lines: `limit I N` (answered
//! `ok`), `report` (answered by lines ending with `end`), `quit`.
//!
//! Exit status 0 when every request succeeded, no limit was exceeded, RSS grew less than 10 %
//! from the first to the last 100,000-request mark, and descriptors other than connections
//! stayed the same.

use servicepoint::{Manager, Request, ServicePoint};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// splitmix64: small, seedable, good enough for choosing behaviours.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut r = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Inclusive range.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn per_mille(&mut self, p: u64) -> bool {
        self.below(1000) < p
    }
}

/// The body for a path: the path's bytes repeated to the length in its last segment.
fn body_for(path: &str) -> Option<Vec<u8>> {
    let len: usize = path.rsplit('/').next()?.parse().ok()?;
    Some(path.bytes().cycle().take(len).collect())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Server (child process)

#[derive(Default)]
struct OriginState {
    /// Connections the server considers open: id -> socket. A handler removes its entry
    /// before it closes the socket (so the descriptor is never reused while listed) and, when
    /// it is the one closing, before it writes its last response (so it never counts a
    /// connection the client may already have replaced).
    conns: HashMap<u64, i32>,
    busy: usize,
    limit: usize,
    /// After the client lowered the limit: the old limit, which still applies while more
    /// connections than the new limit remain open (the library lets existing connections
    /// finish rather than closing them).
    pending_old: Option<usize>,
    max_open: usize,
    max_busy: usize,
    violations_open: u64,
    transient_open: u64,
    violations_busy: u64,
    first_violation: Option<String>,
}

impl OriginState {
    fn allowed(&mut self) -> usize {
        if let Some(old) = self.pending_old {
            if self.conns.len() > self.limit {
                return old.max(self.limit);
            }
            self.pending_old = None;
        }
        self.limit
    }

    /// Drops connections whose client side is already closed (EOF or reset waiting to be
    /// read): their handler thread has not noticed yet, but the client no longer holds them.
    fn prune(&mut self) {
        self.conns.retain(|_, fd| !peer_gone(*fd));
    }
}

fn peer_gone(fd: i32) -> bool {
    let mut b = 0u8;
    // SAFETY: fd is a socket owned by a live handler (it unlists it before closing, under
    // the same lock held by our caller); the buffer is one valid byte.
    let r = unsafe {
        libc::recv(
            fd,
            &mut b as *mut u8 as *mut libc::c_void,
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if r == 0 {
        return true;
    }
    if r < 0 {
        let e = std::io::Error::last_os_error().raw_os_error();
        return !matches!(e, Some(libc::EAGAIN) | Some(libc::EINTR));
    }
    false
}

struct ServerOrigin {
    st: Mutex<OriginState>,
}

impl ServerOrigin {
    fn lock(&self) -> std::sync::MutexGuard<'_, OriginState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn forget(&self, id: u64) {
        self.lock().conns.remove(&id);
    }
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    requests: AtomicU64,
    chunked: AtomicU64,
    fin_after: AtomicU64,
    rst_after: AtomicU64,
    delayed_fin: AtomicU64,
    delayed_rst: AtomicU64,
    honest_close: AtomicU64,
    client_close: AtomicU64,
    idle_fin: AtomicU64,
    idle_rst: AtomicU64,
    slow: AtomicU64,
}

const COUNTER_NAMES: [&str; 12] = [
    "accepted",
    "requests",
    "chunked",
    "fin_after",
    "rst_after",
    "delayed_fin",
    "delayed_rst",
    "honest_close",
    "client_close",
    "idle_fin",
    "idle_rst",
    "slow",
];

impl Counters {
    fn all(&self) -> [u64; 12] {
        [
            &self.accepted,
            &self.requests,
            &self.chunked,
            &self.fin_after,
            &self.rst_after,
            &self.delayed_fin,
            &self.delayed_rst,
            &self.honest_close,
            &self.client_close,
            &self.idle_fin,
            &self.idle_rst,
            &self.slow,
        ]
        .map(|c| c.load(Relaxed))
    }
}

fn set_linger_zero(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid socket and a valid linger struct of the size passed.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

#[derive(Clone, Copy, PartialEq)]
enum After {
    Keep,
    ClientClose,
    Honest,
    Fin,
    Rst,
    Delayed,
}

/// The server's behaviour, per mille of responses: FIN, RST, delayed close, `Connection:
/// close`; and whether idle keep-alive connections are closed. Defaults 20, 20, 20, 10 and on;
/// the environment variables SOAK_FIN, SOAK_RST, SOAK_DELAYED, SOAK_HONEST and SOAK_IDLE_CLOSE
/// (0 or 1) change them, to find out which behaviour a failure needs.
#[derive(Clone, Copy)]
struct Behaviour {
    after: [u64; 4],
    idle_close: bool,
}

impl Behaviour {
    fn from_env() -> Self {
        let get = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Behaviour {
            after: [
                get("SOAK_FIN", 20),
                get("SOAK_RST", 20),
                get("SOAK_DELAYED", 20),
                get("SOAK_HONEST", 10),
            ],
            idle_close: get("SOAK_IDLE_CLOSE", 1) != 0,
        }
    }
}

fn serve_conn(
    o: Arc<ServerOrigin>,
    c: Arc<Counters>,
    mut s: TcpStream,
    id: u64,
    seed: u64,
    beh: Behaviour,
) {
    let mut rng = Rng::new(seed);
    let idle = Duration::from_millis(rng.range(20, 3000) as u64);
    let patient = Duration::from_secs(30);
    let _ = s.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut served = 0u64;
    let mut chunk = [0u8; 4096];
    loop {
        // Idle timeout only between requests of a kept-alive connection, as servers do.
        let _ = s.set_read_timeout(Some(if served > 0 && buf.is_empty() && beh.idle_close {
            idle
        } else {
            patient
        }));
        let end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break Some(p + 4);
            }
            match s.read(&mut chunk) {
                Ok(0) => break None,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    let _ = s.set_read_timeout(Some(patient));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) && buf.is_empty()
                        && served > 0
                        && beh.idle_close =>
                {
                    // Idle keep-alive connection: close it, half the time with a reset.
                    o.forget(id);
                    if rng.per_mille(500) {
                        set_linger_zero(&s);
                        c.idle_rst.fetch_add(1, Relaxed);
                    } else {
                        c.idle_fin.fetch_add(1, Relaxed);
                    }
                    return;
                }
                Err(_) => break None,
            }
        };
        let Some(end) = end else {
            o.forget(id);
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        served += 1;
        c.requests.fetch_add(1, Relaxed);
        let mut lines = head.split("\r\n");
        let path = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("/")
            .to_string();
        let client_close = lines.any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("connection:") && l.contains("close")
        });
        let after = if client_close {
            After::ClientClose
        } else {
            let r = rng.below(1000);
            let b = &beh.after;
            if r < b[0] {
                After::Fin
            } else if r < b[0] + b[1] {
                After::Rst
            } else if r < b[0] + b[1] + b[2] {
                After::Delayed
            } else if r < b[0] + b[1] + b[2] + b[3] {
                After::Honest
            } else {
                After::Keep
            }
        };
        // Busy from the parsed head until just before the response is written: the client
        // holds the connection for at least that long, so busy <= limit must hold exactly.
        {
            let mut st = o.lock();
            st.busy += 1;
            let allow = st.allowed();
            st.max_busy = st.max_busy.max(st.busy);
            if st.busy > allow {
                st.violations_busy += 1;
                if st.first_violation.is_none() {
                    st.first_violation = Some(format!(
                        "busy {} > limit {} ({} open) at {}",
                        st.busy,
                        allow,
                        st.conns.len(),
                        path
                    ));
                }
            }
        }
        if rng.per_mille(100) {
            c.slow.fetch_add(1, Relaxed);
            std::thread::sleep(Duration::from_micros(rng.below(2000)));
        }
        {
            let mut st = o.lock();
            st.busy -= 1;
            if after != After::Keep {
                st.conns.remove(&id);
            }
        }
        let body = body_for(&path).unwrap_or_else(|| b"bad path".to_vec());
        let close_header = matches!(after, After::ClientClose | After::Honest);
        let mut out = Vec::with_capacity(body.len() + 128);
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\nServer: soak\r\n");
        if close_header {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        if rng.per_mille(300) {
            c.chunked.fetch_add(1, Relaxed);
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            let mut rest = &body[..];
            while !rest.is_empty() {
                let n = (rng.range(1, 4096) as usize).min(rest.len());
                out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                out.extend_from_slice(&rest[..n]);
                out.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend_from_slice(&body);
        }
        if s.write_all(&out).is_err() {
            o.forget(id);
            return;
        }
        match after {
            After::Keep => continue,
            After::ClientClose => {
                c.client_close.fetch_add(1, Relaxed);
            }
            After::Honest => {
                c.honest_close.fetch_add(1, Relaxed);
            }
            After::Fin => {
                c.fin_after.fetch_add(1, Relaxed);
            }
            After::Rst => {
                c.rst_after.fetch_add(1, Relaxed);
                set_linger_zero(&s);
            }
            After::Delayed => {
                // Close a little later, when the client may already have sent its next
                // request on this connection (closing with unread data also resets).
                std::thread::sleep(Duration::from_micros(rng.below(3000)));
                if rng.per_mille(500) {
                    c.delayed_rst.fetch_add(1, Relaxed);
                    set_linger_zero(&s);
                } else {
                    c.delayed_fin.fetch_add(1, Relaxed);
                }
            }
        }
        return;
    }
}

fn server_main(seed: u64, points: usize) {
    let beh = Behaviour::from_env();
    let counters = Arc::new(Counters::default());
    let next_id = Arc::new(AtomicU64::new(1));
    let mut origins = Vec::new();
    let mut ports = Vec::new();
    for i in 0..points {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        ports.push(listener.local_addr().unwrap().port());
        let o = Arc::new(ServerOrigin {
            st: Mutex::new(OriginState {
                limit: 2,
                ..Default::default()
            }),
        });
        origins.push(Arc::clone(&o));
        let c = Arc::clone(&counters);
        let next_id = Arc::clone(&next_id);
        std::thread::Builder::new()
            .name(format!("accept-{i}"))
            .stack_size(128 * 1024)
            .spawn(move || {
                for s in listener.incoming() {
                    let Ok(s) = s else { continue };
                    let id = next_id.fetch_add(1, Relaxed);
                    c.accepted.fetch_add(1, Relaxed);
                    let over = {
                        let mut st = o.lock();
                        st.conns.insert(id, s.as_raw_fd());
                        if st.conns.len() > st.allowed() {
                            st.prune();
                        }
                        let allow = st.allowed();
                        let open = st.conns.len();
                        st.max_open = st.max_open.max(open);
                        (open > allow).then(|| (allow, open, st.busy, st.conns.keys().copied().collect::<Vec<_>>()))
                    };
                    if let Some((allow, open, busy, ids)) = over {
                        // Over the limit. Look again 2 ms later: if one of the others has by
                        // then shown its EOF, the client had already closed it and only the
                        // FIN was still on its way (loopback delivery can lag under load):
                        // a transient overlap, counted apart from a real excess.
                        std::thread::sleep(Duration::from_millis(2));
                        let mut st = o.lock();
                        st.prune();
                        let still = ids.iter().filter(|i| st.conns.contains_key(i)).count();
                        let what = if still > allow {
                            st.violations_open += 1;
                            "open"
                        } else {
                            st.transient_open += 1;
                            "transient (a connection the client had closed, FIN not yet seen)"
                        };
                        if st.first_violation.is_none() || what == "open" && st.violations_open == 1 {
                            st.first_violation = Some(format!(
                                "{what}: {open} > limit {allow} (busy {busy}) at accept, {still} of them still open 2 ms later"
                            ));
                        }
                    }
                    let (o, c) = (Arc::clone(&o), Arc::clone(&c));
                    let spawned = std::thread::Builder::new()
                        .stack_size(128 * 1024)
                        .spawn(move || {
                            serve_conn(o, c, s, id, seed.wrapping_mul(31).wrapping_add(id), beh)
                        });
                    if spawned.is_err() {
                        eprintln!("server: cannot spawn a connection thread");
                    }
                }
            })
            .expect("spawn accept thread");
    }
    let stdout = std::io::stdout();
    {
        let mut out = stdout.lock();
        let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
        writeln!(out, "ports {}", list.join(" ")).unwrap();
        out.flush().unwrap();
    }
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut out = stdout.lock();
        match words.as_slice() {
            ["limit", i, n] => {
                let (i, n): (usize, usize) = (i.parse().unwrap(), n.parse().unwrap());
                let mut st = origins[i].lock();
                let old = st.allowed();
                if n < old {
                    st.pending_old = Some(st.pending_old.unwrap_or(0).max(old));
                } else {
                    st.pending_old = None;
                }
                st.limit = n;
                writeln!(out, "ok").unwrap();
            }
            ["report"] => {
                for (i, o) in origins.iter().enumerate() {
                    let st = o.lock();
                    writeln!(
                        out,
                        "origin {i} {} {} {} {} {} {} {}",
                        st.limit,
                        st.max_open,
                        st.max_busy,
                        st.violations_open,
                        st.violations_busy,
                        st.transient_open,
                        st.first_violation.as_deref().unwrap_or("-")
                    )
                    .unwrap();
                }
                let all = counters.all();
                let parts: Vec<String> = COUNTER_NAMES
                    .iter()
                    .zip(all)
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect();
                writeln!(out, "counters {}", parts.join(" ")).unwrap();
                writeln!(out, "end").unwrap();
            }
            ["quit"] => break,
            _ => writeln!(out, "error unknown command").unwrap(),
        }
        out.flush().unwrap();
    }
    std::process::exit(0);
}

// ---------------------------------------------------------------------------------------------
// Client

struct Control {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Control {
    fn send(&mut self, line: &str) -> Vec<String> {
        writeln!(self.stdin, "{line}").expect("server control write");
        self.stdin.flush().unwrap();
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            if self.stdout.read_line(&mut l).unwrap_or(0) == 0 {
                panic!("server exited");
            }
            let l = l.trim_end().to_string();
            let done = l == "ok" || l == "end" || l.starts_with("error");
            lines.push(l);
            if done {
                return lines;
            }
        }
    }
}

struct Failure {
    n: u64,
    origin: usize,
    what: String,
    secs: f64,
}

struct Mark {
    requests: u64,
    secs: f64,
    rss_kib: u64,
    fds: u64,
    open_conns: u64,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn fd_count() -> u64 {
    // Minus the descriptor read_dir itself holds.
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64 - 1)
        .unwrap_or(0)
}

fn lease_choice(rng: &mut Rng) -> i32 {
    match rng.below(10) {
        0..4 => -1,
        4..6 => 0,
        _ => rng.range(50, 2000) as i32,
    }
}

struct Opts {
    requests: u64,
    threads: usize,
    points: usize,
    seed: u64,
    cap_secs: u64,
    markdown: Option<String>,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        requests: 1_000_000,
        threads: 8,
        points: 50,
        seed: 1,
        cap_secs: 900,
        markdown: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--requests" => o.requests = v.parse().expect("--requests N"),
            "--threads" => o.threads = v.parse().expect("--threads N"),
            "--points" => o.points = v.parse().expect("--points N"),
            "--seed" => o.seed = v.parse().expect("--seed N"),
            "--cap-secs" => o.cap_secs = v.parse().expect("--cap-secs N"),
            "--markdown" => o.markdown = Some(v),
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("repro-double-stale") {
        std::process::exit(repro_double_stale(args.get(2).map_or(2, |v| v.parse().unwrap())));
    }
    if args.get(1).map(String::as_str) == Some("server") {
        server_main(args[2].parse().unwrap(), args[3].parse().unwrap());
        return;
    }
    let opts = parse_opts();
    std::process::exit(client_main(opts));
}

fn client_main(opts: Opts) -> i32 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["server", &opts.seed.to_string(), &opts.points.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let mut ctl = Control {
        stdin: child.stdin.take().unwrap(),
        stdout: BufReader::new(child.stdout.take().unwrap()),
    };
    let mut first = String::new();
    ctl.stdout.read_line(&mut first).unwrap();
    let ports: Vec<u16> = first
        .split_whitespace()
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(ports.len(), opts.points);

    let manager = Arc::new(Manager::new());
    let mut rng = Rng::new(opts.seed);
    let mut points: Vec<Arc<ServicePoint>> = Vec::new();
    let mut initial = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let p = manager
            .find(&format!("http://127.0.0.1:{port}/"))
            .expect("find");
        let limit = rng.range(1, 4) as i32;
        let lease = lease_choice(&mut rng);
        let idle = rng.range(10, 2000) as i32;
        ctl.send(&format!("limit {i} {limit}"));
        p.set_connection_limit(limit).unwrap();
        p.set_lease_timeout(lease).unwrap();
        p.set_max_idle_time(idle).unwrap();
        initial.push((limit, lease, idle));
        points.push(p);
    }
    let ctl = Arc::new(Mutex::new(ctl));
    let points = Arc::new(points);
    let ports = Arc::new(ports);

    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let failures: Arc<Mutex<Vec<Failure>>> = Arc::new(Mutex::new(Vec::new()));
    let marks: Arc<Mutex<Vec<Mark>>> = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let open_conns = {
        let points = Arc::clone(&points);
        move || {
            points
                .iter()
                .map(|p| p.current_connections() as u64)
                .sum::<u64>()
        }
    };

    let mut workers = Vec::new();
    for t in 0..opts.threads {
        let (manager, ports, next, done, stop, failures, marks) = (
            Arc::clone(&manager),
            Arc::clone(&ports),
            Arc::clone(&next),
            Arc::clone(&done),
            Arc::clone(&stop),
            Arc::clone(&failures),
            Arc::clone(&marks),
        );
        let open_conns = open_conns.clone();
        let (total, seed) = (opts.requests, opts.seed);
        workers.push(std::thread::spawn(move || {
            let mut rng = Rng::new(seed.wrapping_mul(1000).wrapping_add(t as u64 + 1));
            let mut body = Vec::new();
            while !stop.load(Relaxed) {
                let n = next.fetch_add(1, Relaxed);
                if n >= total {
                    break;
                }
                let origin = rng.below(ports.len() as u64) as usize;
                let extra = if rng.per_mille(50) {
                    rng.below(30_000)
                } else {
                    rng.below(1500)
                };
                let stem = format!("/t{t}/r{n}/");
                let len = stem.len() as u64 + 8 + extra;
                let path = format!("{stem}{len}");
                let url = format!("http://127.0.0.1:{}{path}", ports[origin]);
                let outcome = (|| -> Result<(), String> {
                    let mut req = Request::new("GET", &url).map_err(|e| format!("{e}"))?;
                    req.timeout = Some(Duration::from_secs(30));
                    req.read_timeout = Some(Duration::from_secs(30));
                    let mut resp = manager
                        .send(&req)
                        .map_err(|e| format!("send: {:?}: {} (sent={})", e.kind, e.message, e.may_have_reached_server))?;
                    let reused = resp.reused;
                    if resp.status() != 200 {
                        return Err(format!("status {}", resp.status()));
                    }
                    body.clear();
                    resp.read_to_end(&mut body).map_err(|e| {
                        format!("read body (reused={reused}): {:?}: {}", e.kind, e.message)
                    })?;
                    if Some(&body) != body_for(&path).as_ref() {
                        return Err(format!(
                            "body mismatch: {} bytes, starts {:?}",
                            body.len(),
                            String::from_utf8_lossy(&body[..body.len().min(40)])
                        ));
                    }
                    Ok(())
                })();
                if let Err(what) = outcome {
                    failures.lock().unwrap().push(Failure {
                        n,
                        origin,
                        what,
                        secs: start.elapsed().as_secs_f64(),
                    });
                }
                let d = done.fetch_add(1, Relaxed) + 1;
                if d % 100_000 == 0 {
                    let m = Mark {
                        requests: d,
                        secs: start.elapsed().as_secs_f64(),
                        rss_kib: rss_kib(),
                        fds: fd_count(),
                        open_conns: open_conns(),
                    };
                    eprintln!(
                        "{:>9} requests  {:>6.1} s  RSS {} KiB  fds {}  open connections {}",
                        m.requests, m.secs, m.rss_kib, m.fds, m.open_conns
                    );
                    marks.lock().unwrap().push(m);
                }
            }
        }));
    }

    // Change some settings while the run goes on: lease, max idle time or connection limit
    // of a random service point, every 250 ms. A raised limit is told to the server first, a
    // lowered one to the library first, so the server's check is never stricter than the
    // library's rule.
    let mutations = Arc::new(AtomicU64::new(0));
    let mutator = {
        let (points, ctl, stop, mutations) = (
            Arc::clone(&points),
            Arc::clone(&ctl),
            Arc::clone(&stop),
            Arc::clone(&mutations),
        );
        let seed = opts.seed;
        std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ 0xABCD);
            while !stop.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let i = rng.below(points.len() as u64) as usize;
                let p = &points[i];
                match rng.below(3) {
                    0 => p.set_lease_timeout(lease_choice(&mut rng)).unwrap(),
                    1 => p.set_max_idle_time(rng.range(10, 2000) as i32).unwrap(),
                    _ => {
                        let new = rng.range(1, 4) as i32;
                        let old = p.connection_limit() as i32;
                        if new > old {
                            ctl.lock().unwrap().send(&format!("limit {i} {new}"));
                            p.set_connection_limit(new).unwrap();
                        } else {
                            p.set_connection_limit(new).unwrap();
                            ctl.lock().unwrap().send(&format!("limit {i} {new}"));
                        }
                    }
                }
                mutations.fetch_add(1, Relaxed);
            }
        })
    };

    let cap = Duration::from_secs(opts.cap_secs);
    let mut capped = false;
    while workers.iter().any(|w| !w.is_finished()) {
        if start.elapsed() > cap && !capped {
            eprintln!("wall-clock cap of {} s reached: stopping", opts.cap_secs);
            capped = true;
            stop.store(true, Relaxed);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    mutator.join().unwrap();
    let completed = done.load(Relaxed);

    // Gather everything.
    let mut stats = BTreeMap::<&str, u64>::new();
    for p in points.iter() {
        let s = p.statistics();
        for (k, v) in [
            ("connections_opened", s.connections_opened),
            ("requests", s.requests),
            ("reuses", s.reuses),
            ("retries", s.retries),
            ("closed_lease", s.closed_lease),
            ("closed_idle", s.closed_idle),
            ("closed_keep_alive_off", s.closed_keep_alive_off),
            ("closed_server", s.closed_server),
            ("closed_stale", s.closed_stale),
            ("closed_error", s.closed_error),
            ("closed_max_requests", s.closed_max_requests),
            ("closed_abandoned", s.closed_abandoned),
        ] {
            *stats.entry(k).or_default() += v;
        }
    }
    let report = ctl.lock().unwrap().send("report");
    let _ = ctl.lock().unwrap().stdin.write_all(b"quit\n");
    let _ = child.wait();

    let mut origin_rows = Vec::new();
    let mut server_counters = Vec::new();
    let (mut viol_open, mut viol_busy, mut transient) = (0u64, 0u64, 0u64);
    let mut first_violations = Vec::new();
    for l in &report {
        let w: Vec<&str> = l.splitn(9, ' ').collect();
        if w[0] == "origin" {
            let f = |k: usize| w[k].parse::<u64>().unwrap();
            viol_open += f(5);
            viol_busy += f(6);
            transient += f(7);
            if w[8] != "-" {
                first_violations.push(format!("origin {}: {}", w[1], w[8]));
            }
            origin_rows.push((f(2), f(3), f(4)));
        } else if w[0] == "counters" {
            server_counters = l
                .split_whitespace()
                .skip(1)
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.parse::<u64>().unwrap())
                })
                .collect();
        }
    }
    let failures = failures.lock().unwrap();
    let marks = marks.lock().unwrap();
    let mut by_kind = BTreeMap::<String, u64>::new();
    for f in failures.iter() {
        let key: String = f.what.split(':').take(2).collect::<Vec<_>>().join(":");
        *by_kind.entry(key).or_default() += 1;
    }
    let rss_growth = match (marks.first(), marks.last()) {
        (Some(a), Some(b)) if a.rss_kib > 0 => {
            (b.rss_kib as f64 - a.rss_kib as f64) * 100.0 / a.rss_kib as f64
        }
        _ => f64::NAN,
    };
    let base_fds: Vec<i64> = marks
        .iter()
        .map(|m| m.fds as i64 - m.open_conns as i64)
        .collect();
    let fds_flat = base_fds.windows(2).all(|w| (w[1] - w[0]).abs() <= 2);
    let pass = completed == opts.requests
        && failures.is_empty()
        && viol_open == 0
        && viol_busy == 0
        && rss_growth < 10.0
        && fds_flat;

    // Text and Markdown summary.
    let mut md = String::new();
    let w = &mut md;
    use std::fmt::Write as _;
    let _ = writeln!(w, "## Soak (`bash bench/soak.sh`)\n");
    let _ = writeln!(
        w,
        "- Command: `servicepoint-soak --requests {} --threads {} --points {} --seed {}` (release build); machine: {} cores, shared with other work; loopback only.",
        opts.requests,
        opts.threads,
        opts.points,
        opts.seed,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let _ = writeln!(
        w,
        "- Client: {} threads, GET to a random one of {} service points (one loopback port each), body 0.03-30 KiB read fully and compared with the expected bytes (its own path repeated). Each point starts with a random connection limit (1-4), lease timeout (-1, 0 or 50-2000 ms) and max idle time (10-2000 ms); every 250 ms one of these changes on a random point ({} changes). Request timeout 30 s.",
        opts.threads, opts.points, mutations.load(Relaxed)
    );
    let _ = writeln!(
        w,
        "- Server (a child process, thread per connection): after a response it closes with FIN (2 %), resets with SO_LINGER 0 (2 %), closes 0-3 ms later with FIN or reset (2 %, racing the next request), or says `Connection: close` (1 %); it closes kept-alive connections idle for a random 20-3000 ms (FIN or reset); 10 % of requests take up to 2 ms; 30 % of bodies chunked. It counts open connections (at accept, excluding those the client already closed) and busy ones (request received, response not yet written) per origin against the limit the client set.\n"
    );
    let _ = writeln!(w, "| result | value | goal | |\n| --- | ---: | --- | --- |");
    let ok = |b: bool| if b { "met" } else { "**not met**" };
    let _ = writeln!(
        w,
        "| requests completed | {} of {} | all | {} |",
        completed,
        opts.requests,
        ok(completed == opts.requests)
    );
    let _ = writeln!(
        w,
        "| failed requests | {} | 0 | {} |",
        failures.len(),
        ok(failures.is_empty())
    );
    let _ = writeln!(
        w,
        "| connection limit exceeded (server count: open / busy) | {} / {} | 0 | {} |",
        viol_open,
        viol_busy,
        ok(viol_open == 0 && viol_busy == 0)
    );
    let _ = writeln!(
        w,
        "| client RSS growth, first to last 100,000-request mark | {:.1} % | < 10 % | {} |",
        rss_growth,
        ok(rss_growth < 10.0)
    );
    let _ = writeln!(
        w,
        "| descriptors other than connections, across marks | {} | flat | {} |",
        base_fds
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", ")
            .chars()
            .take(120)
            .collect::<String>(),
        ok(fds_flat)
    );
    let _ = writeln!(
        w,
        "| elapsed | {:.1} s ({:.0} req/s) | ≤ {} s cap | {} |\n",
        elapsed,
        completed as f64 / elapsed,
        opts.cap_secs,
        ok(!capped)
    );
    let _ = writeln!(
        w,
        "| requests | elapsed s | client RSS KiB | open fds | open connections | fds − connections |\n| ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for m in marks.iter() {
        let _ = writeln!(
            w,
            "| {} | {:.1} | {} | {} | {} | {} |",
            m.requests,
            m.secs,
            m.rss_kib,
            m.fds,
            m.open_conns,
            m.fds as i64 - m.open_conns as i64
        );
    }
    let _ = writeln!(w);
    let limited: Vec<String> = origin_rows
        .iter()
        .enumerate()
        .map(|(i, (limit, open, busy))| format!("{i}:{open}/{busy}/{limit}"))
        .collect();
    let at_limit = origin_rows
        .iter()
        .filter(|(limit, open, _)| open >= limit)
        .count();
    let _ = writeln!(
        w,
        "- Max simultaneous connections per origin as the server counted them (origin:open/busy/final limit): {}. {} of {} origins reached their final limit.",
        limited.join(" "),
        at_limit,
        origin_rows.len()
    );
    let _ = writeln!(
        w,
        "- Transient overlaps (one connection over the limit at accept, but one of the others showed the client's FIN within 2 ms, i.e. the client had closed it before connecting): {transient}."
    );
    if !first_violations.is_empty() {
        let _ = writeln!(w, "- First violation per origin: {}", first_violations.join("; "));
    }
    let sc: Vec<String> = server_counters
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(w, "- Server: {}.", sc.join(", "));
    let st: Vec<String> = stats.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(w, "- Library statistics (sum over points): {}.", st.join(", "));
    if !failures.is_empty() {
        let kinds: Vec<String> = by_kind.iter().map(|(k, v)| format!("{v} × {k}")).collect();
        let _ = writeln!(w, "- Failures by kind: {}.", kinds.join("; "));
        for f in failures.iter().take(10) {
            let _ = writeln!(
                w,
                "  - request {} (origin {}, {:.1} s): {}",
                f.n, f.origin, f.secs, f.what
            );
        }
    }
    let _ = writeln!(
        w,
        "- Initial settings (limit, lease ms, idle ms) of the first 10 points: {:?}.",
        &initial[..initial.len().min(10)]
    );
    let _ = writeln!(w, "- Verdict: {}.", if pass { "pass" } else { "FAIL" });
    print!("{md}");
    if let Some(path) = &opts.markdown {
        std::fs::write(path, &md).expect("write markdown");
    }
    if pass { 0 } else { 1 }
}

// ---------------------------------------------------------------------------------------------
// Deterministic reproduction of the failure the soak finds (see bench/RESULTS.md): a GET whose
// reused connection turns out stale is retried once, but the retry takes the next idle pooled
// connection rather than a new one; when that one is stale too, the GET fails.

/// `servicepoint-soak repro-double-stale [IDLE]`: a server that answers the first request on
/// each connection and closes the connection (without answering) when the next request
/// arrives, as a server whose keep-alive timeout fires just as a request comes in. The client
/// opens IDLE connections to one service point (limit IDLE), lets them go idle, then sends
/// one GET. Exit 0 if the GET succeeded.
fn repro_double_stale(idle_conns: usize) -> i32 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut served = 0;
                loop {
                    while find(&buf, b"\r\n\r\n").is_none() {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    if served == 1 {
                        eprintln!("  server: connection {:?}: second request received, closing without a response", s.peer_addr());
                        return;
                    }
                    buf.clear();
                    std::thread::sleep(Duration::from_millis(200));
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    served += 1;
                }
            });
        }
    });
    let manager = Arc::new(Manager::new());
    let url = format!("http://127.0.0.1:{port}/x");
    let point = manager.find(&url).unwrap();
    point.set_connection_limit(idle_conns as i32).unwrap();
    // Open `idle_conns` connections at once (the server holds each first response 200 ms).
    let openers: Vec<_> = (0..idle_conns)
        .map(|_| {
            let (manager, url) = (Arc::clone(&manager), url.clone());
            std::thread::spawn(move || {
                let mut resp = manager.send(&Request::new("GET", &url).unwrap()).unwrap();
                let mut body = Vec::new();
                resp.read_to_end(&mut body).unwrap();
            })
        })
        .collect();
    for o in openers {
        o.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    let s = point.statistics();
    eprintln!("client: {} connections open, {} idle; sending one GET", s.open, s.idle);
    let result = manager.send(&Request::new("GET", &url).unwrap()).and_then(|mut r| {
        let mut body = Vec::new();
        r.read_to_end(&mut body).map(|_| body)
    });
    let s = point.statistics();
    eprintln!(
        "client: retries {}, closed_stale {}, connections_opened {}",
        s.retries, s.closed_stale, s.connections_opened
    );
    match result {
        Ok(body) => {
            eprintln!("GET succeeded: {:?}", String::from_utf8_lossy(&body));
            0
        }
        Err(e) => {
            eprintln!(
                "GET failed: {:?}: {} (may_have_reached_server={})",
                e.kind, e.message, e.may_have_reached_server
            );
            1
        }
    }
}

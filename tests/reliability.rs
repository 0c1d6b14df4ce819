//! Regression tests for what a hostile server or a careless caller did to the library (issue
//! 9): each failed before its fix. Servers are in-process on loopback; every wait is bounded.

mod support;

use servicepoint::{Body, BodySource, ErrorKind, Manager, Request};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::{Reply, TestServer};

/// A loopback server that runs `script` on each accepted connection (one thread each) and
/// counts connections. Stops accepting on drop.
struct RawServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RawServer {
    fn start(script: impl Fn(usize, TcpStream) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(script);
        let thread = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false).unwrap();
                            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                            let n = accepted.fetch_add(1, Ordering::SeqCst);
                            let script = script.clone();
                            std::thread::spawn(move || script(n, s));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        RawServer {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads until the end of a request head; returns it.
fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    head
}

/// Reads a whole request with a Content-Length body (or none).
fn read_request(s: &mut TcpStream) -> Vec<u8> {
    let head = read_head(s);
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = s.read_exact(&mut body);
    head
}

fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

fn ok_then_serve(mut s: TcpStream, body: &str) {
    while !read_request(&mut s).is_empty() {
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn body_of(m: &Manager, req: &Request) -> servicepoint::Result<(u16, Vec<u8>)> {
    let mut resp = m.send(req)?;
    let mut out = Vec::new();
    resp.read_to_end(&mut out)?;
    Ok((resp.status(), out))
}

const BIG: usize = 8 << 20;

/// The server answers 413 after the head, half-closes, and resets with the body unread.
fn early_413(n: usize, mut s: TcpStream) {
    if n > 0 {
        return ok_then_serve(s, "next");
    }
    read_head(&mut s);
    let _ = s.write_all(
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 7\r\nConnection: close\r\n\r\ntoo big",
    );
    let _ = s.shutdown(Shutdown::Write);
    std::thread::sleep(Duration::from_millis(100));
    reset(s);
}

#[test]
fn an_early_final_response_is_delivered_and_the_connection_closed() {
    let server = RawServer::start(early_413);
    let m = Manager::new();
    let mut post = Request::new("POST", &server.url("/upload")).unwrap();
    post.body = Body::Bytes(vec![b'x'; BIG]);
    post.timeout = Some(Duration::from_secs(5));
    let (status, body) = body_of(&m, &post).expect("the 413 reaches the caller");
    assert_eq!((status, &body[..]), (413, &b"too big"[..]));
    let get = Request::new("GET", &server.url("/next")).unwrap();
    assert_eq!(body_of(&m, &get).unwrap().1, b"next");
    assert_eq!(
        server.accepted(),
        2,
        "the answered connection was not reused"
    );
}

struct Endless(usize);

impl BodySource for Endless {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        if self.0 == 0 {
            return Ok(0);
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(b'y');
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn an_early_final_response_to_a_streamed_body_is_delivered() {
    let server = RawServer::start(early_413);
    let m = Manager::new();
    let mut post = Request::new("POST", &server.url("/upload")).unwrap();
    post.body = Body::stream(Box::new(Endless(BIG)));
    post.timeout = Some(Duration::from_secs(5));
    let (status, body) = body_of(&m, &post).expect("the 413 reaches the caller");
    assert_eq!((status, &body[..]), (413, &b"too big"[..]));
}

#[test]
fn a_failure_after_the_head_was_written_says_the_request_may_have_arrived() {
    // The server reads the head, then resets: the body write fails.
    let server = RawServer::start(|_, mut s| {
        read_head(&mut s);
        reset(s);
    });
    let m = Manager::new();
    let mut post = Request::new("POST", &server.url("/pay")).unwrap();
    post.body = Body::Bytes(vec![b'x'; BIG]);
    post.timeout = Some(Duration::from_secs(5));
    let Err(err) = m.send(&post) else {
        panic!("the reset went unnoticed")
    };
    assert_eq!(err.kind, ErrorKind::ConnectionReset, "{err}");
    assert!(err.may_have_reached_server, "{err}");
    assert_eq!(server.accepted(), 1, "a POST is never resent");
}

#[test]
fn huge_keep_alive_timeouts_neither_panic_nor_wedge_the_pool() {
    for value in [
        "18446744073709551615",
        "9223372036854775807",
        "99999999999999999999999",
    ] {
        let header = format!("timeout={value}, max=1000");
        let server = TestServer::start(move |_| {
            Reply::with_headers(200, &[("Keep-Alive", header.as_str())], "ok")
        });
        let m = Manager::new();
        let point = m.find(&server.url("/")).unwrap();
        point.set_max_idle_time(-1).unwrap();
        for _ in 0..3 {
            let req = Request::new("GET", &server.url("/")).unwrap();
            assert_eq!(body_of(&m, &req).unwrap().1, b"ok", "{value}");
        }
        assert_eq!(server.connection_count(), 1, "{value}: reused");
        // With such a connection idle, changing the idle time wakes the reaper: it must keep
        // working (and close the connection once the idle time is short).
        point.set_max_idle_time(-1).unwrap();
        point.set_max_idle_time(50).unwrap();
        let closed = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            point.statistics().closed_idle == 1
        });
        assert!(closed, "{value}: the reaper still runs");
    }
}

#[test]
fn the_request_timeout_holds_whatever_the_server_streams() {
    // Endless 100 Continue heads, then a trickle of a final head one byte at a time.
    let continues = RawServer::start(|_, mut s| {
        read_head(&mut s);
        let end = Instant::now() + Duration::from_secs(4);
        while Instant::now() < end {
            if s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
                return;
            }
        }
    });
    let trickle = RawServer::start(|_, mut s| {
        read_head(&mut s);
        let end = Instant::now() + Duration::from_secs(4);
        let head = b"HTTP/1.1 200 OK\r\nX-Slow: "
            .iter()
            .chain(std::iter::repeat(&b'a'));
        for &b in head {
            if Instant::now() > end || s.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let m = Manager::new();
    for server in [&continues, &trickle] {
        let mut req = Request::new("GET", &server.url("/")).unwrap();
        req.timeout = Some(Duration::from_millis(500));
        let start = Instant::now();
        let Err(err) = m.send(&req) else {
            panic!("no timeout")
        };
        let took = start.elapsed();
        assert_eq!(err.kind, ErrorKind::ResponseTimeout, "{err}");
        assert!(took >= Duration::from_millis(490), "{took:?}");
        assert!(
            took < Duration::from_millis(650),
            "{took:?}: wall clock, not per read"
        );
    }
}

#[test]
fn freeing_the_manager_ends_waiting_and_in_flight_requests_promptly() {
    let server =
        TestServer::start(|_| Reply::Delay(Duration::from_secs(3), Box::new(Reply::ok("late"))));
    let m = Arc::new(Manager::new());
    m.find(&server.url("/"))
        .unwrap()
        .set_connection_limit(1)
        .unwrap();
    let threads: Vec<_> = (0..3)
        .map(|i| {
            let (m, url) = (m.clone(), server.url(&format!("/r{i}")));
            std::thread::spawn(move || {
                let r = m.send(&Request::new("GET", &url).unwrap());
                (r.map(|_| ()).map_err(|e| e.kind), Instant::now())
            })
        })
        .collect();
    assert!(server.wait_until(Duration::from_secs(2), |s| s.requests().len() == 1));
    std::thread::sleep(Duration::from_millis(100)); // two are queued now
    let freed = Instant::now();
    m.close();
    for t in threads {
        let (result, at) = t.join().unwrap();
        assert_eq!(result, Err(ErrorKind::ManagerClosed));
        assert!(at - freed < Duration::from_millis(100), "{:?}", at - freed);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.requests().len(), 1, "nothing sent after the free");
    assert_eq!(server.connection_count(), 1);
}

#[test]
fn closing_a_group_with_busy_connections_keeps_the_limit() {
    let server = TestServer::start(|r| Reply::ok(format!("body of {}", r.path)));
    let m = Arc::new(Manager::new());
    let point = m.find(&server.url("/")).unwrap();
    point.set_connection_limit(2).unwrap();
    let grouped = |path: &str| {
        let mut r = Request::new("GET", &server.url(path)).unwrap();
        r.group = "g".into();
        r.timeout = Some(Duration::from_secs(5));
        r
    };
    let held: Vec<_> = ["/a", "/b"]
        .iter()
        .map(|p| m.send(&grouped(p)).unwrap())
        .collect();
    assert!(point.close_connection_group("g"));
    let waiting: Vec<_> = ["/c", "/d"]
        .iter()
        .map(|p| {
            let (m, req) = (m.clone(), grouped(p));
            std::thread::spawn(move || body_of(&m, &req).map(|(_, b)| b))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.max_simultaneous(), 2, "{:?}", server.connections());
    assert_eq!(point.current_connections(), 2);
    drop(held);
    let bodies: Vec<_> = waiting
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    assert_eq!(bodies, [b"body of /c".to_vec(), b"body of /d".to_vec()]);
    assert_eq!(server.max_simultaneous(), 2);
    assert_eq!(
        server.connection_count(),
        4,
        "the closed group's connections were not reused"
    );
}

#[test]
fn a_retry_after_a_stale_connection_uses_a_new_connection() {
    // Each connection answers one request, then hangs up on the next: both idle connections
    // are stale, and the retry must not take the second one.
    let served: Arc<Mutex<std::collections::HashMap<usize, usize>>> = Arc::default();
    let server = {
        let served = served.clone();
        TestServer::start(move |r| {
            let mut s = served.lock().unwrap();
            let n = s.entry(r.conn).or_default();
            *n += 1;
            if *n > 1 {
                Reply::Hangup
            } else {
                Reply::Delay(Duration::from_millis(100), Box::new(Reply::ok("fresh")))
            }
        })
    };
    let m = Arc::new(Manager::new());
    let warm: Vec<_> = (0..2)
        .map(|_| {
            let (m, url) = (m.clone(), server.url("/warm"));
            std::thread::spawn(move || body_of(&m, &Request::new("GET", &url).unwrap()).unwrap())
        })
        .collect();
    for t in warm {
        t.join().unwrap();
    }
    assert_eq!(server.connection_count(), 2);
    let mut resp = m
        .send(&Request::new("GET", &server.url("/again")).unwrap())
        .unwrap();
    assert!(
        resp.retried && !resp.reused,
        "the response says it was retried"
    );
    let mut body = Vec::new();
    resp.read_to_end(&mut body).unwrap();
    assert_eq!(body, b"fresh");
    assert_eq!(
        server.connection_count(),
        3,
        "the retry opened a new connection"
    );
}

#[test]
fn lenient_framing_is_refused_or_not_reused() {
    let server = RawServer::start(|_, mut s| {
        let head = read_request(&mut s);
        let path = String::from_utf8_lossy(&head)
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string();
        let reply: &[u8] = match path.as_str() {
            "/plus" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
            "/http10te" => b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "/ka-sign" => b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=+5, max=-1\r\nContent-Length: 2\r\n\r\nok",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        let _ = s.write_all(reply);
        ok_then_serve(s, "ok");
    });
    let m = Manager::new();
    let get = |p: &str| body_of(&m, &Request::new("GET", &server.url(p)).unwrap());
    assert_eq!(get("/plus").unwrap_err().kind, ErrorKind::Protocol);
    assert_eq!(get("/http10te").unwrap().1, b"hello");
    let before = server.accepted();
    assert_eq!(get("/next").unwrap().1, b"ok");
    assert_eq!(
        server.accepted(),
        before + 1,
        "HTTP/1.0 with Transfer-Encoding is not reused"
    );
    assert_eq!(get("/ka-sign").unwrap().1, b"ok");
    assert_eq!(
        get("/after").unwrap().1,
        b"ok",
        "signed Keep-Alive values are ignored"
    );
}

#[test]
fn control_characters_in_header_values_are_refused() {
    let mut req = Request::new("GET", "http://127.0.0.1:9/").unwrap();
    for bad in [
        &b"a\x01b"[..],
        b"a\x7fb",
        b"a\rb",
        b"a\nb",
        b"a\0b",
        b"\x1b[31m",
    ] {
        let err = req.add_header("X-Test", bad).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument, "{bad:?}");
    }
    req.add_header("X-Tab", b"a\tb").unwrap();
    req.add_header("X-Utf8", "é".as_bytes()).unwrap();
}

/// Runs only in the child process of `tls_uploads_to_a_closing_server_raise_no_sigpipe`, with
/// SIGPIPE at its default action (the test harness ignores it, as every Rust program does).
#[test]
fn tls_sigpipe_child() {
    if std::env::var_os("RELIABILITY_SIGPIPE_CHILD").is_none() {
        return;
    }
    // SAFETY: restoring the default action of a signal, as a C host has it.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let ca = support::pki::Ca::new("sigpipe CA");
    let config = support::pki::server_config(&ca.leaf(&["localhost"], false), None);
    // TLS server: handshake, read the head, answer 413, FIN, then RST with the upload unread.
    let server = RawServer::start(move |_, s| {
        let conn = rustls::ServerConnection::new(config.clone()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, s);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
            match tls.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let _ = tls.write_all(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 7\r\nConnection: close\r\n\r\ntoo big",
        );
        let _ = tls.flush();
        let _ = tls.sock.shutdown(Shutdown::Write);
        std::thread::sleep(Duration::from_millis(50));
        reset(tls.sock);
    });
    let m = Manager::new();
    m.tls().add_ca_pem(ca.pem().as_bytes()).unwrap();
    let url = format!("https://localhost:{}/upload", server.port);
    for round in 0..3 {
        let mut post = Request::new("POST", &url).unwrap();
        post.body = Body::Bytes(vec![b'x'; BIG]);
        post.timeout = Some(Duration::from_secs(10));
        let outcome = body_of(&m, &post);
        println!(
            "tls_sigpipe_child: round {round}: {:?}",
            outcome.map(|(s, _)| s)
        );
    }
    println!("tls_sigpipe_child: survived");
}

#[test]
fn tls_uploads_to_a_closing_server_raise_no_sigpipe() {
    use std::os::unix::process::ExitStatusExt;
    if std::env::var_os("RELIABILITY_SIGPIPE_CHILD").is_some() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "tls_sigpipe_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RELIABILITY_SIGPIPE_CHILD", "1")
        .stderr(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_ne!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "SIGPIPE killed the host:\n{text}"
    );
    assert!(out.status.success(), "{:?}\n{text}", out.status);
    assert!(text.contains("tls_sigpipe_child: survived"), "{text}");
}

#[test]
fn a_failed_retry_still_says_the_first_attempt_may_have_arrived() {
    // One connection only: it answers the first request, reads the second and closes without
    // answering; the listener is gone by then, so the retry cannot connect.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        drop(listener);
        read_request(&mut s);
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
        read_request(&mut s);
    });
    let m = Manager::new();
    let get = Request::new("GET", &url).unwrap();
    assert_eq!(body_of(&m, &get).unwrap().1, b"ok");
    let Err(err) = m.send(&get) else {
        panic!("the retry had nowhere to go")
    };
    server.join().unwrap();
    assert_eq!(err.kind, ErrorKind::Connect, "{err}");
    assert!(
        err.may_have_reached_server,
        "the first attempt was sent: {err}"
    );
    assert_eq!(m.find(&url).unwrap().statistics().retries, 1);
}

//! Asynchronous requests at scale and cancellation of both styles, checked against what the
//! loopback server observed. (Every ServicePoint rule through the asynchronous path:
//! `connection_management_async.rs`.)

mod support;

use servicepoint::cancel::CancelToken;
use servicepoint::operation::{CompletionQueue, Deliver};
use servicepoint::{ErrorKind, Manager, Request};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use support::{Reply, TestServer};

/// The tests of this file run one at a time: the scale test measures the process's memory and
/// threads, which a test running beside it would disturb.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Threads of the library (its runtime's workers and blocking pool are named
/// `servicepoint-rt`); the test server's own threads are not counted.
fn library_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("servicepoint"))
        .count()
}

fn rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// 10,000 requests pending on one point with limit 100: no thread per request, every one
/// completes; canceling every other queued one frees its place, and the rest are served in
/// the order they were queued.
#[test]
fn ten_thousand_pending_requests_and_every_other_one_canceled() {
    let _serial = serial();
    const N: usize = 10_000;
    // The server holds every request until the test opens the gate, so that the first 100
    // stay in flight and the rest really queue.
    let open = Arc::new(AtomicBool::new(false));
    let gate = Arc::clone(&open);
    let server = TestServer::start(move |r| {
        let start = Instant::now();
        while !gate.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(1));
        }
        Reply::ok(r.path.clone())
    });
    let m = Manager::new();
    let point = m.find(&server.url("/")).unwrap();
    point.set_connection_limit(100).unwrap();
    // The test's own data first, so that the memory measured below is the library's.
    let requests: Vec<Arc<Request>> = (0..N)
        .map(|i| Arc::new(Request::new("GET", &server.url(&format!("/{i}"))).unwrap()))
        .collect();
    let done = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(Mutex::new(Vec::with_capacity(N)));
    let mut ops = Vec::with_capacity(N);
    let threads_before = library_threads();
    let rss_before = rss_kib();
    for (i, req) in requests.iter().enumerate() {
        let req = Arc::clone(req);
        let (done, order) = (Arc::clone(&done), Arc::clone(&order));
        let op = m
            .send_async(req, CancelToken::new(), Deliver::Runtime, move |r| {
                match r {
                    Ok(resp) => {
                        // Dropped on a runtime thread: a body that already arrived whole is
                        // drained without waiting, and the connection is reused.
                        drop(resp);
                        order.lock().unwrap().push((i, true));
                    }
                    Err(e) => order
                        .lock()
                        .unwrap()
                        .push((i, e.kind == ErrorKind::Canceled)),
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        ops.push(op);
    }
    let threads_pending = library_threads();
    let rss_pending = rss_kib();
    // Every request past the first 100 waits in the queue before any is canceled.
    let start = Instant::now();
    while (point.statistics().waiting as usize) < N - 100
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(point.statistics().waiting as usize, N - 100);
    // Cancel every other request still queued (the first 100 may already be in flight).
    for op in ops.iter().skip(200).step_by(2) {
        op.cancel();
    }
    open.store(true, Ordering::SeqCst);
    let start = Instant::now();
    while done.load(Ordering::SeqCst) < N && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(done.load(Ordering::SeqCst), N, "every completion fires");
    let order = order.lock().unwrap();
    assert!(
        order.iter().all(|&(_, ok)| ok),
        "each is a response or canceled"
    );
    // Every canceled one never reached the server; every other one did, once.
    let seen: std::collections::HashSet<String> =
        server.requests().into_iter().map(|r| r.path).collect();
    for i in (200..N).step_by(2) {
        assert!(!seen.contains(&format!("/{i}")), "canceled /{i} was sent");
    }
    for i in (201..N).step_by(2) {
        assert!(seen.contains(&format!("/{i}")), "/{i} never arrived");
    }
    assert!(server.max_simultaneous() <= 100);
    // No thread per request: the runtime's few threads at most.
    assert!(
        threads_pending <= threads_before + 8,
        "threads {threads_before} -> {threads_pending} with {N} pending"
    );
    let per_request = (rss_pending.saturating_sub(rss_before)) * 1024 / N;
    eprintln!("memory per pending asynchronous request: ~{per_request} bytes (RSS growth)");
    assert!(
        per_request < 4096,
        "{per_request} bytes per pending request"
    );
}

/// A blocking request queued behind a held connection, canceled from another thread, returns
/// `Canceled` within 50 ms (plus slack) and is never sent.
#[test]
fn a_cancel_token_ends_a_queued_blocking_request() {
    let _serial = serial();
    let server = TestServer::start(|_| Reply::ok("x"));
    let m = Arc::new(Manager::new());
    let url = server.url("/");
    m.find(&url).unwrap().set_connection_limit(1).unwrap();
    let held = m.send(&Request::new("GET", &url).unwrap()).unwrap();
    let token = CancelToken::new();
    let mut req = Request::new("GET", &server.url("/queued")).unwrap();
    req.cancel = Some(token.clone());
    let (tx, rx) = mpsc::channel();
    let m2 = Arc::clone(&m);
    let waiter = std::thread::spawn(move || {
        let r = m2.send(&req);
        tx.send(Instant::now()).unwrap();
        r.err().map(|e| e.kind)
    });
    std::thread::sleep(Duration::from_millis(100));
    let canceled_at = Instant::now();
    token.cancel();
    let returned_at = rx.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(waiter.join().unwrap(), Some(ErrorKind::Canceled));
    let took = returned_at.duration_since(canceled_at);
    assert!(took < Duration::from_millis(100), "took {took:?}");
    drop(held);
    assert!(server.requests().iter().all(|r| r.path != "/queued"));
}

/// A blocking body read waiting for a slow body ends with `Canceled` when the request's token
/// is canceled, and the connection is closed (the next request opens a new one).
#[test]
fn a_cancel_token_ends_a_blocking_body_read() {
    let _serial = serial();
    let server = TestServer::start(|r| {
        if r.path == "/slow-body" {
            Reply::Raw(
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec(),
                false,
            )
        } else {
            Reply::ok("x")
        }
    });
    let m = Manager::new();
    let token = CancelToken::new();
    let mut req = Request::new("GET", &server.url("/slow-body")).unwrap();
    req.cancel = Some(token.clone());
    let mut resp = m.send(&req).unwrap();
    let t = token.clone();
    let canceler = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        t.cancel();
    });
    let start = Instant::now();
    let mut out = Vec::new();
    let e = resp.read_to_end(&mut out).unwrap_err();
    canceler.join().unwrap();
    assert_eq!(e.kind, ErrorKind::Canceled);
    assert!(start.elapsed() < Duration::from_millis(100 + 150));
    drop(resp);
    let again = m
        .send(&Request::new("GET", &server.url("/")).unwrap())
        .unwrap();
    assert!(!again.reused, "the canceled read's connection was closed");
}

/// Operations on a completion queue run on the thread that drains it: nothing progresses
/// until the program calls `run` (their socket work included), and the queue's descriptor is
/// readable exactly while there is work.
#[test]
fn completion_queue_operations_run_on_the_draining_thread() {
    let _serial = serial();
    let server = TestServer::start(|_| Reply::ok("q"));
    let m = Manager::new();
    m.find(&server.url("/"))
        .unwrap()
        .set_connection_limit(3)
        .unwrap();
    let queue = Arc::new(CompletionQueue::new().unwrap());
    let readable = |q: &CompletionQueue| {
        let mut p = libc::pollfd {
            fd: q.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 0) > 0 }
    };
    assert!(!readable(&queue));
    let ran = Arc::new(AtomicUsize::new(0));
    let main = std::thread::current().id();
    for _ in 0..3 {
        let ran = Arc::clone(&ran);
        m.send_async(
            Arc::new(Request::new("GET", &server.url("/")).unwrap()),
            CancelToken::new(),
            Deliver::Queue(Arc::clone(&queue)),
            move |r| {
                assert!(r.is_ok());
                assert_eq!(std::thread::current().id(), main);
                ran.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
    }
    assert!(readable(&queue), "new operations are work to do");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        server.requests().len(),
        0,
        "nothing is sent before the queue is drained"
    );
    let start = Instant::now();
    while ran.load(Ordering::SeqCst) < 3 && start.elapsed() < Duration::from_secs(10) {
        queue.wait(Some(Duration::from_millis(100)));
        queue.run(64);
    }
    assert_eq!(ran.load(Ordering::SeqCst), 3);
    assert_eq!(server.requests().len(), 3);
    assert!(!readable(&queue), "nothing left to do");
}

/// One body read at a time: while an asynchronous read holds the body, other reads are
/// refused with a clear error (the head stays readable), and it works again once returned.
#[test]
fn a_body_lent_to_an_asynchronous_read_refuses_other_reads() {
    let _serial = serial();
    let server = TestServer::start(|_| Reply::ok("body"));
    let m = Manager::new();
    let mut resp = m
        .send(&Request::new("GET", &server.url("/")).unwrap())
        .unwrap();
    let body = resp.take_body().unwrap();
    let e = resp.take_body().err().expect("a second read is refused");
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.contains("asynchronous read"), "{}", e.message);
    assert!(resp.read(&mut [0u8; 8]).is_err());
    assert_eq!(resp.status(), 200);
    resp.put_body(body);
    let mut out = Vec::new();
    resp.read_to_end(&mut out).unwrap();
    assert_eq!(out, b"body");
}

/// `read_now` takes the body bytes that have arrived and never waits: the part sent with the
/// head at once, nothing while the server holds the rest (the read would wait), the rest once
/// it is sent, then the end; the connection then goes back to the pool and serves the next
/// request.
#[test]
fn read_now_takes_what_has_arrived_and_never_waits() {
    use support::script::{ScriptServer, script};
    let _serial = serial();
    let (send_rest, rest) = mpsc::channel::<()>();
    let rest = Mutex::new(rest);
    let server = ScriptServer::start(vec![script(move |p| {
        let Some(_) = p.read_head() else { return };
        p.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234");
        let _ = rest.lock().unwrap().recv_timeout(Duration::from_secs(5));
        p.write(b"56789");
        p.serve_good();
    })]);
    let m = Manager::new();
    let mut resp = m
        .send(&Request::new("GET", &server.url("/held")).unwrap())
        .unwrap();
    let mut buf = [0u8; 64];
    let mut body = Vec::new();
    // The first part: with the head, or moments after.
    let deadline = Instant::now() + Duration::from_secs(5);
    while body.len() < 5 && Instant::now() < deadline {
        match resp.read_now(&mut buf).unwrap() {
            Some(n) => body.extend_from_slice(&buf[..n]),
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    assert_eq!(body, b"01234");
    let started = Instant::now();
    assert!(
        resp.read_now(&mut buf).unwrap().is_none(),
        "nothing more has arrived"
    );
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "read_now waited"
    );
    assert!(!resp.is_complete());
    send_rest.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !resp.is_complete() && Instant::now() < deadline {
        match resp.read_now(&mut buf).unwrap() {
            Some(n) => body.extend_from_slice(&buf[..n]),
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    assert_eq!(body, b"0123456789");
    assert!(resp.is_complete());
    assert_eq!(resp.read_now(&mut buf).unwrap(), Some(0), "the end, again");
    let mut next = m
        .send(&Request::new("GET", &server.url("/next")).unwrap())
        .unwrap();
    let mut out = Vec::new();
    next.read_to_end(&mut out).unwrap();
    assert_eq!(out, b"good /next");
    assert_eq!(
        server.connections(),
        1,
        "the connection went back to the pool"
    );
}

/// `read_now` fills the caller's buffer from what came with the head and what the socket
/// holds; a body cut short gives its bytes first and the failure on the next read, so nothing
/// that arrived is lost.
#[test]
fn read_now_gives_the_bytes_before_a_cut_then_the_failure() {
    use support::script::{ScriptServer, script};
    let _serial = serial();
    let server = ScriptServer::start(vec![script(move |p| {
        let Some(_) = p.read_head() else { return };
        p.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
        p.write(&[b'x'; 30000]);
        p.fin();
    })]);
    let m = Manager::new();
    let mut resp = m
        .send(&Request::new("GET", &server.url("/cut")).unwrap())
        .unwrap();
    let mut buf = vec![0u8; 200_000];
    // Once everything (the FIN too) has arrived, one read takes all of it, and the cut waits
    // for the next read.
    assert!(server.wait_until(Duration::from_secs(5), |s| s.finished() == 1));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(resp.read_now(&mut buf).unwrap(), Some(30000));
    let mut got = 30000;
    let deadline = Instant::now() + Duration::from_secs(5);
    let failure = loop {
        assert!(Instant::now() < deadline, "no failure after {got} bytes");
        match resp.read_now(&mut buf) {
            Ok(Some(n)) => {
                assert!(n > 0, "not the end: the body was cut");
                assert!(buf[..n].iter().all(|&b| b == b'x'));
                got += n;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => break e,
        }
    };
    assert_eq!(got, 30000, "every byte that arrived was given");
    assert_eq!(
        failure.kind,
        ErrorKind::ConnectionClosed,
        "{}",
        failure.message
    );
}

//! A host's addresses: resolve overrides (curl's CURLOPT_RESOLVE), falling back from a dead
//! address within the connect timeout, DNS round robin, Happy Eyeballs, idle connections that
//! follow a changed answer and a slow resolver, checked by which listener (127.0.0.1 or
//! 127.0.0.2, same port) saw the connections.

mod support;

use servicepoint::{Manager, Request};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::{Reply, TestServer};

const LOOPBACK_2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A second origin listener on 127.0.0.2 (same port as a TestServer): answers every request
/// with `second` and closes; counts connections.
struct Second {
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Second {
    fn start(port: u16) -> Second {
        let listener = TcpListener::bind((LOOPBACK_2, port)).expect("bind 127.0.0.2");
        listener.set_nonblocking(true).unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (Arc::clone(&connections), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(30);
            while !s.load(Ordering::SeqCst) && Instant::now() < end {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        c.fetch_add(1, Ordering::SeqCst);
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let mut buf = [0u8; 4096];
                        let mut got = Vec::new();
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        }
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecond",
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Second {
            connections,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Second {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn get(m: &Manager, url: &str) -> servicepoint::Result<Vec<u8>> {
    let mut resp = m.send(&Request::new("GET", url)?)?;
    let mut out = Vec::new();
    resp.read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn a_resolve_override_pins_a_name_to_addresses() {
    let server = TestServer::start(|r| Reply::ok(r.header("host").unwrap_or("").to_string()));
    let m = Manager::new();
    let url = format!("http://pinned.invalid:{}/x", server.port);
    assert!(get(&m, &url).is_err(), "not resolvable without the pin");
    m.set_resolve_override(
        "pinned.invalid",
        server.port,
        Some(&["127.0.0.1".parse().unwrap()]),
    )
    .unwrap();
    let host = format!("pinned.invalid:{}", server.port);
    assert_eq!(
        get(&m, &url).unwrap(),
        host.as_bytes(),
        "Host is still the URL's"
    );
    assert!(m.resolve_overrides().contains("pinned.invalid:"));
    m.set_resolve_override("pinned.invalid", server.port, None)
        .unwrap();
    assert_eq!(m.resolve_overrides(), "");
}

/// The first address refuses: the next one is tried at once.
#[test]
fn a_refused_address_falls_back_to_the_next() {
    let server = TestServer::start(|_| Reply::ok("first"));
    let m = Manager::new();
    // Nothing listens on 127.0.0.3 at this port.
    let pins: Vec<IpAddr> = vec!["127.0.0.3".parse().unwrap(), "127.0.0.1".parse().unwrap()];
    m.set_resolve_override("two.invalid", server.port, Some(&pins))
        .unwrap();
    let start = Instant::now();
    let url = format!("http://two.invalid:{}/", server.port);
    assert_eq!(get(&m, &url).unwrap(), b"first");
    assert!(start.elapsed() < Duration::from_millis(500));
    assert_eq!(server.connection_count(), 1);
}

/// The first address never completes the handshake (its accept queue is full, so SYNs are
/// dropped): the next one is tried after its share of the connect timeout, not after all of it.
#[test]
fn a_silent_address_falls_back_within_the_connect_timeout() {
    let server = TestServer::start(|_| Reply::ok("first"));
    let silent = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    silent
        .bind(&std::net::SocketAddr::new(LOOPBACK_2, server.port).into())
        .unwrap();
    silent.listen(0).unwrap();
    // Fill the accept queue (never accepted): further connects hang in SYN.
    let fillers: Vec<TcpStream> = (0..4)
        .filter_map(|_| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            s.set_nonblocking(true).ok()?;
            let _ = s.connect(&std::net::SocketAddr::new(LOOPBACK_2, server.port).into());
            Some(TcpStream::from(s))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let m = Manager::new();
    let pins: Vec<IpAddr> = vec![LOOPBACK_2, "127.0.0.1".parse().unwrap()];
    m.set_resolve_override("slow.invalid", server.port, Some(&pins))
        .unwrap();
    let url = format!("http://slow.invalid:{}/", server.port);
    let point = m.find(&url).unwrap();
    point.set_connect_timeout(2000).unwrap();
    let start = Instant::now();
    assert_eq!(get(&m, &url).unwrap(), b"first");
    let took = start.elapsed();
    // Its share: half of the 2 s connect timeout.
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1900),
        "{took:?}"
    );
    assert_eq!(server.connection_count(), 1);
    drop(fillers);
}

/// EnableDnsRoundRobin spreads new connections over the addresses; off, the first address
/// takes them all.
#[test]
fn dns_round_robin_spreads_new_connections() {
    let server = TestServer::start(|_| Reply::ok("first"));
    let second = Second::start(server.port);
    let m = Manager::new();
    let pins: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), LOOPBACK_2];
    m.set_resolve_override("rr.invalid", server.port, Some(&pins))
        .unwrap();
    let url = format!("http://rr.invalid:{}/", server.port);
    m.find(&url).unwrap().set_lease_timeout(0).unwrap(); // a new connection per request
    for _ in 0..4 {
        assert_eq!(get(&m, &url).unwrap(), b"first");
    }
    assert_eq!(
        second.connections.load(Ordering::SeqCst),
        0,
        "off: first address only"
    );
    m.set_dns_round_robin(true);
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(get(&m, &url).unwrap());
    }
    assert_eq!(
        bodies.iter().filter(|b| b.as_slice() == b"second").count(),
        2
    );
    assert_eq!(second.connections.load(Ordering::SeqCst), 2);
    assert_eq!(server.connection_count(), 4 + 2);
}

/// A listener on `addr` whose accept queue is full, so connects to it hang in SYN; the
/// returned sockets keep it full.
fn silent_listener(addr: std::net::SocketAddr) -> (socket2::Socket, Vec<socket2::Socket>) {
    let domain = socket2::Domain::for_address(addr);
    let listener = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
    listener.bind(&addr.into()).unwrap();
    listener.listen(0).unwrap();
    let fillers = (0..4)
        .filter_map(|_| {
            let s = socket2::Socket::new(domain, socket2::Type::STREAM, None).ok()?;
            s.set_nonblocking(true).ok()?;
            let _ = s.connect(&addr.into());
            Some(s)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    (listener, fillers)
}

/// Happy Eyeballs (RFC 8305): the host's IPv6 address never answers, its IPv4 one does; the
/// IPv4 attempt starts 250 ms after the IPv6 one and wins, long before the connect timeout,
/// through the blocking path, the runtime and a completion queue.
#[test]
fn happy_eyeballs_starts_the_other_family_after_250_ms() {
    let server = TestServer::start(|_| Reply::ok("v4"));
    let v6: std::net::SocketAddr = format!("[::1]:{}", server.port).parse().unwrap();
    let (_listener, _fillers) = silent_listener(v6);
    let m = Arc::new(Manager::new());
    let pins: Vec<IpAddr> = vec!["::1".parse().unwrap(), "127.0.0.1".parse().unwrap()];
    m.set_resolve_override("dual.invalid", server.port, Some(&pins))
        .unwrap();
    let url = format!("http://dual.invalid:{}/", server.port);
    let point = m.find(&url).unwrap();
    point.set_connect_timeout(5000).unwrap();
    point.set_lease_timeout(0).unwrap(); // a new connection for each request below
    let start = Instant::now();
    assert_eq!(get(&m, &url).unwrap(), b"v4");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(1500),
        "blocking: {took:?}"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let start = Instant::now();
    m.send_async(
        Arc::new(Request::new("GET", &url).unwrap()),
        servicepoint::cancel::CancelToken::new(),
        servicepoint::operation::Deliver::Runtime,
        move |r| {
            let _ = tx.send(r.map(|resp| resp.status()));
        },
    )
    .unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap(),
        200
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(1500),
        "asynchronous: {took:?}"
    );
    // On a completion queue: the race runs on this thread, inside `run`.
    let queue = Arc::new(servicepoint::operation::CompletionQueue::new().unwrap());
    let status = Arc::new(std::sync::Mutex::new(None));
    let s = Arc::clone(&status);
    let start = Instant::now();
    m.send_async(
        Arc::new(Request::new("GET", &url).unwrap()),
        servicepoint::cancel::CancelToken::new(),
        servicepoint::operation::Deliver::Queue(Arc::clone(&queue)),
        move |r| *s.lock().unwrap() = Some(r.map(|resp| resp.status())),
    )
    .unwrap();
    while status.lock().unwrap().is_none() && start.elapsed() < Duration::from_secs(10) {
        queue.wait(Some(Duration::from_millis(50)));
        queue.run(16);
    }
    assert_eq!(status.lock().unwrap().take().unwrap().unwrap(), 200);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(1500),
        "on a completion queue: {took:?}"
    );
    assert_eq!(server.connection_count(), 3);
}

/// When the first family refuses at once, the other is tried at once (no 250 ms wait).
#[test]
fn happy_eyeballs_moves_on_at_once_after_a_refusal() {
    let server = TestServer::start(|_| Reply::ok("v4"));
    let m = Manager::new();
    // Nothing listens on ::1 at this port: refused at once.
    let pins: Vec<IpAddr> = vec!["::1".parse().unwrap(), "127.0.0.1".parse().unwrap()];
    m.set_resolve_override("refused6.invalid", server.port, Some(&pins))
        .unwrap();
    let url = format!("http://refused6.invalid:{}/", server.port);
    let start = Instant::now();
    assert_eq!(get(&m, &url).unwrap(), b"v4");
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
}

/// A manager whose name lookups answer from `answer` (a scripted DNS), counting lookups.
fn scripted_dns(answer: &Arc<std::sync::Mutex<Vec<IpAddr>>>) -> (Manager, Arc<AtomicUsize>) {
    let m = Manager::new();
    let lookups = Arc::new(AtomicUsize::new(0));
    let (a, n) = (Arc::clone(answer), Arc::clone(&lookups));
    m.set_resolver(Some(Arc::new(move |host: &str, port| {
        assert_eq!(host, "backend.test");
        n.fetch_add(1, Ordering::SeqCst);
        let ips = a.lock().unwrap().clone();
        if ips.is_empty() {
            return Err(std::io::Error::other("SERVFAIL (scripted)"));
        }
        Ok(ips.into_iter().map(|ip| (ip, port).into()).collect())
    })));
    (m, lookups)
}

/// After the DNS refresh timeout the name is looked up again in the background, and the idle
/// connection to an address that left the answer is closed (the server sees the client close
/// it, with no request); the next request goes to the new address. Before the refresh, the
/// idle connection is reused.
#[test]
fn an_idle_connection_whose_address_left_the_answer_is_closed_after_the_refresh() {
    let server = TestServer::start(|_| Reply::ok("first"));
    let second = Second::start(server.port);
    let answer = Arc::new(std::sync::Mutex::new(vec![IpAddr::from([127, 0, 0, 1])]));
    let (m, lookups) = scripted_dns(&answer);
    m.set_dns_refresh_timeout(1500).unwrap();
    let url = format!("http://backend.test:{}/", server.port);
    let start = Instant::now();
    assert_eq!(get(&m, &url).unwrap(), b"first");
    *answer.lock().unwrap() = vec![LOOPBACK_2];
    assert_eq!(
        get(&m, &url).unwrap(),
        b"first",
        "reused before the refresh"
    );
    assert_eq!(server.connection_count(), 1);
    assert!(
        server.wait_until(Duration::from_secs(5), |s| {
            s.connections()[0].closed_by_client
        }),
        "the idle connection to the old address was closed"
    );
    let closed_after = start.elapsed();
    assert!(
        closed_after >= Duration::from_millis(1400) && closed_after < Duration::from_millis(3500),
        "closed {closed_after:?} after the first lookup (refresh timeout 1.5 s)"
    );
    assert_eq!(lookups.load(Ordering::SeqCst), 2, "one background refresh");
    let stats = m.find(&url).unwrap().statistics();
    assert_eq!(stats.closed_address_gone, 1);
    assert_eq!(stats.open, 0);
    assert_eq!(get(&m, &url).unwrap(), b"second");
    assert_eq!(second.connections.load(Ordering::SeqCst), 1);
    assert_eq!(
        server.requests().len(),
        2,
        "the old address got no further request"
    );
}

/// A refresh that keeps the address, or that fails (a resolver outage), keeps the idle
/// connection: only an answer without its address retires it.
#[test]
fn a_refresh_that_keeps_the_address_or_fails_keeps_the_idle_connection() {
    let server = TestServer::start(|_| Reply::ok("first"));
    let answer = Arc::new(std::sync::Mutex::new(vec![
        LOOPBACK_2,
        IpAddr::from([127, 0, 0, 1]),
    ]));
    let (m, lookups) = scripted_dns(&answer);
    m.set_dns_refresh_timeout(0).unwrap(); // background refreshes at most once a second
    let url = format!("http://backend.test:{}/", server.port);
    // 127.0.0.2 refuses (nothing listens there on this port): connected to 127.0.0.1.
    assert_eq!(get(&m, &url).unwrap(), b"first");
    *answer.lock().unwrap() = vec![IpAddr::from([127, 0, 0, 1])];
    let end = Instant::now() + Duration::from_secs(10);
    while lookups.load(Ordering::SeqCst) < 3 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    answer.lock().unwrap().clear(); // lookups fail from now on
    let failed = lookups.load(Ordering::SeqCst);
    while lookups.load(Ordering::SeqCst) < failed + 2 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        lookups.load(Ordering::SeqCst) >= failed + 2,
        "refreshes went on"
    );
    assert_eq!(server.open_now(), 1, "the idle connection stayed open");
    assert_eq!(m.find(&url).unwrap().statistics().closed_address_gone, 0);
    assert_eq!(get(&m, &url).unwrap(), b"first");
    assert_eq!(server.connection_count(), 1, "and served the next request");
}

/// Changing a resolve override retires idle connections to the addresses it dropped at the
/// reaper's next pass (an override is the user's word: no refresh timeout applies).
#[test]
fn an_override_that_drops_an_address_closes_its_idle_connections() {
    let server = TestServer::start(|_| Reply::ok("first"));
    let second = Second::start(server.port);
    let m = Manager::new();
    let url = format!("http://moved.invalid:{}/", server.port);
    m.set_resolve_override(
        "moved.invalid",
        server.port,
        Some(&["127.0.0.1".parse().unwrap()]),
    )
    .unwrap();
    assert_eq!(get(&m, &url).unwrap(), b"first");
    m.set_resolve_override("moved.invalid", server.port, Some(&[LOOPBACK_2]))
        .unwrap();
    let start = Instant::now();
    assert!(server.wait_until(Duration::from_secs(5), |s| {
        s.connections()[0].closed_by_client
    }));
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(m.find(&url).unwrap().statistics().closed_address_gone, 1);
    assert_eq!(get(&m, &url).unwrap(), b"second");
    assert_eq!(second.connections.load(Ordering::SeqCst), 1);
}

/// A resolver slower than the request's timeout: the request fails at its deadline with a
/// timeout that says the lookup was the cause, blocking and asynchronous alike.
#[test]
fn a_slow_resolver_does_not_hold_a_request_past_its_deadline() {
    let m = Manager::new();
    m.set_resolver(Some(Arc::new(|_: &str, port| {
        std::thread::sleep(Duration::from_secs(3));
        Ok(vec![(IpAddr::from([127, 0, 0, 1]), port).into()])
    })));
    let mut req = Request::new("GET", "http://slow-dns.test:9/").unwrap();
    req.timeout = Some(Duration::from_millis(300));
    let start = Instant::now();
    let e = m.send(&req).err().expect("the lookup outlasts the timeout");
    let took = start.elapsed();
    assert!(e.message.contains("name lookup"), "{}", e.message);
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(1000),
        "blocking: {took:?}"
    );
    let mut req = Request::new("GET", "http://slow-dns-2.test:9/").unwrap();
    req.timeout = Some(Duration::from_millis(300));
    let (tx, rx) = std::sync::mpsc::channel();
    let start = Instant::now();
    m.send_async(
        Arc::new(req),
        servicepoint::cancel::CancelToken::new(),
        servicepoint::operation::Deliver::Runtime,
        move |r| {
            let _ = tx.send(r.map(|resp| resp.status()));
        },
    )
    .unwrap();
    let e = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap_err();
    let took = start.elapsed();
    assert!(e.message.contains("name lookup"), "{}", e.message);
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(1000),
        "asynchronous: {took:?}"
    );
}

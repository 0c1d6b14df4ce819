// The body of tests/connection_management.rs and tests/connection_management_async.rs:
// every ServicePoint rule, checked through blocking and through asynchronous requests.


use servicepoint::{Body, ErrorKind, Manager, Request, Response};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Options, Reply, TestServer};

/// Sends in the style this test binary checks: blocking, or asynchronous (the completion
/// awaited here, on the test's thread).
fn send_via(m: &Manager, req: &Request) -> servicepoint::Result<Response> {
    if !ASYNC {
        return m.send(req);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    m.send_async(
        Arc::new(req.clone()),
        servicepoint::cancel::CancelToken::new(),
        servicepoint::operation::Deliver::Runtime,
        move |r| {
            let _ = tx.send(r);
        },
    )?;
    rx.recv_timeout(Duration::from_secs(60)).expect("the completion fires")
}

fn send(m: &Manager, url: &str) -> servicepoint::Result<Response> {
    let req = Request::new("GET", url).unwrap();
    send_via(m, &req)
}

fn fetch(m: &Manager, url: &str) -> Vec<u8> {
    let mut resp = send(m, url).unwrap();
    let mut out = Vec::new();
    resp.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn limit_two_queues_ten_threads_in_fifo_order() {
    let server = TestServer::start(|_| {
        Reply::Delay(Duration::from_millis(300), Box::new(Reply::ok("slow")))
    });
    let m = Arc::new(Manager::new());
    let url = server.url("/slow");
    let start = Instant::now();
    let threads: Vec<_> = (0..10)
        .map(|_| {
            let (m, url) = (m.clone(), url.clone());
            std::thread::spawn(move || fetch(&m, &url))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), b"slow");
    }
    let elapsed = start.elapsed();
    assert_eq!(server.connection_count(), 2, "{:?}", server.connections());
    assert_eq!(server.max_simultaneous(), 2);
    // 10 requests, 2 at a time, 300 ms each: about 1.5 s.
    assert!(elapsed >= Duration::from_millis(1450), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(3500), "{elapsed:?}");
}

#[test]
fn waiters_are_served_in_arrival_order() {
    let server = TestServer::start(|_| Reply::ok("x"));
    let m = Arc::new(Manager::new());
    let point = m.find(&server.url("/")).unwrap();
    point.set_connection_limit(1).unwrap();
    let holder = send(&m, &server.url("/hold")).unwrap(); // body unread: holds the connection
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for i in 0..5 {
        let (m, order, url) = (m.clone(), order.clone(), server.url(&format!("/w{i}")));
        threads.push(std::thread::spawn(move || {
            let mut resp = send(&m, &url).unwrap();
            order.lock().unwrap().push(i);
            let mut sink = Vec::new();
            resp.read_to_end(&mut sink).unwrap();
        }));
        // Make arrival order deterministic.
        let deadline = Instant::now() + Duration::from_secs(2);
        while point.statistics().waiting < i as u64 + 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    drop(holder);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    let paths: Vec<_> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/hold", "/w0", "/w1", "/w2", "/w3", "/w4"]);
    assert_eq!(server.connection_count(), 1);
}

#[test]
fn an_unreleased_response_makes_the_waiter_time_out_with_a_clear_error() {
    let server = TestServer::start(|_| Reply::ok(vec![b'x'; 200_000]));
    let m = Manager::new();
    let point = m.find(&server.url("/")).unwrap();
    point.set_connection_limit(1).unwrap();
    let _held = send(&m, &server.url("/a")).unwrap();
    let mut req = Request::new("GET", &server.url("/b")).unwrap();
    req.timeout = Some(Duration::from_millis(200));
    let start = Instant::now();
    let e = send_via(&m, &req).err().unwrap();
    assert_eq!(e.kind, ErrorKind::QueueTimeout);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(e.message.contains(point.address()), "{e}");
    assert!(e.message.contains("1 busy, 0 waiting"), "{e}");
    assert!(!e.may_have_reached_server);
    assert_eq!(server.connection_count(), 1, "no silent extra connection");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn raising_the_limit_releases_waiters_at_once() {
    let server = TestServer::start(|_| Reply::ok(vec![b'x'; 200_000]));
    let m = Arc::new(Manager::new());
    let point = m.find(&server.url("/")).unwrap();
    point.set_connection_limit(1).unwrap();
    let _held = send(&m, &server.url("/a")).unwrap();
    let (m2, url) = (m.clone(), server.url("/b"));
    let waiter = std::thread::spawn(move || send(&m2, &url).map(|r| r.status()));
    let deadline = Instant::now() + Duration::from_secs(2);
    while point.statistics().waiting == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    point.set_connection_limit(2).unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), 200);
    assert_eq!(server.connection_count(), 2);
}

#[test]
fn lease_zero_closes_after_every_request() {
    let server = TestServer::start(|_| Reply::ok("x"));
    let m = Manager::new();
    let point = m.find(&server.url("/")).unwrap();
    point.set_lease_timeout(0).unwrap();
    for _ in 0..3 {
        fetch(&m, &server.url("/"));
    }
    assert_eq!(server.connection_count(), 3);
    assert!(server.requests().iter().all(|r| r.wants_close()));
    assert_eq!(point.statistics().closed_lease, 3);
}

#[test]
fn lease_zero_set_on_a_warm_pool_still_gives_each_request_a_new_connection() {
    let server = TestServer::start(|_| Reply::ok("x"));
    let m = Manager::new();
    fetch(&m, &server.url("/warm"));
    let point = m.find(&server.url("/")).unwrap();
    assert_eq!(point.statistics().idle, 1);
    point.set_lease_timeout(0).unwrap();
    for _ in 0..3 {
        fetch(&m, &server.url("/"));
    }
    assert_eq!(server.connection_count(), 4);
    assert!(server.wait_until(Duration::from_secs(2), |s| s.open_now() == 0));
    assert_eq!(point.statistics().reuses, 0);
}

#[test]
fn lease_n_closes_connections_older_than_n() {
    let server = TestServer::start(|_| Reply::ok("x"));
    let m = Manager::new();
    let point = m.find(&server.url("/")).unwrap();
    assert_eq!(point.lease_timeout_ms(), -1);
    point.set_lease_timeout(250).unwrap();
    for _ in 0..8 {
        fetch(&m, &server.url("/"));
        std::thread::sleep(Duration::from_millis(80));
    }
    // Per the server's clock (which starts after the client's): a request on a connection
    // older than the lease carries close; clearly younger ones do not.
    let reqs = server.requests();
    for r in &reqs {
        if r.conn_age >= Duration::from_millis(255) {
            assert!(
                r.wants_close(),
                "request at age {:?} without close",
                r.conn_age
            );
        }
        if r.conn_age < Duration::from_millis(200) {
            assert!(
                !r.wants_close(),
                "young connection got close at {:?}",
                r.conn_age
            );
        }
    }
    let closes = reqs.iter().filter(|r| r.wants_close()).count();
    assert!(
        closes >= 1 && server.connection_count() >= 2,
        "{closes} closes"
    );
    for (i, c) in server.connections().iter().enumerate() {
        let last = reqs.iter().rev().find(|r| r.conn == i).unwrap();
        if c.closed.is_some() && i + 1 < server.connection_count() {
            assert!(
                last.wants_close(),
                "connection {i} ended without a close request"
            );
        }
    }
}

#[test]
fn max_idle_time_reaper_closes_without_a_request() {
    let server = TestServer::start(|_| Reply::ok("x"));
    let m = Manager::new();
    let point = m.find(&server.url("/")).unwrap();
    point.set_max_idle_time(200).unwrap();
    // Reuse within the idle time keeps one connection.
    for _ in 0..3 {
        fetch(&m, &server.url("/"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.connection_count(), 1);
    let released = Instant::now();
    assert!(server.wait_until(Duration::from_secs(3), |s| {
        s.connections()[0].closed.is_some()
    }));
    let conn = &server.connections()[0];
    assert!(conn.closed_by_client, "the client closed it");
    let after = conn.closed.unwrap() - released;
    assert!(
        after < Duration::from_millis(200 + 400),
        "closed {after:?} after release"
    );
    assert_eq!(point.current_connections(), 0);
    assert_eq!(point.statistics().closed_idle, 1);
}

#[test]
fn manager_defaults_apply_to_new_service_points_only() {
    let m = Manager::new();
    let a = m.find("http://a.test/").unwrap();
    m.set_default_connection_limit(7).unwrap();
    m.set_max_point_idle_time(1234).unwrap();
    let b = m.find("http://b.test/").unwrap();
    assert_eq!((a.connection_limit(), a.max_idle_ms()), (2, 100_000));
    assert_eq!((b.connection_limit(), b.max_idle_ms()), (7, 1234));
    assert_eq!(
        a.set_lease_timeout(-2).unwrap_err().kind,
        ErrorKind::OutOfRange
    );
    assert_eq!(
        a.set_max_idle_time(-2).unwrap_err().kind,
        ErrorKind::OutOfRange
    );
    assert_eq!(
        a.set_connection_limit(0).unwrap_err().kind,
        ErrorKind::OutOfRange
    );
    assert_eq!(
        (a.lease_timeout_ms(), a.max_idle_ms(), a.connection_limit()),
        (-1, 100_000, 2)
    );
}

#[test]
fn max_service_points_evicts_unused_longest_idle_first() {
    let m = Manager::new();
    m.set_max_service_points(2).unwrap();
    let a = m.find("http://a.test/").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let b = m.find("http://b.test/").unwrap();
    // Both have live handles: nothing can go.
    let e = m.find("http://c.test/").err().unwrap();
    assert_eq!(e.kind, ErrorKind::TooManyServicePoints);
    drop((a, b));
    // a has been idle longest: it goes, b stays.
    let c = m.find("http://c.test/").unwrap();
    assert_eq!(m.service_point_count(), 2);
    drop(c);
    let b_again = m.find("http://b.test/").unwrap();
    assert_eq!(m.service_point_count(), 2);
    drop(b_again);
    assert!(m.find("http://a.test/").is_ok());
}

#[test]
fn busy_service_points_are_not_evicted() {
    let server = TestServer::start(|_| Reply::ok(vec![b'x'; 200_000]));
    let m = Manager::new();
    m.set_max_service_points(1).unwrap();
    let held = send(&m, &server.url("/")).unwrap();
    assert_eq!(
        m.find("http://other.test/").err().unwrap().kind,
        ErrorKind::TooManyServicePoints
    );
    drop(held);
    assert!(m.find("http://other.test/").is_ok());
    // The evicted point's idle connection was closed.
    assert!(server.wait_until(Duration::from_secs(2), |s| s.open_now() == 0));
}

#[test]
fn unused_service_points_expire_after_max_service_point_idle_time() {
    let server = TestServer::start(|_| Reply::ok("x"));
    let m = Manager::new();
    m.set_max_point_idle_time(150).unwrap();
    fetch(&m, &server.url("/"));
    assert_eq!(m.service_point_count(), 1);
    let deadline = Instant::now() + Duration::from_secs(3);
    while m.service_point_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(m.service_point_count(), 0);
    assert!(server.connections()[0].closed_by_client);
}

#[test]
fn keep_alive_off_per_request_and_by_default() {
    let server = TestServer::start(|_| Reply::ok("x"));
    let m = Manager::new();
    let mut req = Request::new("GET", &server.url("/")).unwrap();
    req.keep_alive = Some(false);
    for _ in 0..2 {
        let mut sink = Vec::new();
        send_via(&m, &req).unwrap().read_to_end(&mut sink).unwrap();
    }
    assert_eq!(server.connection_count(), 2);
    m.set_keep_alive_default(false);
    fetch(&m, &server.url("/"));
    assert_eq!(server.connection_count(), 3);
    assert!(server.requests().iter().all(|r| r.wants_close()));
    // A request that says keep-alive overrides the default.
    let mut req = Request::new("GET", &server.url("/")).unwrap();
    req.keep_alive = Some(true);
    for _ in 0..2 {
        let mut sink = Vec::new();
        send_via(&m, &req).unwrap().read_to_end(&mut sink).unwrap();
    }
    assert_eq!(server.connection_count(), 4);
    let stats = m.find(&server.url("/")).unwrap().statistics();
    assert_eq!(stats.closed_keep_alive_off, 3);
}

fn stale_run(rst: bool) {
    let options = Options {
        idle_close: Some(Duration::from_millis(25)),
        idle_close_rst: rst,
        ..Options::default()
    };
    let server = TestServer::start_with(options, |_| Reply::ok("fresh"));
    let m = Manager::new();
    let mut failures = 0;
    for _ in 0..50 {
        match send(&m, &server.url("/")) {
            Ok(mut r) => {
                let mut sink = Vec::new();
                if r.read_to_end(&mut sink).is_err() {
                    failures += 1;
                }
            }
            Err(_) => failures += 1,
        }
        // The server closes after 25-45 ms idle (its poll granularity is 20 ms).
        std::thread::sleep(Duration::from_millis(75));
    }
    assert_eq!(failures, 0);
    assert_eq!(server.requests().len(), 50);
    let stats = m.find(&server.url("/")).unwrap().statistics();
    // Nearly every reuse found the connection dead; under heavy load a few may be caught by
    // the retry instead, and none may surface.
    assert!(stats.closed_stale >= 40, "{stats:?}");
}

#[test]
fn stale_connections_closed_by_the_server_with_fin_never_fail_a_get() {
    stale_run(false);
}

#[test]
fn stale_connections_closed_by_the_server_with_rst_never_fail_a_get() {
    stale_run(true);
}

/// A server that drops every second request on a connection without answering: the
/// signature of a connection that the server closed while the request was in flight.
fn hangup_server() -> TestServer {
    TestServer::start(|r| {
        if r.path.starts_with("/prime") {
            Reply::ok("primed")
        } else {
            Reply::Hangup
        }
    })
}

#[test]
fn a_get_that_dies_on_a_reused_connection_is_retried_once() {
    // The first connection's second request is dropped without an answer.
    let server = TestServer::start(|r| {
        if r.conn == 0 && r.path == "/again" {
            Reply::Hangup
        } else {
            Reply::ok("ok")
        }
    });
    let m = Manager::new();
    fetch(&m, &server.url("/first"));
    assert_eq!(fetch(&m, &server.url("/again")), b"ok");
    let stats = m.find(&server.url("/")).unwrap().statistics();
    assert_eq!(stats.retries, 1);
    assert_eq!(server.connection_count(), 2);
    // The server saw the GET twice: once on the dead connection, once on the new one.
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| r.path == "/again")
            .count(),
        2
    );
}

#[test]
fn a_post_is_never_sent_twice_unless_marked_retryable() {
    let server = hangup_server();
    let m = Manager::new();
    fetch(&m, &server.url("/prime"));
    let mut post = Request::new("POST", &server.url("/order")).unwrap();
    post.body = Body::Bytes(b"buy 1".to_vec());
    let e = send_via(&m, &post).err().unwrap();
    assert!(e.may_have_reached_server, "{e}");
    assert!(e.message.contains("may have processed"), "{e}");
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| r.path == "/order")
            .count(),
        1
    );
    // Marked retryable: resent once on a fresh connection (which the server also drops, as
    // this one drops every non-prime request), so it is seen exactly twice.
    fetch(&m, &server.url("/prime2"));
    let mut post = Request::new("POST", &server.url("/order2")).unwrap();
    post.body = Body::Bytes(b"buy 2".to_vec());
    post.retryable = true;
    assert!(send_via(&m, &post).is_err());
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| r.path == "/order2")
            .count(),
        2
    );
}

#[test]
fn server_keep_alive_timeout_of_one_second_allows_reuse_and_is_never_overrun() {
    let server = TestServer::start_with(
        Options {
            idle_close: Some(Duration::from_secs(1)),
            ..Options::default()
        },
        |_| Reply::with_headers(200, &[("Keep-Alive", "timeout=1, max=100")], "ka"),
    );
    let m = Manager::new();
    // Back to back: one connection (Node's keepAliveTimeout 1000, Apache KeepAliveTimeout 1).
    for _ in 0..20 {
        assert_eq!(fetch(&m, &server.url("/")), b"ka");
    }
    assert_eq!(server.connection_count(), 1);
    // Pauses around the window: a connection is reused only well inside the server's 1 s.
    for pause in [0u64, 100, 500, 700, 740, 760, 900, 1100, 300, 0, 1000, 650] {
        std::thread::sleep(Duration::from_millis(pause));
        assert_eq!(fetch(&m, &server.url("/")), b"ka", "after {pause} ms");
    }
    let requests = server.requests();
    for pair in requests.windows(2) {
        if pair[0].conn == pair[1].conn {
            let gap = pair[1].at - pair[0].at;
            assert!(
                gap < Duration::from_millis(950),
                "reused after {gap:?} idle"
            );
        }
    }
    let stats = m.find(&server.url("/")).unwrap().statistics();
    assert_eq!((stats.closed_in_flight, stats.retries), (0, 0), "{stats:?}");
    assert!(stats.reuses >= 25, "{stats:?}");
    assert!(server.connection_count() >= 4, "{:?}", server.connections());
}

#[test]
fn server_keep_alive_timeout_shortens_the_idle_limit() {
    let server =
        TestServer::start(|_| Reply::with_headers(200, &[("Keep-Alive", "timeout=2")], "ka"));
    let m = Manager::new();
    let start = Instant::now();
    fetch(&m, &server.url("/"));
    // Idle limit min(100 s, 2 s - 0.5 s) = 1.5 s: the reaper closes it then.
    assert!(server.wait_until(Duration::from_secs(3), |s| {
        s.connections()[0].closed.is_some()
    }));
    let closed = server.connections()[0].closed.unwrap() - start;
    assert!(
        closed >= Duration::from_millis(1450) && closed < Duration::from_millis(2400),
        "{closed:?}"
    );
}

#[test]
fn server_keep_alive_max_and_point_cap_limit_requests_per_connection() {
    let server = TestServer::start(|_| Reply::ok("m"));
    let m = Manager::new();
    let point = m.find(&server.url("/")).unwrap();
    point.set_max_requests_per_connection(3).unwrap();
    for _ in 0..7 {
        fetch(&m, &server.url("/"));
    }
    // 3 + 3 + 1 requests; each third one carried Connection: close.
    let per_conn: Vec<_> = server.connections().iter().map(|c| c.requests).collect();
    assert_eq!(per_conn, vec![3, 3, 1]);
    assert_eq!(point.statistics().closed_max_requests, 2);
    let reqs = server.requests();
    assert!(reqs[2].wants_close() && reqs[5].wants_close() && !reqs[0].wants_close());

    // The server's max=1: the next request is the last and says so; max=0: no reuse.
    let server = TestServer::start(|r| match r.conn {
        0 => Reply::with_headers(200, &[("Keep-Alive", "timeout=30, max=1")], "one"),
        _ => Reply::with_headers(200, &[("Keep-Alive", "timeout=30, max=0")], "zero"),
    });
    fetch(&m, &server.url("/"));
    fetch(&m, &server.url("/"));
    assert!(server.requests()[1].wants_close());
    fetch(&m, &server.url("/"));
    fetch(&m, &server.url("/"));
    assert_eq!(server.connection_count(), 3);
}

#[test]
fn connection_groups_are_separate_pools_and_close_on_demand() {
    let server = TestServer::start(|_| Reply::ok(vec![b'g'; 1000]));
    let m = Manager::new();
    let point = m.find(&server.url("/")).unwrap();
    point.set_connection_limit(1).unwrap();
    let mut in_a = Request::new("GET", &server.url("/a")).unwrap();
    in_a.group = "a".into();
    let mut in_b = Request::new("GET", &server.url("/b")).unwrap();
    in_b.group = "b".into();
    // Each group has its own limit of 1: a held response in "a" does not block "b".
    let held_a = send_via(&m, &in_a).unwrap();
    let mut resp_b = send_via(&m, &in_b).unwrap();
    let mut sink = Vec::new();
    resp_b.read_to_end(&mut sink).unwrap();
    drop(resp_b);
    assert_eq!(server.connection_count(), 2);
    assert_eq!(point.current_connections(), 2);
    // Closing "b" closes its idle connection now; closing "a" closes the busy one on release.
    assert!(point.close_connection_group("b"));
    assert!(server.wait_until(Duration::from_secs(2), |s| {
        s.connections()[1].closed.is_some()
    }));
    assert!(point.close_connection_group("a"));
    assert!(server.connections()[0].closed.is_none());
    drop(held_a);
    assert!(server.wait_until(Duration::from_secs(2), |s| {
        s.connections()[0].closed.is_some()
    }));
    assert!(!point.close_connection_group("never-used"));
    assert_eq!(point.current_connections(), 0);
    assert_eq!(point.statistics().closed_group, 2);
}

#[test]
fn statistics_count_what_happened() {
    let server = TestServer::start(|_| Reply::ok("s"));
    let m = Manager::new();
    let point = m.find(&server.url("/")).unwrap();
    let held = send(&m, &server.url("/")).unwrap();
    let s = point.statistics();
    assert_eq!((s.open, s.busy, s.idle, s.requests), (1, 1, 0, 1));
    drop(held);
    for _ in 0..4 {
        fetch(&m, &server.url("/"));
    }
    let s = point.statistics();
    assert_eq!((s.open, s.busy, s.idle), (1, 0, 1));
    assert_eq!((s.connections_opened, s.requests, s.reuses), (1, 5, 4));
    assert!(point.idle_since_unix_ms() > 1_600_000_000_000);
}

#[test]
fn dns_refresh_timeout_is_validated_and_lookups_are_cached() {
    let server = TestServer::start(|_| Reply::ok("d"));
    let m = Manager::new();
    assert_eq!(m.dns_refresh_ms(), 120_000);
    assert_eq!(
        m.set_dns_refresh_timeout(-2).unwrap_err().kind,
        ErrorKind::OutOfRange
    );
    let point = m.find(&server.url("/")).unwrap();
    let first = point.resolve().unwrap();
    assert!(
        Arc::ptr_eq(&first, &point.resolve().unwrap()),
        "cached within the refresh time"
    );
    m.set_dns_refresh_timeout(0).unwrap();
    assert!(
        !Arc::ptr_eq(&first, &point.resolve().unwrap()),
        "0 resolves every time"
    );
    // New connections after a lease expiry still work from cached addresses.
    m.set_dns_refresh_timeout(-1).unwrap();
    point.set_lease_timeout(0).unwrap();
    for _ in 0..3 {
        fetch(&m, &server.url("/"));
    }
    assert_eq!(server.connection_count(), 3);
}

//! The log and the metrics explain what the pool did: each connection opened, reused and closed
//! (with its reason), each retry and its cause, queue waits, connection lifetimes.

mod support;

use servicepoint::log::{Level, Sink};
use servicepoint::{Manager, Request};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Options, Reply, TestServer};

#[derive(Default)]
struct Collect(Mutex<Vec<(Level, String)>>);

impl Sink for Collect {
    fn log(&self, level: Level, message: &str) {
        self.0.lock().unwrap().push((level, message.to_string()));
    }
}

impl Collect {
    fn lines(&self) -> Vec<(Level, String)> {
        self.0.lock().unwrap().clone()
    }
    fn has(&self, level: Level, parts: &[&str]) -> bool {
        self.lines()
            .iter()
            .any(|(l, m)| *l == level && parts.iter().all(|p| m.contains(p)))
    }
}

fn fetch(m: &Manager, url: &str) -> Vec<u8> {
    let mut resp = m.send(&Request::new("GET", url).unwrap()).unwrap();
    let mut out = Vec::new();
    resp.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn the_log_explains_opens_reuses_closes_retries_and_queue_waits() {
    let server = TestServer::start_with(
        Options {
            idle_close: Some(Duration::from_millis(150)),
            ..Options::default()
        },
        |r| {
            if r.path == "/slow" {
                Reply::Delay(Duration::from_millis(250), Box::new(Reply::ok("slow")))
            } else if r.path == "/bye" {
                Reply::with_headers(200, &[("Connection", "close")], "bye")
            } else {
                Reply::ok("ok")
            }
        },
    );
    let m = Arc::new(Manager::new());
    let sink = Arc::new(Collect::default());
    m.log().set(Some((Level::Debug, sink.clone())));
    let point = m.find(&server.url("/")).unwrap();
    point.set_connection_limit(1).unwrap();

    fetch(&m, &server.url("/a"));
    fetch(&m, &server.url("/b"));
    let port = server.connections()[0].peer_port.to_string();
    assert!(
        sink.has(Level::Info, &["opened to http://127.0.0.1", &port]),
        "{:?}",
        sink.lines()
    );
    assert!(
        sink.has(Level::Debug, &["reused for request 2"]),
        "{:?}",
        sink.lines()
    );

    // A queue wait over the threshold.
    let slow = {
        let (m, url) = (m.clone(), server.url("/slow"));
        std::thread::spawn(move || fetch(&m, &url))
    };
    std::thread::sleep(Duration::from_millis(50));
    fetch(&m, &server.url("/after-slow"));
    slow.join().unwrap();
    assert!(
        sink.has(Level::Info, &["waited", "for a connection (limit 1)"]),
        "{:?}",
        sink.lines()
    );

    // The server ends a connection: closed with its reason.
    fetch(&m, &server.url("/bye"));
    assert!(
        sink.has(
            Level::Debug,
            &["closed after", "because the server ends it"]
        ),
        "{:?}",
        sink.lines()
    );

    // A stale connection found dead before reuse (the server closed it after 150 ms idle).
    fetch(&m, &server.url("/warm"));
    std::thread::sleep(Duration::from_millis(300));
    fetch(&m, &server.url("/again"));
    assert!(
        sink.has(
            Level::Debug,
            &["found closed or reset by the server before reuse"]
        ),
        "{:?}",
        sink.lines()
    );

    // Off is off.
    m.log().set(None);
    let before = sink.lines().len();
    fetch(&m, &server.url("/quiet"));
    assert_eq!(sink.lines().len(), before);
}

#[test]
fn retries_are_logged_with_their_cause() {
    // Every connection answers once, then hangs up on the next request.
    let served = Arc::new(Mutex::new(std::collections::HashMap::<usize, usize>::new()));
    let server = {
        let served = served.clone();
        TestServer::start(move |r| {
            let mut s = served.lock().unwrap();
            let n = s.entry(r.conn).or_default();
            *n += 1;
            if *n > 1 {
                Reply::Hangup
            } else {
                Reply::ok("once")
            }
        })
    };
    let m = Manager::new();
    let sink = Arc::new(Collect::default());
    m.log().set(Some((Level::Warn, sink.clone())));
    fetch(&m, &server.url("/1"));
    fetch(&m, &server.url("/2"));
    assert!(
        sink.has(
            Level::Warn,
            &[
                "GET http://127.0.0.1",
                "retried on a new connection",
                "connection closed before any response byte"
            ]
        ),
        "{:?}",
        sink.lines()
    );
    assert!(
        sink.lines().iter().all(|(l, _)| *l <= Level::Warn),
        "only Warn and above"
    );
}

#[test]
fn metrics_count_queue_waits_and_connection_lifetimes_per_point_and_manager() {
    let server = TestServer::start(|r| {
        if r.path == "/close" {
            Reply::with_headers(200, &[("Connection", "close")], "c")
        } else {
            Reply::ok("k")
        }
    });
    let other = TestServer::start(|_| Reply::ok("o"));
    let m = Manager::new();
    for _ in 0..3 {
        fetch(&m, &server.url("/close"));
    }
    fetch(&m, &server.url("/keep"));
    fetch(&m, &other.url("/"));
    let p = m.find(&server.url("/")).unwrap();
    let q = p.stats.queue_wait.snapshot();
    assert_eq!(q.count, 4, "every request's queue time is recorded");
    assert!(
        q.buckets[0] + q.buckets[1] + q.buckets[2] >= 3,
        "{q:?}: no real waits here"
    );
    let life = p.stats.connection_lifetime.snapshot();
    assert_eq!(life.count, 3, "three connections closed");
    let s = p.statistics();
    assert_eq!((s.open, s.idle, s.busy), (1, 1, 0));
    let (total, queue, lifetime) = m.statistics();
    assert_eq!(
        (total.requests, total.open, total.connections_opened),
        (5, 2, 5)
    );
    assert_eq!((queue.count, lifetime.count), (5, 3));
}

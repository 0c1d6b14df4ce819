//! `Expect: 100-continue` against scripted servers, checked on the server's side: when the
//! body arrives relative to the server's answer, whether it arrives at all, and which
//! connections are used. Off by default.

mod support;

use servicepoint::{Body, Manager, Request};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::script::{Peer, ScriptServer, script};

const BODY: &[u8] = b"0123456789abcdef";

/// A streamed body of `n` zero bytes.
struct Zeros(usize);

impl servicepoint::BodySource for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        let n = self.0.min(buf.len());
        buf[..n].fill(0);
        self.0 -= n;
        Ok(n)
    }
}

fn post(m: &Manager, url: &str) -> servicepoint::Result<(u16, Vec<u8>)> {
    let mut req = Request::new("POST", url).unwrap();
    req.body = Body::Bytes(BODY.to_vec());
    let mut resp = m.send(&req)?;
    let mut out = Vec::new();
    resp.read_to_end(&mut out)?;
    Ok((resp.status(), out))
}

fn manager_expecting(url: &str) -> Manager {
    let m = Manager::new();
    m.find(url).unwrap().expect.set_enabled(true);
    m
}

/// What a script saw: whether a body byte arrived before it answered, and the body.
#[derive(Default, Debug)]
struct Seen {
    early_body_bytes: usize,
    body_bytes: usize,
    waited_for_body: Option<Duration>,
}

#[test]
fn off_by_default_the_body_goes_with_the_head() {
    let srv = ScriptServer::start(vec![]);
    let m = Manager::new();
    assert_eq!(post(&m, &srv.url("/p")).unwrap().0, 200);
    let seen = srv.requests();
    assert_eq!(seen[0].header("expect"), None);
}

#[test]
fn the_body_waits_for_100_continue() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = Arc::clone(&seen);
    let srv = ScriptServer::start(vec![script(move |p: &mut Peer| {
        let Some(req) = p.read_head() else { return };
        assert_eq!(req.header("expect").as_deref(), Some("100-continue"));
        // Nothing of the body may come before the 100.
        let early = p.read_body_bytes(1, Duration::from_millis(150));
        p.write(b"HTTP/1.1 100 Continue\r\n\r\n");
        let sent_100 = Instant::now();
        let rest = p.read_body_bytes(BODY.len() - early, Duration::from_secs(5));
        {
            let mut s = s.lock().unwrap();
            s.early_body_bytes = early;
            s.body_bytes = early + rest;
            s.waited_for_body = Some(sent_100.elapsed());
        }
        p.answer(&req, b"done");
        p.serve_good();
    })]);
    let m = manager_expecting(&srv.url("/"));
    let start = Instant::now();
    assert_eq!(post(&m, &srv.url("/p")).unwrap(), (200, b"done".to_vec()));
    let s = seen.lock().unwrap();
    assert_eq!(s.early_body_bytes, 0, "no body byte before the 100");
    assert_eq!(s.body_bytes, BODY.len());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "no continue timeout was waited out"
    );
    // The connection stays usable.
    drop(s);
    assert_eq!(post(&m, &srv.url("/again")).unwrap().0, 200);
    assert_eq!(srv.connections(), 1);
}

/// A final status instead of 100: the body is never sent; with Content-Length framing the
/// connection cannot carry another request, so it closes.
#[test]
fn a_final_status_instead_of_100_withholds_the_body() {
    let srv = ScriptServer::start(vec![script(|p: &mut Peer| {
        let Some(_req) = p.read_head() else { return };
        p.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope");
        // Keep reading: the body must never come.
        p.read_body_bytes(BODY.len(), Duration::from_millis(800));
        p.wait_eof(Duration::from_secs(2));
    })]);
    let m = manager_expecting(&srv.url("/"));
    assert_eq!(post(&m, &srv.url("/p")).unwrap(), (401, b"nope".to_vec()));
    assert!(srv.wait_until(Duration::from_secs(3), |s| s.finished() == 1));
    assert_eq!(srv.body_bytes(0), 0, "the body was never sent");
    // The next request gets a new connection (the scripted one was closed by the client).
    assert_eq!(post(&m, &srv.url("/next")).unwrap().0, 200);
    assert_eq!(srv.connections(), 2);
}

/// A chunked body refused before it started is ended empty, so the connection stays usable.
#[test]
fn a_refused_chunked_body_is_ended_and_the_connection_kept() {
    let srv = ScriptServer::start(vec![script(|p: &mut Peer| {
        let Some(req) = p.read_head() else { return };
        p.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n");
        // The client ends the chunked body with its last chunk: read it, then serve on.
        assert!(p.read_body(&req), "the chunked body was ended");
        p.serve_good();
    })]);
    let m = manager_expecting(&srv.url("/"));
    let mut req = Request::new("POST", &srv.url("/upload")).unwrap();
    req.body = Body::stream(Box::new(Zeros(100_000)));
    let resp = m.send(&req).unwrap();
    assert_eq!(resp.status(), 413);
    drop(resp);
    // The server has read the end of the chunked body (the last chunk's CR LF counts).
    assert!(srv.wait_until(Duration::from_secs(2), |s| s.body_bytes(0) > 0));
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        srv.body_bytes(0) < 16,
        "only the last chunk, none of the 100,000 bytes: {}",
        srv.body_bytes(0)
    );
    assert_eq!(post(&m, &srv.url("/next")).unwrap().0, 200);
    assert_eq!(srv.connections(), 1, "the connection was kept");
}

/// 417 Expectation Failed: the request goes again without the expectation, body included, on
/// a new connection, and the point stops asking.
#[test]
fn expectation_failed_repeats_the_request_without_it() {
    let srv = ScriptServer::start(vec![script(|p: &mut Peer| {
        let Some(_req) = p.read_head() else { return };
        p.write(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n");
        p.wait_eof(Duration::from_secs(2));
    })]);
    let m = manager_expecting(&srv.url("/"));
    assert_eq!(post(&m, &srv.url("/p")).unwrap().0, 200);
    let seen = srv.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("expect").as_deref(), Some("100-continue"));
    assert_eq!(seen[1].header("expect"), None);
    assert_eq!(srv.body_bytes(0), 0);
    assert_eq!(srv.body_bytes(1), BODY.len());
    assert!(m.find(&srv.url("/")).unwrap().expect.server_unsupported());
}

/// A server that never answers 100: the body follows after the continue timeout (350 ms by
/// default), and the point does not wait for that server again.
#[test]
fn a_silent_server_costs_one_continue_timeout_then_is_not_asked() {
    let arrival = Arc::new(Mutex::new(Vec::new()));
    let a = Arc::clone(&arrival);
    let srv = ScriptServer::each(move |p: &mut Peer| {
        while let Some(req) = p.read_head() {
            let head_at = Instant::now();
            if !p.read_body(&req) {
                return;
            }
            a.lock()
                .unwrap()
                .push((req.header("expect").is_some(), head_at.elapsed()));
            if !p.answer(&req, b"ok") {
                return;
            }
        }
    });
    let m = manager_expecting(&srv.url("/"));
    assert_eq!(post(&m, &srv.url("/1")).unwrap().0, 200);
    assert_eq!(post(&m, &srv.url("/2")).unwrap().0, 200);
    let seen = arrival.lock().unwrap();
    let (asked, waited) = seen[0];
    assert!(asked);
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(1500),
        "the body followed the head after {waited:?}"
    );
    let (asked_again, waited_again) = seen[1];
    assert!(!asked_again, "not asked again");
    assert!(
        waited_again < Duration::from_millis(200),
        "{waited_again:?}"
    );
}

/// The continue timeout is a setting: with 50 ms, a silent server costs 50 ms.
#[test]
fn the_continue_timeout_is_settable() {
    let srv = ScriptServer::each(|p: &mut Peer| {
        while let Some(req) = p.read_head() {
            if !p.read_body(&req) || !p.answer(&req, b"ok") {
                return;
            }
        }
    });
    let m = manager_expecting(&srv.url("/"));
    m.find(&srv.url("/")).unwrap().expect.set_timeout_ms(50);
    let start = Instant::now();
    assert_eq!(post(&m, &srv.url("/1")).unwrap().0, 200);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(45) && took < Duration::from_millis(300),
        "{took:?}"
    );
}

/// The same waits through the asynchronous path (the continue timeout runs on the reactor).
#[test]
fn asynchronous_requests_wait_for_100_too() {
    let arrival = Arc::new(Mutex::new(Vec::new()));
    let a = Arc::clone(&arrival);
    let srv = ScriptServer::each(move |p: &mut Peer| {
        while let Some(req) = p.read_head() {
            let head_at = Instant::now();
            let answer_100 = req.path == "/with-100";
            if answer_100 {
                let early = p.read_body_bytes(1, Duration::from_millis(100));
                a.lock().unwrap().push(("early", early, head_at.elapsed()));
                p.write(b"HTTP/1.1 100 Continue\r\n\r\n");
                p.read_body_bytes(BODY.len() - early, Duration::from_secs(5));
            } else if !p.read_body(&req) {
                return;
            }
            a.lock().unwrap().push(("body", 0, head_at.elapsed()));
            if !p.answer(&req, b"ok") {
                return;
            }
        }
    });
    let m = manager_expecting(&srv.url("/"));
    let send = |path: &str| {
        let mut req = Request::new("POST", &srv.url(path)).unwrap();
        req.body = Body::Bytes(BODY.to_vec());
        let (tx, rx) = std::sync::mpsc::channel();
        m.send_async(
            Arc::new(req),
            servicepoint::cancel::CancelToken::new(),
            servicepoint::operation::Deliver::Runtime,
            move |r| {
                let _ = tx.send(r.map(|resp| resp.status()));
            },
        )
        .unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap()
    };
    assert_eq!(send("/with-100"), 200);
    assert_eq!(send("/silent"), 200);
    let seen = arrival.lock().unwrap();
    assert_eq!(seen[0].1, 0, "no body byte before the 100");
    let silent_wait = seen[2].2;
    assert!(
        silent_wait >= Duration::from_millis(300) && silent_wait < Duration::from_millis(1500),
        "{silent_wait:?}"
    );
}

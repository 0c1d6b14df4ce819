//! A whole exchange: a loopback server sends the fuzz input as its whole byte stream (then
//! closes), one request goes through a `Manager`, the body is read to the end, and the pool's
//! state after the response is dropped must be consistent with what the server said.
//!
//! Input: one byte of options, then the server's byte stream.
//!   bit 0: HEAD instead of GET          bit 1: max idle time infinite (-1)
//!   bit 2: keep-alive off               bit 3: read the body in pieces of 7 bytes
//!   bit 4: a second request afterwards (served a fixed valid response on a new connection)
#![no_main]

use libfuzzer_sys::fuzz_target;
use servicepoint::http1::body::{Framing, framing};
use servicepoint::http1::head::ResponseHead;
use servicepoint::{Manager, Request, Snapshot};
use servicepoint_fuzz::Server;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_millis(200);
const SECOND: &[u8] = b"HTTP/1.1 299 Fine\r\nContent-Length: 2\r\n\r\nok";

fn closed_total(s: &Snapshot) -> u64 {
    s.closed_lease
        + s.closed_idle
        + s.closed_keep_alive_off
        + s.closed_server
        + s.closed_stale
        + s.closed_error
        + s.closed_max_requests
        + s.closed_group
        + s.closed_abandoned
}

/// Gauges and counters agree with each other once no response is outstanding.
fn check_quiet(s: &Snapshot) {
    assert_eq!(s.busy, 0, "{s:?}");
    assert_eq!(s.waiting, 0, "{s:?}");
    assert_eq!(s.open, s.idle, "{s:?}");
    assert!(s.idle <= 1, "{s:?}");
    assert_eq!(s.open + closed_total(s), s.connections_opened, "{s:?}");
}

/// `Connection: close`, or HTTP/1.0 without `Connection: keep-alive` (an oracle written apart
/// from the library's `reuse` rules).
fn server_says_close(head: &ResponseHead) -> bool {
    let tokens: Vec<String> = head
        .all("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| String::from_utf8_lossy(t).trim().to_ascii_lowercase())
        .collect();
    let has = |t: &str| tokens.iter().any(|x| x == t);
    has("close") || (head.minor_version == 0 && !has("keep-alive"))
}

/// Why the connection must not be pooled after this response, if it must not.
fn must_close(method: &str, head: &ResponseHead, keep_alive: bool) -> Option<&'static str> {
    let te = head.get("transfer-encoding").is_some();
    if !keep_alive {
        Some("keep-alive off")
    } else if server_says_close(head) {
        Some("server said close")
    } else if framing(method, head).is_ok_and(|f| f == Framing::Close) {
        Some("close-delimited body")
    } else if head.minor_version == 0 && te {
        // RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
        Some("HTTP/1.0 with Transfer-Encoding")
    } else if head.keep_alive_hint().max == Some(0) {
        Some("Keep-Alive max=0")
    } else {
        None
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&opts, stream)) = input.split_first() else {
        return;
    };
    let method = if opts & 1 != 0 { "HEAD" } else { "GET" };
    let keep_alive = opts & 4 == 0;
    let second = opts & 16 != 0;
    let server = Server::get();
    server.set(vec![stream.to_vec(), SECOND.to_vec(), SECOND.to_vec()]);

    let manager = Manager::new();
    let url = server.url("/fuzz");
    let point = manager.find(&url).unwrap();
    if opts & 2 != 0 {
        point.set_max_idle_time(-1).unwrap();
    }
    let mut req = Request::new(method, &url).unwrap();
    req.timeout = Some(TIMEOUT);
    req.read_timeout = Some(TIMEOUT);
    req.keep_alive = Some(keep_alive);

    let mut outcome = None;
    match manager.send(&req) {
        Ok(mut resp) => {
            assert!(!resp.reused);
            assert!(!(100..200).contains(&resp.status()));
            let mut body = Vec::new();
            let read = if opts & 8 != 0 {
                let mut piece = [0u8; 7];
                loop {
                    match resp.read(&mut piece) {
                        Ok(0) => break Ok(()),
                        Ok(n) => body.extend_from_slice(&piece[..n]),
                        Err(e) => break Err(e),
                    }
                }
            } else {
                resp.read_to_end(&mut body)
            };
            if let Err(e) = &read {
                assert_ne!(
                    e.kind,
                    servicepoint::ErrorKind::ReadTimeout,
                    "{}",
                    e.message
                );
            }
            assert!(body.len() < stream.len());
            outcome = Some((resp.head.clone(), read.is_ok()));
            drop(resp);
        }
        Err(e) => {
            assert_ne!(
                e.kind,
                servicepoint::ErrorKind::ResponseTimeout,
                "{}",
                e.message
            );
            assert_ne!(
                e.kind,
                servicepoint::ErrorKind::QueueTimeout,
                "{}",
                e.message
            );
        }
    }

    let s = point.statistics();
    check_quiet(&s);
    assert_eq!(s.connections_opened, 1, "{s:?}");
    assert_eq!(s.retries, 0, "{s:?}");
    assert_eq!(s.requests, outcome.is_some() as u64, "{s:?}");
    if s.idle == 1 {
        let (head, complete) = outcome.as_ref().expect("pooled after a failed request");
        assert!(complete, "pooled with the body unread or broken: {s:?}");
        if let Some(why) = must_close(method, head, keep_alive) {
            panic!("connection pooled after a response it must close on: {why}\n{head:?}");
        }
    }

    if second {
        // A pooled connection the server has since closed must never surface as an error.
        let mut again = Request::new("GET", &url).unwrap();
        again.timeout = Some(Duration::from_secs(2));
        again.read_timeout = Some(Duration::from_secs(2));
        let mut resp = manager
            .send(&again)
            .unwrap_or_else(|e| panic!("second request: {:?}: {} ({s:?})", e.kind, e.message));
        let mut body = Vec::new();
        resp.read_to_end(&mut body).unwrap();
        assert_eq!((resp.status(), &body[..]), (299, &b"ok"[..]));
        drop(resp);
        let s2 = point.statistics();
        check_quiet(&s2);
    }
    drop(manager);
});

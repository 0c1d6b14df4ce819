//! Fault injection: a scripted loopback server misbehaves in one way per test (resets and
//! half-closes at every phase, bad framing, bad heads, floods, silence, early and extra
//! responses, closes racing reuse, absurd keep-alive parameters). Each test checks the exact
//! error kind (or the exact response, where the right behaviour is to succeed), then sends a
//! normal request on the same manager and checks it gets exactly its own body: the pool is not
//! wedged and no stray byte of the bad exchange leaks into the next response.

mod support;

use servicepoint::{Body, Error, ErrorKind, Manager, Request};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::script::{Peer, Script, ScriptServer, good_body, script};

/// Request timeout (to the response head) and body read timeout of every request here.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Slack allowed past a timeout on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(300);

type Outcome = servicepoint::Result<(u16, Vec<u8>)>;

fn req(method: &str, url: &str) -> Request {
    let mut r = Request::new(method, url).unwrap();
    r.timeout = Some(TIMEOUT);
    r.read_timeout = Some(TIMEOUT);
    r
}

/// Sends and reads the whole body.
fn exchange(m: &Manager, r: &Request) -> Outcome {
    let mut resp = m.send(r)?;
    let mut body = Vec::new();
    resp.read_to_end(&mut body)?;
    Ok((resp.status(), body))
}

fn get(m: &Manager, url: &str) -> Outcome {
    exchange(m, &req("GET", url))
}

fn post(m: &Manager, url: &str, body: Vec<u8>) -> Outcome {
    let mut r = req("POST", url);
    r.body = Body::Bytes(body);
    exchange(m, &r)
}

fn show(o: &Outcome) -> String {
    match o {
        Ok((s, b)) => format!("{s} {:?}", String::from_utf8_lossy(b)),
        Err(e) => format!("{:?}: {}", e.kind, e.message),
    }
}

#[track_caller]
fn expect_err(o: Outcome, kind: ErrorKind) -> Error {
    match o {
        Err(e) if e.kind == kind => e,
        other => panic!("expected {kind:?}, got {}", show(&other)),
    }
}

#[track_caller]
fn expect_ok(o: Outcome, status: u16, body: &[u8]) {
    match &o {
        Ok((s, b)) if *s == status && b == body => {}
        _ => panic!(
            "expected {status} {:?}, got {}",
            String::from_utf8_lossy(body),
            show(&o)
        ),
    }
}

/// The next, normal request on the same manager gets exactly its own body.
#[track_caller]
fn assert_next_ok(m: &Manager, srv: &ScriptServer) {
    expect_ok(get(m, &srv.url("/next")), 200, &good_body("/next"));
}

/// What a script does after writing its bytes.
#[derive(Clone, Copy)]
enum Then {
    /// Half-close, then wait for the client to close.
    Fin,
    /// Reset (after 50 ms, so the bytes written reach the client first).
    Rst,
    /// Keep serving well-behaved responses on the same connection: a client that wrongly
    /// reuses it reads whatever the bad exchange left behind.
    Serve,
    /// Keep the socket open, reading and discarding, until the client closes it.
    Hold,
}

fn then(p: &mut Peer, t: Then) {
    match t {
        Then::Fin => {
            p.fin();
            p.wait_eof(Duration::from_secs(5));
        }
        Then::Rst => {
            p.pause(Duration::from_millis(50));
            p.rst();
        }
        Then::Serve => p.serve_good(),
        Then::Hold => {
            p.wait_eof(Duration::from_secs(5));
        }
    }
}

/// Reads the request, writes `bytes`, then `t`.
fn answer(bytes: impl Into<Vec<u8>>, t: Then) -> Script {
    let bytes = bytes.into();
    script(move |p| {
        if p.read_request().is_some() {
            p.write(&bytes);
            then(p, t);
        }
    })
}

/// Serves one request well, then `after` on the same connection.
fn good_then(after: impl FnOnce(&mut Peer) + Send + 'static) -> Script {
    script(move |p| {
        if let Some(r) = p.read_request() {
            p.answer_good(&r);
            after(p);
        }
    })
}

/// The common case: GET /bad on a fresh connection fails with `kind`, the request is known to
/// have reached the server, and the next request works.
#[track_caller]
fn bad_exchange(bytes: impl Into<Vec<u8>>, t: Then, kind: ErrorKind) -> ScriptServer {
    let srv = ScriptServer::start(vec![answer(bytes, t)]);
    let m = Manager::new();
    let e = expect_err(get(&m, &srv.url("/bad")), kind);
    assert_next_ok(&m, &srv);
    assert!(
        e.may_have_reached_server,
        "the request was sent, yet may_have_reached_server is false: {}",
        e.message
    );
    srv
}

fn ok_head(headers: &str) -> String {
    format!("HTTP/1.1 200 OK\r\n{headers}\r\n")
}

fn chunked(rest: &str) -> String {
    ok_head("Transfer-Encoding: chunked\r\n") + rest
}

// ---- resets (RST) at each phase ----

#[test]
fn rst_before_any_byte() {
    bad_exchange("", Then::Rst, ErrorKind::ConnectionReset);
}

#[test]
fn rst_mid_status_line() {
    bad_exchange("HTTP/1.1 2", Then::Rst, ErrorKind::ConnectionReset);
}

#[test]
fn rst_mid_headers() {
    bad_exchange(
        "HTTP/1.1 200 OK\r\nContent-Le",
        Then::Rst,
        ErrorKind::ConnectionReset,
    );
}

#[test]
fn rst_mid_body_content_length() {
    bad_exchange(
        ok_head("Content-Length: 100\r\n") + "half",
        Then::Rst,
        ErrorKind::ConnectionReset,
    );
}

#[test]
fn rst_between_chunks() {
    bad_exchange(
        chunked("5\r\nhello\r\n"),
        Then::Rst,
        ErrorKind::ConnectionReset,
    );
}

#[test]
fn rst_inside_chunk_data() {
    bad_exchange(chunked("a\r\nhel"), Then::Rst, ErrorKind::ConnectionReset);
}

#[test]
fn rst_inside_trailers() {
    bad_exchange(
        chunked("5\r\nhello\r\n0\r\nX-Trailer: 1\r\n"),
        Then::Rst,
        ErrorKind::ConnectionReset,
    );
}

// ---- half-close (FIN) at each phase ----

#[test]
fn fin_before_any_byte() {
    bad_exchange("", Then::Fin, ErrorKind::ConnectionClosed);
}

#[test]
fn fin_mid_status_line() {
    bad_exchange("HTTP/1.1 2", Then::Fin, ErrorKind::ConnectionClosed);
}

#[test]
fn fin_mid_headers() {
    bad_exchange(
        "HTTP/1.1 200 OK\r\nContent-Le",
        Then::Fin,
        ErrorKind::ConnectionClosed,
    );
}

#[test]
fn fin_truncated_content_length_body() {
    bad_exchange(
        ok_head("Content-Length: 100\r\n") + "half",
        Then::Fin,
        ErrorKind::ConnectionClosed,
    );
}

#[test]
fn fin_chunked_without_terminator() {
    bad_exchange(
        chunked("5\r\nhello\r\n"),
        Then::Fin,
        ErrorKind::ConnectionClosed,
    );
}

#[test]
fn fin_inside_chunk_data() {
    bad_exchange(chunked("a\r\nhel"), Then::Fin, ErrorKind::ConnectionClosed);
}

#[test]
fn fin_before_final_crlf_of_trailers() {
    bad_exchange(
        chunked("5\r\nhello\r\n0\r\n"),
        Then::Fin,
        ErrorKind::ConnectionClosed,
    );
}

// ---- the idle connection goes bad before reuse, or closes racing the reuse ----

/// Serves /a well, then `after`; the client sends /a, waits 300 ms, sends /next.
fn reuse_case(after: impl FnOnce(&mut Peer) + Send + 'static) -> (ScriptServer, Manager) {
    let srv = ScriptServer::start(vec![good_then(after)]);
    let m = Manager::new();
    expect_ok(get(&m, &srv.url("/a")), 200, &good_body("/a"));
    std::thread::sleep(Duration::from_millis(300));
    assert_next_ok(&m, &srv);
    (srv, m)
}

#[test]
fn rst_while_idle_before_reuse() {
    let (srv, _m) = reuse_case(|p| {
        p.pause(Duration::from_millis(100));
        p.rst();
    });
    assert_eq!(srv.connections(), 2);
    assert_eq!(srv.paths_on(1), ["/next"]);
}

#[test]
fn fin_while_idle_before_reuse() {
    let (srv, _m) = reuse_case(|p| {
        p.pause(Duration::from_millis(100));
        p.fin();
        p.wait_eof(Duration::from_secs(5));
    });
    assert_eq!(srv.connections(), 2);
    assert_eq!(srv.paths_on(1), ["/next"]);
}

#[test]
fn stray_response_while_idle_is_not_read_as_next_response() {
    let (srv, _m) = reuse_case(|p| {
        p.pause(Duration::from_millis(100));
        p.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSTALE");
        p.serve_good();
    });
    assert_eq!(srv.connections(), 2);
    assert!(srv.paths_on(0) == ["/a"], "{:?}", srv.paths_on(0));
}

/// Serves /a, reads the next request on the same connection, then closes it (RST or FIN)
/// without answering: the server closing an idle connection just as the client reuses it.
fn close_on_reuse(rst: bool) -> Script {
    good_then(move |p| {
        if p.read_request().is_some() {
            if rst {
                p.rst();
            } else {
                p.fin();
                p.wait_eof(Duration::from_secs(5));
            }
        }
    })
}

fn reuse_race_get(rst: bool) {
    let srv = ScriptServer::start(vec![close_on_reuse(rst)]);
    let m = Manager::new();
    let url = srv.url("/a");
    expect_ok(get(&m, &url), 200, &good_body("/a"));
    // Idempotent: retried transparently on a new connection.
    expect_ok(get(&m, &srv.url("/again")), 200, &good_body("/again"));
    assert_eq!(srv.paths_on(0), ["/a", "/again"]);
    assert_eq!(srv.paths_on(1), ["/again"]);
    assert_eq!(m.find(&url).unwrap().statistics().retries, 1);
    assert_next_ok(&m, &srv);
}

#[test]
fn reuse_race_rst_get_is_retried() {
    reuse_race_get(true);
}

#[test]
fn reuse_race_fin_get_is_retried() {
    reuse_race_get(false);
}

fn reuse_race_post(rst: bool, retryable: bool) {
    let srv = ScriptServer::start(vec![close_on_reuse(rst)]);
    let m = Manager::new();
    let url = srv.url("/a");
    expect_ok(get(&m, &url), 200, &good_body("/a"));
    let mut r = req("POST", &srv.url("/post"));
    r.body = Body::Bytes(b"data".to_vec());
    r.retryable = retryable;
    let outcome = exchange(&m, &r);
    if retryable {
        expect_ok(outcome, 200, &good_body("/post"));
        assert_eq!(srv.paths_on(1), ["/post"]);
    } else {
        let kind = if rst {
            ErrorKind::ConnectionReset
        } else {
            ErrorKind::ConnectionClosed
        };
        let e = expect_err(outcome, kind);
        assert!(e.may_have_reached_server, "{}", e.message);
        // Not retried: the server saw the POST once.
        let posts = srv.requests().iter().filter(|r| r.path == "/post").count();
        assert_eq!(posts, 1);
        assert_eq!(srv.connections(), 1);
    }
    assert_next_ok(&m, &srv);
}

#[test]
fn reuse_race_rst_post_fails_and_may_have_reached_server() {
    reuse_race_post(true, false);
}

#[test]
fn reuse_race_fin_post_fails_and_may_have_reached_server() {
    reuse_race_post(false, false);
}

#[test]
fn reuse_race_retryable_post_is_retried() {
    reuse_race_post(true, true);
}

// ---- chunked framing ----

fn bad_chunk_size(size: &str) {
    bad_exchange(
        chunked(&format!("{size}\r\nhello\r\n0\r\n\r\n")),
        Then::Serve,
        ErrorKind::Protocol,
    );
}

#[test]
fn chunk_size_not_hex() {
    bad_chunk_size("zz");
}

#[test]
fn chunk_size_with_plus_sign() {
    bad_chunk_size("+5");
}

#[test]
fn chunk_size_negative() {
    bad_chunk_size("-1");
}

#[test]
fn chunk_size_overflowing() {
    bad_chunk_size("ffffffffffffffffff");
}

#[test]
fn chunk_size_with_inner_space() {
    bad_chunk_size("5 5");
}

#[test]
fn chunk_size_with_0x_prefix() {
    bad_chunk_size("0x5");
}

#[test]
fn chunk_data_without_crlf() {
    bad_exchange(
        chunked("5\r\nhelloXX0\r\n\r\n"),
        Then::Serve,
        ErrorKind::Protocol,
    );
}

#[test]
fn chunk_line_too_long() {
    let ext = "x".repeat(8000);
    bad_exchange(
        chunked(&format!("5;{ext}\r\nhello\r\n0\r\n\r\n")),
        Then::Serve,
        ErrorKind::Protocol,
    );
}

#[test]
fn trailer_without_colon() {
    bad_exchange(
        chunked("5\r\nhello\r\n0\r\nnot a field\r\n\r\n"),
        Then::Serve,
        ErrorKind::Protocol,
    );
}

// ---- Content-Length ----

fn bad_length(headers: &str) {
    bad_exchange(ok_head(headers) + "hello", Then::Serve, ErrorKind::Protocol);
}

#[test]
fn content_length_conflicting_fields() {
    bad_length("Content-Length: 5\r\nContent-Length: 6\r\n");
}

#[test]
fn content_length_conflicting_list() {
    bad_length("Content-Length: 5, 6\r\n");
}

#[test]
fn content_length_negative() {
    bad_length("Content-Length: -1\r\n");
}

#[test]
fn content_length_with_plus_sign() {
    bad_length("Content-Length: +5\r\n");
}

#[test]
fn content_length_overflowing() {
    bad_length("Content-Length: 99999999999999999999999\r\n");
}

#[test]
fn content_length_with_inner_space() {
    bad_length("Content-Length: 5 5\r\n");
}

// ---- response head ----

fn bad_head(bytes: impl Into<Vec<u8>>) {
    bad_exchange(bytes, Then::Serve, ErrorKind::Protocol);
}

#[test]
fn status_code_not_numeric() {
    bad_head("HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n");
}

#[test]
fn status_code_four_digits() {
    bad_head("HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n");
}

#[test]
fn status_line_garbage() {
    bad_head("hello world\r\n\r\n");
}

#[test]
fn http_2_0_status_line() {
    bad_head("HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

#[test]
fn http_0_9_answer_without_status_line() {
    bad_exchange("<html>hello</html>\n", Then::Fin, ErrorKind::Protocol);
}

#[test]
fn header_without_colon() {
    bad_head("HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\nok");
}

#[test]
fn header_obs_fold() {
    bad_head("HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 2\r\n\r\nok");
}

#[test]
fn header_value_with_nul() {
    bad_head(b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\nok".to_vec());
}

#[test]
fn head_over_64_kib() {
    let mut head = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..70 {
        head.push_str(&format!("X-Pad-{i}: {}\r\n", "p".repeat(1000)));
    }
    head.push_str("Content-Length: 2\r\n\r\nok");
    bad_head(head);
}

#[test]
fn more_than_100_headers() {
    let mut head = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..101 {
        head.push_str(&format!("X-H-{i}: v\r\n"));
    }
    head.push_str("Content-Length: 2\r\n\r\nok");
    bad_head(head);
}

#[test]
fn switching_protocols_101() {
    bad_head(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
}

// ---- floods, trickles, silence: the request timeout is wall-clock ----

/// GET /slow with a 1 s request timeout fails with `kind` at 1 s (not before, not much
/// after); then the next request works.
fn times_out(s: Script, kind: ErrorKind) {
    let srv = ScriptServer::start(vec![s]);
    let m = Manager::new();
    let mut r = req("GET", &srv.url("/slow"));
    let limit = Duration::from_secs(1);
    r.timeout = Some(limit);
    r.read_timeout = Some(limit);
    let start = Instant::now();
    let outcome = exchange(&m, &r);
    let took = start.elapsed();
    let e = expect_err(outcome, kind);
    assert!(
        took >= limit - Duration::from_millis(20) && took <= limit + SLACK,
        "ended after {took:?}, the timeout is {limit:?}: {}",
        e.message
    );
    assert_next_ok(&m, &srv);
}

#[test]
fn endless_100_continue_flood_ends_at_request_timeout() {
    times_out(
        script(|p| {
            if p.read_request().is_some() {
                p.flood(b"HTTP/1.1 100 Continue\r\n\r\n", Duration::from_secs(5));
            }
        }),
        ErrorKind::ResponseTimeout,
    );
}

#[test]
fn trickled_head_ends_at_request_timeout() {
    let head = ok_head(&format!(
        "X-Pad: {}\r\nContent-Length: 2\r\n",
        "p".repeat(100)
    )) + "ok";
    times_out(
        script(move |p| {
            if p.read_request().is_some() {
                p.trickle(head.as_bytes(), Duration::from_millis(50));
            }
        }),
        ErrorKind::ResponseTimeout,
    );
}

#[test]
fn silence_after_request_is_a_response_timeout() {
    times_out(
        script(|p| {
            if p.read_request().is_some() {
                p.wait_eof(Duration::from_secs(5));
            }
        }),
        ErrorKind::ResponseTimeout,
    );
}

#[test]
fn silence_mid_body_is_a_read_timeout() {
    times_out(
        answer(ok_head("Content-Length: 10\r\n") + "abc", Then::Hold),
        ErrorKind::ReadTimeout,
    );
}

#[test]
fn manager_close_ends_a_waiting_request_within_100_ms() {
    let srv = ScriptServer::start(vec![script(|p| {
        if p.read_request().is_some() {
            p.wait_eof(Duration::from_secs(5));
        }
    })]);
    let m = Arc::new(Manager::new());
    let url = srv.url("/hang");
    let waiter = {
        let m = m.clone();
        std::thread::spawn(move || {
            let mut r = req("GET", &url);
            r.timeout = Some(Duration::from_secs(3));
            let outcome = exchange(&m, &r);
            (outcome, Instant::now())
        })
    };
    assert!(srv.wait_until(Duration::from_secs(2), |s| !s.requests().is_empty()));
    std::thread::sleep(Duration::from_millis(50));
    let closed_at = Instant::now();
    m.close();
    let (outcome, ended) = waiter.join().unwrap();
    let e = expect_err(outcome, ErrorKind::ManagerClosed);
    let after = ended.duration_since(closed_at);
    assert!(
        after <= Duration::from_millis(100) + SLACK / 2,
        "ended {after:?} after the close: {}",
        e.message
    );
    // A closed manager refuses new requests with the same code.
    expect_err(get(&m, &srv.url("/next")), ErrorKind::ManagerClosed);
}

// ---- early final responses and uploads cut short ----

const TOO_BIG: &[u8] =
    b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!";

/// The server reads the head and 16 KiB of a large POST, answers 413 and stops reading;
/// then `t` (Fin: half-close and hold without reading; Rst: reset after 200 ms; None: plain
/// close, which the kernel turns into RST because the upload is unread).
fn early_413(t: Option<Then>) {
    let srv = ScriptServer::start(vec![script(move |p| {
        if p.read_head().is_none() {
            return;
        }
        p.read_body_bytes(16 * 1024, Duration::from_millis(500));
        p.write(TOO_BIG);
        match t {
            Some(Then::Fin) => {
                p.fin();
                p.hold_unread(Duration::from_secs(3));
            }
            Some(_) => {
                p.pause(Duration::from_millis(200));
                p.rst();
            }
            None => p.close(),
        }
    })]);
    let m = Manager::new();
    let outcome = post(&m, &srv.url("/upload"), vec![b'x'; 32 << 20]);
    expect_ok(outcome, 413, b"too big!");
    assert_next_ok(&m, &srv);
    assert_eq!(srv.paths_on(1), ["/next"]);
}

#[test]
fn early_413_then_half_close_without_reading() {
    early_413(Some(Then::Fin));
}

#[test]
fn early_413_then_close_with_unread_upload() {
    early_413(None);
}

#[test]
fn early_413_then_reset() {
    early_413(Some(Then::Rst));
}

#[test]
fn reset_during_large_upload() {
    let srv = ScriptServer::start(vec![script(|p| {
        if p.read_head().is_some() {
            p.read_body_bytes(64 * 1024, Duration::from_millis(500));
            p.rst();
        }
    })]);
    let m = Manager::new();
    let e = expect_err(
        post(&m, &srv.url("/upload"), vec![b'x'; 32 << 20]),
        ErrorKind::ConnectionReset,
    );
    assert_next_ok(&m, &srv);
    assert!(srv.body_bytes(0) > 0);
    assert!(
        e.may_have_reached_server,
        "the server read part of the body, yet may_have_reached_server is false: {}",
        e.message
    );
}

// ---- extra, split and stray responses ----

/// The bad exchange's connection (0) served /bad only; /next came on a new connection.
#[track_caller]
fn assert_not_reused(srv: &ScriptServer) {
    assert_eq!(
        srv.paths_on(0),
        ["/bad"],
        "the connection of the bad exchange was reused"
    );
    assert_eq!(srv.paths_on(1), ["/next"]);
}

/// GET /bad gets `status` and `body`; the connection must not be reused afterwards (the next
/// request arrives on a second connection and gets its own body).
fn then_not_reused(method: &str, bytes: impl Into<Vec<u8>>, status: u16, body: &[u8]) {
    let srv = ScriptServer::start(vec![answer(bytes, Then::Serve)]);
    let m = Manager::new();
    expect_ok(exchange(&m, &req(method, &srv.url("/bad"))), status, body);
    assert_next_ok(&m, &srv);
    assert_not_reused(&srv);
}

#[test]
fn extra_bytes_after_complete_response() {
    then_not_reused(
        "GET",
        ok_head("Content-Length: 2\r\n") + "okGARBAGE",
        200,
        b"ok",
    );
}

#[test]
fn two_responses_in_one_write_for_one_request() {
    then_not_reused(
        "GET",
        ok_head("Content-Length: 2\r\n") + "ok" + &ok_head("Content-Length: 5\r\n") + "STALE",
        200,
        b"ok",
    );
}

#[test]
fn body_after_204() {
    then_not_reused("GET", "HTTP/1.1 204 No Content\r\n\r\nSTRAY", 204, b"");
}

#[test]
fn body_after_head_response() {
    then_not_reused("HEAD", ok_head("Content-Length: 5\r\n") + "STRAY", 200, b"");
}

#[test]
fn http_1_0_response_with_transfer_encoding_is_not_reused() {
    let srv = ScriptServer::start(vec![answer(
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Then::Serve,
    )]);
    let m = Manager::new();
    // Faulty framing: the body may be delivered or refused, but the connection is done.
    let _ = get(&m, &srv.url("/bad"));
    assert_next_ok(&m, &srv);
    assert_not_reused(&srv);
}

#[test]
fn response_split_into_one_byte_writes() {
    let bytes = chunked("5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n");
    let srv = ScriptServer::start(vec![script(move |p| {
        if p.read_request().is_some() {
            p.trickle(bytes.as_bytes(), Duration::from_millis(1));
            p.serve_good();
        }
    })]);
    let m = Manager::new();
    expect_ok(get(&m, &srv.url("/split")), 200, b"hello world");
    assert_next_ok(&m, &srv);
    // A clean response: the connection is reused.
    assert_eq!(srv.paths_on(0), ["/split", "/next"]);
}

// ---- keep-alive parameters and Connection: close ----

fn absurd_keep_alive_timeout(value: &str) {
    let srv = ScriptServer::start(vec![answer(
        ok_head(&format!(
            "Keep-Alive: timeout={value}\r\nContent-Length: 2\r\n"
        )) + "ok",
        Then::Serve,
    )]);
    let m = Manager::new();
    let point = m.find(&srv.url("/")).unwrap();
    point.set_max_idle_time(-1).unwrap();
    // One connection: a leaked slot would wedge the next request.
    point.set_connection_limit(1).unwrap();
    let first =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| get(&m, &srv.url("/bad"))));
    let next =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| get(&m, &srv.url("/next"))));
    match first {
        Ok(o) => expect_ok(o, 200, b"ok"),
        Err(_) => panic!("Keep-Alive: timeout={value} panicked the client"),
    }
    match next {
        Ok(o) => expect_ok(o, 200, &good_body("/next")),
        Err(_) => panic!("the request after Keep-Alive: timeout={value} panicked"),
    }
}

#[test]
fn keep_alive_timeout_u64_max_with_infinite_idle() {
    absurd_keep_alive_timeout("18446744073709551615");
}

#[test]
fn keep_alive_timeout_i64_max_with_infinite_idle() {
    absurd_keep_alive_timeout("9223372036854775807");
}

#[test]
fn keep_alive_max_zero_is_not_reused() {
    then_not_reused(
        "GET",
        ok_head("Keep-Alive: timeout=5, max=0\r\nContent-Length: 2\r\n") + "ok",
        200,
        b"ok",
    );
}

#[test]
fn connection_close_then_server_keeps_socket_open() {
    let srv = ScriptServer::start(vec![answer(
        ok_head("Connection: close\r\nContent-Length: 2\r\n") + "ok",
        Then::Hold,
    )]);
    let m = Manager::new();
    let start = Instant::now();
    expect_ok(get(&m, &srv.url("/bad")), 200, b"ok");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_next_ok(&m, &srv);
    assert_eq!(srv.paths_on(1), ["/next"]);
    // The client closed the connection itself.
    assert!(srv.wait_until(Duration::from_secs(2), |s| s.finished() >= 1));
}

// ---- request side: header values with control characters ----

#[test]
fn request_header_values_with_control_characters_are_refused() {
    let srv = ScriptServer::start(Vec::new());
    let mut r = req("GET", &srv.url("/next"));
    for bad in [
        &b"a\x01b"[..],
        b"a\x1bb",
        b"a\x7fb",
        b"a\0b",
        b"a\rb",
        b"a\nb",
    ] {
        match r.add_header("X-Bad", bad) {
            Err(e) => assert_eq!(e.kind, ErrorKind::InvalidArgument, "{bad:?}: {}", e.message),
            Ok(()) => panic!("header value {bad:?} was accepted"),
        }
    }
    r.add_header("X-Tab", b"a\tb").unwrap();
    let m = Manager::new();
    expect_ok(exchange(&m, &r), 200, &good_body("/next"));
    assert_eq!(srv.requests()[0].header("x-tab").as_deref(), Some("a\tb"));
    assert!(srv.requests()[0].header("x-bad").is_none());
}

// ---- SIGPIPE never kills the host ----
//
// The Rust test harness ignores SIGPIPE, as every Rust program does; a C host does not. So
// the scenarios run in a child process (this test binary, filtered to `sigpipe_child`) that
// restores the default action first: a write to a reset socket without MSG_NOSIGNAL kills it.

struct Endless(usize);

/// How the server ends an upload it cut short.
type Ending = fn(&mut Peer);

impl servicepoint::BodySource for Endless {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        let n = buf.len().min(self.0);
        buf[..n].fill(b's');
        self.0 -= n;
        Ok(n)
    }
}

/// Reads the head and a little of the upload, then `end`.
fn upload_cut(end: Ending) -> Script {
    script(move |p| {
        if p.read_head().is_some() {
            p.read_body_bytes(16 * 1024, Duration::from_millis(500));
            end(p);
        }
    })
}

/// Runs only in the child process (see `sigpipe_does_not_kill_the_host`).
#[test]
fn sigpipe_child() {
    if std::env::var_os("FAULTS_SIGPIPE_CHILD").is_none() {
        return;
    }
    // SAFETY: restores the default disposition of one signal; no handler involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // A socket that got the server's FIN (CLOSE_WAIT) and then its RST reports EPIPE to the
    // next write: without MSG_NOSIGNAL that write raises SIGPIPE. FIN-then-RST does it every
    // time; a close with the upload unread does it when the server's queue happened to be
    // empty (FIN first, RST for the bytes after).
    let fin_then_rst = |p: &mut Peer| {
        p.fin();
        p.pause(Duration::from_millis(50));
        p.rst();
    };
    let cases: [(&str, Ending); 6] = [
        ("reset", |p| p.rst()),
        ("close unread", |p| p.close()),
        ("FIN then reset", fin_then_rst),
        ("413, FIN, then reset", |p| {
            p.write(TOO_BIG);
            p.fin();
            p.pause(Duration::from_millis(50));
            p.rst();
        }),
        ("413 then reset", |p| {
            p.write(TOO_BIG);
            p.pause(Duration::from_millis(100));
            p.rst();
        }),
        ("413 then close", |p| {
            p.write(TOO_BIG);
            p.close();
        }),
    ];
    for round in 0..2 {
        for (name, end) in cases {
            for streamed in [false, true] {
                println!("sigpipe_child: round {round}, streamed {streamed}, server: {name}");
                let srv = ScriptServer::start(vec![upload_cut(end)]);
                let m = Manager::new();
                let mut r = req("POST", &srv.url("/upload"));
                r.body = if streamed {
                    Body::stream(Box::new(Endless(32 << 20)))
                } else {
                    Body::Bytes(vec![b'x'; 32 << 20])
                };
                let _ = exchange(&m, &r);
            }
        }
    }
    println!("sigpipe_child: survived");
}

#[test]
fn sigpipe_does_not_kill_the_host() {
    use std::os::unix::process::ExitStatusExt;
    if std::env::var_os("FAULTS_SIGPIPE_CHILD").is_some() {
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "sigpipe_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FAULTS_SIGPIPE_CHILD", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child process did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert_ne!(
        status.signal(),
        Some(libc::SIGPIPE),
        "SIGPIPE killed the host process; its progress:\n{out}"
    );
    assert!(status.success(), "child failed: {status:?}\n{out}");
    assert!(out.contains("sigpipe_child: survived"), "{out}");
}

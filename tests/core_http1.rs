//! The core over real loopback sockets: reuse, body framing, release rules and protocol
//! errors, each checked against what the test server observed.

mod support;

use servicepoint::{ErrorKind, Manager, Request, Response};
use std::time::Duration;
use support::{Reply, TestServer, pattern};

fn get(m: &Manager, url: &str) -> Response {
    let req = Request::new("GET", url).unwrap();
    m.send(&req).unwrap()
}

fn body(resp: &mut Response) -> Vec<u8> {
    let mut out = Vec::new();
    resp.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn twenty_sequential_gets_reuse_one_connection() {
    let server = TestServer::start(|r| Reply::ok(format!("hello {}", r.path)));
    let m = Manager::new();
    let mut ids = Vec::new();
    for i in 0..20 {
        let mut resp = get(&m, &server.url(&format!("/r{i}")));
        assert_eq!(resp.status(), 200);
        assert_eq!(body(&mut resp), format!("hello /r{i}").into_bytes());
        ids.push(resp.connection_id);
    }
    assert_eq!(
        server.connection_count(),
        1,
        "server saw {:?}",
        server.connections()
    );
    assert_eq!(server.connections()[0].requests, 20);
    assert!(ids.iter().all(|&id| id == ids[0]));
    let stats = m.find(&server.url("/")).unwrap().statistics();
    assert_eq!(
        (stats.connections_opened, stats.reuses, stats.requests),
        (1, 19, 20)
    );
    // The request head the server received.
    let first = &server.requests()[0];
    assert_eq!(
        first.header("host"),
        Some(format!("127.0.0.1:{}", server.port).as_str())
    );
    assert!(
        first
            .header("user-agent")
            .unwrap()
            .starts_with("servicepoint/")
    );
    // Keep-alive is announced on a connection's first request (so servers such as Apache
    // announce their Keep-Alive hints), not repeated after.
    assert_eq!(first.header("connection"), Some("keep-alive"));
    assert!(
        server.requests()[1..]
            .iter()
            .all(|r| r.header("connection").is_none())
    );
}

#[test]
fn response_freed_before_its_body_does_not_corrupt_the_next_request() {
    let big = pattern(1 << 20);
    let small = pattern(1000);
    let (b2, s2) = (big.clone(), small.clone());
    let server = TestServer::start(move |r| match r.path.as_str() {
        "/big" => Reply::ok(b2.clone()),
        "/small" => Reply::ok(s2.clone()),
        _ => Reply::ok("next"),
    });
    let m = Manager::new();
    // Small unread remainder: drained, the connection is reused.
    drop(get(&m, &server.url("/small")));
    let mut resp = get(&m, &server.url("/after-small"));
    assert_eq!(body(&mut resp), b"next");
    assert!(resp.reused);
    // Large unread remainder (1 MiB): the connection is closed, the next request is clean.
    let mut resp = get(&m, &server.url("/big"));
    let mut first = [0u8; 10];
    resp.read(&mut first).unwrap();
    drop(resp);
    let mut resp = get(&m, &server.url("/after-big"));
    assert_eq!(body(&mut resp), b"next");
    assert!(!resp.reused);
    assert_eq!(server.connection_count(), 2);
    let stats = m.find(&server.url("/")).unwrap().statistics();
    assert_eq!(stats.closed_abandoned, 1);
}

#[test]
fn bodies_arrive_byte_exact_in_every_framing() {
    let data = pattern(300_000);
    let pieces: Vec<Vec<u8>> = data.chunks(7777).map(|c| c.to_vec()).collect();
    let d = data.clone();
    let server = TestServer::start(move |r| match r.path.as_str() {
        "/length" => Reply::ok(d.clone()),
        "/chunked" => Reply::Chunked(pieces.clone(), vec![("X-Checksum".into(), "abc".into())]),
        "/close" => Reply::CloseDelimited(d.clone()),
        _ => Reply::ok(""),
    });
    let m = Manager::new();
    for path in ["/length", "/chunked", "/close"] {
        let mut resp = get(&m, &server.url(path));
        let mut got = Vec::new();
        let mut buf = [0u8; 1000];
        loop {
            let n = resp.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got.len(), data.len(), "{path}");
        assert!(got == data, "{path} differs");
        if path == "/chunked" {
            assert_eq!(resp.trailers().at(0), Some(("X-Checksum", &b"abc"[..])));
        }
    }
    // Close-delimited bodies end the connection; the others were reused.
    assert_eq!(server.connection_count(), 1);
    body(&mut get(&m, &server.url("/after")));
    assert_eq!(server.connection_count(), 2);
    let stats = m.find(&server.url("/")).unwrap().statistics();
    assert_eq!(stats.closed_server, 1);
}

#[test]
fn ten_mib_body_streams_in_small_reads() {
    const SIZE: usize = 10 << 20;
    let data = std::sync::Arc::new(pattern(SIZE));
    let d = data.clone();
    let server = TestServer::start(move |_| Reply::ok(d.to_vec()));
    let m = Manager::new();
    let mut resp = get(&m, &server.url("/ten"));
    let mut buf = [0u8; 1500];
    let mut offset = 0usize;
    let mut reads = 0u32;
    loop {
        let n = resp.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n] == data[offset..offset + n], "mismatch at {offset}");
        offset += n;
        reads += 1;
        assert!(reads < 100_000, "bounded");
    }
    assert_eq!(offset, SIZE);
    assert!(resp.is_complete());
}

#[test]
fn no_body_for_head_204_304_and_interim_responses_are_skipped() {
    let server = TestServer::start(|r| match r.path.as_str() {
        "/204" => Reply::Length(204, vec![], vec![]),
        "/304" => Reply::Length(304, vec![], vec![]),
        "/100" => Reply::Raw(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            false,
        ),
        _ => Reply::ok("body for GET"),
    });
    let m = Manager::new();
    let req = Request::new("HEAD", &server.url("/head")).unwrap();
    let mut resp = m.send(&req).unwrap();
    assert_eq!(resp.head.get("content-length"), Some(&b"12"[..]));
    assert_eq!(body(&mut resp), b"");
    for path in ["/204", "/304"] {
        let mut resp = get(&m, &server.url(path));
        assert_eq!(body(&mut resp), b"", "{path}");
    }
    let mut resp = get(&m, &server.url("/100"));
    assert_eq!(resp.status(), 200);
    assert_eq!(body(&mut resp), b"ok");
    // All of them on one connection: no body was mistaken for the next head.
    let mut resp = get(&m, &server.url("/last"));
    assert_eq!(body(&mut resp), b"body for GET");
    assert_eq!(server.connection_count(), 1);
}

#[test]
fn headers_keep_wire_order_and_repeats() {
    let server = TestServer::start(|_| {
        Reply::with_headers(
            200,
            &[("Set-Cookie", "a=1"), ("X-One", "1"), ("set-cookie", "b=2")],
            "x",
        )
    });
    let m = Manager::new();
    let resp = get(&m, &server.url("/"));
    let cookies: Vec<_> = resp.head.all("SET-COOKIE").collect();
    assert_eq!(cookies, vec![&b"a=1"[..], &b"b=2"[..]]);
    let names: Vec<_> = resp.head.headers.iter().map(|(name, _)| name).collect();
    assert_eq!(&names[..3], &["Set-Cookie", "X-One", "set-cookie"]);
}

#[test]
fn server_close_and_http10_are_not_reused() {
    let server = TestServer::start(|r| match r.path.as_str() {
        "/close" => Reply::with_headers(200, &[("Connection", "close")], "c"),
        "/http10" => Reply::Raw(
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n10".to_vec(),
            true,
        ),
        "/http10ka" => Reply::Raw(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nka".to_vec(),
            false,
        ),
        _ => Reply::ok("x"),
    });
    let m = Manager::new();
    for path in ["/close", "/http10", "/http10ka", "/x"] {
        let mut resp = get(&m, &server.url(path));
        body(&mut resp);
    }
    // /close and /http10 each ended their connection; /http10ka kept it for /x.
    assert_eq!(server.connection_count(), 3);
    assert_eq!(server.connections()[2].requests, 2);
    let stats = m.find(&server.url("/")).unwrap().statistics();
    assert_eq!(stats.closed_server, 2);
}

#[test]
fn request_bodies_with_length_and_chunked() {
    struct Pieces(Vec<Vec<u8>>);
    impl servicepoint::BodySource for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let p = self.0.remove(0);
            buf[..p.len()].copy_from_slice(&p);
            Ok(p.len())
        }
    }
    let server = TestServer::start(|r| Reply::ok(r.body.clone()));
    let m = Manager::new();
    let mut req = Request::new("POST", &server.url("/echo")).unwrap();
    req.body = servicepoint::Body::Bytes(b"hello body".to_vec());
    let mut resp = m.send(&req).unwrap();
    assert_eq!(body(&mut resp), b"hello body");
    let mut req = Request::new("PUT", &server.url("/echo")).unwrap();
    let pieces = Pieces(vec![b"ab".to_vec(), b"cde".to_vec()]);
    req.body = servicepoint::Body::stream(Box::new(pieces));
    let mut resp = m.send(&req).unwrap();
    assert_eq!(body(&mut resp), b"abcde");
    let reqs = server.requests();
    assert_eq!(reqs[0].header("content-length"), Some("10"));
    assert_eq!(reqs[1].header("transfer-encoding"), Some("chunked"));
    // Empty POST announces its empty body.
    let req = Request::new("POST", &server.url("/echo")).unwrap();
    body(&mut m.send(&req).unwrap());
    assert_eq!(server.requests()[2].header("content-length"), Some("0"));
}

fn send_err(m: &Manager, url: &str) -> servicepoint::Error {
    let req = Request::new("GET", url).unwrap();
    match m.send(&req) {
        Ok(mut resp) => {
            let mut sink = Vec::new();
            resp.read_to_end(&mut sink)
                .expect_err("expected a body error")
        }
        Err(e) => e,
    }
}

#[test]
fn malformed_responses_are_protocol_errors() {
    let many_headers: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_head = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let server = TestServer::start(move |r| match r.path.as_str() {
        "/garbage" => Reply::Raw(b"HTTP/1.1 abc\r\n\r\n".to_vec(), true),
        "/not-http" => Reply::Raw(b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(), true),
        "/headers" => Reply::Raw(
            format!("HTTP/1.1 200 OK\r\n{many_headers}\r\n").into_bytes(),
            true,
        ),
        "/huge" => Reply::Raw(huge_head.clone().into_bytes(), true),
        "/cl" => Reply::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc".to_vec(),
            true,
        ),
        "/chunk" => Reply::Raw(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            true,
        ),
        _ => Reply::ok("ok"),
    });
    let m = Manager::new();
    for path in [
        "/garbage",
        "/not-http",
        "/headers",
        "/huge",
        "/cl",
        "/chunk",
    ] {
        let e = send_err(&m, &server.url(path));
        assert_eq!(e.kind, ErrorKind::Protocol, "{path}: {e}");
    }
    // A short body is a closed connection, not a success.
    let server2 = TestServer::start(|_| {
        Reply::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec(),
            true,
        )
    });
    assert_eq!(
        send_err(&m, &server2.url("/")).kind,
        ErrorKind::ConnectionClosed
    );
    // The pool recovers: a good request works afterwards.
    let mut resp = get(&m, &server.url("/fine"));
    assert_eq!(body(&mut resp), b"ok");
}

#[test]
fn timeouts_have_their_own_kinds() {
    let server = TestServer::start(|r| match r.path.as_str() {
        "/slow-head" => Reply::Delay(Duration::from_millis(600), Box::new(Reply::ok("late"))),
        _ => Reply::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab".to_vec(),
            false,
        ),
    });
    let m = Manager::new();
    let mut req = Request::new("GET", &server.url("/slow-head")).unwrap();
    req.timeout = Some(Duration::from_millis(150));
    let e = m.send(&req).err().unwrap();
    assert_eq!(e.kind, ErrorKind::ResponseTimeout);
    assert!(e.may_have_reached_server);
    assert!(e.message.contains("may have processed"), "{e}");
    let mut req = Request::new("GET", &server.url("/stall-body")).unwrap();
    req.read_timeout = Some(Duration::from_millis(150));
    let mut resp = m.send(&req).unwrap();
    let mut sink = Vec::new();
    assert_eq!(
        resp.read_to_end(&mut sink).unwrap_err().kind,
        ErrorKind::ReadTimeout
    );
}

#[test]
fn connect_errors_and_urls() {
    let m = Manager::new();
    // A port that was just free: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = send_err(&m, &format!("http://127.0.0.1:{port}/"));
    assert_eq!(e.kind, ErrorKind::Connect);
    assert!(e.message.contains(&port.to_string()), "{e}");
    assert!(!e.may_have_reached_server);
    assert_eq!(
        Request::new("GET", "ftp://x/").err().unwrap().kind,
        ErrorKind::UnsupportedScheme
    );
    assert_eq!(
        Request::new("GET", "http//x").err().unwrap().kind,
        ErrorKind::InvalidUrl
    );
    assert_eq!(
        Request::new("G ET", "http://x/").err().unwrap().kind,
        ErrorKind::InvalidArgument
    );
    let mut req = Request::new("GET", "http://x/").unwrap();
    assert_eq!(
        req.add_header("X", b"a\r\nb").unwrap_err().kind,
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        req.add_header("Content-Length", b"1").unwrap_err().kind,
        ErrorKind::InvalidArgument
    );
}

#[test]
fn same_origin_same_service_point() {
    let m = Manager::new();
    let a = m.find("HTTP://LocalHost:80/a?b#c").unwrap();
    let b = m.find("http://user@localhost/other").unwrap();
    let c = m.find("http://localhost:81/").unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    assert!(!std::sync::Arc::ptr_eq(&a, &c));
    assert_eq!(a.address(), "http://localhost");
    assert_eq!(c.address(), "http://localhost:81");
    assert_eq!(m.service_point_count(), 2);
}

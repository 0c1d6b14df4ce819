//! HTTPS over rustls against an in-process TLS server with certificates generated at test time:
//! verification outcomes with their own error kinds, mutual TLS, reuse, resumption (as the
//! server counted it), the validation callback, and a plain-HTTP server on an https port.

mod support;

use servicepoint::tls::CertValidator;
use servicepoint::{Error, ErrorKind, Manager, Request};
use std::io::{Read, Write};
use std::sync::Arc;
use support::pki::{self, Ca};
use support::{Options, Reply, TestServer};

fn tls_server(config: Arc<rustls::ServerConfig>) -> TestServer {
    TestServer::start_with(
        Options {
            tls: Some(config),
            ..Options::default()
        },
        |r| Reply::ok(format!("secure {}", r.path)),
    )
}

fn fetch(m: &Manager, url: &str) -> servicepoint::Result<Vec<u8>> {
    let req = Request::new("GET", url)?;
    let mut resp = m.send(&req)?;
    let mut out = Vec::new();
    resp.read_to_end(&mut out)?;
    Ok(out)
}

fn manager_trusting(ca: &Ca) -> Manager {
    let m = Manager::new();
    m.tls().add_ca_pem(ca.pem().as_bytes()).unwrap();
    m
}

#[test]
fn a_certificate_from_a_trusted_ca_is_accepted_with_sni_and_alpn() {
    let ca = Ca::new("servicepoint test CA");
    let server = tls_server(pki::server_config(
        &ca.leaf(&["localhost", "127.0.0.1"], false),
        None,
    ));
    let m = manager_trusting(&ca);
    assert_eq!(fetch(&m, &server.https_url("/a")).unwrap(), b"secure /a");
    let conn = &server.connections()[0];
    assert_eq!(conn.sni.as_deref(), Some("localhost"));
    assert_eq!(conn.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(conn.tls_resumed, Some(false));
    // The Host header names the origin as the URL did (default port omitted only for 443).
    assert_eq!(
        server.requests()[0].header("host"),
        Some(format!("localhost:{}", server.port).as_str())
    );
}

fn rejected(server_leaf: pki::Leaf, trust: Option<&Ca>) -> Error {
    let server = tls_server(pki::server_config(&server_leaf, None));
    let m = match trust {
        Some(ca) => manager_trusting(ca),
        None => Manager::new(),
    };
    let e = fetch(&m, &server.https_url("/")).unwrap_err();
    assert!(
        server.requests().is_empty(),
        "no request may reach an unverified server"
    );
    assert!(
        e.message.contains("localhost"),
        "message names the host: {e}"
    );
    e
}

#[test]
fn an_untrusted_issuer_is_rejected() {
    let ca = Ca::new("unknown CA");
    let e = rejected(ca.leaf(&["localhost"], false), None);
    assert_eq!(e.kind, ErrorKind::TlsUnknownIssuer, "{e}");
    assert!(e.message.contains("unknown authority"), "{e}");
}

#[test]
fn an_expired_certificate_is_rejected() {
    let ca = Ca::new("CA");
    let e = rejected(ca.leaf(&["localhost"], true), Some(&ca));
    assert_eq!(e.kind, ErrorKind::TlsExpired, "{e}");
    assert!(e.message.contains("expired"), "{e}");
}

#[test]
fn a_certificate_for_another_host_is_rejected() {
    let ca = Ca::new("CA");
    let e = rejected(ca.leaf(&["other.example.test"], false), Some(&ca));
    assert_eq!(e.kind, ErrorKind::TlsHostnameMismatch, "{e}");
    assert!(e.message.contains("host name"), "{e}");
}

#[test]
fn only_added_cas_when_system_roots_are_off() {
    let ca = Ca::new("CA");
    let server = tls_server(pki::server_config(&ca.leaf(&["localhost"], false), None));
    let m = manager_trusting(&ca);
    m.tls().set_system_roots(false);
    assert!(fetch(&m, &server.https_url("/")).is_ok());
    let bare = Manager::new();
    bare.tls().set_system_roots(false);
    assert_eq!(
        fetch(&bare, &server.https_url("/")).unwrap_err().kind,
        ErrorKind::TlsUnknownIssuer
    );
}

#[test]
fn mutual_tls_presents_the_client_certificate() {
    let ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let config = pki::server_config(&ca.leaf(&["localhost"], false), Some(&client_ca));
    let server = tls_server(config);
    // Without a client certificate the server refuses.
    let m = manager_trusting(&ca);
    let e = fetch(&m, &server.https_url("/")).unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::TlsHandshake | ErrorKind::ConnectionClosed
        ),
        "{e}"
    );
    assert!(server.requests().is_empty());
    // With one it is served, and the server saw the certificate.
    let client = client_ca.leaf(&["client.test"], false);
    m.tls()
        .set_client_certificate(client.cert_pem.as_bytes(), client.key_pem.as_bytes())
        .unwrap();
    assert_eq!(fetch(&m, &server.https_url("/m")).unwrap(), b"secure /m");
    assert!(server.connections().last().unwrap().client_cert);
}

#[test]
fn keep_alive_over_tls_uses_one_handshake_for_twenty_requests() {
    let ca = Ca::new("CA");
    let server = tls_server(pki::server_config(&ca.leaf(&["localhost"], false), None));
    let m = manager_trusting(&ca);
    for i in 0..20 {
        assert_eq!(
            fetch(&m, &server.https_url(&format!("/{i}"))).unwrap(),
            format!("secure /{i}").into_bytes()
        );
    }
    assert_eq!(server.connection_count(), 1);
    assert_eq!(server.connections()[0].requests, 20);
    let stats = m.find(&server.https_url("/")).unwrap().statistics();
    assert_eq!(
        (stats.tls_full_handshakes, stats.tls_resumed_handshakes),
        (1, 0)
    );
}

#[test]
fn lease_zero_over_tls_resumes_sessions() {
    let ca = Ca::new("CA");
    let server = tls_server(pki::server_config(&ca.leaf(&["localhost"], false), None));
    let m = manager_trusting(&ca);
    let point = m.find(&server.https_url("/")).unwrap();
    point.set_lease_timeout(0).unwrap();
    for _ in 0..5 {
        fetch(&m, &server.https_url("/")).unwrap();
    }
    let conns = server.connections();
    assert_eq!(conns.len(), 5);
    // The server counted: the first handshake full, every reconnect resumed.
    let resumed: Vec<_> = conns.iter().map(|c| c.tls_resumed).collect();
    assert_eq!(resumed[0], Some(false));
    assert!(resumed[1..].iter().all(|r| *r == Some(true)), "{resumed:?}");
    let stats = point.statistics();
    assert_eq!(
        (stats.tls_full_handshakes, stats.tls_resumed_handshakes),
        (1, 4)
    );
}

struct Pin {
    der: Vec<u8>,
}

impl CertValidator for Pin {
    fn validate(&self, host: &str, chain: &[&[u8]], builtin: Option<&Error>) -> bool {
        host == "localhost"
            && builtin.is_some_and(|e| e.kind == ErrorKind::TlsUnknownIssuer)
            && chain[0] == self.der
    }
}

#[test]
fn the_validation_callback_accepts_and_rejects() {
    let leaf = pki::self_signed();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(leaf.cert_pem.as_bytes())
        .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap();
    let server = tls_server(pki::server_config(&leaf, None));
    let m = Manager::new();
    m.tls().set_validator(Some(Arc::new(Pin { der })));
    assert_eq!(
        fetch(&m, &server.https_url("/pinned")).unwrap(),
        b"secure /pinned"
    );
    m.tls()
        .set_validator(Some(Arc::new(Pin { der: vec![1, 2, 3] })));
    m.find(&server.https_url("/"))
        .unwrap()
        .set_lease_timeout(0)
        .unwrap();
    let e = fetch(&m, &server.https_url("/")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TlsCertificate, "{e}");
    assert!(e.message.contains("callback"), "{e}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_plain_http_server_on_an_https_port_is_named_as_such() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    });
    let m = Manager::new();
    let e = fetch(&m, &format!("https://127.0.0.1:{port}/")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TlsNotTls, "{e}");
    assert!(e.message.contains("plain HTTP"), "{e}");
    server.join().unwrap();
}

#[test]
fn minimum_version_tls13_refuses_a_tls12_only_server() {
    let ca = Ca::new("CA");
    let config =
        pki::server_config_versions(&ca.leaf(&["localhost"], false), &[&rustls::version::TLS12]);
    let server = tls_server(config);
    let m = manager_trusting(&ca);
    assert!(
        fetch(&m, &server.https_url("/")).is_ok(),
        "TLS 1.2 is allowed by default"
    );
    m.tls()
        .set_min_version(servicepoint::tls::MinVersion::Tls13);
    m.find(&server.https_url("/"))
        .unwrap()
        .set_lease_timeout(0)
        .unwrap();
    let e = fetch(&m, &server.https_url("/")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TlsHandshake, "{e}");
}

/// A TLS server whose paths name their answers: `/len/N` a Content-Length body of N pattern
/// bytes, `/chunked` a chunked one in uneven pieces.
fn bulk_server(ca: &Ca) -> TestServer {
    TestServer::start_with(
        Options {
            tls: Some(pki::server_config(&ca.leaf(&["localhost"], false), None)),
            ..Options::default()
        },
        |r| match r.path.strip_prefix("/len/") {
            Some(n) => Reply::ok(support::pattern(n.parse().unwrap())),
            None => Reply::Chunked(chunk_pieces(), Vec::new()),
        },
    )
}

fn chunk_pieces() -> Vec<Vec<u8>> {
    [1, 5_000, 70_000, 16_384, 3]
        .iter()
        .map(|&n| support::pattern(n))
        .collect()
}

#[test]
fn large_bodies_over_tls_arrive_whole_on_one_connection() {
    // Ciphertext is read ahead of rustls in large reads: records split across reads, several
    // records in one read, and a body ending mid-read must all come out byte for byte.
    let ca = Ca::new("CA");
    let server = bulk_server(&ca);
    let m = manager_trusting(&ca);
    let chunked: Vec<u8> = chunk_pieces().concat();
    for (path, expected) in [
        ("/len/1048576", support::pattern(1 << 20)),
        ("/chunked", chunked.clone()),
        ("/len/1", support::pattern(1)),
        ("/len/65536", support::pattern(65_536)),
        ("/chunked", chunked),
    ] {
        let body = fetch(&m, &server.https_url(path)).unwrap();
        assert!(body == expected, "{path}: {} bytes", body.len());
    }
    assert_eq!(server.connection_count(), 1);
    assert_eq!(server.connections()[0].requests, 5);
}

#[test]
fn pipelined_responses_over_tls_come_apart_whole() {
    // Several pipelined responses arrive in one read-ahead buffer, which passes with the
    // connection from one request's turn to the next.
    let ca = Ca::new("CA");
    let server = bulk_server(&ca);
    let m = manager_trusting(&ca);
    let point = m.find(&server.https_url("/")).unwrap();
    point.set_connection_limit(1).unwrap();
    point.set_pipelining(true);
    point.set_pipeline_depth(8).unwrap();
    fetch(&m, &server.https_url("/len/10")).unwrap();
    let sizes: Vec<usize> = (0..8).map(|i| 3_000 + i * 1_500).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    for (i, size) in sizes.iter().enumerate() {
        let tx = tx.clone();
        let req = Request::new("GET", &server.https_url(&format!("/len/{size}"))).unwrap();
        m.send_async(
            Arc::new(req),
            servicepoint::cancel::CancelToken::new(),
            servicepoint::operation::Deliver::Runtime,
            move |r| {
                let _ = tx.send((i, r));
            },
        )
        .unwrap();
    }
    for _ in 0..sizes.len() {
        let (i, r) = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("every request completes");
        let mut body = Vec::new();
        r.unwrap().read_to_end(&mut body).unwrap();
        assert!(body == support::pattern(sizes[i]), "request {i}");
    }
    assert_eq!(server.connection_count(), 1);
    assert_eq!(server.connections()[0].requests, 9);
    assert!(
        point.statistics().pipelined > 0,
        "some requests were pipelined"
    );
}

/// What a hand-driven TLS server does on its one kept-alive connection after the first
/// response, while the client's connection idles in the pool.
#[derive(Clone, Copy)]
enum WhileIdle {
    /// Rolls its keys: a TLS 1.3 KeyUpdate, a record for TLS itself.
    KeyUpdate,
    /// Sends close_notify and keeps the TCP connection open.
    CloseNotify,
}

/// Serves `GET` requests with "ok N" on each accepted connection; after the first response on
/// the first connection does `idle`, then signals `done`. Returns the port and the count of
/// connections accepted and requests answered.
fn idle_record_server(
    ca: &Ca,
    idle: WhileIdle,
    done: std::sync::mpsc::Sender<()>,
) -> (u16, Arc<std::sync::Mutex<(usize, usize)>>) {
    let config = pki::server_config(&ca.leaf(&["localhost"], false), None);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new((0, 0)));
    let counts = Arc::clone(&seen);
    std::thread::spawn(move || {
        for (index, stream) in listener.incoming().take(2).enumerate() {
            let stream = stream.unwrap();
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            counts.lock().unwrap().0 += 1;
            let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut pending = Vec::new();
            let mut answered = 0;
            while answered < 2 {
                let mut chunk = [0u8; 4096];
                match tls.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => pending.extend_from_slice(&chunk[..n]),
                }
                while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    pending.drain(..end + 4);
                    answered += 1;
                    let n = {
                        let mut counts = counts.lock().unwrap();
                        counts.1 += 1;
                        counts.1
                    };
                    let body = format!("ok {n}");
                    write!(
                        tls,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .unwrap();
                    tls.flush().unwrap();
                    if index == 0 && answered == 1 {
                        match idle {
                            WhileIdle::KeyUpdate => tls.conn.refresh_traffic_keys().unwrap(),
                            WhileIdle::CloseNotify => tls.conn.send_close_notify(),
                        }
                        tls.flush().unwrap();
                        let _ = done.send(());
                    }
                }
            }
        }
    });
    (port, seen)
}

/// Two requests through one manager with `idle` done by the server in between; returns what
/// the server counted (connections, requests) and the connections the pool found stale.
fn second_request_after(idle: WhileIdle) -> ((usize, usize), u64) {
    let ca = Ca::new("CA");
    let (tx, rx) = std::sync::mpsc::channel();
    let (port, seen) = idle_record_server(&ca, idle, tx);
    let m = manager_trusting(&ca);
    let url = format!("https://localhost:{port}/");
    assert_eq!(fetch(&m, &url).unwrap(), b"ok 1");
    rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    // Let the record reach the client's socket before the pool looks at the connection.
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(fetch(&m, &url).unwrap(), b"ok 2");
    let seen = *seen.lock().unwrap();
    (seen, m.find(&url).unwrap().statistics().closed_stale)
}

#[test]
fn an_idle_tls_connection_that_received_a_key_update_is_reused() {
    assert_eq!(second_request_after(WhileIdle::KeyUpdate), ((1, 2), 0));
}

#[test]
fn an_idle_tls_connection_closed_with_close_notify_is_not_reused() {
    // The close_notify comes right behind the first response, so it may be read along with it.
    assert_eq!(second_request_after(WhileIdle::CloseNotify), ((2, 2), 1));
}

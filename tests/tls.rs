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

//! The read-only facts of a service point (ProtocolVersion, ConnectionName,
//! SupportsPipelining, Certificate) and of a response (TLS version, cipher suite, resumed),
//! each checked against what the test server sent or negotiated.

mod support;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use servicepoint::connection::TlsFacts;
use servicepoint::{Manager, Request, Response};
use support::pki::{self, Ca};
use support::{ConnRecord, Options, Reply, TestServer};

fn get(m: &Manager, url: &str) -> Response {
    let mut resp = m.send(&Request::new("GET", url).unwrap()).unwrap();
    let mut body = Vec::new();
    resp.read_to_end(&mut body).unwrap();
    resp
}

fn der(leaf: &pki::Leaf) -> Vec<u8> {
    CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// The client's facts agree with the server's record of the same connection.
fn assert_same_session(facts: &TlsFacts, conn: &ConnRecord) {
    let version = match conn.tls_version {
        Some(rustls::ProtocolVersion::TLSv1_3) => (1, 3),
        Some(rustls::ProtocolVersion::TLSv1_2) => (1, 2),
        other => panic!("server negotiated {other:?}"),
    };
    assert_eq!(facts.version, version);
    // rustls names TLS 1.3 suites "TLS13_...", IANA (and the library) "TLS_...".
    let server_suite = conn.tls_suite.unwrap().as_str().unwrap();
    assert_eq!(facts.cipher_suite, server_suite.replace("TLS13_", "TLS_"));
    assert_eq!(Some(facts.resumed), conn.tls_resumed);
}

fn tls_server(config: std::sync::Arc<rustls::ServerConfig>) -> TestServer {
    TestServer::start_with(
        Options {
            tls: Some(config),
            ..Options::default()
        },
        |_| Reply::ok("secure"),
    )
}

fn manager_trusting(ca: &Ca) -> Manager {
    let m = Manager::new();
    m.tls().add_ca_pem(ca.pem().as_bytes()).unwrap();
    m
}

#[test]
fn protocol_version_follows_the_responses_and_http10_ends_pipelining() {
    let server = TestServer::start(|r| match r.path.as_str() {
        "/old" => Reply::Raw(
            b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold".to_vec(),
            true,
        ),
        _ => Reply::ok("new"),
    });
    let m = Manager::new();
    let point = m.find(&server.url("/")).unwrap();
    // Before any response: HTTP/1.1, as .NET says.
    assert_eq!(point.server.protocol_version(), (1, 1));
    assert!(point.server.supports_pipelining());
    assert_eq!(point.connection_name(), "http");
    assert_eq!(point.server.certificate(), None);

    let resp = get(&m, &server.url("/new"));
    assert_eq!((resp.head.minor_version, resp.tls), (1, None));
    assert_eq!(point.server.protocol_version(), (1, 1));
    assert!(point.server.supports_pipelining());

    let resp = get(&m, &server.url("/old"));
    assert_eq!(resp.head.minor_version, 0);
    assert_eq!(point.server.protocol_version(), (1, 0));
    assert!(!point.server.supports_pipelining());

    // The version is the last response's; pipelining stays off.
    get(&m, &server.url("/new"));
    assert_eq!(point.server.protocol_version(), (1, 1));
    assert!(!point.server.supports_pipelining());
    let paths: Vec<_> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/new", "/old", "/new"]);
    assert_eq!(point.server.certificate(), None, "no TLS, no certificate");
}

#[test]
fn tls_facts_are_what_the_server_negotiated() {
    let ca = Ca::new("CA");
    let leaf = ca.leaf(&["localhost"], false);
    let server = tls_server(pki::server_config(&leaf, None));
    let m = manager_trusting(&ca);
    let point = m.find(&server.https_url("/")).unwrap();
    assert_eq!(point.connection_name(), "https");
    assert_eq!(point.server.certificate(), None, "no connection yet");

    let first = get(&m, &server.https_url("/a"));
    let facts = first.tls.expect("TLS facts on an https response");
    assert_eq!(facts.version, (1, 3), "TLS 1.3 by default");
    assert!(!facts.resumed);
    assert_same_session(&facts, &server.connections()[0]);
    assert_eq!(
        point.server.certificate().as_deref(),
        Some(&der(&leaf)[..]),
        "the DER the server presented"
    );
    assert_eq!(point.server.protocol_version(), (1, 1));

    // A kept-alive connection: the same session, not a resumed one.
    let second = get(&m, &server.https_url("/b"));
    assert!(second.reused);
    assert_eq!(second.tls, Some(facts));
    assert_eq!(server.connection_count(), 1);
}

#[test]
fn a_tls12_server_gives_tls12_facts() {
    let ca = Ca::new("CA");
    let leaf = ca.leaf(&["localhost"], false);
    let server = tls_server(pki::server_config_versions(
        &leaf,
        &[&rustls::version::TLS12],
    ));
    let m = manager_trusting(&ca);
    let facts = get(&m, &server.https_url("/")).tls.unwrap();
    assert_eq!(facts.version, (1, 2));
    // rcgen's keys are ECDSA P-256; TLS 1.2 with rustls is always ECDHE.
    assert!(
        facts.cipher_suite.starts_with("TLS_ECDHE_ECDSA_WITH_"),
        "{}",
        facts.cipher_suite
    );
    assert_same_session(&facts, &server.connections()[0]);
    let point = m.find(&server.https_url("/")).unwrap();
    assert_eq!(point.server.certificate().as_deref(), Some(&der(&leaf)[..]));
}

#[test]
fn new_connections_resume_and_keep_the_certificate() {
    let ca = Ca::new("CA");
    let leaf = ca.leaf(&["localhost"], false);
    let server = tls_server(pki::server_config(&leaf, None));
    let m = manager_trusting(&ca);
    let point = m.find(&server.https_url("/")).unwrap();
    point.set_lease_timeout(0).unwrap();
    let first = get(&m, &server.https_url("/1")).tls.unwrap();
    let second = get(&m, &server.https_url("/2")).tls.unwrap();
    let conns = server.connections();
    assert_eq!(conns.len(), 2, "lease 0: a connection per request");
    assert!(!first.resumed && second.resumed);
    assert_same_session(&first, &conns[0]);
    assert_same_session(&second, &conns[1]);
    // The resumed session carries the certificate verified when it was established.
    assert_eq!(point.server.certificate().as_deref(), Some(&der(&leaf)[..]));
}

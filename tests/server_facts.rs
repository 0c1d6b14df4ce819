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

/// The same facts through the C ABI: codes, copy-out of the certificate, borrowed strings.
#[test]
fn the_facts_through_the_c_abi() {
    use servicepoint::ffi::manager::*;
    use servicepoint::ffi::point::*;
    use servicepoint::ffi::request::*;
    use servicepoint::ffi::response::*;
    use servicepoint::ffi::result::sp_result::*;
    use servicepoint::ffi::server_facts::*;
    use servicepoint::ffi::tls::*;
    use std::ffi::{CStr, CString};
    use std::ptr::{null, null_mut};

    let ca = Ca::new("CA");
    let leaf = ca.leaf(&["localhost"], false);
    let der = der(&leaf);
    let tls = tls_server(pki::server_config(&leaf, None));
    let plain = TestServer::start(|r| match r.path.as_str() {
        "/old" => Reply::Raw(
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
            true,
        ),
        _ => Reply::ok("new"),
    });
    let c = |s: &str| CString::new(s).unwrap();
    let text = |p: *const std::ffi::c_char| {
        // SAFETY: the library hands out NUL-terminated strings.
        unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string()
    };
    let mut m = null_mut();
    assert_eq!(sp_manager_new(&mut m), SP_OK);
    let pem = ca.pem();
    assert_eq!(sp_manager_add_ca_pem(m, pem.as_ptr(), pem.len()), SP_OK);
    let request = |url: &str| {
        let (mut req, mut resp) = (null_mut(), null_mut());
        let url = c(url);
        assert_eq!(
            sp_http_request_new(c("GET").as_ptr(), url.as_ptr(), &mut req),
            SP_OK
        );
        assert_eq!(sp_request(m, req, &mut resp), SP_OK);
        sp_http_request_free(req);
        resp
    };

    // https: the certificate, by size query then copy; nothing copied when it does not fit.
    let mut p = null_mut();
    assert_eq!(sp_find(m, c(&tls.https_url("/")).as_ptr(), &mut p), SP_OK);
    let (mut name, mut len, mut v) = (null(), 0usize, -1);
    assert_eq!(sp_get_connection_name(p, &mut name), SP_OK);
    assert_eq!(text(name), "https");
    assert_eq!(
        sp_get_certificate(p, null_mut(), 0, &mut len),
        SP_E_NOT_FOUND
    );
    let resp = request(&tls.https_url("/"));
    assert_eq!(sp_get_certificate(p, null_mut(), 0, &mut len), SP_OK);
    assert_eq!(len, der.len());
    let mut small = vec![0xA5u8; der.len() - 1];
    assert_eq!(
        sp_get_certificate(p, small.as_mut_ptr(), small.len(), &mut len),
        SP_OK
    );
    assert!(len > small.len() && small.iter().all(|&b| b == 0xA5));
    let mut buf = vec![0u8; der.len() + 10];
    assert_eq!(
        sp_get_certificate(p, buf.as_mut_ptr(), buf.len(), &mut len),
        SP_OK
    );
    assert_eq!(&buf[..len], &der[..]);
    assert_eq!(sp_response_tls_version(resp, &mut v), SP_OK);
    assert_eq!(v, SP_TLS_1_3);
    assert_eq!(sp_response_tls_resumed(resp, &mut v), SP_OK);
    assert_eq!(v, 0);
    assert_eq!(sp_response_tls_cipher_suite(resp, &mut name), SP_OK);
    let suite = tls.connections()[0].tls_suite.unwrap();
    assert_eq!(
        text(name),
        suite.as_str().unwrap().replace("TLS13_", "TLS_")
    );
    sp_response_free(resp);
    sp_point_free(p);

    // http: no TLS facts; HTTP/1.0 sets ProtocolVersion 10 and ends pipelining.
    assert_eq!(sp_find(m, c(&plain.url("/")).as_ptr(), &mut p), SP_OK);
    assert_eq!(sp_get_connection_name(p, &mut name), SP_OK);
    assert_eq!(text(name), "http");
    assert_eq!(sp_get_protocol_version(p, &mut v), SP_OK);
    assert_eq!(v, 11);
    assert_eq!(sp_get_supports_pipelining(p, &mut v), SP_OK);
    assert_eq!(v, 1);
    let resp = request(&plain.url("/new"));
    assert_eq!(sp_response_tls_version(resp, &mut v), SP_E_NOT_FOUND);
    assert_eq!(
        sp_response_tls_cipher_suite(resp, &mut name),
        SP_E_NOT_FOUND
    );
    assert_eq!(sp_response_tls_resumed(resp, &mut v), SP_E_NOT_FOUND);
    sp_response_free(resp);
    sp_response_free(request(&plain.url("/old")));
    assert_eq!(sp_get_protocol_version(p, &mut v), SP_OK);
    assert_eq!(v, 10);
    assert_eq!(sp_get_supports_pipelining(p, &mut v), SP_OK);
    assert_eq!(v, 0);
    assert_eq!(
        sp_get_certificate(p, buf.as_mut_ptr(), buf.len(), &mut len),
        SP_E_NOT_FOUND
    );
    assert_eq!(plain.requests().len(), 2);
    sp_point_free(p);
    sp_manager_free(m);
}

//! HTTP proxies, through the recording test proxy (tests/support/proxy.rs) to loopback
//! origins: absolute form and Basic credentials for plain http, CONNECT tunnels with TLS to
//! the origin for https, pooling per proxy vs per (proxy, origin) and what limits mean there,
//! 407 and refused tunnels, the bypass list (loopback by default), a request's own proxy.
//! Every assertion is on what the proxy and the origin observed.

mod support;

use servicepoint::cancel::CancelToken;
use servicepoint::operation::Deliver;
use servicepoint::proxy::Override;
use servicepoint::{ErrorKind, Manager, Request};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;
use support::pki::{self, Ca};
use support::proxy::{ProxyOptions, TestProxy};
use support::{Options, Reply, TestServer};

/// Basic credentials of `user:p@ss` (the URL carries them percent-encoded).
const CREDENTIALS: &str = "user:p%40ss";
const BASIC: &str = "Basic dXNlcjpwQHNz";

fn fetch(m: &Manager, req: &Request) -> servicepoint::Result<(u16, Vec<u8>)> {
    let mut resp = m.send(req)?;
    let mut out = Vec::new();
    resp.read_to_end(&mut out)?;
    Ok((resp.status(), out))
}

fn get(m: &Manager, url: &str) -> servicepoint::Result<(u16, Vec<u8>)> {
    fetch(m, &Request::new("GET", url)?)
}

/// A manager that sends everything, loopback included, through `proxy`.
fn through(proxy: &str) -> Manager {
    let m = Manager::new();
    m.set_proxy(Some(proxy)).unwrap();
    m.set_proxy_bypass("").unwrap();
    m
}

fn echo() -> TestServer {
    TestServer::start(|r| Reply::ok(format!("origin {}", r.path)))
}

fn tls_origin(ca: &Ca, names: &[&str]) -> TestServer {
    TestServer::start_with(
        Options {
            tls: Some(pki::server_config(&ca.leaf(names, false), None)),
            ..Options::default()
        },
        |r| Reply::ok(format!("secure {}", r.path)),
    )
}

#[test]
fn plain_http_goes_to_the_proxy_in_absolute_form_with_basic_credentials() {
    let origin = echo();
    let proxy = TestProxy::start(ProxyOptions {
        require: Some(BASIC.into()),
        ..ProxyOptions::default()
    });
    let m = through(&proxy.url(Some(CREDENTIALS)));
    let (status, body) = get(&m, &origin.url("/a?x=1")).unwrap();
    assert_eq!(
        (status, body.as_slice()),
        (200, b"origin /a?x=1".as_slice())
    );
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].line,
        format!("GET http://127.0.0.1:{}/a?x=1 HTTP/1.1", origin.port)
    );
    assert_eq!(seen[0].proxy_authorization.as_deref(), Some(BASIC));
    assert_eq!(
        seen[0].host.as_deref(),
        Some(format!("127.0.0.1:{}", origin.port).as_str())
    );
    // The origin saw the origin-form request the proxy made of it.
    let r = &origin.requests()[0];
    assert_eq!(r.path, "/a?x=1");
    assert_eq!(r.header("proxy-authorization"), None);
}

#[test]
fn plain_http_is_pooled_per_proxy_across_origins() {
    let (a, b) = (echo(), echo());
    let proxy = TestProxy::start(ProxyOptions::default());
    let m = through(&proxy.url(None));
    for i in 0..6 {
        let origin = if i % 2 == 0 { &a } else { &b };
        let (_, body) = get(&m, &origin.url(&format!("/{i}"))).unwrap();
        assert_eq!(body, format!("origin /{i}").into_bytes());
    }
    // One connection to the proxy served both origins; one service point, the proxy's.
    assert_eq!(proxy.connections(), 1);
    assert_eq!(m.service_point_count(), 1);
    let pa = m.find_with_proxy(&a.url("/"), &Override::Manager).unwrap();
    let pb = m.find_with_proxy(&b.url("/"), &Override::Manager).unwrap();
    assert!(Arc::ptr_eq(&pa, &pb));
    assert_eq!(pa.address(), format!("http://127.0.0.1:{}", proxy.port));
    assert_eq!(pa.statistics().requests, 6);
    // FindServicePoint(uri) is the direct point, another one.
    let direct = m.find(&a.url("/")).unwrap();
    assert!(!Arc::ptr_eq(&direct, &pa));
}

#[test]
fn the_proxy_points_limit_holds_across_origins() {
    let slow = || {
        TestServer::start(|_| {
            std::thread::sleep(Duration::from_millis(150));
            Reply::ok("slow")
        })
    };
    let (a, b) = (slow(), slow());
    let proxy = TestProxy::start(ProxyOptions::default());
    let m = Arc::new(through(&proxy.url(None)));
    let point = m.find_with_proxy(&a.url("/"), &Override::Manager).unwrap();
    point.set_connection_limit(1).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let m = Arc::clone(&m);
            let url = if i % 2 == 0 { a.url("/") } else { b.url("/") };
            std::thread::spawn(move || get(&m, &url).unwrap().0)
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    assert_eq!(
        proxy.max_simultaneous(),
        1,
        "one connection to the proxy at a time"
    );
    assert_eq!(proxy.seen().len(), 4);
}

#[test]
fn https_goes_through_one_tunnel_per_proxy_and_origin_with_tls_to_the_origin() {
    let ca = Ca::new("servicepoint proxy test CA");
    let (a, b) = (
        tls_origin(&ca, &["localhost"]),
        tls_origin(&ca, &["localhost"]),
    );
    let proxy = TestProxy::start(ProxyOptions {
        require: Some(BASIC.into()),
        ..ProxyOptions::default()
    });
    let m = through(&proxy.url(Some(CREDENTIALS)));
    m.tls().add_ca_pem(ca.pem().as_bytes()).unwrap();
    for i in 0..3 {
        for origin in [&a, &b] {
            let (_, body) = get(&m, &origin.https_url(&format!("/{i}"))).unwrap();
            assert_eq!(body, format!("secure /{i}").into_bytes());
        }
    }
    // A tunnel per origin, each kept for its three requests.
    let seen = proxy.seen();
    let connects: Vec<_> = seen.iter().map(|s| s.line.as_str()).collect();
    assert_eq!(
        connects,
        [
            format!("CONNECT localhost:{} HTTP/1.1", a.port),
            format!("CONNECT localhost:{} HTTP/1.1", b.port)
        ]
    );
    assert!(
        seen.iter()
            .all(|s| s.proxy_authorization.as_deref() == Some(BASIC))
    );
    assert_eq!(
        seen[0].host.as_deref(),
        Some(format!("localhost:{}", a.port).as_str())
    );
    assert_eq!(proxy.connections(), 2);
    assert_eq!(m.service_point_count(), 2);
    // TLS was with the origin (SNI its name, certificate checked against it: it names
    // localhost, not the proxy's 127.0.0.1).
    for origin in [&a, &b] {
        let conns = origin.connections();
        assert_eq!(conns.len(), 1);
        assert_eq!(conns[0].sni.as_deref(), Some("localhost"));
        assert_eq!(origin.requests().len(), 3);
    }
    let point = m
        .find_with_proxy(&a.https_url("/"), &Override::Manager)
        .unwrap();
    assert_eq!(point.address(), format!("https://localhost:{}", a.port));
    assert_eq!(point.statistics().connections_opened, 1);
}

#[test]
fn a_tunnels_certificate_is_checked_against_the_origins_name() {
    let ca = Ca::new("servicepoint proxy test CA");
    let origin = tls_origin(&ca, &["elsewhere.test"]);
    let proxy = TestProxy::start(ProxyOptions::default());
    let m = through(&proxy.url(None));
    m.tls().add_ca_pem(ca.pem().as_bytes()).unwrap();
    let e = get(&m, &origin.https_url("/")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TlsHostnameMismatch, "{}", e.message);
    assert_eq!(proxy.seen().len(), 1, "the tunnel was opened");
    assert_eq!(origin.requests().len(), 0);
}

#[test]
fn a_407_to_connect_has_its_own_error_with_the_proxys_status() {
    let ca = Ca::new("servicepoint proxy test CA");
    let origin = tls_origin(&ca, &["localhost"]);
    let proxy = TestProxy::start(ProxyOptions {
        require: Some(BASIC.into()),
        ..ProxyOptions::default()
    });
    for (credentials, sent) in [
        (None, None),
        (Some("user:wrong"), Some("Basic dXNlcjp3cm9uZw==")),
    ] {
        let m = through(&proxy.url(credentials));
        m.tls().add_ca_pem(ca.pem().as_bytes()).unwrap();
        let e = get(&m, &origin.https_url("/")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ProxyAuth, "{}", e.message);
        assert!(
            e.message.contains("407 Proxy Authentication Required"),
            "{}",
            e.message
        );
        assert!(!e.may_have_reached_server);
        assert_eq!(
            proxy.seen().last().unwrap().proxy_authorization.as_deref(),
            sent
        );
    }
    assert_eq!(origin.connection_count(), 0);
    // Plain http: the proxy's 407 is the response (as curl and .NET deliver it).
    let plain = echo();
    let m = through(&proxy.url(None));
    let (status, body) = get(&m, &plain.url("/")).unwrap();
    assert_eq!((status, body.as_slice()), (407, b"auth".as_slice()));
    assert_eq!(plain.connection_count(), 0);
}

#[test]
fn a_refused_connect_has_its_own_error_with_the_proxys_status() {
    let origin = tls_origin(&Ca::new("ca"), &["localhost"]);
    let proxy = TestProxy::start(ProxyOptions {
        refuse_connect: Some(403),
        ..ProxyOptions::default()
    });
    let m = through(&proxy.url(None));
    let e = get(&m, &origin.https_url("/")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::ProxyConnect, "{}", e.message);
    assert!(e.message.contains("403 Refused By Test"), "{}", e.message);
    assert_eq!(origin.connection_count(), 0);
    // A proxy that is not there: a connect error naming the proxy's address.
    drop(proxy);
    let gone = through("http://127.0.0.1:1");
    let e = get(&gone, &origin.https_url("/")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Connect, "{}", e.message);
    assert!(
        e.message.contains("through proxy 127.0.0.1:1"),
        "{}",
        e.message
    );
}

#[test]
fn loopback_is_bypassed_by_default_and_the_bypass_list_is_honoured() {
    let origin = echo();
    let proxy = TestProxy::start(ProxyOptions::default());
    let m = Manager::new();
    m.set_proxy(Some(&proxy.url(None))).unwrap();
    assert_eq!(m.proxy_bypass(), "localhost, 127.0.0.0/8, ::1");
    get(&m, &origin.url("/direct")).unwrap();
    assert_eq!(proxy.seen().len(), 0, "loopback went direct");
    assert_eq!(origin.requests().len(), 1);
    // Only this origin's port bypassed: another loopback port goes through the proxy.
    let other = echo();
    m.set_proxy_bypass(&format!("127.0.0.1:{}", origin.port))
        .unwrap();
    get(&m, &origin.url("/still-direct")).unwrap();
    get(&m, &other.url("/proxied")).unwrap();
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].line.contains("/proxied"), "{}", seen[0].line);
    // The empty list sends loopback through the proxy too.
    m.set_proxy_bypass("").unwrap();
    get(&m, &origin.url("/now-proxied")).unwrap();
    assert_eq!(proxy.seen().len(), 2);
    assert!(m.set_proxy_bypass("10.0.0.0/99").is_err());
    assert_eq!(m.proxy_bypass(), "", "a bad list changes nothing");
}

#[test]
fn a_request_description_follows_proxy_changes_and_its_own_override() {
    let origin = echo();
    let proxy = TestProxy::start(ProxyOptions::default());
    let m = Manager::new();
    m.set_proxy_bypass("").unwrap();
    let req = Request::new("GET", &origin.url("/r")).unwrap();
    fetch(&m, &req).unwrap();
    assert_eq!(proxy.seen().len(), 0);
    // The same description after the manager's proxy changed goes through the proxy.
    m.set_proxy(Some(&proxy.url(None))).unwrap();
    assert_eq!(m.proxy(), proxy.url(None));
    fetch(&m, &req).unwrap();
    assert_eq!(proxy.seen().len(), 1);
    // Its own "" is direct, whatever the manager says.
    let mut direct = req.clone();
    direct.set_proxy(Some("")).unwrap();
    fetch(&m, &direct).unwrap();
    assert_eq!(proxy.seen().len(), 1);
    assert_eq!(origin.requests().len(), 3);
    // Its own proxy on a manager without one.
    m.set_proxy(None).unwrap();
    let mut own = Request::new("GET", &origin.url("/own")).unwrap();
    own.set_proxy(Some(&proxy.url(None))).unwrap();
    fetch(&m, &own).unwrap();
    assert_eq!(proxy.seen().len(), 2);
    assert!(own.set_proxy(Some("socks5://h:1")).is_err());
    assert_eq!(
        m.set_proxy(Some("ftp://x")).unwrap_err().kind,
        ErrorKind::UnsupportedScheme
    );
}

#[test]
fn asynchronous_requests_go_through_the_proxy_and_the_tunnel() {
    let ca = Ca::new("servicepoint proxy test CA");
    let (plain, secure) = (echo(), tls_origin(&ca, &["localhost"]));
    let proxy = TestProxy::start(ProxyOptions::default());
    let m = through(&proxy.url(None));
    m.tls().add_ca_pem(ca.pem().as_bytes()).unwrap();
    let (tx, rx) = mpsc::channel();
    for url in [plain.url("/async"), secure.https_url("/async")] {
        let tx = tx.clone();
        let req = Arc::new(Request::new("GET", &url).unwrap());
        m.send_async(req, CancelToken::new(), Deliver::Runtime, move |r| {
            tx.send(r.map(|resp| resp.status())).unwrap();
        })
        .unwrap();
    }
    for _ in 0..2 {
        let status = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(status, 200);
    }
    let mut lines: Vec<_> = proxy.seen().into_iter().map(|s| s.line).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            format!("CONNECT localhost:{} HTTP/1.1", secure.port),
            format!("GET http://127.0.0.1:{}/async HTTP/1.1", plain.port),
        ]
    );
}

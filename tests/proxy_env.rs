//! The conventional proxy variables are used only when the program opts in (one test in its
//! own binary: it changes the process's environment before any other thread reads it).

mod support;

use servicepoint::{Manager, Request};
use support::TestServer;
use support::proxy::{ProxyOptions, TestProxy};

fn get(m: &Manager, url: &str) -> u16 {
    let mut resp = m.send(&Request::new("GET", url).unwrap()).unwrap();
    let mut body = Vec::new();
    resp.read_to_end(&mut body).unwrap();
    resp.status()
}

#[test]
fn environment_proxies_only_when_opted_in() {
    let (a, b) = (
        TestServer::start(|_| support::Reply::ok("a")),
        TestServer::start(|_| support::Reply::ok("b")),
    );
    let proxy = TestProxy::start(ProxyOptions::default());
    // SAFETY: this binary's only test, before the manager (and its threads) exist.
    unsafe {
        std::env::set_var("http_proxy", proxy.url(Some("env:user")));
        std::env::set_var("NO_PROXY", format!("127.0.0.1:{}", b.port));
    }
    let m = Manager::new();
    m.set_proxy_bypass("").unwrap();
    assert!(!m.use_environment_proxy());
    assert_eq!(get(&m, &a.url("/off")), 200);
    assert_eq!(proxy.seen().len(), 0, "not opted in: direct");
    m.set_use_environment_proxy(true).unwrap();
    assert!(m.use_environment_proxy());
    assert_eq!(get(&m, &a.url("/on")), 200);
    assert_eq!(get(&m, &b.url("/no-proxy")), 200);
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "NO_PROXY sent b direct");
    assert_eq!(
        seen[0].line,
        format!("GET http://127.0.0.1:{}/on HTTP/1.1", a.port)
    );
    assert_eq!(
        seen[0].proxy_authorization.as_deref(),
        Some("Basic ZW52OnVzZXI=")
    );
    // A proxy set on the manager wins over the environment's.
    let other = TestProxy::start(ProxyOptions::default());
    m.set_proxy(Some(&other.url(None))).unwrap();
    assert_eq!(get(&m, &a.url("/explicit")), 200);
    assert_eq!(other.seen().len(), 1);
    assert_eq!(proxy.seen().len(), 1);
    // Opting out again: direct.
    m.set_proxy(None).unwrap();
    m.set_use_environment_proxy(false).unwrap();
    assert_eq!(get(&m, &a.url("/off-again")), 200);
    assert_eq!(proxy.seen().len() + other.seen().len(), 2);
    assert_eq!(a.requests().len(), 4);
}

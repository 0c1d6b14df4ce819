//! Through a real proxy: Debian's tinyproxy (tests/deps.sh installs it), started on a
//! loopback port with a generated configuration in a temporary directory and stopped by its
//! pid. Plain http with Basic credentials, https through CONNECT with TLS to the origin, a
//! 407 and a refused CONNECT. Skipped, saying so, only when tinyproxy is not installed.

mod support;

use servicepoint::{ErrorKind, Manager, Request};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::pki::{self, Ca};
use support::{Options, Reply, TestServer};

struct Tinyproxy {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Tinyproxy {
    /// Starts tinyproxy with Basic credentials `user:secret`; `extra` config lines appended.
    fn start(name: &str, extra: &str) -> Option<Tinyproxy> {
        let Some(bin) = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
        else {
            eprintln!("SKIPPED: tinyproxy is not installed (bash tests/deps.sh installs it)");
            return None;
        };
        let dir = std::env::temp_dir().join(format!(
            "servicepoint-tinyproxy-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("tinyproxy.conf");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\nAllow 127.0.0.1\n\
                 BasicAuth user secret\nLogLevel Info\nDisableViaHeader Yes\n{extra}\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("tinyproxy.log")).unwrap();
        let child = Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tinyproxy");
        let proxy = Tinyproxy { child, port, dir };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "tinyproxy did not listen; its log: {}",
                proxy.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(proxy)
    }

    fn url(&self, credentials: &str) -> String {
        format!("http://{credentials}127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tinyproxy.log")).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn through(proxy: &str) -> Manager {
    let m = Manager::new();
    m.set_proxy(Some(proxy)).unwrap();
    m.set_proxy_bypass("").unwrap();
    m
}

fn get(m: &Manager, url: &str) -> servicepoint::Result<(u16, Vec<u8>)> {
    let mut resp = m.send(&Request::new("GET", url)?)?;
    let mut body = Vec::new();
    resp.read_to_end(&mut body)?;
    Ok((resp.status(), body))
}

#[test]
fn plain_http_through_tinyproxy_with_basic_credentials() {
    let Some(proxy) = Tinyproxy::start("plain", "") else {
        return;
    };
    let origin = TestServer::start(|r| Reply::ok(format!("origin {}", r.path)));
    let m = through(&proxy.url("user:secret@"));
    for i in 0..3 {
        let (status, body) = get(&m, &origin.url(&format!("/t{i}?q=1"))).unwrap();
        assert_eq!(status, 200, "{}", proxy.log());
        assert_eq!(body, format!("origin /t{i}?q=1").into_bytes());
    }
    let requests = origin.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].path, "/t0?q=1");
    assert_eq!(requests[0].header("proxy-authorization"), None);
    assert_eq!(
        requests[0].header("host"),
        Some(format!("127.0.0.1:{}", origin.port).as_str())
    );
    // Without credentials: tinyproxy's 407 is the response.
    let (status, _) = get(&through(&proxy.url("")), &origin.url("/x")).unwrap();
    assert_eq!(status, 407);
    assert_eq!(origin.requests().len(), 3);
}

#[test]
fn https_through_a_tinyproxy_tunnel_and_its_refusals() {
    let Some(proxy) = Tinyproxy::start("tunnel", "") else {
        return;
    };
    let ca = Ca::new("servicepoint tinyproxy test CA");
    let origin = TestServer::start_with(
        Options {
            tls: Some(pki::server_config(&ca.leaf(&["localhost"], false), None)),
            ..Options::default()
        },
        |r| Reply::ok(format!("secure {}", r.path)),
    );
    let m = through(&proxy.url("user:secret@"));
    m.tls().add_ca_pem(ca.pem().as_bytes()).unwrap();
    for i in 0..3 {
        let (status, body) = get(&m, &origin.https_url(&format!("/s{i}"))).unwrap();
        assert_eq!((status, body), (200, format!("secure /s{i}").into_bytes()));
    }
    let conns = origin.connections();
    assert_eq!(conns.len(), 1, "one tunnel for the three requests");
    assert_eq!(conns[0].sni.as_deref(), Some("localhost"));
    // No credentials: 407 to the CONNECT.
    let bare = through(&proxy.url(""));
    bare.tls().add_ca_pem(ca.pem().as_bytes()).unwrap();
    let e = get(&bare, &origin.https_url("/")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::ProxyAuth, "{}", e.message);
    assert!(e.message.contains("407"), "{}", e.message);
    // A tinyproxy that allows CONNECT to port 443 only refuses this one.
    let Some(strict) = Tinyproxy::start("strict", "ConnectPort 443") else {
        return;
    };
    let m = through(&strict.url("user:secret@"));
    m.tls().add_ca_pem(ca.pem().as_bytes()).unwrap();
    let e = get(&m, &origin.https_url("/")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::ProxyConnect, "{}", e.message);
    assert!(e.message.contains("403"), "{}", e.message);
    assert_eq!(origin.connections().len(), 1);
}

//! Pipelining against a real nginx (tests/deps.sh installs it), started on a loopback port
//! with a generated configuration in a temporary directory and stopped by its pid. nginx's
//! access log says, per request, which connection served it and whether nginx found it
//! already waiting in its buffer behind the previous one (`$pipe` is `p`): the server's own
//! word that a request was pipelined. Skipped, saying so, only when nginx is not installed.

use servicepoint::cancel::CancelToken;
use servicepoint::operation::Deliver;
use servicepoint::{Manager, Request, Response};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

const FILES: usize = 24;

struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// One access log line: connection serial, its request count, pipelined, URI.
#[derive(Debug)]
struct Logged {
    connection: u64,
    pipelined: bool,
    uri: String,
}

impl Nginx {
    fn start(name: &str, keepalive_requests: u32) -> Option<Nginx> {
        let Some(bin) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
        else {
            eprintln!("SKIPPED: nginx is not installed (bash tests/deps.sh installs it)");
            return None;
        };
        let dir = std::env::temp_dir().join(format!(
            "servicepoint-nginx-pipe-{}-{name}",
            std::process::id()
        ));
        let www = dir.join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        for i in 0..FILES {
            std::fs::write(www.join(format!("f{i}")), format!("file {i}\n")).unwrap();
        }
        // Only this nginx has it: the readiness probe cannot be answered by another test's.
        let marker = format!("ready {}-{name}", std::process::id());
        std::fs::write(www.join("ready"), &marker).unwrap();
        // The port is picked free, then nginx binds it: another test may take it in between
        // (nginx then exits), so a few attempts, each checked by asking this nginx itself.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = spawn_nginx(bin, &dir, port, keepalive_requests);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if answers(port, &marker) {
                    return Some(Nginx { child, port, dir });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The access log once it has `lines` lines (nginx writes each when its request ends),
    /// or after 5 s.
    fn log_of(&self, lines: usize) -> Vec<Logged> {
        let start = Instant::now();
        while self.log().len() < lines && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.log()
    }

    fn log(&self) -> Vec<Logged> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                Some(Logged {
                    connection: f.next()?.parse().ok()?,
                    pipelined: {
                        let _requests = f.next()?;
                        f.next()? == "p"
                    },
                    uri: f.next()?.to_string(),
                })
            })
            .filter(|l| l.uri != "/ready")
            .collect()
    }
}

/// Writes the configuration for `port` into `dir` and starts nginx in the foreground.
fn spawn_nginx(bin: &str, dir: &std::path::Path, port: u16, keepalive_requests: u32) -> Child {
    let d = dir.display();
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "{user}\nworker_processes 1;\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 64; }}\nhttp {{\n\
             log_format pipe '$connection $connection_requests $pipe $request_uri';\n\
             access_log {d}/access.log pipe;\nkeepalive_requests {keepalive_requests};\n\
             client_body_temp_path {d}/tmp;\nproxy_temp_path {d}/tmp;\nfastcgi_temp_path {d}/tmp;\n\
             uwsgi_temp_path {d}/tmp;\nscgi_temp_path {d}/tmp;\n\
             server {{ listen 127.0.0.1:{port}; root {d}/www; }}\n}}\n"
        ),
    )
    .unwrap();
    Command::new(bin)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx")
}

/// True when the nginx on `port` serves `marker` as /ready (which the logs leave out).
fn answers(port: u16, marker: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut text = String::new();
    s.write_all(b"GET /ready HTTP/1.0\r\n\r\n").is_ok()
        && s.read_to_string(&mut text).is_ok()
        && text.ends_with(marker)
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends GET /f0 .. /f{FILES-1} at once, reads each body here; returns them in request order.
fn fetch_all(m: &Manager, nginx: &Nginx, mut warm: Response) -> Vec<String> {
    let (tx, rx) = mpsc::channel();
    for i in 0..FILES {
        let tx = tx.clone();
        let req = Request::new("GET", &nginx.url(&format!("/f{i}"))).unwrap();
        m.send_async(
            Arc::new(req),
            CancelToken::new(),
            Deliver::Runtime,
            move |r| {
                let _ = tx.send((i, r));
            },
        )
        .unwrap();
    }
    // Every request is queued behind the warm-up now: free the connection.
    warm.read_to_end(&mut Vec::new()).unwrap();
    let mut bodies = vec![String::new(); FILES];
    for _ in 0..FILES {
        let (i, r) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        let mut resp = r.unwrap();
        let mut body = Vec::new();
        resp.read_to_end(&mut body).unwrap();
        bodies[i] = String::from_utf8(body).unwrap();
    }
    bodies
}

/// A manager with limit 1 and pipelining on for `nginx`, and the warm-up response (`/f0`),
/// whose head qualified the server, with its body unread: the connection stays busy until it
/// is read, so the requests `fetch_all` sends all queue (and go out pipelined) however the
/// threads are scheduled.
fn pipelining_manager(nginx: &Nginx) -> (Manager, Arc<servicepoint::ServicePoint>, Response) {
    let m = Manager::new();
    let point = m.find(&nginx.url("/")).unwrap();
    point.set_connection_limit(1).unwrap();
    point.set_pipelining(true);
    let warm = m
        .send(&Request::new("GET", &nginx.url("/f0")).unwrap())
        .unwrap();
    (m, point, warm)
}

/// nginx answers pipelined requests in order on one connection, and says it saw them
/// pipelined; each caller gets its own file.
#[test]
fn nginx_answers_pipelined_requests_in_order() {
    let Some(nginx) = Nginx::start("order", 1000) else {
        return;
    };
    let (m, point, warm) = pipelining_manager(&nginx);
    for (i, body) in fetch_all(&m, &nginx, warm).iter().enumerate() {
        assert_eq!(body, &format!("file {i}\n"));
    }
    let log = nginx.log_of(FILES + 1);
    assert_eq!(log.len(), FILES + 1, "{log:?}");
    assert!(
        log.iter().all(|l| l.connection == log[0].connection),
        "one connection: {log:?}"
    );
    let seen_pipelined = log.iter().filter(|l| l.pipelined).count();
    assert!(seen_pipelined >= 1, "nginx saw pipelined requests: {log:?}");
    let stats = point.statistics();
    assert!(stats.pipelined as usize >= seen_pipelined);
    assert!(stats.pipelined <= FILES as u64);
    assert_eq!(stats.pipeline_replays, 0);
    assert!(point.server.supports_pipelining());
}

/// nginx closes a connection after `keepalive_requests` (announcing it): the requests written
/// behind are replayed on the next connection, and nginx answers each request exactly once.
#[test]
fn nginx_keepalive_requests_cap_replays_without_duplicates() {
    let Some(nginx) = Nginx::start("cap", 5) else {
        return;
    };
    let (m, point, warm) = pipelining_manager(&nginx);
    for (i, body) in fetch_all(&m, &nginx, warm).iter().enumerate() {
        assert_eq!(body, &format!("file {i}\n"));
    }
    let log = nginx.log_of(FILES + 1);
    for i in 0..FILES {
        let uri = format!("/f{i}");
        let answered = log.iter().filter(|l| l.uri == uri).count();
        // /f0 was the warm-up too.
        assert_eq!(answered, 1 + usize::from(i == 0), "{uri}: {log:?}");
    }
    let connections: std::collections::HashSet<u64> = log.iter().map(|l| l.connection).collect();
    assert!(connections.len() >= FILES.div_ceil(5), "{log:?}");
    let stats = point.statistics();
    assert!(stats.pipeline_replays >= 1, "{stats:?}");
    assert!(
        point.server.supports_pipelining(),
        "an announced close is a cap, not a refusal"
    );
}

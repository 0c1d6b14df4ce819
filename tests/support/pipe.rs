//! A loopback HTTP/1.1 server for pipelining tests. It reads requests as soon as they arrive
//! (while earlier ones wait for their answer) and answers them in order, each after `delay`,
//! so it sees whether a request arrived before the response to the one ahead of it. Every
//! arrival is recorded with the number of responses already sent on its connection.
//!
//! Policies make it misbehave the ways pipelining must survive: close after the k-th response
//! of the first connection, answer HTTP/1.0, close after any response that had requests
//! behind it (a server that does not pipeline), announce `Keep-Alive: max`.
//!
//! Loopback only; every wait is bounded (read timeouts of 5 ms, a stop flag, a 10 s cap per
//! connection); Drop stops and joins every thread.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
pub struct Policy {
    /// Time each request takes to answer, one after the other (from its arrival, or from the
    /// previous answer when it waited behind one).
    pub delay: Duration,
    /// On the first connection only: close after this many responses (the last one says
    /// `Connection: close` when `announce_close`, else the close comes unannounced).
    pub close_after: Option<usize>,
    pub announce_close: bool,
    /// Answer with HTTP/1.0 and `Connection: keep-alive`.
    pub http10: bool,
    /// Close after a response whenever another request had arrived behind it, unannounced
    /// (a server that does not pipeline).
    pub refuse_pipelining: bool,
    /// `Keep-Alive: max=N` on the first response of every connection, counting down; the
    /// connection closes after N responses.
    pub keep_alive_max: Option<usize>,
    /// On the first connection only: the k-th response is not HTTP (out of protocol), then
    /// the connection closes.
    pub garbage_at: Option<usize>,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Arrival {
    pub conn: usize,
    pub method: String,
    pub path: String,
    pub at: Instant,
    /// Responses already sent on its connection when it arrived.
    pub answered_before: usize,
    /// Its position on its connection (0 for the first request).
    pub index: usize,
    /// Whether it was answered (the connection may have closed first).
    pub answered: bool,
}

impl Arrival {
    /// Requests ahead of it on its connection still unanswered when it arrived (0: it came
    /// after every earlier response, i.e. not pipelined).
    pub fn behind(&self) -> usize {
        self.index - self.answered_before
    }
}

#[derive(Default)]
struct Seen {
    connections: usize,
    arrivals: Vec<Arrival>,
}

pub struct PipeServer {
    pub port: u16,
    seen: Arc<Mutex<Seen>>,
    _acceptor: super::acceptor::Acceptor,
}

impl PipeServer {
    pub fn start(policy: Policy) -> PipeServer {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let acceptor = {
            let seen = seen.clone();
            super::acceptor::Acceptor::start(move |stream, _| {
                let conn = {
                    let mut s = seen.lock().unwrap();
                    s.connections += 1;
                    s.connections - 1
                };
                let (seen, policy) = (seen.clone(), policy.clone());
                Box::new(move |stop| serve(stream, conn, &policy, &seen, stop))
            })
        };
        PipeServer {
            port: acceptor.port,
            seen,
            _acceptor: acceptor,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn connections(&self) -> usize {
        self.seen.lock().unwrap().connections
    }

    pub fn arrivals(&self) -> Vec<Arrival> {
        self.seen.lock().unwrap().arrivals.clone()
    }

    /// The most requests seen in flight on one connection (the one being answered included).
    pub fn max_in_flight(&self) -> usize {
        self.arrivals()
            .iter()
            .map(|a| a.behind() + 1)
            .max()
            .unwrap_or(0)
    }

    /// Requests that arrived before the response to the one ahead of them.
    pub fn pipelined(&self) -> usize {
        self.arrivals().iter().filter(|a| a.behind() > 0).count()
    }

    /// How many times `path` was answered (a replay of an answered request would show as 2).
    pub fn answered(&self, path: &str) -> usize {
        self.arrivals()
            .iter()
            .filter(|a| a.path == path && a.answered)
            .count()
    }

    /// Waits (bounded) until `path` arrived.
    pub fn wait_until_arrived(&self, path: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.arrived(path) > 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    /// How many times `path` arrived.
    pub fn arrived(&self, path: &str) -> usize {
        self.arrivals().iter().filter(|a| a.path == path).count()
    }
}

/// A request read and not yet answered: its record's index and when it may be answered.
struct Pending {
    record: usize,
    path: String,
    head_only: bool,
    due: Instant,
}

fn serve(
    mut stream: TcpStream,
    conn: usize,
    policy: &Policy,
    seen: &Mutex<Seen>,
    stop: &AtomicBool,
) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(5)));
    let end = Instant::now() + Duration::from_secs(10);
    let mut buf = Vec::new();
    let mut pending: std::collections::VecDeque<Pending> = Default::default();
    let (mut received, mut answered) = (0usize, 0usize);
    let mut eof = false;
    let mut last_due = Instant::now();
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        // Take in whatever arrived.
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut fields);
            let Ok(httparse::Status::Complete(head_len)) = req.parse(&buf) else {
                break;
            };
            let length = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0usize);
            let method = req.method.unwrap_or("").to_string();
            let path = req.path.unwrap_or("").to_string();
            if buf.len() < head_len + length {
                break;
            }
            buf.drain(..head_len + length);
            let record = {
                let mut s = seen.lock().unwrap();
                s.arrivals.push(Arrival {
                    conn,
                    method: method.clone(),
                    path: path.clone(),
                    at: Instant::now(),
                    answered_before: answered,
                    index: received,
                    answered: false,
                });
                s.arrivals.len() - 1
            };
            received += 1;
            last_due = last_due.max(Instant::now()) + policy.delay;
            pending.push_back(Pending {
                record,
                path,
                head_only: method == "HEAD",
                due: last_due,
            });
        }
        // Answer the next one when its time has come.
        while let Some(next) = pending.front() {
            if Instant::now() < next.due {
                break;
            }
            let next = pending.pop_front().unwrap();
            answered += 1;
            let last_by_policy = conn == 0 && policy.close_after == Some(answered);
            let refused = policy.refuse_pipelining && received > answered;
            let max_left = policy
                .keep_alive_max
                .map(|m| m.saturating_sub(answered - 1));
            let closing = last_by_policy || refused || max_left == Some(1);
            let mut head = if policy.http10 {
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n".to_string()
            } else {
                "HTTP/1.1 200 OK\r\n".to_string()
            };
            let body = format!("answer {}", next.path);
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            if let Some(left) = max_left {
                head.push_str(&format!("Keep-Alive: timeout=5, max={}\r\n", left - 1));
            }
            if closing && (policy.announce_close || max_left == Some(1)) {
                head.push_str("Connection: close\r\n");
            }
            head.push_str("\r\n");
            let mut out = head.into_bytes();
            if !next.head_only {
                out.extend_from_slice(body.as_bytes());
            }
            let garbage = conn == 0 && policy.garbage_at == Some(answered);
            if garbage {
                out = b"NOT HTTP AT ALL\r\n\r\n".to_vec();
            }
            // Recorded first: the client may check as soon as the answer reaches it.
            seen.lock().unwrap().arrivals[next.record].answered = true;
            if stream.write_all(&out).is_err() {
                seen.lock().unwrap().arrivals[next.record].answered = false;
                return;
            }
            if closing || garbage {
                // Let the client see the response before the close.
                std::thread::sleep(Duration::from_millis(20));
                return;
            }
        }
        if eof && pending.is_empty() {
            return;
        }
    }
}

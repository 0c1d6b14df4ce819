//! HTTP/1.1 pipelining (issue 12), checked by what the server saw: whether each request
//! arrived before the response to the one ahead of it, how many were in flight, which were
//! answered, and how often each arrived (a replay shows as a second arrival, never as a
//! second answer).

mod support;

use servicepoint::cancel::CancelToken;
use servicepoint::operation::Deliver;
use servicepoint::{ErrorKind, Manager, Request, Response, ServicePoint};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use support::pipe::{PipeServer, Policy};

const WAIT: Duration = Duration::from_secs(20);

/// A manager whose point for `server` has limit 1 and pipelining at `depth` (0: off), after
/// one request (the server qualifies by answering HTTP/1.1).
fn pipelined(server: &PipeServer, depth: i32) -> (Manager, Arc<ServicePoint>) {
    let m = Manager::new();
    let point = m.find(&server.url("/")).unwrap();
    point.set_connection_limit(1).unwrap();
    if depth > 0 {
        point.set_pipelining(true);
        point.set_pipeline_depth(depth).unwrap();
    }
    assert_eq!(
        fetch(&m, &server.url("/warm-up")).unwrap(),
        "answer /warm-up"
    );
    (m, point)
}

fn fetch(m: &Manager, url: &str) -> servicepoint::Result<String> {
    let mut resp = m.send(&Request::new("GET", url)?)?;
    let mut body = Vec::new();
    resp.read_to_end(&mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Sends every request asynchronously from this thread, then reads the responses' bodies
/// here in the order they complete; returns each request's body (or error) in request order.
fn send_all(m: &Manager, requests: Vec<Request>) -> Vec<servicepoint::Result<String>> {
    let n = requests.len();
    let tokens = (0..n).map(|_| CancelToken::new()).collect();
    let rx = start_all(m, requests, tokens);
    let mut out: Vec<Option<servicepoint::Result<String>>> = (0..n).map(|_| None).collect();
    for _ in 0..n {
        let (i, r) = rx.recv_timeout(WAIT).expect("every request completes");
        out[i] = Some(body_text(r));
    }
    out.into_iter().map(Option::unwrap).collect()
}

type Completion = (usize, servicepoint::Result<Response>);

/// Sends each request asynchronously with its cancel token; each completion arrives on the
/// channel with the request's index.
fn start_all(
    m: &Manager,
    requests: Vec<Request>,
    tokens: Vec<CancelToken>,
) -> mpsc::Receiver<Completion> {
    let (tx, rx) = mpsc::channel();
    for (i, (req, token)) in requests.into_iter().zip(tokens).enumerate() {
        let tx = tx.clone();
        m.send_async(Arc::new(req), token, Deliver::Runtime, move |r| {
            let _ = tx.send((i, r));
        })
        .unwrap();
    }
    rx
}

/// A response's body, read here, as text.
fn body_text(r: servicepoint::Result<Response>) -> servicepoint::Result<String> {
    let mut resp = r?;
    let mut body = Vec::new();
    resp.read_to_end(&mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn gets(server: &PipeServer, paths: impl IntoIterator<Item = String>) -> Vec<Request> {
    paths
        .into_iter()
        .map(|p| Request::new("GET", &server.url(&p)).unwrap())
        .collect()
}

fn paths(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/r{i}")).collect()
}

/// Each response is its own request's, in order; the server saw requests arrive before the
/// responses ahead of them, never more than `depth` in flight, on one connection.
#[test]
fn depth_is_honoured_and_every_request_gets_its_own_response() {
    let server = PipeServer::start(Policy {
        delay: Duration::from_millis(5),
        ..Policy::default()
    });
    let (m, point) = pipelined(&server, 4);
    let results = send_all(&m, gets(&server, paths(20)));
    for (path, r) in paths(20).iter().zip(&results) {
        assert_eq!(r.as_ref().unwrap(), &format!("answer {path}"));
    }
    assert_eq!(server.connections(), 1);
    assert_eq!(server.max_in_flight(), 4, "depth 4 reached, never passed");
    let behind: Vec<usize> = server.arrivals().iter().map(|a| a.behind()).collect();
    assert!(
        server.pipelined() >= 15,
        "{} pipelined: {behind:?}",
        server.pipelined()
    );
    let stats = point.statistics();
    assert!(stats.pipelined as usize >= server.pipelined());
    assert_eq!(stats.pipeline_replays, 0);
    assert!(point.server.supports_pipelining());
    for path in paths(20) {
        assert_eq!(server.arrived(&path), 1, "{path} sent once");
    }
}

/// Blocking threads pipeline too: eight threads on limit 1, each request with its answer.
#[test]
fn blocking_requests_are_pipelined_and_answered_in_order() {
    let server = PipeServer::start(Policy {
        delay: Duration::from_millis(5),
        ..Policy::default()
    });
    let (m, _point) = pipelined(&server, 8);
    let m = Arc::new(m);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (m, url) = (Arc::clone(&m), server.url(""));
            std::thread::spawn(move || {
                for i in 0..5 {
                    let path = format!("/t{t}-{i}");
                    let body = fetch(&m, &format!("{url}{path}")).unwrap();
                    assert_eq!(body, format!("answer {path}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(server.connections(), 1);
    assert!(server.pipelined() > 0);
    assert!(server.max_in_flight() <= 8);
}

/// Off by default: at the limit, requests wait for the connection as always.
#[test]
fn pipelining_is_off_by_default() {
    // Answers take 20 ms: requests sent together queue behind the first one.
    let server = PipeServer::start(Policy {
        delay: Duration::from_millis(20),
        ..Policy::default()
    });
    let (m, point) = pipelined(&server, 0);
    assert!(!point.pipelining());
    assert_eq!(point.pipeline_depth(), 8);
    for r in send_all(&m, gets(&server, paths(10))) {
        r.unwrap();
    }
    assert_eq!(server.pipelined(), 0);
    assert_eq!(server.max_in_flight(), 1);
    // A request may ask for it on its own.
    let mut requests = gets(&server, paths(6));
    for r in &mut requests {
        r.pipelined = Some(true);
    }
    let before = server.pipelined();
    for r in send_all(&m, requests) {
        r.unwrap();
    }
    assert!(
        server.pipelined() > before,
        "requests that ask are pipelined"
    );
}

/// The connection closes after response k (announced or not), for every k in a batch of 8:
/// every request behind k is replayed once on a new connection, no answered request is sent
/// again, and every caller gets its own response.
#[test]
fn a_close_after_any_response_of_a_batch_replays_the_rest_once() {
    for announce in [true, false] {
        for k in 1..=8 {
            let server = PipeServer::start(Policy {
                delay: Duration::from_millis(3),
                // The warm-up is the first response on the first connection.
                close_after: Some(1 + k),
                announce_close: announce,
                ..Policy::default()
            });
            let (m, point) = pipelined(&server, 8);
            let names = paths(12);
            let results = send_all(&m, gets(&server, names.clone()));
            let what = format!("k={k} announced={announce}");
            for (path, r) in names.iter().zip(&results) {
                assert_eq!(r.as_ref().unwrap(), &format!("answer {path}"), "{what}");
                assert_eq!(
                    server.answered(path),
                    1,
                    "{path} answered once ({what}): {:?} {:?}",
                    point.statistics(),
                    server
                        .arrivals()
                        .iter()
                        .map(|a| (a.conn, &a.path, a.answered, a.behind()))
                        .collect::<Vec<_>>()
                );
                assert!(
                    server.arrived(path) <= 2,
                    "{path} sent at most twice ({what})"
                );
            }
            let replayed = names.iter().filter(|p| server.arrived(p) == 2).count();
            let first_conn = server.arrivals().iter().filter(|a| a.conn == 0).count();
            assert_eq!(first_conn, 1 + k + replayed, "{what}");
            // Sent again: the turn that found the connection closed is retried as a stale
            // one, the places behind it are replayed. One may not have reached the server the
            // first time (written as it closed): the client counts it, the server saw it once.
            let stats = point.statistics();
            let counted = (stats.pipeline_replays + stats.retries) as usize;
            assert!(
                replayed <= counted && counted <= names.len() - k,
                "{what}: {counted}"
            );
            // Behind an announced close after the first response of the batch nothing is
            // written (the close is read before the requests queued meanwhile would go out).
            if !(announce && k == 1) {
                assert!(counted >= 1, "requests were pipelined behind k ({what})");
            }
            if announce {
                assert!(
                    point.server.supports_pipelining(),
                    "an announced close is a cap ({what})"
                );
            }
        }
    }
}

/// HTTP/1.0 answers: SupportsPipelining goes off and nothing is pipelined.
#[test]
fn an_http10_server_is_never_pipelined() {
    let server = PipeServer::start(Policy {
        http10: true,
        ..Policy::default()
    });
    let (m, point) = pipelined(&server, 8);
    assert!(!point.server.supports_pipelining());
    for r in send_all(&m, gets(&server, paths(10))) {
        r.unwrap();
    }
    assert_eq!(server.pipelined(), 0);
}

/// A server that closes (unannounced) whenever requests were pipelined behind a response:
/// the batch is replayed, the point is marked, and nothing is pipelined to it again.
#[test]
fn a_server_that_closes_after_the_first_batch_is_not_pipelined_again() {
    let server = PipeServer::start(Policy {
        delay: Duration::from_millis(3),
        refuse_pipelining: true,
        ..Policy::default()
    });
    let (m, point) = pipelined(&server, 8);
    for (path, r) in paths(10).iter().zip(send_all(&m, gets(&server, paths(10)))) {
        assert_eq!(r.unwrap(), format!("answer {path}"));
    }
    assert!(
        !point.server.supports_pipelining(),
        "{:?} {:?}",
        point.statistics(),
        server.arrivals()
    );
    let pipelined_before = server.pipelined();
    assert!(pipelined_before > 0, "the first batch was pipelined");
    let later: Vec<String> = (0..10).map(|i| format!("/later{i}")).collect();
    for r in send_all(&m, gets(&server, later.clone())) {
        r.unwrap();
    }
    assert_eq!(server.pipelined(), pipelined_before, "not pipelined again");
    for path in later {
        assert_eq!(server.arrived(&path), 1);
    }
}

/// `Keep-Alive: max` is honoured: no request is written beyond what the server allows, so
/// none needs a replay.
#[test]
fn keep_alive_max_bounds_the_pipeline() {
    let server = PipeServer::start(Policy {
        delay: Duration::from_millis(3),
        keep_alive_max: Some(5),
        ..Policy::default()
    });
    let (m, point) = pipelined(&server, 8);
    for (path, r) in paths(16).iter().zip(send_all(&m, gets(&server, paths(16)))) {
        assert_eq!(r.unwrap(), format!("answer {path}"));
    }
    // Once a connection's first response announced the max, nothing is written past it;
    // only a new connection's first batch (written before any answer) can overrun it, and
    // only those requests are replayed.
    let arrivals = server.arrivals();
    let blind_overrun = arrivals
        .iter()
        .filter(|a| a.answered_before == 0 && a.index >= 5)
        .count();
    for a in &arrivals {
        assert!(
            a.index < 5 || a.answered_before == 0,
            "{} written past the announced max on connection {}",
            a.path,
            a.conn
        );
    }
    assert_eq!(point.statistics().pipeline_replays as usize, blind_overrun);
    assert!(server.pipelined() > 0);
}

/// POSTs are never pipelined, nor anything with lease 0 or keep-alive off; each connection
/// group has its own connections and lines.
#[test]
fn posts_lease_zero_keep_alive_off_and_groups() {
    let server = PipeServer::start(Policy {
        delay: Duration::from_millis(3),
        ..Policy::default()
    });
    let (m, point) = pipelined(&server, 8);
    let posts: Vec<Request> = (0..6)
        .map(|i| {
            let mut r = Request::new("POST", &server.url(&format!("/post{i}"))).unwrap();
            r.body = servicepoint::Body::Bytes(b"x".to_vec());
            r
        })
        .collect();
    for r in send_all(&m, posts) {
        r.unwrap();
    }
    assert_eq!(server.pipelined(), 0, "POSTs wait for the connection");
    let mut no_keep_alive = gets(&server, paths(5));
    for r in &mut no_keep_alive {
        r.keep_alive = Some(false);
    }
    for r in send_all(&m, no_keep_alive) {
        r.unwrap();
    }
    assert_eq!(server.pipelined(), 0, "keep-alive off");
    point.set_lease_timeout(0).unwrap();
    for r in send_all(&m, gets(&server, paths(5))) {
        r.unwrap();
    }
    assert_eq!(server.pipelined(), 0, "lease 0");
    point.set_lease_timeout(-1).unwrap();
    let before = server.connections();
    let mut grouped = Vec::new();
    for i in 0..16 {
        let mut r = Request::new("GET", &server.url(&format!("/g{i}"))).unwrap();
        r.group = if i % 2 == 0 { "a" } else { "b" }.to_string();
        grouped.push(r);
    }
    for (i, r) in send_all(&m, grouped).into_iter().enumerate() {
        assert_eq!(r.unwrap(), format!("answer /g{i}"));
    }
    assert_eq!(server.connections(), before + 2, "one connection per group");
    for c in before..server.connections() {
        let on: Vec<_> = server
            .arrivals()
            .into_iter()
            .filter(|a| a.conn == c)
            .collect();
        let groups: std::collections::HashSet<u32> = on
            .iter()
            .map(|a| a.path[2..].parse::<u32>().unwrap() % 2)
            .collect();
        assert_eq!(groups.len(), 1, "a connection serves one group");
        assert!(on.iter().any(|a| a.behind() > 0), "each group pipelines");
    }
}

/// A pipelined request canceled before its turn: its response is read and dropped by the
/// next one, which gets its own; the connection goes on.
#[test]
fn a_canceled_pipelined_request_is_skipped() {
    let server = PipeServer::start(Policy {
        delay: Duration::from_millis(20),
        ..Policy::default()
    });
    let (m, point) = pipelined(&server, 8);
    let tokens: Vec<CancelToken> = (0..6).map(|_| CancelToken::new()).collect();
    let names = (0..6).map(|i| format!("/c{i}"));
    let rx = start_all(&m, gets(&server, names), tokens.clone());
    assert!(
        server.wait_until_arrived("/c5", WAIT),
        "all six were written"
    );
    tokens[2].cancel();
    tokens[4].cancel();
    let mut bodies = std::collections::BTreeMap::new();
    for _ in 0..6 {
        let (i, r) = rx.recv_timeout(WAIT).unwrap();
        bodies.insert(i, body_text(r));
    }
    for (i, body) in bodies {
        match i {
            2 | 4 => assert_eq!(body.unwrap_err().kind, ErrorKind::Canceled),
            _ => assert_eq!(body.unwrap(), format!("answer /c{i}")),
        }
    }
    assert_eq!(server.connections(), 1, "the connection went on");
    assert_eq!(fetch(&m, &server.url("/after")).unwrap(), "answer /after");
    assert_eq!(point.statistics().open, 1);
}

/// A response held unread delays the ones behind it; their timeout says so.
#[test]
fn a_held_response_delays_the_ones_behind_and_their_timeout_says_why() {
    // The first answer takes 100 ms: the others queue meanwhile and are written when it comes.
    let server = PipeServer::start(Policy {
        delay: Duration::from_millis(100),
        ..Policy::default()
    });
    let (m, _point) = pipelined(&server, 8);
    let mut requests = gets(&server, (0..3).map(|i| format!("/h{i}")));
    for req in &mut requests {
        req.timeout = Some(Duration::from_millis(400));
    }
    let rx = start_all(&m, requests, (0..3).map(|_| CancelToken::new()).collect());
    // Whichever got the connection first answers after 100 ms and is held, not read.
    let (_, held) = rx.recv_timeout(WAIT).unwrap();
    let held = held.unwrap();
    let start = Instant::now();
    for _ in 0..2 {
        let (_, r) = rx.recv_timeout(WAIT).unwrap();
        let e = r.err().expect("timed out behind the held response");
        assert!(e.message.contains("waiting for its turn"), "{}", e.message);
        assert!(e.may_have_reached_server);
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(server.pipelined() >= 1, "they had been written");
    drop(held);
    assert_eq!(fetch(&m, &server.url("/next")).unwrap(), "answer /next");
}

/// Freeing the manager fails requests waiting for their turn at once.
#[test]
fn freeing_the_manager_fails_waiting_places() {
    // The first answer takes 100 ms: the others queue meanwhile and are written when it comes.
    let server = PipeServer::start(Policy {
        delay: Duration::from_millis(100),
        ..Policy::default()
    });
    let (m, _point) = pipelined(&server, 8);
    let names = (0..4).map(|i| format!("/f{i}"));
    let rx = start_all(
        &m,
        gets(&server, names),
        (0..4).map(|_| CancelToken::new()).collect(),
    );
    let (_, held) = rx.recv_timeout(WAIT).unwrap();
    let held = held.unwrap();
    assert!(server.wait_until_arrived("/f3", WAIT));
    let start = Instant::now();
    m.close();
    for _ in 0..3 {
        let (_, r) = rx.recv_timeout(WAIT).unwrap();
        assert_eq!(r.err().unwrap().kind, ErrorKind::ManagerClosed);
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    drop(held);
}

/// A pipelined request answered out of protocol fails (its answer is garbage), the requests
/// behind it are replayed, and the server is not pipelined to again.
#[test]
fn an_answer_out_of_protocol_ends_pipelining_for_the_point() {
    let server = PipeServer::start(Policy {
        delay: Duration::from_millis(3),
        // The warm-up, then the batch's first (its holder), then the first pipelined one.
        garbage_at: Some(3),
        ..Policy::default()
    });
    let (m, point) = pipelined(&server, 8);
    let results = send_all(&m, gets(&server, paths(8)));
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    assert_eq!(failed[0].kind, ErrorKind::Protocol);
    for (path, r) in paths(8).iter().zip(&results) {
        if let Ok(body) = r {
            assert_eq!(body, &format!("answer {path}"));
        }
    }
    assert!(!point.server.supports_pipelining());
    let before = server.pipelined();
    for r in send_all(&m, gets(&server, (0..6).map(|i| format!("/later{i}")))) {
        r.unwrap();
    }
    assert_eq!(server.pipelined(), before, "not pipelined again");
}

/// A lease of N: a connection past it serves one more request with `Connection: close` and
/// takes nothing behind it; the queued requests go to a new connection and pipeline there.
#[test]
fn a_connection_past_its_lease_takes_nothing_behind_it() {
    let server = PipeServer::start(Policy {
        delay: Duration::from_millis(20),
        ..Policy::default()
    });
    let (m, point) = pipelined(&server, 8);
    point.set_lease_timeout(300).unwrap();
    std::thread::sleep(Duration::from_millis(350));
    let names = paths(6);
    for (path, r) in names.iter().zip(send_all(&m, gets(&server, names.clone()))) {
        assert_eq!(r.unwrap(), format!("answer {path}"));
    }
    let arrivals = server.arrivals();
    let on_old: Vec<_> = arrivals.iter().filter(|a| a.conn == 0).collect();
    assert_eq!(
        on_old.len(),
        2,
        "the warm-up and one request past the lease: {arrivals:?}"
    );
    assert!(on_old.iter().all(|a| a.behind() == 0));
    assert!(
        arrivals.iter().any(|a| a.conn == 1 && a.behind() > 0),
        "pipelined on the new one"
    );
    assert_eq!(point.statistics().pipeline_replays, 0);
    assert_eq!(point.statistics().closed_lease, 1);
}

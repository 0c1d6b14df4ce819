//! Every rule that decides whether a connection serves another request, in one place: the
//! lease timeout (0 and N), keep-alive off, the server's `Connection: close` and
//! `Keep-Alive: timeout, max`, the requests-per-connection cap, idle expiry (for the reaper and
//! at reuse), the stale-connection verdict and retry eligibility, and which requests may be
//! pipelined on which connections.
//!
//! They are pure functions over facts about a connection or a response, the service point's
//! settings and the time `now` passed in by the caller, so they are tested as tables with a
//! made-up clock, no sockets and no sleeps. The rest of the core gathers the facts (http1
//! reads headers, the pool knows idle times) and acts on the verdicts.
//!
//! Naming: the *lease timeout* is .NET's ConnectionLeaseTimeout, a connection's maximum age;
//! a connection taken out of the pool for one request is *checked out* (`response::Checkout`).

use crate::connection::{CloseReason, KeepAliveHint};
use std::time::{Duration, Instant};

/// Longest idle limit taken from a server's `Keep-Alive: timeout` (longer announcements are
/// clamped: a server cannot make the client keep a connection for years, nor overflow its
/// deadline arithmetic).
pub const MAX_SERVER_IDLE: Duration = Duration::from_secs(24 * 60 * 60);

/// The client stops reusing a connection this long before the server's announced idle timeout
/// runs out (so a request never races the server's close), at most...
pub const SERVER_IDLE_MARGIN_MAX: Duration = Duration::from_secs(1);
/// ...and at most this fraction of the announced timeout, so that short windows stay useful:
/// `timeout=1` (Node's default keepAliveTimeout, Apache's `KeepAliveTimeout 1`) leaves 750 ms
/// of reuse instead of none, `timeout=3` leaves 2.25 s.
pub const SERVER_IDLE_MARGIN_DIVISOR: u32 = 4;

/// A service point's reuse settings, read when a decision is made (so changes apply to
/// existing connections).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// -1 forever, 0 one request per connection, N ms maximum age.
    pub lease_timeout_ms: i32,
    /// Max idle time; `None` for infinite.
    pub max_idle: Option<Duration>,
    /// Requests one connection may serve; 0 for no cap.
    pub max_requests_per_connection: i32,
}

/// What the rules need to know about a connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionFacts {
    pub created: Instant,
    /// When its last response finished (its idle-since time while pooled).
    pub last_used: Instant,
    /// Requests sent on it so far.
    pub requests: u32,
    /// What its server announced in its last `Keep-Alive` header.
    pub hint: KeepAliveHint,
}

/// What the rules need to know about a response head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseFacts {
    pub http10: bool,
    /// `Connection: close`.
    pub connection_close: bool,
    /// `Connection: keep-alive`.
    pub connection_keep_alive: bool,
    /// A `Transfer-Encoding` field is present.
    pub transfer_encoding: bool,
    /// The body ends when the server closes the connection.
    pub close_delimited: bool,
    /// The `Keep-Alive: timeout, max` parameters (parsed once per response).
    pub hint: KeepAliveHint,
}

/// The margin kept before a server's announced idle timeout (see the constants).
pub fn server_idle_margin(announced: Duration) -> Duration {
    (announced / SERVER_IDLE_MARGIN_DIVISOR).min(SERVER_IDLE_MARGIN_MAX)
}

/// How long a connection may sit idle: the point's max idle time, shortened by the server's
/// announced timeout less the margin. `None` is no limit.
pub fn idle_limit(hint: &KeepAliveHint, max_idle: Option<Duration>) -> Option<Duration> {
    let server = hint.timeout.map(|t| {
        let t = t.min(MAX_SERVER_IDLE);
        t - server_idle_margin(t)
    });
    crate::connection::earliest(max_idle, server)
}

/// When an idle connection expires, if it does (saturating: `None` also for times beyond what
/// the clock can represent).
pub fn idle_deadline(conn: &ConnectionFacts, settings: &Settings) -> Option<Instant> {
    idle_limit(&conn.hint, settings.max_idle).and_then(|l| conn.last_used.checked_add(l))
}

/// True when an idle connection has been idle for its limit.
pub fn idle_expired(conn: &ConnectionFacts, settings: &Settings, now: Instant) -> bool {
    idle_limit(&conn.hint, settings.max_idle)
        .is_some_and(|l| now.saturating_duration_since(conn.last_used) >= l)
}

/// May an idle connection be taken from the pool for a request? (Liveness, a system call, is
/// checked after this.) `same_group_generation` is false once its connection group was
/// closed.
pub fn may_take_idle(
    conn: &ConnectionFacts,
    settings: &Settings,
    same_group_generation: bool,
    now: Instant,
) -> Result<(), CloseReason> {
    if settings.lease_timeout_ms == 0 {
        // Lease 0: every request gets a new connection, also ones opened before it was set.
        Err(CloseReason::Lease)
    } else if idle_expired(conn, settings, now) {
        Err(CloseReason::Idle)
    } else if !same_group_generation {
        Err(CloseReason::GroupClosed)
    } else {
        Ok(())
    }
}

/// Must this request close its connection (send `Connection: close`)? Decided before sending.
pub fn close_before_send(
    conn: &ConnectionFacts,
    settings: &Settings,
    keep_alive: bool,
    now: Instant,
) -> Option<CloseReason> {
    let lease = settings.lease_timeout_ms;
    let cap = settings.max_requests_per_connection;
    let age = now.saturating_duration_since(conn.created);
    if !keep_alive {
        Some(CloseReason::KeepAliveOff)
    } else if lease == 0 || (lease > 0 && age >= Duration::from_millis(lease as u64)) {
        Some(CloseReason::Lease)
    } else if cap > 0 && conn.requests.saturating_add(1) >= cap as u32 {
        Some(CloseReason::MaxRequests)
    } else if conn.hint.max == Some(1) {
        // The server allows one more request on this connection: this one.
        Some(CloseReason::MaxRequests)
    } else {
        None
    }
}

/// Should the request say `Connection: keep-alive`? On the first request of a connection that
/// stays open (as Mono does): servers such as Apache announce their `Keep-Alive: timeout, max`
/// only to requests that carry it, and later requests need not repeat it.
pub fn announce_keep_alive(conn: &ConnectionFacts, closing: bool) -> bool {
    conn.requests == 0 && !closing
}

/// Must the connection close after this response? Judged from its head.
pub fn close_after_response(resp: &ResponseFacts) -> Option<CloseReason> {
    let server_closes = resp.connection_close
        || (resp.http10 && !resp.connection_keep_alive)
        // RFC 9112 section 6.1: HTTP/1.0 with Transfer-Encoding has faulty framing.
        || (resp.http10 && resp.transfer_encoding);
    if server_closes || resp.close_delimited {
        Some(CloseReason::ServerClose)
    } else if resp.hint.max == Some(0) {
        Some(CloseReason::MaxRequests)
    } else if resp.hint.timeout == Some(Duration::ZERO) {
        Some(CloseReason::ServerClose)
    } else {
        None
    }
}

/// How a request failed, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// It ran on a connection taken from the pool (not one opened for it).
    pub reused: bool,
    /// A response byte had arrived.
    pub response_started: bool,
    /// The connection was closed or reset under the request.
    pub connection_lost: bool,
}

/// True when a failure is the signature of a stale keep-alive connection: a reused connection
/// lost before any response byte (the server closed it as the request arrived).
pub fn is_stale(f: &Failure) -> bool {
    f.reused && f.connection_lost && !f.response_started
}

/// What makes a request safe to send again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replay {
    pub idempotent: bool,
    /// The body can be sent again (not a stream already consumed).
    pub replayable_body: bool,
    /// The caller allowed a retry of a non-idempotent request.
    pub marked_retryable: bool,
}

/// May a failed request be sent once more, on a new connection? Only after a stale-connection
/// failure, only once, and only if it is idempotent (or marked retryable) with a replayable
/// body: a POST is never resent on its own.
pub fn may_retry(f: &Failure, r: &Replay, already_retried: bool) -> bool {
    is_stale(f) && !already_retried && r.replayable_body && (r.idempotent || r.marked_retryable)
}

/// What decides whether a request may be pipelined at all (before it queues).
#[derive(Clone, Copy, Debug)]
pub struct PipelineRequest {
    /// The service point's setting, or the request's own choice.
    pub wanted: bool,
    pub replay: Replay,
    /// It waits for `100 Continue` before its body.
    pub expect_continue: bool,
    pub keep_alive: bool,
    /// Sent before (a retry or a replay): a request is never pipelined twice.
    pub resent: bool,
    /// The server answered HTTP/1.1 and has not shown that it does not pipeline.
    pub server_qualified: bool,
}

/// A request may be written behind another only if asked for, idempotent with a body that
/// can be sent again (a replay must be possible), without `Expect` (its body waits for the
/// server), with keep-alive, not already resent, to a server that qualified.
pub fn may_offer(r: &PipelineRequest) -> bool {
    r.wanted
        && r.replay.idempotent
        && r.replay.replayable_body
        && !r.expect_continue
        && r.keep_alive
        && !r.resent
        && r.server_qualified
}

/// May one more request be written on a connection with `in_flight` unanswered requests (the
/// one being answered included)? Below the depth, and only if the new request would not have
/// to close the connection (lease, requests cap, the server's `Keep-Alive: max`, counted from
/// the last response read).
pub fn may_pipeline_on(
    conn: &ConnectionFacts,
    settings: &Settings,
    in_flight: usize,
    depth: usize,
    now: Instant,
) -> bool {
    let after_last_answer = u32::try_from(in_flight)
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    in_flight < depth
        && close_before_send(conn, settings, true, now).is_none()
        && conn.hint.max.is_none_or(|m| after_last_answer < m)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)]
    use super::*;
    use CloseReason::*;

    /// A made-up clock: every instant is `t0` plus milliseconds.
    struct Clock(Instant);

    impl Clock {
        fn new() -> Self {
            Clock(Instant::now())
        }
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    fn hint(timeout_s: Option<u64>, max: Option<u32>) -> KeepAliveHint {
        KeepAliveHint {
            timeout: timeout_s.map(Duration::from_secs),
            max,
        }
    }

    fn conn(
        c: &Clock,
        created: u64,
        last_used: u64,
        requests: u32,
        h: KeepAliveHint,
    ) -> ConnectionFacts {
        ConnectionFacts {
            created: c.at(created),
            last_used: c.at(last_used),
            requests,
            hint: h,
        }
    }

    fn settings(lease: i32, idle_ms: Option<u64>, cap: i32) -> Settings {
        Settings {
            lease_timeout_ms: lease,
            max_idle: idle_ms.map(Duration::from_millis),
            max_requests_per_connection: cap,
        }
    }

    #[test]
    fn idle_limits() {
        let ms = |v: u64| Some(Duration::from_millis(v));
        // (server timeout s, max idle ms) -> limit
        let table: &[(Option<u64>, Option<u64>, Option<Duration>)] = &[
            (None, Some(100_000), ms(100_000)),
            (None, None, None),
            (Some(1), Some(100_000), ms(750)),
            (Some(2), Some(100_000), ms(1_500)),
            (Some(3), Some(100_000), ms(2_250)),
            (Some(4), Some(100_000), ms(3_000)),
            (Some(5), Some(100_000), ms(4_000)),
            (Some(15), Some(100_000), ms(14_000)),
            (Some(15), Some(2_000), ms(2_000)),
            (Some(0), Some(100_000), ms(0)),
            (Some(5), None, ms(4_000)),
            (
                Some(u64::MAX / 1000),
                None,
                Some(MAX_SERVER_IDLE - SERVER_IDLE_MARGIN_MAX),
            ),
        ];
        for &(timeout, idle, want) in table {
            let got = idle_limit(&hint(timeout, None), idle.map(Duration::from_millis));
            assert_eq!(got, want, "timeout {timeout:?} s, max idle {idle:?} ms");
        }
    }

    #[test]
    fn the_limit_never_reaches_the_announced_timeout() {
        for secs in 1..=120u64 {
            let limit = idle_limit(&hint(Some(secs), None), None).unwrap();
            let announced = Duration::from_secs(secs);
            assert!(limit < announced, "{secs} s");
            assert!(
                limit >= announced * 3 / 4,
                "{secs} s keeps most of its window"
            );
        }
    }

    #[test]
    fn taking_an_idle_connection() {
        let c = Clock::new();
        let far = Some(u64::MAX / 4);
        // (lease, max idle ms, server timeout s, idle for ms, same generation) -> verdict
        let table: &[(
            i32,
            Option<u64>,
            Option<u64>,
            u64,
            bool,
            Result<(), CloseReason>,
        )] = &[
            (-1, Some(1_000), None, 500, true, Ok(())),
            (-1, Some(1_000), None, 1_000, true, Err(Idle)),
            (-1, None, None, 1_000_000, true, Ok(())),
            (-1, far, None, 1_000_000, true, Ok(())),
            (0, Some(1_000), None, 1, true, Err(Lease)),
            (5_000, Some(1_000), None, 1, true, Ok(())),
            (-1, Some(100_000), Some(1), 700, true, Ok(())),
            (-1, Some(100_000), Some(1), 750, true, Err(Idle)),
            (-1, None, Some(u64::MAX / 1000), 1_000, true, Ok(())),
            (-1, Some(1_000), None, 1, false, Err(GroupClosed)),
        ];
        for &(lease, idle, timeout, idle_for, same_gen, want) in table {
            let facts = conn(&c, 0, 0, 3, hint(timeout, None));
            let got = may_take_idle(&facts, &settings(lease, idle, 0), same_gen, c.at(idle_for));
            assert_eq!(
                got, want,
                "lease {lease}, idle {idle:?}, timeout {timeout:?}, {idle_for} ms"
            );
        }
    }

    #[test]
    fn closing_before_send() {
        let c = Clock::new();
        // (keep-alive, lease, age ms, requests so far, cap, server max) -> verdict
        let table: &[(bool, i32, u64, u32, i32, Option<u32>, Option<CloseReason>)] = &[
            (true, -1, 10_000, 5, 0, None, None),
            (false, -1, 0, 0, 0, None, Some(KeepAliveOff)),
            (true, 0, 0, 0, 0, None, Some(Lease)),
            (true, 1_000, 999, 1, 0, None, None),
            (true, 1_000, 1_000, 1, 0, None, Some(Lease)),
            (true, -1, 0, 2, 3, None, Some(MaxRequests)),
            (true, -1, 0, 1, 3, None, None),
            (true, -1, 0, 0, 1, None, Some(MaxRequests)),
            (true, -1, 0, 4, 0, Some(1), Some(MaxRequests)),
            (true, -1, 0, 4, 0, Some(2), None),
            (true, -1, 0, u32::MAX, 5, None, Some(MaxRequests)),
        ];
        for &(keep_alive, lease, age, requests, cap, max, want) in table {
            let facts = conn(&c, 0, 0, requests, hint(None, max));
            let got = close_before_send(&facts, &settings(lease, None, cap), keep_alive, c.at(age));
            assert_eq!(
                got, want,
                "ka {keep_alive}, lease {lease}, age {age}, req {requests}, cap {cap}, max {max:?}"
            );
        }
    }

    #[test]
    fn keep_alive_is_announced_on_the_first_request_only() {
        let c = Clock::new();
        assert!(announce_keep_alive(
            &conn(&c, 0, 0, 0, hint(None, None)),
            false
        ));
        assert!(!announce_keep_alive(
            &conn(&c, 0, 0, 0, hint(None, None)),
            true
        ));
        assert!(!announce_keep_alive(
            &conn(&c, 0, 0, 1, hint(None, None)),
            false
        ));
    }

    #[test]
    fn closing_after_the_response() {
        let base = ResponseFacts::default();
        let with = |f: &dyn Fn(&mut ResponseFacts)| {
            let mut r = base;
            f(&mut r);
            r
        };
        let table: Vec<(ResponseFacts, Option<CloseReason>)> = vec![
            (base, None),
            (with(&|r| r.connection_close = true), Some(ServerClose)),
            (with(&|r| r.http10 = true), Some(ServerClose)),
            (
                with(&|r| {
                    r.http10 = true;
                    r.connection_keep_alive = true;
                }),
                None,
            ),
            (
                with(&|r| {
                    r.http10 = true;
                    r.connection_keep_alive = true;
                    r.transfer_encoding = true;
                }),
                Some(ServerClose),
            ),
            (with(&|r| r.transfer_encoding = true), None),
            (with(&|r| r.close_delimited = true), Some(ServerClose)),
            (with(&|r| r.hint = hint(None, Some(0))), Some(MaxRequests)),
            (with(&|r| r.hint = hint(Some(0), None)), Some(ServerClose)),
            (with(&|r| r.hint = hint(Some(1), None)), None),
            (with(&|r| r.hint = hint(Some(5), Some(100))), None),
        ];
        for (facts, want) in table {
            assert_eq!(close_after_response(&facts), want, "{facts:?}");
        }
    }

    #[test]
    fn retries() {
        let stale = Failure {
            reused: true,
            response_started: false,
            connection_lost: true,
        };
        let get = Replay {
            idempotent: true,
            replayable_body: true,
            marked_retryable: false,
        };
        let post = Replay {
            idempotent: false,
            ..get
        };
        let table: Vec<(Failure, Replay, bool, bool)> = vec![
            (stale, get, false, true),
            (stale, get, true, false),
            (stale, post, false, false),
            (
                stale,
                Replay {
                    marked_retryable: true,
                    ..post
                },
                false,
                true,
            ),
            (
                stale,
                Replay {
                    replayable_body: false,
                    ..get
                },
                false,
                false,
            ),
            (
                Failure {
                    reused: false,
                    ..stale
                },
                get,
                false,
                false,
            ),
            (
                Failure {
                    response_started: true,
                    ..stale
                },
                get,
                false,
                false,
            ),
            (
                Failure {
                    connection_lost: false,
                    ..stale
                },
                get,
                false,
                false,
            ),
        ];
        for (f, r, retried, want) in table {
            assert_eq!(
                may_retry(&f, &r, retried),
                want,
                "{f:?} {r:?} retried {retried}"
            );
        }
    }

    #[test]
    fn only_idempotent_replayable_keep_alive_requests_to_a_qualified_server_are_pipelined() {
        let ok = PipelineRequest {
            wanted: true,
            replay: Replay {
                idempotent: true,
                replayable_body: true,
                marked_retryable: false,
            },
            expect_continue: false,
            keep_alive: true,
            resent: false,
            server_qualified: true,
        };
        assert!(may_offer(&ok));
        let variants: [(&str, fn(&mut PipelineRequest)); 7] = [
            ("not wanted", |r| r.wanted = false),
            ("POST", |r| r.replay.idempotent = false),
            ("streamed body", |r| r.replay.replayable_body = false),
            ("expect", |r| r.expect_continue = true),
            ("keep-alive off", |r| r.keep_alive = false),
            ("resent", |r| r.resent = true),
            ("server not qualified", |r| r.server_qualified = false),
        ];
        for (what, change) in variants {
            let mut r = ok;
            change(&mut r);
            assert!(!may_offer(&r), "{what}");
        }
        let mut retryable_post = ok;
        retryable_post.replay.idempotent = false;
        retryable_post.replay.marked_retryable = true;
        assert!(
            !may_offer(&retryable_post),
            "a retryable POST still is not pipelined"
        );
    }

    #[test]
    fn pipelining_on_a_connection_respects_depth_lease_caps_and_keep_alive_max() {
        let c = Clock::new();
        let forever = Settings {
            lease_timeout_ms: -1,
            max_idle: None,
            max_requests_per_connection: 0,
        };
        let conn = |requests: u32, max: Option<u32>| ConnectionFacts {
            created: c.at(0),
            last_used: c.at(0),
            requests,
            hint: KeepAliveHint { timeout: None, max },
        };
        let now = c.at(1000);
        assert!(may_pipeline_on(&conn(1, None), &forever, 1, 8, now));
        assert!(may_pipeline_on(&conn(7, None), &forever, 7, 8, now));
        assert!(
            !may_pipeline_on(&conn(8, None), &forever, 8, 8, now),
            "depth"
        );
        assert!(
            !may_pipeline_on(&conn(1, None), &forever, 1, 1, now),
            "depth 1 is off"
        );
        let lease = Settings {
            lease_timeout_ms: 500,
            ..forever
        };
        assert!(
            !may_pipeline_on(&conn(1, None), &lease, 1, 8, now),
            "lease over"
        );
        let zero = Settings {
            lease_timeout_ms: 0,
            ..forever
        };
        assert!(
            !may_pipeline_on(&conn(1, None), &zero, 1, 8, now),
            "lease 0"
        );
        let cap = Settings {
            max_requests_per_connection: 4,
            ..forever
        };
        assert!(may_pipeline_on(&conn(2, None), &cap, 2, 8, now));
        assert!(
            !may_pipeline_on(&conn(3, None), &cap, 3, 8, now),
            "the 4th closes"
        );
        // The server allows 3 more after its last response: 2 in flight leave room for none
        // that would not be the last.
        assert!(may_pipeline_on(&conn(1, Some(3)), &forever, 1, 8, now));
        assert!(!may_pipeline_on(&conn(2, Some(3)), &forever, 2, 8, now));
        assert!(!may_pipeline_on(&conn(1, Some(1)), &forever, 1, 8, now));
    }
}

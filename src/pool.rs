//! One connection group's pool: its idle connections (most recently used first), how many are
//! open, and the FIFO queue of requests waiting for one. A request leaves with either an idle
//! connection or the right to open a new one; both are returned through `Slot`'s drop, so a
//! slot can never leak.

use crate::connection::{CloseReason, Connection};
use crate::reaper::Reaper;
use crate::stats::Stats;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Rules an idle connection must pass to be reused; read from the service point's settings at
/// the time of the check, so changes apply to existing connections.
#[derive(Clone, Copy, Debug)]
pub struct ReuseRules {
    /// Max idle time; `None` for infinite.
    pub max_idle: Option<Duration>,
    /// Lease timeout 0: no idle connection may serve another request, not even ones opened
    /// before the lease was set, so every request gets a new connection.
    pub no_reuse: bool,
}

/// What a request gets from the pool.
pub enum Grant {
    /// A warm connection, already checked for liveness.
    Idle(Connection),
    /// Permission to open a new connection (the slot is counted as open).
    Open,
}

/// A waiting request: the pool hands it a grant and wakes it.
struct Waiter {
    grant: Mutex<Option<Grant>>,
    ready: Condvar,
}

struct State {
    /// Idle connections, least recently used first (reuse pops from the back).
    idle: Vec<Connection>,
    /// Open connections: idle, busy, and being opened.
    open: usize,
    waiters: VecDeque<Arc<Waiter>>,
    /// Bumped by `close_all`; busy connections of older generations close on release.
    generation: u64,
}

pub struct Pool {
    state: Mutex<State>,
    stats: Arc<Stats>,
    reaper: Arc<Reaper>,
}

/// Why `acquire` gave up.
pub struct QueueTimeout {
    pub busy: usize,
    pub waiting: usize,
}

impl Pool {
    pub fn new(stats: Arc<Stats>, reaper: Arc<Reaper>) -> Self {
        Pool {
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                waiters: VecDeque::new(),
                generation: 0,
            }),
            stats,
            reaper,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes an idle connection or an opening slot, waiting in FIFO order behind earlier
    /// requests when `limit` connections are open.
    pub fn acquire(
        &self,
        limit: usize,
        rules: ReuseRules,
        deadline: Option<Instant>,
    ) -> Result<(Grant, u64), QueueTimeout> {
        let waiter = {
            let mut st = self.lock();
            if st.waiters.is_empty() {
                if let Some(grant) = self.grant_now(&mut st, limit, rules) {
                    return Ok((grant, st.generation));
                }
            }
            let w = Arc::new(Waiter {
                grant: Mutex::new(None),
                ready: Condvar::new(),
            });
            st.waiters.push_back(Arc::clone(&w));
            w
        };
        let mut slot = waiter.grant.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(grant) = slot.take() {
                return Ok((grant, self.lock().generation));
            }
            let timed_out = match deadline {
                None => {
                    slot = waiter.ready.wait(slot).unwrap_or_else(|e| e.into_inner());
                    false
                }
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        true
                    } else {
                        slot = waiter
                            .ready
                            .wait_timeout(slot, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                        false
                    }
                }
            };
            if timed_out {
                drop(slot);
                let mut st = self.lock();
                // A grant may have arrived between the timeout and taking the pool lock.
                if let Some(grant) = waiter
                    .grant
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                {
                    return Ok((grant, st.generation));
                }
                st.waiters.retain(|w| !Arc::ptr_eq(w, &waiter));
                return Err(QueueTimeout {
                    busy: st.open - st.idle.len(),
                    waiting: st.waiters.len(),
                });
            }
        }
    }

    /// Hands out an idle live connection, or an opening slot while under the limit.
    fn grant_now(&self, st: &mut State, limit: usize, rules: ReuseRules) -> Option<Grant> {
        let now = Instant::now();
        while let Some(mut conn) = st.idle.pop() {
            let idle_expired = idle_limit(&conn, rules).is_some_and(|l| now - conn.last_used >= l);
            let reason = if rules.no_reuse {
                Some(CloseReason::Lease)
            } else if idle_expired {
                Some(CloseReason::Idle)
            } else if conn.generation != st.generation {
                Some(CloseReason::GroupClosed)
            } else if !conn.is_alive() {
                Some(CloseReason::Stale)
            } else {
                None
            };
            match reason {
                None => {
                    return Some(Grant::Idle(conn));
                }
                Some(r) => {
                    st.open -= 1;
                    self.stats.closed(r);
                }
            }
        }
        if st.open < limit {
            st.open += 1;
            return Some(Grant::Open);
        }
        None
    }

    /// Returns a connection (or, with `None`, the slot of a closed or never-opened one).
    /// A reusable connection goes to the first waiter or to the idle list.
    pub fn release(&self, conn: Option<Connection>, limit: usize, rules: ReuseRules) {
        let mut st = self.lock();
        match conn {
            Some(mut conn) if conn.generation == st.generation => {
                if let Some(w) = st.waiters.pop_front() {
                    give(&w, Grant::Idle(conn));
                } else {
                    conn.shrink_idle();
                    if let Some(limit) = idle_limit(&conn, rules) {
                        self.reaper.schedule(conn.last_used + limit);
                    }
                    st.idle.push(conn);
                }
            }
            other => {
                if other.is_some() {
                    self.stats.closed(CloseReason::GroupClosed);
                }
                st.open -= 1;
                self.wake_openers(&mut st, limit);
            }
        }
    }

    /// Grants opening slots to waiters while the pool is under `limit` (after a close, or when
    /// the limit was raised).
    fn wake_openers(&self, st_guard: &mut State, limit: usize) {
        while st_guard.open < limit {
            let Some(w) = st_guard.waiters.pop_front() else {
                break;
            };
            st_guard.open += 1;
            give(&w, Grant::Open);
        }
    }

    /// The limit may have been raised: let waiters open connections.
    pub fn limit_changed(&self, limit: usize) {
        let mut st = self.lock();
        self.wake_openers(&mut st, limit);
    }

    /// Closes idle connections idle for longer than their limit; returns the earliest time a
    /// remaining idle connection will expire.
    pub fn reap(&self, rules: ReuseRules) -> Option<Instant> {
        let mut st = self.lock();
        let now = Instant::now();
        let before = st.idle.len();
        let mut next: Option<Instant> = None;
        st.idle.retain(|c| match idle_limit(c, rules) {
            Some(l) if now - c.last_used >= l => false,
            Some(l) => {
                let at = c.last_used + l;
                next = Some(next.map_or(at, |n| n.min(at)));
                true
            }
            None => true,
        });
        let closed = before - st.idle.len();
        st.open -= closed;
        for _ in 0..closed {
            self.stats.closed(CloseReason::Idle);
        }
        next
    }

    /// Closes idle connections now and marks busy ones to close when released. Returns true
    /// if the pool had any connection or waiter.
    pub fn close_all(&self, reason: CloseReason, limit: usize) -> bool {
        let mut st = self.lock();
        let existed = st.open > 0 || !st.waiters.is_empty();
        st.generation += 1;
        let closed = st.idle.len();
        st.idle.clear();
        st.open -= closed;
        for _ in 0..closed {
            self.stats.closed(reason);
        }
        self.wake_openers(&mut st, limit);
        existed
    }

    /// (open, idle, waiting) right now.
    pub fn counts(&self) -> (usize, usize, usize) {
        let st = self.lock();
        (st.open, st.idle.len(), st.waiters.len())
    }
}

/// How long this connection may sit idle: the service point's max idle time, shortened by the
/// server's `Keep-Alive: timeout` (minus one second, so we give up before the server does).
pub fn idle_limit(conn: &Connection, rules: ReuseRules) -> Option<Duration> {
    let server = conn
        .hint
        .timeout
        .map(|t| t.saturating_sub(Duration::from_secs(1)));
    match (rules.max_idle, server) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn give(w: &Waiter, grant: Grant) {
    *w.grant.lock().unwrap_or_else(|e| e.into_inner()) = Some(grant);
    w.ready.notify_one();
}

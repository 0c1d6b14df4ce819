//! One connection group's pool: its idle connections (most recently used first), how many are
//! open, the sockets of its busy ones, and the FIFO queue of requests waiting for one. A
//! request leaves with either an idle connection or the right to open a new one, and a
//! [`Ticket`] that it must hand back through `release` (which `response::Checkout` guarantees,
//! even on a panic).
//!
//! With pipelining (see `pipeline`), a queued request that carries an offer can instead be
//! taken into a busy connection's line by that connection's holder, and gets the connection
//! later, when its turn comes (`pass_turn`).
//!
//! Sections under the pool's lock do no I/O and cannot panic: the liveness check of an idle
//! connection runs after the lock is released, and deadline arithmetic saturates.

use crate::connection::{CloseReason, Connection};
use crate::fork::{self, Lock, LockGuard};
use crate::pipeline::{Offer, Place, Places};
use crate::reaper::Reaper;
use crate::reuse::{self, Settings};
use crate::stats::Stats;
use std::collections::VecDeque;
use std::future::Future;
use std::net::{Shutdown, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// What a request gets from the pool. Not boxed: a grant moves once, and a box would cost an
/// allocation per reused connection.
#[allow(clippy::large_enum_variant)]
pub enum Grant {
    /// A warm connection, already checked for liveness.
    Idle(Connection),
    /// Permission to open a new connection (the slot is counted as open).
    Open,
    /// A pipelined request's turn: its head was written on this connection, and its response
    /// is the next one to read (after those in the line's `skip`).
    Turn(Connection),
}

/// A checked-out slot: which group generation and process it was granted in, and its key in
/// the pool's list of busy sockets.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    id: u64,
    /// Connection-group generation at the time of the grant.
    pub generation: u64,
    fork_generation: u64,
}

/// Why `acquire` gave up.
pub enum AcquireError {
    /// The deadline passed in the queue, or (`turn_on`: the connection's id) while waiting
    /// for its turn on a pipelined connection.
    Timeout {
        busy: usize,
        waiting: usize,
        turn_on: Option<u64>,
    },
    /// The pool was closed for good (its manager was freed).
    Closed,
    /// The request was canceled while it waited.
    Canceled,
    /// Pipelined behind a response after which its connection ended: send it again.
    Replay,
}

type Granted = Result<(Grant, Ticket), AcquireError>;

/// A waiting request, blocking or asynchronous: both wait in the same FIFO queue. The pool
/// hands it a grant and wakes it (its thread, or its task's waker). Its mutex is a plain one:
/// the waiting thread holds it across the condition variable wait, which no fork-safe section
/// may do; a forked child drops every waiter without touching it.
pub struct Waiter {
    grant: Mutex<Option<Granted>>,
    ready: Arc<Condvar>,
    waker: Mutex<Option<Waker>>,
    /// Its encoded request, if it may be pipelined.
    offer: Option<Offer>,
    /// It gave up (set under `grant`'s lock): a turn must not be handed to it.
    gone: AtomicBool,
    /// The id of the connection whose line it is in (0: in the queue).
    placed_on: AtomicU64,
}

impl Waiter {
    fn new(offer: Option<Offer>) -> Arc<Self> {
        Arc::new(Waiter {
            grant: Mutex::new(None),
            ready: Arc::new(Condvar::new()),
            waker: Mutex::new(None),
            offer,
            gone: AtomicBool::new(false),
            placed_on: AtomicU64::new(0),
        })
    }

    fn take(&self) -> Option<Granted> {
        self.grant.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Takes a grant that arrived, or marks the waiter gone so that none arrives later.
    fn leave(&self) -> Option<Granted> {
        let mut slot = self.grant.lock().unwrap_or_else(|e| e.into_inner());
        let granted = slot.take();
        if granted.is_none() {
            self.gone.store(true, Ordering::Release);
        }
        granted
    }

    /// The encoded request it carries (for the holder that takes it into a line).
    pub fn offer(&self) -> Option<&Offer> {
        self.offer.as_ref()
    }

    /// Wakes it to take the grant just put in its slot: its thread, or its task.
    fn wake(&self) {
        self.ready.notify_one();
        if let Some(waker) = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            waker.wake();
        }
    }

    /// The connection whose line it waits in, if any.
    fn turn_on(&self) -> Option<u64> {
        Some(self.placed_on.load(Ordering::Acquire)).filter(|&id| id != 0)
    }
}

/// Hands a grant to a waiter unless it is gone (then the grant comes back: moved, not boxed,
/// as the grant itself is).
#[allow(clippy::result_large_err)]
fn try_give(w: &Waiter, result: Granted) -> std::result::Result<(), Granted> {
    {
        let mut slot = w.grant.lock().unwrap_or_else(|e| e.into_inner());
        if w.gone.load(Ordering::Acquire) || slot.is_some() {
            return Err(result);
        }
        *slot = Some(result);
    }
    w.wake();
    Ok(())
}

struct State {
    /// Idle connections, least recently used first (reuse pops from the back).
    idle: Vec<Connection>,
    /// Open connections: idle, busy, and being opened.
    open: usize,
    waiters: VecDeque<Arc<Waiter>>,
    /// Checked-out connections by ticket: their sockets, so a closing manager can shut them
    /// down and wake the threads blocked on them, and their pipelines' places.
    busy: Vec<Busy>,
    next_ticket: u64,
    /// Bumped by `close_all`; busy connections of older generations close on release.
    generation: u64,
    /// The process generation this bookkeeping belongs to (see `fork`).
    fork_generation: u64,
    /// Closed for good: acquire fails, released connections close.
    closed: bool,
}

struct Busy {
    ticket: u64,
    socket: Arc<TcpStream>,
    places: Option<Arc<Places>>,
}

impl State {
    /// A ticket for an idle connection handed out, its socket recorded as busy in the same
    /// section (one lock per checkout, not two).
    fn ticket_for(&mut self, conn: &Connection) -> Ticket {
        let ticket = self.ticket();
        self.busy.push(Busy {
            ticket: ticket.id,
            socket: Arc::clone(conn.socket()),
            places: None,
        });
        ticket
    }

    fn untrack(&mut self, ticket: &Ticket) {
        if let Some(i) = self.busy.iter().position(|b| b.ticket == ticket.id) {
            self.busy.swap_remove(i);
        }
    }

    fn ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        Ticket {
            id: self.next_ticket,
            generation: self.generation,
            fork_generation: self.fork_generation,
        }
    }
}

pub struct Pool {
    state: Lock<State>,
    stats: Arc<Stats>,
    reaper: Arc<Reaper>,
    /// A request with an offer has queued here: holders look for requests to pipeline (a
    /// pool that never saw one costs its holders no lock).
    offered: AtomicBool,
}

impl Pool {
    pub fn new(stats: Arc<Stats>, reaper: Arc<Reaper>) -> Self {
        Pool {
            state: Lock::new(State {
                idle: Vec::new(),
                open: 0,
                waiters: VecDeque::new(),
                busy: Vec::new(),
                next_ticket: 0,
                generation: 0,
                fork_generation: fork::generation(),
                closed: false,
            }),
            stats,
            reaper,
            offered: AtomicBool::new(false),
        }
    }

    /// The pool's state; in a forked child, first forgets everything inherited: idle
    /// connections are dropped (closing this process's descriptors only), counts restart at
    /// zero and waiters, threads of the parent, are gone.
    fn lock(&self) -> LockGuard<'_, State> {
        let mut st = self.state.lock();
        let now = fork::generation();
        if st.fork_generation != now {
            st.idle.clear();
            st.open = 0;
            st.waiters.clear();
            st.busy.clear();
            st.fork_generation = now;
        }
        st
    }

    /// Takes an idle connection or an opening slot, waiting in FIFO order behind earlier
    /// requests when `limit` connections are open. Blocks the calling thread; a cancel token
    /// the call watches (`cancel::watching`) ends the wait.
    pub fn acquire(
        &self,
        limit: usize,
        settings: &Settings,
        deadline: Option<Instant>,
        offer: Option<Offer>,
    ) -> Result<(Grant, Ticket), AcquireError> {
        let waiter = match self.take_or_enqueue(limit, settings, offer)? {
            Ok(granted) => return Ok(granted),
            Err(waiter) => waiter,
        };
        let mut watched = false;
        crate::cancel::for_each_watched(|t| {
            t.watch_queue(&waiter.ready);
            watched = true;
        });
        let mut slot = waiter.grant.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(result) = slot.take() {
                return result;
            }
            let canceled = watched && crate::cancel::watched_canceled();
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if canceled || left.is_some_and(|l| l.is_zero()) {
                drop(slot);
                return match self.abandon(&waiter) {
                    // A grant arrived between the timeout (or cancel) and taking the pool lock.
                    Some(result) => result,
                    None if canceled => Err(AcquireError::Canceled),
                    None => Err(self.timeout(waiter.turn_on())),
                };
            }
            // A cancel's wake-up can slip in between the check above and the wait: with a
            // token watched, wake at least every 20 ms to look again.
            let left = match (left, watched) {
                (l, false) => l,
                (None, true) => Some(CANCEL_POLL),
                (Some(l), true) => Some(l.min(CANCEL_POLL)),
            };
            slot = match left {
                None => waiter.ready.wait(slot).unwrap_or_else(|e| e.into_inner()),
                Some(left) => {
                    waiter
                        .ready
                        .wait_timeout(slot, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// `acquire` for an asynchronous request: the same FIFO queue, a waker instead of a
    /// thread. Dropping the future (a timeout, a cancel) leaves the queue, or hands back a
    /// grant that arrived meanwhile, so no slot is lost.
    pub fn acquire_async(
        &self,
        limit: usize,
        settings: Settings,
        offer: Option<Offer>,
    ) -> Acquire<'_> {
        Acquire {
            pool: self,
            limit,
            settings,
            offer,
            waiter: None,
            done: false,
        }
    }

    /// A grant now, or a waiter queued at the back.
    fn take_or_enqueue(
        &self,
        limit: usize,
        settings: &Settings,
        offer: Option<Offer>,
    ) -> Result<Result<(Grant, Ticket), Arc<Waiter>>, AcquireError> {
        loop {
            let mut st = self.lock();
            if st.closed {
                return Err(AcquireError::Closed);
            }
            if st.waiters.is_empty() {
                match self.take_now(&mut st, limit, settings) {
                    Some(Grant::Idle(mut conn)) => {
                        let ticket = st.ticket_for(&conn);
                        drop(st);
                        // Outside the lock: a system call per reuse.
                        if conn.is_alive() {
                            return Ok(Ok((Grant::Idle(conn), ticket)));
                        }
                        self.stats.closed(&conn, CloseReason::Stale);
                        let mut st = self.lock();
                        drop(conn);
                        if ticket.fork_generation == st.fork_generation {
                            st.untrack(&ticket);
                            st.open = st.open.saturating_sub(1);
                            self.wake_openers(&mut st, limit);
                        }
                        continue;
                    }
                    // An opening slot (a turn never comes from the queue's front).
                    Some(grant) => return Ok(Ok((grant, st.ticket()))),
                    None => {}
                }
            }
            if offer.is_some() && !self.offered.load(Ordering::Relaxed) {
                self.offered.store(true, Ordering::Relaxed);
            }
            let w = Waiter::new(offer);
            st.waiters.push_back(Arc::clone(&w));
            return Ok(Err(w));
        }
    }

    /// A waiter gives up: it leaves the queue (or the line it was taken into), unless its
    /// grant already arrived, which is returned.
    fn abandon(&self, waiter: &Arc<Waiter>) -> Option<Granted> {
        let mut st = self.lock();
        let granted = waiter.leave();
        if granted.is_none() {
            st.waiters.retain(|w| !Arc::ptr_eq(w, waiter));
        }
        granted
    }

    /// The error of a wait that ran out of time (in the queue, or in a connection's line).
    pub fn timeout(&self, turn_on: Option<u64>) -> AcquireError {
        let st = self.lock();
        AcquireError::Timeout {
            busy: st.open.saturating_sub(st.idle.len()),
            waiting: st.waiters.len(),
            turn_on,
        }
    }

    /// Hands back a grant nobody will use (its request went away).
    pub fn give_back(&self, granted: Granted, limit: usize, settings: &Settings) {
        match granted {
            Ok((Grant::Idle(conn), ticket)) => {
                self.release(Some(conn), Ok(()), &ticket, limit, settings)
            }
            Ok((Grant::Open, ticket)) => {
                self.release(None, Err(CloseReason::Error), &ticket, limit, settings)
            }
            Ok((Grant::Turn(mut conn), ticket)) => {
                // Its response is on the way: the next turn reads and drops it.
                let head_only = conn.line().turn_head_only;
                conn.line().skip.push_back(head_only);
                self.pass_turn(conn, Ok(()), &ticket, limit, settings);
            }
            Err(_) => {}
        }
    }

    /// Ends a turn on a connection with a pipeline: `Ok` hands the connection to the next
    /// place still waiting (places that went away leave their responses to skip); with none
    /// left, it is released as `release` does, or closed if responses remain unread. `Err`
    /// ends the connection: every place gets a replay verdict.
    pub fn pass_turn(
        &self,
        mut conn: Connection,
        outcome: Result<(), CloseReason>,
        ticket: &Ticket,
        limit: usize,
        settings: &Settings,
    ) {
        if ticket.fork_generation != fork::generation() {
            // The places belong to the parent's threads: never touched here.
            return self.release(Some(conn), outcome, ticket, limit, settings);
        }
        let places = conn.line().places.clone();
        let next = || places.as_ref().and_then(|p| p.lock().pop_front());
        if let Err(reason) = outcome {
            while let Some(place) = next() {
                let _ = try_give(&place.waiter, Err(AcquireError::Replay));
            }
            conn.line().skip.clear();
            return self.release(Some(conn), Err(reason), ticket, limit, settings);
        }
        while let Some(place) = next() {
            conn.line().turn_head_only = place.head_only;
            match try_give(&place.waiter, Ok((Grant::Turn(conn), *ticket))) {
                Ok(()) => return,
                Err(Ok((Grant::Turn(back), _))) => {
                    conn = back;
                    conn.line().skip.push_back(place.head_only);
                }
                Err(_) => unreachable!("try_give returns what it was given"),
            }
        }
        let outcome = if conn.line().skip.is_empty() {
            Ok(())
        } else {
            Err(CloseReason::Abandoned)
        };
        self.release(Some(conn), outcome, ticket, limit, settings)
    }

    /// True once a request that may be pipelined has queued here.
    pub fn has_offers(&self) -> bool {
        self.offered.load(Ordering::Relaxed)
    }

    /// Takes requests that carry offers from the front of the queue into `conn`'s line (the
    /// holder writes their heads next), while `may` allows one more with that many in flight
    /// and the line is no longer than another pipelining connection's of the pool, so that
    /// requests go to the shortest line. Stops at the first request that may not be
    /// pipelined: the queue stays in order.
    pub fn take_into_line(
        &self,
        conn: &mut Connection,
        ticket: &Ticket,
        mut may: impl FnMut(usize) -> bool,
    ) -> Vec<Arc<Waiter>> {
        let mut st = self.lock();
        if st.waiters.front().is_none_or(|w| w.offer.is_none())
            || ticket.fork_generation != st.fork_generation
        {
            return Vec::new();
        }
        let places = conn.line().places();
        let shortest_other = st
            .busy
            .iter()
            .filter(|b| b.ticket != ticket.id)
            .filter_map(|b| b.places.as_ref().map(|p| p.lock().len()))
            .min();
        if let Some(b) = st.busy.iter_mut().find(|b| b.ticket == ticket.id) {
            b.places.get_or_insert_with(|| Arc::clone(&places));
        }
        // Responses of requests that went away are on the wire too.
        let skipped = conn.line().skip.len();
        let mut taken = Vec::new();
        let mut line = places.lock();
        while let Some(front) = st.waiters.front() {
            let Some(offer) = front.offer.as_ref() else {
                break;
            };
            let in_flight = 1 + skipped + line.len();
            if shortest_other.is_some_and(|s| line.len() > s) || !may(in_flight) {
                break;
            }
            let head_only = offer.head_only;
            let Some(w) = st.waiters.pop_front() else {
                break;
            };
            w.placed_on.store(conn.id, Ordering::Release);
            line.push_back(Place {
                waiter: Arc::clone(&w),
                head_only,
            });
            taken.push(w);
        }
        taken
    }

    /// Hands out the most recently used idle connection that the rules allow (not yet checked
    /// for liveness), or an opening slot while under the limit.
    fn take_now(&self, st: &mut State, limit: usize, settings: &Settings) -> Option<Grant> {
        let now = Instant::now();
        while let Some(conn) = st.idle.pop() {
            let same_generation = conn.generation == st.generation;
            match reuse::may_take_idle(&conn.facts(), settings, same_generation, now) {
                Ok(()) => return Some(Grant::Idle(conn)),
                Err(reason) => {
                    st.open = st.open.saturating_sub(1);
                    self.stats.closed(&conn, reason);
                }
            }
        }
        if st.open < limit {
            st.open += 1;
            return Some(Grant::Open);
        }
        None
    }

    /// Records the socket of a connection being opened for a ticket (idle connections handed
    /// out are recorded with their grant). False when the pool was closed meanwhile: the
    /// request must not go on.
    pub fn track(&self, ticket: &Ticket, socket: &Arc<TcpStream>) -> bool {
        let mut st = self.lock();
        if st.closed || ticket.fork_generation != st.fork_generation {
            return false;
        }
        match st.busy.iter_mut().find(|b| b.ticket == ticket.id) {
            Some(entry) => entry.socket = Arc::clone(socket),
            None => st.busy.push(Busy {
                ticket: ticket.id,
                socket: Arc::clone(socket),
                places: None,
            }),
        }
        true
    }

    /// Hands a slot back. `outcome` `Ok` offers the connection for reuse (to the first waiter,
    /// else the idle list); `Err` closes it for that reason. Without a connection, the slot of
    /// a connection that was never opened is freed.
    pub fn release(
        &self,
        conn: Option<Connection>,
        outcome: Result<(), CloseReason>,
        ticket: &Ticket,
        limit: usize,
        settings: &Settings,
    ) {
        let mut st = self.lock();
        if ticket.fork_generation != st.fork_generation {
            // Granted in the parent process: this process's bookkeeping never counted it.
            drop(st);
            drop(conn);
            return;
        }
        st.untrack(ticket);
        let retired = if st.closed {
            Some(CloseReason::ManagerClosed)
        } else if ticket.generation != st.generation {
            Some(CloseReason::GroupClosed)
        } else {
            None
        };
        match (conn, outcome, retired) {
            (Some(mut conn), Ok(()), None) => {
                if let Some(w) = st.waiters.pop_front() {
                    let ticket = st.ticket_for(&conn);
                    give(&w, Ok((Grant::Idle(conn), ticket)));
                } else {
                    conn.shrink_idle();
                    if let Some(at) = reuse::idle_deadline(&conn.facts(), settings) {
                        self.reaper.schedule(at);
                    }
                    st.idle.push(conn);
                }
            }
            (conn, outcome, retired) => {
                if let Some(conn) = conn {
                    let reason = match (retired, outcome) {
                        (Some(r), _) | (None, Err(r)) => r,
                        (None, Ok(())) => CloseReason::Error,
                    };
                    self.stats.closed(&conn, reason);
                    // Closed before its slot goes to a waiter: the server sees this connection
                    // end before the next one opens, so it never counts more than the limit.
                    drop(conn);
                }
                st.open = st.open.saturating_sub(1);
                self.wake_openers(&mut st, limit);
            }
        }
    }

    /// Grants opening slots to waiters while the pool is under `limit` (after a close, or when
    /// the limit was raised).
    fn wake_openers(&self, st: &mut State, limit: usize) {
        while st.open < limit && !st.closed {
            let Some(w) = st.waiters.pop_front() else {
                break;
            };
            st.open += 1;
            let ticket = st.ticket();
            give(&w, Ok((Grant::Open, ticket)));
        }
    }

    /// The limit may have been raised: let waiters open connections.
    pub fn limit_changed(&self, limit: usize) {
        let mut st = self.lock();
        self.wake_openers(&mut st, limit);
    }

    /// Takes out idle connections idle for their limit (into `expired`, for the caller to close
    /// outside any lock); returns the earliest time a remaining idle connection will expire.
    pub fn reap(&self, settings: &Settings, expired: &mut Vec<Connection>) -> Option<Instant> {
        let mut st = self.lock();
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut i = 0;
        while i < st.idle.len() {
            let facts = st.idle[i].facts();
            if reuse::idle_expired(&facts, settings, now) {
                let conn = st.idle.remove(i);
                st.open = st.open.saturating_sub(1);
                self.stats.closed(&conn, CloseReason::Idle);
                expired.push(conn);
                continue;
            }
            if let Some(at) = reuse::idle_deadline(&facts, settings) {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            i += 1;
        }
        next
    }

    /// Takes out idle connections that `retire` picks, counted as closed for `reason` (into
    /// `expired`, for the caller to close outside any lock).
    pub fn close_idle_if(
        &self,
        reason: CloseReason,
        expired: &mut Vec<Connection>,
        retire: impl Fn(&Connection) -> bool,
    ) {
        let mut st = self.lock();
        let before = expired.len();
        let mut i = 0;
        while i < st.idle.len() {
            if retire(&st.idle[i]) {
                let conn = st.idle.remove(i);
                self.stats.closed(&conn, reason);
                expired.push(conn);
            } else {
                i += 1;
            }
        }
        let closed = expired.len() - before;
        st.open = st.open.saturating_sub(closed);
    }

    /// True when the pool holds an idle connection.
    pub fn has_idle(&self) -> bool {
        !self.lock().idle.is_empty()
    }

    /// Closes idle connections now and marks busy ones to close when released (a connection
    /// group closed: they keep their slots until then, so the limit still holds). With
    /// `terminal` (the manager was freed) the pool closes for good: waiting requests fail at
    /// once and busy sockets are shut down, which wakes the threads blocked on them. Returns
    /// true if the pool had any connection or waiter.
    pub fn close_all(&self, reason: CloseReason, limit: usize, terminal: bool) -> bool {
        let mut st = self.lock();
        let existed = st.open > 0 || !st.waiters.is_empty();
        st.generation += 1;
        let closed = std::mem::take(&mut st.idle);
        st.open = st.open.saturating_sub(closed.len());
        for conn in &closed {
            self.stats.closed(conn, reason);
        }
        if terminal {
            st.closed = true;
            for b in &st.busy {
                let _ = b.socket.shutdown(Shutdown::Both);
                let places: Vec<Place> = b
                    .places
                    .iter()
                    .flat_map(|p| p.lock().drain(..).collect::<Vec<_>>())
                    .collect();
                for place in places {
                    let _ = try_give(&place.waiter, Err(AcquireError::Closed));
                }
            }
            for w in st.waiters.drain(..) {
                give(&w, Err(AcquireError::Closed));
            }
        } else {
            self.wake_openers(&mut st, limit);
        }
        existed
    }

    /// (open, idle, waiting) right now.
    pub fn counts(&self) -> (usize, usize, usize) {
        let st = self.lock();
        (st.open, st.idle.len(), st.waiters.len())
    }
}

fn give(w: &Waiter, result: Granted) {
    *w.grant.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
    w.wake();
}

/// How often a blocking wait in the queue looks at its cancel tokens, at most.
const CANCEL_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// The future of `Pool::acquire_async`.
pub struct Acquire<'a> {
    pool: &'a Pool,
    limit: usize,
    settings: Settings,
    offer: Option<Offer>,
    waiter: Option<Arc<Waiter>>,
    done: bool,
}

impl Acquire<'_> {
    fn take_or_enqueue(&mut self) -> Result<Result<(Grant, Ticket), Arc<Waiter>>, AcquireError> {
        let offer = self.offer.take();
        self.pool.take_or_enqueue(self.limit, &self.settings, offer)
    }

    /// The connection whose line the request waits in, if it was taken into one.
    pub fn turn_on(&self) -> Option<u64> {
        self.waiter.as_ref().and_then(|w| w.turn_on())
    }
}

impl Future for Acquire<'_> {
    type Output = Granted;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Granted> {
        let waiter = match &self.waiter {
            Some(w) => Arc::clone(w),
            None => match self.take_or_enqueue() {
                Ok(Ok(granted)) => {
                    self.done = true;
                    return Poll::Ready(Ok(granted));
                }
                Err(e) => {
                    self.done = true;
                    return Poll::Ready(Err(e));
                }
                Ok(Err(w)) => {
                    self.waiter = Some(Arc::clone(&w));
                    w
                }
            },
        };
        // The waker first, then the grant: a grant given in between is seen here.
        *waiter.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        match waiter.take() {
            Some(result) => {
                self.done = true;
                Poll::Ready(result)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(w) = self.waiter.take() {
            if let Some(granted) = self.pool.abandon(&w) {
                self.pool.give_back(granted, self.limit, &self.settings);
            }
        }
    }
}

//! The executor behind a completion queue: operations started on a queue run as tasks polled
//! by the thread that drains it (`CompletionQueue::run`), not on the runtime. Their socket
//! waits and timers are registered in the queue's own epoll set, whose descriptor is the one
//! the program polls; so an event loop does every request's socket work on its own thread, as
//! libcurl's multi interface does, with no hand-off to a library thread per request.
//!
//! Wake-ups from other threads (a pool grant, a cancel, a finished name lookup) push the task
//! on the ready list and write the queue's eventfd, which is in the same epoll set.

use crate::fork::Lock;
use std::cmp::Reverse;
// Keyed by descriptors and sequence numbers the library owns: no collision-resistant hash.
use rustc_hash::FxHashMap as HashMap;
use std::collections::{BinaryHeap, VecDeque};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

static NEXT_LOCAL_ID: AtomicU64 = AtomicU64::new(1);

/// epoll data of the eventfd and the timerfd (socket registrations carry their descriptor).
const EVENT_KEY: u64 = u64::MAX;
const TIMER_KEY: u64 = u64::MAX - 1;

pub struct Local {
    epoll: OwnedFd,
    event: OwnedFd,
    timer: OwnedFd,
    /// Task slots (a slot is empty while its task is being polled, or free), each with the
    /// waker made for it once (a task is polled several times per request).
    tasks: Lock<Vec<Option<Task>>>,
    wakers: Lock<Vec<Option<Waker>>>,
    /// Unique among the queues of the process: which executor a socket is registered with.
    id: u64,
    free: Lock<Vec<usize>>,
    live: AtomicU64,
    ready: Lock<VecDeque<usize>>,
    /// The task waiting on a descriptor, and for what (poll(2) bits, errors included).
    io_waiters: Lock<HashMap<RawFd, (Waker, libc::c_short)>>,
    /// What epoll reported for a descriptor (as poll(2) bits), for its waiter to take.
    seen: Lock<HashMap<RawFd, libc::c_short>>,
    timers: Lock<Timers>,
    signalled: AtomicBool,
}

#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    wakers: HashMap<u64, Waker>,
    next: u64,
}

struct TaskWaker {
    local: Weak<Local>,
    id: usize,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(local) = self.local.upgrade() {
            local.ready.lock().push_back(self.id);
            local.signal();
        }
    }
}

fn os(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Local {
    pub fn new() -> io::Result<Arc<Local>> {
        // SAFETY: plain descriptor-creating calls; results checked, then owned.
        let (epoll, event, timer) = unsafe {
            let e = os(libc::epoll_create1(libc::EPOLL_CLOEXEC))?;
            let epoll = OwnedFd::from_raw_fd(e);
            let v = os(libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC))?;
            let event = OwnedFd::from_raw_fd(v);
            let t = os(libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            ))?;
            (epoll, event, OwnedFd::from_raw_fd(t))
        };
        let local = Local {
            epoll,
            event,
            timer,
            tasks: Lock::new(Vec::new()),
            wakers: Lock::new(Vec::new()),
            id: NEXT_LOCAL_ID.fetch_add(1, Ordering::Relaxed),
            free: Lock::new(Vec::new()),
            live: AtomicU64::new(0),
            ready: Lock::new(VecDeque::new()),
            io_waiters: Lock::new(HashMap::default()),
            seen: Lock::new(HashMap::default()),
            timers: Lock::new(Timers::default()),
            signalled: AtomicBool::new(false),
        };
        local.ctl(
            libc::EPOLL_CTL_ADD,
            local.event.as_raw_fd(),
            libc::EPOLLIN as u32,
            EVENT_KEY,
        )?;
        local.ctl(
            libc::EPOLL_CTL_ADD,
            local.timer.as_raw_fd(),
            libc::EPOLLIN as u32,
            TIMER_KEY,
        )?;
        Ok(Arc::new(local))
    }

    /// The descriptor a program polls: readable when a task can make progress or a
    /// completion is queued.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Tasks not finished yet.
    pub fn live_tasks(&self) -> u64 {
        self.live.load(Ordering::Acquire)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: key };
        // SAFETY: a valid epoll descriptor and event for the duration of the call.
        os(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) }).map(|_| ())
    }

    /// Makes the eventfd (and so the epoll descriptor) readable.
    pub fn signal(&self) {
        if self.signalled.swap(true, Ordering::AcqRel) {
            return;
        }
        let one = 1u64;
        // SAFETY: 8 bytes from a valid local to our own eventfd.
        let _ = unsafe { libc::write(self.event.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// Clears a wake-up that has been dealt with (the eventfd readable although nothing is
    /// left), so the descriptor does not wake the program for nothing; keeps it readable if a
    /// task is ready.
    pub fn quiesce(&self) {
        self.take_signal();
        if !self.ready.lock().is_empty() {
            self.signal();
        }
    }

    /// Adds a task; it is first polled by the next `poll_ready`.
    pub fn spawn(self: &Arc<Self>, task: Task) {
        let id = {
            let mut tasks = self.tasks.lock();
            match self.free.lock().pop() {
                Some(id) => {
                    tasks[id] = Some(task);
                    id
                }
                None => {
                    tasks.push(Some(task));
                    tasks.len() - 1
                }
            }
        };
        self.live.fetch_add(1, Ordering::AcqRel);
        self.ready.lock().push_back(id);
        self.signal();
    }

    /// Collects readiness (sockets, timers, wake-ups) and polls every task that can go on.
    /// Returns how many tasks were polled.
    pub fn poll_ready(self: &Arc<Self>) -> usize {
        self.collect_events();
        let batch: Vec<usize> = {
            let mut ready = self.ready.lock();
            let mut ids: Vec<usize> = ready.drain(..).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let mut polled = 0;
        for id in batch {
            let Some(mut task) = self.tasks.lock().get_mut(id).and_then(Option::take) else {
                continue;
            };
            let waker = self.waker(id);
            polled += 1;
            match task.as_mut().poll(&mut Context::from_waker(&waker)) {
                Poll::Pending => self.tasks.lock()[id] = Some(task),
                Poll::Ready(()) => {
                    drop(task);
                    self.free.lock().push(id);
                    self.live.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
        self.arm_timer();
        polled
    }

    /// The waker of task slot `id`, made on its first use (slots are reused, and a waker only
    /// names its slot).
    fn waker(self: &Arc<Self>, id: usize) -> Waker {
        let mut wakers = self.wakers.lock();
        if wakers.len() <= id {
            wakers.resize(id + 1, None);
        }
        wakers[id]
            .get_or_insert_with(|| {
                Waker::from(Arc::new(TaskWaker {
                    local: Arc::downgrade(self),
                    id,
                }))
            })
            .clone()
    }

    /// Which executor this is (see `Reactor::registered_with`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Consumes the eventfd's wake-up: from here on, a `signal` writes it again.
    fn take_signal(&self) {
        drain_counter(self.event.as_raw_fd());
        self.signalled.store(false, Ordering::Release);
    }

    fn collect_events(&self) {
        self.take_signal();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        loop {
            // SAFETY: `events` has room for 64 entries; zero timeout.
            let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), 64, 0) };
            if n <= 0 {
                break;
            }
            for ev in &events[..n as usize] {
                let key = ev.u64;
                if key == EVENT_KEY {
                    continue;
                }
                if key == TIMER_KEY {
                    drain_counter(self.timer.as_raw_fd());
                    continue;
                }
                // Sockets stay registered (edge-triggered): what arrives with nobody waiting is
                // kept for the next wait on the descriptor.
                let fd = key as RawFd;
                let bits = poll_bits(ev.events);
                *self.seen.lock().entry(fd).or_insert(0) |= bits;
                // Only what the waiter waits for wakes it (a write-space edge does not wake a
                // reader).
                let mut waiters = self.io_waiters.lock();
                if waiters
                    .get(&fd)
                    .is_some_and(|(_, wanted)| bits & wanted != 0)
                {
                    if let Some((w, _)) = waiters.remove(&fd) {
                        drop(waiters);
                        w.wake();
                    }
                }
            }
            if (n as usize) < events.len() {
                break;
            }
        }
        let now = Instant::now();
        let due: Vec<Waker> = {
            let mut t = self.timers.lock();
            let mut due = Vec::new();
            while let Some(Reverse((at, seq))) = t.heap.peek().copied() {
                if at > now {
                    break;
                }
                t.heap.pop();
                due.extend(t.wakers.remove(&seq));
            }
            due
        };
        due.into_iter().for_each(Waker::wake);
    }

    /// Sets the timerfd to the earliest pending timer (disarmed when none).
    fn arm_timer(&self) {
        let next = {
            let mut t = self.timers.lock();
            // Drop entries whose sleepers went away.
            while let Some(Reverse((_, seq))) = t.heap.peek().copied() {
                if t.wakers.contains_key(&seq) {
                    break;
                }
                t.heap.pop();
            }
            t.heap.peek().map(|Reverse((at, _))| *at)
        };
        // SAFETY: itimerspec is plain integers; all zero is a valid value (a disarmed timer).
        let mut spec: libc::itimerspec = unsafe { std::mem::zeroed() };
        if let Some(at) = next {
            let left = at.saturating_duration_since(Instant::now());
            // A zero value would disarm: at least 1 ns.
            let left = left.max(std::time::Duration::from_nanos(1));
            spec.it_value.tv_sec = left.as_secs().min(i64::MAX as u64) as libc::time_t;
            spec.it_value.tv_nsec = left.subsec_nanos() as libc::c_long;
        }
        // SAFETY: a valid timerfd and itimerspec.
        unsafe {
            libc::timerfd_settime(self.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut());
        }
    }

    /// Waits until `fd` is ready for `events` (poll(2) bits) or `deadline` passes. The socket
    /// is registered with this executor's epoll set on its first wait here and stays so
    /// (edge-triggered, for reading and writing): `registered` says it already is, which
    /// saves an `epoll_ctl` per wait. Every wait follows a step that found the socket not
    /// ready, so the edge it waits for is still to come (or already kept in `seen`).
    pub fn ready(
        self: &Arc<Self>,
        fd: RawFd,
        events: libc::c_short,
        deadline: Option<Instant>,
        registered: bool,
    ) -> Ready {
        Ready {
            local: Arc::clone(self),
            fd,
            events,
            deadline,
            known: registered,
            registered: None,
        }
    }

    /// Adds a socket to the epoll set for good (edge-triggered); one registered before (the
    /// same socket, used by this queue earlier) is updated instead.
    fn register(&self, fd: RawFd) -> io::Result<()> {
        let bits = libc::EPOLLET as u32
            | libc::EPOLLIN as u32
            | libc::EPOLLOUT as u32
            | libc::EPOLLRDHUP as u32;
        self.ctl(libc::EPOLL_CTL_ADD, fd, bits, fd as u64)
            .or_else(|e| match e.raw_os_error() {
                Some(libc::EEXIST) => self.ctl(libc::EPOLL_CTL_MOD, fd, bits, fd as u64),
                _ => Err(e),
            })
    }

    /// Resolves at `deadline`.
    pub fn sleep_until(self: &Arc<Self>, deadline: Instant) -> Sleep {
        Sleep {
            local: Arc::clone(self),
            deadline,
            seq: None,
        }
    }

    fn add_timer(&self, at: Instant, waker: Waker) -> u64 {
        let mut t = self.timers.lock();
        t.next += 1;
        let seq = t.next;
        t.heap.push(Reverse((at, seq)));
        t.wakers.insert(seq, waker);
        seq
    }

    fn remove_timer(&self, seq: u64) {
        self.timers.lock().wakers.remove(&seq);
    }
}

/// Reads (and so resets) the 8-byte counter of a non-blocking eventfd or timerfd.
fn drain_counter(fd: RawFd) {
    let mut count = 0u64;
    // SAFETY: 8 bytes into a valid local from a non-blocking descriptor of ours.
    let _ = unsafe { libc::read(fd, (&raw mut count).cast(), 8) };
}

/// epoll bits as poll(2) bits (a peer's half-close reads as readable).
fn poll_bits(events: u32) -> libc::c_short {
    let mut bits = 0;
    if events & (libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32) != 0 {
        bits |= libc::POLLIN;
    }
    if events & libc::EPOLLOUT as u32 != 0 {
        bits |= libc::POLLOUT;
    }
    if events & libc::EPOLLERR as u32 != 0 {
        bits |= libc::POLLERR;
    }
    if events & libc::EPOLLHUP as u32 != 0 {
        bits |= libc::POLLHUP;
    }
    bits
}

/// The future of `Local::ready`: registered on first poll, done on the next with what epoll
/// reported (None: woken by the deadline or a cancel).
pub struct Ready {
    local: Arc<Local>,
    fd: RawFd,
    events: libc::c_short,
    deadline: Option<Instant>,
    /// The socket is registered with the epoll set already.
    known: bool,
    registered: Option<Option<u64>>,
}

impl Future for Ready {
    type Output = io::Result<Option<libc::c_short>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.registered.is_some() {
            let seen = self.local.seen.lock().remove(&self.fd);
            return Poll::Ready(Ok(seen));
        }
        let (local, fd) = (Arc::clone(&self.local), self.fd);
        if !self.known {
            if let Err(e) = local.register(fd) {
                return Poll::Ready(Err(e));
            }
        }
        // An edge that came while nobody waited: ready now (if it was stale, the step finds
        // nothing and waits again, for an edge still to come).
        let wanted = self.events | libc::POLLERR | libc::POLLHUP;
        {
            let mut seen = local.seen.lock();
            if let Some(&bits) = seen.get(&fd) {
                if bits & wanted != 0 {
                    seen.remove(&fd);
                    return Poll::Ready(Ok(Some(bits)));
                }
            }
        }
        local
            .io_waiters
            .lock()
            .insert(fd, (cx.waker().clone(), wanted));
        let timer = self
            .deadline
            .map(|d| local.add_timer(d, cx.waker().clone()));
        self.registered = Some(timer);
        Poll::Pending
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        if let Some(timer) = self.registered {
            self.local.io_waiters.lock().remove(&self.fd);
            if let Some(seq) = timer {
                self.local.remove_timer(seq);
            }
        }
    }
}

/// The future of `Local::sleep_until`.
pub struct Sleep {
    local: Arc<Local>,
    deadline: Instant,
    seq: Option<u64>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        if let Some(seq) = self.seq.take() {
            self.local.remove_timer(seq);
        }
        let seq = self.local.add_timer(self.deadline, cx.waker().clone());
        self.seq = Some(seq);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(seq) = self.seq {
            self.local.remove_timer(seq);
        }
    }
}

//! Logging and metrics: `sp_manager_set_log_callback`, and the queue-wait and
//! connection-lifetime histograms of a service point or a whole manager.

use super::access::{get, read, set};
use super::boundary::{FfiError, call, guard, try_out, write_sized};
use super::manager::sp_manager;
use super::point::{sp_point, sp_statistics, write_statistics};
use super::result::sp_result;
use crate::log::{Level, Sink};
use crate::stats::{BUCKET_BOUNDS_US, BUCKETS, HistogramSnapshot};
use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

/// Log levels for sp_manager_set_log_callback(): a callback set at a level receives messages
/// of that level and the more severe ones.
pub const SP_LOG_OFF: i32 = 0;
pub const SP_LOG_ERROR: i32 = 1;
pub const SP_LOG_WARN: i32 = 2;
pub const SP_LOG_INFO: i32 = 3;
pub const SP_LOG_DEBUG: i32 = 4;

/// Receives a log message: its level (SP_LOG_ERROR..SP_LOG_DEBUG) and its text (UTF-8,
/// NUL-terminated, valid during the call only). Called on the thread whose call caused the
/// event (the idle reaper's closes on a library thread); must not block for long. Blocking
/// library calls made from inside it return SP_E_WRONG_THREAD.
pub type sp_log_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, level: i32, message: *const c_char)>;

struct CallbackSink {
    cb: unsafe extern "C" fn(*mut c_void, i32, *const c_char),
    userdata: *mut c_void,
}

// SAFETY: the caller promises (header doc) that the callback and userdata may be used from any
// thread until the callback is replaced or the manager freed.
unsafe impl Send for CallbackSink {}
// SAFETY: as above.
unsafe impl Sync for CallbackSink {}

impl Sink for CallbackSink {
    fn log(&self, level: Level, message: &str) {
        let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the text is valid for the call; cb and userdata per the contract.
        unsafe { (self.cb)(self.userdata, level as i32, text.as_ptr()) }
    }
}

/// Routes the manager's log messages to `callback` at `level` and above: each connection
/// opened (address, local port, TLS full or resumed; SP_LOG_INFO), reused (SP_LOG_DEBUG),
/// closed with its reason (SP_LOG_DEBUG, SP_LOG_INFO after errors), each retry and its cause
/// (SP_LOG_WARN), queue waits of 100 ms or more (SP_LOG_INFO). `level` SP_LOG_OFF or a NULL
/// callback turns logging off (the default; it then costs nothing).
///
/// Ownership: `userdata` is borrowed until the callback is replaced or the manager freed.
/// Thread safety: any thread; the callback is called from any thread (see sp_log_cb).
/// Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE (level).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_log_callback(
    manager: *mut sp_manager,
    level: i32,
    callback: sp_log_cb,
    userdata: *mut c_void,
) -> sp_result {
    call(|| {
        if level != SP_LOG_OFF && Level::from_i32(level).is_none() {
            return Err(FfiError::new(
                sp_result::SP_E_OUT_OF_RANGE,
                format!("log level {level} is not SP_LOG_OFF..SP_LOG_DEBUG"),
            ));
        }
        let sink = match (Level::from_i32(level), callback) {
            (Some(level), Some(cb)) => Some((
                level,
                Arc::new(CallbackSink { cb, userdata }) as Arc<dyn Sink>,
            )),
            _ => None,
        };
        set(manager, |m| {
            m.log().set(sink);
        })
    })
}

/// Delivers the manager's log messages through `queue`: the callback then runs on the thread
/// that drains the queue (sp_completion_queue_run) instead of on the thread that logged (a
/// request's caller, or a library thread for the idle reaper and asynchronous requests). For
/// runtimes whose threads must not be entered from library threads (Mono hangs at exit after
/// that). NULL delivers directly again (the default).
///
/// Ownership: the manager keeps the queue alive; the callback's `userdata` must then stay
/// valid until the messages queued for it have run (or the queue is freed).
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_log_queue(
    manager: *mut sp_manager,
    queue: *mut super::operation::sp_completion_queue,
) -> sp_result {
    call(|| {
        let queue = if queue.is_null() {
            None
        } else {
            Some(read(queue, Arc::clone)?)
        };
        set(manager, |m| {
            m.log().set_queue(queue);
        })
    })
}

/// *out_value receives 1 if log messages go through a queue (sp_manager_set_log_queue()),
/// else 0.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_has_log_queue(
    manager: *const sp_manager,
    out_value: *mut i32,
) -> sp_result {
    call(|| get(manager, try_out!(out_value), |m| m.log().has_queue() as i32))
}

/// The level logging is set at (SP_LOG_OFF when off).
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_log_level(
    manager: *const sp_manager,
    out_level: *mut i32,
) -> sp_result {
    call(|| {
        get(manager, try_out!(out_level), |m| {
            m.log().level().map_or(SP_LOG_OFF, |l| l as i32)
        })
    })
}

/// Which histogram sp_get_histogram() and sp_manager_get_histogram() read.
pub const SP_METRIC_QUEUE_WAIT: i32 = 0;
pub const SP_METRIC_CONNECTION_LIFETIME: i32 = 1;

/// Number of buckets of an sp_histogram.
pub const SP_HISTOGRAM_BUCKETS: usize = 20;
const _: () = assert!(SP_HISTOGRAM_BUCKETS == BUCKETS);

/// A histogram of durations: `count` observations summing to `sum_us` microseconds, and
/// `buckets[i]` of them at most sp_histogram_bound_us(i) (the last bucket has no bound). Set
/// `struct_size` to sizeof(sp_histogram) before the call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct sp_histogram {
    /// Size of this struct as the caller knows it.
    pub struct_size: u32,
    /// Number of buckets (SP_HISTOGRAM_BUCKETS).
    pub bucket_count: u32,
    pub count: u64,
    pub sum_us: u64,
    pub buckets: [u64; SP_HISTOGRAM_BUCKETS],
}

/// The upper bound of histogram bucket `index` in microseconds; UINT64_MAX for the last one
/// (and for an index past it).
///
/// Thread safety: any thread. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn sp_histogram_bound_us(index: usize) -> u64 {
    guard(u64::MAX, || {
        BUCKET_BOUNDS_US.get(index).copied().unwrap_or(u64::MAX)
    })
}

fn metric(
    which: i32,
    queue: HistogramSnapshot,
    lifetime: HistogramSnapshot,
) -> Result<HistogramSnapshot, FfiError> {
    match which {
        SP_METRIC_QUEUE_WAIT => Ok(queue),
        SP_METRIC_CONNECTION_LIFETIME => Ok(lifetime),
        _ => Err(FfiError::new(
            sp_result::SP_E_OUT_OF_RANGE,
            format!("metric {which} is not SP_METRIC_QUEUE_WAIT or SP_METRIC_CONNECTION_LIFETIME"),
        )),
    }
}

/// Writes a histogram into a caller's struct of `struct_size` bytes (no more).
fn write_histogram(dst: *mut sp_histogram, h: &HistogramSnapshot) -> Result<(), FfiError> {
    // No padding (u32, u32, then u64s): every byte copied is defined.
    let min = std::mem::size_of::<u64>() * 3;
    write_sized(dst, min, "out_histogram", |n| sp_histogram {
        struct_size: n,
        bucket_count: SP_HISTOGRAM_BUCKETS as u32,
        count: h.count,
        sum_us: h.sum_us,
        buckets: h.buckets,
    })
}

/// Reads a histogram of a service point: SP_METRIC_QUEUE_WAIT (time each request waited for
/// a connection, 0 included) or SP_METRIC_CONNECTION_LIFETIME (connect to close, per closed
/// connection).
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER,
/// SP_E_OUT_OF_RANGE (which), SP_E_INVALID_ARGUMENT (struct_size too small),
/// SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_histogram(
    point: *const sp_point,
    which: i32,
    out_histogram: *mut sp_histogram,
) -> sp_result {
    call(|| {
        let dst = try_out!(out_histogram);
        let (queue, lifetime) = read(point, |e| {
            let stats = &e.point.stats;
            (
                stats.queue_wait.snapshot(),
                stats.connection_lifetime.snapshot(),
            )
        })?;
        write_histogram(dst, &metric(which, queue, lifetime)?)
    })
}

/// Statistics summed over the manager's service points (the manager-wide figures: open, idle
/// and busy connections, requests, closes by reason...). Set `struct_size` first, as for
/// sp_get_statistics().
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER,
/// SP_E_INVALID_ARGUMENT (struct_size too small).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_statistics(
    manager: *const sp_manager,
    out_stats: *mut sp_statistics,
) -> sp_result {
    call(|| {
        let dst = try_out!(out_stats);
        let (total, _, _) = read(manager, |m| m.statistics())?;
        write_statistics(dst, &total)
    })
}

/// Reads a histogram summed over the manager's service points (see sp_get_histogram()).
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER,
/// SP_E_OUT_OF_RANGE (which), SP_E_INVALID_ARGUMENT (struct_size too small).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_histogram(
    manager: *const sp_manager,
    which: i32,
    out_histogram: *mut sp_histogram,
) -> sp_result {
    call(|| {
        let dst = try_out!(out_histogram);
        let (_, queue, lifetime) = read(manager, |m| m.statistics())?;
        write_histogram(dst, &metric(which, queue, lifetime)?)
    })
}

//! `sp_request_async`, `sp_response_read_async`, `sp_operation_*`, `sp_completion_queue_*` and
//! `sp_cancel_token_*`: requests and body reads that do not block a thread, their completion
//! (exactly once, on a runtime thread or through a queue the program drains), and cancellation
//! of both styles.

use super::access::{Handle, get, read};
use super::boundary::{FfiError, FfiResult, call, guard, record, try_out, write};
use super::handles::{self, Entry, ResponseCell};
use super::manager::sp_manager;
use super::request::sp_http_request;
use super::response::sp_response;
use super::result::sp_result;
use crate::cancel::CancelToken;
use crate::error::Result as CoreResult;
use crate::operation::{self, CompletionQueue, Deliver, Operation};
use crate::response::BodyReader;
use std::ffi::c_void;
use std::sync::Arc;

/// An asynchronous request or body read in progress (or finished). Its callback fires exactly
/// once whatever happens; freeing the handle does not cancel the operation nor stop the callback.
/// Thread safety: any thread.
///
/// Functions: sp_request_async, sp_request_async_queued, sp_response_read_async,
/// sp_response_read_async_queued (create it), sp_operation_cancel, sp_operation_is_done,
/// sp_operation_free.
pub struct sp_operation {
    _opaque: [u8; 0],
}

/// An event loop's share of the library: the operations started on it (the _queued
/// functions) run on the thread that calls sp_completion_queue_run, socket work included, as
/// libcurl's multi interface does; no library thread takes part. Its file descriptor (an epoll
/// set of those operations' sockets and timers) is readable while there is work: add it to the
/// loop's poll set and call sp_completion_queue_run when it is readable. Nothing progresses
/// between runs. Thread safety: any thread; one thread runs it at a time (concurrent runs
/// take turns); callbacks run on the thread that calls sp_completion_queue_run.
///
/// Functions: sp_completion_queue_new, sp_completion_queue_fd, sp_completion_queue_run,
/// sp_completion_queue_wait, sp_completion_queue_len, sp_completion_queue_free.
pub struct sp_completion_queue {
    _opaque: [u8; 0],
}

/// Cancels the requests and body reads that watch it, blocking (from another thread) or
/// asynchronous, until reset. Set on a request description with sp_http_request_set_cancel_token.
/// Thread safety: any thread; sp_cancel_token_cancel is safe in a signal handler only through
/// its wake-up descriptor (write a byte to it).
///
/// Functions: sp_cancel_token_new, sp_cancel_token_cancel, sp_cancel_token_reset,
/// sp_cancel_token_is_canceled, sp_cancel_token_wakeup_fd, sp_cancel_token_free,
/// sp_http_request_set_cancel_token.
pub struct sp_cancel_token {
    _opaque: [u8; 0],
}

/// Receives an asynchronous request's outcome: SP_OK with a response handle (the caller owns
/// it and frees it with sp_response_free), or an error code with `response` NULL (the message
/// is sp_last_error() during the callback; sp_last_error_request_sent() says whether the server
/// may have seen the request).
pub type sp_response_callback = Option<
    unsafe extern "C" fn(userdata: *mut c_void, result: sp_result, response: *mut sp_response),
>;

/// Receives an asynchronous body read's outcome: SP_OK with `len` bytes at `data` (valid only
/// during the callback; `len` 0 means the end of the body), or an error code (`data` NULL, the
/// message is sp_last_error() during the callback).
pub type sp_read_callback = Option<
    unsafe extern "C" fn(userdata: *mut c_void, result: sp_result, data: *const u8, len: usize),
>;

/// A handle kind whose object is a shared value in the table (cloned out of it, so the table
/// is not locked while it is used).
macro_rules! shared_handle {
    ($handle:ty, $object:ty, $variant:ident, $what:literal) => {
        impl Handle for $handle {
            type Object = $object;
            fn with<R>(
                handle: *const Self,
                f: impl FnOnce(&mut $object) -> Result<R, FfiError>,
            ) -> Result<R, FfiError> {
                match handles::get(handle)? {
                    Entry::$variant(mut object) => f(&mut object),
                    _ => Err(FfiError::new(
                        sp_result::SP_E_INVALID_HANDLE,
                        concat!("handle is not ", $what),
                    )),
                }
            }
        }
    };
}

shared_handle!(sp_operation, Arc<Operation>, Operation, "an operation");
shared_handle!(
    sp_completion_queue,
    Arc<CompletionQueue>,
    Queue,
    "a completion queue"
);
shared_handle!(sp_cancel_token, CancelToken, Token, "a cancel token");

/// The caller's `userdata`, carried to the thread that runs the callback; the caller's
/// contract (documented on each function) makes it usable there.
struct UserData(*mut c_void);
// SAFETY: the library only passes the pointer back to the caller's callback; what it points
// to is the caller's responsibility (documented: it must be usable from the callback's thread).
unsafe impl Send for UserData {}

/// The `_queued` functions need a queue: NULL is an invalid handle, as for any handle.
fn require_queue(queue: *mut sp_completion_queue) -> FfiResult {
    if queue.is_null() {
        return Err(FfiError::new(
            sp_result::SP_E_INVALID_HANDLE,
            "queue handle is NULL",
        ));
    }
    Ok(())
}

fn deliver_to(queue: *mut sp_completion_queue) -> Result<Deliver, FfiError> {
    if queue.is_null() {
        return Ok(Deliver::Runtime);
    }
    sp_completion_queue::with(queue, |q| Ok(Deliver::Queue(Arc::clone(q))))
}

fn start_request(
    manager: *mut sp_manager,
    request: *mut sp_http_request,
    queue: *mut sp_completion_queue,
    callback: sp_response_callback,
    userdata: *mut c_void,
    out_operation: *mut *mut sp_operation,
) -> FfiResult {
    let m = handles::manager(manager)?;
    let req = sp_http_request::with(request, |r| Ok(Arc::clone(r)))?;
    let callback =
        callback.ok_or_else(|| FfiError::new(sp_result::SP_E_NULL_POINTER, "callback is NULL"))?;
    let dst = try_out!(out_operation);
    let deliver = deliver_to(queue)?;
    let userdata = UserData(userdata);
    let op = m.send_async(req, CancelToken::new(), deliver, move |result| {
        let userdata = userdata;
        let (code, response) = match outcome(result) {
            Ok(response) => (sp_result::SP_OK, super::request::response_handle(response)),
            Err(code) => (code, std::ptr::null_mut()),
        };
        // SAFETY: the caller's callback with the caller's userdata, as documented. On a
        // runtime thread, blocking calls inside it are refused (`runtime`); on the thread
        // draining a queue they are the program's own.
        unsafe { callback(userdata.0, code, response) };
    })?;
    hand_out(dst, op);
    Ok(())
}

/// Sends a request without blocking: returns at once with an operation handle, and `callback`
/// fires exactly once, on a library runtime thread, with the response once its head has
/// arrived, or with an error (SP_E_CANCELED after sp_operation_cancel, timeouts as for
/// sp_request, SP_E_MANAGER_CLOSED when the manager is freed first, ...). The request waits
/// in the same FIFO queue as blocking ones and follows every rule they follow.
///
/// Ownership: `request` is borrowed (reusable at once). On SP_OK *out_operation receives a
/// handle to free with sp_operation_free (freeing it does not cancel). The response given to
/// the callback is the caller's, to free with sp_response_free.
/// Callback thread: a runtime thread, which must not block: blocking calls made there (sp_request,
/// sp_response_read, ...) return SP_E_WRONG_THREAD; sp_request_async, sp_response_read_async,
/// the getters and the _free functions may be called. `userdata` must be usable there.
/// Blocking: never. Thread safety: any thread.
/// Errors (then the callback is never called): SP_E_INVALID_HANDLE, SP_E_NULL_POINTER,
/// SP_E_TOO_MANY_SERVICE_POINTS, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_request_async(
    manager: *mut sp_manager,
    request: *mut sp_http_request,
    callback: sp_response_callback,
    userdata: *mut c_void,
    out_operation: *mut *mut sp_operation,
) -> sp_result {
    call(|| {
        start_request(
            manager,
            request,
            std::ptr::null_mut(),
            callback,
            userdata,
            out_operation,
        )
    })
}

/// sp_request_async that runs on `queue`: the request progresses, and its callback runs, only
/// inside sp_completion_queue_run on the thread that calls it (an event loop's thread: no
/// library thread does its work or runs the program's code). Blocking calls are allowed in
/// that callback (it runs on the program's thread), though an event loop rarely wants them.
///
/// Ownership: as sp_request_async; `queue` (not NULL: SP_E_INVALID_HANDLE) is borrowed;
/// sp_completion_queue_free cancels the operations still on it and runs their callbacks.
/// Errors: as sp_request_async.
#[unsafe(no_mangle)]
pub extern "C" fn sp_request_async_queued(
    manager: *mut sp_manager,
    request: *mut sp_http_request,
    queue: *mut sp_completion_queue,
    callback: sp_response_callback,
    userdata: *mut c_void,
    out_operation: *mut *mut sp_operation,
) -> sp_result {
    call(|| {
        require_queue(queue)?;
        start_request(manager, request, queue, callback, userdata, out_operation)
    })
}

fn start_read(
    response: *mut sp_response,
    queue: *mut sp_completion_queue,
    max: usize,
    callback: sp_read_callback,
    userdata: *mut c_void,
    out_operation: *mut *mut sp_operation,
) -> FfiResult {
    let callback =
        callback.ok_or_else(|| FfiError::new(sp_result::SP_E_NULL_POINTER, "callback is NULL"))?;
    let dst = try_out!(out_operation);
    if max == 0 {
        return Err(FfiError::new(
            sp_result::SP_E_OUT_OF_RANGE,
            "max must be > 0",
        ));
    }
    let deliver = deliver_to(queue)?;
    let cell: Arc<ResponseCell> = handles::response(response)?;
    let mut body = {
        let mut entry = cell.lock()?;
        entry.response.take_body()?
    };
    let token = CancelToken::new();
    let userdata = UserData(userdata);
    let deliver_read = move |result: CoreResult<Vec<u8>>| {
        let userdata = userdata;
        // Kept in `result`: the bytes must outlive the callback.
        let result = outcome(result);
        let (code, ptr, len) = match &result {
            Ok(data) => (sp_result::SP_OK, data.as_ptr(), data.len()),
            Err(code) => (*code, std::ptr::null(), 0),
        };
        // SAFETY: the caller's callback with the caller's userdata; `ptr` is valid for
        // `len` bytes during the call (`result` owns them until the end of this closure).
        unsafe { callback(userdata.0, code, ptr, len) };
        if let Ok(data) = result {
            read_buffers::recycle(data);
        }
    };
    // Bytes already here (a small body arrives with its head): a queued read completes
    // without a task, so an event loop pays no hand-off to the runtime for it.
    // No larger than what is left of a body of known length: the buffer is zeroed, and a
    // 64 KiB one for a 100-byte body cost more than the rest of the request.
    let chunk = body
        .known_remaining()
        .map_or(max, |left| {
            usize::try_from(left).unwrap_or(usize::MAX).min(max)
        })
        .min(READ_CHUNK_MAX);
    if let Deliver::Queue(queue) = &deliver {
        let mut data = read_buffers::take(chunk);
        if let Some(result) = body.read_now(&mut data) {
            let result = give_back_body(&cell, body, data, result);
            hand_out(
                dst,
                operation::completed(token, result, queue, deliver_read),
            );
            return Ok(());
        }
    }
    let mut tokens = vec![token.clone()];
    tokens.extend(body.cancel_token().cloned());
    let driver = deliver.driver(tokens);
    let work = async move {
        let mut data = read_buffers::take(chunk);
        let result = body.read_with(&driver, &mut data).await;
        give_back_body(&cell, body, data, result)
    };
    hand_out(dst, operation::spawn(token, work, deliver, deliver_read));
    Ok(())
}

/// Buffers of asynchronous reads, kept per thread once their callback returned: a buffer must
/// be initialized memory, and zeroing a fresh 64 KiB one for every read of a large body cost
/// more than the read. A recycled buffer is zeroed only where it grows.
mod read_buffers {
    use std::cell::RefCell;

    /// Buffers kept per thread, and the largest kept.
    const KEPT: usize = 8;
    const KEPT_MAX: usize = 1 << 20;

    thread_local! {
        static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    /// A buffer of `len` initialized bytes.
    pub fn take(len: usize) -> Vec<u8> {
        if len == 0 {
            // The read at the end of a body: it keeps nothing, so it takes nothing.
            return Vec::new();
        }
        let mut buf = SPARE
            .try_with(|s| s.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        buf.resize(len, 0);
        buf
    }

    /// Keeps a delivered buffer for the thread's next read.
    pub fn recycle(buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > KEPT_MAX {
            return;
        }
        let _ = SPARE.try_with(|s| {
            let mut spare = s.borrow_mut();
            if spare.len() < KEPT {
                spare.push(buf);
            }
        });
    }
}

/// Largest chunk one asynchronous read delivers.
const READ_CHUNK_MAX: usize = 1 << 20;

/// Puts a body back in its response once a read of it ended (before the callback, so the
/// callback can read on), and turns the read into the bytes it gave.
fn give_back_body(
    cell: &ResponseCell,
    body: BodyReader,
    mut data: Vec<u8>,
    read: CoreResult<usize>,
) -> CoreResult<Vec<u8>> {
    if let Ok(mut entry) = cell.lock() {
        entry.response.put_body(body);
    }
    read.map(|n| {
        data.truncate(n);
        data
    })
}

/// A completion's outcome as C sees it: the value, or its error code (the message recorded
/// as the thread's last error, which the callback reads).
fn outcome<T>(result: CoreResult<T>) -> Result<T, sp_result> {
    result.map_err(|e| {
        let e = FfiError::from(e);
        record(&e);
        e.code
    })
}

/// Writes a new operation handle to the caller's out-parameter.
fn hand_out(dst: *mut *mut sp_operation, op: Operation) {
    write(dst, handles::insert(Entry::Operation(Arc::new(op))));
}

/// Reads up to `max` (> 0) body bytes without blocking: `callback` fires exactly once, on a
/// runtime thread, with the bytes (`len` 0 at the end of the body, after which the connection
/// has gone back to the pool) or an error (SP_E_READ_TIMEOUT after the request's read timeout,
/// SP_E_CANCELED, ...; after an error the connection is closed). One read at a time per response:
/// while it runs, other reads of the response fail with SP_E_INVALID_ARGUMENT; its head stays
/// readable.
///
/// Ownership: `response` stays the caller's (freeing it during the read is allowed: the read
/// ends and its connection closes). `data` in the callback is valid only during the call.
/// Callback thread, userdata, blocking: as sp_request_async. Thread safety: any thread.
/// Errors (then the callback is never called): SP_E_INVALID_HANDLE, SP_E_NULL_POINTER,
/// SP_E_OUT_OF_RANGE (max 0), SP_E_INVALID_ARGUMENT (a read is already running).
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_read_async(
    response: *mut sp_response,
    max: usize,
    callback: sp_read_callback,
    userdata: *mut c_void,
    out_operation: *mut *mut sp_operation,
) -> sp_result {
    call(|| {
        start_read(
            response,
            std::ptr::null_mut(),
            max,
            callback,
            userdata,
            out_operation,
        )
    })
}

/// sp_response_read_async whose callback runs on the thread that calls sp_completion_queue_run
/// on `queue`. Ownership and errors: as sp_response_read_async and sp_request_async_queued.
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_read_async_queued(
    response: *mut sp_response,
    queue: *mut sp_completion_queue,
    max: usize,
    callback: sp_read_callback,
    userdata: *mut c_void,
    out_operation: *mut *mut sp_operation,
) -> sp_result {
    call(|| {
        require_queue(queue)?;
        start_read(response, queue, max, callback, userdata, out_operation)
    })
}

/// Cancels an operation: its callback fires (once) with SP_E_CANCELED unless it had already
/// completed. A request still queued for a connection leaves the queue without being sent; one
/// in flight closes its connection. Returns at once.
///
/// Errors: SP_E_INVALID_HANDLE. Thread safety: any thread, also inside callbacks.
#[unsafe(no_mangle)]
pub extern "C" fn sp_operation_cancel(operation: *mut sp_operation) -> sp_result {
    call(|| {
        sp_operation::with(operation, |op| {
            op.cancel();
            Ok(())
        })
    })
}

/// *out_done receives 1 once the operation has completed (its callback is running, has run,
/// or waits in its completion queue), else 0.
///
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_operation_is_done(
    operation: *const sp_operation,
    out_done: *mut i32,
) -> sp_result {
    call(|| get(operation, try_out!(out_done), |op| op.is_done() as i32))
}

/// Frees an operation handle, finished or not. It does not cancel the operation: its callback
/// still fires exactly once (call sp_operation_cancel first to end it early). NULL, a freed
/// handle or another kind of handle is ignored. Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn sp_operation_free(operation: *mut sp_operation) {
    guard((), || {
        drop(handles::remove_kind(operation, |e| {
            matches!(e, Entry::Operation(_))
        }));
    })
}

/// Creates a completion queue (an epoll set, an eventfd and a timerfd inside).
///
/// Ownership: free with sp_completion_queue_free. Errors: SP_E_NULL_POINTER, SP_E_IO.
#[unsafe(no_mangle)]
pub extern "C" fn sp_completion_queue_new(out_queue: *mut *mut sp_completion_queue) -> sp_result {
    call(|| {
        let dst = try_out!(out_queue);
        let queue = CompletionQueue::new()?;
        write(dst, handles::insert(Entry::Queue(Arc::new(queue))));
        Ok(())
    })
}

/// *out_fd receives the queue's file descriptor (an epoll set): readable while there is work
/// (an operation can go on, or a callback is queued). Add it to poll/epoll/select (or
/// asyncio's add_reader) and call sp_completion_queue_run when it is readable; do not read,
/// write or close it.
///
/// Ownership: the descriptor belongs to the queue (valid until sp_completion_queue_free).
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_completion_queue_fd(
    queue: *const sp_completion_queue,
    out_fd: *mut i32,
) -> sp_result {
    call(|| get(queue, try_out!(out_fd), |q| q.fd()))
}

/// Does the work of the queue's operations that can be done now (their socket reads and
/// writes, on the calling thread), then runs up to `max` queued callbacks, in completion
/// order; *out_ran receives how many callbacks ran (max 0: work only). Never waits for the
/// network. The descriptor stays readable while more remains.
///
/// Blocking: only as long as the work and the callbacks take. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_completion_queue_run(
    queue: *mut sp_completion_queue,
    max: usize,
    out_ran: *mut usize,
) -> sp_result {
    call(|| {
        let dst = try_out!(out_ran);
        let q = read(queue, Arc::clone)?;
        write(dst, q.run(max));
        Ok(())
    })
}

/// Blocks the calling thread until the queue has work (its descriptor is readable) or
/// `timeout_ms` passes (-1: no limit); *out_ready receives 1 if it has, else 0. For a program
/// (or binding) that runs the queue on a thread of its own instead of an event loop: wait,
/// then sp_completion_queue_run, in a loop.
///
/// Blocking: up to `timeout_ms`. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER,
/// SP_E_OUT_OF_RANGE (timeout_ms below -1).
#[unsafe(no_mangle)]
pub extern "C" fn sp_completion_queue_wait(
    queue: *const sp_completion_queue,
    timeout_ms: i32,
    out_ready: *mut i32,
) -> sp_result {
    call(|| {
        let dst = try_out!(out_ready);
        let timeout = super::access::duration(timeout_ms, "timeout_ms")?;
        let q = read(queue, Arc::clone)?;
        write(dst, q.wait(timeout) as i32);
        Ok(())
    })
}

/// *out_len receives how many callbacks are queued now.
///
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_completion_queue_len(
    queue: *const sp_completion_queue,
    out_len: *mut usize,
) -> sp_result {
    call(|| get(queue, try_out!(out_len), |q| q.len()))
}

/// Frees a completion queue: the operations still on it are canceled and run to their end
/// now, on the calling thread, and every callback still due runs there (each exactly once,
/// SP_E_CANCELED for the canceled ones). Blocking: until they ended (promptly; at most 10 s). NULL, a freed handle or another kind of handle is ignored.
#[unsafe(no_mangle)]
pub extern "C" fn sp_completion_queue_free(queue: *mut sp_completion_queue) {
    guard((), || {
        if let Some(Entry::Queue(q)) = handles::remove_kind(queue, |e| matches!(e, Entry::Queue(_)))
        {
            q.close();
        }
    })
}

/// Creates a cancel token.
///
/// Ownership: free with sp_cancel_token_free (requests that watch it keep what they need).
/// Errors: SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_cancel_token_new(out_token: *mut *mut sp_cancel_token) -> sp_result {
    call(|| {
        let dst = try_out!(out_token);
        write(dst, handles::insert(Entry::Token(CancelToken::new())));
        Ok(())
    })
}

/// Cancels every request and body read watching the token, blocking or asynchronous: a
/// thread blocked in sp_request or sp_response_read returns SP_E_CANCELED promptly (a queued
/// request leaves the queue unsent; one in flight closes its connection). Stays canceled
/// (later requests fail at once) until sp_cancel_token_reset.
///
/// Errors: SP_E_INVALID_HANDLE. Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn sp_cancel_token_cancel(token: *mut sp_cancel_token) -> sp_result {
    call(|| {
        sp_cancel_token::with(token, |t| {
            t.cancel();
            Ok(())
        })
    })
}

/// Makes the token usable again (requests from now on are not canceled).
///
/// Errors: SP_E_INVALID_HANDLE.
#[unsafe(no_mangle)]
pub extern "C" fn sp_cancel_token_reset(token: *mut sp_cancel_token) -> sp_result {
    call(|| {
        sp_cancel_token::with(token, |t| {
            t.reset();
            Ok(())
        })
    })
}

/// *out_canceled receives 1 if the token is canceled, else 0.
///
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_cancel_token_is_canceled(
    token: *const sp_cancel_token,
    out_canceled: *mut i32,
) -> sp_result {
    call(|| get(token, try_out!(out_canceled), |t| t.is_canceled() as i32))
}

/// *out_fd receives a descriptor that cancels the token when any byte is written to it (a
/// non-blocking pipe's write end): what a signal handler may do, e.g. Python's
/// signal.set_wakeup_fd, so that Ctrl-C cancels a blocking request at once.
///
/// Ownership: the descriptor belongs to the token (valid until sp_cancel_token_free); do not
/// close it. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_IO (no pipe could be made).
#[unsafe(no_mangle)]
pub extern "C" fn sp_cancel_token_wakeup_fd(
    token: *const sp_cancel_token,
    out_fd: *mut i32,
) -> sp_result {
    call(|| {
        let dst = try_out!(out_fd);
        let fd = read(token, CancelToken::wakeup_fd)?
            .ok_or_else(|| FfiError::new(sp_result::SP_E_IO, "cannot create the token's pipe"))?;
        write(dst, fd);
        Ok(())
    })
}

/// Frees a cancel token handle; requests and descriptions that use it keep it alive (and a
/// cancel already made stays in effect for them). NULL, a freed handle or another kind of
/// handle is ignored.
#[unsafe(no_mangle)]
pub extern "C" fn sp_cancel_token_free(token: *mut sp_cancel_token) {
    guard((), || {
        drop(handles::remove_kind(token, |e| {
            matches!(e, Entry::Token(_))
        }));
    })
}

//! The request description (`sp_http_request_*`) and `sp_request`, which sends one.

use super::access::{
    Handle, copy_text, duration, flag, flag_or_default, flag_or_default_value, get, millis, set,
    text_buffer,
};
use super::boundary::{FfiError, FfiResult, call, guard, try_out, try_slice, try_str, write};
use super::handles::{self, Entry, ResponseCell, ResponseEntry};
use super::manager::sp_manager;
use super::response::sp_response;
use super::result::sp_result;
use crate::fork::Lock;
use crate::request::{Body, BodySource, Request};
use std::ffi::{c_char, c_void};
use std::sync::Arc;

/// A request description: method, URL, headers, body and per-request policy. Reusable:
/// sp_request() does not consume it (except a body reader, which is read once).
/// Thread safety: several threads may send the same description at once. A setter never waits:
/// sends already under way keep the description as it was when they started, later sends see
/// the change (so a setter may be called from inside the request's own body reader).
///
/// Functions: sp_http_request_new, sp_http_request_free, sp_http_request_add_header,
/// sp_http_request_set_body, sp_http_request_set_body_reader,
/// sp_http_request_set_/get_keep_alive, sp_http_request_set_/get_timeout,
/// sp_http_request_set_/get_read_timeout, sp_http_request_set_/get_connection_group,
/// sp_http_request_set_/get_retryable, sp_http_request_set_/get_proxy,
/// sp_http_request_set_/get_pipelined,
/// sp_http_request_get_method, sp_http_request_get_url;
/// sp_request sends it.
pub struct sp_http_request {
    _opaque: [u8; 0],
}

impl Handle for sp_http_request {
    /// The description as last set (shared with the sends under way; see `edit`).
    type Object = Arc<Request>;
    fn with<R>(
        handle: *const Self,
        f: impl FnOnce(&mut Arc<Request>) -> Result<R, FfiError>,
    ) -> Result<R, FfiError> {
        let cell = handles::request(handle)?;
        let mut current = cell.lock();
        f(&mut current)
    }
}

/// Changes a description: a send under way keeps the one it started with (copy on write).
pub(super) fn edit<O: super::access::Outcome>(
    request: *mut sp_http_request,
    change: impl FnOnce(&mut Request) -> O,
) -> FfiResult {
    set(request, |r| change(Arc::make_mut(r)))
}

/// Copies a text of the description out snprintf-style (see sp_http_request_get_url).
fn get_text(
    request: *const sp_http_request,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
    text: impl FnOnce(&Request) -> String,
) -> FfiResult {
    let dst = try_out!(out_len);
    // SAFETY: the header's contract: `buf` is NULL or `cap` writable bytes alive for the call.
    let buf = unsafe { text_buffer(buf, cap) }?;
    get(request, dst, |r| copy_text(&text(r), buf))
}

/// Supplies a streamed request body: write up to `cap` bytes to `buf`, store the count in
/// *out_n (0 = end of body) and return 0; return non-zero to abort the request. Called on the
/// thread that called sp_request(); for sp_request_async(_queued), on a library runtime thread
/// (where it must not block).
pub type sp_body_read_cb = Option<
    unsafe extern "C" fn(userdata: *mut c_void, buf: *mut u8, cap: usize, out_n: *mut usize) -> i32,
>;

/// Creates a request description for `method` (e.g. "GET") and an absolute http(s) `url`.
/// Defaults: no body, keep-alive from the manager, timeout 100000 ms, read timeout 300000 ms,
/// default connection group, not retryable unless the method is idempotent.
///
/// Ownership: strings are copied. On SP_OK *out_request receives a handle to free with
/// sp_http_request_free(). Thread safety: any thread.
/// Errors: SP_E_NULL_POINTER, SP_E_INVALID_UTF8, SP_E_INVALID_ARGUMENT (method),
/// SP_E_INVALID_URL, SP_E_UNSUPPORTED_SCHEME.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_new(
    method: *const c_char,
    url: *const c_char,
    out_request: *mut *mut sp_http_request,
) -> sp_result {
    call(|| {
        let (method, url, dst) = (try_str!(method), try_str!(url), try_out!(out_request));
        let req = Request::new(method, url)?;
        write(
            dst,
            handles::insert(Entry::Request(Arc::new(Lock::new(Arc::new(req))))),
        );
        Ok(())
    })
}

/// Frees a request description. NULL, a freed handle or another kind of handle is ignored.
///
/// Ownership: consumes the handle. Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_free(request: *mut sp_http_request) {
    guard((), || {
        drop(handles::remove_kind(request, |e| {
            matches!(e, Entry::Request(_))
        }));
    })
}

/// Adds a header field (repeats allowed, sent in order). Host and User-Agent replace the
/// library's; Content-Length and Transfer-Encoding are refused (the body sets them);
/// "Connection: close" turns keep-alive off for this request.
///
/// Ownership: strings are copied. Thread safety: see sp_http_request.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_INVALID_UTF8 (name),
/// SP_E_INVALID_ARGUMENT (bad name, a control character other than HTAB in the value,
/// framing header).
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_add_header(
    request: *mut sp_http_request,
    name: *const c_char,
    value: *const c_char,
) -> sp_result {
    call(|| {
        let name = try_str!(name);
        if value.is_null() {
            return Err(FfiError::new(sp_result::SP_E_NULL_POINTER, "value is NULL"));
        }
        // SAFETY: non-null and NUL-terminated per the contract; values may be any bytes.
        let value = unsafe { std::ffi::CStr::from_ptr(value) }.to_bytes();
        edit(request, |r| r.add_header(name, value))
    })
}

/// Sets the body (copied; sent with Content-Length). `data` may be NULL when `len` is 0.
///
/// Thread safety: see sp_http_request. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER,
/// SP_E_INVALID_ARGUMENT (`len` above PTRDIFF_MAX).
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_set_body(
    request: *mut sp_http_request,
    data: *const u8,
    len: usize,
) -> sp_result {
    call(|| {
        let bytes = try_slice!(data, len).to_vec();
        edit(request, |r| {
            r.body = Body::Bytes(bytes);
        })
    })
}

struct CallbackBody {
    cb: unsafe extern "C" fn(*mut c_void, *mut u8, usize, *mut usize) -> i32,
    userdata: *mut c_void,
}

// SAFETY: the callback and userdata are only used on the thread that calls sp_request(); the
// caller promises they stay valid until then (documented in the header).
unsafe impl Send for CallbackBody {}

impl BodySource for CallbackBody {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        let mut n = 0usize;
        // SAFETY: buf is valid for buf.len() bytes; n is a valid out pointer.
        let rc = unsafe { (self.cb)(self.userdata, buf.as_mut_ptr(), buf.len(), &mut n) };
        if rc != 0 {
            return Err(format!("callback returned {rc}"));
        }
        Ok(n)
    }
}

/// Sets a streamed body: `read` is called to produce it, and it is sent with chunked transfer
/// coding. A request with a body reader is never retried automatically, and the reader is
/// used by the next sp_request() only.
///
/// Ownership: `userdata` is borrowed until that sp_request() returns (for an asynchronous
/// request: until its callback fires).
/// Thread safety: `read` runs on the thread calling sp_request(); for an asynchronous request,
/// on a library runtime thread, where it must not block.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER (read).
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_set_body_reader(
    request: *mut sp_http_request,
    read: sp_body_read_cb,
    userdata: *mut c_void,
) -> sp_result {
    call(|| {
        let Some(cb) = read else {
            return Err(FfiError::new(
                sp_result::SP_E_NULL_POINTER,
                "read callback is NULL",
            ));
        };
        edit(request, |r| {
            r.body = Body::stream(Box::new(CallbackBody { cb, userdata }));
        })
    })
}

/// Sets keep-alive for this request: 1 on, 0 off ("Connection: close" is sent and the
/// connection is not reused), -1 the manager's default (sp_manager_set_keep_alive_default(),
/// the initial value; accepted since ABI 2).
///
/// Thread safety: see sp_http_request. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_set_keep_alive(
    request: *mut sp_http_request,
    on: i32,
) -> sp_result {
    call(|| {
        let on = flag_or_default(on, "keep-alive")?;
        edit(request, |r| {
            r.keep_alive = on;
        })
    })
}

/// Reads this request's keep-alive into *out_value: 1 on, 0 off, -1 the manager's default.
///
/// Thread safety: see sp_http_request. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_get_keep_alive(
    request: *const sp_http_request,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(request, try_out!(out_value), |r| {
            flag_or_default_value(r.keep_alive)
        })
    })
}

/// Sets the timeout in ms (-1 infinite) for getting the response head, including the wait
/// for a connection, connecting and sending.
///
/// Thread safety: see sp_http_request. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_set_timeout(request: *mut sp_http_request, ms: i32) -> sp_result {
    call(|| {
        let t = duration(ms, "timeout")?;
        edit(request, |r| {
            r.timeout = t;
        })
    })
}

/// Reads the request timeout (ms, -1 infinite; 100000 unless set) into *out_value.
///
/// Thread safety: see sp_http_request. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_get_timeout(
    request: *const sp_http_request,
    out_value: *mut i32,
) -> sp_result {
    call(|| get(request, try_out!(out_value), |r| millis(r.timeout)))
}

/// Sets how long each sp_response_read() may wait, in ms (-1 infinite).
///
/// Thread safety: see sp_http_request. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_set_read_timeout(
    request: *mut sp_http_request,
    ms: i32,
) -> sp_result {
    call(|| {
        let t = duration(ms, "read timeout")?;
        edit(request, |r| {
            r.read_timeout = t;
        })
    })
}

/// Reads the read timeout (ms, -1 infinite; 300000 unless set) into *out_value.
///
/// Thread safety: see sp_http_request. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_get_read_timeout(
    request: *const sp_http_request,
    out_value: *mut i32,
) -> sp_result {
    call(|| get(request, try_out!(out_value), |r| millis(r.read_timeout)))
}

/// Names the connection group (empty string: the default group). Each group is its own pool
/// with the service point's connection limit.
///
/// Ownership: copied. Thread safety: see sp_http_request.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_INVALID_UTF8.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_set_connection_group(
    request: *mut sp_http_request,
    name: *const c_char,
) -> sp_result {
    call(|| {
        let name = try_str!(name).to_string();
        edit(request, |r| {
            r.group = name;
        })
    })
}

/// Copies the connection group's name ("" for the default group) into `buf`, as
/// sp_http_request_get_url() does.
///
/// Ownership: `buf` is borrowed for the call. Thread safety: see sp_http_request.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER (out_len, or buf with cap > 0),
/// SP_E_INVALID_ARGUMENT (cap above PTRDIFF_MAX).
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_get_connection_group(
    request: *const sp_http_request,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> sp_result {
    call(|| get_text(request, buf, cap, out_len, |r| r.group.clone()))
}

/// Sets the cancel token that sends of this description, and reads of their responses,
/// watch (NULL: none, the default). Canceling it ends them with SP_E_CANCELED, also when they
/// block another thread (the HttpWebRequest.Abort case), and makes later sends fail at once
/// until the token is reset.
///
/// Ownership: the description keeps the token alive (freeing the token handle is allowed).
/// Thread safety: see sp_http_request. Errors: SP_E_INVALID_HANDLE.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_set_cancel_token(
    request: *mut sp_http_request,
    token: *mut super::operation::sp_cancel_token,
) -> sp_result {
    call(|| {
        let token = if token.is_null() {
            None
        } else {
            Some(super::access::read(token, Clone::clone)?)
        };
        edit(request, |r| {
            r.cancel = token;
        })
    })
}

/// Marks a non-idempotent request (POST, PATCH) as safe to resend once on a new connection
/// when a reused connection fails before any response byte (1), or not (0, the default).
/// Idempotent methods with a replayable body are always retried once in that case.
///
/// Thread safety: see sp_http_request. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_set_retryable(
    request: *mut sp_http_request,
    on: i32,
) -> sp_result {
    call(|| {
        let on = flag(on, "retryable")?;
        edit(request, |r| {
            r.retryable = on;
        })
    })
}

/// Reads whether the request is marked retryable (1) or not (0) into *out_value.
///
/// Thread safety: see sp_http_request. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_get_retryable(
    request: *const sp_http_request,
    out_value: *mut i32,
) -> sp_result {
    call(|| get(request, try_out!(out_value), |r| r.retryable as i32))
}

/// Copies the method (e.g. "GET") into `buf`, as sp_http_request_get_url() does.
///
/// Ownership: `buf` is borrowed for the call. Thread safety: see sp_http_request.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER (out_len, or buf with cap > 0),
/// SP_E_INVALID_ARGUMENT (cap above PTRDIFF_MAX).
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_get_method(
    request: *const sp_http_request,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> sp_result {
    call(|| get_text(request, buf, cap, out_len, |r| r.method.to_string()))
}

/// Copies the URL as it will be requested into `buf`: "scheme://host[:port]/path?query", the
/// scheme and host in lower case, a default port omitted, no fragment or user info.
/// snprintf-style: *out_len receives the URL's length (without the NUL), and `buf` at most
/// cap - 1 bytes of it and a NUL; when *out_len >= cap the text was cut, so call again with
/// a buffer of *out_len + 1 bytes. `buf` may be NULL when `cap` is 0 (to ask for the length).
///
/// Ownership: `buf` is borrowed for the call. Thread safety: see sp_http_request.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER (out_len, or buf with cap > 0),
/// SP_E_INVALID_ARGUMENT (cap above PTRDIFF_MAX).
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_get_url(
    request: *const sp_http_request,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> sp_result {
    call(|| {
        get_text(request, buf, cap, out_len, |r| {
            format!("{}{}", r.target.origin, r.target.path_and_query)
        })
    })
}

/// Sends the request on a pooled connection of its URL's service point (created if needed)
/// and blocks until the response head arrives. The connection stays taken until the body has
/// been read to the end or the response is freed.
///
/// Ownership: `request` is borrowed (reusable; a body reader is used up, so the pointer is not
/// const). On SP_OK *out_response receives a handle to
/// free with sp_response_free(); an unfreed response keeps its connection, and with the
/// connection limit reached, later requests wait for it.
/// Blocking: parks only the calling thread, up to the request's timeout, which is wall-clock
/// over the queue wait, connecting, sending and the response head whatever the server sends.
/// If the server answers before the whole body was sent (a 413 or 401 while uploading), the
/// rest is not sent, that answer is returned, and its connection closes after it.
/// Thread safety: any thread; many threads may send through one manager at once. Called from
/// inside a callback of the library (a body reader, a certificate validator) it returns
/// SP_E_WRONG_THREAD at once.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_DNS, SP_E_CONNECT,
/// SP_E_CONNECT_TIMEOUT, SP_E_QUEUE_TIMEOUT, SP_E_RESPONSE_TIMEOUT, SP_E_PROTOCOL,
/// SP_E_CONNECTION_CLOSED, SP_E_IO, SP_E_TOO_MANY_SERVICE_POINTS, SP_E_BODY_SOURCE,
/// SP_E_WRONG_THREAD, and for https SP_E_TLS_UNKNOWN_ISSUER, SP_E_TLS_CERT_EXPIRED,
/// SP_E_TLS_HOSTNAME_MISMATCH, SP_E_TLS_CERTIFICATE, SP_E_TLS_HANDSHAKE, SP_E_TLS_NOT_TLS,
/// SP_E_MANAGER_CLOSED (the manager was freed, also while the request waited or ran).
/// sp_last_error_request_sent() tells whether the server may have seen the request: 1 from
/// the moment the first byte of its head was written.
#[unsafe(no_mangle)]
pub extern "C" fn sp_request(
    manager: *mut sp_manager,
    request: *mut sp_http_request,
    out_response: *mut *mut sp_response,
) -> sp_result {
    call(|| {
        let m = handles::manager(manager)?;
        let req = sp_http_request::with(request, |r| Ok(Arc::clone(r)))?;
        let dst = try_out!(out_response);
        let response = m.send(&req)?;
        write(dst, response_handle(response));
        Ok(())
    })
}

/// A new response handle for C (sp_request and the asynchronous completions).
pub fn response_handle(response: crate::response::Response) -> *mut sp_response {
    let entry = ResponseEntry {
        response,
        reason: None,
        headers: None,
        trailers: None,
        head_text: None,
        tls_cipher_suite: None,
        body: Vec::new(),
    };
    handles::insert(Entry::Response(Arc::new(ResponseCell::new(entry))))
}

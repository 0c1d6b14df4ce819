//! The request description (`sp_http_request_*`) and `sp_request`, which sends one.

use super::boundary::{FfiError, call, check_len, guard, out, text, write};
use super::handles::{self, Entry, ResponseCell, ResponseEntry};
use super::manager::sp_manager;
use super::response::sp_response;
use super::result::sp_result;
use crate::fork::Lock;
use crate::request::{Body, BodySource, Request};
use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

/// A request description: method, URL, headers, body and per-request policy. Reusable:
/// sp_request() does not consume it (except a body reader, which is read once).
/// Thread safety: several threads may send the same description at once. A setter never waits:
/// sends already under way keep the description as it was when they started, later sends see
/// the change (so a setter may be called from inside the request's own body reader).
pub struct sp_http_request {
    _opaque: [u8; 0],
}

/// Supplies a streamed request body: write up to `cap` bytes to `buf`, store the count in
/// *out_n (0 = end of body) and return 0; return non-zero to abort the request. Called on the
/// thread that called sp_request().
pub type sp_body_read_cb = Option<
    unsafe extern "C" fn(userdata: *mut c_void, buf: *mut u8, cap: usize, out_n: *mut usize) -> i32,
>;

/// Converts a C flag (0 or 1).
pub(crate) fn flag(v: i32, what: &str) -> Result<bool, FfiError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(FfiError::new(
            sp_result::SP_E_OUT_OF_RANGE,
            format!("{what} must be 0 or 1, not {v}"),
        )),
    }
}

fn timeout(ms: i32, what: &str) -> Result<Option<Duration>, FfiError> {
    if ms < -1 {
        return Err(FfiError::new(
            sp_result::SP_E_OUT_OF_RANGE,
            format!("{what} {ms} ms is below -1"),
        ));
    }
    Ok(crate::point::ms_to_duration(ms))
}

fn with_request(
    r: *const sp_http_request,
    f: impl FnOnce(&mut Request) -> Result<(), FfiError>,
) -> Result<(), FfiError> {
    let req = handles::request(r)?;
    let mut current = req.lock();
    f(Arc::make_mut(&mut current))
}

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
        // SAFETY: NULL or NUL-terminated per the contract.
        let method = unsafe { text(method, "method") }?;
        // SAFETY: as above.
        let url = unsafe { text(url, "url") }?;
        let dst = out(out_request, "out_request")?;
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
    request: *const sp_http_request,
    name: *const c_char,
    value: *const c_char,
) -> sp_result {
    call(|| {
        // SAFETY: NULL or NUL-terminated per the contract.
        let name = unsafe { text(name, "name") }?;
        if value.is_null() {
            return Err(FfiError::new(sp_result::SP_E_NULL_POINTER, "value is NULL"));
        }
        // SAFETY: non-null and NUL-terminated per the contract; values may be any bytes.
        let value = unsafe { std::ffi::CStr::from_ptr(value) }
            .to_bytes()
            .to_vec();
        with_request(request, |r| {
            r.add_header(name, &value).map_err(FfiError::from)
        })
    })
}

/// Sets the body (copied; sent with Content-Length). `data` may be NULL when `len` is 0.
///
/// Thread safety: see sp_http_request. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER,
/// SP_E_INVALID_ARGUMENT (`len` above PTRDIFF_MAX).
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_set_body(
    request: *const sp_http_request,
    data: *const u8,
    len: usize,
) -> sp_result {
    call(|| {
        check_len(len, "len")?;
        let bytes = if len == 0 {
            Vec::new()
        } else if data.is_null() {
            return Err(FfiError::new(sp_result::SP_E_NULL_POINTER, "data is NULL"));
        } else {
            // SAFETY: data points to len readable bytes per the contract.
            unsafe { std::slice::from_raw_parts(data, len) }.to_vec()
        };
        with_request(request, |r| {
            r.body = Body::Bytes(bytes);
            Ok(())
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
/// Ownership: `userdata` is borrowed until that sp_request() returns.
/// Thread safety: `read` runs on the thread calling sp_request().
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER (read).
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_set_body_reader(
    request: *const sp_http_request,
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
        with_request(request, |r| {
            r.body = Body::stream(Box::new(CallbackBody { cb, userdata }));
            Ok(())
        })
    })
}

/// Sets keep-alive for this request (1 on, 0 off: "Connection: close" is sent and the
/// connection is not reused).
///
/// Thread safety: see sp_http_request. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_set_keep_alive(
    request: *const sp_http_request,
    on: i32,
) -> sp_result {
    call(|| {
        let on = flag(on, "keep-alive")?;
        with_request(request, |r| {
            r.keep_alive = Some(on);
            Ok(())
        })
    })
}

/// Sets the timeout in ms (-1 infinite) for getting the response head, including the wait
/// for a connection, connecting and sending.
///
/// Thread safety: see sp_http_request. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_set_timeout(
    request: *const sp_http_request,
    ms: i32,
) -> sp_result {
    call(|| {
        let t = timeout(ms, "timeout")?;
        with_request(request, |r| {
            r.timeout = t;
            Ok(())
        })
    })
}

/// Sets how long each sp_response_read() may wait, in ms (-1 infinite).
///
/// Thread safety: see sp_http_request. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_set_read_timeout(
    request: *const sp_http_request,
    ms: i32,
) -> sp_result {
    call(|| {
        let t = timeout(ms, "read timeout")?;
        with_request(request, |r| {
            r.read_timeout = t;
            Ok(())
        })
    })
}

/// Names the connection group (empty string: the default group). Each group is its own pool
/// with the service point's connection limit.
///
/// Ownership: copied. Thread safety: see sp_http_request.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_INVALID_UTF8.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_set_connection_group(
    request: *const sp_http_request,
    name: *const c_char,
) -> sp_result {
    call(|| {
        // SAFETY: NULL or NUL-terminated per the contract.
        let name = unsafe { text(name, "name") }?.to_string();
        with_request(request, |r| {
            r.group = name;
            Ok(())
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
    request: *const sp_http_request,
    on: i32,
) -> sp_result {
    call(|| {
        let on = flag(on, "retryable")?;
        with_request(request, |r| {
            r.retryable = on;
            Ok(())
        })
    })
}

/// Sends the request on a pooled connection of its URL's service point (created if needed)
/// and blocks until the response head arrives. The connection stays taken until the body has
/// been read to the end or the response is freed.
///
/// Ownership: `request` is borrowed (reusable). On SP_OK *out_response receives a handle to
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
    manager: *const sp_manager,
    request: *const sp_http_request,
    out_response: *mut *mut sp_response,
) -> sp_result {
    call(|| {
        let m = handles::manager(manager)?;
        let req = handles::request(request)?;
        let dst = out(out_response, "out_response")?;
        let req = Arc::clone(&req.lock());
        let response = m.send(&req)?;
        let reason = CString::new(response.head.reason.replace('\0', " ")).unwrap_or_default();
        let entry = ResponseEntry {
            response,
            reason,
            headers: None,
            trailers: None,
            head_text: None,
            body: Vec::new(),
        };
        write(
            dst,
            handles::insert(Entry::Response(Arc::new(ResponseCell::new(entry)))),
        );
        Ok(())
    })
}

//! Pipelining in the C ABI: per service point (on/off and depth) and per request. The policy
//! is the core's `pipeline` and `reuse` modules.

use super::access::{flag, flag_or_default, flag_or_default_value, get, set};
use super::boundary::{call, try_out};
use super::point::sp_point;
use super::request::{edit, sp_http_request};
use super::result::sp_result;

/// Turns pipelining on (1) or off (0, the default) for the service point. With it on, a
/// request that finds the connection limit reached and may be pipelined (an idempotent method
/// such as GET or HEAD, a body given as bytes, no Expect: 100-continue, keep-alive on, not a
/// resend) is written on a busy connection behind the request being answered, up to the
/// pipeline depth, instead of waiting for the connection to be free; responses come in order.
/// Requests are pipelined only to a server that answered HTTP/1.1 and has not shown that it
/// does not pipeline (sp_get_supports_pipelining()).
///
/// The next response on a connection is read only after the previous one's body was read to
/// the end or its response freed: holding a response delays those behind it, and their
/// timeout (sp_http_request_set_timeout()) fires with a message that says they waited for
/// their turn. When a connection ends after response k, every request behind k is sent again,
/// once, on another connection (counted in sp_statistics.pipeline_replays). Off by default
/// because most servers gain little from it and some mishandle it; see docs/tuning.md.
///
/// Thread safety: any thread; applies to requests queued from now on.
/// Errors: SP_E_INVALID_HANDLE, SP_E_MANAGER_CLOSED, SP_E_OUT_OF_RANGE (not 0 or 1).
#[unsafe(no_mangle)]
pub extern "C" fn sp_set_pipelining(point: *mut sp_point, on: i32) -> sp_result {
    call(|| {
        let on = flag(on, "pipelining")?;
        set(point, |e| {
            e.point.set_pipelining(on);
        })
    })
}

/// Reads whether pipelining is on (1) or off (0) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_pipelining(point: *const sp_point, out_value: *mut i32) -> sp_result {
    call(|| get(point, try_out!(out_value), |e| e.point.pipelining() as i32))
}

/// Sets the pipeline depth: the most requests in flight on one connection, the one being
/// answered included (1..64, default 8; 1 pipelines nothing).
///
/// Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_MANAGER_CLOSED, SP_E_OUT_OF_RANGE (nothing changed).
#[unsafe(no_mangle)]
pub extern "C" fn sp_set_pipeline_depth(point: *mut sp_point, depth: i32) -> sp_result {
    call(|| set(point, |e| e.point.set_pipeline_depth(depth)))
}

/// Reads the pipeline depth into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_pipeline_depth(point: *const sp_point, out_value: *mut i32) -> sp_result {
    call(|| {
        get(point, try_out!(out_value), |e| {
            e.point.pipeline_depth() as i32
        })
    })
}

/// Sets whether this request may be pipelined (.NET's HttpWebRequest.Pipelined): 1 yes, even
/// on a service point with pipelining off; 0 never; -1 as its service point says (the
/// default). The rules of sp_set_pipelining() still apply (a POST is never pipelined).
///
/// Thread safety: see sp_http_request. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_set_pipelined(
    request: *mut sp_http_request,
    on: i32,
) -> sp_result {
    call(|| {
        let on = flag_or_default(on, "pipelined")?;
        edit(request, |r| {
            r.pipelined = on;
        })
    })
}

/// Reads this request's pipelining choice into *out_value: 1 yes, 0 never, -1 as its service
/// point says.
///
/// Thread safety: see sp_http_request. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_get_pipelined(
    request: *const sp_http_request,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(request, try_out!(out_value), |r| {
            flag_or_default_value(r.pipelined)
        })
    })
}

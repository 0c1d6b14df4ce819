//! Expect100Continue: per service point (and the manager's default for new points), with the
//! time a request waits for the server's `100 Continue`. See the core's `expect` module.

use super::access::{flag, get, set};
use super::boundary::{FfiError, call, try_out};
use super::manager::sp_manager;
use super::point::sp_point;
use super::result::sp_result;

/// Sets Expect100Continue for the service point: 1 makes a request with a body send its head
/// with "Expect: 100-continue" and wait for the server's "100 Continue" (up to the continue
/// timeout, sp_set_expect_100_continue_timeout()) before sending the body; a final status
/// instead (401, 413, ...) means the body is never sent (417: the request goes again without
/// the expectation). 0 (the default, unlike .NET Framework: see docs/tuning.md) sends the body
/// at once. A server that lets the timeout pass, or answers HTTP/1.0, is not asked again until
/// this is set to 1 again. A request can also ask for it itself with the header
/// "Expect: 100-continue".
///
/// Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_MANAGER_CLOSED, SP_E_OUT_OF_RANGE (not 0 or 1).
#[unsafe(no_mangle)]
pub extern "C" fn sp_set_expect_100_continue(point: *mut sp_point, on: i32) -> sp_result {
    call(|| {
        let on = flag(on, "Expect100Continue")?;
        set(point, |e| {
            e.point.expect.set_enabled(on);
        })
    })
}

/// Reads Expect100Continue (0 or 1) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_expect_100_continue(
    point: *const sp_point,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(point, try_out!(out_value), |e| {
            e.point.expect.enabled() as i32
        })
    })
}

/// Sets how long a request with "Expect: 100-continue" waits for "100 Continue" before
/// sending its body anyway, in ms (default 350, as .NET Framework's ContinueTimeout; 0 does
/// not wait; -1 waits up to the request's timeout).
///
/// Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_MANAGER_CLOSED, SP_E_OUT_OF_RANGE (below -1).
#[unsafe(no_mangle)]
pub extern "C" fn sp_set_expect_100_continue_timeout(point: *mut sp_point, ms: i32) -> sp_result {
    call(|| {
        if ms < -1 {
            return Err(FfiError::new(
                sp_result::SP_E_OUT_OF_RANGE,
                format!("continue timeout {ms} ms is below -1"),
            ));
        }
        set(point, |e| {
            e.point.expect.set_timeout_ms(ms);
        })
    })
}

/// Reads the continue timeout (ms; -1: up to the request's timeout) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_expect_100_continue_timeout(
    point: *const sp_point,
    out_value: *mut i32,
) -> sp_result {
    call(|| get(point, try_out!(out_value), |e| e.point.expect.timeout_ms()))
}

/// Sets ServicePointManager.Expect100Continue: the value service points created from now on
/// take (0, the default, or 1); existing points keep theirs, as in .NET.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE (not 0 or 1).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_expect_100_continue(
    manager: *mut sp_manager,
    on: i32,
) -> sp_result {
    call(|| {
        let on = flag(on, "Expect100Continue")?;
        set(manager, |m| {
            m.set_expect_100_continue(on);
        })
    })
}

/// Reads the manager's Expect100Continue default (0 or 1) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_expect_100_continue(
    manager: *const sp_manager,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(manager, try_out!(out_value), |m| {
            m.expect_100_continue() as i32
        })
    })
}

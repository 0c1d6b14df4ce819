//! `sp_manager_*` and `sp_find`: the ServicePointManager of the C ABI.

use super::access::{Handle, count, flag, get, set};
use super::boundary::{FfiError, call, guard, try_out, try_str, write};
use super::handles::{self, Entry, PointEntry};
use super::point::sp_point;
use super::result::sp_result;
use crate::manager::Manager;
use std::ffi::{CString, c_char};
use std::sync::Arc;

/// A connection manager: owns one service point per origin (scheme, host, port) and the
/// defaults new service points take. Create with sp_manager_new(), free with
/// sp_manager_free(). Thread safety: every function taking a manager may be called from any
/// thread, concurrently.
///
/// Functions: sp_manager_new, sp_manager_free, sp_find, sp_request, sp_request_async,
/// sp_request_async_queued; name resolution: sp_manager_set_/get_enable_dns_round_robin,
/// sp_manager_set_/get_resolve;
/// sp_manager_set_/get_default_connection_limit, sp_manager_set_/get_max_service_points,
/// sp_manager_set_/get_max_service_point_idle_time, sp_manager_set_/get_keep_alive_default,
/// sp_manager_set_/get_dns_refresh_timeout, sp_manager_get_service_point_count;
/// observing: sp_manager_set_log_callback, sp_manager_get_log_level, sp_manager_set_log_queue,
/// sp_manager_has_log_queue,
/// sp_manager_get_statistics, sp_manager_get_histogram;
/// TLS: sp_manager_add_ca_pem, sp_manager_add_ca_file, sp_manager_get_ca_count,
/// sp_manager_set_/get_system_roots, sp_manager_set_client_certificate,
/// sp_manager_has_client_certificate, sp_manager_set_/get_min_tls_version,
/// sp_manager_set_certificate_validator, sp_manager_has_certificate_validator;
/// defaults for new service points: sp_manager_set_/get_use_nagle_algorithm,
/// sp_manager_set_/get_tcp_keep_alive, sp_manager_set_/get_expect_100_continue.
/// proxies: sp_manager_set_/get_proxy, sp_manager_set_/get_proxy_bypass,
/// sp_manager_set_/get_use_environment_proxy, sp_find_with_proxy.
pub struct sp_manager {
    _opaque: [u8; 0],
}

impl Handle for sp_manager {
    type Object = Arc<Manager>;
    fn with<R>(
        handle: *const Self,
        f: impl FnOnce(&mut Arc<Manager>) -> Result<R, FfiError>,
    ) -> Result<R, FfiError> {
        f(&mut handles::manager(handle)?)
    }
}

/// Creates a manager with .NET's defaults: connection limit 2, max service point idle time
/// 100000 ms, max service points 0 (no limit), keep-alive on.
///
/// Ownership: on SP_OK *out receives a new handle; free it with sp_manager_free().
/// Thread safety: any thread. Errors: SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_new(out_manager: *mut *mut sp_manager) -> sp_result {
    call(|| {
        let dst = try_out!(out_manager);
        write(
            dst,
            handles::insert(Entry::Manager(Arc::new(Manager::new()))),
        );
        Ok(())
    })
}

/// Frees a manager: closes its idle connections now; requests waiting for a connection and
/// requests and body reads in flight on other threads end at once with SP_E_MANAGER_CLOSED
/// (their sockets are shut down), and nothing more is sent after this returns; its service
/// point and response handles then fail with SP_E_MANAGER_CLOSED. NULL, a freed handle or
/// another kind of handle is ignored.
///
/// Ownership: consumes the handle. Thread safety: any thread; calls in flight on other
/// threads finish or fail cleanly.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_free(manager: *mut sp_manager) {
    guard((), || {
        if let Some(Entry::Manager(m)) =
            handles::remove_kind(manager, |e| matches!(e, Entry::Manager(_)))
        {
            m.close();
        }
    })
}

/// FindServicePoint: the service point for the URI's origin, created if needed. The same
/// origin (scheme and host compared case-insensitively, default ports filled in; path, query
/// and user info ignored) always gives the same service point. When the manager is at its max
/// service points, an unused one (no busy connection, no live handle) is evicted, longest idle
/// first.
///
/// Ownership: `uri` is borrowed. On SP_OK *out_point receives a new handle to free with
/// sp_point_free(); freeing it does not remove the service point from the manager.
/// Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_INVALID_UTF8, SP_E_INVALID_URL,
/// SP_E_UNSUPPORTED_SCHEME, SP_E_TOO_MANY_SERVICE_POINTS, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_find(
    manager: *mut sp_manager,
    uri: *const c_char,
    out_point: *mut *mut sp_point,
) -> sp_result {
    call(|| {
        let (uri, dst) = (try_str!(uri), try_out!(out_point));
        let point = sp_manager::with(manager, |m| Ok(m.find(uri)?))?;
        let address = CString::new(point.address()).unwrap_or_default();
        write(
            dst,
            handles::insert(Entry::Point(Arc::new(PointEntry { point, address }))),
        );
        Ok(())
    })
}

/// Sets the connection limit that service points created from now on take (.NET's
/// DefaultConnectionLimit; existing service points keep theirs). Must be > 0.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE (nothing changed).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_default_connection_limit(
    manager: *mut sp_manager,
    limit: i32,
) -> sp_result {
    call(|| set(manager, |m| m.set_default_connection_limit(limit)))
}

/// Reads the default connection limit into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_default_connection_limit(
    manager: *const sp_manager,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(manager, try_out!(out_value), |m| {
            m.default_connection_limit()
        })
    })
}

/// Sets the max number of service points (0 = no limit; must be >= 0).
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE (nothing changed).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_max_service_points(
    manager: *mut sp_manager,
    max: i32,
) -> sp_result {
    call(|| set(manager, |m| m.set_max_service_points(max)))
}

/// Reads the max number of service points into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_max_service_points(
    manager: *const sp_manager,
    out_value: *mut i32,
) -> sp_result {
    call(|| get(manager, try_out!(out_value), |m| m.max_service_points()))
}

/// Sets MaxServicePointIdleTime in ms (-1 = infinite; must be >= -1): the max idle time new
/// service points take (a service point's own is sp_set_max_idle_time()), and how long an
/// unused service point stays in the table. Named sp_manager_set_max_idle_time in ABI 1.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE (nothing changed).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_max_service_point_idle_time(
    manager: *mut sp_manager,
    ms: i32,
) -> sp_result {
    call(|| set(manager, |m| m.set_max_point_idle_time(ms)))
}

/// Reads MaxServicePointIdleTime (ms) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_max_service_point_idle_time(
    manager: *const sp_manager,
    out_value: *mut i32,
) -> sp_result {
    call(|| get(manager, try_out!(out_value), |m| m.max_point_idle_ms()))
}

/// Sets the keep-alive default (1 on, 0 off) for requests that do not set their own.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE (not 0 or 1).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_keep_alive_default(
    manager: *mut sp_manager,
    on: i32,
) -> sp_result {
    call(|| {
        let on = flag(on, "keep-alive default")?;
        set(manager, |m| {
            m.set_keep_alive_default(on);
        })
    })
}

/// Reads the keep-alive default (1 or 0) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_keep_alive_default(
    manager: *const sp_manager,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(manager, try_out!(out_value), |m| {
            m.keep_alive_default() as i32
        })
    })
}

/// Reads the number of service points the manager holds into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_service_point_count(
    manager: *const sp_manager,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(manager, try_out!(out_value), |m| {
            count(m.service_point_count())
        })
    })
}

/// Sets DnsRefreshTimeout in ms: how long a service point reuses the addresses it resolved
/// for new connections (default 120000, as in .NET; -1 no expiry; 0 resolve for every new
/// connection). A failed connect drops the cached addresses. Applies to every service point.
/// Once an answer is older than this (at least 1 s), a point with idle connections looks its
/// name up again in the background and closes the idle connections whose address left the
/// answer (`closed_address_gone`); a failed lookup keeps the old answer.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE (below -1).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_dns_refresh_timeout(
    manager: *mut sp_manager,
    ms: i32,
) -> sp_result {
    call(|| set(manager, |m| m.set_dns_refresh_timeout(ms)))
}

/// Reads DnsRefreshTimeout (ms) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_dns_refresh_timeout(
    manager: *const sp_manager,
    out_value: *mut i32,
) -> sp_result {
    call(|| get(manager, try_out!(out_value), |m| m.dns_refresh_ms()))
}

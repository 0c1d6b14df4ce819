//! Service point functions: `sp_<verb>_<property>(point, ...)`, object first.

use super::access::{Handle, count, get, set};
use super::boundary::{FfiError, call, guard, try_out, try_str, write, write_sized};
use super::handles::{self, Entry, PointEntry};
use super::result::sp_result;
use std::ffi::c_char;
use std::sync::Arc;

/// A service point: one origin's connections, settings and statistics, owned by its manager.
/// A handle keeps the service point alive (it cannot be evicted while a handle exists).
/// Thread safety: every function taking a service point may be called from any thread.
///
/// Functions: sp_find (creates the handle), sp_point_free, sp_get_address,
/// sp_set_/get_lease_timeout, sp_set_/get_connection_limit, sp_set_/get_max_idle_time,
/// sp_set_/get_max_requests_per_connection, sp_get_current_connections, sp_get_idle_since,
/// sp_get_statistics, sp_get_histogram, sp_close_connection_group; the read-only facts
/// sp_get_protocol_version, sp_get_connection_name, sp_get_supports_pipelining,
/// sp_get_certificate; socket settings sp_set_/get_receive_buffer_size,
/// sp_set_/get_send_buffer_size, sp_set_/get_use_nagle_algorithm, sp_set_/get_tcp_keep_alive,
/// sp_set_/get_local_address, sp_set_/get_connect_timeout; sp_set_/get_expect_100_continue,
/// sp_set_/get_expect_100_continue_timeout; sp_set_/get_pipelining, sp_set_/get_pipeline_depth.
pub struct sp_point {
    _opaque: [u8; 0],
}

/// A statistics snapshot of a service point. Set `struct_size` to sizeof(sp_statistics)
/// before calling sp_get_statistics(); fields may be appended in later versions. The layout
/// has no padding: every byte the library writes is defined.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct sp_statistics {
    /// Size of this struct as the caller knows it.
    pub struct_size: u32,
    /// Always 0 (keeps the 64-bit counters aligned without padding).
    pub reserved: u32,
    /// Open connections (idle + busy).
    pub open: u64,
    /// Idle connections in the pool.
    pub idle: u64,
    /// Connections serving a request whose response has not been released.
    pub busy: u64,
    /// Requests waiting for a connection.
    pub waiting: u64,
    /// Connections opened since the service point was created.
    pub connections_opened: u64,
    /// Requests that received a response head.
    pub requests: u64,
    /// Requests sent on a reused connection.
    pub reuses: u64,
    /// Requests retried on a new connection after a stale reused one failed.
    pub retries: u64,
    /// Connections closed because their lease timeout expired.
    pub closed_lease: u64,
    /// Connections closed because they were idle longer than the max idle time.
    pub closed_idle: u64,
    /// Connections closed because a request had keep-alive off.
    pub closed_keep_alive_off: u64,
    /// Connections closed because the server said so (Connection: close, HTTP/1.0, EOF).
    pub closed_server: u64,
    /// Idle connections found dead (EOF, reset, stray bytes) when checked before reuse, at no
    /// cost to any request.
    pub closed_stale: u64,
    /// Connections closed after an error.
    pub closed_error: u64,
    /// Connections closed after their max requests (the server's or the service point's).
    pub closed_max_requests: u64,
    /// Connections closed by sp_close_connection_group() or sp_manager_free().
    pub closed_group: u64,
    /// Connections closed because a response was freed with much of its body unread.
    pub closed_abandoned: u64,
    /// TLS connections opened with a full handshake.
    pub tls_full_handshakes: u64,
    /// TLS connections opened by resuming an earlier session (abbreviated handshake).
    pub tls_resumed_handshakes: u64,
    /// Reused connections that failed under a request before any response byte arrived (the
    /// server closed or reset them as the request arrived); the request was retried on a new
    /// connection if allowed (see `retries`). Unlike `closed_stale`, a request paid for it.
    /// Since ABI 2.
    pub closed_in_flight: u64,
    /// Idle connections closed because their address left the host's DNS answer (looked up
    /// again after the DNS refresh timeout) or its resolve override. Added in ABI 2's second
    /// release, as the two below: an older caller's smaller struct_size never receives them.
    pub closed_address_gone: u64,
    /// Requests written on a busy connection behind another (sp_set_pipelining()).
    pub pipelined: u64,
    /// Pipelined requests sent again on another connection because theirs ended before their
    /// response (each at most once).
    pub pipeline_replays: u64,
}

// No padding anywhere: a u32 pair, then u64 counters only.
const _: () = assert!(
    std::mem::size_of::<sp_statistics>() == 8 + 23 * 8
        && std::mem::align_of::<sp_statistics>() == 8
);

impl Handle for sp_point {
    type Object = Arc<PointEntry>;
    /// The service point (SP_E_MANAGER_CLOSED once its manager is freed).
    fn with<R>(
        handle: *const Self,
        f: impl FnOnce(&mut Arc<PointEntry>) -> Result<R, FfiError>,
    ) -> Result<R, FfiError> {
        let mut entry = handles::point(handle)?;
        entry.point.check_open()?;
        f(&mut entry)
    }
}

/// Frees a service point handle. The service point stays in its manager. NULL, a freed
/// handle or another kind of handle is ignored.
///
/// Ownership: consumes the handle; strings borrowed from it become invalid.
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn sp_point_free(point: *mut sp_point) {
    guard((), || {
        drop(handles::remove_kind(point, |e| {
            matches!(e, Entry::Point(_))
        }));
    })
}

/// The service point's address, "scheme://host[:port]" (default port omitted).
///
/// Ownership: *out_address is borrowed; valid until this handle is freed.
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_address(
    point: *const sp_point,
    out_address: *mut *const c_char,
) -> sp_result {
    call(|| get(point, try_out!(out_address), |e| e.address.as_ptr()))
}

/// Sets ConnectionLeaseTimeout in ms: -1 connections live forever (default); 0 every request
/// carries "Connection: close" and gets a new connection; N a connection older than N ms (from
/// its creation) is closed after its next request. Applies to existing connections too.
///
/// Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_MANAGER_CLOSED, SP_E_OUT_OF_RANGE (below -1; nothing changed).
#[unsafe(no_mangle)]
pub extern "C" fn sp_set_lease_timeout(point: *mut sp_point, ms: i32) -> sp_result {
    call(|| set(point, |e| e.point.set_lease_timeout(ms)))
}

/// Reads ConnectionLeaseTimeout (ms, -1 infinite) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_lease_timeout(point: *const sp_point, out_value: *mut i32) -> sp_result {
    call(|| get(point, try_out!(out_value), |e| e.point.lease_timeout_ms()))
}

/// Sets ConnectionLimit: the most connections each connection group of this service point
/// opens; further requests wait in FIFO order. Must be > 0. Raising it lets waiting requests
/// open connections at once.
///
/// Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_MANAGER_CLOSED, SP_E_OUT_OF_RANGE (nothing changed).
#[unsafe(no_mangle)]
pub extern "C" fn sp_set_connection_limit(point: *mut sp_point, limit: i32) -> sp_result {
    call(|| set(point, |e| e.point.set_connection_limit(limit)))
}

/// Reads ConnectionLimit into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_connection_limit(
    point: *const sp_point,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(point, try_out!(out_value), |e| {
            count(e.point.connection_limit())
        })
    })
}

/// Sets MaxIdleTime in ms (-1 infinite; must be >= -1): idle connections older than this are
/// closed by a background reaper, without waiting for a request.
///
/// Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_MANAGER_CLOSED, SP_E_OUT_OF_RANGE (nothing changed).
#[unsafe(no_mangle)]
pub extern "C" fn sp_set_max_idle_time(point: *mut sp_point, ms: i32) -> sp_result {
    call(|| set(point, |e| e.point.set_max_idle_time(ms)))
}

/// Reads MaxIdleTime (ms) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_max_idle_time(point: *const sp_point, out_value: *mut i32) -> sp_result {
    call(|| get(point, try_out!(out_value), |e| e.point.max_idle_ms()))
}

/// Caps the requests one connection serves (0 = no cap, the default; must be >= 0); the last
/// allowed request carries "Connection: close". The server's Keep-Alive max also applies.
///
/// Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_MANAGER_CLOSED, SP_E_OUT_OF_RANGE (nothing changed).
#[unsafe(no_mangle)]
pub extern "C" fn sp_set_max_requests_per_connection(point: *mut sp_point, max: i32) -> sp_result {
    call(|| set(point, |e| e.point.set_max_requests_per_connection(max)))
}

/// Reads the cap on requests per connection (0 = none) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_max_requests_per_connection(
    point: *const sp_point,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(point, try_out!(out_value), |e| {
            e.point.max_requests_per_connection()
        })
    })
}

/// Reads CurrentConnections (open connections, all groups) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_current_connections(
    point: *const sp_point,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(point, try_out!(out_value), |e| {
            count(e.point.current_connections())
        })
    })
}

/// Reads IdleSince: when the service point was created or last finished a request, as Unix
/// time in milliseconds.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_idle_since(point: *const sp_point, out_unix_ms: *mut i64) -> sp_result {
    call(|| {
        get(point, try_out!(out_unix_ms), |e| {
            i64::try_from(e.point.idle_since_unix_ms()).unwrap_or(i64::MAX)
        })
    })
}

/// Fills *out_stats with a snapshot of the service point's statistics. The caller sets
/// out_stats->struct_size first; only that many bytes are written (a caller built against an
/// older header gets the fields it knows), and struct_size receives the number written.
///
/// Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED, SP_E_INVALID_ARGUMENT
/// (struct_size smaller than the struct_size field itself).
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_statistics(
    point: *const sp_point,
    out_stats: *mut sp_statistics,
) -> sp_result {
    call(|| {
        let dst = try_out!(out_stats);
        let s = sp_point::with(point, |e| Ok(e.point.statistics()))?;
        write_statistics(dst, &s)
    })
}

/// Copies a snapshot into a caller's `sp_statistics` of `struct_size` bytes (no more).
pub(crate) fn write_statistics(
    dst: *mut sp_statistics,
    s: &crate::stats::Snapshot,
) -> Result<(), FfiError> {
    // The struct has no padding (`reserved` fills it), so every byte copied is defined.
    write_sized(dst, std::mem::size_of::<u32>(), "out_stats", |n| {
        sp_statistics {
            struct_size: n,
            reserved: 0,
            open: s.open,
            idle: s.idle,
            busy: s.busy,
            waiting: s.waiting,
            connections_opened: s.connections_opened,
            requests: s.requests,
            reuses: s.reuses,
            retries: s.retries,
            closed_lease: s.closed_lease,
            closed_idle: s.closed_idle,
            closed_keep_alive_off: s.closed_keep_alive_off,
            closed_server: s.closed_server,
            closed_stale: s.closed_stale,
            closed_error: s.closed_error,
            closed_max_requests: s.closed_max_requests,
            closed_group: s.closed_group,
            closed_abandoned: s.closed_abandoned,
            tls_full_handshakes: s.tls_full_handshakes,
            tls_resumed_handshakes: s.tls_resumed_handshakes,
            closed_in_flight: s.closed_in_flight,
            closed_address_gone: s.closed_address_gone,
            pipelined: s.pipelined,
            pipeline_replays: s.pipeline_replays,
        }
    })
}

/// CloseConnectionGroup: closes the named group's idle connections now and its busy ones when
/// their responses are released. The empty name is the default group. *out_existed (may be
/// NULL) receives 1 if the group existed, else 0.
///
/// Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER (name), SP_E_INVALID_UTF8, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_close_connection_group(
    point: *mut sp_point,
    name: *const c_char,
    out_existed: *mut i32,
) -> sp_result {
    call(|| {
        let name = try_str!(name);
        let existed = sp_point::with(point, |e| Ok(e.point.close_connection_group(name)))?;
        if !out_existed.is_null() {
            write(out_existed, existed as i32);
        }
        Ok(())
    })
}

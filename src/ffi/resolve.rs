//! Name resolution settings of a manager: EnableDnsRoundRobin and resolve overrides (curl's
//! CURLOPT_RESOLVE). The DNS refresh timeout is in `manager`.

use super::access::{copy_text, flag, get, set, text_buffer};
use super::boundary::{FfiError, call, try_out, try_str};
use super::manager::sp_manager;
use super::result::sp_result;
use std::ffi::c_char;
use std::net::IpAddr;

/// Sets ServicePointManager.EnableDnsRoundRobin: 1 makes each new connection of every service
/// point start at the next of its host's addresses (spreading connections over them); 0 (the
/// default) always tries the addresses in the order resolved. Applies to every service point
/// at once.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE (not 0 or 1).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_enable_dns_round_robin(
    manager: *mut sp_manager,
    on: i32,
) -> sp_result {
    call(|| {
        let on = flag(on, "EnableDnsRoundRobin")?;
        set(manager, |m| {
            m.set_dns_round_robin(on);
        })
    })
}

/// Reads EnableDnsRoundRobin (0 or 1) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_enable_dns_round_robin(
    manager: *const sp_manager,
    out_value: *mut i32,
) -> sp_result {
    call(|| get(manager, try_out!(out_value), |m| m.dns_round_robin() as i32))
}

/// Pins `host`:`port` to `addresses` for every new connection of this manager, without a
/// lookup (curl's CURLOPT_RESOLVE): a comma-separated list of IP literals (IPv6 without
/// brackets), tried in that order; NULL removes the pin. `host` is matched
/// case-insensitively against the URL's host (without brackets). Idle connections to an
/// address a new pin leaves out are closed within a second (`closed_address_gone`).
///
/// Ownership: the strings are borrowed for the call. Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER (host), SP_E_INVALID_UTF8,
/// SP_E_OUT_OF_RANGE (port not 1..65535), SP_E_INVALID_ARGUMENT (empty host, an address that
/// is not an IP literal, or an empty list).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_resolve(
    manager: *mut sp_manager,
    host: *const c_char,
    port: i32,
    addresses: *const c_char,
) -> sp_result {
    call(|| {
        let host = try_str!(host);
        let port = u16::try_from(port).ok().filter(|&p| p > 0).ok_or_else(|| {
            FfiError::new(
                sp_result::SP_E_OUT_OF_RANGE,
                format!("port {port} is not 1..65535"),
            )
        })?;
        let list = if addresses.is_null() {
            None
        } else {
            let text = try_str!(addresses);
            let ips = text
                .split(',')
                .map(|a| {
                    a.trim().parse::<IpAddr>().map_err(|_| {
                        FfiError::new(
                            sp_result::SP_E_INVALID_ARGUMENT,
                            format!("'{}' is not an IP address", a.trim()),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(ips)
        };
        set(manager, |m| {
            m.set_resolve_override(host, port, list.as_deref())
        })
    })
}

/// Copies the manager's pins, one "host:port=addr,addr" line each (sorted, "\n"-separated; ""
/// for none), into `buf`, snprintf-style as sp_http_request_get_url().
///
/// Ownership: `buf` is borrowed for the call. Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER (out_len, or buf with cap > 0),
/// SP_E_INVALID_ARGUMENT (cap above PTRDIFF_MAX).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_resolve(
    manager: *const sp_manager,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> sp_result {
    call(|| {
        let dst = try_out!(out_len);
        // SAFETY: the header's contract: `buf` is NULL or `cap` writable bytes alive for the call.
        let buf = unsafe { text_buffer(buf, cap) }?;
        get(manager, dst, |m| copy_text(&m.resolve_overrides(), buf))
    })
}

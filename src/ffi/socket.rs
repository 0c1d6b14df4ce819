//! Socket settings of a service point's new connections (.NET's ServicePoint
//! ReceiveBufferSize, UseNagleAlgorithm, SetTcpKeepAlive, BindIPEndPointDelegate with a fixed
//! answer, and a connect timeout), the manager-wide defaults .NET has for them, and the
//! descriptor of a response's connection for inspection.

use super::access::{copy_text, flag, get, read, set, text_buffer};
use super::boundary::{FfiError, call, try_out, try_str, write};
use super::manager::sp_manager;
use super::point::sp_point;
use super::response::sp_response;
use super::result::sp_result;
use std::ffi::c_char;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

/// Sets ReceiveBufferSize: SO_RCVBUF in bytes for the service point's new connections, -1 for
/// the system's default (the default). Connections already open keep theirs.
///
/// Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_MANAGER_CLOSED, SP_E_OUT_OF_RANGE (below -1).
#[unsafe(no_mangle)]
pub extern "C" fn sp_set_receive_buffer_size(point: *mut sp_point, bytes: i32) -> sp_result {
    call(|| set(point, |e| e.point.set_receive_buffer_size(bytes)))
}

/// Reads ReceiveBufferSize (bytes, -1 for the system's default) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_receive_buffer_size(
    point: *const sp_point,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(point, try_out!(out_value), |e| {
            e.point.receive_buffer_size()
        })
    })
}

/// Sets SO_SNDBUF in bytes for the service point's new connections, -1 for the system's
/// default (the default).
///
/// Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_MANAGER_CLOSED, SP_E_OUT_OF_RANGE (below -1).
#[unsafe(no_mangle)]
pub extern "C" fn sp_set_send_buffer_size(point: *mut sp_point, bytes: i32) -> sp_result {
    call(|| set(point, |e| e.point.set_send_buffer_size(bytes)))
}

/// Reads the send buffer size (bytes, -1 for the system's default) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_send_buffer_size(
    point: *const sp_point,
    out_value: *mut i32,
) -> sp_result {
    call(|| get(point, try_out!(out_value), |e| e.point.send_buffer_size()))
}

/// Sets UseNagleAlgorithm for the service point's new connections: 0 (the default, as modern
/// .NET: TCP_NODELAY, a request goes out at once) or 1.
///
/// Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_MANAGER_CLOSED, SP_E_OUT_OF_RANGE (not 0 or 1).
#[unsafe(no_mangle)]
pub extern "C" fn sp_set_use_nagle_algorithm(point: *mut sp_point, on: i32) -> sp_result {
    call(|| {
        let on = flag(on, "use Nagle algorithm")?;
        set(point, |e| {
            e.point.set_use_nagle_algorithm(on);
        })
    })
}

/// Reads UseNagleAlgorithm (0 or 1) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_use_nagle_algorithm(
    point: *const sp_point,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(point, try_out!(out_value), |e| {
            e.point.use_nagle_algorithm() as i32
        })
    })
}

/// SetTcpKeepAlive: TCP keep-alive probes on the service point's new connections (enabled 1:
/// SO_KEEPALIVE, first probe after `time_ms` idle, then every `interval_ms`; enabled 0: off,
/// the times are ignored). Off by default.
///
/// Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_MANAGER_CLOSED, SP_E_OUT_OF_RANGE (enabled not 0 or 1, or
/// a time not > 0 when enabled, as .NET; nothing changed).
#[unsafe(no_mangle)]
pub extern "C" fn sp_set_tcp_keep_alive(
    point: *mut sp_point,
    enabled: i32,
    time_ms: i32,
    interval_ms: i32,
) -> sp_result {
    call(|| {
        let enabled = flag(enabled, "enabled")?;
        set(point, |e| {
            e.point.set_tcp_keep_alive(enabled, time_ms, interval_ms)
        })
    })
}

/// Reads the TCP keep-alive setting: *out_enabled 0 or 1, and the times in ms (0 when off).
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_tcp_keep_alive(
    point: *const sp_point,
    out_enabled: *mut i32,
    out_time_ms: *mut i32,
    out_interval_ms: *mut i32,
) -> sp_result {
    call(|| {
        let outs = (
            try_out!(out_enabled),
            try_out!(out_time_ms),
            try_out!(out_interval_ms),
        );
        write_keep_alive(outs, read(point, |e| e.point.tcp_keep_alive())?);
        Ok(())
    })
}

/// Writes a keep-alive setting (enabled, time ms, interval ms) to its three out-parameters.
fn write_keep_alive(outs: (*mut i32, *mut i32, *mut i32), value: (bool, i32, i32)) {
    write(outs.0, value.0 as i32);
    write(outs.1, value.1);
    write(outs.2, value.2);
}

fn parse_local(text: &str) -> Result<SocketAddr, FfiError> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0)))
        .map_err(|_| {
            FfiError::new(
                sp_result::SP_E_INVALID_ARGUMENT,
                format!("'{text}' is not an IP address, IP:port or [IPv6]:port"),
            )
        })
}

/// The local address new connections bind before connecting (.NET's BindIPEndPointDelegate
/// with a fixed answer): "IP", "IP:port" or "[IPv6]:port" (port 0 or none: any port). NULL or
/// "" lets the system choose (the default). A connection to an address of the other family
/// fails with SP_E_CONNECT.
///
/// Ownership: copied. Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_MANAGER_CLOSED, SP_E_INVALID_UTF8, SP_E_INVALID_ARGUMENT
/// (not an address).
#[unsafe(no_mangle)]
pub extern "C" fn sp_set_local_address(point: *mut sp_point, address: *const c_char) -> sp_result {
    call(|| {
        let local = if address.is_null() {
            None
        } else {
            let text = try_str!(address);
            if text.is_empty() {
                None
            } else {
                Some(parse_local(text)?)
            }
        };
        set(point, |e| {
            e.point.set_local_address(local);
        })
    })
}

/// Copies the local address new connections bind ("IP:port"; "" when the system chooses) into
/// `buf`, snprintf-style as sp_http_request_get_url().
///
/// Ownership: `buf` is borrowed for the call. Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER (out_len, or buf with cap > 0),
/// SP_E_INVALID_ARGUMENT (cap above PTRDIFF_MAX), SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_local_address(
    point: *const sp_point,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> sp_result {
    call(|| {
        let dst = try_out!(out_len);
        // SAFETY: the header's contract: `buf` is NULL or `cap` writable bytes alive for the call.
        let buf = unsafe { text_buffer(buf, cap) }?;
        get(point, dst, |e| {
            let text = e
                .point
                .local_address()
                .map_or(String::new(), |a| a.to_string());
            copy_text(&text, buf)
        })
    })
}

/// Sets how long connecting (all of the host's addresses, and the TLS handshake) may take, in
/// ms, for the service point's new connections; -1 (the default): only the request timeout
/// bounds it. A connect that takes longer fails with SP_E_CONNECT_TIMEOUT.
///
/// Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_MANAGER_CLOSED, SP_E_OUT_OF_RANGE (0 or below -1).
#[unsafe(no_mangle)]
pub extern "C" fn sp_set_connect_timeout(point: *mut sp_point, ms: i32) -> sp_result {
    call(|| set(point, |e| e.point.set_connect_timeout(ms)))
}

/// Reads the connect timeout (ms, -1 for the request timeout only) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_connect_timeout(point: *const sp_point, out_value: *mut i32) -> sp_result {
    call(|| get(point, try_out!(out_value), |e| e.point.connect_timeout_ms()))
}

/// Sets ServicePointManager.UseNagleAlgorithm: the value service points created from now on
/// take (0, the default, or 1).
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE (not 0 or 1).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_use_nagle_algorithm(
    manager: *mut sp_manager,
    on: i32,
) -> sp_result {
    call(|| {
        let on = flag(on, "use Nagle algorithm")?;
        set(manager, |m| {
            m.set_use_nagle_algorithm(on);
        })
    })
}

/// Reads the manager's UseNagleAlgorithm default (0 or 1) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_use_nagle_algorithm(
    manager: *const sp_manager,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(manager, try_out!(out_value), |m| {
            m.use_nagle_algorithm() as i32
        })
    })
}

/// ServicePointManager.SetTcpKeepAlive: the TCP keep-alive setting service points created
/// from now on take (see sp_set_tcp_keep_alive()).
///
/// Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE (as sp_set_tcp_keep_alive()).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_tcp_keep_alive(
    manager: *mut sp_manager,
    enabled: i32,
    time_ms: i32,
    interval_ms: i32,
) -> sp_result {
    call(|| {
        let enabled = flag(enabled, "enabled")?;
        set(manager, |m| {
            m.set_tcp_keep_alive(enabled, time_ms, interval_ms)
        })
    })
}

/// Reads the manager's TCP keep-alive default (see sp_get_tcp_keep_alive()).
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_tcp_keep_alive(
    manager: *const sp_manager,
    out_enabled: *mut i32,
    out_time_ms: *mut i32,
    out_interval_ms: *mut i32,
) -> sp_result {
    call(|| {
        let outs = (
            try_out!(out_enabled),
            try_out!(out_time_ms),
            try_out!(out_interval_ms),
        );
        write_keep_alive(outs, read(manager, |m| m.tcp_keep_alive())?);
        Ok(())
    })
}

/// Reads the socket descriptor of the response's connection into *out_fd, for inspection only
/// (getsockopt, getsockname): do not read, write, close or change it. Available while the
/// response holds its connection (its body not read to the end).
///
/// Thread safety: see sp_response.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_NOT_FOUND (the connection was released).
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_socket(response: *const sp_response, out_fd: *mut i32) -> sp_result {
    call(|| {
        let dst = try_out!(out_fd);
        match read(response, |e| e.response.socket().map(|s| s.as_raw_fd()))? {
            Some(fd) => {
                write(dst, fd);
                Ok(())
            }
            None => Err(FfiError::new(
                sp_result::SP_E_NOT_FOUND,
                "the response's connection was released (its body was read to the end)",
            )),
        }
    })
}

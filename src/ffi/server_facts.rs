//! Read-only facts: what a service point learned of its server (.NET's ServicePoint
//! ProtocolVersion, ConnectionName, SupportsPipelining, Certificate) and the TLS parameters of
//! the connection a response came on.

use super::access::{Handle, get, read};
use super::boundary::{FfiError, call, try_out, write};
use super::handles::ResponseEntry;
use super::point::sp_point;
use super::response::sp_response;
use super::result::sp_result;
use crate::connection::TlsFacts;
use crate::origin::Scheme;
use std::ffi::{CStr, CString, c_char};

/// Reads ProtocolVersion, the HTTP version the server answers with, into *out_version: 11 for
/// HTTP/1.1 until a response arrives (as .NET), then the version of the service point's last
/// response (10 for HTTP/1.0, 11 for HTTP/1.1).
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_protocol_version(
    point: *const sp_point,
    out_version: *mut i32,
) -> sp_result {
    call(|| {
        get(point, try_out!(out_version), |e| {
            let (major, minor) = e.point.server.protocol_version();
            10 * i32::from(major) + i32::from(minor)
        })
    })
}

/// ConnectionName: the service point's scheme, "http" or "https".
///
/// Ownership: *out_name is a static string; never free it.
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_connection_name(
    point: *const sp_point,
    out_name: *mut *const c_char,
) -> sp_result {
    call(|| {
        get(point, try_out!(out_name), |e| {
            let name: &'static CStr = match e.point.origin.scheme {
                Scheme::Http => c"http",
                Scheme::Https => c"https",
            };
            name.as_ptr()
        })
    })
}

/// Reads SupportsPipelining into *out_value: 1 until the server shows it does not pipeline
/// (a response says HTTP/1.0, a connection ends unannounced after the first pipelined batch,
/// or a pipelined request gets an answer out of protocol), then 0 for the service point's
/// life (as .NET Framework). Requests are pipelined (sp_set_pipelining()) only while this is
/// 1 and after a response said HTTP/1.1.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_MANAGER_CLOSED.
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_supports_pipelining(
    point: *const sp_point,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(point, try_out!(out_value), |e| {
            e.point.server.supports_pipelining() as i32
        })
    })
}

/// Copies Certificate, the server's end-entity certificate (DER) on the service point's last
/// new TLS connection, into `buf`. *out_len receives its length; the bytes are copied only
/// when they fit (*out_len <= cap), else nothing is: call again with a buffer of *out_len
/// bytes (the certificate may change in between if another thread opens a connection to a
/// server presenting another one; check *out_len again). `buf` may be NULL when `cap` is 0
/// (to ask for the length).
///
/// Ownership: `buf` is borrowed for the call. Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER (out_len, or buf with cap > 0),
/// SP_E_INVALID_ARGUMENT (cap above PTRDIFF_MAX), SP_E_MANAGER_CLOSED, SP_E_NOT_FOUND (no TLS
/// connection yet, and always for an http service point).
#[unsafe(no_mangle)]
pub extern "C" fn sp_get_certificate(
    point: *const sp_point,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> sp_result {
    call(|| {
        let dst = try_out!(out_len);
        // SAFETY: the header's contract: `buf` is NULL or `cap` writable bytes alive for the call.
        let buf = unsafe { super::access::text_buffer(buf.cast(), cap) }?;
        let der = read(point, |e| e.point.server.certificate())?.ok_or_else(|| {
            FfiError::new(
                sp_result::SP_E_NOT_FOUND,
                "no TLS connection of this service point has been opened yet",
            )
        })?;
        if let Some(room) = buf.get_mut(..der.len()) {
            room.copy_from_slice(&der);
        }
        write(dst, der.len());
        Ok(())
    })
}

/// The TLS facts of a response, or SP_E_NOT_FOUND for one that came over plain http.
fn tls(e: &ResponseEntry) -> Result<TlsFacts, FfiError> {
    e.response.tls.ok_or_else(|| {
        FfiError::new(
            sp_result::SP_E_NOT_FOUND,
            "the response came over http: no TLS",
        )
    })
}

/// Reads the TLS version the response's connection negotiated into *out_version: SP_TLS_1_2
/// or SP_TLS_1_3.
///
/// Thread safety: see sp_response.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_NOT_FOUND (a plain http response).
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_tls_version(
    response: *const sp_response,
    out_version: *mut i32,
) -> sp_result {
    call(|| {
        let dst = try_out!(out_version);
        sp_response::with(response, |e| {
            let (major, minor) = tls(e)?.version;
            write(dst, 10 * i32::from(major) + i32::from(minor));
            Ok(())
        })
    })
}

/// The cipher suite the response's connection negotiated, by its IANA name (as .NET's
/// TlsCipherSuite names it), e.g. "TLS_AES_256_GCM_SHA384" (TLS 1.3) or
/// "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" (TLS 1.2).
///
/// Ownership: *out_name is borrowed until sp_response_free().
/// Thread safety: see sp_response.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_NOT_FOUND (a plain http response).
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_tls_cipher_suite(
    response: *const sp_response,
    out_name: *mut *const c_char,
) -> sp_result {
    call(|| {
        let dst = try_out!(out_name);
        sp_response::with(response, |e| {
            let facts = tls(e)?;
            let name = e
                .tls_cipher_suite
                .get_or_insert_with(|| CString::new(facts.cipher_suite).unwrap_or_default());
            write(dst, name.as_ptr());
            Ok(())
        })
    })
}

/// Reads 1 into *out_resumed if the response's TLS connection resumed an earlier session
/// (abbreviated handshake), else 0. A reused connection reports how it was opened.
///
/// Thread safety: see sp_response.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_NOT_FOUND (a plain http response).
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_tls_resumed(
    response: *const sp_response,
    out_resumed: *mut i32,
) -> sp_result {
    call(|| {
        let dst = try_out!(out_resumed);
        sp_response::with(response, |e| {
            write(dst, tls(e)?.resumed as i32);
            Ok(())
        })
    })
}

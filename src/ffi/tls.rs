//! A manager's TLS options: trusted CAs, system roots, client certificate, minimum version,
//! and the certificate validation callback.

use super::access::{count, flag, get, set};
use super::boundary::{FfiError, call, try_out, try_slice, try_str};
use super::manager::sp_manager;
use super::result::sp_result;
use crate::error::Error;
use crate::tls::{CertValidator, MinVersion};
use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

/// TLS 1.2, for sp_manager_set_min_tls_version() and sp_manager_get_min_tls_version().
pub const SP_TLS_1_2: i32 = 12;
/// TLS 1.3, for sp_manager_set_min_tls_version() and sp_manager_get_min_tls_version().
pub const SP_TLS_1_3: i32 = 13;

/// Decides whether to accept a server certificate. `host` is the name connected to;
/// `certs[i]`/`cert_lens[i]` (i < count) are the DER certificates the server sent, end entity
/// first; `builtin_result` is SP_OK if the built-in verification accepted the chain, else its
/// error code (e.g. SP_E_TLS_UNKNOWN_ISSUER for a self-signed certificate). Return 1 to accept,
/// 0 to reject (the request then fails with SP_E_TLS_CERTIFICATE). All pointers are borrowed
/// for the duration of the call. Runs on the thread that is connecting (inside sp_request()).
pub type sp_cert_validator_cb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        host: *const c_char,
        certs: *const *const u8,
        cert_lens: *const usize,
        count: usize,
        builtin_result: i32,
    ) -> i32,
>;

/// Trusts the CA certificates in a PEM buffer (one or more "BEGIN CERTIFICATE" blocks) for
/// https service points of this manager, besides the system's trust store. Applies to
/// connections opened from now on.
///
/// Ownership: `pem` is borrowed for the call (copied). Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_INVALID_ARGUMENT (no certificate, bad PEM,
/// `len` 0 or above PTRDIFF_MAX).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_add_ca_pem(
    manager: *mut sp_manager,
    pem: *const u8,
    len: usize,
) -> sp_result {
    call(|| {
        let pem = try_slice!(pem, len);
        set(manager, |m| m.tls().add_ca_pem(pem).map(drop))
    })
}

/// Trusts the CA certificates in a PEM file, as sp_manager_add_ca_pem().
///
/// Ownership: `path` is borrowed. Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_INVALID_UTF8, SP_E_INVALID_ARGUMENT
/// (unreadable file, no certificate, bad PEM).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_add_ca_file(
    manager: *mut sp_manager,
    path: *const c_char,
) -> sp_result {
    call(|| {
        let path = try_str!(path);
        set(manager, |m| m.tls().add_ca_file(path).map(drop))
    })
}

/// Reads the number of CA certificates added with sp_manager_add_ca_pem() and
/// sp_manager_add_ca_file() into *out_value (the system's trust store not counted).
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_ca_count(
    manager: *const sp_manager,
    out_value: *mut i32,
) -> sp_result {
    call(|| get(manager, try_out!(out_value), |m| count(m.tls().ca_count())))
}

/// Uses the system's trust store (1, the default) or only the CAs added with
/// sp_manager_add_ca_pem()/sp_manager_add_ca_file() (0).
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE (not 0 or 1).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_system_roots(manager: *mut sp_manager, on: i32) -> sp_result {
    call(|| {
        let on = flag(on, "system roots")?;
        set(manager, |m| {
            m.tls().set_system_roots(on);
        })
    })
}

/// Reads whether the system's trust store is used (1, the default) or not (0) into
/// *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_system_roots(
    manager: *const sp_manager,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(manager, try_out!(out_value), |m| {
            m.tls().system_roots() as i32
        })
    })
}

/// Sets the client certificate chain and private key (both PEM) presented to servers that ask
/// for one (mutual TLS).
///
/// Ownership: buffers borrowed for the call (copied). Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_INVALID_ARGUMENT (bad PEM, unusable key).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_client_certificate(
    manager: *mut sp_manager,
    cert_pem: *const u8,
    cert_len: usize,
    key_pem: *const u8,
    key_len: usize,
) -> sp_result {
    call(|| {
        let (cert, key) = (try_slice!(cert_pem, cert_len), try_slice!(key_pem, key_len));
        set(manager, |m| m.tls().set_client_certificate(cert, key))
    })
}

/// Reads 1 into *out_value if a client certificate was set with
/// sp_manager_set_client_certificate(), else 0.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_has_client_certificate(
    manager: *const sp_manager,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(manager, try_out!(out_value), |m| {
            m.tls().has_client_certificate() as i32
        })
    })
}

/// Sets the lowest TLS version offered: SP_TLS_1_2 (default) or SP_TLS_1_3.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_min_tls_version(
    manager: *mut sp_manager,
    version: i32,
) -> sp_result {
    call(|| {
        let v = match version {
            SP_TLS_1_2 => MinVersion::Tls12,
            SP_TLS_1_3 => MinVersion::Tls13,
            other => {
                return Err(FfiError::new(
                    sp_result::SP_E_OUT_OF_RANGE,
                    format!("TLS version {other} is not SP_TLS_1_2 (12) or SP_TLS_1_3 (13)"),
                ));
            }
        };
        set(manager, |m| {
            m.tls().set_min_version(v);
        })
    })
}

/// Reads the lowest TLS version offered (SP_TLS_1_2 or SP_TLS_1_3) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_min_tls_version(
    manager: *const sp_manager,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(manager, try_out!(out_value), |m| {
            match m.tls().min_version() {
                MinVersion::Tls12 => SP_TLS_1_2,
                MinVersion::Tls13 => SP_TLS_1_3,
            }
        })
    })
}

struct CallbackValidator {
    cb: unsafe extern "C" fn(
        *mut c_void,
        *const c_char,
        *const *const u8,
        *const usize,
        usize,
        i32,
    ) -> i32,
    userdata: *mut c_void,
}

// SAFETY: the caller promises (in the header) that the callback may be called from any thread
// that sends requests and that userdata stays valid until the validator is replaced or the
// manager freed.
unsafe impl Send for CallbackValidator {}
// SAFETY: as above; the library never touches userdata itself.
unsafe impl Sync for CallbackValidator {}

impl CertValidator for CallbackValidator {
    fn validate(&self, host: &str, chain: &[&[u8]], builtin: Option<&Error>) -> bool {
        let host = CString::new(host).unwrap_or_default();
        let ptrs: Vec<*const u8> = chain.iter().map(|c| c.as_ptr()).collect();
        let lens: Vec<usize> = chain.iter().map(|c| c.len()).collect();
        let code = builtin.map_or(sp_result::SP_OK, |e| sp_result::from_kind(e.kind)) as i32;
        // SAFETY: every pointer passed is valid for the duration of the call.
        let verdict = crate::callback::run(|| unsafe {
            (self.cb)(
                self.userdata,
                host.as_ptr(),
                ptrs.as_ptr(),
                lens.as_ptr(),
                chain.len(),
                code,
            )
        });
        verdict == 1
    }
}

/// Installs a certificate validation callback (the idea of .NET's
/// ServerCertificateValidationCallback), or removes it with NULL. The callback sees the host,
/// the DER chain and the built-in verdict, and accepts or rejects; without it, only the
/// built-in verification decides. It runs on full handshakes: a new connection that resumes a
/// session of this manager is not verified again. Calling this function (like every TLS
/// option setter) starts a fresh session cache, so the next connections verify anew.
/// Meant for tests and private networks (e.g. to pin a self-signed certificate): there is deliberately no switch that turns verification off.
///
/// Ownership: `userdata` is borrowed until the callback is replaced or the manager freed.
/// Thread safety: the callback may run on any thread that calls sp_request(), concurrently.
/// Errors: SP_E_INVALID_HANDLE.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_certificate_validator(
    manager: *mut sp_manager,
    validator: sp_cert_validator_cb,
    userdata: *mut c_void,
) -> sp_result {
    call(|| {
        let v = validator
            .map(|cb| Arc::new(CallbackValidator { cb, userdata }) as Arc<dyn CertValidator>);
        set(manager, |m| {
            m.tls().set_validator(v);
        })
    })
}

/// Reads 1 into *out_value if a certificate validation callback is installed, else 0.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_has_certificate_validator(
    manager: *const sp_manager,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(manager, try_out!(out_value), |m| {
            m.tls().has_validator() as i32
        })
    })
}

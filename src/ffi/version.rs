//! Version and error-text functions.

use super::boundary::{self, guard};
use std::ffi::c_char;

/// ABI version of this header; sp_abi_version() returns the library's. Bumped on any
/// incompatible change of a signature or meaning.
pub const SP_ABI_VERSION: u32 = 2;

/// The infinite duration for every millisecond setting.
pub const SP_INFINITE: i32 = -1;

const VERSION: &str = concat!("servicepoint/", env!("CARGO_PKG_VERSION"), "\0");

/// The library's version as a static string, e.g. "servicepoint/0.1.0".
///
/// Ownership: static; never free it. Thread safety: any thread. Errors: none.
#[unsafe(no_mangle)]
pub extern "C" fn sp_version() -> *const c_char {
    guard(std::ptr::null(), || VERSION.as_ptr().cast())
}

/// The ABI version (compare with SP_ABI_VERSION from this header at start-up).
///
/// Thread safety: any thread. Errors: none.
#[unsafe(no_mangle)]
pub extern "C" fn sp_abi_version() -> u32 {
    guard(0, || SP_ABI_VERSION)
}

/// A fixed English text for a result code; "unknown result code" for a number that is none
/// (a code appended by a newer library, for instance).
///
/// Ownership: static; never free it. Thread safety: any thread. Errors: none.
#[unsafe(no_mangle)]
pub extern "C" fn sp_strerror(code: i32) -> *const c_char {
    guard(std::ptr::null(), || super::result::strerror(code).as_ptr())
}

/// The detailed message of the last call that failed on the calling thread, e.g.
/// "connection limit queue wait exceeded 5000 ms for http://127.0.0.1:8080 (2 busy, 7 waiting)".
/// Empty if no call has failed on this thread. Successful calls do not clear it.
///
/// Ownership: borrowed, thread-local; valid until the next failing call on this thread.
/// Thread safety: each thread has its own. Errors: none.
#[unsafe(no_mangle)]
pub extern "C" fn sp_last_error() -> *const c_char {
    guard(std::ptr::null(), boundary::last_error_ptr)
}

/// 1 if the request whose failure is the calling thread's last error may have reached the
/// server (request bytes were sent), else 0. Use it to decide whether a non-idempotent
/// request may be resent.
///
/// Thread safety: each thread has its own. Errors: none.
#[unsafe(no_mangle)]
pub extern "C" fn sp_last_error_request_sent() -> i32 {
    guard(1, || boundary::last_error_sent() as i32)
}

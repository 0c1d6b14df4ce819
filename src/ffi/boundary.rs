//! The edge between C and Rust: every export runs inside `call` (fallible) or `guard`
//! (infallible), which catch panics, and failures are recorded as the thread's last error.

use super::result::sp_result;
use crate::error::Error;
use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A failure on its way to C: a code, a message, and whether a request may have reached the
/// server.
#[derive(Debug)]
pub struct FfiError {
    pub code: sp_result,
    pub message: String,
    pub sent: bool,
}

impl FfiError {
    pub fn new(code: sp_result, message: impl Into<String>) -> Self {
        FfiError {
            code,
            message: message.into(),
            sent: false,
        }
    }
}

impl From<Error> for FfiError {
    fn from(e: Error) -> Self {
        FfiError {
            code: sp_result::from_kind(e.kind),
            message: e.message,
            sent: e.may_have_reached_server,
        }
    }
}

pub type FfiResult = Result<(), FfiError>;

struct LastError {
    message: CString,
    sent: bool,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = RefCell::new(LastError {
        message: CString::default(),
        sent: false,
    });
}

/// Makes `err` the calling thread's last error (also what a completion callback reads).
pub fn record(err: &FfiError) {
    let text = err.message.replace('\0', " ");
    let message = CString::new(text).unwrap_or_default();
    LAST_ERROR.with(|l| {
        *l.borrow_mut() = LastError {
            message,
            sent: err.sent,
        }
    });
}

/// Pointer to the calling thread's last error message (valid until its next failing call).
pub fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().message.as_ptr())
}

pub fn last_error_sent() -> bool {
    LAST_ERROR.with(|l| l.borrow().sent)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into());
    format!("internal error (panic): {text}")
}

/// Runs a fallible export body: maps errors to codes and panics to `SP_E_PANIC`.
pub fn call(body: impl FnOnce() -> FfiResult) -> sp_result {
    let err = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return sp_result::SP_OK,
        Ok(Err(e)) => e,
        Err(payload) => FfiError {
            code: sp_result::SP_E_PANIC,
            message: panic_message(payload.as_ref()),
            // Where a bug stopped a request is unknown: the safe answer is that it may have
            // reached the server (a caller will not resend it blindly).
            sent: true,
        },
    };
    record(&err);
    err.code
}

/// Runs an infallible export body; a panic yields `fallback` (and is recorded).
pub fn guard<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            record(&FfiError::new(
                sp_result::SP_E_PANIC,
                panic_message(payload.as_ref()),
            ));
            fallback
        }
    }
}

/// Borrows a C string argument as UTF-8.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string that outlives the call.
pub unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, FfiError> {
    if p.is_null() {
        return Err(FfiError::new(
            sp_result::SP_E_NULL_POINTER,
            format!("{what} is NULL"),
        ));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) };
    bytes.to_str().map_err(|e| {
        FfiError::new(
            sp_result::SP_E_INVALID_UTF8,
            format!("{what} is not valid UTF-8: {e}"),
        )
    })
}

/// Checks a buffer length from C: a slice cannot exceed `isize::MAX` bytes, and a larger
/// value (often `(size_t)-1`, a caller's bug) is refused before any slice is formed.
pub fn check_len(len: usize, what: &str) -> Result<(), FfiError> {
    if len > isize::MAX as usize {
        return Err(FfiError::new(
            sp_result::SP_E_INVALID_ARGUMENT,
            format!("{what} {len} is larger than any buffer can be"),
        ));
    }
    Ok(())
}

/// Borrows `len` bytes at `data` as a slice: `len` above `isize::MAX` gives
/// `SP_E_INVALID_ARGUMENT`, NULL with a non-zero `len` gives `SP_E_NULL_POINTER`, and NULL
/// with `len` 0 an empty slice.
///
/// # Safety
/// `data` must be NULL or point to `len` readable bytes that outlive the call.
pub unsafe fn slice<'a>(data: *const u8, len: usize, what: &str) -> Result<&'a [u8], FfiError> {
    check_len(len, what)?;
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(FfiError::new(
            sp_result::SP_E_NULL_POINTER,
            format!("{what} is NULL"),
        ));
    }
    // SAFETY: non-null, `len` readable bytes by the caller's contract, `len` <= isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// Borrows `cap` writable bytes at `buf` (NULL gives `SP_E_NULL_POINTER`, `cap` above
/// `isize::MAX` gives `SP_E_INVALID_ARGUMENT`).
///
/// # Safety
/// `buf` must be NULL or point to `cap` writable bytes that outlive the call.
pub unsafe fn slice_mut<'a>(
    buf: *mut u8,
    cap: usize,
    what: &str,
) -> Result<&'a mut [u8], FfiError> {
    check_len(cap, what)?;
    if buf.is_null() {
        return Err(FfiError::new(
            sp_result::SP_E_NULL_POINTER,
            format!("{what} is NULL"),
        ));
    }
    // SAFETY: non-null, `cap` writable bytes by the caller's contract, `cap` <= isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf, cap) })
}

/// Argument checks in the style of rustls-ffi (`try_ref_from_ptr!`, `try_slice!`): each
/// checks one C argument, names it in the error message after the parameter itself, and
/// returns the error from the enclosing `call` body. The SAFETY argument is the header's
/// contract for that parameter, stated once here instead of at every use.
///
/// `try_str!(p)`: a NUL-terminated UTF-8 string (NULL: SP_E_NULL_POINTER; invalid UTF-8:
/// SP_E_INVALID_UTF8).
macro_rules! try_str {
    ($p:ident) => {{
        let p = $p;
        // SAFETY: the header's contract: NULL or a NUL-terminated string alive for the call.
        unsafe { $crate::ffi::boundary::text(p, stringify!($p)) }?
    }};
}

/// `try_slice!(data, len)`: `len` readable bytes (NULL allowed when `len` is 0).
macro_rules! try_slice {
    ($data:ident, $len:expr) => {{
        let (data, len) = ($data, $len);
        // SAFETY: the header's contract: NULL or `len` readable bytes alive for the call.
        unsafe { $crate::ffi::boundary::slice(data, len, stringify!($data)) }?
    }};
}

/// `try_slice_mut!(buf, cap)`: `cap` writable bytes, never NULL.
macro_rules! try_slice_mut {
    ($buf:ident, $cap:expr) => {{
        let (buf, cap) = ($buf, $cap);
        // SAFETY: the header's contract: NULL or `cap` writable bytes alive for the call.
        unsafe { $crate::ffi::boundary::slice_mut(buf, cap, stringify!($buf)) }?
    }};
}

/// `try_out!(out_x)`: a non-NULL out-parameter (NULL: SP_E_NULL_POINTER).
macro_rules! try_out {
    ($p:ident) => {
        $crate::ffi::boundary::out($p, stringify!($p))?
    };
}

pub(crate) use {try_out, try_slice, try_slice_mut, try_str};

/// Writes a versioned struct (its first field the `u32` struct_size the caller set) into the
/// caller's memory: at most struct_size bytes, so a caller built against an older, shorter
/// struct gets only the fields it knows; sizes under `min` are refused. `value` gets the size
/// actually written, for its own struct_size field.
///
/// Callers pass structs without padding, every field set, so every byte copied is defined.
pub fn write_sized<T: Copy>(
    dst: *mut T,
    min: usize,
    what: &str,
    value: impl FnOnce(u32) -> T,
) -> Result<(), FfiError> {
    // SAFETY: dst was checked non-null; per the contract its leading struct_size is readable.
    let size = unsafe { dst.cast::<u32>().read_unaligned() } as usize;
    if size < min {
        return Err(FfiError::new(
            sp_result::SP_E_INVALID_ARGUMENT,
            format!("{what}->struct_size {size} is too small"),
        ));
    }
    let n = size.min(std::mem::size_of::<T>());
    let full = value(n as u32);
    // SAFETY: copies n <= struct_size bytes of an initialised T into the caller's struct.
    unsafe { std::ptr::copy_nonoverlapping((&full as *const T).cast::<u8>(), dst.cast::<u8>(), n) };
    Ok(())
}

/// Checks an out-parameter pointer.
pub fn out<T>(p: *mut T, what: &str) -> Result<*mut T, FfiError> {
    if p.is_null() {
        Err(FfiError::new(
            sp_result::SP_E_NULL_POINTER,
            format!("{what} is NULL"),
        ))
    } else {
        Ok(p)
    }
}

/// Writes an out-parameter that `out` has already checked.
pub fn write<T>(p: *mut T, value: T) {
    // SAFETY: `p` was checked non-null; the caller's contract says it points to a writable T.
    unsafe { p.write(value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_becomes_sp_e_panic_with_message() {
        let code = call(|| panic!("boom in the core"));
        assert_eq!(code, sp_result::SP_E_PANIC);
        // SAFETY: the thread-local message is NUL-terminated and alive until the next failure.
        let msg = unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_str()
            .unwrap()
            .to_string();
        assert!(msg.contains("boom in the core"), "{msg}");
        assert_eq!(guard(7, || panic!("again")), 7);
    }

    #[test]
    fn errors_are_recorded() {
        let code = call(|| Err(FfiError::new(sp_result::SP_E_NOT_FOUND, "no such header")));
        assert_eq!(code, sp_result::SP_E_NOT_FOUND);
        // SAFETY: as above.
        let msg = unsafe { CStr::from_ptr(last_error_ptr()) };
        assert_eq!(msg.to_str().unwrap(), "no such header");
    }
}

//! The shape every accessor of the C ABI shares, written once: look the handle up, check the
//! arguments, convert, call the core. An export keeps its own signature and header doc and
//! its `call(...)`; its body is one line, e.g.
//! `call(|| get(point, try_out!(out_value), |e| e.point.lease_timeout_ms()))`.

use super::boundary::{FfiError, FfiResult, write};
use super::result::sp_result;
use std::ffi::c_char;
use std::time::Duration;

/// An opaque handle type of the header and the object it stands for.
pub trait Handle {
    /// What a handle of this kind gives access to while the lookup is held.
    type Object;
    /// Looks the handle up (SP_E_INVALID_HANDLE, SP_E_MANAGER_CLOSED, ...) and runs `f` on
    /// its object.
    fn with<R>(
        handle: *const Self,
        f: impl FnOnce(&mut Self::Object) -> Result<R, FfiError>,
    ) -> Result<R, FfiError>;
}

/// Reads a value through a handle (for getters that write several out-parameters or decide
/// on the value before writing).
pub fn read<H: Handle, T>(
    handle: *const H,
    value: impl FnOnce(&H::Object) -> T,
) -> Result<T, FfiError> {
    H::with(handle, |o| Ok(value(o)))
}

/// Writes one value read through a handle to an out-parameter (already checked with
/// `try_out!`): the body of every getter.
pub fn get<H: Handle, T>(
    handle: *const H,
    dst: *mut T,
    value: impl FnOnce(&H::Object) -> T,
) -> FfiResult {
    write(dst, read(handle, value)?);
    Ok(())
}

/// What a setter's change gives back: nothing (it cannot fail), or a result whose error,
/// the core's or the FFI layer's own, converts.
pub trait Outcome {
    fn into_result(self) -> FfiResult;
}

impl Outcome for () {
    fn into_result(self) -> FfiResult {
        Ok(())
    }
}

impl<E: Into<FfiError>> Outcome for Result<(), E> {
    fn into_result(self) -> FfiResult {
        self.map_err(Into::into)
    }
}

/// Changes the object behind a handle: the body of every setter.
pub fn set<H: Handle, O: Outcome>(
    handle: *mut H,
    change: impl FnOnce(&mut H::Object) -> O,
) -> FfiResult {
    H::with(handle, |o| change(o).into_result())
}

/// A C flag (0 or 1).
pub fn flag(v: i32, what: &str) -> Result<bool, FfiError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(FfiError::new(
            sp_result::SP_E_OUT_OF_RANGE,
            format!("{what} must be 0 or 1, not {v}"),
        )),
    }
}

/// A C flag that may defer to a default: 1, 0, or -1 (`None`: as the default says).
pub fn flag_or_default(v: i32, what: &str) -> Result<Option<bool>, FfiError> {
    match v {
        -1 => Ok(None),
        v => flag(v, &format!("{what} (or -1)")).map(Some),
    }
}

/// An optional flag as C reads it: 1, 0, or -1 for the default.
pub fn flag_or_default_value(v: Option<bool>) -> i32 {
    v.map_or(-1, i32::from)
}

/// A C duration in ms (-1 infinite, `None`); below -1 is SP_E_OUT_OF_RANGE.
pub fn duration(ms: i32, what: &str) -> Result<Option<Duration>, FfiError> {
    if ms < -1 {
        return Err(FfiError::new(
            sp_result::SP_E_OUT_OF_RANGE,
            format!("{what} {ms} ms is below -1"),
        ));
    }
    Ok(crate::point::ms_to_duration(ms))
}

/// A duration as C reads it: ms (saturating at INT32_MAX), -1 for infinite.
pub fn millis(d: Option<Duration>) -> i32 {
    d.map_or(-1, |d| i32::try_from(d.as_millis()).unwrap_or(i32::MAX))
}

/// A count as C reads it (saturating at INT32_MAX).
pub fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Copies text out snprintf-style: `dst` receives at most `dst.len() - 1` bytes and a NUL
/// (nothing when it is empty); the return value is the whole text's length, so a caller
/// whose buffer was too small (length >= capacity) can call again with a bigger one.
pub fn copy_text(text: &str, dst: &mut [u8]) -> usize {
    if let Some(room) = dst.len().checked_sub(1) {
        let n = text.len().min(room);
        dst[..n].copy_from_slice(&text.as_bytes()[..n]);
        dst[n] = 0;
    }
    text.len()
}

/// The text buffer arguments of a copy-out getter: `buf` may be NULL only when `cap` is 0.
///
/// # Safety
/// `buf` must be NULL or point to `cap` writable bytes that outlive the call.
pub unsafe fn text_buffer<'a>(buf: *mut c_char, cap: usize) -> Result<&'a mut [u8], FfiError> {
    if cap == 0 {
        super::boundary::check_len(cap, "cap")?;
        return Ok(&mut []);
    }
    // SAFETY: forwarded from the caller's contract.
    unsafe { super::boundary::slice_mut(buf.cast(), cap, "buf") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_truncates_like_snprintf() {
        let mut buf = [0xA5u8; 4];
        assert_eq!(copy_text("abcdef", &mut buf), 6);
        assert_eq!(&buf, b"abc\0");
        let mut big = [0xA5u8; 8];
        assert_eq!(copy_text("ab", &mut big), 2);
        assert_eq!(&big[..3], b"ab\0");
        assert_eq!(big[3], 0xA5, "nothing written past the NUL");
        assert_eq!(copy_text("ab", &mut []), 2);
    }

    #[test]
    fn durations_round_trip() {
        assert_eq!(millis(duration(-1, "t").unwrap()), -1);
        assert_eq!(millis(duration(0, "t").unwrap()), 0);
        assert_eq!(millis(duration(i32::MAX, "t").unwrap()), i32::MAX);
        assert_eq!(millis(Some(Duration::from_secs(u64::MAX))), i32::MAX);
        assert!(duration(-2, "t").is_err());
    }
}

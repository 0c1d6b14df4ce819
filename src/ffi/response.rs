//! `sp_response_*`: status, headers, the streamed body, and release.

use super::access::{Handle, get};
use super::boundary::{FfiError, call, guard, try_out, try_slice_mut, try_str, write};
use super::handles::{self, Entry, ResponseEntry};
use super::result::sp_result;
use crate::http1::Fields;
use std::ffi::{CString, c_char};

/// A response: status, headers (wire order, repeats kept) and a body read as a stream. Its
/// connection is taken until the body has been read to the end or the response is freed.
/// Strings it hands out are borrowed until sp_response_free().
/// Thread safety: may move between threads; calls on one response are serialized.
///
/// Functions: sp_request (creates it), sp_response_free, sp_response_status,
/// sp_response_http_version, sp_response_reason, sp_response_header,
/// sp_response_header_count, sp_response_header_at, sp_response_head, sp_response_trailer,
/// sp_response_read, sp_response_read_now, sp_response_read_all, sp_response_connection_id,
/// sp_response_connection_reused, sp_response_retried, sp_response_local_port,
/// sp_response_tls_version, sp_response_tls_cipher_suite, sp_response_tls_resumed.
pub struct sp_response {
    _opaque: [u8; 0],
}

impl Handle for sp_response {
    type Object = ResponseEntry;
    /// The response, locked (a forked child's response of its parent: SP_E_INVALID_HANDLE).
    fn with<R>(
        handle: *const Self,
        f: impl FnOnce(&mut ResponseEntry) -> Result<R, FfiError>,
    ) -> Result<R, FfiError> {
        let cell = handles::response(handle)?;
        let mut entry = cell.lock()?;
        f(&mut entry)
    }
}

fn c_pairs(fields: &Fields) -> Vec<(CString, CString)> {
    let c = |b: &[u8]| {
        CString::new(b.iter().copied().filter(|&x| x != 0).collect::<Vec<u8>>()).unwrap_or_default()
    };
    fields
        .iter()
        .map(|(name, value)| (c(name.as_bytes()), c(value)))
        .collect()
}

/// The first value of field `name` (case-insensitive) as a C string kept in `cache`, which
/// is (re)built when it does not match `fields` (trailers arrive after the headers).
fn lookup(
    fields: &Fields,
    cache: &mut Option<Vec<(CString, CString)>>,
    name: &str,
    what: &str,
) -> Result<*const c_char, FfiError> {
    let i = fields.position(name).ok_or_else(|| {
        FfiError::new(
            sp_result::SP_E_NOT_FOUND,
            format!("no {what} named '{name}'"),
        )
    })?;
    if cache.as_ref().is_none_or(|c| c.len() != fields.len()) {
        *cache = Some(c_pairs(fields));
    }
    Ok(cache.as_ref().map_or(std::ptr::null(), |c| c[i].1.as_ptr()))
}

/// Frees a response. If its body was read to the end, the connection goes back to the pool;
/// if a small remainder (up to 64 KiB, arriving within 100 ms) is unread, it is drained and
/// the connection reused; otherwise the connection is closed. NULL, a freed handle or another
/// kind of handle is ignored.
///
/// Ownership: consumes the handle; every string borrowed from it becomes invalid.
/// Blocking: may wait up to 100 ms for the unread remainder of the body to drain.
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_free(response: *mut sp_response) {
    guard((), || {
        drop(handles::remove_kind(response, |e| {
            matches!(e, Entry::Response(_))
        }));
    })
}

/// Reads the status code (e.g. 200) into *out_status.
///
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_status(
    response: *const sp_response,
    out_status: *mut i32,
) -> sp_result {
    call(|| {
        get(response, try_out!(out_status), |e| {
            e.response.status() as i32
        })
    })
}

/// Reads the HTTP version into *out_version: 10 for HTTP/1.0, 11 for HTTP/1.1.
///
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_http_version(
    response: *const sp_response,
    out_version: *mut i32,
) -> sp_result {
    call(|| {
        get(response, try_out!(out_version), |e| {
            10 + e.response.head.minor_version as i32
        })
    })
}

/// The reason phrase (e.g. "OK"; may be empty).
///
/// Ownership: *out_reason is borrowed until sp_response_free().
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_reason(
    response: *const sp_response,
    out_reason: *mut *const c_char,
) -> sp_result {
    call(|| {
        let dst = try_out!(out_reason);
        sp_response::with(response, |e| {
            let head = &e.response.head;
            let reason = e.reason.get_or_insert_with(|| {
                CString::new(head.reason.replace('\0', " ")).unwrap_or_default()
            });
            write(dst, reason.as_ptr());
            Ok(())
        })
    })
}

/// The first value of the header field `name` (case-insensitive).
///
/// Ownership: `name` borrowed; *out_value borrowed until sp_response_free().
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_INVALID_UTF8, SP_E_NOT_FOUND.
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_header(
    response: *const sp_response,
    name: *const c_char,
    out_value: *mut *const c_char,
) -> sp_result {
    call(|| {
        let (name, dst) = (try_str!(name), try_out!(out_value));
        sp_response::with(response, |e| {
            write(
                dst,
                lookup(&e.response.head.headers, &mut e.headers, name, "header")?,
            );
            Ok(())
        })
    })
}

/// The whole response head as text, for bindings that want it in one call: the status line
/// ("HTTP/1.1 200 OK") and each header field ("Name: value", names as received, wire order,
/// repeats kept), each line ending in CR LF, then an empty line. *out_len receives the length
/// (the text is also NUL-terminated).
///
/// Ownership: *out_text is borrowed until sp_response_free().
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_head(
    response: *const sp_response,
    out_text: *mut *const c_char,
    out_len: *mut usize,
) -> sp_result {
    call(|| {
        let (dt, dl) = (try_out!(out_text), try_out!(out_len));
        sp_response::with(response, |e| {
            let head = &e.response.head;
            let text = e.head_text.get_or_insert_with(|| {
                let mut t = format!(
                    "HTTP/1.{} {} {}\r\n",
                    head.minor_version, head.status, head.reason
                )
                .into_bytes();
                for (name, value) in head.headers.iter() {
                    t.extend_from_slice(name.as_bytes());
                    t.extend_from_slice(b": ");
                    t.extend(value.iter().filter(|&&b| b != 0));
                    t.extend_from_slice(b"\r\n");
                }
                t.extend_from_slice(b"\r\n\0");
                t
            });
            write(dt, text.as_ptr().cast());
            write(dl, text.len() - 1);
            Ok(())
        })
    })
}

/// Reads the number of header fields into *out_count.
///
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_header_count(
    response: *const sp_response,
    out_count: *mut usize,
) -> sp_result {
    call(|| {
        get(response, try_out!(out_count), |e| {
            e.response.head.headers.len()
        })
    })
}

/// The header field at `index` (0-based, wire order): name as received and value.
///
/// Ownership: *out_name and *out_value are borrowed until sp_response_free().
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_OUT_OF_RANGE (index >= count).
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_header_at(
    response: *const sp_response,
    index: usize,
    out_name: *mut *const c_char,
    out_value: *mut *const c_char,
) -> sp_result {
    call(|| {
        let (dn, dv) = (try_out!(out_name), try_out!(out_value));
        sp_response::with(response, |e| {
            let pairs = e
                .headers
                .get_or_insert_with(|| c_pairs(&e.response.head.headers));
            let (n, v) = pairs.get(index).ok_or_else(|| {
                FfiError::new(
                    sp_result::SP_E_OUT_OF_RANGE,
                    format!("header index {index} >= count {}", pairs.len()),
                )
            })?;
            write(dn, n.as_ptr());
            write(dv, v.as_ptr());
            Ok(())
        })
    })
}

/// The first value of the trailer field `name` of a chunked body; available once the body
/// has been read to the end.
///
/// Ownership: *out_value borrowed until sp_response_free().
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_INVALID_UTF8, SP_E_NOT_FOUND.
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_trailer(
    response: *const sp_response,
    name: *const c_char,
    out_value: *mut *const c_char,
) -> sp_result {
    call(|| {
        let (name, dst) = (try_str!(name), try_out!(out_value));
        sp_response::with(response, |e| {
            write(
                dst,
                lookup(e.response.trailers(), &mut e.trailers, name, "trailer")?,
            );
            Ok(())
        })
    })
}

/// Reads up to `cap` (> 0) body bytes into `buf`; *out_n receives the count, 0 meaning the end
/// of the body (then the connection has gone back to the pool). Blocks until at least one byte,
/// the end, or the request's read timeout. After an error the connection is closed.
///
/// Ownership: `buf` is borrowed for the call.
/// Blocking: parks only the calling thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_INVALID_ARGUMENT (cap 0, which would
/// be indistinguishable from the end, or above PTRDIFF_MAX), SP_E_READ_TIMEOUT, SP_E_PROTOCOL,
/// SP_E_CONNECTION_CLOSED, SP_E_IO, SP_E_MANAGER_CLOSED, SP_E_WRONG_THREAD (from inside a
/// callback of the library).
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_read(
    response: *mut sp_response,
    buf: *mut u8,
    cap: usize,
    out_n: *mut usize,
) -> sp_result {
    call(|| {
        let (dst, buf) = (try_out!(out_n), try_slice_mut!(buf, cap));
        if buf.is_empty() {
            return Err(FfiError::new(sp_result::SP_E_INVALID_ARGUMENT, "cap is 0"));
        }
        sp_response::with(response, |e| {
            write(dst, e.response.read(buf)?);
            Ok(())
        })
    })
}

/// Reads the body bytes that have already arrived, up to `cap` (> 0), without ever waiting:
/// what came with the head, then what the socket holds. *out_n receives the count (0 when
/// nothing has arrived yet), and *out_done 1 once the end of the body has been reached (then
/// the connection has gone back to the pool), else 0. A failure met after some bytes were
/// taken is returned by the next read, so the bytes that arrived before it are not lost. A
/// small body usually arrives with its head, so an event loop reads it here at once, in the
/// response callback or later, and starts sp_response_read_async only while *out_done is 0
/// and *out_n is 0. After an error the connection is closed.
///
/// Ownership: `buf` is borrowed for the call.
/// Blocking: never (also allowed inside callbacks, on any thread).
/// Errors: as sp_response_read(), except SP_E_READ_TIMEOUT and SP_E_WRONG_THREAD.
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_read_now(
    response: *mut sp_response,
    buf: *mut u8,
    cap: usize,
    out_n: *mut usize,
    out_done: *mut i32,
) -> sp_result {
    call(|| {
        let (dn, dd) = (try_out!(out_n), try_out!(out_done));
        let buf = try_slice_mut!(buf, cap);
        if buf.is_empty() {
            return Err(FfiError::new(sp_result::SP_E_INVALID_ARGUMENT, "cap is 0"));
        }
        sp_response::with(response, |e| {
            let n = e.response.read_now(buf)?.unwrap_or(0);
            write(dn, n);
            write(dd, i32::from(e.response.is_complete()));
            Ok(())
        })
    })
}

/// Reads the rest of the body into memory owned by the response: *out_data and *out_len
/// describe all body bytes not yet read with sp_response_read(). A second call returns the
/// same bytes again (nothing more remains to read).
///
/// Ownership: *out_data is borrowed until sp_response_free() (NULL-safe to ignore when
/// *out_len is 0).
/// Blocking: until the end of the body (each wait bounded by the read timeout).
/// Errors: as sp_response_read().
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_read_all(
    response: *mut sp_response,
    out_data: *mut *const u8,
    out_len: *mut usize,
) -> sp_result {
    call(|| {
        let (dd, dl) = (try_out!(out_data), try_out!(out_len));
        sp_response::with(response, |e| {
            let mut body = std::mem::take(&mut e.body);
            let result = e.response.read_to_end(&mut body);
            e.body = body;
            result?;
            write(dd, e.body.as_ptr());
            write(dl, e.body.len());
            Ok(())
        })
    })
}

/// Reads the id of the connection that served the response into *out_id (unique in the
/// process; equal ids mean a reused connection).
///
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_connection_id(
    response: *const sp_response,
    out_id: *mut u64,
) -> sp_result {
    call(|| get(response, try_out!(out_id), |e| e.response.connection_id))
}

/// Reads the client-side port of the connection that served the response (what the server
/// sees as the peer port) into *out_port.
///
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_local_port(
    response: *const sp_response,
    out_port: *mut i32,
) -> sp_result {
    call(|| {
        get(response, try_out!(out_port), |e| {
            e.response.local_port as i32
        })
    })
}

/// Reads 1 into *out_retried if the request was sent a second time, on a new connection,
/// after a reused one turned out stale (the server closed it as the request arrived), else 0.
///
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_retried(
    response: *const sp_response,
    out_retried: *mut i32,
) -> sp_result {
    call(|| {
        get(response, try_out!(out_retried), |e| {
            e.response.retried as i32
        })
    })
}

/// Reads 1 into *out_reused if the response came on a reused (kept-alive) connection, else 0.
///
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_response_connection_reused(
    response: *const sp_response,
    out_reused: *mut i32,
) -> sp_result {
    call(|| get(response, try_out!(out_reused), |e| e.response.reused as i32))
}

//! HTTP proxies in the C ABI: the manager's proxy, bypass list and environment opt-in, a
//! request's own proxy, and FindServicePoint(uri, proxy). The policy is `crate::proxy`'s.

use super::access::{Handle, copy_text, flag, get, set, text_buffer};
use super::boundary::{FfiError, FfiResult, call, try_out, try_str, write};
use super::handles::{self, Entry, PointEntry};
use super::manager::sp_manager;
use super::point::sp_point;
use super::request::sp_http_request;
use super::result::sp_result;
use crate::proxy::Override;
use std::ffi::{CString, c_char};
use std::sync::Arc;

/// A C string argument that may be NULL.
fn optional_text<'a>(p: *const c_char) -> Result<Option<&'a str>, FfiError> {
    if p.is_null() {
        return Ok(None);
    }
    Ok(Some(try_str!(p)))
}

/// Copies a text read through a handle out snprintf-style (as sp_http_request_get_url()).
fn copy_out<H: Handle>(
    handle: *const H,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
    text: impl FnOnce(&H::Object) -> Result<String, FfiError>,
) -> FfiResult {
    let dst = try_out!(out_len);
    // SAFETY: the header's contract: `buf` is NULL or `cap` writable bytes alive for the call.
    let buf = unsafe { text_buffer(buf, cap) }?;
    let text = H::with(handle, |o| text(o))?;
    write(dst, copy_text(&text, buf));
    Ok(())
}

/// Sets the manager-wide proxy (.NET's default web proxy): "http://[user[:password]@]host[:port]"
/// (the scheme may be left out; port 80 by default; user and password percent-encoded, sent
/// as Basic Proxy-Authorization). NULL or "" for direct connections (the default). Plain http
/// requests then go to the proxy in absolute form, pooled on the proxy's service point (one
/// for every origin behind it, with its connection limit); https requests go through a
/// CONNECT tunnel, one service point per (proxy, origin), with TLS to the origin (SNI and
/// certificate checked against the origin's name). Origins on the bypass list go direct
/// (loopback by default, see sp_manager_set_proxy_bypass()). Applies to requests sent from
/// now on; pooled connections of the old route stay until idle.
///
/// Ownership: copied. Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_INVALID_UTF8, SP_E_INVALID_URL (nothing changed),
/// SP_E_UNSUPPORTED_SCHEME (not an http:// proxy; nothing changed).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_proxy(manager: *mut sp_manager, url: *const c_char) -> sp_result {
    call(|| {
        let url = optional_text(url)?;
        set(manager, |m| m.set_proxy(url))
    })
}

/// Copies the manager's proxy URL, normalised ("http://user:password@host:port", credentials
/// as given), or "" when there is none, into `buf` as sp_http_request_get_url() does.
///
/// Ownership: `buf` is borrowed for the call. Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER (out_len, or buf with cap > 0),
/// SP_E_INVALID_ARGUMENT (cap above PTRDIFF_MAX).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_proxy(
    manager: *const sp_manager,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> sp_result {
    call(|| copy_out(manager, buf, cap, out_len, |m| Ok(m.proxy())))
}

/// Replaces the bypass list: origins that go direct whatever the proxy. Entries separated by
/// commas, semicolons or spaces: "*" (everything), "example.com" or ".example.com" (the
/// host and its subdomains), an IP address or CIDR block ("10.0.0.0/8", "::1"), each with an
/// optional ":port" ("[::1]:8080" for IPv6), and "<local>" (host names without a dot, .NET's
/// BypassProxyOnLocal). Matching is on the URL's host as written (no name lookup). The
/// default is "localhost, 127.0.0.0/8, ::1"; "" removes it (loopback then goes through the
/// proxy too). Applies to sp_manager_set_proxy(), a request's own proxy, and the
/// environment's (whose no_proxy also applies).
///
/// Ownership: copied. Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER, SP_E_INVALID_UTF8,
/// SP_E_INVALID_ARGUMENT (an entry that is none of these; nothing changed).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_proxy_bypass(
    manager: *mut sp_manager,
    list: *const c_char,
) -> sp_result {
    call(|| {
        let list = try_str!(list);
        set(manager, |m| m.set_proxy_bypass(list))
    })
}

/// Copies the bypass list (entries joined by ", ") into `buf` as sp_http_request_get_url()
/// does.
///
/// Ownership: `buf` is borrowed for the call. Thread safety: any thread.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER (out_len, or buf with cap > 0),
/// SP_E_INVALID_ARGUMENT (cap above PTRDIFF_MAX).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_proxy_bypass(
    manager: *const sp_manager,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> sp_result {
    call(|| copy_out(manager, buf, cap, out_len, |m| Ok(m.proxy_bypass())))
}

/// Opts in (1) or out (0, the default) of the conventional variables: http_proxy for http
/// URLs, https_proxy for https, all_proxy for either when unset, no_proxy as an extra bypass
/// list (lower case first, then upper case; HTTP_PROXY in upper case is ignored when
/// GATEWAY_INTERFACE is set, as in a CGI program). They are read when this is called with 1;
/// a proxy set with sp_manager_set_proxy() takes precedence.
///
/// Thread safety: any thread; reads the process's environment (do not change it
/// concurrently). Errors: SP_E_INVALID_HANDLE, SP_E_OUT_OF_RANGE (not 0 or 1),
/// SP_E_INVALID_URL, SP_E_UNSUPPORTED_SCHEME, SP_E_INVALID_ARGUMENT (a variable that does not
/// parse, named in sp_last_error(); nothing changed).
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_set_use_environment_proxy(
    manager: *mut sp_manager,
    on: i32,
) -> sp_result {
    call(|| {
        let on = flag(on, "use environment proxy")?;
        set(manager, |m| m.set_use_environment_proxy(on))
    })
}

/// Reads whether the environment's proxies are used (1 or 0) into *out_value.
///
/// Thread safety: any thread. Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn sp_manager_get_use_environment_proxy(
    manager: *const sp_manager,
    out_value: *mut i32,
) -> sp_result {
    call(|| {
        get(manager, try_out!(out_value), |m| {
            m.use_environment_proxy() as i32
        })
    })
}

/// FindServicePoint(uri, proxy): the service point a request for `uri` uses through `proxy`:
/// NULL for the manager's proxy settings, "" for a direct connection, else a proxy URL (as
/// sp_manager_set_proxy(); the bypass list applies). For plain http through a proxy it is the
/// proxy's service point (its address is the proxy's, shared by every origin behind it); for
/// https through a proxy, the tunnel's (the origin's address, one per proxy and origin).
/// sp_find() is FindServicePoint(uri): always the direct one.
///
/// Ownership: strings are borrowed. On SP_OK *out_point receives a new handle to free with
/// sp_point_free(). Thread safety: any thread.
/// Errors: as sp_find(), and SP_E_INVALID_URL, SP_E_UNSUPPORTED_SCHEME for the proxy.
#[unsafe(no_mangle)]
pub extern "C" fn sp_find_with_proxy(
    manager: *mut sp_manager,
    uri: *const c_char,
    proxy: *const c_char,
    out_point: *mut *mut sp_point,
) -> sp_result {
    call(|| {
        let (uri, dst) = (try_str!(uri), try_out!(out_point));
        let choice = Override::parse(optional_text(proxy)?)?;
        let point = sp_manager::with(manager, |m| Ok(m.find_with_proxy(uri, &choice)?))?;
        let address = CString::new(point.address()).unwrap_or_default();
        write(
            dst,
            handles::insert(Entry::Point(Arc::new(PointEntry { point, address }))),
        );
        Ok(())
    })
}

/// Sets the request's own proxy (HttpWebRequest.Proxy): NULL for the manager's settings (the
/// default), "" for a direct connection whatever the manager says, else a proxy URL as
/// sp_manager_set_proxy() takes (the manager's bypass list still applies).
///
/// Ownership: copied. Thread safety: see sp_http_request.
/// Errors: SP_E_INVALID_HANDLE, SP_E_INVALID_UTF8, SP_E_INVALID_URL,
/// SP_E_UNSUPPORTED_SCHEME (nothing changed).
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_set_proxy(
    request: *mut sp_http_request,
    url: *const c_char,
) -> sp_result {
    call(|| {
        let url = optional_text(url)?;
        set(request, |r| Arc::make_mut(r).set_proxy(url))
    })
}

/// Copies the request's own proxy into `buf` as sp_http_request_get_url() does: the proxy's
/// URL, or "" for direct. SP_E_NOT_FOUND when it has none of its own (the manager's settings
/// decide).
///
/// Ownership: `buf` is borrowed for the call. Thread safety: see sp_http_request.
/// Errors: SP_E_INVALID_HANDLE, SP_E_NULL_POINTER (out_len, or buf with cap > 0),
/// SP_E_INVALID_ARGUMENT (cap above PTRDIFF_MAX), SP_E_NOT_FOUND.
#[unsafe(no_mangle)]
pub extern "C" fn sp_http_request_get_proxy(
    request: *const sp_http_request,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> sp_result {
    call(|| {
        copy_out(request, buf, cap, out_len, |r| match &r.proxy {
            Override::Manager => Err(FfiError::new(
                sp_result::SP_E_NOT_FOUND,
                "the request has no proxy of its own (the manager's settings decide)",
            )),
            Override::Direct => Ok(String::new()),
            Override::Proxy(p) => Ok(p.url().to_string()),
        })
    })
}

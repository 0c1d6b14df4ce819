//! The C ABI called from Rust: handle safety, argument checks, error codes, and lints over
//! the FFI sources and the generated header.

mod support;

use servicepoint::ffi::manager::*;
use servicepoint::ffi::point::*;
use servicepoint::ffi::request::*;
use servicepoint::ffi::response::*;
use servicepoint::ffi::result::sp_result::{self, *};
use servicepoint::ffi::tls::*;
use servicepoint::ffi::version::*;
use std::ffi::{CStr, CString, c_char};
use std::ptr::{null, null_mut};
use support::{Reply, TestServer};

fn last_error() -> String {
    // SAFETY: sp_last_error returns a NUL-terminated thread-local string.
    unsafe { CStr::from_ptr(sp_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn new_manager() -> *mut sp_manager {
    let mut m = null_mut();
    assert_eq!(sp_manager_new(&mut m), SP_OK);
    m
}

#[test]
fn freed_foreign_and_wrong_kind_handles_are_rejected() {
    let m = new_manager();
    let mut p = null_mut();
    assert_eq!(sp_find(m, c("http://127.0.0.1:9/").as_ptr(), &mut p), SP_OK);
    // A manager handle where a service point is expected.
    assert_eq!(sp_set_lease_timeout(m.cast(), -1), SP_E_INVALID_HANDLE);
    assert!(
        last_error().contains("not a service point"),
        "{}",
        last_error()
    );
    // A made-up handle.
    assert_eq!(
        sp_set_lease_timeout(0x1234 as *mut sp_point, -1),
        SP_E_INVALID_HANDLE
    );
    // Freed point handle; double free and free of NULL are harmless.
    sp_point_free(p);
    assert_eq!(sp_set_lease_timeout(p, -1), SP_E_INVALID_HANDLE);
    sp_point_free(p);
    sp_point_free(null_mut());
    // Freeing with the wrong function does nothing.
    sp_point_free(m.cast());
    let mut limit = 0;
    assert_eq!(
        sp_manager_get_default_connection_limit(m, &mut limit),
        SP_OK
    );
    assert_eq!(limit, 2);
    sp_manager_free(m);
    sp_manager_free(m);
    assert_eq!(
        sp_manager_get_default_connection_limit(m, &mut limit),
        SP_E_INVALID_HANDLE
    );
}

#[test]
fn argument_errors_have_their_codes() {
    let m = new_manager();
    let mut p = null_mut();
    {
        assert_eq!(sp_find(m, null(), &mut p), SP_E_NULL_POINTER);
        assert_eq!(
            sp_find(m, c("http://h/").as_ptr(), null_mut()),
            SP_E_NULL_POINTER
        );
        let bad = [b'h', b't', 0xff, 0xfe, 0];
        assert_eq!(
            sp_find(m, bad.as_ptr() as *const c_char, &mut p),
            SP_E_INVALID_UTF8
        );
        assert_eq!(sp_find(m, c("::nope").as_ptr(), &mut p), SP_E_INVALID_URL);
        assert_eq!(
            sp_find(m, c("ftp://h/").as_ptr(), &mut p),
            SP_E_UNSUPPORTED_SCHEME
        );
        assert!(last_error().contains("ftp"));
        assert!(p.is_null(), "out-parameters are written only on success");
        assert_eq!(sp_manager_new(null_mut()), SP_E_NULL_POINTER);
    }
    // Settings are validated and left unchanged on error.
    let mut p = null_mut();
    assert_eq!(sp_find(m, c("http://h/").as_ptr(), &mut p), SP_OK);
    let mut v = 0;
    assert_eq!(sp_set_lease_timeout(p, 5000), SP_OK);
    assert_eq!(sp_set_lease_timeout(p, -2), SP_E_OUT_OF_RANGE);
    assert_eq!(sp_get_lease_timeout(p, &mut v), SP_OK);
    assert_eq!(v, 5000);
    assert_eq!(sp_set_connection_limit(p, 0), SP_E_OUT_OF_RANGE);
    assert_eq!(sp_manager_set_max_service_points(m, -1), SP_E_OUT_OF_RANGE);
    assert_eq!(
        sp_manager_set_default_connection_limit(m, 0),
        SP_E_OUT_OF_RANGE
    );
    assert_eq!(
        sp_manager_set_max_service_point_idle_time(m, -2),
        SP_E_OUT_OF_RANGE
    );
    assert_eq!(sp_manager_set_keep_alive_default(m, 2), SP_E_OUT_OF_RANGE);
    // After the manager is freed its point handles fail cleanly.
    sp_manager_free(m);
    assert_eq!(sp_get_lease_timeout(p, &mut v), SP_E_MANAGER_CLOSED);
    sp_point_free(p);
}

#[test]
fn request_and_response_through_the_abi() {
    let server = TestServer::start(|r| {
        Reply::with_headers(200, &[("X-Path", &r.path), ("X-Path", "again")], "body!")
    });
    let m = new_manager();
    let mut req = null_mut();
    let url = c(&server.url("/abc"));
    // SAFETY: valid C strings and out pointers throughout.
    unsafe {
        assert_eq!(
            sp_http_request_new(c("GET").as_ptr(), url.as_ptr(), &mut req),
            SP_OK
        );
        assert_eq!(
            sp_http_request_add_header(req, c("X-Test").as_ptr(), c("1").as_ptr()),
            SP_OK
        );
        assert_eq!(
            sp_http_request_add_header(req, c("Bad Name").as_ptr(), c("1").as_ptr()),
            SP_E_INVALID_ARGUMENT
        );
        let mut resp = null_mut();
        assert_eq!(sp_request(m, req, &mut resp), SP_OK);
        let mut status = 0;
        assert_eq!(sp_response_status(resp, &mut status), SP_OK);
        assert_eq!(status, 200);
        let mut value = null();
        assert_eq!(
            sp_response_header(resp, c("x-path").as_ptr(), &mut value),
            SP_OK
        );
        assert_eq!(CStr::from_ptr(value).to_str().unwrap(), "/abc");
        assert_eq!(
            sp_response_header(resp, c("missing").as_ptr(), &mut value),
            SP_E_NOT_FOUND
        );
        let mut count = 0usize;
        assert_eq!(sp_response_header_count(resp, &mut count), SP_OK);
        let (mut name, mut val) = (null(), null());
        assert_eq!(sp_response_header_at(resp, 1, &mut name, &mut val), SP_OK);
        assert_eq!(CStr::from_ptr(val).to_str().unwrap(), "again");
        assert_eq!(
            sp_response_header_at(resp, count, &mut name, &mut val),
            SP_E_OUT_OF_RANGE
        );
        let mut buf = [0u8; 3];
        let mut n = 0usize;
        assert_eq!(
            sp_response_read(resp, buf.as_mut_ptr(), buf.len(), &mut n),
            SP_OK
        );
        assert_eq!(&buf[..n], b"bod");
        let (mut data, mut len) = (null(), 0usize);
        assert_eq!(sp_response_read_all(resp, &mut data, &mut len), SP_OK);
        assert_eq!(std::slice::from_raw_parts(data, len), b"y!");
        sp_response_free(resp);
        sp_response_free(resp);
        assert_eq!(sp_response_status(resp, &mut status), SP_E_INVALID_HANDLE);
        // The request description is reusable.
        assert_eq!(sp_request(m, req, &mut resp), SP_OK);
        let mut reused = 0;
        assert_eq!(sp_response_connection_reused(resp, &mut reused), SP_OK);
        assert_eq!(reused, 1);
        sp_response_free(resp);
        sp_http_request_free(req);
        assert_eq!(sp_request(m, req, &mut resp), SP_E_INVALID_HANDLE);
    }
    assert_eq!(server.connection_count(), 1);
    assert_eq!(server.requests()[0].header("x-test"), Some("1"));
    sp_manager_free(m);
}

#[test]
fn strerror_covers_every_code_and_versions_match() {
    // Every code the header declares (SP_OK = 0, ...) has its own text.
    let header = source("include/servicepoint.h");
    let codes: Vec<i32> = header
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("SP_E_")
                .or(l.trim().strip_prefix("SP_OK"))
        })
        .filter_map(|l| l.split('=').nth(1))
        .map(|v| v.trim().trim_end_matches(',').parse().unwrap())
        .collect();
    assert!(codes.len() > 30, "{codes:?}");
    for code in codes {
        assert!(sp_result::try_from(code).is_ok(), "code {code}");
        // SAFETY: static NUL-terminated strings.
        let text = unsafe { CStr::from_ptr(sp_strerror(code)) }
            .to_str()
            .unwrap();
        assert_ne!(text, "unknown result code", "code {code}");
    }
    // SAFETY: as above.
    let text = unsafe { CStr::from_ptr(sp_strerror(9999)) }
        .to_str()
        .unwrap();
    assert_eq!(text, "unknown result code");
    // SAFETY: static string.
    let v = unsafe { CStr::from_ptr(sp_version()) }.to_str().unwrap();
    assert_eq!(v, concat!("servicepoint/", env!("CARGO_PKG_VERSION")));
    assert_eq!(sp_abi_version(), SP_ABI_VERSION);
    let _ = sp_result::SP_OK;
}

fn source(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Every exported function runs inside the panic boundary (`call` or `guard`).
#[test]
fn every_export_is_inside_the_panic_boundary() {
    let dir = format!("{}/src/ffi", env!("CARGO_MANIFEST_DIR"));
    let mut exports = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices("extern \"C\" fn ") {
            let body_start = text[i..].find('{').unwrap() + i;
            let first = text[body_start + 1..].trim_start();
            assert!(
                first.starts_with("call(") || first.starts_with("guard("),
                "{}: export at byte {i} does not start with call( or guard(",
                path.display()
            );
            exports += 1;
        }
    }
    assert!(exports > 40, "found only {exports} exports");
}

/// The committed header carries the crate's version and declares every export.
#[test]
fn header_matches_crate() {
    let header = source("include/servicepoint.h");
    assert!(header.contains(&format!(
        "#define SP_VERSION_MAJOR {}",
        env!("CARGO_PKG_VERSION_MAJOR")
    )));
    assert!(header.contains(&format!(
        "#define SP_VERSION_MINOR {}",
        env!("CARGO_PKG_VERSION_MINOR")
    )));
    assert!(header.contains(&format!(
        "#define SP_VERSION_PATCH {}",
        env!("CARGO_PKG_VERSION_PATCH")
    )));
    assert!(header.contains("extern \"C\""), "C++ guards");
    let dir = format!("{}/src/ffi", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for (i, _) in text.match_indices("extern \"C\" fn ") {
            let name: String = text[i + 14..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let declared =
                header.contains(&format!(" {name}(")) || header.contains(&format!("*{name}("));
            assert!(declared, "{name} missing from the header");
        }
    }
}

/// One request description sent by several threads at once: the sends overlap (the server
/// sees them in parallel) instead of queueing behind a lock on the description.
#[test]
fn one_request_description_is_sent_from_threads_concurrently() {
    let server = TestServer::start(|_| {
        Reply::Delay(
            std::time::Duration::from_millis(300),
            Box::new(Reply::ok("slow")),
        )
    });
    let m = new_manager();
    let url = c(&server.url("/slow"));
    let mut p = null_mut();
    assert_eq!(sp_find(m, url.as_ptr(), &mut p), SP_OK);
    assert_eq!(sp_set_connection_limit(p, 4), SP_OK);
    let mut req = null_mut();
    assert_eq!(
        sp_http_request_new(c("GET").as_ptr(), url.as_ptr(), &mut req),
        SP_OK
    );
    let (m_key, req_key) = (m as usize, req as usize);
    let start = std::time::Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut resp = null_mut();
                let rc = sp_request(
                    m_key as *mut sp_manager,
                    req_key as *mut sp_http_request,
                    &mut resp,
                );
                sp_response_free(resp);
                rc
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), SP_OK);
    }
    assert!(
        start.elapsed() < std::time::Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.max_simultaneous(), 4);
    sp_http_request_free(req);
    sp_point_free(p);
    sp_manager_free(m);
}

/// `const` only on functions that change nothing: setters, add/remove, reads (they advance
/// the body), sp_find, sp_request and sp_close_connection_group take a mutable handle;
/// getters a const one.
#[test]
fn const_only_on_functions_that_change_nothing() {
    let mut header = source("include/servicepoint.h");
    while let Some(start) = header.find("/*") {
        let end = header[start..].find("*/").unwrap() + start + 2;
        header.replace_range(start..end, " ");
    }
    let mut checked = 0;
    for decl in header.split(';') {
        let Some(open) = decl.find(" sp_").map(|i| i + 1) else {
            continue;
        };
        let Some(paren) = decl[open..].find('(').map(|i| i + open) else {
            continue;
        };
        let name = &decl[open..paren];
        if !name.chars().all(|c| c.is_alphanumeric() || c == '_') || decl.contains("typedef") {
            continue;
        }
        let first = decl[paren + 1..].split([',', ')']).next().unwrap_or("");
        if !first.contains("struct sp_") || first.contains("**") {
            continue;
        }
        let changes = ["_set_", "_add_", "_close_"]
            .iter()
            .any(|w| name.contains(w))
            || [
                "_free",
                "_read",
                "_read_all",
                "_read_now",
                "_read_async",
                "_read_async_queued",
                "_cancel",
                "_reset",
                "_run",
            ]
            .iter()
            .any(|w| name.ends_with(w))
            || name == "sp_find"
            || name.starts_with("sp_find_")
            || name.starts_with("sp_request");
        let pure = name.contains("_get_") || name.contains("_has_") || !changes;
        assert!(
            changes != pure,
            "{name}: neither clearly a getter nor a change"
        );
        assert_eq!(
            first.trim_start().starts_with("const "),
            pure,
            "{name}: first parameter {first:?}"
        );
        checked += 1;
    }
    assert!(checked > 60, "only {checked} functions checked");
}

/// The statistics are copied without uninitialised bytes: the padding after struct_size is
/// an explicit zero field, and the newest counter (pipeline_replays) is at the end.
#[test]
fn statistics_have_no_undefined_bytes() {
    assert_eq!(
        std::mem::size_of::<sp_statistics>(),
        std::mem::offset_of!(sp_statistics, pipeline_replays) + 8
    );
    assert_eq!(std::mem::offset_of!(sp_statistics, reserved), 4);
    let m = new_manager();
    let mut p = null_mut();
    assert_eq!(sp_find(m, c("http://127.0.0.1:9/").as_ptr(), &mut p), SP_OK);
    let mut raw = [0xA5u8; std::mem::size_of::<sp_statistics>() + 8];
    let size = std::mem::size_of::<sp_statistics>() as u32;
    raw[..4].copy_from_slice(&size.to_ne_bytes());
    assert_eq!(sp_get_statistics(p, raw.as_mut_ptr().cast()), SP_OK);
    assert_eq!(&raw[4..8], &[0, 0, 0, 0], "reserved is zeroed");
    assert!(
        raw[8..size as usize].iter().all(|&b| b == 0),
        "a new point counts 0"
    );
    assert!(
        raw[size as usize..].iter().all(|&b| b == 0xA5),
        "nothing past the struct"
    );
    // An older caller's smaller struct: only its bytes are written.
    let mut old = [0xA5u8; 24];
    old[..4].copy_from_slice(&20u32.to_ne_bytes());
    assert_eq!(sp_get_statistics(p, old.as_mut_ptr().cast()), SP_OK);
    assert_eq!(u32::from_ne_bytes(old[..4].try_into().unwrap()), 20);
    assert!(old[4..20].iter().all(|&b| b == 0));
    assert!(old[20..].iter().all(|&b| b == 0xA5));
    sp_point_free(p);
    sp_manager_free(m);
}

/// Every setter has a getter: the TLS options and the request description read back.
#[test]
fn getters_read_what_setters_set() {
    let m = new_manager();
    let mut v = -7;
    assert_eq!(sp_manager_get_system_roots(m, &mut v), SP_OK);
    assert_eq!(v, 1);
    assert_eq!(sp_manager_set_system_roots(m, 0), SP_OK);
    assert_eq!(sp_manager_get_system_roots(m, &mut v), SP_OK);
    assert_eq!(v, 0);
    assert_eq!(sp_manager_get_min_tls_version(m, &mut v), SP_OK);
    assert_eq!(v, SP_TLS_1_2);
    assert_eq!(sp_manager_set_min_tls_version(m, SP_TLS_1_3), SP_OK);
    assert_eq!(sp_manager_get_min_tls_version(m, &mut v), SP_OK);
    assert_eq!(v, SP_TLS_1_3);
    for f in [
        sp_manager_get_ca_count,
        sp_manager_has_client_certificate,
        sp_manager_has_certificate_validator,
    ] {
        assert_eq!(f(m, &mut v), SP_OK);
        assert_eq!(v, 0);
    }
    assert_eq!(sp_manager_set_max_service_point_idle_time(m, 5000), SP_OK);
    assert_eq!(sp_manager_get_max_service_point_idle_time(m, &mut v), SP_OK);
    assert_eq!(v, 5000);

    let mut req = null_mut();
    assert_eq!(
        sp_http_request_new(
            c("POST").as_ptr(),
            c("HTTP://Example.COM:80/a?b#frag").as_ptr(),
            &mut req
        ),
        SP_OK
    );
    let text =
        |f: extern "C" fn(*const sp_http_request, *mut c_char, usize, *mut usize) -> sp_result| {
            let mut len = 0;
            assert_eq!(f(req, std::ptr::null_mut(), 0, &mut len), SP_OK);
            let mut buf = vec![0 as c_char; len + 1];
            assert_eq!(f(req, buf.as_mut_ptr(), buf.len(), &mut len), SP_OK);
            // SAFETY: NUL-terminated by the call.
            unsafe { CStr::from_ptr(buf.as_ptr()) }
                .to_str()
                .unwrap()
                .to_string()
        };
    assert_eq!(text(sp_http_request_get_method), "POST");
    assert_eq!(text(sp_http_request_get_url), "http://example.com/a?b");
    assert_eq!(text(sp_http_request_get_connection_group), "");
    // Too small a buffer: cut, NUL-terminated, the full length reported.
    let (mut buf, mut len) = ([0x55 as c_char; 5], 0);
    assert_eq!(
        sp_http_request_get_url(req, buf.as_mut_ptr(), 5, &mut len),
        SP_OK
    );
    assert_eq!(len, "http://example.com/a?b".len());
    assert_eq!(buf, [b'h', b't', b't', b'p', 0].map(|b| b as c_char));
    assert_eq!(
        sp_http_request_get_url(req, std::ptr::null_mut(), 5, &mut len),
        SP_E_NULL_POINTER
    );

    let int = |f: extern "C" fn(*const sp_http_request, *mut i32) -> sp_result| {
        let mut v = -7;
        assert_eq!(f(req, &mut v), SP_OK);
        v
    };
    assert_eq!(int(sp_http_request_get_keep_alive), -1);
    assert_eq!(int(sp_http_request_get_timeout), 100_000);
    assert_eq!(int(sp_http_request_get_read_timeout), 300_000);
    assert_eq!(int(sp_http_request_get_retryable), 0);
    assert_eq!(sp_http_request_set_keep_alive(req, 0), SP_OK);
    assert_eq!(sp_http_request_set_timeout(req, -1), SP_OK);
    assert_eq!(sp_http_request_set_read_timeout(req, 250), SP_OK);
    assert_eq!(sp_http_request_set_retryable(req, 1), SP_OK);
    assert_eq!(
        sp_http_request_set_connection_group(req, c("g1").as_ptr()),
        SP_OK
    );
    assert_eq!(int(sp_http_request_get_keep_alive), 0);
    assert_eq!(int(sp_http_request_get_timeout), -1);
    assert_eq!(int(sp_http_request_get_read_timeout), 250);
    assert_eq!(int(sp_http_request_get_retryable), 1);
    assert_eq!(text(sp_http_request_get_connection_group), "g1");
    assert_eq!(sp_http_request_set_keep_alive(req, -1), SP_OK);
    assert_eq!(int(sp_http_request_get_keep_alive), -1);
    assert_eq!(sp_http_request_set_keep_alive(req, 2), SP_E_OUT_OF_RANGE);
    sp_http_request_free(req);
    assert_eq!(
        sp_http_request_get_timeout(req, &mut v),
        SP_E_INVALID_HANDLE
    );
    sp_manager_free(m);
}

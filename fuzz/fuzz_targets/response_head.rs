//! The response head parser (`http1::head::read_head`) over a server byte stream, then the
//! decisions taken from the head (framing, keep-alive hint, close rule).
#![no_main]

use libfuzzer_sys::fuzz_target;
use servicepoint::ErrorKind;
use servicepoint::http1::body::{Framing, framing};
use servicepoint::http1::head::read_head;
use servicepoint::http1::{MAX_HEADERS, is_token};
use servicepoint_fuzz::{READ_DEADLINE, connection_serving};
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let mut conn = connection_serving(data);
    let mut received_any = false;
    let deadline = Some(Instant::now() + READ_DEADLINE);
    match read_head(&mut conn, deadline, &mut received_any) {
        Ok(head) => {
            assert!(received_any);
            assert!(!(100..200).contains(&head.status), "1xx returned as final");
            assert!(head.minor_version <= 1);
            assert!(head.headers.len() <= MAX_HEADERS);
            for (name, value) in head.headers.iter() {
                assert!(is_token(name), "header name {name:?}");
                assert!(
                    !value.iter().any(|&b| b == b'\r' || b == b'\n'),
                    "CR/LF in a header value"
                );
            }
            // What follows the head is still on the connection, untouched.
            let mut rest = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = conn.read_direct(&mut buf, deadline).expect("read the rest");
                if n == 0 {
                    break;
                }
                rest.extend_from_slice(&buf[..n]);
            }
            assert!(rest.len() < data.len());
            assert!(data.ends_with(&rest), "bytes after the head were altered");
            // The decisions made from a head never panic, and are consistent.
            let _ = head.keep_alive_hint();
            let _ = servicepoint::reuse::close_after_response(&head.reuse_facts(false));
            assert_eq!(framing("HEAD", &head).unwrap(), Framing::Empty);
            if let Ok(Framing::Length(n)) = framing("GET", &head) {
                assert!(n > 0);
            }
        }
        Err(e) => {
            assert_eq!(received_any, !data.is_empty());
            assert!(
                matches!(e.kind, ErrorKind::Protocol | ErrorKind::ConnectionClosed),
                "unexpected error kind {:?}: {}",
                e.kind,
                e.message
            );
        }
    }
});

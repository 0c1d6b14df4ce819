//! The chunked body decoder (`http1::body::BodyDecoder` with `Framing::Chunked`), read in
//! pieces of a fuzzed size, against a small reference decoder.
//!
//! The reference follows RFC 9112 section 7.1 (chunk-size = 1*HEXDIG) with the leniencies the
//! library chose on purpose: a bare LF ends a line, whitespace after the size is ignored (none before it: RFC 9112),
//! chunk extensions are skipped unparsed, trailer values are trimmed. When the library changes
//! one of those on purpose, change the reference with it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use servicepoint::http1::body::{BodyDecoder, Framing};
use servicepoint::http1::{MAX_HEAD_BYTES, MAX_HEADERS, is_token};
use servicepoint_fuzz::{READ_DEADLINE, connection_serving};
use std::time::Instant;

/// Longest chunk line whose outcome does not depend on how the bytes arrive (the library
/// checks its 4096-byte line limit against what is buffered, which depends on read sizes).
const SURE_LINE: usize = 4000;

#[derive(Debug, PartialEq)]
enum Reference {
    /// Body bytes and trailers (name, trimmed value).
    Ok(Vec<u8>, Vec<(String, Vec<u8>)>),
    Err,
    /// A line near the length limit: either outcome is acceptable.
    Unsure,
}

fn reference(mut data: &[u8]) -> Reference {
    fn line<'a>(data: &mut &'a [u8], max: usize) -> Result<&'a [u8], Reference> {
        let Some(pos) = data.iter().position(|&b| b == b'\n') else {
            return Err(if data.len() >= SURE_LINE.min(max) {
                Reference::Unsure
            } else {
                Reference::Err
            });
        };
        if pos >= SURE_LINE.min(max) {
            return Err(Reference::Unsure);
        }
        let mut l = &data[..pos];
        *data = &data[pos + 1..];
        if l.last() == Some(&b'\r') {
            l = &l[..l.len() - 1];
        }
        Ok(l)
    }
    let mut body = Vec::new();
    let mut trailers = Vec::new();
    let mut trailer_bytes = 0usize;
    loop {
        let l = match line(&mut data, 4096) {
            Ok(l) => l,
            Err(r) => return r,
        };
        let size = l.split(|&b| b == b';').next().unwrap().trim_ascii_end();
        if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
            return Reference::Err;
        }
        let size = u64::from_str_radix(std::str::from_utf8(size).unwrap(), 16).unwrap();
        if size == 0 {
            break;
        }
        if (data.len() as u64) < size {
            return Reference::Err;
        }
        body.extend_from_slice(&data[..size as usize]);
        data = &data[size as usize..];
        match line(&mut data, 4096) {
            Ok([]) => {}
            Ok(_) => return Reference::Err,
            Err(r) => return r,
        }
    }
    loop {
        let l = match line(&mut data, MAX_HEAD_BYTES) {
            Ok(l) => l,
            Err(r) => return r,
        };
        if l.is_empty() {
            return Reference::Ok(body, trailers);
        }
        trailer_bytes += l.len() + 2;
        if trailer_bytes > MAX_HEAD_BYTES || trailers.len() >= MAX_HEADERS {
            return Reference::Err;
        }
        let Some(colon) = l.iter().position(|&b| b == b':') else {
            return Reference::Err;
        };
        let Some(name) = std::str::from_utf8(&l[..colon])
            .ok()
            .filter(|n| is_token(n))
        else {
            return Reference::Err;
        };
        trailers.push((name.to_string(), l[colon + 1..].trim_ascii().to_vec()));
    }
}

fuzz_target!(|input: &[u8]| {
    // First byte: the size of the caller's read buffer (small ones exercise the buffered
    // path, large ones the direct-read path).
    let Some((&sel, data)) = input.split_first() else {
        return;
    };
    let piece = match sel % 4 {
        0 => 1 + (sel as usize >> 2),
        1 => 4096,
        2 => 4097 + (sel as usize) * 64,
        _ => 64 * 1024,
    };
    let mut conn = connection_serving(data);
    let mut decoder = BodyDecoder::new(Framing::Chunked);
    let mut body = Vec::new();
    let mut buf = vec![0u8; piece];
    let outcome = loop {
        let deadline = Some(Instant::now() + READ_DEADLINE);
        match decoder.read(&mut conn, &mut buf, deadline) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                assert!(n <= piece);
                body.extend_from_slice(&buf[..n]);
            }
            Err(e) => break Err(e),
        }
    };
    if outcome.is_ok() {
        assert!(decoder.is_done());
        assert_eq!(decoder.known_remaining(), Some(0));
    }
    let got = match &outcome {
        Ok(()) => Reference::Ok(
            body,
            decoder
                .trailers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_vec()))
                .collect(),
        ),
        Err(e) => {
            assert!(
                !matches!(
                    e.kind,
                    servicepoint::ErrorKind::ReadTimeout | servicepoint::ErrorKind::Io
                ),
                "a read on loopback failed: {e:?}"
            );
            Reference::Err
        }
    };
    let want = reference(data);
    if want != Reference::Unsure {
        assert_eq!(
            got,
            want,
            "decoder and reference disagree (error: {:?})",
            outcome.err()
        );
    }
});

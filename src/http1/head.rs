//! Response head parsing with httparse, with the size and count limits of `http1`.

use super::{Fields, MAX_HEAD_BYTES, MAX_HEADERS, has_token};
use crate::connection::{Connection, KeepAliveHint};
use crate::error::{Error, ErrorKind, Result};
use crate::reuse::{MAX_SERVER_IDLE, ResponseFacts};
use std::time::{Duration, Instant};

/// Status line and header fields of a response, in wire order (repeated fields kept).
#[derive(Clone, Debug)]
pub struct ResponseHead {
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub status: u16,
    pub reason: String,
    pub headers: Fields,
}

impl ResponseHead {
    /// First value of a header field, by case-insensitive name.
    pub fn get<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        self.headers.get(name)
    }

    /// Every value of a header field, in wire order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.all(name)
    }

    /// What the reuse rules need from this head (`reuse::close_after_response` decides).
    pub fn reuse_facts(&self, close_delimited: bool) -> ResponseFacts {
        let mut facts = ResponseFacts {
            http10: self.minor_version == 0,
            connection_close: false,
            connection_keep_alive: false,
            transfer_encoding: false,
            close_delimited,
            hint: KeepAliveHint::default(),
        };
        // One pass over the fields; the Keep-Alive parameters only when the field is there.
        let mut keep_alive_field = false;
        for (name, value) in self.headers.iter() {
            if name.eq_ignore_ascii_case("connection") {
                facts.connection_close |= has_token(value, "close");
                facts.connection_keep_alive |= has_token(value, "keep-alive");
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                facts.transfer_encoding = true;
            } else if name.eq_ignore_ascii_case("keep-alive") {
                keep_alive_field = true;
            }
        }
        if keep_alive_field {
            facts.hint = self.keep_alive_hint();
        }
        facts
    }

    /// The server's `Keep-Alive: timeout=N, max=M` parameters, where present and valid (plain
    /// decimal digits; a sign, a space inside or a value that overflows is ignored). Timeouts
    /// are clamped to a day.
    pub fn keep_alive_hint(&self) -> KeepAliveHint {
        let mut hint = KeepAliveHint::default();
        for value in self.all("keep-alive") {
            for param in value.split(|&b| b == b',') {
                let Some(eq) = param.iter().position(|&b| b == b'=') else {
                    continue;
                };
                let key = param[..eq].trim_ascii();
                let mut val = param[eq + 1..].trim_ascii();
                if val.len() >= 2 && val.starts_with(b"\"") && val.ends_with(b"\"") {
                    val = &val[1..val.len() - 1];
                }
                if key.eq_ignore_ascii_case(b"timeout") {
                    if let Some(secs) = parse_decimal(val) {
                        let cap = MAX_SERVER_IDLE.as_secs();
                        hint.timeout = Some(Duration::from_secs(secs.min(cap)));
                    }
                } else if key.eq_ignore_ascii_case(b"max") {
                    hint.max = parse_decimal(val).map(|m| m.min(u32::MAX as u64) as u32);
                }
            }
        }
        hint
    }
}

/// A non-negative decimal number: digits only (no sign, no spaces), saturating at `u64::MAX`
/// (an absurd value means "long", not an error).
pub fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Skips interim (1xx) responses that arrived while the request was still being sent. Returns
/// true when only interim responses (or nothing) were there, so sending goes on; false when a
/// final response has begun or the server closed.
pub fn skip_interim(conn: &mut Connection) -> std::io::Result<bool> {
    if conn.fill_now(MAX_HEAD_BYTES)? == Some(0) {
        return Ok(false);
    }
    loop {
        if conn.buffered().is_empty() {
            return Ok(true);
        }
        match parse(conn.buffered()) {
            Ok(Some((head, used))) if (100..200).contains(&head.status) && head.status != 101 => {
                conn.consume(used);
            }
            Ok(None) => return Ok(true),
            _ => return Ok(false),
        }
    }
}

/// Reads the final response head from `conn`, skipping 1xx interim responses.
/// `received_any` is set as soon as a response byte arrives: a failure before that is the
/// signature of a stale keep-alive connection.
pub fn read_head(
    conn: &mut Connection,
    deadline: Option<Instant>,
    received_any: &mut bool,
) -> Result<ResponseHead> {
    let mut first_wait = true;
    loop {
        if let Some(head) = parse_buffered(conn)? {
            *received_any = true;
            if (100..200).contains(&head.status) {
                if head.status == 101 {
                    return Err(Error::new(
                        ErrorKind::Protocol,
                        "server switched protocols (101), which HTTP/1.1 requests here do not ask for",
                    ));
                }
                continue;
            }
            return Ok(head);
        }
        if conn.buffered().len() >= MAX_HEAD_BYTES {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("response head larger than {MAX_HEAD_BYTES} bytes"),
            ));
        }
        let n = conn
            .fill(MAX_HEAD_BYTES, deadline, first_wait)
            .map_err(|e| Error::from_io(&e, "reading response head", ErrorKind::ResponseTimeout))?;
        first_wait = false;
        if n == 0 {
            let what = if *received_any {
                "connection closed in the middle of the response head"
            } else {
                "connection closed before any response byte"
            };
            return Err(Error::new(ErrorKind::ConnectionClosed, what));
        }
        *received_any = true;
    }
}

/// Parses a complete head from the buffer and consumes it, or returns None if more bytes are
/// needed.
fn parse_buffered(conn: &mut Connection) -> Result<Option<ResponseHead>> {
    if conn.buffered().is_empty() {
        return Ok(None);
    }
    Ok(parse(conn.buffered())?.map(|(head, used)| {
        conn.consume(used);
        head
    }))
}

/// Parses a response head at the start of `bytes`: the head and its length, or None if it is
/// not complete yet.
pub fn parse(bytes: &[u8]) -> Result<Option<(ResponseHead, usize)>> {
    // Uninitialised: clearing 100 fields (3.2 KiB) per response would cost more than parsing.
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let used = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        bytes,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if bytes.len() >= MAX_HEAD_BYTES {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("response head larger than {MAX_HEAD_BYTES} bytes"),
                ));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("response has more than {MAX_HEADERS} header fields"),
            ));
        }
        Err(e) => {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("malformed response head: {e}"),
            ));
        }
    };
    if used > MAX_HEAD_BYTES {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!("response head larger than {MAX_HEAD_BYTES} bytes"),
        ));
    }
    let head = ResponseHead {
        minor_version: parsed.version.unwrap_or(1),
        status: parsed.code.unwrap_or(0),
        reason: parsed.reason.unwrap_or("").to_string(),
        headers: {
            let mut fields = Fields::with_capacity(parsed.headers.len(), used);
            for h in parsed.headers.iter() {
                fields.push(h.name, h.value);
            }
            fields
        },
    };
    Ok(Some((head, used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(minor: u8, headers: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            minor_version: minor,
            status: 200,
            reason: "OK".into(),
            headers: Fields::from_pairs(headers),
        }
    }

    #[test]
    fn reuse_facts_come_from_the_fields() {
        let f = head(
            0,
            &[
                ("Connection", "Keep-Alive, x"),
                ("Transfer-Encoding", "chunked"),
            ],
        )
        .reuse_facts(false);
        assert!(f.http10 && f.connection_keep_alive && f.transfer_encoding && !f.connection_close);
        let f = head(1, &[("connection", "close"), ("Keep-Alive", "timeout=5")]).reuse_facts(true);
        assert!(f.connection_close && f.close_delimited && !f.http10);
        assert_eq!(f.hint.timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn keep_alive_hint_parsing() {
        let h = head(1, &[("Keep-Alive", "timeout=5, max=100")]).keep_alive_hint();
        assert_eq!(h.timeout, Some(Duration::from_secs(5)));
        assert_eq!(h.max, Some(100));
        assert_eq!(
            head(1, &[("Keep-Alive", "x")]).keep_alive_hint(),
            KeepAliveHint::default()
        );
    }
}

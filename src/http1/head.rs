//! Response head parsing with httparse, with the size and count limits of `http1`.

use super::{Header, MAX_HEAD_BYTES, MAX_HEADERS, has_token};
use crate::connection::{Connection, KeepAliveHint};
use crate::error::{Error, ErrorKind, Result};
use std::time::{Duration, Instant};

/// Status line and header fields of a response, in wire order (repeated fields kept).
#[derive(Clone, Debug)]
pub struct ResponseHead {
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<Header>,
}

impl ResponseHead {
    /// First value of a header field, by case-insensitive name.
    pub fn get<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        self.all(name).next()
    }

    /// Every value of a header field, in wire order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// True when the server does not want the connection reused: `Connection: close`, or
    /// HTTP/1.0 without `Connection: keep-alive`.
    pub fn server_closes(&self) -> bool {
        let close = self.all("connection").any(|v| has_token(v, "close"));
        let keep = self.all("connection").any(|v| has_token(v, "keep-alive"));
        close || (self.minor_version == 0 && !keep)
    }

    /// The server's `Keep-Alive: timeout=N, max=M` parameters, where present and valid.
    pub fn keep_alive_hint(&self) -> KeepAliveHint {
        let mut hint = KeepAliveHint::default();
        for value in self.all("keep-alive") {
            for param in value.split(|&b| b == b',') {
                let text = String::from_utf8_lossy(param);
                let Some((key, val)) = text.split_once('=') else {
                    continue;
                };
                let val = val.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "timeout" => {
                        if let Ok(secs) = val.parse::<u64>() {
                            hint.timeout = Some(Duration::from_secs(secs));
                        }
                    }
                    "max" => hint.max = val.parse::<u32>().ok(),
                    _ => {}
                }
            }
        }
        hint
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
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut fields);
    let used = match parsed.parse(conn.buffered()) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
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
    let head = ResponseHead {
        minor_version: parsed.version.unwrap_or(1),
        status: parsed.code.unwrap_or(0),
        reason: parsed.reason.unwrap_or("").to_string(),
        headers: parsed
            .headers
            .iter()
            .map(|h| Header {
                name: h.name.to_string(),
                value: h.value.to_vec(),
            })
            .collect(),
    };
    conn.consume(used);
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(minor: u8, headers: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            minor_version: minor,
            status: 200,
            reason: "OK".into(),
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.to_string(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn close_rules() {
        assert!(!head(1, &[]).server_closes());
        assert!(head(1, &[("Connection", "Close")]).server_closes());
        assert!(head(0, &[]).server_closes());
        assert!(!head(0, &[("connection", "keep-alive")]).server_closes());
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

//! Response body framing (RFC 9112 section 6.3) and decoding: Content-Length, chunked with
//! trailers, close-delimited, or none.

use super::head::ResponseHead;
use super::{Fields, MAX_HEAD_BYTES, MAX_HEADERS};
use crate::connection::Connection;
use crate::error::{Error, ErrorKind, Result};
use std::time::Instant;

/// Longest chunk-size line accepted (size plus extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// Below this, body bytes go through the connection buffer (fewer, larger `recv`s); above it
/// they are read straight into the caller's buffer.
const DIRECT_READ_MIN: usize = 4096;

/// How the end of the response body is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection (never reusable).
    Close,
}

/// Decides the framing of a response to a request with `method`.
pub fn framing(method: &str, head: &ResponseHead) -> Result<Framing> {
    if method == "HEAD" || head.status == 204 || head.status == 304 || head.status < 200 {
        return Ok(Framing::Empty);
    }
    if let Some(te) = head.all("transfer-encoding").last() {
        let last = te.rsplit(|&b| b == b',').next().unwrap_or(b"").trim_ascii();
        return Ok(if last.eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    let mut length: Option<u64> = None;
    for value in head.all("content-length") {
        for part in value.split(|&b| b == b',') {
            let n = std::str::from_utf8(part.trim_ascii())
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Protocol,
                        format!(
                            "invalid Content-Length '{}'",
                            String::from_utf8_lossy(value)
                        ),
                    )
                })?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    "conflicting Content-Length values",
                ));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    Close,
    Done,
}

/// Incremental body decoder; reads from a connection into caller buffers.
#[derive(Debug)]
pub struct BodyDecoder {
    state: State,
    pub trailers: Fields,
    trailer_bytes: usize,
    received: u64,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Close => State::Close,
        };
        BodyDecoder {
            state,
            trailers: Fields::default(),
            trailer_bytes: 0,
            received: 0,
        }
    }

    /// True once the whole body (and any trailers) has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Body bytes still to come when the framing says so (Content-Length).
    pub fn known_remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// Reads body bytes into `out`; returns 0 only at the end of the body.
    pub fn read(
        &mut self,
        conn: &mut Connection,
        out: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Length(left) => {
                    let n = self.read_data(conn, out, left, deadline)?;
                    if n == 0 {
                        return Err(Error::new(
                            ErrorKind::ConnectionClosed,
                            format!(
                                "connection closed after {} body bytes, {left} more announced",
                                self.received
                            ),
                        ));
                    }
                    self.state = if left == n as u64 {
                        State::Done
                    } else {
                        State::Length(left - n as u64)
                    };
                    return Ok(n);
                }
                State::Close => {
                    let n = self.read_data(conn, out, u64::MAX, deadline)?;
                    if n == 0 {
                        self.state = State::Done;
                    }
                    return Ok(n);
                }
                State::ChunkSize => {
                    let line = take_line(conn, deadline, MAX_CHUNK_LINE)?;
                    let size = parse_chunk_size(&line)?;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkData(left) => {
                    let n = self.read_data(conn, out, left, deadline)?;
                    if n == 0 {
                        return Err(Error::new(
                            ErrorKind::ConnectionClosed,
                            "connection closed inside a chunk",
                        ));
                    }
                    self.state = if left == n as u64 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(left - n as u64)
                    };
                    return Ok(n);
                }
                State::ChunkEnd => {
                    let line = take_line(conn, deadline, MAX_CHUNK_LINE)?;
                    if !line.is_empty() {
                        return Err(Error::new(
                            ErrorKind::Protocol,
                            "chunk data not followed by CRLF",
                        ));
                    }
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    let line = take_line(conn, deadline, MAX_HEAD_BYTES)?;
                    if line.is_empty() {
                        self.state = State::Done;
                        continue;
                    }
                    self.add_trailer(&line)?;
                }
            }
        }
    }

    fn add_trailer(&mut self, line: &[u8]) -> Result<()> {
        self.trailer_bytes += line.len() + 2;
        if self.trailer_bytes > MAX_HEAD_BYTES || self.trailers.len() >= MAX_HEADERS {
            return Err(Error::new(ErrorKind::Protocol, "trailer section too large"));
        }
        let colon = line.iter().position(|&b| b == b':');
        let name = colon
            .and_then(|i| std::str::from_utf8(&line[..i]).ok())
            .filter(|n| super::is_token(n))
            .ok_or_else(|| Error::new(ErrorKind::Protocol, "malformed trailer field"))?;
        let value = line[colon.unwrap_or(0) + 1..].trim_ascii();
        self.trailers.push(name, value);
        Ok(())
    }

    /// Reads up to `limit` body bytes: buffered ones first, then from the socket, directly into
    /// `out` when it is large enough to be worth skipping the connection buffer.
    fn read_data(
        &mut self,
        conn: &mut Connection,
        out: &mut [u8],
        limit: u64,
        deadline: Option<Instant>,
    ) -> Result<usize> {
        let want = out.len().min(usize::try_from(limit).unwrap_or(usize::MAX));
        let io_err = |e: std::io::Error| Error::from_io(&e, "reading body", ErrorKind::ReadTimeout);
        let n = if conn.buffered().is_empty() && want < DIRECT_READ_MIN {
            if conn.fill(0, deadline, false).map_err(io_err)? == 0 {
                return Ok(0);
            }
            let n = want.min(conn.buffered().len());
            out[..n].copy_from_slice(&conn.buffered()[..n]);
            conn.consume(n);
            n
        } else {
            conn.read_direct(&mut out[..want], deadline)
                .map_err(io_err)?
        };
        self.received += n as u64;
        Ok(n)
    }
}

/// Consumes and returns one line (without CR LF) from the connection.
fn take_line(conn: &mut Connection, deadline: Option<Instant>, max: usize) -> Result<Vec<u8>> {
    loop {
        if let Some(pos) = conn.buffered().iter().position(|&b| b == b'\n') {
            if pos > max {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    "line too long in chunked body",
                ));
            }
            let mut line = conn.buffered()[..pos].to_vec();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            conn.consume(pos + 1);
            return Ok(line);
        }
        if conn.buffered().len() >= max {
            return Err(Error::new(
                ErrorKind::Protocol,
                "line too long in chunked body",
            ));
        }
        let n = conn
            .fill(max + 2, deadline, false)
            .map_err(|e| Error::from_io(&e, "reading chunked body", ErrorKind::ReadTimeout))?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::ConnectionClosed,
                "connection closed inside a chunked body",
            ));
        }
    }
}

/// A chunk-size line: `1*HEXDIG` (at most 16 digits: a u64), then optional whitespace and
/// chunk extensions after `;`. No sign, no leading space.
fn parse_chunk_size(line: &[u8]) -> Result<u64> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or(b"")
        .trim_ascii_end();
    let valid =
        !digits.is_empty() && digits.len() <= 16 && digits.iter().all(u8::is_ascii_hexdigit);
    std::str::from_utf8(digits)
        .ok()
        .filter(|_| valid)
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Protocol,
                format!("invalid chunk size '{}'", String::from_utf8_lossy(line)),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)], status: u16) -> ResponseHead {
        ResponseHead {
            minor_version: 1,
            status,
            reason: String::new(),
            headers: Fields::from_pairs(headers),
        }
    }

    #[test]
    fn framing_rules() {
        assert_eq!(
            framing("GET", &head(&[("Content-Length", "5")], 200)).unwrap(),
            Framing::Length(5)
        );
        assert_eq!(
            framing("HEAD", &head(&[("Content-Length", "5")], 200)).unwrap(),
            Framing::Empty
        );
        assert_eq!(framing("GET", &head(&[], 204)).unwrap(), Framing::Empty);
        assert_eq!(framing("GET", &head(&[], 304)).unwrap(), Framing::Empty);
        assert_eq!(framing("GET", &head(&[], 200)).unwrap(), Framing::Close);
        let te = head(
            &[
                ("Transfer-Encoding", "gzip, chunked"),
                ("Content-Length", "3"),
            ],
            200,
        );
        assert_eq!(framing("GET", &te).unwrap(), Framing::Chunked);
        assert_eq!(
            framing("GET", &head(&[("Transfer-Encoding", "gzip")], 200)).unwrap(),
            Framing::Close
        );
        assert!(
            framing(
                "GET",
                &head(&[("Content-Length", "5"), ("Content-Length", "6")], 200)
            )
            .is_err()
        );
        assert!(framing("GET", &head(&[("Content-Length", "-1")], 200)).is_err());
        assert_eq!(
            framing("GET", &head(&[("Content-Length", "7, 7")], 200)).unwrap(),
            Framing::Length(7)
        );
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a;ext=1").unwrap(), 26);
        assert!(parse_chunk_size(b"zz").is_err());
        assert!(parse_chunk_size(b"").is_err());
        assert!(parse_chunk_size(b"11111111111111111").is_err());
        for bad in [&b"+5"[..], b"-1", b" 5", b"0x5", b"5 5", b"\t5"] {
            assert!(
                parse_chunk_size(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse_chunk_size(b"5 ;ext").unwrap(), 5);
        assert_eq!(parse_chunk_size(b"ffffffffffffffff").unwrap(), u64::MAX);
    }
}

//! The TLS side of a connection: the handshake over the non-blocking socket, and moving
//! records between rustls and the socket with the caller's deadline.

use super::Connection;
use super::io::{NoSignalWriter, Ready, check_deadline, wait, wait_fd};
use crate::error::{Error, ErrorKind, Result};
use crate::origin::Origin;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

impl Connection {
    /// Starts a TLS session (SNI from the origin's host, ALPN from the config); the handshake
    /// runs in `continue_handshake`.
    pub fn start_tls(&mut self, origin: &Origin, config: Arc<ClientConfig>) -> Result<()> {
        let host = origin.connect_host().to_string();
        let name = ServerName::try_from(host.clone()).map_err(|e| {
            Error::new(
                ErrorKind::InvalidUrl,
                format!("'{host}' is not a valid TLS server name: {e}"),
            )
        })?;
        let tls = ClientConnection::new(config, name)
            .map_err(|e| crate::tls::map_error(&e, &origin.to_string()))?;
        self.tls = Some(Box::new(tls));
        Ok(())
    }

    /// Runs the handshake started by `start_tls` to its end (a step: it can run again after
    /// `WouldBlock`).
    pub fn continue_handshake(&mut self, origin: &Origin, deadline: Option<Instant>) -> Result<()> {
        let fd = self.stream.as_raw_fd();
        let io = |e: io::Error| match e.kind() {
            io::ErrorKind::TimedOut => Error::new(
                ErrorKind::ConnectTimeout,
                format!("TLS handshake with {origin} timed out"),
            ),
            _ => Error::from_io(
                &e,
                &format!("TLS handshake with {origin}"),
                ErrorKind::ConnectTimeout,
            ),
        };
        let Some(tls) = self.tls.as_mut() else {
            return Err(Error::new(ErrorKind::TlsHandshake, "no TLS session"));
        };
        while tls.is_handshaking() {
            check_deadline(deadline).map_err(io)?;
            if tls.wants_write() {
                let mut writer = NoSignalWriter::new(&self.stream, &mut self.bytes_sent);
                match tls.write_tls(&mut writer) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        wait_fd(fd, libc::POLLOUT, deadline).map_err(io)?
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io(e)),
                }
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = match (&*self.stream).read(&mut chunk) {
                Ok(0) => {
                    return Err(Error::new(
                        ErrorKind::TlsHandshake,
                        format!(
                            "TLS with {origin}: the server closed the connection during the handshake"
                        ),
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_fd(fd, libc::POLLIN, deadline).map_err(io)?;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(e)),
            };
            if !self.handshake_read && chunk[..n].starts_with(b"HTTP/") {
                return Err(Error::new(
                    ErrorKind::TlsNotTls,
                    format!(
                        "TLS with {origin}: the server answered in plain HTTP, not TLS (an http port?)"
                    ),
                ));
            }
            self.handshake_read = true;
            let mut data = &chunk[..n];
            while !data.is_empty() {
                tls.read_tls(&mut data).map_err(io)?;
                if let Err(e) = tls.process_new_packets() {
                    // Send the alert that explains the failure to the server, best effort.
                    let mut writer = NoSignalWriter::new(&self.stream, &mut self.bytes_sent);
                    let _ = tls.write_tls(&mut writer);
                    return Err(crate::tls::map_error(&e, &origin.to_string()));
                }
            }
        }
        self.resumed = tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        Ok(())
    }
}

/// Sends the TLS records rustls has queued. With `watch_read`, a socket that turns readable
/// while full ends the wait (the server answered early).
pub(super) fn flush_tls(
    tls: &mut ClientConnection,
    writer: &mut NoSignalWriter<'_>,
    fd: RawFd,
    deadline: Option<Instant>,
    watch_read: bool,
) -> io::Result<Ready> {
    while tls.wants_write() {
        match tls.write_tls(writer) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if wait(fd, libc::POLLOUT, deadline, watch_read)? == Ready::Readable {
                    return Ok(Ready::Readable);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Ready::Wanted)
}

/// Reads decrypted bytes that can be had without waiting: `None` if none yet, `Some(0)` at
/// the end of the stream.
pub(super) fn read_tls_now(
    tls: &mut ClientConnection,
    stream: &TcpStream,
    out: &mut [u8],
) -> io::Result<Option<usize>> {
    loop {
        match tls.reader().read(out) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Some(0)),
            Err(e) => return Err(e),
        }
        match tls.read_tls(&mut &*stream) {
            Ok(0) => {
                tls.process_new_packets().map_err(io::Error::other)?;
                return Ok(Some(tls.reader().read(out).unwrap_or(0)));
            }
            Ok(_) => {
                tls.process_new_packets().map_err(io::Error::other)?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads decrypted bytes into `out`, pulling TLS records from the socket as needed; returns 0
/// at the end of the stream (close_notify, or EOF from the server).
pub(super) fn read_tls_plaintext(
    tls: &mut ClientConnection,
    stream: &TcpStream,
    out: &mut [u8],
    deadline: Option<Instant>,
) -> io::Result<usize> {
    let fd = stream.as_raw_fd();
    loop {
        check_deadline(deadline)?;
        match tls.reader().read(out) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // The server closed the TCP connection without close_notify: the end of the
            // stream (message framing catches a truncated body).
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        match tls.read_tls(&mut &*stream) {
            Ok(0) => {
                tls.process_new_packets().map_err(io::Error::other)?;
                return match tls.reader().read(out) {
                    Ok(n) => Ok(n),
                    Err(_) => Ok(0),
                };
            }
            Ok(_) => {
                tls.process_new_packets().map_err(io::Error::other)?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_fd(fd, libc::POLLIN, deadline)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

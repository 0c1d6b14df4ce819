//! The TLS side of a connection: the handshake over the non-blocking socket, and moving
//! records between rustls and the socket with the caller's deadline.

use super::Connection;
use super::io::{NoSignalWriter, Ready, check_deadline, wait, wait_fd};
use crate::error::{Error, ErrorKind, Result};
use crate::origin::Origin;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use socket2::SockRef;
use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

/// Ciphertext bytes asked of the socket at once. rustls's `read_tls` offers a reader at most
/// 4 KiB past what it holds, so reading the socket through it took about 9 `recv`s for a
/// 64 KiB response; read ahead into `CipherIn`, 3 (at the cost of one more copy, cheaper here
/// than the system calls it saves).
const CIPHER_READ: usize = 32 * 1024;

/// A connection's TLS session and the ciphertext read from its socket that rustls has not
/// taken yet.
pub(super) struct Tls {
    pub(super) session: ClientConnection,
    pub(super) cipher: CipherIn,
}

/// Ciphertext read ahead of rustls (see `CIPHER_READ`); freed when the connection goes idle
/// holding none.
#[derive(Default)]
pub(super) struct CipherIn {
    buf: Vec<u8>,
    taken: usize,
}

impl Tls {
    /// True when the session holds no plaintext and has not been closed (close_notify).
    pub(super) fn nothing_to_read(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.session.reader().read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// True when the bytes that arrived on an idle connection (held, and those the socket
    /// has) are all records for TLS itself: no application data, no close, no error.
    pub(super) fn only_tls_records(&mut self, stream: &TcpStream) -> bool {
        // A few rounds of 4 KiB (the read-ahead, then the socket): a server that keeps
        // sending records to an idle connection is not one to reuse.
        for _ in 0..16 {
            match pull(&mut self.session, &mut self.cipher, stream) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
            // The end of the stream shows here too.
            if !self.nothing_to_read() {
                return false;
            }
        }
        false
    }
}

impl CipherIn {
    pub(super) fn is_empty(&self) -> bool {
        self.taken == self.buf.len()
    }

    /// Frees the buffer if it holds nothing (an idle connection keeps no read-ahead memory).
    pub(super) fn release(&mut self) {
        if self.is_empty() {
            *self = Self::default();
        }
    }

    /// Gives rustls its next ciphertext, as `read_tls` on the socket would: what is held,
    /// else what one `recv` gets. `Ok(0)` at the end of the stream; `WouldBlock` when nothing
    /// has arrived.
    pub(super) fn feed(
        &mut self,
        session: &mut ClientConnection,
        stream: &TcpStream,
    ) -> io::Result<usize> {
        if self.is_empty() {
            self.buf.clear();
            self.taken = 0;
            self.buf.reserve(CIPHER_READ);
            let spare = &mut self.buf.spare_capacity_mut()[..CIPHER_READ];
            let n = SockRef::from(stream).recv(spare)?;
            // SAFETY: `recv` initialised the first `n` bytes of the spare capacity.
            unsafe { self.buf.set_len(n) };
        }
        // At the end of the stream the slice is empty, and rustls learns of the EOF from it.
        let n = session.read_tls(&mut &self.buf[self.taken..])?;
        self.taken += n;
        Ok(n)
    }
}

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
        self.tls = Some(Box::new(Tls {
            session: tls,
            cipher: CipherIn::default(),
        }));
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
        let Some(Tls { session: tls, .. }) = self.tls.as_deref_mut() else {
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

/// Hands rustls its next ciphertext (see `CipherIn::feed`) and decrypts what it completes.
/// At the end of the stream rustls has been told, and its reader says so: the read loops
/// below end there, at the top of their next round.
fn pull(
    session: &mut ClientConnection,
    cipher: &mut CipherIn,
    stream: &TcpStream,
) -> io::Result<()> {
    cipher.feed(session, stream)?;
    session.process_new_packets().map_err(io::Error::other)?;
    Ok(())
}

/// Reads decrypted bytes that can be had without waiting: `None` if none yet, `Some(0)` at
/// the end of the stream.
pub(super) fn read_tls_now(
    Tls {
        session: tls,
        cipher,
    }: &mut Tls,
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
        match pull(tls, cipher, stream) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads decrypted bytes into `out`, pulling TLS records from the socket as needed; returns 0
/// at the end of the stream (close_notify, or EOF from the server). With `expect_wait`, waits
/// before the first `recv` when nothing is held (see `Connection::fill`).
pub(super) fn read_tls_plaintext(
    Tls {
        session: tls,
        cipher,
    }: &mut Tls,
    stream: &TcpStream,
    out: &mut [u8],
    deadline: Option<Instant>,
    mut expect_wait: bool,
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
        if std::mem::take(&mut expect_wait) && cipher.is_empty() {
            wait_fd(fd, libc::POLLIN, deadline)?;
        }
        match pull(tls, cipher, stream) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_fd(fd, libc::POLLIN, deadline)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

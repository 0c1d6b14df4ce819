//! Helpers shared by the fuzz targets: loopback sockets that play a server's byte stream.
//!
//! The response head parser and the body decoder read from a `servicepoint::connection::Connection`,
//! which only exists over a real socket, so each execution opens one loopback TCP connection
//! whose server side writes the fuzz input and then closes: reads end at EOF, never by timeout.

use servicepoint::connection::{self, Connection};
use servicepoint::origin::{Origin, Scheme};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Inputs up to this size are written before the client reads (the loopback socket buffers
/// hold them); larger ones are written from a thread.
const INLINE_WRITE_MAX: usize = 32 * 1024;

/// Generous bound for one read on loopback; a read that needs it is a hang, not a result.
pub const READ_DEADLINE: Duration = Duration::from_secs(5);

fn listener() -> &'static (TcpListener, SocketAddr) {
    static LISTENER: OnceLock<(TcpListener, SocketAddr)> = OnceLock::new();
    LISTENER.get_or_init(|| {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
        let addr = l.local_addr().expect("listener address");
        (l, addr)
    })
}

/// The origin of the loopback listener of `listener()`.
fn loopback_origin(addr: SocketAddr) -> Origin {
    Origin {
        scheme: Scheme::Http,
        host: "127.0.0.1".into(),
        port: addr.port(),
    }
}

/// An open client connection and the server side of it, both still open.
pub fn connected_pair() -> (Connection, TcpStream) {
    let (l, addr) = listener();
    let deadline = Some(Instant::now() + READ_DEADLINE);
    let conn = connection::connect(
        &loopback_origin(*addr),
        &[*addr],
        None,
        deadline,
        0,
        &mut |_| true,
    )
    .expect("loopback connect");
    let (server, _) = l.accept().expect("loopback accept");
    (conn, server)
}

/// A client connection whose server sends exactly `bytes` and then closes.
pub fn connection_serving(bytes: &[u8]) -> Connection {
    let (conn, mut server) = connected_pair();
    if bytes.len() <= INLINE_WRITE_MAX {
        // Errors only if the client went away, which it has not yet.
        let _ = server.write_all(bytes);
        drop(server);
    } else {
        let owned = bytes.to_vec();
        thread::spawn(move || {
            let _ = server.write_all(&owned);
        });
    }
    conn
}

/// A loopback HTTP server for whole exchanges: each accepted connection gets the next queued
/// byte stream (nothing if the queue is empty) after the request head has been read, then the
/// server closes its side.
pub struct Server {
    pub addr: SocketAddr,
    queue: Arc<Mutex<VecDeque<Vec<u8>>>>,
}

impl Server {
    /// The process's server (started on first use).
    pub fn get() -> &'static Server {
        static SERVER: OnceLock<Server> = OnceLock::new();
        SERVER.get_or_init(|| {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
            let addr = l.local_addr().expect("listener address");
            let queue: Arc<Mutex<VecDeque<Vec<u8>>>> = Arc::default();
            let q = Arc::clone(&queue);
            thread::spawn(move || {
                for stream in l.incoming() {
                    let Ok(stream) = stream else { continue };
                    let bytes = q.lock().unwrap().pop_front().unwrap_or_default();
                    serve(stream, &bytes);
                }
            });
            Server { addr, queue }
        })
    }

    /// Replaces the queue of byte streams the next connections get.
    pub fn set(&self, streams: Vec<Vec<u8>>) {
        *self.queue.lock().unwrap() = streams.into();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }
}

/// Reads the request head (so closing does not reset the connection over unread bytes), writes
/// `bytes`, and closes.
fn serve(mut stream: TcpStream, bytes: &[u8]) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
}

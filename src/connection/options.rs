//! How the socket of a new connection is set up: what .NET's ServicePoint calls
//! ReceiveBufferSize, UseNagleAlgorithm, SetTcpKeepAlive and BindIPEndPointDelegate, plus a
//! connect timeout of its own.

use socket2::{SockAddr, Socket, TcpKeepalive};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// TCP keep-alive probes (SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpKeepAlive {
    /// Idle time before the first probe.
    pub time: Duration,
    /// Time between probes.
    pub interval: Duration,
}

/// Socket settings applied to each new connection (existing ones keep theirs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// SO_RCVBUF in bytes; `None` leaves the system's default (.NET's -1).
    pub receive_buffer: Option<u32>,
    /// SO_SNDBUF in bytes; `None` leaves the system's default.
    pub send_buffer: Option<u32>,
    /// Nagle's algorithm; off by default (TCP_NODELAY), as in modern .NET: a request head and
    /// its body go out at once instead of waiting for an acknowledgement.
    pub nagle: bool,
    /// TCP keep-alive probes; `None` is off.
    pub keep_alive: Option<TcpKeepAlive>,
    /// The local address (and port, 0 for any) to bind before connecting.
    pub bind: Option<SocketAddr>,
    /// Longest a connect (all addresses, and the TLS handshake) may take; the request timeout
    /// bounds it too. `None`: only the request timeout.
    pub connect_timeout: Option<Duration>,
}

impl SocketOptions {
    /// Applies the options to a socket before it connects to `peer`.
    pub fn apply(&self, socket: &Socket, peer: SocketAddr) -> io::Result<()> {
        socket.set_tcp_nodelay(!self.nagle)?;
        if let Some(n) = self.receive_buffer {
            socket.set_recv_buffer_size(n as usize)?;
        }
        if let Some(n) = self.send_buffer {
            socket.set_send_buffer_size(n as usize)?;
        }
        if let Some(k) = self.keep_alive {
            let params = TcpKeepalive::new()
                .with_time(k.time)
                .with_interval(k.interval);
            socket.set_tcp_keepalive(&params)?;
        }
        if let Some(local) = self.bind {
            if local.is_ipv4() != peer.is_ipv4() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("local address {local} is not of the family of {peer}"),
                ));
            }
            socket.bind(&SockAddr::from(local))?;
        }
        Ok(())
    }
}

//! What a service point has learned about its server, the read-only facts of .NET's
//! ServicePoint: the HTTP version of its responses (ProtocolVersion), whether requests may be
//! pipelined to it (SupportsPipelining), and the certificate of its last TLS connection
//! (Certificate). The exchange reports each response head and each new connection here;
//! anyone may read.
//!
//! ProtocolVersion is HTTP/1.1 until a response arrives (as .NET Framework and .NET Core say;
//! Mono says null), then the version of the last response. SupportsPipelining is true until a
//! response says HTTP/1.0 or the server shows otherwise that it does not pipeline (it closes
//! after the first pipelined batch, or answers out of protocol), then false for the point's
//! life (as .NET Framework, which never goes back from HTTP/1.0 behaviour). Requests are
//! pipelined only once an HTTP/1.1 response arrived ([`ServerFacts::pipelining_qualified`]).

use crate::connection::Connection;
use crate::fork::Lock;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};

pub struct ServerFacts {
    /// Minor HTTP version of the last response; 1 before any.
    http_minor: AtomicU8,
    /// Cleared for good by an HTTP/1.0 response or a failed pipeline.
    pipelining: AtomicBool,
    /// An HTTP/1.1 response arrived.
    answered_http11: AtomicBool,
    /// The server's end-entity certificate (DER) on the last TLS connection opened.
    certificate: Lock<Option<Arc<[u8]>>>,
}

impl Default for ServerFacts {
    fn default() -> Self {
        ServerFacts {
            http_minor: AtomicU8::new(1),
            pipelining: AtomicBool::new(true),
            answered_http11: AtomicBool::new(false),
            certificate: Lock::new(None),
        }
    }
}

impl ServerFacts {
    /// A response head arrived with HTTP/1.`minor_version`. Stores only on a change, so
    /// threads finishing requests on one point do not all write its cache line.
    pub fn responded(&self, minor_version: u8) {
        if self.http_minor.load(Relaxed) != minor_version {
            self.http_minor.store(minor_version, Relaxed);
        }
        if minor_version == 0 && self.pipelining.load(Relaxed) {
            self.pipelining.store(false, Relaxed);
        }
        if minor_version == 1 && !self.answered_http11.load(Relaxed) {
            self.answered_http11.store(true, Relaxed);
        }
    }

    /// The server showed that it does not pipeline: no request is pipelined to it again.
    /// True if this changed the verdict.
    pub fn refuse_pipelining(&self) -> bool {
        self.pipelining.swap(false, Relaxed)
    }

    /// Requests may be pipelined: an HTTP/1.1 response arrived and nothing showed otherwise.
    pub fn pipelining_qualified(&self) -> bool {
        self.answered_http11.load(Relaxed) && self.pipelining.load(Relaxed)
    }

    /// A new connection was opened: a TLS one's server certificate becomes the point's.
    pub fn connected(&self, conn: &Connection) {
        let Some(der) = conn.peer_certificate() else {
            return;
        };
        if self.certificate.lock().as_deref() == Some(der) {
            return;
        }
        // Copied outside the lock.
        let der: Arc<[u8]> = Arc::from(der);
        *self.certificate.lock() = Some(der);
    }

    /// ProtocolVersion as (major, minor): (1, 1) or (1, 0).
    pub fn protocol_version(&self) -> (u8, u8) {
        (1, self.http_minor.load(Relaxed))
    }

    /// SupportsPipelining: false once the server answered with HTTP/1.0 or refused a pipeline.
    pub fn supports_pipelining(&self) -> bool {
        self.pipelining.load(Relaxed)
    }

    /// Certificate: the DER of the server's end-entity certificate on the point's last TLS
    /// connection; `None` before the first one (and always for http).
    pub fn certificate(&self) -> Option<Arc<[u8]>> {
        self.certificate.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http11_until_a_response_then_the_last_response() {
        let f = ServerFacts::default();
        assert_eq!(f.protocol_version(), (1, 1));
        assert!(f.supports_pipelining());
        f.responded(1);
        assert_eq!(f.protocol_version(), (1, 1));
        assert!(f.supports_pipelining());
        f.responded(0);
        assert_eq!(f.protocol_version(), (1, 0));
        assert!(!f.supports_pipelining());
        // The version follows the last response; pipelining stays off.
        f.responded(1);
        assert_eq!(f.protocol_version(), (1, 1));
        assert!(!f.supports_pipelining());
        assert_eq!(f.certificate(), None);
    }

    #[test]
    fn pipelining_qualifies_after_an_http11_answer_until_refused() {
        let f = ServerFacts::default();
        assert!(!f.pipelining_qualified(), "nothing known before a response");
        f.responded(1);
        assert!(f.pipelining_qualified());
        assert!(f.refuse_pipelining(), "the verdict changed");
        assert!(!f.refuse_pipelining(), "once");
        assert!(!f.pipelining_qualified() && !f.supports_pipelining());
        f.responded(1);
        assert!(!f.pipelining_qualified(), "for the point's life");
    }
}

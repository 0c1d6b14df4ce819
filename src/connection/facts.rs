//! What a TLS connection negotiated, read from its rustls session when asked (nothing is
//! copied per connection): the protocol version, the cipher suite by its IANA name, whether
//! the session was resumed, and the server's end-entity certificate.

use super::Connection;
use rustls::{CipherSuite, ProtocolVersion};

/// The TLS parameters of the connection a response came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsFacts {
    /// (major, minor): (1, 2) for TLS 1.2, (1, 3) for TLS 1.3.
    pub version: (u8, u8),
    /// The IANA name, e.g. "TLS_AES_128_GCM_SHA256" or
    /// "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" (the names of .NET's `TlsCipherSuite`).
    pub cipher_suite: &'static str,
    /// The handshake resumed an earlier session (abbreviated handshake).
    pub resumed: bool,
}

impl Connection {
    /// The TLS parameters of a TLS connection (`None` for plain TCP).
    pub fn tls_facts(&self) -> Option<TlsFacts> {
        let tls = &self.tls.as_deref()?.session;
        Some(TlsFacts {
            version: version_numbers(tls.protocol_version()?),
            cipher_suite: suite_name(tls.negotiated_cipher_suite()?.suite()),
            resumed: self.resumed,
        })
    }

    /// The server's end-entity certificate (DER) of a TLS connection; a resumed session
    /// still has the one verified when it was first established.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        let tls = &self.tls.as_deref()?.session;
        tls.peer_certificates()?.first().map(|c| c.as_ref())
    }
}

fn version_numbers(v: ProtocolVersion) -> (u8, u8) {
    match v {
        ProtocolVersion::TLSv1_3 => (1, 3),
        ProtocolVersion::TLSv1_2 => (1, 2),
        ProtocolVersion::TLSv1_1 => (1, 1),
        ProtocolVersion::TLSv1_0 => (1, 0),
        // rustls negotiates nothing else.
        _ => (0, 0),
    }
}

/// The IANA name of a cipher suite: rustls spells the TLS 1.3 ones "TLS13_...", IANA and
/// .NET "TLS_..."; the TLS 1.2 names are IANA's already.
fn suite_name(s: CipherSuite) -> &'static str {
    match s {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_AES_128_CCM_SHA256 => "TLS_AES_128_CCM_SHA256",
        CipherSuite::TLS13_AES_128_CCM_8_SHA256 => "TLS_AES_128_CCM_8_SHA256",
        other => other.as_str().unwrap_or("unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_have_their_iana_names() {
        assert_eq!(
            suite_name(CipherSuite::TLS13_AES_256_GCM_SHA384),
            "TLS_AES_256_GCM_SHA384"
        );
        assert_eq!(
            suite_name(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(suite_name(CipherSuite::Unknown(0xfefe)), "unknown");
        // Every suite the provider offers has a name.
        for s in rustls::crypto::ring::default_provider().cipher_suites {
            let name = suite_name(s.suite());
            assert!(name.starts_with("TLS_"), "{name}");
        }
    }

    #[test]
    fn versions_are_numbers() {
        assert_eq!(version_numbers(ProtocolVersion::TLSv1_3), (1, 3));
        assert_eq!(version_numbers(ProtocolVersion::TLSv1_2), (1, 2));
        assert_eq!(version_numbers(ProtocolVersion::SSLv3), (0, 0));
    }
}

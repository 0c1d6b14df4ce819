//! TLS settings of a manager and the rustls client configuration built from them: system roots
//! (rustls-native-certs) plus added CAs, optional client certificate, minimum version, an
//! optional validation callback, ALPN `http/1.1`, and one session cache shared by every
//! connection of the manager so that reconnects resume. Crypto provider: ring.

use crate::error::{Error, ErrorKind, Result};
use crate::fork::{self, Lock, LockGuard};
use once_cell::sync::Lazy;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::fmt;
use std::sync::Arc;

/// Sessions remembered per manager (rustls's default is 256).
const SESSION_CACHE: usize = 1024;

/// The system's trust store, read once per process.
static SYSTEM_ROOTS: Lazy<Vec<CertificateDer<'static>>> =
    Lazy::new(|| rustls_native_certs::load_native_certs().certs);

/// Decides about a server certificate after the built-in verification: gets the host, the
/// DER chain (end entity first) and the built-in verdict (`None` if it passed).
pub trait CertValidator: Send + Sync {
    fn validate(&self, host: &str, chain: &[&[u8]], builtin: Option<&Error>) -> bool;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

struct Options {
    extra_roots: Vec<CertificateDer<'static>>,
    system_roots: bool,
    client_auth: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    min_version: MinVersion,
    validator: Option<Arc<dyn CertValidator>>,
}

pub struct Tls {
    options: Lock<Options>,
    /// Built on first use and after every change of the options, with a new session cache:
    /// a session resumed from before a change of trust settings would skip the new checks.
    /// Tagged with the fork generation: a forked child builds its own (with its own session
    /// cache, whose lock the parent's threads may have held).
    config: Lock<Option<(u64, Arc<ClientConfig>)>>,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            options: Lock::new(Options {
                extra_roots: Vec::new(),
                system_roots: true,
                client_auth: None,
                min_version: MinVersion::Tls12,
                validator: None,
            }),
            config: Lock::new(None),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_error(what: &str, e: impl fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidArgument, format!("{what}: {e}"))
}

impl Tls {
    fn change(&self) -> LockGuard<'_, Options> {
        *self.config.lock() = None;
        self.options.lock()
    }

    /// Trusts the CA certificates in `pem`; returns how many were added.
    pub fn add_ca_pem(&self, pem: &[u8]) -> Result<usize> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| pem_error("invalid CA PEM", e))?;
        if certs.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "no certificate in the CA PEM",
            ));
        }
        let mut store = RootCertStore::empty();
        let (_, rejected) = store.add_parsable_certificates(certs.iter().cloned());
        if rejected > 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{rejected} CA certificate(s) in the PEM cannot be used as trust anchors"),
            ));
        }
        let n = certs.len();
        self.change().extra_roots.extend(certs);
        Ok(n)
    }

    pub fn add_ca_file(&self, path: &str) -> Result<usize> {
        let pem = std::fs::read(path).map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("cannot read CA file '{path}': {e}"),
            )
        })?;
        self.add_ca_pem(&pem)
    }

    /// Whether the system's trust store is used besides the added CAs (default on).
    pub fn set_system_roots(&self, on: bool) {
        self.change().system_roots = on;
    }

    /// A client certificate chain and its private key (PEM) for mutual TLS.
    pub fn set_client_certificate(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<()> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| pem_error("invalid client certificate PEM", e))?;
        if chain.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "no certificate in the client certificate PEM",
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| pem_error("invalid client key PEM", e))?;
        // Check now that the key fits the provider, rather than at the first handshake.
        provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| pem_error("unusable client key", e))?;
        self.change().client_auth = Some((chain, Arc::new(key)));
        Ok(())
    }

    pub fn set_min_version(&self, v: MinVersion) {
        self.change().min_version = v;
    }

    pub fn set_validator(&self, validator: Option<Arc<dyn CertValidator>>) {
        self.change().validator = validator;
    }

    /// Whether the system's trust store is used (see `set_system_roots`).
    pub fn system_roots(&self) -> bool {
        self.options.lock().system_roots
    }

    /// How many CA certificates were added with `add_ca_pem`/`add_ca_file`.
    pub fn ca_count(&self) -> usize {
        self.options.lock().extra_roots.len()
    }

    /// Whether a client certificate is set.
    pub fn has_client_certificate(&self) -> bool {
        self.options.lock().client_auth.is_some()
    }

    pub fn min_version(&self) -> MinVersion {
        self.options.lock().min_version
    }

    /// Whether a validation callback is installed.
    pub fn has_validator(&self) -> bool {
        self.options.lock().validator.is_some()
    }

    /// The client configuration for new connections (built once per options change).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        // Read the system's trust store (files) before entering a lock section.
        Lazy::force(&SYSTEM_ROOTS);
        let generation = fork::generation();
        let mut cached = self.config.lock();
        if let Some((g, c)) = cached.as_ref() {
            if *g == generation {
                return Ok(Arc::clone(c));
            }
        }
        let options = self.options.lock();
        let config = Arc::new(self.build(&options)?);
        *cached = Some((generation, Arc::clone(&config)));
        Ok(config)
    }

    fn build(&self, o: &Options) -> Result<ClientConfig> {
        let provider = provider();
        let mut roots = RootCertStore::empty();
        if o.system_roots {
            roots.add_parsable_certificates(SYSTEM_ROOTS.iter().cloned());
        }
        roots.add_parsable_certificates(o.extra_roots.iter().cloned());
        let webpki = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| {
                        Error::new(ErrorKind::TlsCertificate, format!("trust store: {e}"))
                    })?,
            )
        };
        let verifier = Arc::new(Verifier {
            webpki,
            validator: o.validator.clone(),
            provider: Arc::clone(&provider),
        });
        let versions: &[&'static rustls::SupportedProtocolVersion] = match o.min_version {
            MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| Error::new(ErrorKind::TlsHandshake, format!("TLS configuration: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &o.client_auth {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| pem_error("client certificate", e))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption =
            Resumption::store(Arc::new(ClientSessionMemoryCache::new(SESSION_CACHE)));
        Ok(config)
    }
}

/// Built-in WebPKI verification (when there are trust anchors), then the user's validator.
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    validator: Option<Arc<dyn CertValidator>>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("servicepoint::tls::Verifier")
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let builtin = match &self.webpki {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        };
        let Some(validator) = &self.validator else {
            return builtin;
        };
        let host = server_name.to_str();
        let verdict = builtin.as_ref().err().map(|e| map_error(e, &host));
        let chain: Vec<&[u8]> = std::iter::once(end_entity.as_ref())
            .chain(intermediates.iter().map(|c| c.as_ref()))
            .collect();
        if validator.validate(&host, &chain, verdict.as_ref()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Maps a rustls failure to an error that names the host and the reason.
pub fn map_error(e: &rustls::Error, host: &str) -> Error {
    use CertificateError as C;
    let (kind, reason) = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer | C::BadSignature => (
                ErrorKind::TlsUnknownIssuer,
                "certificate issued by an unknown authority".to_string(),
            ),
            C::Expired | C::ExpiredContext { .. } => {
                (ErrorKind::TlsExpired, "certificate has expired".to_string())
            }
            C::NotValidYet | C::NotValidYetContext { .. } => (
                ErrorKind::TlsExpired,
                "certificate is not valid yet".to_string(),
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => (
                ErrorKind::TlsHostnameMismatch,
                "certificate is not valid for this host name".to_string(),
            ),
            C::ApplicationVerificationFailure => (
                ErrorKind::TlsCertificate,
                "certificate rejected by the validation callback".to_string(),
            ),
            other => (
                ErrorKind::TlsCertificate,
                format!("certificate rejected: {other:?}"),
            ),
        },
        other => (
            ErrorKind::TlsHandshake,
            format!("handshake failed: {other}"),
        ),
    };
    Error::new(kind, format!("TLS with {host}: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_input_is_validated() {
        let tls = Tls::default();
        assert_eq!(
            tls.add_ca_pem(b"not pem").unwrap_err().kind,
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            tls.set_client_certificate(b"", b"").unwrap_err().kind,
            ErrorKind::InvalidArgument
        );
        assert!(
            tls.add_ca_file("/nonexistent/ca.pem")
                .unwrap_err()
                .message
                .contains("/nonexistent")
        );
        assert!(tls.client_config().is_ok());
    }

    #[test]
    fn errors_name_host_and_reason() {
        let e = map_error(
            &rustls::Error::InvalidCertificate(CertificateError::Expired),
            "example.test",
        );
        assert_eq!(e.kind, ErrorKind::TlsExpired);
        assert!(e.message.contains("example.test") && e.message.contains("expired"));
    }
}

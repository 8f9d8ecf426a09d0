//! Outbound TLS: the modes of `enable_tls` and the rustls configurations
//! behind them.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

/// `enable_tls` of an egress path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Never use STARTTLS.
    Disabled,
    /// Use STARTTLS when offered, without requiring a valid certificate
    /// (RFC 7435 opportunistic security); a failed handshake defers.
    #[default]
    Opportunistic,
    /// As `Opportunistic`, but a failed handshake is retried in clear.
    OpportunisticInsecure,
    /// STARTTLS must be offered and the certificate must verify.
    Required,
    /// STARTTLS must be offered; the certificate is not checked.
    RequiredInsecure,
}

impl TlsMode {
    /// From KumoMTA's `enable_tls` names (`Opportunistic`, `Required`, …); `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "Disabled" => Self::Disabled,
            "Opportunistic" => Self::Opportunistic,
            "OpportunisticInsecure" => Self::OpportunisticInsecure,
            "Required" => Self::Required,
            "RequiredInsecure" => Self::RequiredInsecure,
            _ => return None,
        })
    }

    /// Whether a connection without TLS must fail.
    pub fn is_required(self) -> bool {
        matches!(self, Self::Required | Self::RequiredInsecure)
    }

    pub(crate) fn verifies(self) -> bool {
        self == Self::Required
    }
}

/// The two client configurations, built once and shared by all sessions.
#[derive(Clone)]
pub struct TlsConfigs {
    pub(crate) verified: Arc<ClientConfig>,
    pub(crate) unverified: Arc<ClientConfig>,
}

impl TlsConfigs {
    /// Web PKI roots for verified sessions; TLS 1.2 and 1.3 only.
    pub fn new() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let verified = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let unverified = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        Self { verified: Arc::new(verified), unverified: Arc::new(unverified) }
    }
}

impl Default for TlsConfigs {
    fn default() -> Self {
        Self::new()
    }
}

/// Accepts any certificate but still checks the handshake signatures, so
/// the session is encrypted to whoever holds the key it presented.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

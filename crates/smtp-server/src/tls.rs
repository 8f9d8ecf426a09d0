//! The listener's TLS identity: the configured PEM files, or a self-signed
//! certificate generated for the listener's host name.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

pub fn acceptor(certificate: Option<&Path>, key: Option<&Path>, hostname: &str) -> Result<TlsAcceptor, String> {
    let (certs, key) = match (certificate, key) {
        (Some(cert), Some(key)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect())
                .map_err(|e| format!("tls_certificate {}: {e}", cert.display()))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls_private_key {}: {e}", key.display()))?;
            (certs, key)
        }
        (None, None) => {
            let generated = rcgen::generate_simple_self_signed(vec![hostname.to_string()])
                .map_err(|e| format!("cannot generate a certificate for {hostname}: {e}"))?;
            let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
            (vec![generated.cert.der().clone()], key)
        }
        _ => return Err("tls_certificate and tls_private_key go together".into()),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not fit: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

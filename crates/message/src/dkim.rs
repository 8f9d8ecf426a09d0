//! DKIM signing (RFC 6376, RFC 8463): a signer built once from a key and a
//! description of what to sign, then applied to many messages. The
//! cryptography and canonicalization are mail-auth's; this module owns the
//! KumoMTA-shaped options (over-signing, canonicalization names) and the
//! error a policy sees.

use mail_auth::common::crypto::{Algorithm, DkimKey, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};

/// How headers or the body are canonicalized before hashing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub enum Canon {
    /// `relaxed`: whitespace and header-name case do not matter (the default).
    #[default]
    Relaxed,
    /// `simple`: bytes as they are.
    Simple,
}

impl From<Canon> for Canonicalization {
    fn from(c: Canon) -> Self {
        match c {
            Canon::Relaxed => Canonicalization::Relaxed,
            Canon::Simple => Canonicalization::Simple,
        }
    }
}

/// The key algorithm of a signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimAlgorithm {
    /// `rsa-sha256`.
    RsaSha256,
    /// `ed25519-sha256`.
    Ed25519,
}

/// What a signature covers and how it is labelled.
#[derive(Debug, Clone, Default)]
pub struct DkimSpec {
    /// `d=`: the signing domain.
    pub domain: String,
    /// `s=`: the selector under `_domainkey.<domain>`.
    pub selector: String,
    /// Header names to sign, in order.
    pub headers: Vec<String>,
    /// Sign each listed header once more than it occurs, so a copy added in
    /// transit breaks the signature.
    pub over_sign: bool,
    /// Header canonicalization.
    pub header_canonicalization: Canon,
    /// Body canonicalization.
    pub body_canonicalization: Canon,
    /// `x=`: seconds from signing until the signature expires.
    pub expiration: Option<u64>,
    /// `atps=` (RFC 6541).
    pub atps: Option<String>,
    /// `i=`: the agent or user identifier.
    pub agent_user_identifier: Option<String>,
    /// Include `l=`, the signed body length.
    pub body_length: bool,
    /// `r=y`: ask verifiers for reports.
    pub reporting: bool,
}

/// Why a signer could not be built or a message not signed. Both are
/// permanent: the same key and message fail the same way again.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// The key bytes are not a key of the signer's algorithm.
    #[error("not a usable {algorithm} private key: {reason}")]
    BadKey {
        /// `rsa-sha256` or `ed25519`.
        algorithm: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// The domain, selector or header list is missing.
    #[error("DKIM signer needs {0}")]
    Incomplete(&'static str),
    /// Signing failed (no listed header is in the message, for example).
    #[error("DKIM signing failed: {0}")]
    Sign(String),
}

/// Lends a parsed key to a per-message signer, so the key is parsed once
/// while the header list follows each message's header counts.
struct Lent<'a>(&'a DkimKey);

impl SigningKey for Lent<'_> {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

/// A ready signer: parsed key plus the signature template.
pub struct DkimSigningKey {
    key: DkimKey,
    spec: DkimSpec,
}

impl std::fmt::Debug for DkimSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimSigningKey").field("spec", &self.spec).finish_non_exhaustive()
    }
}

/// The private key in `bytes`: PEM (PKCS#1 or PKCS#8) or DER (PKCS#8,
/// then PKCS#1).
fn private_key(bytes: &[u8]) -> Result<PrivateKeyDer<'_>, String> {
    if bytes.starts_with(b"-----") || bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return PrivateKeyDer::from_pem_slice(bytes).map_err(|e| format!("not a PEM private key ({e})"));
    }
    if bytes.first() == Some(&0x30) {
        // Both DER encodings start with a SEQUENCE; PKCS#8 nests a version
        // and an algorithm identifier where PKCS#1 has the modulus.
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(bytes)));
    }
    Err("neither PEM nor DER".to_string())
}

fn rsa_key(bytes: &[u8]) -> Result<RsaKey<Sha256>, DkimError> {
    let bad = |reason: String| DkimError::BadKey { algorithm: "rsa-sha256", reason };
    let der = private_key(bytes).map_err(bad)?;
    match RsaKey::from_key_der(der.clone_key()) {
        Ok(key) => Ok(key),
        Err(first) if matches!(der, PrivateKeyDer::Pkcs8(_)) && !bytes.starts_with(b"-----") => {
            RsaKey::from_key_der(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(bytes)))
                .map_err(|_| bad(first.to_string()))
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

fn ed25519_key(bytes: &[u8]) -> Result<Ed25519Key, DkimError> {
    let bad = |reason: String| DkimError::BadKey { algorithm: "ed25519", reason };
    let der = match private_key(bytes).map_err(bad)? {
        PrivateKeyDer::Pkcs8(der) => der,
        _ => return Err(bad("an ed25519 key must be PKCS#8".to_string())),
    };
    // PKCS#8 v2 carries the public key; v1 only the private one.
    let der = der.secret_pkcs8_der();
    Ed25519Key::from_pkcs8_der(der)
        .or_else(|_| Ed25519Key::from_pkcs8_maybe_unchecked_der(der))
        .map_err(|e| bad(e.to_string()))
}

/// The `h=` list for one message: each listed name once per occurrence in
/// the message (absent names dropped), plus one more with over-signing so
/// a copy added later breaks the signature.
fn effective_headers(spec: &DkimSpec, data: &[u8]) -> Vec<String> {
    let mut out = Vec::with_capacity(spec.headers.len() * 2);
    for name in &spec.headers {
        // mail-auth signs every instance of a name it is given and names
        // each unmatched extra entry once more: a present name listed twice
        // yields N + 1 entries, an absent name listed once yields 1.
        let present = crate::headers::count_named(data, name) > 0;
        if present {
            out.push(name.clone());
        }
        if spec.over_sign {
            out.push(name.clone());
        }
    }
    out
}

impl DkimSigningKey {
    /// Parse `key` (PEM or DER) for `algorithm` and keep `spec` with it.
    pub fn new(algorithm: DkimAlgorithm, key: &[u8], spec: DkimSpec) -> Result<Self, DkimError> {
        if spec.domain.is_empty() {
            return Err(DkimError::Incomplete("a domain"));
        }
        if spec.selector.is_empty() {
            return Err(DkimError::Incomplete("a selector"));
        }
        if spec.headers.is_empty() {
            return Err(DkimError::Incomplete("a list of headers"));
        }
        let key = match algorithm {
            DkimAlgorithm::RsaSha256 => DkimKey::Rsa(rsa_key(key)?),
            DkimAlgorithm::Ed25519 => DkimKey::Ed25519(ed25519_key(key)?),
        };
        Ok(DkimSigningKey { key, spec })
    }

    /// The signing domain.
    pub fn domain(&self) -> &str {
        &self.spec.domain
    }

    /// The `DKIM-Signature` header line (folded, ending in CRLF) for `data`.
    pub fn signature_header(&self, data: &[u8]) -> Result<String, DkimError> {
        let spec = &self.spec;
        let mut signer = DkimSigner::from_key(Lent(&self.key))
            .domain(spec.domain.clone())
            .selector(spec.selector.clone())
            .headers(effective_headers(spec, data))
            .header_canonicalization(spec.header_canonicalization.into())
            .body_canonicalization(spec.body_canonicalization.into())
            .body_length(spec.body_length)
            .reporting(spec.reporting);
        if let Some(x) = spec.expiration {
            signer = signer.expiration(x);
        }
        if let Some(atps) = &spec.atps {
            signer = signer.atps(atps.clone());
        }
        if let Some(i) = &spec.agent_user_identifier {
            signer = signer.agent_user_identifier(i.clone());
        }
        let signature = signer.sign(data).map_err(|e| DkimError::Sign(e.to_string()))?;
        Ok(signature.to_header())
    }

    /// A copy of `data` with this signature as its first header.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, DkimError> {
        let header = self.signature_header(data)?;
        let mut out = Vec::with_capacity(header.len() + data.len());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        Ok(out)
    }
}

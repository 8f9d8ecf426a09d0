//! Envelope addresses as stored on a message (already parsed by SMTP or HTTP).

use serde::{Deserialize, Serialize};
use std::fmt;

/// `user@domain`, or the empty null sender `<>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvelopeAddress(String);

/// An address that does not parse as RFC 5321 mailbox syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid envelope address {0:?}: expected user@domain")]
pub struct AddressError(pub String);

impl EnvelopeAddress {
    /// The null reverse path `<>`.
    pub fn null() -> Self {
        Self(String::new())
    }

    /// Accepts `user@domain` (the last `@` splits, so quoted local parts with
    /// an `@` survive) or the empty string for the null sender.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let s = s.trim();
        let s = s.strip_prefix('<').and_then(|x| x.strip_suffix('>')).unwrap_or(s);
        if s.is_empty() {
            return Ok(Self::null());
        }
        match s.rsplit_once('@') {
            Some((user, domain)) if !user.is_empty() && !domain.is_empty() && !s.contains(char::is_whitespace) => {
                Ok(Self(s.to_string()))
            }
            _ => Err(AddressError(s.to_string())),
        }
    }

    /// Whether this is `<>`.
    pub fn is_null(&self) -> bool {
        self.0.is_empty()
    }
    /// `user@domain`, or the empty string for `<>`.
    pub fn email(&self) -> &str {
        &self.0
    }
    /// The local part.
    pub fn user(&self) -> &str {
        self.0.rsplit_once('@').map(|(u, _)| u).unwrap_or("")
    }
    /// The domain part.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl fmt::Display for EnvelopeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for EnvelopeAddress {
    type Error = AddressError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<EnvelopeAddress> for String {
    fn from(a: EnvelopeAddress) -> String {
        a.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let a = EnvelopeAddress::parse("<\"a@b\"@Example.com>").unwrap();
        assert_eq!((a.user(), a.domain()), ("\"a@b\"", "Example.com"));
        assert!(EnvelopeAddress::parse("").unwrap().is_null());
        assert!(EnvelopeAddress::parse("nodomain").is_err());
        assert!(EnvelopeAddress::parse("a b@c").is_err());
    }
}

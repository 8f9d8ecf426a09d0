//! Spool ids: UUIDv7, so ids sort by creation time in the spool's key space.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A message's id: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpoolId(uuid::Uuid);

/// Text or bytes that are not a spool id.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid spool id {0:?}: expected 32 hex digits")]
pub struct SpoolIdError(pub String);

impl SpoolId {
    /// A fresh id for now.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }
    /// The largest id, for range bounds.
    pub fn max() -> Self {
        Self(uuid::Uuid::max())
    }
    /// The 16 bytes, as the spool keys records.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
    /// From the spool's 16-byte key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SpoolIdError> {
        uuid::Uuid::from_slice(bytes).map(Self).map_err(|_| SpoolIdError(format!("{bytes:02x?}")))
    }
    /// From its text form (hex, with or without dashes).
    pub fn parse(s: &str) -> Result<Self, SpoolIdError> {
        uuid::Uuid::try_parse(s).map(Self).map_err(|_| SpoolIdError(s.to_string()))
    }
}

impl Default for SpoolId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SpoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.simple())
    }
}

impl TryFrom<String> for SpoolId {
    type Error = SpoolIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<SpoolId> for String {
    fn from(id: SpoolId) -> String {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let a = SpoolId::new();
        let b = SpoolId::new();
        assert!(a < b);
        assert_eq!(SpoolId::parse(&a.to_string()).unwrap(), a);
        assert_eq!(SpoolId::from_bytes(a.as_bytes()).unwrap(), a);
        assert_eq!(a.to_string().len(), 32);
    }
}

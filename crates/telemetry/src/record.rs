//! The log record: one line of JSON per event in a message's life.

use chrono::{DateTime, Utc};
use petrel_message::{Message, Meta};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordType {
    Reception,
    Delivery,
    TransientFailure,
    Bounce,
    Expiration,
    AdminBounce,
    Rejection,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::Reception => "Reception",
            RecordType::Delivery => "Delivery",
            RecordType::TransientFailure => "TransientFailure",
            RecordType::Bounce => "Bounce",
            RecordType::Expiration => "Expiration",
            RecordType::AdminBounce => "AdminBounce",
            RecordType::Rejection => "Rejection",
        }
    }
}

/// The reply that decided the event (a remote reply, or one Petrel made up
/// for local failures such as a refused connection).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseInfo {
    pub code: u16,
    pub enhanced_code: Option<String>,
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogRecord {
    #[serde(rename = "type")]
    pub kind: RecordType,
    pub id: String,
    pub sender: String,
    pub recipient: String,
    pub queue: String,
    pub site: String,
    pub size: usize,
    pub response: ResponseInfo,
    pub peer_address: Option<String>,
    pub timestamp: DateTime<Utc>,
    pub num_attempts: u32,
    pub egress_pool: Option<String>,
    pub egress_source: Option<String>,
    pub source_address: Option<String>,
    pub reception_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_protocol_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    pub meta: Meta,
    /// Headers named in `configure_local_logs{ headers = ... }`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
    /// On an Expiration record: the reply of the last attempt, kept apart
    /// from `response`, which states the expiry itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_response: Option<ResponseInfo>,
}

impl LogRecord {
    /// A record pre-filled from the message; callers set what the event adds.
    pub fn for_message(kind: RecordType, msg: &Message, response: ResponseInfo) -> Self {
        Self {
            kind,
            id: msg.id.to_string(),
            sender: msg.sender.to_string(),
            recipient: msg.recipient.to_string(),
            queue: msg.queue_name(),
            site: String::new(),
            size: msg.size(),
            response,
            peer_address: None,
            timestamp: Utc::now(),
            num_attempts: msg.num_attempts,
            egress_pool: None,
            egress_source: None,
            source_address: None,
            reception_protocol: None,
            tls_protocol_version: None,
            tls_cipher: None,
            meta: msg.meta.clone(),
            headers: Default::default(),
            last_response: None,
        }
    }
}

//! The log record: one line of JSON per event in a message's life.

use chrono::{DateTime, Utc};
use petrel_message::{Message, Meta};
use serde::{Deserialize, Serialize};

/// What happened, as KumoMTA names its record types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordType {
    /// Accepted and spooled (SMTP or HTTP).
    Reception,
    /// Accepted by the destination.
    Delivery,
    /// An attempt failed and will be retried.
    TransientFailure,
    /// Refused for good by the destination (or locally, such as a null MX).
    Bounce,
    /// Given up: the next attempt would be past `max_age`.
    Expiration,
    /// Bounced by an operator.
    AdminBounce,
    /// Refused at reception by the policy (`kumo.reject`).
    Rejection,
}

impl RecordType {
    /// The name as it appears in the `type` field.
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
    /// The SMTP reply code.
    pub code: u16,
    /// The RFC 3463 enhanced status code, when there was one.
    pub enhanced_code: Option<String>,
    /// The reply text.
    pub content: String,
}

/// One event of one message, written as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogRecord {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// The spool id.
    pub id: String,
    /// The envelope sender.
    pub sender: String,
    /// The envelope recipient.
    pub recipient: String,
    /// The scheduled queue.
    pub queue: String,
    /// The destination site of an attempt (empty at reception).
    pub site: String,
    /// Octets of the message.
    pub size: usize,
    /// The reply that decided the event.
    pub response: ResponseInfo,
    /// The client (reception) or server (attempts) `address:port`.
    pub peer_address: Option<String>,
    /// When the event happened.
    pub timestamp: DateTime<Utc>,
    /// Delivery attempts so far, this one included.
    pub num_attempts: u32,
    /// The egress pool of an attempt.
    pub egress_pool: Option<String>,
    /// The egress source of an attempt.
    pub egress_source: Option<String>,
    /// That source's address.
    pub source_address: Option<String>,
    /// `ESMTP`, `ESMTPS`, `ESMTPA`, `ESMTPSA` or `HTTP`, at reception.
    pub reception_protocol: Option<String>,
    /// TLS version, when the connection used TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_protocol_version: Option<String>,
    /// TLS cipher suite, when the connection used TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    /// The message's meta, or the keys `configure_local_logs{ meta = ... }` names.
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
